"""Catalogue words in their written forms, and language-aware look-up of heard words."""

from __future__ import annotations

import pytest

from search.voice_words import SAME_STEM, SAME_WORD, CatalogueWords, light_stem, sound_key
from tests.search.test_voice import POLISH_PRODUCTS


@pytest.fixture(scope="module")
def words() -> CatalogueWords:
    return CatalogueWords.from_texts(t for p in POLISH_PRODUCTS for t in (p.title, p.brand or ""))


class TestLightStem:
    @pytest.mark.parametrize(
        ("words_", "stem"),
        [
            (("krzeslo", "krzesla", "krzeslami"), "krzesl"),
            (("zolta", "zolte", "zolty", "zoltych"), "zolt"),
            (("stol", "stolu", "stoly"), "stol"),
        ],
    )
    def test_inflections_meet(self, words_: tuple[str, ...], stem: str) -> None:
        assert {light_stem(w) for w in words_} == {stem}

    def test_short_words_keep_three_letters(self) -> None:
        assert light_stem("owa") == "owa"
        assert light_stem("domu") == "dom"


class TestSoundKey:
    def test_polish_spellings_of_one_sound_meet(self) -> None:
        assert sound_key("morze", "pl") == sound_key("moze", "pl")  # rz / ż
        assert sound_key("chleb", "pl") == sound_key("hlep", "pl")  # ch / h, b / p

    def test_english_is_metaphone(self) -> None:
        assert sound_key("phone", "en") == sound_key("fone", "en")

    def test_no_letters(self) -> None:
        assert sound_key("123", "pl") == ""


class TestCatalogueWords:
    def test_written_forms_keep_diacritics(self, words: CatalogueWords) -> None:
        assert words.written("zolte") == "żółte"
        assert words.written("KRZESLO") == "krzesło"
        assert words.written("nieznane") == "nieznane"  # not a catalogue word: as given
        assert len(words) > 10

    @pytest.mark.parametrize(
        ("heard", "language", "expected", "similarity"),
        [
            ("zolte", "pl", "żółte", SAME_WORD),  # folded
            ("krzesla", "pl", "krzesło", SAME_STEM),  # inflected, no diacritics
            ("krzesłami", "pl", "krzesło", SAME_STEM),  # inflected (Stempel)
            ("koszura", "pl", "koszula", None),  # sounds alike
            ("cordles", None, "cordless", None),  # English: metaphone
        ],
    )
    def test_snap(
        self,
        words: CatalogueWords,
        heard: str,
        language: str | None,
        expected: str,
        similarity: float | None,
    ) -> None:
        found = words.snap(heard, language)

        assert found and found[0][1] == expected
        if similarity == SAME_WORD:
            assert found[0][0] == SAME_WORD
        elif similarity == SAME_STEM:
            assert 0.8 * SAME_STEM <= found[0][0] <= SAME_STEM
        else:
            assert 0.5 <= found[0][0] < SAME_STEM

    def test_inflections_are_only_polish(self, words: CatalogueWords) -> None:
        # Without Polish rules "krzesla" is only a sound-alike, never the same stem.
        found = words.snap("krzesla", None)
        assert all(sim < SAME_STEM for sim, _ in found)

    def test_nothing_near(self, words: CatalogueWords) -> None:
        assert words.snap("xyz", "pl") == []
        assert words.snap("qqqqqqqq", "pl") == []
