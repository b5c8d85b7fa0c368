"""Text analysis: folding, normalisation, tokenisation with units, stemming, sound keys, languages."""

from __future__ import annotations

import unicodedata

import pytest

from search import analysis
from search.analysis import (
    Analyzer,
    Token,
    english_sound_key,
    fold,
    get_language,
    normalise,
    register_language,
    tokenize,
)


def surfaces(text: str) -> list[str]:
    """The surface forms of the tokens of a text."""
    return [tok.surface for tok in tokenize(text)]


class TestFold:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("", ""),
            ("Żółta Łódź", "zolta lodz"),
            ("ą ę ć ń ś ó ł ż ź", "a e c n s o l z z"),
            ("ĄĘĆŃŚÓŁŻŹ", "aecnsolzz"),
            ("Straße", "strasse"),
            ("café", "cafe"),
            ("already plain", "already plain"),
        ],
    )
    def test_strips_diacritics_and_lowercases(self, text: str, expected: str) -> None:
        assert fold(text) == expected

    def test_decomposed_input_folds_like_composed(self) -> None:
        decomposed = unicodedata.normalize("NFD", "Żółć")
        assert decomposed != "Żółć"
        assert fold(decomposed) == fold("Żółć") == "zolc"


class TestNormalise:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("", ""),
            ("   ", ""),
            ("  oak \t dining\nchair ", "oak dining chair"),
            (unicodedata.normalize("NFD", "Krzesło żółte"), "Krzesło żółte"),
        ],
    )
    def test_nfc_and_collapsed_whitespace(self, text: str, expected: str) -> None:
        result = normalise(text)
        assert result == expected
        assert unicodedata.is_normalized("NFC", result)

    def test_keeps_case_and_diacritics(self) -> None:
        assert normalise("Żółte Krzesło") == "Żółte Krzesło"


class TestTokenize:
    @pytest.mark.parametrize("text", ["", "   ", "!?-,."])
    def test_no_tokens(self, text: str) -> None:
        assert tokenize(text) == []

    @pytest.mark.parametrize(
        ("text", "number"),
        [("1/2", "1/2"), (".105", ".105"), ("1.9", "1.9"), ("1,000", "1000"), ("42", "42")],
    )
    def test_numbers_stay_whole(self, text: str, number: str) -> None:
        tokens = tokenize(f"pipe {text} long")
        assert Token(number, number, is_number=True) in tokens
        assert [t.surface for t in tokens if not t.is_number] == ["pipe", "long"]

    @pytest.mark.parametrize(
        ("text", "unit"),
        [
            ("24 inches", "in"),
            ("24 inch", "in"),
            ('24"', "in"),
            ("24 in", "in"),
            ("10 ft", "ft"),
            ("10 feet", "ft"),
            ("5 lbs", "lb"),
            ("18 volts", "volt"),
            ("60 cm", "cm"),
        ],
    )
    def test_units_are_canonical(self, text: str, unit: str) -> None:
        tokens = tokenize(text)
        number = text.split()[0].rstrip('"')
        assert Token(unit, unit, is_unit=True) in tokens
        assert Token(number + unit, number + unit, is_number=True, derived=True) in tokens

    @pytest.mark.parametrize("text", ["60 cm", "60cm", "60 centimeters", "60 CM"])
    def test_spaced_and_joined_units_analyse_alike(self, text: str) -> None:
        assert "60cm" in surfaces(text)

    @pytest.mark.parametrize(
        "text", ["2x4", "2 x 4", "2×4", "2 in. x 4 in.", '2" x 4"', "2in x 4in"]
    )
    def test_dimensions(self, text: str) -> None:
        assert "2x4" in surfaces(text)

    def test_dimension_separator_is_not_a_word(self) -> None:
        # The docstring: "1/2 in. x 10 ft." gives 1/2 in 10 ft plus 1/2in, 10ft and 1/2x10.
        assert "x" not in surfaces("1/2 in. x 10 ft.")

    def test_in_is_a_word_without_a_number_and_a_unit_after_one(self) -> None:
        word = tokenize("table in oak")[1]
        assert word == Token("in", "in")
        assert not word.is_unit
        assert Token("in", "in", is_unit=True) in tokenize("24 in")

    def test_ambiguous_unit_without_number_is_a_word(self) -> None:
        assert tokenize("a m g") == [Token("a", "a"), Token("m", "m"), Token("g", "g")]

    def test_unambiguous_unit_needs_no_number(self) -> None:
        assert tokenize("inches") == [Token("in", "in", is_unit=True)]

    def test_word_keeps_diacritics_in_surface_and_folds_them(self) -> None:
        assert tokenize("Żółte") == [Token("żółte", "zolte")]


@pytest.fixture(scope="module")
def english() -> Analyzer:
    """An English-only analyser."""
    return Analyzer(("en",))


@pytest.fixture(scope="module")
def bilingual() -> Analyzer:
    """An English and Polish analyser."""
    return Analyzer(("en", "pl"))


class TestAnalyzer:
    def test_clearing_the_caches_keeps_the_terms(self, english: Analyzer) -> None:
        before = english.document_terms("Running shoes for Łódź gardens")
        assert english._term_cache and fold.cache_info().currsize
        english.clear_cache()
        assert not english._term_cache and fold.cache_info().currsize == 0
        assert english.document_terms("Running shoes for Łódź gardens") == before

    @pytest.mark.parametrize(
        ("text", "terms"),
        [
            ("", []),
            ("the and of", []),
            ("chairs", ["chair"]),
            ("Oak chairs in the garden", ["oak", "chair", "garden"]),
            ("running shoes", ["run", "shoe"]),
            ("24 in", ["24", "in", "24in"]),
        ],
    )
    def test_english_terms(self, english: Analyzer, text: str, terms: list[str]) -> None:
        assert english.document_terms(text) == terms

    @pytest.mark.parametrize(
        ("a", "b"),
        [
            ("krzesła", "krzesło"),
            ("czerwona", "czerwonych"),
            ("kurtka", "kurtki"),
            ("szafa", "szafy"),
        ],
    )
    def test_polish_inflections_share_a_term(self, bilingual: Analyzer, a: str, b: str) -> None:
        assert bilingual.document_terms(a, "pl") == bilingual.document_terms(b, "pl")

    def test_polish_term_is_folded(self, bilingual: Analyzer) -> None:
        assert bilingual.document_terms("Żółte krzesło", "pl") == ["zolty", "krzeslo"]

    def test_polish_stopwords_removed(self, bilingual: Analyzer) -> None:
        assert bilingual.document_terms("szafa z lustrem", "pl") == bilingual.document_terms(
            "szafa lustrem", "pl"
        )

    def test_unknown_document_language_falls_back_to_default(self, english: Analyzer) -> None:
        assert english.document_terms("chairs", "de") == ["chair"]

    def test_terms_of_word_one_per_language(self, bilingual: Analyzer) -> None:
        assert set(bilingual.terms_of_word("czerwona")) == {"czerwona", "czerwony"}
        assert bilingual.terms_of_word("") == ()

    def test_sound_keys_prefixed_by_language(self, bilingual: Analyzer) -> None:
        keys = bilingual.sound_keys("chleb")
        assert {key.split(":")[0] for key in keys} == {"en", "pl"}

    def test_default_language_is_the_first(self, bilingual: Analyzer) -> None:
        assert bilingual.default_language == "en"

    @pytest.mark.parametrize("languages", [(), ("en", "xx")])
    def test_bad_languages(self, languages: tuple[str, ...]) -> None:
        with pytest.raises(ValueError, match="en, pl"):
            Analyzer(languages)


class TestSoundKeys:
    @pytest.mark.parametrize(
        ("a", "b"),
        [
            ("toilet", "toylet"),
            ("square", "skware"),
            ("phone", "fone"),
            ("ceiling", "seeling"),
            ("storage", "storaig"),
        ],
    )
    def test_english_sound_alikes_share_a_key(self, a: str, b: str) -> None:
        assert english_sound_key(a) == english_sound_key(b)

    @pytest.mark.parametrize(
        ("a", "b"), [("toilet", "faucet"), ("chair", "table"), ("sofa", "lamp")]
    )
    def test_english_unrelated_words_differ(self, a: str, b: str) -> None:
        assert english_sound_key(a) != english_sound_key(b)

    def test_english_key_never_empty(self) -> None:
        assert english_sound_key("gh") == "gh"
        assert english_sound_key("") == ""

    @pytest.mark.parametrize(
        ("a", "b"),
        [("żeczka", "rzeczka"), ("chleb", "hleb"), ("góra", "gura")],
    )
    def test_polish_sound_alikes_share_a_key(self, a: str, b: str) -> None:
        polish = get_language("pl")
        assert polish.sound_key(fold(a)) == polish.sound_key(fold(b))

    @pytest.mark.parametrize(("a", "b"), [("krzesło", "szafa"), ("kurtka", "stół")])
    def test_polish_unrelated_words_differ(self, a: str, b: str) -> None:
        polish = get_language("pl")
        assert polish.sound_key(fold(a)) != polish.sound_key(fold(b))


class _Shouty:
    """A toy language: upper-case stems, its own stopword."""

    code = "xx"
    stopwords = frozenset({"zz"})

    def stem(self, word: str) -> str:
        return word.upper()

    def sound_key(self, folded_word: str) -> str:
        return folded_word[:1]


class TestLanguages:
    @pytest.fixture(autouse=True)
    def isolated_registry(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(analysis, "_LANGUAGE_FACTORIES", dict(analysis._LANGUAGE_FACTORIES))
        monkeypatch.setattr(analysis, "_LANGUAGE_CACHE", dict(analysis._LANGUAGE_CACHE))

    @pytest.mark.parametrize("code", ["", "xx", "EN", "de"])
    def test_unknown_code_lists_the_valid_ones(self, code: str) -> None:
        with pytest.raises(ValueError, match=r"valid languages: en, pl"):
            get_language(code)

    def test_languages_are_shared(self) -> None:
        assert get_language("en") is get_language("en")
        assert get_language("pl").code == "pl"

    def test_register_language(self) -> None:
        register_language("xx", _Shouty)
        assert "xx" in analysis.available_languages()
        analyzer = Analyzer(("xx",))
        assert analyzer.document_terms("Shout zz loud") == ["shout", "loud"]  # folded stems
        assert analyzer.sound_keys("loud") == ("xx:l",)

    def test_re_registering_replaces_the_cached_language(self) -> None:
        register_language("xx", _Shouty)
        first = get_language("xx")
        register_language("xx", _Shouty)
        assert get_language("xx") is not first
