"""Polish inflection of lexicon lemmas: the forms shoppers type, and adjective agreement."""

from __future__ import annotations

import pytest

from search.inflect_pl import WORD_CLASSES, adjective_forms, agree, inflect


class TestAdjectives:
    @pytest.mark.parametrize(
        ("lemma", "forms"),
        [
            ("granatowy", {"granatowa", "granatowe", "granatowych", "granatowej", "granatową"}),
            ("niebieski", {"niebieska", "niebieskie", "niebieskich", "niebieską", "niebiesko"}),
            ("letni", {"letnia", "letnie", "letniego", "letnią"}),
        ],
    )
    def test_every_case_gender_and_number(self, lemma: str, forms: set[str]) -> None:
        found = adjective_forms(lemma)
        assert found.forms[0] == lemma
        assert forms <= set(found.forms)

    @pytest.mark.parametrize(
        ("lemma", "gender", "form"),
        [
            ("dębowy", "m", "dębowy"),
            ("dębowy", "f", "dębowa"),
            ("dębowy", "n", "dębowe"),
            ("dębowy", "pl", "dębowe"),
            ("niebieski", "f", "niebieska"),
            ("niebieski", "pl", "niebieskie"),
        ],
    )
    def test_agreement(self, lemma: str, gender: str, form: str) -> None:
        assert agree(lemma, gender) == form  # type: ignore[arg-type]

    def test_not_an_adjective(self) -> None:
        with pytest.raises(ValueError, match="-y or -i"):
            adjective_forms("koszula")


class TestNouns:
    @pytest.mark.parametrize(
        ("lemma", "word_class", "plural", "forms"),
        [
            ("koszula", "f", "koszule", {"koszuli", "koszulę", "koszul", "koszulami"}),
            ("kurtka", "f", "kurtki", {"kurtce", "kurtek", "kurtkę"}),
            ("lampa", "f", "lampy", {"lampie", "lamp", "lampą"}),
            ("kołdra", "f", "kołdry", {"kołdrze", "kołder"}),
            ("kuchnia", "f", "kuchnie", {"kuchni", "kuchnię"}),
            ("pościel", "f", "pościele", {"pościeli", "pościelą"}),
            ("krzesło", "n", "krzesła", {"krzeseł", "krzesłem", "krześle"}),
            ("łóżko", "n", "łóżka", {"łóżek", "łóżkiem"}),
            ("narzędzie", "n", "narzędzia", {"narzędzi", "narzędziem"}),
            ("dywan", "m", "dywany", {"dywanu", "dywanów", "dywanie"}),
            ("plecak", "m", "plecaki", {"plecaka", "plecaków", "plecakiem"}),
            ("kubek", "m", "kubki", {"kubka", "kubków"}),
            ("fotel", "m", "fotele", {"fotela", "foteli", "fotelem"}),
            ("spodnie", "pl", "spodnie", {"spodni", "spodniach"}),
            ("dżinsy", "pl", "dżinsy", {"dżinsów", "dżinsami"}),
            ("trampki", "pl", "trampki", {"trampek", "trampkami"}),
        ],
    )
    def test_forms(self, lemma: str, word_class: str, plural: str, forms: set[str]) -> None:
        found = inflect(lemma, word_class)  # type: ignore[arg-type]
        assert found.plural == plural
        assert found.forms[0] == lemma
        assert forms <= set(found.forms)
        assert len(found.forms) == len(set(found.forms))

    def test_irregular_forms_written_out_are_kept(self) -> None:
        found = inflect("stół", "m", ("stołu", "stoły", "stole"))
        assert {"stołu", "stoły", "stole"} <= set(found.forms)

    def test_invariable(self) -> None:
        assert inflect("khaki", "inv").forms == ("khaki",)

    def test_plural_only_has_no_singular(self) -> None:
        assert inflect("spodnie", "pl").singular == ""

    @pytest.mark.parametrize(
        ("lemma", "word_class", "message"),
        [("krzesło", "x", "unknown word class"), ("stół", "n", "neuter noun")],
    )
    def test_bad_input(self, lemma: str, word_class: str, message: str) -> None:
        with pytest.raises(ValueError, match=message):
            inflect(lemma, word_class)  # type: ignore[arg-type]

    def test_word_classes(self) -> None:
        assert set(WORD_CLASSES) == {"adj", "m", "f", "n", "pl", "inv"}
