"""Vocabulary look-ups and query understanding: corrections, completions, compounds, synonyms."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from search.analysis import Analyzer
from search.index.lexical import LexicalDataBuilder
from search.index.vocabulary import Vocabulary, VocabularyBuilder
from search.types import SearchRequest
from search.understand import (
    AnalyzedQuery,
    MatchKind,
    QueryUnderstander,
    QueryWord,
    UnderstandConfig,
    max_edits,
)

TEXTS = (
    "toilet seat",
    "white toilet",
    "oak bookshelf",
    "square mirror",
    "white wardrobe",
    "sofa bed",
    "ox cart",
    "oak chair",
    "phone stand",
)


def make_understander(
    texts: Sequence[str],
    languages: tuple[str, ...] = ("en",),
    config: UnderstandConfig | None = None,
) -> QueryUnderstander:
    """An understander over a tiny catalogue, one title per product."""
    analyzer = Analyzer(languages)
    lexical = LexicalDataBuilder()
    vocabulary = VocabularyBuilder(analyzer)
    for text in texts:
        lexical.add({"title": analyzer.document_terms(text)})
        vocabulary.add([text])
    vocab = vocabulary.build(lexical.term_id)
    data = lexical.build()
    return QueryUnderstander(analyzer, vocab, {t: i for i, t in enumerate(data.terms)}, config)


@pytest.fixture(scope="module")
def understander() -> QueryUnderstander:
    """Understander over :data:`TEXTS`."""
    return make_understander(TEXTS)


def understand(u: QueryUnderstander, text: str, *, as_you_type: bool = True) -> AnalyzedQuery:
    """Analyse a text."""
    return u.understand(SearchRequest(text=text, as_you_type=as_you_type))


def kinds(word: QueryWord) -> dict[str, MatchKind]:
    """Catalogue word -> match kind of a query word's alternatives."""
    return {a.word: a.kind for a in word.alternatives}


@pytest.fixture(scope="module")
def vocabulary(understander: QueryUnderstander) -> Vocabulary:
    """The vocabulary of :data:`TEXTS`."""
    return understander.vocabulary


class TestVocabulary:
    def test_words_and_document_frequencies(self, vocabulary: Vocabulary) -> None:
        assert "toilet" in vocabulary
        assert vocabulary.doc_freq("toilet") == 2
        assert vocabulary.doc_freq("white") == 2
        assert vocabulary.doc_freq("nope") == 0
        assert vocabulary.term_ids("nope") == ()
        assert vocabulary.words == sorted(vocabulary.words)

    @pytest.mark.parametrize(
        ("word", "max_distance", "expected"),
        [
            ("toliet", 1, ("toilet", 1)),  # transposition: one edit
            ("toilett", 1, ("toilet", 1)),
            ("bokshelv", 2, ("bookshelf", 2)),
            ("bokshelv", 1, None),
            ("", 1, None),
        ],
    )
    def test_fuzzy_candidates(
        self, vocabulary: Vocabulary, word: str, max_distance: int, expected: tuple[str, int] | None
    ) -> None:
        found = [(c.word, c.distance) for c in vocabulary.fuzzy_candidates(word, max_distance)]
        if expected is None:
            assert found == []
        else:
            assert found[0] == expected

    def test_fuzzy_candidates_equal_an_exhaustive_damerau_levenshtein_search(self) -> None:
        """The fast screen drops nothing: for random words and typos of them, the candidates
        are what comparing every word by Damerau-Levenshtein finds, including the one script
        alignment distance cannot follow (a transposition with a letter inserted between), and
        with Polish letters and letters outside both alphabets, which share the letter mask's
        spare bits."""
        import random

        from rapidfuzz.distance import DamerauLevenshtein

        rng = random.Random(7)
        letters = "abcdeilnorstąłóéßø"
        words = sorted({"".join(rng.choices(letters, k=rng.randint(2, 8))) for _ in range(600)})
        words = sorted(set(words) | {"abc", "ca", "acb", "bca"})
        vocabulary = Vocabulary(words, [1] * len(words), [()] * len(words), [()] * len(words))
        probes = ["ca", "ac", "cab", *rng.sample(words, 60)]
        probes += ["".join(rng.choices(letters, k=rng.randint(2, 8))) for _ in range(60)]
        for probe in probes:
            for edits in (1, 2, 3):
                expected = sorted(
                    (DamerauLevenshtein.distance(probe, w), w)
                    for w in words
                    if w != probe and DamerauLevenshtein.distance(probe, w) <= edits
                )
                found = vocabulary.fuzzy_candidates(probe, edits, limit=10_000)
                assert sorted((c.distance, c.word) for c in found) == expected, (probe, edits)

    def test_fuzzy_candidates_skip_the_word_itself(self, vocabulary: Vocabulary) -> None:
        assert "toilet" not in [c.word for c in vocabulary.fuzzy_candidates("toilet", 2)]

    @pytest.mark.parametrize(
        ("prefix", "expected"),
        [("war", ["wardrobe"]), ("wardrobe", []), ("zzz", []), ("", None)],
    )
    def test_completions(
        self, vocabulary: Vocabulary, prefix: str, expected: list[str] | None
    ) -> None:
        words = [c.word for c in vocabulary.completions(prefix)]
        if expected is None:  # the empty prefix completes to the most frequent words
            assert words[0] in {"toilet", "white", "oak"}
        else:
            assert words == expected

    def test_completions_most_frequent_first_and_limited(self) -> None:
        vocab = make_understander(["table", "table", "tablet", "tab", "tabasco"]).vocabulary
        assert [c.word for c in vocab.completions("tab")][:1] == ["table"]
        assert [c.word for c in vocab.completions("tab", limit=1)] == ["table"]

    def test_sound_alikes(self, vocabulary: Vocabulary) -> None:
        analyzer = Analyzer(("en",))
        found = vocabulary.sound_alikes("skware", analyzer.sound_keys("skware"))
        assert [c.word for c in found] == ["square"]
        assert vocabulary.sound_alikes("skware", ()) == ()

    def test_save_and_load(self, vocabulary: Vocabulary, tmp_path: Path) -> None:
        path = tmp_path / "vocabulary.json"
        vocabulary.save(path)
        loaded = Vocabulary.load(path)
        assert loaded.words == vocabulary.words
        assert loaded.df.tolist() == vocabulary.df.tolist()
        assert loaded.terms == vocabulary.terms
        assert loaded.sound_keys == vocabulary.sound_keys

    @pytest.mark.parametrize("content", [b"[]", b'{"df": []}'])
    def test_load_refuses_other_files(self, tmp_path: Path, content: bytes) -> None:
        path = tmp_path / "vocabulary.json"
        path.write_bytes(content)
        with pytest.raises(ValueError, match="not a vocabulary"):
            Vocabulary.load(path)

    def test_lengths_must_agree(self) -> None:
        with pytest.raises(ValueError, match="same length"):
            Vocabulary(["a", "b"], [1], [(), ()], [(), ()])


class TestMaxEdits:
    @pytest.mark.parametrize(
        ("word", "edits"),
        [("", 0), ("ab", 0), ("abc", 1), ("abcdefg", 1), ("abcdefgh", 2), ("a" * 20, 2)],
    )
    def test_by_length(self, word: str, edits: int) -> None:
        assert max_edits(word) == edits


class TestUnderstand:
    @pytest.mark.parametrize("text", ["", "   ", "the", "the and of", "!!!"])
    def test_empty_and_stopword_only_queries(
        self, understander: QueryUnderstander, text: str
    ) -> None:
        query = understand(understander, text)
        assert query.is_empty
        assert query.words == ()
        assert query.corrected_text is None

    def test_polish_stopwords_with_polish_configured(self) -> None:
        u = make_understander(["krzesło"], languages=("en", "pl"))
        assert understand(u, "i w z na").is_empty

    def test_known_word_is_exact(self, understander: QueryUnderstander) -> None:
        (word,) = understand(understander, "wardrobe").words
        assert word.known
        assert kinds(word) == {"wardrobe": MatchKind.EXACT}
        assert word.alternatives[0].weight == 1.0

    def test_inflection_matches_by_stem(self, understander: QueryUnderstander) -> None:
        (word,) = understand(understander, "chairs").words
        assert word.known
        assert [a.kind for a in word.alternatives] == [MatchKind.EXACT]

    @pytest.mark.parametrize(
        ("typo", "correction", "distance"),
        [
            ("toliet", "toilet", 1),  # transposition
            ("toilit", "toilet", 1),
            ("wardrobbe", "wardrobe", 1),
            ("bokshelv", "bookshelf", 2),  # 8 letters: two edits allowed
        ],
    )
    def test_fuzzy_correction(
        self, understander: QueryUnderstander, typo: str, correction: str, distance: int
    ) -> None:
        query = understand(understander, typo, as_you_type=False)
        (word,) = query.words
        assert not word.known
        alternative = next(a for a in word.alternatives if a.word == correction)
        assert alternative.kind is MatchKind.FUZZY
        assert alternative.weight == pytest.approx(understander.config.fuzzy_weight**distance)
        assert query.corrected_text == correction

    def test_two_edits_are_too_many_for_a_short_word(self, understander: QueryUnderstander) -> None:
        # "tiolat" is two edits from "toilet" but has only 6 letters.
        (word,) = understand(understander, "tiolat", as_you_type=False).words
        assert MatchKind.FUZZY not in kinds(word).values()

    def test_no_fuzzy_correction_for_two_letter_words(
        self, understander: QueryUnderstander
    ) -> None:
        (word,) = understand(understander, "ax", as_you_type=False).words  # "ox" is one edit away
        assert word.alternatives == ()

    def test_sound_alike(self, understander: QueryUnderstander) -> None:
        query = understand(understander, "skware mirror")
        assert kinds(query.words[0]) == {"square": MatchKind.PHONETIC}
        assert query.words[0].alternatives[0].weight == understander.config.phonetic_weight
        assert query.corrected_text == "square mirror"

    def test_corrected_text_is_none_when_everything_is_known(
        self, understander: QueryUnderstander
    ) -> None:
        query = understand(understander, "White  Toilet")
        assert query.corrected_text is None
        assert query.semantic_text == "White Toilet"

    def test_semantic_text_is_the_corrected_query(self, understander: QueryUnderstander) -> None:
        query = understand(understander, "white toliet")
        assert query.corrected_text == "white toilet"
        assert query.semantic_text == "white toilet"

    def test_unknown_word_without_candidates_has_no_alternatives(
        self, understander: QueryUnderstander
    ) -> None:
        query = understand(understander, "xylophone")
        assert [w.alternatives for w in query.words] == [()]
        assert query.corrected_text is None
        assert not query.is_empty


class TestAsYouType:
    @pytest.mark.parametrize(
        ("text", "as_you_type", "completed"),
        [
            ("wardr", True, True),
            ("wardr", False, False),
            ("wardr ", True, False),  # a trailing space ends the word
            ("oak wardr", True, True),
            ("wardr oak", True, False),  # only the last word is a prefix
            ("w", True, False),  # one letter is too short to complete
        ],
    )
    def test_prefix_completion(
        self, understander: QueryUnderstander, text: str, as_you_type: bool, completed: bool
    ) -> None:
        query = understand(understander, text, as_you_type=as_you_type)
        prefix_words = {
            a.word for w in query.words for a in w.alternatives if a.kind is MatchKind.PREFIX
        }
        assert prefix_words == ({"wardrobe"} if completed else set())

    def test_completion_is_weighted_below_exact(self, understander: QueryUnderstander) -> None:
        (word,) = understand(understander, "wardr").words
        (alternative,) = word.alternatives
        assert alternative.weight == understander.config.prefix_weight < 1.0
        # A completion is not a correction.
        assert understand(understander, "wardr").corrected_text is None


class TestCompounds:
    def test_split_unknown_compound(self) -> None:
        u = make_understander(["tool bag", "tool belt", "box fan", "storage box"])
        query = understand(u, "toolbox", as_you_type=False)
        assert [w.text for w in query.words] == ["tool", "box"]
        assert all(kinds(w) == {w.text: MatchKind.SPLIT} for w in query.words)
        assert all(a.weight == u.config.split_weight for w in query.words for a in w.alternatives)

    def test_split_is_reported_as_corrected_text(self) -> None:
        u = make_understander(["tool bag", "tool belt", "box fan", "storage box"])
        assert understand(u, "toolbox", as_you_type=False).corrected_text == "tool box"

    def test_no_split_when_a_part_is_rare(self) -> None:
        u = make_understander(["tool bag", "box fan", "storage box"])  # "tool" only once
        query = understand(u, "toolbox", as_you_type=False)
        assert [w.text for w in query.words] == ["toolbox"]

    def test_join_adjacent_words(self) -> None:
        u = make_understander(["metal toolbox", "tool bag", "box fan"])
        query = understand(u, "tool box")
        assert [w.text for w in query.words] == ["tool", "box"]
        for word in query.words:
            assert kinds(word)[word.text] is MatchKind.EXACT
            assert kinds(word)["toolbox"] is MatchKind.JOIN
        assert query.corrected_text is None

    def test_numbers_are_never_joined(self) -> None:
        u = make_understander(["size 42", "shoe42"])
        query = understand(u, "shoe 42")
        assert all(MatchKind.JOIN not in kinds(w).values() for w in query.words)


class TestSynonyms:
    @pytest.mark.parametrize(
        ("synonyms", "expected"),
        [({}, set()), ({"couch": ("sofa",)}, {"sofa"}), ({"couch": ("sofa", "settee")}, {"sofa"})],
        ids=["none", "one", "unknown synonym ignored"],
    )
    def test_synonyms(self, synonyms: dict[str, tuple[str, ...]], expected: set[str]) -> None:
        u = make_understander(["sofa bed", "oak chair"], config=UnderstandConfig(synonyms=synonyms))
        (word,) = understand(u, "couch", as_you_type=False).words
        found = {a.word for a in word.alternatives if a.kind is MatchKind.SYNONYM}
        assert found == expected
        assert all(a.weight == 1.0 for a in word.alternatives if a.kind is MatchKind.SYNONYM)


class TestNumbers:
    def test_numbers_and_units_are_exact_terms(self) -> None:
        u = make_understander(["oak table 160 cm"])
        query = understand(u, "table 160cm")
        numbers = [w for w in query.words if w.is_number]
        assert [w.text for w in numbers] == ["160", "cm", "160cm"]
        assert all(kinds(w) == {w.text: MatchKind.EXACT} for w in numbers)

    def test_unknown_number_has_no_alternatives(self) -> None:
        u = make_understander(["oak table 160 cm"])
        (word,) = understand(u, "999").words
        assert word.is_number
        assert word.alternatives == ()

    def test_corrected_text_keeps_the_query_shape(self) -> None:
        u = make_understander(["oak table 160 cm"])
        assert understand(u, "tabel 160 cm").corrected_text == "table 160 cm"
