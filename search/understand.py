"""Query understanding: normalise, tokenise, correct against the catalogue vocabulary, expand.

Each query word becomes a :class:`QueryWord` whose alternatives are the index terms it may mean,
tagged with how they were found (exact, prefix, fuzzy, phonetic, split, join, synonym,
translation) and weighted so that an exact match always beats a correction.

Cross-language matching reads the query through the Polish-English lexicon
(:mod:`search.lexicon`): a Polish word also matches the English words of what it names
(``koszulę`` -> ``shirt``, ``dżinsy`` -> ``jeans`` and ``jeansy``), and the semantic retriever
embeds the query's English rendering (``granatowa koszula`` -> ``navy shirt``); an English word
also matches the Polish words when the catalogue is analysed in Polish. A word the lexicon or the
Polish stemmer knows is never "corrected" into another word.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from search.analysis import Analyzer, Token, fold, tokenize
from search.colour import Colour, parse_colour, spot_colours
from search.errors import InvalidRequestError
from search.index.vocabulary import Vocabulary
from search.lexicon import Lexicon, Reading, default_lexicon
from search.types import SearchRequest

#: Letters only Polish writes: a word holding one is corrected by Polish sound rules only.
_POLISH_LETTERS = frozenset("ąćęłńóśźż")


class MatchKind(StrEnum):
    """How a query word was matched to an index term."""

    EXACT = "exact"
    PREFIX = "prefix"
    FUZZY = "fuzzy"
    PHONETIC = "phonetic"
    SPLIT = "split"
    JOIN = "join"
    SYNONYM = "synonym"
    TRANSLATION = "translation"


@dataclass(frozen=True, slots=True)
class Alternative:
    """One index term a query word may mean.

    Attributes:
        term_id: Column of the lexical index.
        word: The catalogue word behind the term (for explanations and "did you mean").
        weight: Multiplier of the term's BM25F contribution (1 for exact matches).
        kind: How it was found.
    """

    term_id: int
    word: str
    weight: float
    kind: MatchKind


@dataclass(frozen=True, slots=True)
class QueryWord:
    """One word of the query with the index terms it may mean.

    Attributes:
        text: The folded word (a split compound's part).
        alternatives: The index terms it may mean.
        is_number: A number or a unit.
        derived: Added by the tokenizer (``60cm``, ``2x4``), not written.
        written: A split compound's whole word.
        colour: The word names a colour.
        translation: The English it means when it was read as Polish (``koszulę`` ->
            ``shirt``; "" for the later words of a Polish phrase), else None.
    """

    text: str
    alternatives: tuple[Alternative, ...]
    is_number: bool = False
    derived: bool = False
    written: str | None = None
    colour: bool = False
    translation: str | None = None

    @property
    def as_written(self) -> str:
        """The query word as the shopper wrote it (a split compound's whole word)."""
        return self.written if self.written is not None else self.text

    @property
    def known(self) -> bool:
        """True when the word itself occurs in the catalogue."""
        return any(a.kind is MatchKind.EXACT for a in self.alternatives)


@dataclass(frozen=True, slots=True)
class AnalyzedQuery:
    """The understood query every retriever receives.

    Attributes:
        request: The caller's request.
        words: The query words with their alternatives.
        corrected_text: The query with unknown words replaced by their best correction, or None
            when nothing was corrected.
        semantic_text: The text the semantic retriever embeds (the corrected query).
        vector: The embedded ``semantic_text`` once the pipeline has computed it (shared by the
            semantic retriever and the ranking features), else None.
        colours: Colours the query asks for: those written in the text (their words are
            marked ``colour`` in ``words``) and the request's ``colour`` parameter.
        text_colours: Those of ``colours`` written in the text. Only they take part in the
            text match: the ``colour`` parameter is a filter (the engine narrows the products
            to it), so a product in that colour matching none of the query's words is no match.
    """

    request: SearchRequest
    words: tuple[QueryWord, ...]
    corrected_text: str | None
    semantic_text: str
    vector: npt.NDArray[np.float32] | None = None
    colours: tuple[Colour, ...] = ()
    text_colours: tuple[Colour, ...] = ()

    @property
    def colour_words(self) -> tuple[QueryWord, ...]:
        """The words naming a colour."""
        return tuple(w for w in self.words if w.colour)

    @property
    def other_words(self) -> tuple[QueryWord, ...]:
        """The words that do not name a colour."""
        return tuple(w for w in self.words if not w.colour)

    @property
    def is_empty(self) -> bool:
        """True for a browse request (no searchable words)."""
        return not self.words


@dataclass(frozen=True, slots=True)
class UnderstandConfig:
    """Weights and limits of query expansion.

    Attributes:
        prefix_weight: Weight of an as-you-type completion of the last word.
        fuzzy_weight: Weight of a correction at edit distance 1 (squared for distance 2).
        phonetic_weight: Weight of a sound-alike word.
        split_weight: Weight of the parts of a split compound ("toolbox" -> "tool box").
        join_weight: Weight of a joined pair ("tool box" -> "toolbox").
        rare_word_df: A known word this rare still gets corrections when a far more frequent
            neighbour exists (catalogue typos).
        max_corrections: Corrections kept per word.
        max_completions: Completions kept for the last word.
        synonyms: Folded word -> folded words meaning the same (merchandiser synonyms).
        translate: Read the query through the Polish-English lexicon (cross-language matching
            and the English rendering the semantic retriever embeds).
        translation_weight: Weight of a word's other-language terms. 1: a Polish shopper's
            ``koszula`` is as exact a match for a shirt titled in English as ``shirt`` is.
        max_sound_distance: A sound-alike is kept only within this share of the longer
            word's letters in edits. None: 0.5 where the catalogue is analysed in Polish
            (English sound rules merge every vowel, so a Polish word finds far English-looking
            words: ``stolowa`` -> ``stylu`` is 4 edits of 7), else 0.6, which English
            respellings need (``eesie`` -> ``easy``: on the Home Depot sound-alike queries 0.5
            lost 0.016 nDCG@10 on the 155 held-out queries it changed).
    """

    prefix_weight: float = 0.85
    fuzzy_weight: float = 0.8
    phonetic_weight: float = 0.75
    split_weight: float = 0.9
    join_weight: float = 0.9
    rare_word_df: int = 2
    max_corrections: int = 3
    max_completions: int = 30
    synonyms: Mapping[str, Sequence[str]] = field(default_factory=dict)
    translate: bool = True
    translation_weight: float = 1.0
    max_sound_distance: float | None = None


#: Weight of a translation into the other word class (a noun's adjective: ``jeansy`` ->
#: ``jeansowe``), relative to the translation weight.
OTHER_CLASS = 0.8


@dataclass(frozen=True, slots=True)
class _ConceptTerms:
    """A lexicon concept's terms in one catalogue.

    Attributes:
        nouns: Its Polish nouns (and invariable words), all forms.
        adjectives: Its Polish adjectives, all forms.
        phrases: The rarest word of each of its Polish phrases.
        english: Its English words and their plurals.
    """

    nouns: tuple[Alternative, ...]
    adjectives: tuple[Alternative, ...]
    phrases: tuple[Alternative, ...]
    english: tuple[Alternative, ...]


def max_edits(word: str) -> int:
    """Typo tolerance by word length: none below 3 letters, 1 up to 7, 2 from 8."""
    n = len(word)
    if n < 3:
        return 0
    return 1 if n < 8 else 2


class QueryUnderstander:
    """Builds :class:`AnalyzedQuery` objects against one snapshot's vocabulary.

    Args:
        analyzer: The snapshot's analyser (same languages as at index time).
        vocabulary: The snapshot's vocabulary.
        term_ids: The lexical index's term dictionary (numbers and stems not in the vocabulary).
        config: Expansion weights and limits.
        lexicon: The Polish-English lexicon; None takes the packaged one when
            ``config.translate`` is on.
    """

    def __init__(
        self,
        analyzer: Analyzer,
        vocabulary: Vocabulary,
        term_ids: Mapping[str, int],
        config: UnderstandConfig | None = None,
        lexicon: Lexicon | None = None,
    ) -> None:
        self.analyzer = analyzer
        self.vocabulary = vocabulary
        self.config = config or UnderstandConfig()
        self._term_ids = term_ids
        self.lexicon: Lexicon | None = None
        if self.config.translate:
            self.lexicon = lexicon if lexicon is not None else default_lexicon()
        self._polish = "pl" in analyzer.language_codes
        self._sound_distance = (
            self.config.max_sound_distance
            if self.config.max_sound_distance is not None
            else (0.5 if self._polish else 0.6)
        )
        # Concept -> its catalogue terms, found on first use.
        self._concept_terms: dict[int, _ConceptTerms] = {}

    def _alternatives_of(self, word: str, weight: float, kind: MatchKind) -> list[Alternative]:
        return [Alternative(t, word, weight, kind) for t in self.vocabulary.term_ids(word)]

    def _concept_alternatives(self, concept: int) -> _ConceptTerms:
        """A lexicon concept's terms in this catalogue (see :class:`_ConceptTerms`).

        Only words the catalogue holds count, and where it is analysed in a word's language,
        through their stems in that language: the terms of products written in it. A Polish word
        inside an English title (the brand "Dębowy Dwór") is analysed as English and does not
        answer "oak", and an English title's "But" is no Polish "but" (shoe), whose forms the
        English catalogue never holds.
        """
        found = self._concept_terms.get(concept)
        if found is not None:
            return found
        lexicon = self.lexicon
        assert lexicon is not None
        entry = lexicon.concepts[concept]
        weight = self.config.translation_weight

        def terms(words: Sequence[str], lang: str) -> tuple[Alternative, ...]:
            out: list[Alternative] = []
            for written in words:
                folded = fold(written)
                if folded not in self.vocabulary:
                    continue
                if lang not in self.analyzer.language_codes:
                    out += self._alternatives_of(folded, weight, MatchKind.TRANSLATION)
                    continue
                for token in tokenize(written)[:1]:
                    tid = self._term_id(self.analyzer.term(token, lang))
                    if tid is not None:
                        out.append(Alternative(tid, folded, weight, MatchKind.TRANSLATION))
            return tuple(_dedupe(out))

        english = terms(entry.english_words, "en")
        # A Polish form spelled like an English word ("sofa", "lamp"), or whose stem is an
        # English one ("sofy" -> "sofa"), is left to the English side: as a Polish term it would
        # also match the English titles (an English "couch" finding every "sofa" is a synonym,
        # not a translation).
        english_ids = {a.term_id for a in english}

        def polish(words: Sequence[str]) -> tuple[Alternative, ...]:
            found = terms([w for w in words if not lexicon.english(fold(w))], "pl")
            return tuple(a for a in found if a.term_id not in english_ids)

        nouns = [
            f
            for p in entry.polish
            if len(p.tokens) == 1 and p.word_class != "adj"
            for f in p.surface_forms
        ]
        adjectives = [f for p in entry.polish if p.word_class == "adj" for f in p.surface_forms]
        # A Polish phrase ("koszula nocna") answers an English word through its rarest word in
        # this catalogue ("nocna"): one word of a phrase cannot require the other.
        rarest = []
        for phrase in entry.polish:
            words = [w for w in phrase.lemma.split() if not self.analyzer.is_stopword(fold(w))]
            if len(phrase.tokens) > 1 and words:
                rarest.append(
                    min(words, key=lambda w: (self.vocabulary.doc_freq(fold(w)), -len(w)))
                )
        found = _ConceptTerms(polish(nouns), polish(adjectives), polish(rarest), english)
        self._concept_terms[concept] = found
        return found

    def _translations(self, reading: Reading | None, word: str) -> list[Alternative]:
        """The other language's terms of a word the lexicon read (see :class:`Reading`).

        A Polish word also matches its concepts' English words and other Polish words, those of
        the other word class (``jeansy`` -> ``jeansowe``) at :data:`OTHER_CLASS` of the weight,
        so a noun's own products come first. An English word matches the Polish words (phrases
        through their rarest word) where the catalogue is analysed in Polish.
        """
        if reading is None or self.lexicon is None:
            return []
        alts: list[Alternative] = []
        if reading.language == "pl":
            written = self.lexicon.polish_word(word)
            adjective = written is not None and written.word_class == "adj"
            for concept in reading.concepts:
                terms = self._concept_alternatives(concept)
                same, other = (
                    (terms.adjectives, terms.nouns)
                    if adjective
                    else (terms.nouns, terms.adjectives)
                )
                alts += [*same, *(replace(a, weight=a.weight * OTHER_CLASS) for a in other)]
                alts += terms.english
        elif self._polish:
            for concept in reading.concepts:
                if self.lexicon.concepts[concept].direction == "both":
                    terms = self._concept_alternatives(concept)
                    alts += [*terms.nouns, *terms.adjectives, *terms.phrases]
        return alts

    def _word(
        self,
        token: Token,
        is_last: bool,
        as_you_type: bool,
        synonyms: Mapping[str, Sequence[str]],
        reading: Reading | None = None,
    ) -> list[QueryWord]:
        cfg, vocab = self.config, self.vocabulary
        word = token.folded
        if token.is_number or token.is_unit:
            alts = [Alternative(t, word, 1.0, MatchKind.EXACT) for t in self._number_terms(word)]
            return [QueryWord(word, tuple(alts), is_number=True, derived=token.derived)]
        alts = self._alternatives_of(word, 1.0, MatchKind.EXACT)
        # A word read as Polish, or known to the catalogue only through its Polish stem
        # ("krzesła" -> "krzesło"), is a word the shop sells: never corrected into another.
        known_word = reading is not None and reading.language == "pl"
        if not alts:
            # Not a catalogue word, but its stem may still be an index term ("chairs" -> "chair").
            for lang in self.analyzer.language_codes:
                tid = self._term_id(self.analyzer.term(token, lang))
                if tid is not None:
                    alts.append(Alternative(tid, word, 1.0, MatchKind.EXACT))
                    known_word = known_word or lang == "pl"
            alts = _dedupe(alts)
        translation = None
        if reading is not None:
            alts += self._translations(reading, word)
            translation = reading.rendering if reading.language == "pl" else None
        df = vocab.doc_freq(word)
        for synonym in synonyms.get(word, ()):
            alts += self._alternatives_of(synonym, 1.0, MatchKind.SYNONYM)
        if is_last and as_you_type and word.isalpha() and len(word) >= 2:
            for cand in vocab.completions(word, cfg.max_completions):
                alts += self._alternatives_of(cand.word, cfg.prefix_weight, MatchKind.PREFIX)
        edits = max_edits(word) if word.isalpha() and not known_word else 0
        if edits and (not alts or df <= cfg.rare_word_df):
            corrections = vocab.fuzzy_candidates(word, edits)
            if alts:  # a rare known word: only a far more frequent neighbour is worth adding
                corrections = tuple(c for c in corrections if c.df >= 20 * max(df, 1))
            split = self._split(word) if not alts else None
            if split is not None and not any(c.distance == 1 for c in corrections):
                return [
                    QueryWord(
                        part,
                        tuple(self._alternatives_of(part, cfg.split_weight, MatchKind.SPLIT)),
                        written=word,
                    )
                    for part in split
                ]
            for cand in corrections[: cfg.max_corrections]:
                weight = cfg.fuzzy_weight**cand.distance
                alts += self._alternatives_of(cand.word, weight, MatchKind.FUZZY)
            if not alts or df <= cfg.rare_word_df:
                keys = self.analyzer.sound_keys(word)
                if self._polish and any(ch in _POLISH_LETTERS for ch in token.surface):
                    keys = tuple(k for k in keys if k.startswith("pl:"))  # sounds as Polish
                for cand in vocab.sound_alikes(word, keys, cfg.max_corrections):
                    if cand.distance > self._sound_distance * max(len(word), len(cand.word)):
                        continue
                    alts += self._alternatives_of(
                        cand.word, cfg.phonetic_weight, MatchKind.PHONETIC
                    )
        return [QueryWord(word, tuple(_dedupe(alts)), translation=translation)]

    def _number_terms(self, word: str) -> list[int]:
        tid = self._term_id(word)
        return [] if tid is None else [tid]

    def _term_id(self, term: str) -> int | None:
        return self._term_ids.get(term)

    def _split(self, word: str) -> tuple[str, str] | None:
        """Best split of an unknown word into two known words ("toolbox" -> "tool", "box")."""
        if len(word) < 6:
            return None
        best: tuple[int, tuple[str, str]] | None = None
        for i in range(3, len(word) - 2):
            left, right = word[:i], word[i:]
            score = min(self.vocabulary.doc_freq(left), self.vocabulary.doc_freq(right))
            if score >= 2 and (best is None or score > best[0]):
                best = (score, (left, right))
        return None if best is None else best[1]

    def understand(
        self, request: SearchRequest, synonyms: Mapping[str, Sequence[str]] | None = None
    ) -> AnalyzedQuery:
        """Analyse a request's text.

        Args:
            request: The caller's request.
            synonyms: This request's synonyms (the matched merchandising rules'), over the
                configured ones for the same words.

        Returns:
            The analysed query; ``words`` is empty for an empty or stopword-only text.
        """
        colours, text_colours, colour_words, text = self._colours(request)
        all_tokens = tokenize(text)
        readings = self._read(all_tokens)
        kept = [
            (tok, reading)
            for tok, reading in zip(all_tokens, readings, strict=True)
            if tok.is_number or tok.is_unit or not self.analyzer.is_stopword(tok.folded)
        ]
        as_you_type = request.as_you_type and not text[-1:].isspace()
        merged = {**self.config.synonyms, **synonyms} if synonyms else self.config.synonyms
        words: list[QueryWord] = []
        for i, (token, reading) in enumerate(kept):
            words.extend(self._word(token, i == len(kept) - 1, as_you_type, merged, reading))
        words = self._add_joins(words)
        corrected = self._corrected_text(words)
        semantic = corrected if corrected is not None else " ".join(text.split())
        if any(w.translation is not None for w in words):
            semantic = _rendering(words)
        if colour_words:
            words = [replace(w, colour=True) if w.text in colour_words else w for w in words]
        return AnalyzedQuery(
            request=request,
            words=tuple(words),
            corrected_text=corrected,
            semantic_text=semantic,
            colours=colours,
            text_colours=text_colours,
        )

    def _read(self, tokens: Sequence[Token]) -> list[Reading | None]:
        """The lexicon's reading of each token (all None without a lexicon). A catalogue not
        analysed in Polish reads Polish only in a Polish query as a whole (see
        :meth:`search.lexicon.Lexicon.read`), so respelled English ("kable ties") stays English."""
        if self.lexicon is None:
            return [None] * len(tokens)
        return self.lexicon.read(
            tokens, whole_text=not self._polish, stopword=self.analyzer.is_stopword
        )

    def _colours(
        self, request: SearchRequest
    ) -> tuple[tuple[Colour, ...], tuple[Colour, ...], set[str], str]:
        """Colours asked for in the text and the ``colour`` parameter, those of the text alone,
        the folded words of the text that name them, and the text with hex codes taken out
        (they are no words).

        Raises:
            InvalidRequestError: the ``colour`` parameter is no colour name or hex code.
        """
        text = unicodedata.normalize("NFC", request.text)
        mentions = spot_colours(text)[0] if text.strip() else ()
        colours = [m.colour for m in mentions]
        words = {t.folded for m in mentions if not m.text.startswith("#") for t in tokenize(m.text)}
        for m in sorted(mentions, key=lambda m: -m.start):
            if m.text.startswith("#"):
                text = text[: m.start] + " " + text[m.end :]
        in_text = tuple({(c.name, c.hex): c for c in colours}.values())
        if request.colour is not None:
            try:
                colours.append(parse_colour(request.colour))
            except ValueError as exc:
                raise InvalidRequestError("colour", str(exc)) from exc
        unique = tuple({(c.name, c.hex): c for c in colours}.values())
        return unique, in_text, words, text

    def _add_joins(self, words: list[QueryWord]) -> list[QueryWord]:
        """Let two adjacent words match their joined form ("tool box" finds "toolbox")."""
        out = list(words)
        for i in range(len(words) - 1):
            a, b = words[i], words[i + 1]
            if a.is_number or b.is_number:
                continue
            joined = a.text + b.text
            if self.vocabulary.doc_freq(joined) < 1:
                continue
            alts = self._alternatives_of(joined, self.config.join_weight, MatchKind.JOIN)
            out[i] = replace(out[i], alternatives=tuple(_dedupe([*out[i].alternatives, *alts])))
            out[i + 1] = replace(
                out[i + 1], alternatives=tuple(_dedupe([*out[i + 1].alternatives, *alts]))
            )
        return out

    def _corrected_text(self, words: Sequence[QueryWord]) -> str | None:
        """The query with corrected words replaced, or None when nothing changed."""
        written: list[str] = []
        corrected: list[str] = []
        for word in words:
            if word.derived:
                continue
            if not written or word.written is None or written[-1] != word.written:
                written.append(word.as_written)
            if word.known or word.is_number or not word.alternatives:
                corrected.append(word.text)
                continue
            best = max(word.alternatives, key=lambda a: a.weight)
            fixed = best.kind in (MatchKind.FUZZY, MatchKind.PHONETIC, MatchKind.SPLIT)
            corrected.append(best.word if fixed else word.text)
        text = " ".join(corrected)
        return text if text != " ".join(written) else None


def _rendering(words: Sequence[QueryWord]) -> str:
    """The query in English for the semantic retriever: each word read as Polish by its English
    (a phrase once), the others as written or corrected."""
    out: list[str] = []
    for word in words:
        if word.derived:
            continue
        if word.translation is not None:
            if word.translation:
                out.append(word.translation)
            continue
        best = max(word.alternatives, key=lambda a: a.weight, default=None)
        fixed = (
            best is not None
            and not word.known
            and not word.is_number
            and best.kind
            in (
                MatchKind.FUZZY,
                MatchKind.PHONETIC,
            )
        )
        out.append(best.word if fixed and best is not None else word.as_written)
    return " ".join(dict.fromkeys(out)) if out else ""


def _dedupe(alts: Sequence[Alternative]) -> list[Alternative]:
    """Keep the highest-weighted alternative per term id."""
    best: dict[int, Alternative] = {}
    for alt in alts:
        current = best.get(alt.term_id)
        if current is None or alt.weight > current.weight:
            best[alt.term_id] = alt
    return sorted(best.values(), key=lambda a: -a.weight)
