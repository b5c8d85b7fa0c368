"""The Polish-English product lexicon: the packaged data, its loader and how it reads queries."""

from __future__ import annotations

from pathlib import Path

import pytest

from search.analysis import fold, tokenize
from search.colour import lookup
from search.lexicon import (
    HOMOGRAPHS_PATH,
    PRODUCT_KINDS,
    Lexicon,
    default_lexicon,
    english_forms,
    load_lexicon,
)

#: Article types of a fashion catalogue (the public Myntra labels), as a shopper writes them.
FASHION_TYPES = (
    "tshirts", "shirts", "casual shoes", "watches", "sports shoes", "kurtas", "handbags", "tops",
    "heels", "sunglasses", "wallets", "flip flops", "sandals", "briefs", "belts", "backpacks",
    "socks", "formal shoes", "jeans", "perfume", "trousers", "shorts", "flats", "bra", "dresses",
    "earrings", "sarees", "deodorant", "nail polish", "lipstick", "track pants", "sweatshirts",
    "caps", "clutches", "sweaters", "ties", "jackets", "tunics", "nightdress", "leggings",
    "pendant", "skirts", "ring", "scarves", "cufflinks", "bracelet", "boxers", "gloves",
)  # fmt: skip


@pytest.fixture(scope="module")
def lexicon() -> Lexicon:
    return default_lexicon()


def concept_names(lexicon: Lexicon, ids: tuple[int, ...]) -> set[str]:
    return {lexicon.concepts[i].rendering for i in ids}


def readings(lexicon: Lexicon, text: str, **kwargs: object) -> list[tuple[str, str] | None]:
    out: list[tuple[str, str] | None] = []
    for r in lexicon.read(tokenize(text), **kwargs):  # type: ignore[arg-type]
        out.append(None if r is None else (r.language, lexicon.concepts[r.concepts[0]].rendering))
    return out


class TestPackagedData:
    def test_several_hundred_concepts_of_every_kind(self, lexicon: Lexicon) -> None:
        assert len(lexicon) >= 700
        kinds = {c.kind for c in lexicon.concepts}
        assert kinds >= PRODUCT_KINDS
        assert {"colour", "material", "pattern", "use", "size", "person"} <= kinds

    @pytest.mark.parametrize("form", ["koszula", "koszuli", "koszule", "koszulę", "koszul"])
    def test_inflections_map_to_one_concept(self, lexicon: Lexicon, form: str) -> None:
        assert concept_names(lexicon, lexicon.polish(fold(form))) == {"shirt"}

    @pytest.mark.parametrize(
        "form", ["granatowy", "granatowa", "granatowe", "granatowych", "granatowej", "granatową"]
    )
    def test_colour_in_every_inflection(self, lexicon: Lexicon, form: str) -> None:
        assert concept_names(lexicon, lexicon.polish(fold(form))) == {"navy"}

    def test_spelling_variants_meet(self, lexicon: Lexicon) -> None:
        jeans = set(lexicon.english("jeans"))
        assert jeans
        for form in ("dżinsy", "dzinsy", "jeansy", "dżinsów", "jeansowe"):
            assert jeans & set(lexicon.polish(fold(form))), form

    def test_colours_are_colours(self, lexicon: Lexicon) -> None:
        """Every colour concept's English name and Polish lemma name a colour the colour
        search knows, of the same family (so a translated colour grades products alike)."""
        for concept in lexicon.concepts:
            if concept.kind != "colour" or concept.rendering in ("colour", "light", "dark"):
                continue
            english = lookup(concept.rendering)
            assert english is not None, concept.rendering
            for word in concept.polish:
                polish = lookup(word.lemma)
                if polish is not None:  # a few (kolorowy, bordo) only the lexicon knows
                    assert polish.family == english.family, (word.lemma, concept.rendering)

    @pytest.mark.parametrize("article", FASHION_TYPES)
    def test_fashion_article_types_are_covered(self, lexicon: Lexicon, article: str) -> None:
        words = [t.folded for t in tokenize(article)]
        joined = "".join(words)
        assert lexicon.english(joined) or lexicon.english(words[-1]), article

    def test_every_concept_has_both_languages(self, lexicon: Lexicon) -> None:
        for concept in lexicon.concepts:
            assert concept.english and concept.polish, concept
            assert concept.rendering == concept.english[0]

    def test_polish_forms_that_are_english_words_of_another_concept(self, lexicon: Lexicon) -> None:
        """A Polish form spelled like an English word is read as English. Where the two mean
        different things that is a loss for Polish queries: this list is reviewed by hand."""
        clashes = {
            form
            for form, ids in lexicon._polish.items()
            if lexicon.english(form) and not set(lexicon.english(form)) & set(ids)
        }
        assert clashes == {"parasol", "stole", "male"}

    def test_homographs_file_holds_polish_forms(self, lexicon: Lexicon) -> None:
        listed = {
            line.strip()
            for line in HOMOGRAPHS_PATH.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.startswith("#")
        }
        assert listed == lexicon.homographs
        assert all(lexicon.polish(form) for form in listed)


class TestReading:
    def test_polish_query(self, lexicon: Lexicon) -> None:
        assert readings(lexicon, "granatowa koszula") == [("pl", "navy"), ("pl", "shirt")]

    def test_english_query(self, lexicon: Lexicon) -> None:
        assert readings(lexicon, "navy shirt") == [("en", "navy"), ("en", "shirt")]

    def test_unknown_words(self, lexicon: Lexicon) -> None:
        assert readings(lexicon, "kowalski 2x4") == [None, None, None, None]

    def test_phrase_in_any_inflection(self, lexicon: Lexicon) -> None:
        for text in ("strój kąpielowy", "stroje kąpielowe", "stroju kąpielowego"):
            found = lexicon.read(tokenize(text))
            assert [r.rendering if r else None for r in found] == ["swimwear", ""], text

    def test_homograph_needs_a_polish_neighbour(self, lexicon: Lexicon) -> None:
        assert readings(lexicon, "golf cart") == [None, None]
        assert readings(lexicon, "czarny golf") == [("pl", "black"), ("pl", "turtleneck")]

    @pytest.mark.parametrize(
        "text",
        ["kable ties with mount", "air kompresor combo", "5/8 in puch", "mikser", "weln 3",
         "starter piece for a kompresor"],
    )  # fmt: skip
    def test_whole_text_keeps_respelled_english_english(self, lexicon: Lexicon, text: str) -> None:
        """Home Depot queries respelled by sound or mistyped that look Polish: in a catalogue
        not analysed in Polish they are not read as Polish."""
        found = lexicon.read(tokenize(text), whole_text=True)
        assert all(r is None or r.language == "en" for r in found)

    @pytest.mark.parametrize("text", ["granatowa koszula", "dzinsy proste", "czerwona sukienka"])
    def test_whole_text_reads_a_polish_query(self, lexicon: Lexicon, text: str) -> None:
        found = lexicon.read(tokenize(text), whole_text=True)
        assert all(r is not None and r.language == "pl" for r in found)

    def test_nouns_and_adjectives_for_agreement(self, lexicon: Lexicon) -> None:
        assert lexicon.noun("krzesla") == ("n", True)
        assert lexicon.noun("krzeslo") == ("n", False)
        assert lexicon.noun("spodnie") == ("pl", True)
        assert lexicon.adjective("debowe") == "dębowy"
        assert lexicon.noun("debowe") is None


class TestLoader:
    def write(self, tmp_path: Path, body: str) -> Path:
        path = tmp_path / "lexicon.tsv"
        path.write_text("# comment\n\n" + body, encoding="utf-8")
        return path

    def test_reads_a_small_file(self, tmp_path: Path) -> None:
        path = self.write(
            tmp_path, "clothing\tshirt, tee\tkoszula/f\ncolour\tnavy\tgranatowy/adj\tpl>en\n"
        )
        lexicon = load_lexicon(path, None)
        assert len(lexicon) == 2
        shirt, navy = lexicon.concepts
        assert shirt.english_words == ("shirt", "shirts", "tee", "tees")
        assert navy.direction == "pl>en"
        assert lexicon.polish("koszulami") == (0,)
        assert lexicon.homographs == frozenset()

    @pytest.mark.parametrize(
        ("body", "message"),
        [
            ("clothing\tshirt\n", "3 or 4 tab-separated columns"),
            ("clothing\tshirt\tkoszula\n", "needs a /class"),
            ("clothing\tshirt\tkoszula/x\n", "unknown word class 'x'"),
            ("clothing\tshirt\tkoszula/f\tsideways\n", "direction 'sideways'"),
            ("clothing\t\tkoszula/f\n", "all required"),
        ],
    )
    def test_malformed_lines_name_the_line(self, tmp_path: Path, body: str, message: str) -> None:
        with pytest.raises(ValueError, match=message) as caught:
            load_lexicon(self.write(tmp_path, body), None)
        assert "lexicon.tsv:3" in str(caught.value)


@pytest.mark.parametrize(
    ("word", "forms"),
    [
        ("shirt", ("shirt", "shirts")),
        ("dress", ("dress", "dresses")),
        ("pantry", ("pantry", "pantries")),
        ("shelf", ("shelf", "shelfs", "shelves")),
        ("knife", ("knife", "knifes", "knives")),
    ],
)
def test_english_plurals(word: str, forms: tuple[str, ...]) -> None:
    assert english_forms(word) == forms
