"""The Polish-English product-term lexicon: which words of the two languages name one thing.

Query understanding (:mod:`search.understand`) reads every query word through it: a Polish word
(``koszulę``) also matches the English words of its concept (``shirt``), so a Polish shopper finds
English-titled products, and an English word also matches the Polish words of its concept when
the catalogue is analysed in Polish too. The semantic retriever embeds the English rendering of
a Polish query (``granatowa koszula`` -> ``navy shirt``), because the default text encoder reads
English. Suggestions use the noun genders and adjective paradigms for agreement
(``krzesła dęb`` -> ``krzesła dębowe``).

The data is ``search/data/lexicon_pl_en.tsv`` (its header says the format): about 750 concepts
written by hand, each with English words and Polish lemmas and their word classes, from which
:mod:`search.inflect_pl` generates every inflected form (9,200 Polish forms, 2,500 English
words). Loading takes about 150 ms and 6 MB, once per process; reading a query is a dictionary
access per word.

Two lists make a Polish reading safe for English queries:

* an English word of any concept is read as English, never as Polish (``sofa``, ``top``, ``lamp``);
* ``search/data/pl_homographs.txt`` lists Polish forms that are also English words (``golf``,
  ``form``, ``par``): they are read as Polish only beside a word that is certainly Polish.

A query without Polish words is therefore never changed by the lexicon unless the catalogue is
analysed in Polish (where its English words also find the Polish titles).
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from search.analysis import Token, fold, tokenize
from search.inflect_pl import WORD_CLASSES, Gender, WordClass, inflect

#: The lexicon shipped with the package.
LEXICON_PATH = Path(__file__).resolve().parent / "data" / "lexicon_pl_en.tsv"
#: Polish forms that are also English words (read as Polish only beside a Polish word).
HOMOGRAPHS_PATH = Path(__file__).resolve().parent / "data" / "pl_homographs.txt"

Direction = Literal["both", "pl>en"]
Language = Literal["pl", "en"]

#: Concept kinds that name a kind of product (the head of a query or a title).
PRODUCT_KINDS = frozenset(
    {
        "clothing", "footwear", "accessory", "jewellery", "beauty", "furniture", "lighting",
        "textile", "decor", "kitchen", "bathroom", "garden", "diy", "tool", "electrical",
        "electronics", "sport", "toy",
    }
)  # fmt: skip

#: Letters only Polish writes (a word holding one is Polish).
_POLISH_LETTERS = frozenset("ąćęłńóśźż")


@dataclass(frozen=True, slots=True)
class PolishWord:
    """One Polish lemma of a concept, with its forms.

    Attributes:
        lemma: As written in the lexicon (``koszula``, ``strój kąpielowy``).
        word_class: Its word class (``f``, ``adj``...; phrases are ``inv``).
        tokens: The folded words of a phrase (one word for a single lemma).
        forms: Folded forms of a single word (empty for a phrase).
        surface_forms: The same forms with their diacritics (what the Polish stemmer reads).
        singular: Folded nominative singular ("" for a plural-only noun or a phrase).
        plural: Folded nominative plural ("" for a phrase).
    """

    lemma: str
    word_class: WordClass
    tokens: tuple[str, ...]
    forms: tuple[str, ...]
    surface_forms: tuple[str, ...]
    singular: str
    plural: str

    @property
    def gender(self) -> Gender | None:
        """The noun's gender (``pl`` for a plural-only noun), None for other words."""
        if self.word_class in ("m", "f", "n", "pl"):
            return self.word_class
        return None


@dataclass(frozen=True, slots=True)
class Concept:
    """One thing the lexicon names in both languages.

    Attributes:
        id: Row number among the concepts.
        kind: ``colour``, ``clothing``, ``material``... (see the data file's header).
        english: English words and phrases, as written, the usual one first.
        polish: The Polish words.
        direction: ``both``, or ``pl>en`` when English words do not expand to the Polish ones.
        english_words: Folded single English words that match it: the single words, their
            regular plurals and the joined form of a phrase (``t-shirt`` -> ``tshirt``).
    """

    id: int
    kind: str
    english: tuple[str, ...]
    polish: tuple[PolishWord, ...]
    direction: Direction
    english_words: tuple[str, ...]

    @property
    def rendering(self) -> str:
        """The English a Polish word of this concept is embedded as."""
        return self.english[0]

    @property
    def polish_forms(self) -> tuple[str, ...]:
        """Every folded form of its single Polish words."""
        return tuple(dict.fromkeys(f for word in self.polish for f in word.forms))

    @property
    def is_product(self) -> bool:
        """True for a kind of product (a shirt, a sofa), not a colour or a material."""
        return self.kind in PRODUCT_KINDS


@dataclass(frozen=True, slots=True)
class Reading:
    """What the lexicon makes of one query word.

    Attributes:
        language: ``pl`` (a Polish word: it also matches the English words of its concepts)
            or ``en`` (an English word: it also matches the Polish words).
        concepts: The concepts it names.
        rendering: For a Polish word, the English to embed in its place ("" for the later
            words of a phrase, whose first word carries the phrase's rendering); None for an
            English word.
    """

    language: Language
    concepts: tuple[int, ...]
    rendering: str | None = None


def english_forms(word: str) -> tuple[str, ...]:
    """A folded English word and its regular plurals (``dress`` -> ``dresses``)."""
    forms = [word]
    if word.endswith(("s", "x", "z", "ch", "sh")):
        forms.append(word + "es")
    elif word.endswith("y") and len(word) > 2 and word[-2] not in "aeiou":
        forms.append(word[:-1] + "ies")
    else:
        forms.append(word + "s")
    if word.endswith("fe"):
        forms.append(word[:-2] + "ves")
    elif word.endswith("f"):
        forms.append(word[:-1] + "ves")
    return tuple(forms)


def _words(text: str) -> tuple[str, ...]:
    return tuple(t.folded for t in tokenize(text) if not t.derived)


def _polish_word(entry: str, where: str) -> PolishWord:
    """Parse ``lemma/class[:form|form]``.

    Raises:
        ValueError: no class, or an unknown one (``where`` names the line).
    """
    head, _, extra = entry.partition(":")
    lemma, slash, word_class = head.rpartition("/")
    if not slash or not lemma.strip():
        raise ValueError(
            f"{where}: Polish entry {entry!r} needs a /class ({', '.join(WORD_CLASSES)})"
        )
    if word_class not in WORD_CLASSES:
        raise ValueError(
            f"{where}: unknown word class {word_class!r} in {entry!r}; valid: {', '.join(WORD_CLASSES)}"
        )
    lemma = lemma.strip().lower()
    tokens = _words(lemma)
    if len(tokens) != 1:
        return PolishWord(lemma, "inv", tokens, (), (), "", "")
    extras = tuple(f.strip().lower() for f in extra.split("|") if f.strip())
    found = inflect(lemma, word_class, extras)  # type: ignore[arg-type]
    return PolishWord(
        lemma,
        word_class,  # type: ignore[arg-type]
        tokens,
        tuple(dict.fromkeys(fold(f) for f in found.forms)),
        found.forms,
        fold(found.singular),
        fold(found.plural),
    )


def _same_word(typed: str, written: str) -> bool:
    """Whether a query word is a phrase word in some inflection: equal, or (both at least four
    letters) the same but for the last two letters of the shorter (``kąpielowe`` and
    ``kąpielowy``, ``koszuli`` and ``koszula``)."""
    if typed == written:
        return True
    shorter = min(len(typed), len(written))
    if shorter < 4 or abs(len(typed) - len(written)) > 2:
        return False
    return typed[: shorter - 2] == written[: shorter - 2]


class Lexicon:
    """The concepts and their lookup tables.

    Args:
        concepts: The concepts, ids in order.
        homographs: Folded Polish forms that are also English words.
    """

    def __init__(
        self, concepts: Sequence[Concept], homographs: frozenset[str] = frozenset()
    ) -> None:
        self.concepts: tuple[Concept, ...] = tuple(concepts)
        self.homographs = homographs
        english: dict[str, list[int]] = defaultdict(list)
        polish: dict[str, list[int]] = defaultdict(list)
        phrases: dict[str, list[tuple[tuple[str, ...], int]]] = defaultdict(list)
        english_phrases: dict[str, list[tuple[tuple[str, ...], int]]] = defaultdict(list)
        self._nouns: dict[str, tuple[Gender, bool]] = {}
        self._adjectives: dict[str, str] = {}
        for concept in self.concepts:
            for word in concept.english_words:
                english[word].append(concept.id)
            for phrase in concept.english:
                words = _words(phrase)
                if len(words) > 1:
                    english_phrases[words[0]].append((words, concept.id))
            for pw in concept.polish:
                if len(pw.tokens) > 1:
                    phrases[pw.tokens[0][:3]].append((pw.tokens, concept.id))
                    continue
                for form in pw.forms:
                    polish[form].append(concept.id)
                gender = pw.gender
                if gender is not None:
                    if pw.singular:
                        self._nouns.setdefault(pw.singular, (gender, False))
                    self._nouns.setdefault(pw.plural, (gender, True))
                if pw.word_class == "adj":
                    for form in pw.forms:
                        self._adjectives.setdefault(form, pw.lemma)
        self._english = {w: tuple(dict.fromkeys(ids)) for w, ids in english.items()}
        # A form naming several concepts renders as the one it is the lemma of (``baterie``:
        # batteries, not the plural of ``bateria``, a tap), else the first in the file.
        self._polish = {
            w: tuple(sorted(dict.fromkeys(ids), key=lambda c: not self._is_lemma(w, c)))
            for w, ids in polish.items()
        }
        self._phrases = {k: sorted(v, key=lambda p: -len(p[0])) for k, v in phrases.items()}
        self._english_phrases = {
            k: sorted(v, key=lambda p: -len(p[0])) for k, v in english_phrases.items()
        }

    def __len__(self) -> int:
        return len(self.concepts)

    def _is_lemma(self, folded: str, concept: int) -> bool:
        return any(pw.tokens == (folded,) for pw in self.concepts[concept].polish)

    def english(self, folded: str) -> tuple[int, ...]:
        """Concepts an English word (folded) names."""
        return self._english.get(folded, ())

    def polish(self, folded: str) -> tuple[int, ...]:
        """Concepts a Polish word (folded, any inflection) names."""
        return self._polish.get(folded, ())

    def noun(self, folded: str) -> tuple[Gender, bool] | None:
        """(gender, plural) of a nominative Polish noun form: ``krzesła`` -> ``("n", True)``."""
        return self._nouns.get(folded)

    def adjective(self, folded: str) -> str | None:
        """The lemma of a Polish adjective form: ``dębowe`` -> ``dębowy``."""
        return self._adjectives.get(folded)

    def polish_word(self, folded: str) -> PolishWord | None:
        """The single Polish word a form belongs to (the first concept's), or None."""
        for concept in self._polish.get(folded, ()):
            for word in self.concepts[concept].polish:
                if folded in word.forms:
                    return word
        return None

    def translations(self, folded: str) -> set[str]:
        """Every folded word a word means in either language: a Polish form's English words and
        other Polish forms, an English word's English words and (unless its concept reads only
        Polish to English) its Polish forms."""
        out: set[str] = set()
        for concept_id in self.polish(folded):
            concept = self.concepts[concept_id]
            out.update(concept.english_words, concept.polish_forms)
        for concept_id in self.english(folded):
            concept = self.concepts[concept_id]
            out.update(concept.english_words)
            if concept.direction == "both":
                out.update(concept.polish_forms)
        return out

    def is_polish(self, token: Token) -> bool:
        """True for a word that is certainly Polish: it has a letter only Polish writes, or it is
        a Polish form of the lexicon that is no English word."""
        if any(ch in _POLISH_LETTERS for ch in token.surface):
            return True
        folded = token.folded
        return (
            folded in self._polish
            and folded not in self._english
            and (folded not in self.homographs)
        )

    def read(
        self,
        tokens: Sequence[Token],
        *,
        whole_text: bool = False,
        stopword: Callable[[str], bool] | None = None,
    ) -> list[Reading | None]:
        """What each word of a text means to the lexicon.

        A phrase is read as a whole: a Polish one (``strój kąpielowy``, in any inflection of its
        words) names its concept and, for each word, what the word names alone (``buty
        sportowe``: sports shoes, shoes, sports); an English one (``night suit``, its last word
        in the plural too) likewise. A word that is an English word of some concept is
        English; any other Polish form is Polish, except a homograph, which is Polish only when
        some word of the text is certainly Polish (:meth:`is_polish`).

        Args:
            tokens: The text's tokens in order (stopwords included: phrases hold them).
            whole_text: Read Polish words only when the text as a whole is Polish: a word has
                a Polish letter, or at least two words are certainly Polish (:meth:`is_polish`)
                and none is English. For catalogues not analysed in Polish: an English query
                respelled by sound or mistyped (``kable ties``, ``5/8 in puch``, ``starter piece
                for a kompresor``) stays English.
            stopword: Tells stopwords (folded), which ``whole_text`` does not count.

        Returns:
            One reading per token (None: the lexicon does not know the word).
        """
        out: list[Reading | None] = [None] * len(tokens)
        folded = [t.folded for t in tokens]
        i = 0
        while i < len(tokens):
            matched = False
            for words, cid in self._phrases.get(folded[i][:3], ()):
                end = i + len(words)
                if end <= len(tokens) and all(
                    _same_word(folded[i + j], w) for j, w in enumerate(words)
                ):
                    rendering = self.concepts[cid].rendering
                    for j in range(i, end):
                        own = self._polish.get(folded[j], ())
                        concepts = tuple(dict.fromkeys((cid, *own)))
                        out[j] = Reading("pl", concepts, rendering if j == i else "")
                    i, matched = end, True
                    break
            if not matched:
                for words, cid in self._english_phrases.get(folded[i], ()):
                    end = i + len(words)
                    if (
                        end <= len(tokens)
                        and list(folded[i : end - 1]) == list(words[:-1])
                        and folded[end - 1] in english_forms(words[-1])
                    ):
                        for j in range(i, end):
                            own = self._english.get(folded[j], ())
                            out[j] = Reading("en", tuple(dict.fromkeys((cid, *own))))
                        i, matched = end, True
                        break
            if not matched:
                i += 1
        context: bool | None = None  # some word is certainly Polish (asked only for homographs)
        for i, token in enumerate(tokens):
            if out[i] is not None or token.is_number or token.is_unit:
                continue
            english = self._english.get(folded[i])
            if english:
                out[i] = Reading("en", english)
                continue
            polish = self._polish.get(folded[i])
            if polish and folded[i] in self.homographs:
                if context is None:
                    context = any(self.is_polish(t) for t in tokens if not t.is_number)
                if not context:
                    continue
            if polish:
                out[i] = Reading("pl", polish, self.concepts[polish[0]].rendering)
        if whole_text and not self._polish_text(tokens, out, stopword):
            return [r if r is None or r.language == "en" else None for r in out]
        return out

    def _polish_text(
        self,
        tokens: Sequence[Token],
        readings: Sequence[Reading | None],
        stopword: Callable[[str], bool] | None,
    ) -> bool:
        """Whether a text is Polish as a whole (see :meth:`read`'s ``whole_text``)."""
        if any(ch in _POLISH_LETTERS for t in tokens for ch in t.surface):
            return True
        words = [
            (t, r)
            for t, r in zip(tokens, readings, strict=True)
            if not (t.is_number or t.is_unit) and not (stopword is not None and stopword(t.folded))
        ]
        if any(r is not None and r.language == "en" for _, r in words):
            return False
        return sum(1 for t, r in words if r is not None and self.is_polish(t)) >= 2


def load_lexicon(
    path: Path = LEXICON_PATH, homographs_path: Path | None = HOMOGRAPHS_PATH
) -> Lexicon:
    """Read a lexicon file (the format is in the shipped file's header).

    Args:
        path: The TSV file.
        homographs_path: Polish forms that are also English words, one a line (``#`` comments),
            or None for none.

    Returns:
        The lexicon.

    Raises:
        ValueError: a malformed line (the message names the file and line).
        OSError: a file cannot be read.
    """
    concepts: list[Concept] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"{path.name}:{number}"
        columns = line.split("\t")
        if len(columns) not in (3, 4):
            raise ValueError(f"{where}: expected 3 or 4 tab-separated columns, got {len(columns)}")
        kind, english_text, polish_text = (c.strip() for c in columns[:3])
        direction = columns[3].strip() if len(columns) == 4 else "both"
        if direction not in ("both", "pl>en"):
            raise ValueError(f"{where}: direction {direction!r} is not 'both' or 'pl>en'")
        english = tuple(e.strip().lower() for e in english_text.split(",") if e.strip())
        if not kind or not english or not polish_text:
            raise ValueError(f"{where}: kind, English and Polish words are all required")
        polish = tuple(
            _polish_word(entry.strip(), where) for entry in polish_text.split(",") if entry.strip()
        )
        words: list[str] = []
        for phrase in english:
            parts = _words(phrase)
            if len(parts) == 1:
                words.extend(english_forms(parts[0]))
            elif parts:
                words.extend(english_forms("".join(parts)))
        concepts.append(
            Concept(
                id=len(concepts),
                kind=kind,
                english=english,
                polish=polish,
                direction=direction,  # type: ignore[arg-type]
                english_words=tuple(dict.fromkeys(words)),
            )
        )
    homographs: frozenset[str] = frozenset()
    if homographs_path is not None:
        homographs = frozenset(
            fold(line.strip())
            for line in homographs_path.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.lstrip().startswith("#")
        )
    return Lexicon(concepts, homographs)


_default: list[Lexicon] = []
_default_lock = threading.Lock()


def default_lexicon() -> Lexicon:
    """The packaged lexicon, loaded once per process."""
    with _default_lock:
        if not _default:
            _default.append(load_lexicon())
        return _default[0]
