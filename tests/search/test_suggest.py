"""As-you-type suggestions from catalogue titles and popular queries."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import orjson
import pytest

from api.service import open_snapshot
from search.analysis import Analyzer
from search.errors import SnapshotError
from search.index.snapshot import MANIFEST, SUGGESTIONS, read_manifest
from search.index.vocabulary import VocabularyBuilder
from search.suggest import Suggester

TITLES = [
    "Navy linen shirt",
    "Navy linen shirt, slim",
    "Navy poplin shirt",
    "White linen shirt",
    "Oak dining table",
    "Oak dining chair",
    "Oak dining chair with arms",
    "Krzesło dębowe",
    "Krzesło tapicerowane",
    "Sofa narożna",
]


@pytest.fixture(scope="module")
def suggester() -> Suggester:
    analyzer = Analyzer(("en", "pl"))
    builder = VocabularyBuilder(analyzer)
    builder.add(TITLES)
    vocabulary = builder.build(lambda term: 0)
    return Suggester.from_titles(TITLES, vocabulary, analyzer)


def texts(suggester: Suggester, typed: str, **kwargs: object) -> list[str]:
    return [s.text for s in suggester.suggest(typed, **kwargs).suggestions]  # type: ignore[arg-type]


class TestSuggester:
    def test_completes_a_word_most_frequent_first(self, suggester: Suggester) -> None:
        assert texts(suggester, "na")[0] == "navy"
        assert "navy linen" in texts(suggester, "na")

    def test_completes_a_title_phrase(self, suggester: Suggester) -> None:
        assert texts(suggester, "oak din")[0] == "oak dining"
        assert texts(suggester, "navy li") == ["navy linen"]

    def test_keeps_earlier_words(self, suggester: Suggester) -> None:
        assert texts(suggester, "oak dining ch") == ["oak dining chair"]

    def test_corrects_a_misspelt_last_word(self, suggester: Suggester) -> None:
        result = suggester.suggest("navy shrt")
        assert [s.text for s in result.suggestions] == ["navy shirt"]
        assert result.suggestions[0].corrected

    def test_polish_with_and_without_diacritics(self, suggester: Suggester) -> None:
        assert "krzesło" in texts(suggester, "krzes")
        assert "sofa narożna" in texts(suggester, "sofa naroz")

    def test_popular_queries_come_first(self, suggester: Suggester) -> None:
        popular = {"navy shirt men": 40, "navy blazer": 12, "oak table": 9}
        found = suggester.suggest("navy", popular=popular).suggestions
        assert [s.text for s in found[:2]] == ["navy shirt men", "navy blazer"]
        assert {s.kind for s in found[:2]} == {"query"}
        assert found[2].kind == "catalogue"

    @pytest.mark.parametrize("typed", ["", "   ", "zzzz", "12"])
    def test_nothing_to_suggest(self, suggester: Suggester, typed: str) -> None:
        assert texts(suggester, typed) == []

    def test_k_limits(self, suggester: Suggester) -> None:
        assert len(texts(suggester, "n", k=1)) == 1


def test_punctuation_typed_still_completes_a_popular_query(suggester: Suggester) -> None:
    """Popular queries are keyed by normalise_query; what the shopper types is keyed the same
    way, so "sofa, g" completes "sofa grey"."""
    assert texts(suggester, "sofa, g", popular={"sofa grey": 12})[:1] == ["sofa grey"]


# --- issue 18: Polish suggestions, phrases shoppers type, short typos ---------------------------

#: A small shop in the demo's style: (title, brand); English titles with the colour after a
#: comma, Polish titles noun first, brands that are Polish words and surnames.
SHOP: tuple[tuple[str, str], ...] = (
    ("UrbanThread Slim Fit Oxford Shirt, Navy", "UrbanThread"),
    ("Linnea Relaxed Fit Poplin Shirt, Navy", "Linnea"),
    ("Northbound Regular Fit Linen Shirt, Navy", "Northbound"),
    ("Linnea Essential Crew Neck T-Shirt, Navy", "Linnea"),
    ("Northbound Quilted Jacket, Navy", "Northbound"),
    ("Kurtka pikowana granatowa Kowalski Meble", "Kowalski Meble"),
    ("Kurtka przejściowa granatowa Kowalski Meble", "Kowalski Meble"),
    ("Sofa narożna granatowa Kowalski Meble Kraków", "Kowalski Meble"),
    ("Krzesło tapicerowane granatowe Kowalski Meble Gdańsk", "Kowalski Meble"),
    ("Krzesło dębowe czarne Fjordline Sopot", "Fjordline"),
    ("Krzesło dębowe białe Fjordline Oslo", "Fjordline"),
    ("Stół dębowy biały Dębowy Dwór Oslo", "Dębowy Dwór"),
    ("Nordhaus Oslo Corner Sofa in Grey Velvet", "Nordhaus"),
    ("Nordhaus Bergen 3-Seater Sofa in Navy Linen", "Nordhaus"),
    ("Nordhaus Aarhus Oak Dining Chair, Black", "Nordhaus"),
    ("Lumo Living Bergen Oak Lounge Chair, Brown", "Lumo Living"),
    ("Fjordline Malmö Walnut Coffee Table, Brown", "Fjordline"),
)


def shop_suggester(languages: tuple[str, ...] = ("en", "pl"), brands: bool = True) -> Suggester:
    analyzer = Analyzer(languages)
    titles = [t for t, _ in SHOP]
    builder = VocabularyBuilder(analyzer)
    for title in titles:
        builder.add([title])
    vocabulary = builder.build(lambda term: 0)
    return Suggester.from_titles(
        titles, vocabulary, analyzer, brands=[b for _, b in SHOP] if brands else None
    )


@pytest.fixture(scope="module")
def shop() -> Suggester:
    return shop_suggester()


def phrase_keys(suggester: Suggester) -> set[str]:
    return {key.decode("utf-8") for key in suggester.arrays[0].tolist()}


class TestShopperPhrases:
    def test_no_colour_glued_to_a_brand(self, shop: Suggester) -> None:
        found = texts(shop, "granatowa k")
        assert found[:3] and all(" " in s for s in found)
        assert {"granatowa kurtka", "granatowa koszula"} <= set(found)
        assert not any("kowalski" in s or "kraków" in s for s in found)

    def test_brands_are_still_suggested_whole(self, shop: Suggester) -> None:
        assert "kowalski meble" in texts(shop, "kowa")

    def test_without_brands_the_pair_is_formed(self) -> None:
        """The pair "granatowa kowalski" comes from titles only when brands are not known."""
        assert "granatowa kowalski" in texts(shop_suggester(brands=False), "granatowa kow")
        assert "granatowa kowalski" not in texts(shop_suggester(), "granatowa kow")

    def test_pairs_stop_at_punctuation_and_colours_come_first(self, shop: Suggester) -> None:
        phrases = phrase_keys(shop)
        assert "shirt navy" not in phrases  # "Shirt, Navy" is no phrase
        assert "navy shirt" in phrases
        assert texts(shop, "navy sh")[0] == "navy shirt"

    def test_coffee_table_is_no_colour(self, shop: Suggester) -> None:
        """ "Coffee Table" names no colour: no colour phrase comes of it."""
        assert not any(p.startswith(("coffee", "kawow")) and " " in p for p in phrase_keys(shop))

    def test_other_language_in_a_polish_catalogue(self, shop: Suggester) -> None:
        """English shirts give Polish shoppers "koszula" and "granatowa koszula"; Polish
        jackets give "navy jacket"."""
        assert "koszula" in texts(shop, "kosz")
        assert "granatowa koszula" in texts(shop, "granatowa kos")
        assert "navy jacket" in texts(shop, "navy j")

    def test_english_catalogue_gets_no_polish(self) -> None:
        english = shop_suggester(languages=("en",))
        assert "koszula" not in texts(english, "kosz")
        assert texts(english, "navy sh")[0] == "navy shirt"


class TestInflection:
    @pytest.mark.parametrize(
        ("typed", "expected"),
        [
            ("krzesła dęb", "krzesła dębowe"),
            ("krzesło dęb", "krzesło dębowe"),
            ("krzesla deb", "krzesla dębowe"),
            ("stół dęb", "stół dębowy"),
        ],
    )
    def test_adjective_agrees_with_the_noun(
        self, shop: Suggester, typed: str, expected: str
    ) -> None:
        found = texts(shop, typed)
        assert found[0] == expected
        assert len(found) == len(set(found))

    def test_after_an_adjective_only_nouns_it_describes(self, shop: Suggester) -> None:
        feminine = texts(shop, "granatowa k")
        assert "granatowa krzesło" not in feminine
        neuter = texts(shop, "granatowe k")
        assert "granatowe krzesło" in neuter
        assert "granatowe kurtka" not in neuter


class TestShortPrefixTypos:
    @pytest.mark.parametrize(
        ("typed", "word"),
        [
            ("sfo", "sofa"),
            ("chi", "chair"),
            ("sofs", "sofa"),
            ("jcak", "jacket"),
            ("krez", "krzesło"),
        ],
    )
    def test_one_edit_from_a_phrase_start(self, shop: Suggester, typed: str, word: str) -> None:
        result = shop.suggest(typed)
        assert result.suggestions, typed
        assert result.suggestions[0].text.startswith(word)
        assert all(s.corrected for s in result.suggestions)

    def test_after_a_word(self, shop: Suggester) -> None:
        assert texts(shop, "navy sfo")[0] == "navy sofa"

    @pytest.mark.parametrize("typed", ["xq", "zzz", "qqqq"])
    def test_nothing_close(self, shop: Suggester, typed: str) -> None:
        assert texts(shop, typed) == []

    def test_a_prefix_that_completes_is_not_corrected(self, shop: Suggester) -> None:
        result = shop.suggest("cha")
        assert result.suggestions[0].text == "chair"
        assert not result.suggestions[0].corrected


def test_brands_must_match_titles() -> None:
    analyzer = Analyzer(("en",))
    builder = VocabularyBuilder(analyzer)
    with pytest.raises(ValueError, match="2 brands for 1 titles"):
        Suggester.from_titles(
            ["Oak table"], builder.build(lambda t: 0), analyzer, brands=["a", "b"]
        )


def test_rebuilt_from_arrays_suggests_alike(shop: Suggester) -> None:
    copy = Suggester.from_arrays(shop.arrays, shop.vocabulary, shop.analyzer)
    for typed in ("granatowa k", "krzesła dęb", "sfo", "navy sh"):
        assert texts(copy, typed) == texts(shop, typed)


class TestSuggestionsInTheSnapshot:
    """The build writes the suggester's phrases into the snapshot, so a service opening it reads
    them instead of building them from every title at start-up."""

    def test_the_service_reads_what_the_build_wrote(
        self, core_snapshot: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        assert (core_snapshot / SUGGESTIONS).is_file()
        assert SUGGESTIONS in read_manifest(core_snapshot).files  # checksummed like the rest
        built = open_snapshot(core_snapshot, ranker="none").suggester
        typed = ["oak", "krzes", "sof", "chi", "granatowa k"]

        def no_building(*args: object, **kwargs: object) -> Suggester:
            raise AssertionError("the suggester was built from the titles at start-up")

        monkeypatch.setattr(Suggester, "from_titles", no_building)
        engine = open_snapshot(core_snapshot, ranker="none")
        assert np.array_equal(engine.suggester.arrays[0], built.arrays[0])
        titles = [p.title for p in engine.store.products]
        brands = [p.brand for p in engine.store.products]
        monkeypatch.undo()
        fresh = Suggester.from_titles(titles, engine.vocabulary, engine.analyzer, brands=brands)
        for text in typed:
            assert replace(engine.suggester.suggest(text), took_ms=0.0) == replace(
                fresh.suggest(text), took_ms=0.0
            )

    def test_a_snapshot_from_before_builds_it_on_first_use(
        self, core_snapshot: Path, tmp_path: Path
    ) -> None:
        old = tmp_path / "snapshot"
        shutil.copytree(core_snapshot, old)
        (old / SUGGESTIONS).unlink()
        manifest = orjson.loads((old / MANIFEST).read_bytes())
        del manifest["files"][SUGGESTIONS]
        (old / MANIFEST).write_bytes(orjson.dumps(manifest))
        engine = open_snapshot(old, ranker="none")
        assert engine.suggester.suggest("oak")
        assert not (old / SUGGESTIONS).exists()

    def test_a_damaged_file_is_a_snapshot_error_naming_it(
        self, core_snapshot: Path, tmp_path: Path
    ) -> None:
        bad = tmp_path / "snapshot"
        shutil.copytree(core_snapshot, bad)
        size = (bad / SUGGESTIONS).stat().st_size
        (bad / SUGGESTIONS).write_bytes(b"x" * size)  # same size: only the checksum would tell
        engine = open_snapshot(bad, ranker="none", verify=False)
        with pytest.raises(SnapshotError, match=r"suggestions\.npz"):
            _ = engine.suggester
