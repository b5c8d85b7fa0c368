"""Voice queries: catalogue hints for recognisers, and transcript -> catalogue terms correction.

A recogniser hears everyday English: brand names, sizes and fractions come out as the nearest
common words ("delta windemere tub chrome" -> "Delphi won the mere tub chrome", "blue cotton
shirt" -> "blue car insured"). :class:`VoiceQueryCorrector` maps a transcript back onto the
catalogue: spoken numbers become the catalogue's notation ("three quarter inch" -> "3/4 in"), and
runs of words that sound like a catalogue word or a two-word catalogue phrase are re-segmented
onto it by comparing sound codes of the whole run, not word by word. Per-word typo and sound-alike
matching then still happens in the query understander (:mod:`search.understand`).
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import jellyfish
from rapidfuzz import process
from rapidfuzz.distance import Indel, Levenshtein

from search.analysis import Analyzer, fold, tokenize
from search.index.vocabulary import Vocabulary
from search.types import Product, SearchResult
from search.voice_words import SAME_STEM, CatalogueWords
from search.voice_words import sound_key as word_sound_key

# --- spoken numbers ---------------------------------------------------------------------------

_UNITS_WORDS = {
    "zero": 0, "oh": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
    "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13,
    "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18,
    "nineteen": 19,
}  # fmt: skip
_TENS_WORDS = {
    "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
    "eighty": 80, "ninety": 90,
}  # fmt: skip
_DENOMINATORS = {
    "half": 2, "halves": 2, "third": 3, "thirds": 3, "quarter": 4, "quarters": 4, "fourth": 4,
    "fourths": 4, "eighth": 8, "eighths": 8, "sixteenth": 16, "sixteenths": 16,
    "thirtysecond": 32, "thirtyseconds": 32,
}  # fmt: skip
_UNICODE_FRACTIONS = {
    "½": " 1/2", "⅓": " 1/3", "⅔": " 2/3", "¼": " 1/4", "¾": " 3/4", "⅛": " 1/8", "⅜": " 3/8",
    "⅝": " 5/8", "⅞": " 7/8",
}  # fmt: skip
_DIGIT_WORDS = {str(v): k for k, v in _UNITS_WORDS.items() if k != "oh"} | {
    str(v): k for k, v in _TENS_WORDS.items()
}
_WORD_RE = re.compile(r"\d+/\d+|\d*\.\d+|\d+|[^\W\d_]+(?:'[^\W\d_]+)?")


def _read_number(words: Sequence[str], i: int) -> tuple[int, int] | None:
    """A cardinal spoken at ``words[i]`` ("twenty four", "a hundred"): (value, words used)."""
    j, value, seen = i, 0, False
    if j + 1 < len(words) and words[j] in ("a", "one") and words[j + 1] in ("hundred", "thousand"):
        value, j, seen = 1, j + 1, True
    while j < len(words):
        word = words[j]
        if word in _TENS_WORDS and (value % 100 == 0 or not seen):
            value += _TENS_WORDS[word]
            j, seen = j + 1, True
            if j < len(words) and words[j] in _UNITS_WORDS and 0 < _UNITS_WORDS[words[j]] < 10:
                value += _UNITS_WORDS[words[j]]
                j += 1
        elif word in _UNITS_WORDS and (not seen or (value % 100 == 0 and value >= 100)):
            if word == "oh" and not seen:
                return None
            value += _UNITS_WORDS[word]
            j, seen = j + 1, True
        elif word == "hundred" and seen and value < 100:
            value = max(value, 1) * 100
            j += 1
        elif word == "thousand" and seen and value < 1000:
            value = max(value, 1) * 1000
            j += 1
        elif word.isdigit() and not seen:
            value, j, seen = int(word), j + 1, True
            break
        else:
            break
    return (value, j - i) if seen else None


def spoken_numbers(text: str) -> str:
    """Write numbers, fractions and dimensions the way catalogue titles do.

    ``"three quarter inch"`` -> ``"3/4 inch"``, ``"one and a half"`` -> ``"1 1/2"``,
    ``"two by four"`` -> ``"2 x 4"``, ``"point seven five"`` -> ``".75"``, ``"twenty four volt"``
    -> ``"24 volt"``, ``"one slash two"`` -> ``"1/2"``, ``"¾"`` -> ``"3/4"``; whisper's
    ``"1-4"`` (for ¼) -> ``"1/4"``.

    Args:
        text: A transcript.

    Returns:
        Lower-case words separated by single spaces.
    """
    for char, repl in _UNICODE_FRACTIONS.items():
        text = text.replace(char, repl)
    text = re.sub(r"(?<=\d)-(?=(?:2|3|4|8|16|32)\b)", "/", text)
    text = text.lower().replace("-", " ").replace("thirty second", "thirtysecond")
    words = _number_homophones(_WORD_RE.findall(text))
    out: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        # "half inch", "a quarter", "an eighth"
        if word in ("half", "quarter", "eighth") and (not out or not _is_number(out[-1])):
            if out and out[-1] in ("a", "an"):
                out.pop()
            out.append(f"1/{_DENOMINATORS[word]}")
            i += 1
            continue
        number = _read_number(words, i)
        if number is None:
            if word == "point" and i + 1 < len(words) and words[i + 1] in _UNITS_WORDS:
                digits = ""
                j = i + 1
                while j < len(words) and words[j] in _UNITS_WORDS and _UNITS_WORDS[words[j]] < 10:
                    digits += str(_UNITS_WORDS[words[j]])
                    j += 1
                if digits:
                    head = out.pop() if out and out[-1].isdigit() else ""
                    out.append(f"{head}.{digits}")
                    i = j
                    continue
            if word in ("slash", "over", "dash") and out and out[-1].isdigit():
                following = _read_number(words, i + 1)
                if following is not None:
                    if word == "dash":  # "six dash five": two numbers, as "6-5" is indexed
                        out.append(str(following[0]))
                    else:
                        out[-1] = f"{out[-1]}/{following[0]}"
                    i += 1 + following[1]
                    continue
            if word == "by" and out and _is_number(out[-1]) and i + 1 < len(words):
                following = _read_number(words, i + 1)
                if following is not None or words[i + 1][:1].isdigit():
                    out.append("x")
                    i += 1
                    continue
            out.append(word)
            i += 1
            continue
        value, used = number
        j = i + used
        # "three quarter(s)", "five eighths": a fraction
        if j < len(words) and words[j] in _DENOMINATORS and value < 32:
            fraction = f"{value}/{_DENOMINATORS[words[j]]}"
            if out and out[-1] == "and" and len(out) >= 2 and out[-2].isdigit():
                out.pop()
                out.append(fraction)
            else:
                out.append(fraction)
            i = j + 1
            continue
        # "one and a half" -> "1 1/2"
        if (
            j + 2 < len(words)
            and words[j] == "and"
            and words[j + 1] in ("a", "an")
            and words[j + 2] in _DENOMINATORS
        ):
            out += [str(value), f"1/{_DENOMINATORS[words[j + 2]]}"]
            i = j + 3
            continue
        if j < len(words) and words[j] == "and" and j + 1 < len(words):
            follow = _read_number(words, j + 1)
            after = j + 1 + follow[1] if follow is not None else len(words)
            if follow is not None and after < len(words) and words[after] in _DENOMINATORS:
                # "two and three quarters"
                out += [str(value), f"{follow[0]}/{_DENOMINATORS[words[after]]}"]
                i = after + 1
                continue
        out.append(str(value))
        i = j
    return " ".join(out)


_HOMOPHONES = {
    "won": "one", "to": "two", "too": "two", "free": "three", "tree": "three", "for": "four",
    "fore": "four", "ate": "eight",
}  # fmt: skip
_FRACTION_NEXT = frozenset(
    {"slash", "over", "quarter", "quarters", "eighth", "eighths", "sixteenth", "sixteenths"}
)


def _number_homophones(words: list[str]) -> list[str]:
    """Read a word that sounds like a number as the number where a fraction follows.

    Recognisers write "three slash eight" as "free slash eight" and "four eighths" as "for
    eighths"; only before a fraction word, or a slash and a number, is the number certain.
    """
    out = list(words)
    for i, word in enumerate(words[:-1]):
        if word not in _HOMOPHONES or words[i + 1] not in _FRACTION_NEXT:
            continue
        number = _HOMOPHONES[word]
        if words[i + 1] in ("slash", "over"):
            following = words[i + 2] if i + 2 < len(words) else ""
            if not (following.isdigit() or following in _UNITS_WORDS):
                continue
        elif _UNITS_WORDS[number] >= _DENOMINATORS[words[i + 1]]:
            continue  # "for quarter" is no 4/4
        out[i] = number
    return out


def _is_number(word: str) -> bool:
    return bool(word) and (word[0].isdigit() or (word[0] == "." and word[1:2].isdigit()))


# --- correction -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Change:
    """One re-segmentation: spoken words replaced by catalogue words.

    Attributes:
        heard: The words as transcribed (after number normalisation).
        catalogue: The catalogue word or phrase put in their place.
        similarity: How alike they sound, 0..1.
    """

    heard: str
    catalogue: str
    similarity: float


@dataclass(frozen=True, slots=True)
class Correction:
    """A transcript mapped onto the catalogue.

    Attributes:
        transcript: What the recogniser heard.
        normalised: The transcript with numbers written as digits and fractions.
        text: The query to search: ``normalised`` with the changes applied.
        changes: What was replaced, in order.
        score: Average per-word fit to the catalogue (1: every word a catalogue word).
    """

    transcript: str
    normalised: str
    text: str
    changes: tuple[Change, ...]
    score: float

    @property
    def changed(self) -> bool:
        """True when the search text differs from the transcript as heard."""
        return bool(self.changes)


@dataclass(frozen=True, slots=True)
class VoiceCorrectorConfig:
    """Thresholds of :class:`VoiceQueryCorrector`.

    Attributes:
        min_df: Catalogue words rarer than this are never proposed; None: 1 for small
            catalogues (under 20,000 distinct words, where most words occur once), else 2.
        min_phrase_df: Two-word phrases must occur in this many titles to be proposed; None: 1
            for small catalogues, else 3.
        max_span: Longest run of spoken words replaced at once.
        min_similarity: Single words sounding less alike than this are left as heard.
        min_phrase_similarity: Runs of several words sounding less alike than this are left.
        margin: A replacement must beat keeping the words by this much (per replaced word).
        known_weight: Fit of a spoken word that is a common catalogue word (kept as it is).
        rare_weight: Fit of a catalogue word in fewer than ``common_df`` products.
        common_df: Products a catalogue word must occur in to count as common; None: 2 for small
            catalogues, else 20.
        stopword_weight: Fit of a stopword (dropped by the search anyway).
        unknown_weight: Fit of a spoken word the catalogue does not have.
        df_prior: How much a catalogue term's frequency adds to its similarity (0..1): frequent
            terms are likelier to be what was said.
        phrase_bonus: Added per spoken word when a run is replaced by a two-word catalogue
            phrase (the phrase is evidence that the words belong together).
        keep_length: Common catalogue words at least this long inside a replaced run must be
            kept by the replacement.
        polish_min_similarity: ``min_similarity`` for Polish transcripts. Polish sound keys
            keep vowels, so a misheard Polish word scores lower against its catalogue word than
            metaphone codes do in English; on the benchmark's Polish tune split 0.58 took the
            voice/typed ratio from 0.544 (at 0.72) to 0.611, and lower values gained nothing.
        edge_stopwords: Let a replaced run start or end with a stopword of three letters or
            more. Off by default: recognisers hear short function words well, and a run
            swallowing one turns "fresher with glass" into "freshener white glass" (a stopword
            inside a run, as in "Delphi won the mere" -> "delta windemere", is still allowed).
    """

    min_df: int | None = None
    min_phrase_df: int | None = None
    max_span: int = 4
    min_similarity: float = 0.72
    min_phrase_similarity: float = 0.62
    margin: float = 0.08
    known_weight: float = 1.0
    rare_weight: float = 0.8
    common_df: int | None = None
    stopword_weight: float = 0.55
    unknown_weight: float = 0.2
    df_prior: float = 0.07
    phrase_bonus: float = 0.1
    keep_length: int = 4
    polish_min_similarity: float = 0.58
    edge_stopwords: bool = False


_CANDIDATE_CACHE_SIZE = 20_000
"""Runs of spoken words whose catalogue candidates a corrector remembers."""

_COARSE = str.maketrans({"X": "S", "0": "T"})


def sound_code(text: str) -> str:
    """Metaphone code of a run of words read as one (``"car insured"`` -> ``"KRNSRT"``).

    Digits are read as English words first, so "1 to mere" sounds like "one to mere".
    """
    letters = "".join(
        _DIGIT_WORDS.get(word, word) for word in re.findall(r"[^\W_]+", fold(text.lower()))
    )
    letters = re.sub(r"[^a-z]", "", letters)
    # Metaphone tells "sh" (X) from "s" and "th" (0) from "t"; recognisers confuse them.
    return jellyfish.metaphone(letters).translate(_COARSE) if letters else ""


def _similarity(heard: str, heard_code: str, unit: str, unit_code: str) -> float:
    sounds = Levenshtein.normalized_similarity(heard_code, unit_code)
    spelling = Indel.normalized_similarity(heard.replace(" ", ""), unit.replace(" ", ""))
    return 0.65 * sounds + 0.35 * spelling


class VoiceQueryCorrector:
    """Maps transcripts onto a catalogue's words and phrases.

    Args:
        vocabulary: The catalogue vocabulary (words and document frequencies).
        analyzer: The snapshot's analyser (stopwords).
        phrases: Two-word catalogue phrases and the number of titles they occur in; see
            :func:`title_phrases`.
        config: Thresholds.
        words: The titles' words in their written forms (diacritics kept), for Polish-aware
            snapping and hints; None: the vocabulary's folded words.
    """

    def __init__(
        self,
        vocabulary: Vocabulary,
        analyzer: Analyzer,
        phrases: Mapping[str, int] | None = None,
        config: VoiceCorrectorConfig | None = None,
        words: CatalogueWords | None = None,
    ) -> None:
        self.vocabulary = vocabulary
        self.analyzer = analyzer
        self.words = words or CatalogueWords({w: w for w in vocabulary.words if w.isalpha()})
        self.config = config or VoiceCorrectorConfig()
        cfg = self.config
        small = len(vocabulary) < 20_000
        self.min_df = cfg.min_df if cfg.min_df is not None else (1 if small else 2)
        min_phrase_df = cfg.min_phrase_df if cfg.min_phrase_df is not None else (1 if small else 3)
        self.common_df = cfg.common_df if cfg.common_df is not None else (2 if small else 20)
        units: dict[str, int] = {}
        for word, df in zip(vocabulary.words, vocabulary.df.tolist(), strict=True):
            if df >= self.min_df and word.isalpha() and len(word) >= 3:
                units[word] = int(df)
        for phrase, df in (phrases or {}).items():
            if df >= min_phrase_df:
                units[phrase] = max(units.get(phrase, 0), int(df))
        self.units = units
        by_code: dict[str, list[str]] = defaultdict(list)
        for unit in units:
            code = sound_code(unit)
            if len(code) >= 2:
                by_code[code].append(unit)
        # Several units share a code: keep the most frequent ones.
        self._by_code = {
            code: sorted(found, key=lambda u: -units[u])[:4] for code, found in by_code.items()
        }
        by_len: dict[int, list[str]] = defaultdict(list)
        for code in self._by_code:
            by_len[len(code)].append(code)
        self._codes_by_len = dict(by_len)
        self._max_df = max(units.values(), default=1)
        # The readings of one utterance share most of their runs of words: each run's sound-alike
        # search is done once (bounded, cleared when full).
        self._candidate_cache: dict[tuple[str, float, str | None], list[tuple[float, str]]] = {}
        # Sound-code indexes of the units for other languages than English (made on first use).
        self._language_codes: dict[str, tuple[dict[str, list[str]], dict[int, list[str]]]] = {}

    @classmethod
    def from_products(
        cls,
        vocabulary: Vocabulary,
        analyzer: Analyzer,
        products: Iterable[Product],
        config: VoiceCorrectorConfig | None = None,
    ) -> VoiceQueryCorrector:
        """:meth:`from_titles` over products' titles and brands (a brand is a catalogue word a
        shopper says too)."""
        texts = (text for product in products for text in (product.title, product.brand or ""))
        return cls.from_titles(vocabulary, analyzer, texts, config)

    @classmethod
    def from_titles(
        cls,
        vocabulary: Vocabulary,
        analyzer: Analyzer,
        titles: Iterable[str],
        config: VoiceCorrectorConfig | None = None,
    ) -> VoiceQueryCorrector:
        """Build with the two-word phrases of product titles (see :func:`title_phrases`) and
        their words' written forms (:class:`~search.voice_words.CatalogueWords`)."""
        texts = list(titles)
        return cls(
            vocabulary,
            analyzer,
            title_phrases(texts, analyzer, min_count=1),
            config,
            CatalogueWords.from_texts(texts),
        )

    def hints(self, limit: int = 500, *, phrases: bool = True) -> tuple[str, ...]:
        """Catalogue words and phrases a recogniser should expect, most frequent first.

        Args:
            limit: At most this many.
            phrases: Include two-word phrases (vosk grammars take them; whisper prompts are
                better with single words).

        Returns:
            Words and phrases as the titles write them (lower case, diacritics kept: whisper
            writes "żółte", not "zolte"), stopwords left out.
        """
        ranked = sorted(
            (
                (df, unit)
                for unit, df in self.units.items()
                if (phrases or " " not in unit) and not self.analyzer.is_stopword(unit)
            ),
            key=lambda pair: (-pair[0], pair[1]),
        )
        return tuple(
            " ".join(self.words.written(w) for w in unit.split()) for _, unit in ranked[:limit]
        )

    def prepare(self, languages: Iterable[str]) -> None:
        """Build the look-up structures of these languages now rather than on their first
        transcript (Polish: Stempel's tables and the stems and sound keys of every catalogue
        word, seconds on a large catalogue; English needs none).

        Args:
            languages: Language codes transcripts will come in.
        """
        for language in languages:
            if language == "pl":
                self._codes(language)
                self.words.snap("krzesło", language)

    def _fit(self, word: str) -> float:
        cfg = self.config
        if _is_number(word) or word == "x":
            return cfg.known_weight
        if self.analyzer.is_stopword(word):
            return cfg.stopword_weight
        if len(word) < 3 and word.isalpha():
            return cfg.stopword_weight
        df = self.vocabulary.doc_freq(fold(word))
        if df >= self.common_df:
            return cfg.known_weight
        if df >= self.min_df or self._stem_known(word):
            return cfg.rare_weight
        return cfg.unknown_weight

    def _stem_known(self, word: str) -> bool:
        # "drills" is not a catalogue surface word when titles say "drill", but it is known.
        tokens = tokenize(word)
        if not tokens:
            return False
        stems = self.analyzer.terms_of_word(tokens[0].surface)
        return any(self.vocabulary.doc_freq(s) >= self.min_df for s in stems)

    def _candidates(
        self, heard: str, min_similarity: float, language: str | None = None
    ) -> list[tuple[float, str]]:
        key = (heard, min_similarity, language)
        cached = self._candidate_cache.get(key)
        if cached is None:
            if len(self._candidate_cache) >= _CANDIDATE_CACHE_SIZE:
                self._candidate_cache.clear()
            cached = self._candidate_cache[key] = self._find_candidates(
                heard, min_similarity, language
            )
        return cached

    def _codes(self, language: str | None) -> tuple[dict[str, list[str]], dict[int, list[str]]]:
        """Units by sound code, and codes by length: metaphone, or the language's own keys."""
        if language != "pl":
            return self._by_code, self._codes_by_len
        found = self._language_codes.get(language)
        if found is None:
            by_code: dict[str, list[str]] = defaultdict(list)
            for unit in self.units:
                code = word_sound_key(fold(unit).replace(" ", ""), language)
                if len(code) >= 2:
                    by_code[code].append(unit)
            kept = {c: sorted(f, key=lambda u: -self.units[u])[:4] for c, f in by_code.items()}
            by_len: dict[int, list[str]] = defaultdict(list)
            for code in kept:
                by_len[len(code)].append(code)
            found = self._language_codes[language] = (kept, dict(by_len))
        return found

    def _find_candidates(
        self, heard: str, min_similarity: float, language: str | None = None
    ) -> list[tuple[float, str]]:
        by_code, codes_by_len = self._codes(language)
        code = (
            word_sound_key(fold(heard).replace(" ", ""), language)
            if language == "pl"
            else sound_code(heard)
        )
        if len(code) < 2:
            return []
        found: dict[str, float] = {}
        for length in range(max(2, len(code) - 2), len(code) + 3):
            codes = codes_by_len.get(length)
            if not codes:
                continue
            for other, _, _ in process.extract(
                code,
                codes,
                scorer=Levenshtein.normalized_similarity,
                score_cutoff=0.6,
                limit=8,
            ):
                for unit in by_code[other]:
                    found[unit] = _similarity(heard, code, unit, other)
        # Frequent catalogue words are likelier to be what was said: a small prior breaks ties.
        prior = self.config.df_prior
        ranked = [
            (sim * (1 - prior + prior * math.log1p(self.units[u]) / math.log1p(self._max_df)), u)
            for u, sim in found.items()
            if sim >= min_similarity
        ]
        ranked.sort(reverse=True)
        return ranked[:5]

    def correct(self, transcript: str, language: str | None = None) -> Correction:
        """Map a transcript onto catalogue terms.

        Args:
            transcript: What the recogniser heard.
            language: Its language. ``"pl"``: every word that is a catalogue word once folded
                or in another inflection is first written as the catalogue writes it
                (``zolta`` -> ``żółta``, ``krzesla`` -> ``krzesło``), and sound-alike runs are
                compared by Polish sound keys; English number words are not read. Otherwise
                (English, or unknown) numbers are read and metaphone compares sounds.

        Returns:
            The correction; ``text`` is the query to search ("" for an empty transcript).
        """
        cfg = self.config
        snapped: list[Change] = []
        if language == "pl":
            words = _WORD_RE.findall(transcript.lower())
            words, snapped = self._snap_inflections(words)
            normalised = " ".join(words)
        else:
            normalised = spoken_numbers(transcript)
            words = normalised.split()
        n = len(words)
        if n == 0:
            return Correction(transcript, "", "", (), 0.0)
        fits = [self._fit(w) for w in words]
        # best[i]: best total fit of words[:i]; choice[i]: (start, replacement or None).
        best = [0.0] + [-math.inf] * n
        choice: list[tuple[int, str | None, float]] = [(0, None, 0.0)] * (n + 1)
        for end in range(1, n + 1):
            keep = best[end - 1] + fits[end - 1]
            best[end], choice[end] = keep, (end - 1, None, 0.0)
            for start in range(max(0, end - cfg.max_span), end):
                span = words[start:end]
                span_fit = sum(fits[start:end])
                # Only runs holding a word the catalogue lacks are suspect; numbers stay.
                if cfg.unknown_weight not in fits[start:end] or any(
                    "/" in w or "." in w or w == "x" for w in span
                ):
                    continue
                if len(span) == 1 and len(span[0]) < 4:
                    continue
                if not cfg.edge_stopwords and any(
                    len(w) >= 3 and self.analyzer.is_stopword(w) for w in (span[0], span[-1])
                ):
                    continue
                heard = " ".join(span)
                single = cfg.polish_min_similarity if language == "pl" else cfg.min_similarity
                threshold = single if len(span) == 1 else cfg.min_phrase_similarity
                # Common catalogue words inside the run were heard right: the replacement must
                # keep them ("kitchen fauci" -> "kitchen faucet", "count her" -> "counter").
                required = {
                    w
                    for w, fit in zip(span, fits[start:end], strict=True)
                    if fit >= cfg.known_weight and len(w) >= cfg.keep_length and w.isalpha()
                }
                for sim, unit in self._candidates(heard, threshold, language):
                    if unit == heard or not all(w in unit for w in required):
                        continue
                    gain = (sim + (cfg.phrase_bonus if " " in unit else 0.0)) * len(span)
                    if gain < span_fit + cfg.margin * len(span):
                        continue
                    total = best[start] + gain
                    if total > best[end]:
                        best[end], choice[end] = total, (start, unit, sim)
                    break
        out: list[str] = []
        changes: list[Change] = []
        end = n
        while end > 0:
            start, chosen, similarity = choice[end]
            if chosen is None:
                out.append(words[end - 1])
            else:
                if language == "pl":
                    chosen = " ".join(self.words.written(w) for w in chosen.split())
                out.append(chosen)
                changes.append(Change(" ".join(words[start:end]), chosen, round(similarity, 3)))
            end = start
        out.reverse()
        changes.reverse()
        return Correction(transcript, normalised, " ".join(out), (*snapped, *changes), best[n] / n)

    def _snap_inflections(self, words: list[str]) -> tuple[list[str], list[Change]]:
        """Polish words written as the catalogue writes them when they are its words folded
        or inflected (similarity at least ``SAME_STEM * 0.8``); others are left as heard."""
        out: list[str] = []
        changes: list[Change] = []
        for word in words:
            if not word.isalpha() or len(word) < 3 or self.analyzer.is_stopword(fold(word)):
                out.append(word)
                continue
            found = self.words.snap(word, "pl", limit=1, min_similarity=1.0)
            if found and found[0][0] >= SAME_STEM * 0.8 and found[0][1] != word:
                changes.append(Change(word, found[0][1], found[0][0]))
                out.append(found[0][1])
            else:
                out.append(word)
        return out, changes

    def best_of(self, transcripts: Sequence[str]) -> Correction:
        """Correct each reading of an utterance and keep the one that fits the catalogue best.

        Args:
            transcripts: Readings, best first (ties keep the earlier one).

        Returns:
            The best correction (an empty one when there are no readings).
        """
        best: Correction | None = None
        for text in transcripts:
            correction = self.correct(text)
            if best is None or correction.score > best.score + 0.05:
                best = correction
        return best if best is not None else Correction("", "", "", (), 0.0)


@dataclass(frozen=True, slots=True)
class ReadingChoiceConfig:
    """How :func:`search_readings` weighs a recogniser's readings of one utterance.

    Each reading gets ``acoustic * log(confidence / best confidence) + fit * correction score +
    coverage * title coverage``; the highest is answered. The default weights were chosen on the
    benchmark's tune split (``python -m benchmarks.voice --split tune``), never on the held-out
    queries it reports; nearby weights score within 0.01 there.

    Attributes:
        max_readings: Readings considered at most (each distinct correction costs one search).
        acoustic: Weight of the recogniser's own preference.
        fit: Weight of :attr:`Correction.score` (how much of the reading is catalogue words).
        coverage: Weight of the share of the reading's words found together in one of the top
            titles it retrieves: words that occur together in a product are likelier to be what
            the shopper said than words that only each occur somewhere.
        top_titles: Titles looked at for the coverage.
    """

    max_readings: int = 4
    acoustic: float = 0.5
    fit: float = 1.0
    coverage: float = 0.25
    top_titles: int = 3

    def __post_init__(self) -> None:
        if self.max_readings < 1:
            raise ValueError(f"max_readings must be at least 1, got {self.max_readings}")
        if self.top_titles < 1:
            raise ValueError(f"top_titles must be at least 1, got {self.top_titles}")


@dataclass(frozen=True, slots=True)
class VoiceOutcome:
    """What :func:`search_readings` searched and found.

    Attributes:
        correction: The chosen reading, mapped onto the catalogue (its ``text`` was searched).
        result: The result of searching it; None when there was nothing to search.
        considered: Every reading's correction, in the recogniser's order.
        scores: The choice score of each considered reading (same order); NaN for a reading
            not searched because it could not have won.
    """

    correction: Correction
    result: SearchResult | None
    considered: tuple[Correction, ...] = ()
    scores: tuple[float, ...] = ()

    @property
    def query(self) -> str:
        """The query searched ("" when nothing was)."""
        return self.correction.text


def title_coverage(analyzer: Analyzer, query: str, titles: Iterable[str]) -> float:
    """Largest share of the query's index terms that one title holds (0..1).

    Args:
        analyzer: The catalogue analyser (stopwords, stems).
        query: A query.
        titles: Titles of products it retrieved, best first.

    Returns:
        0 for a query without terms.
    """
    wanted = set(analyzer.document_terms(query))
    if not wanted:
        return 0.0
    best = 0.0
    for title in titles:
        best = max(best, len(wanted & set(analyzer.document_terms(title))) / len(wanted))
        if best >= 1.0:
            break
    return best


def search_readings(
    corrector: VoiceQueryCorrector,
    readings: Sequence[tuple[str, float]],
    search: Callable[[str], SearchResult | None],
    config: ReadingChoiceConfig | None = None,
    language: str | None = None,
) -> VoiceOutcome:
    """Correct each reading of an utterance, search them, and keep the likeliest.

    A recogniser's best reading is often a near miss that a runner-up gets right ("pellet stone
    pipe" / "pellet stove pipe"). Each reading is mapped onto the catalogue and searched; the
    choice weighs the recogniser's confidence, how much of the corrected reading is catalogue
    vocabulary, and whether its words occur together in a top title.

    Args:
        corrector: The catalogue corrector.
        readings: ``(text, confidence)`` best first; confidences in 0..1, comparable among
            themselves.
        search: Searches a query text (None for an empty one).
        config: Weights; the defaults when None.
        language: The readings' language (see :meth:`VoiceQueryCorrector.correct`).

    Returns:
        The outcome (an empty correction and no result when there is no reading).
    """
    cfg = config or ReadingChoiceConfig()
    seen: dict[str, None] = {}
    corrections: list[tuple[Correction, float]] = []
    for text, confidence in readings[: cfg.max_readings]:
        correction = corrector.correct(text, language)
        if correction.text and correction.text not in seen:
            seen[correction.text] = None
            corrections.append((correction, confidence))
    if not corrections:
        return VoiceOutcome(Correction("", "", "", (), 0.0), None)
    top = max(max(c for _, c in corrections), 1e-9)
    # Before searching, a reading's score is known but for the coverage (at most 1): readings
    # that could not beat the best one searched even with full coverage are not searched.
    known = [
        cfg.acoustic * math.log(max(confidence, 1e-9) / top) + cfg.fit * correction.score
        for correction, confidence in corrections
    ]
    scores = [math.nan] * len(corrections)
    best: tuple[float, int] | None = None  # (score, -index): ties go to the earlier reading
    results: dict[int, SearchResult | None] = {}
    for i in sorted(range(len(corrections)), key=lambda i: (-known[i], i)):
        if best is not None and known[i] + cfg.coverage < best[0]:
            break
        correction = corrections[i][0]
        results[i] = result = search(correction.text)
        titles = [hit.product.title for hit in result.hits[: cfg.top_titles]] if result else []
        coverage = title_coverage(corrector.analyzer, correction.text, titles)
        scores[i] = known[i] + cfg.coverage * coverage
        if best is None or (scores[i], -i) > best:
            best = (scores[i], -i)
    assert best is not None
    chosen = -best[1]
    return VoiceOutcome(
        corrections[chosen][0],
        results[chosen],
        tuple(c for c, _ in corrections),
        tuple(scores),
    )


def title_phrases(titles: Iterable[str], analyzer: Analyzer, min_count: int = 2) -> dict[str, int]:
    """Two-word phrases of product titles (adjacent alphabetic, non-stopword words).

    Args:
        titles: Product titles (brands may be added as titles too).
        analyzer: For stopwords.
        min_count: Phrases in fewer titles are dropped.

    Returns:
        Folded phrase -> number of titles it occurs in.
    """
    counts: Counter[str] = Counter()
    for title in titles:
        words = [t.folded for t in tokenize(title) if not t.is_number and not t.is_unit]
        seen: set[str] = set()
        for a, b in itertools.pairwise(words):
            if (
                a.isalpha()
                and b.isalpha()
                and len(a) > 1
                and len(b) > 1
                and not analyzer.is_stopword(a)
                and not analyzer.is_stopword(b)
            ):
                seen.add(f"{a} {b}")
        counts.update(seen)
    return {phrase: c for phrase, c in counts.items() if c >= min_count}
