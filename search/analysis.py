"""Text analysis: normalisation, tokenisation with units, per-language stemming and sound keys.

Language handling is pluggable: a :class:`Language` supplies a stemmer, stopwords and a
spelling-by-sound key. English and Polish ship; :func:`register_language` adds more.

Two forms of each word matter:

* the *surface* form: lower-case, NFC, diacritics folded (``"krzesła"`` -> ``"krzesla"``); the
  spelling corrector and the as-you-type prefix matcher work on these;
* the *term*: the folded stem (``"krzesło"`` -> ``"krzeslo"``); the lexical index stores these.
"""

from __future__ import annotations

import contextlib
import io
import re
import threading
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

#: Stems an :class:`Analyzer` remembers (one entry is ~280 bytes: at most ~56 MB).
TERM_CACHE_SIZE = 200_000

# Letters that NFD does not decompose into base + combining mark.
_FOLD_EXTRA = str.maketrans(
    {"ł": "l", "Ł": "l", "ø": "o", "Ø": "o", "đ": "d", "ß": "ss", "æ": "ae", "œ": "oe", "ı": "i"}
)


@lru_cache(maxsize=65536)
def fold(text: str) -> str:
    """Lower-case and strip diacritics for matching (``"Żółta Łódź"`` -> ``"zolta lodz"``).

    Args:
        text: Any text.

    Returns:
        The folded text; display text keeps its diacritics, only matching uses this.
    """
    lowered = text.lower().translate(_FOLD_EXTRA)
    decomposed = unicodedata.normalize("NFD", lowered)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def normalise(text: str) -> str:
    """NFC-normalise and collapse whitespace (the display form of catalogue text)."""
    return " ".join(unicodedata.normalize("NFC", text).split())


# A query word: a run of letters and digits, with the punctuation that belongs to a number
# inside it (``1/2``, ``3.5``, ``1,000``, ``.5``) and an inch or foot mark after a digit
# (``10'``, ``6"``). Any other punctuation separates words.
_QUERY_WORD = re.compile(r"(?:(?<!\w)\.(?=\d))?\w+(?:(?<=\d)[./,](?=\d)\w+)*(?:(?<=\d)[\"'”’])?")


def normalise_query(text: str) -> str:
    """The one key of a query, for merchandising rules and for behavioural signals alike.

    Folded (lower case, no diacritics), words joined by one space. Punctuation that is not part
    of a word is dropped, so ``"Sofa, Grey!"`` and ``"sofa grey"`` match the same rules and pool
    their clicks; the punctuation of a number stays (``"1/2 in. pipe"`` -> ``"1/2 in pipe"``,
    not ``"1 2 in pipe"``), as do inch and foot marks after a number, because these keys are
    also shown back to shoppers as popular-query suggestions.

    Args:
        text: A query as typed, or as understood.

    Returns:
        The normalised query (``""`` for a query of punctuation only).
    """
    return " ".join(_QUERY_WORD.findall(fold(text)))


class Language(Protocol):
    """What the analyser needs from a language."""

    code: str
    stopwords: frozenset[str]

    def stem(self, word: str) -> str:
        """Stem a lower-case word (diacritics kept)."""
        ...

    def sound_key(self, folded_word: str) -> str:
        """A key shared by words that sound alike (input already folded)."""
        ...


_EN_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "and",
        "or",
        "for",
        "with",
        "of",
        "in",
        "on",
        "to",
        "by",
        "at",
        "from",
        "is",
        "it",
        "this",
        "that",
        "as",
        "be",
        "are",
        "into",
        "per",
    ]
)

_PL_STOPWORDS = frozenset(
    [
        "i",
        "w",
        "z",
        "na",
        "do",
        "dla",
        "od",
        "oraz",
        "lub",
        "ze",
        "we",
        "o",
        "po",
        "przez",
        "sie",
        "jest",
        "to",
        "a",
        "ale",
        "bez",
        "pod",
        "nad",
        "u",
    ]
)


class English:
    """English: Snowball (Porter 2) stemmer from PyStemmer, metaphone sound keys."""

    code = "en"
    stopwords = _EN_STOPWORDS

    def __init__(self) -> None:
        import Stemmer  # PyStemmer

        self._stemmer = Stemmer.Stemmer("english")
        self._stemmer.maxCacheSize = 100_000

    def stem(self, word: str) -> str:
        """Snowball-stem one word."""
        return str(self._stemmer.stemWord(word))

    def sound_key(self, folded_word: str) -> str:
        """A coarse English sound skeleton: see :func:`english_sound_key`."""
        return english_sound_key(folded_word)


# English spellings of the same sound, applied in order (regex, replacement).
_EN_SOUND_RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), repl)
    for pattern, repl in (
        (r"^kn|^gn|^pn", "n"),
        (r"^wr", "r"),
        (r"^ps", "s"),
        (r"^x", "s"),
        (r"que$", "k"),
        (r"tch", "ch"),
        (r"dge", "j"),
        (r"ph", "f"),
        (r"gh", ""),
        (r"ck", "k"),
        (r"qu", "kw"),
        (r"q", "k"),
        (r"x", "ks"),
        (r"wh", "w"),
        (r"[st]ion", "shun"),
        (r"c(?=[eiy])", "s"),
        (r"c", "k"),
        (r"j", "g"),
        (r"z", "s"),
        (r"(?<=[aeiou])[wy]", ""),
        (r"y", "i"),
        (r"(?<=[^aeiou])h", ""),
        (r"(?<=.{2}[^aeiou])e$", ""),
        (r"[aeiou]+", "a"),
        (r"(.)\1+", r"\1"),
    )
)


def english_sound_key(folded_word: str) -> str:
    """A coarse sound skeleton of an English word.

    Spellings of one sound are merged (ph/f, ck/k, qu/kw, soft c/s, g/j, silent e, gh) and every
    vowel run becomes ``a``, so ``storage``/``storaig``, ``square``/``skware``, ``easy``/``eesie``
    and ``lucky``/``lukie`` share a key. The key is deliberately coarse: candidates sharing it are
    ranked by spelling distance and the rest of the query decides between them.
    """
    key = folded_word
    for pattern, repl in _EN_SOUND_RULES:
        key = pattern.sub(repl, key)
    return key or folded_word


# Polish spelling-by-sound: pairs spelled differently but pronounced (nearly) alike, applied to
# the folded word in order. Folding has already merged ó/o, ż/ź/z, ł/l, ś/s, ć/c, ń/n, ą/a, ę/e.
_PL_SOUND_RULES: tuple[tuple[str, str], ...] = (
    ("ch", "h"),
    ("rz", "z"),
    ("sz", "s"),
    ("cz", "c"),
    ("dz", "c"),
    ("dzi", "ci"),
    ("ó", "u"),
    ("w", "f"),
    ("b", "p"),
    ("d", "t"),
    ("g", "k"),
    ("zi", "z"),
    ("si", "s"),
    ("ci", "c"),
    ("ni", "n"),
    ("y", "i"),
    ("j", "i"),
    ("o", "u"),
)


class Polish:
    """Polish: Stempel stemmer (pystempel, PoliMorf tables) and Polish spelling-by-sound rules.

    The stemmer table loads on first use (about 4 s), so English-only shops never pay for it.
    """

    code = "pl"
    stopwords = _PL_STOPWORDS
    _lock = threading.Lock()
    _shared_stemmer: Callable[[str], str] | None = None

    def _stemmer(self) -> Callable[[str], str]:
        with Polish._lock:
            if Polish._shared_stemmer is None:
                from pystempel import Stemmer

                # pystempel draws a tqdm bar on stderr while loading; keep logs clean.
                with contextlib.redirect_stderr(io.StringIO()):
                    Polish._shared_stemmer = Stemmer.polimorf()
            return Polish._shared_stemmer

    def stem(self, word: str) -> str:
        """Stem one word with Stempel; words it cannot stem are returned as they are."""
        if not word.isalpha():
            return word
        stem = self._stemmer()(word)
        return stem or word

    def sound_key(self, folded_word: str) -> str:
        """Collapse Polish sound-alike spellings (rz/ż, ch/h, ó/u, voiced/voiceless pairs)."""
        key = folded_word
        for spelled, sound in _PL_SOUND_RULES:
            key = key.replace(spelled, sound)
        # Double letters sound single.
        return re.sub(r"(.)\1+", r"\1", key)


_LANGUAGE_FACTORIES: dict[str, Callable[[], Language]] = {"en": English, "pl": Polish}
_LANGUAGE_CACHE: dict[str, Language] = {}


def register_language(code: str, factory: Callable[[], Language]) -> None:
    """Make another language available to :func:`get_language` (e.g. German with a Snowball stemmer)."""
    _LANGUAGE_FACTORIES[code] = factory
    _LANGUAGE_CACHE.pop(code, None)


def available_languages() -> list[str]:
    """Codes of the languages that can be configured."""
    return sorted(_LANGUAGE_FACTORIES)


def get_language(code: str) -> Language:
    """Return the (shared) language object for a code.

    Raises:
        ValueError: the code is not registered; the message lists the valid codes.
    """
    if code not in _LANGUAGE_FACTORIES:
        raise ValueError(
            f"unknown language {code!r}; valid languages: {', '.join(available_languages())}"
        )
    if code not in _LANGUAGE_CACHE:
        _LANGUAGE_CACHE[code] = _LANGUAGE_FACTORIES[code]()
    return _LANGUAGE_CACHE[code]


# --- tokenisation -------------------------------------------------------------------------------

# Unit spellings -> canonical unit. Ambiguous short forms only count right after a number.
_UNITS = {
    "in": "in", "inch": "in", "inches": "in", '"': "in", "”": "in", "''": "in",
    "ft": "ft", "feet": "ft", "foot": "ft", "'": "ft", "’": "ft",
    "yd": "yd", "yard": "yd", "yards": "yd",
    "mm": "mm", "millimeter": "mm", "millimeters": "mm", "cm": "cm", "centimeter": "cm",
    "centimeters": "cm", "m": "m", "meter": "m", "meters": "m", "metre": "m", "metres": "m",
    "gal": "gal", "gallon": "gal", "gallons": "gal", "qt": "qt", "quart": "qt", "quarts": "qt",
    "oz": "oz", "ounce": "oz", "ounces": "oz", "lb": "lb", "lbs": "lb", "pound": "lb",
    "pounds": "lb", "kg": "kg", "g": "g", "l": "l", "ml": "ml", "litre": "l", "liter": "l",
    "v": "volt", "volt": "volt", "volts": "volt", "w": "watt", "watt": "watt", "watts": "watt",
    "a": "amp", "amp": "amp", "amps": "amp", "ah": "ah", "btu": "btu", "mph": "mph",
    "sq": "sq", "square": "sq", "cu": "cu", "cubic": "cu", "psi": "psi", "gpm": "gpm",
    "gauge": "gauge", "ga": "gauge", "awg": "awg", "pc": "pc", "pcs": "pc", "piece": "pc",
    "pack": "pack", "pk": "pack", "x": "x", "cal": "cal", "mil": "mil", "hp": "hp",
}  # fmt: skip
_UNAMBIGUOUS_UNITS = {
    "inch", "inches", "feet", "foot", "yards", "millimeter", "millimeters", "centimeter",
    "centimeters", "meters", "metres", "gallon", "gallons", "quarts", "ounce", "ounces", "lbs",
    "pounds", "volts", "watts", "amps",
}  # fmt: skip

_TOKEN_RE = re.compile(
    r"\d+/\d+"  # fractions: 1/2
    r"|\d*\.\d+"  # decimals: 1.9, .105
    r"|\d+(?:,\d{3})+(?!\d)"  # thousands: 1,000
    r"|\d+"
    r"|[^\W\d_]+"  # words in any alphabet
    r"|[\"”'’]",  # inch and foot marks
)
_DIMENSION_RE = re.compile(
    r"(\d+(?:/\d+|\.\d+)?)\s*(?:in\.?|inch(?:es)?|\"|ft\.?|')?\s*[x×]\s*(?=(\d+(?:/\d+|\.\d+)?))"
)


@dataclass(frozen=True, slots=True)
class Token:
    """One token of analysed text.

    Attributes:
        surface: Lower-case NFC form with diacritics (what the stemmer sees).
        folded: Surface form with diacritics folded (what the corrector sees).
        is_number: Digits, decimals and fractions.
        is_unit: A canonical unit that followed a number.
        derived: Added by the tokenizer (a joined ``60cm`` or a dimension ``2x4``), not written.
    """

    surface: str
    folded: str
    is_number: bool = False
    is_unit: bool = False
    derived: bool = False


def tokenize(text: str) -> list[Token]:
    """Split text into tokens, keeping numbers, fractions and units intact.

    ``"1/2 in. x 10 ft."`` gives ``1/2 in 10 ft`` plus the joined forms ``1/2in``, ``10ft`` and
    the dimension ``1/2x10``; ``"2x4"`` gives ``2 4`` plus ``2x4``. Units are canonical
    (``inches`` -> ``in``), so ``"60 cm"`` and ``"60cm"`` analyse alike.

    Args:
        text: Raw text.

    Returns:
        Tokens in order; joined unit and dimension tokens follow the tokens they join.
    """
    lowered = unicodedata.normalize("NFC", text).lower()
    tokens: list[Token] = []
    raw = [m.group(0) for m in _TOKEN_RE.finditer(lowered)]
    previous_number: str | None = None
    after_measure = False  # the previous token was a number or a unit after a number
    for piece in raw:
        piece_is_number = piece[0].isdigit() or (piece[0] == "." and len(piece) > 1)
        if piece_is_number:
            number = piece.replace(",", "")
            tokens.append(Token(number, number, is_number=True))
            previous_number = number
            after_measure = True
            continue
        if piece == "x" and after_measure:  # "2 in. x 4 in.": a dimension separator
            previous_number = None
            after_measure = False
            continue
        unit = _UNITS.get(piece)
        if unit is not None and (previous_number is not None or piece in _UNAMBIGUOUS_UNITS):
            if unit != "x":
                tokens.append(Token(unit, unit, is_unit=True))
                if previous_number is not None:
                    joined = previous_number + unit
                    tokens.append(Token(joined, joined, is_number=True, derived=True))
            after_measure = previous_number is not None
            previous_number = None
            continue
        previous_number = None
        after_measure = False
        if piece in ('"', "”", "'", "’"):
            continue
        tokens.append(Token(piece, fold(piece)))
    for match in _DIMENSION_RE.finditer(lowered):
        dim = f"{match.group(1)}x{match.group(2)}"
        tokens.append(Token(dim, dim, is_number=True, derived=True))
    return tokens


class Analyzer:
    """Turns text into index terms for a set of configured languages.

    Args:
        languages: Language codes; the first is the catalogue default.

    Raises:
        ValueError: an unknown language code (the message lists the valid ones).
    """

    def __init__(self, languages: Sequence[str] = ("en",)) -> None:
        if not languages:
            raise ValueError(
                "at least one language is required; valid: " + ", ".join(available_languages())
            )
        self.language_codes: tuple[str, ...] = tuple(languages)
        self._languages = {code: get_language(code) for code in self.language_codes}
        self._stopwords = frozenset().union(*(lang.stopwords for lang in self._languages.values()))
        self._term_cache: dict[tuple[str, str], str] = {}

    def warm_up(self) -> None:
        """Load every configured language's stemmer now (Polish: about 4 s and 170 MB of
        tables), so no shopper's first query in that language waits for it."""
        for language in self._languages.values():
            language.stem("warmup")

    def clear_cache(self) -> None:
        """Forget the stems of words seen so far (and the module's folding cache): after a
        start-up pass over every title they hold hundreds of thousands of entries queries may
        never need."""
        self._term_cache.clear()
        fold.cache_clear()

    @property
    def default_language(self) -> str:
        """The catalogue's default language code."""
        return self.language_codes[0]

    def is_stopword(self, folded: str) -> bool:
        """True for a stopword of any configured language."""
        return folded in self._stopwords

    def term(self, token: Token, lang: str) -> str:
        """The index term of a token in one language (folded stem; numbers unchanged)."""
        if token.is_number or token.is_unit:
            return token.folded
        key = (token.surface, lang)
        cached = self._term_cache.get(key)
        if cached is None:
            language = self._languages.get(lang) or self._languages[self.default_language]
            cached = fold(language.stem(token.surface))
            if len(self._term_cache) < TERM_CACHE_SIZE:
                self._term_cache[key] = cached
        return cached

    def terms_of_word(self, surface: str) -> tuple[str, ...]:
        """The distinct index terms a query word may mean, one per configured language."""
        token = tokenize(surface)
        if not token:
            return ()
        seen: dict[str, None] = {}
        for lang in self.language_codes:
            seen[self.term(token[0], lang)] = None
        return tuple(seen)

    def document_terms(self, text: str, lang: str | None = None) -> list[str]:
        """Index terms of a document field, stopwords removed."""
        language = lang if lang in self._languages else self.default_language
        return [
            self.term(tok, language)
            for tok in tokenize(text)
            if tok.is_number or tok.is_unit or not self.is_stopword(tok.folded)
        ]

    def sound_keys(self, folded_word: str) -> tuple[str, ...]:
        """Sound keys of a folded word, one per configured language (deduplicated)."""
        keys: dict[str, None] = {}
        for lang in self._languages.values():
            keys[lang.code + ":" + lang.sound_key(folded_word)] = None
        return tuple(keys)


def iter_surface_words(texts: Iterable[str]) -> Iterable[str]:
    """Folded alphabetic-or-alphanumeric words of texts (vocabulary building)."""
    for text in texts:
        for tok in tokenize(text):
            if not tok.is_unit:
                yield tok.folded
