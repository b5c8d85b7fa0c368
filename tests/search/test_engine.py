"""The search engine over the shared lexical-only snapshot: the whole query pipeline."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from api.service import open_snapshot
from indexer.build import BuildConfig, build_snapshot
from search.engine import EngineConfig, SearchEngine, replace_weights
from search.errors import InvalidRequestError, ProductNotFoundError, SnapshotError
from search.tuning import Tuning
from search.types import Availability, Filters, Product, SearchRequest, SearchResult, SortOrder
from search.weights import RankingWeights


def search(engine: SearchEngine, text: str = "", **kwargs: object) -> SearchResult:
    """Run one request."""
    return engine.search(SearchRequest(text=text, **kwargs))  # type: ignore[arg-type]


def ids(result: SearchResult) -> list[str]:
    """Product ids of a result page, in order."""
    return [hit.product.id for hit in result.hits]


class TestOpen:
    def test_lexical_only(self, core_engine: SearchEngine) -> None:
        assert len(core_engine) == 12
        assert list(core_engine.retrievers) == ["lexical"]
        assert core_engine.vector_index is None
        assert core_engine.analyzer.language_codes == ("en", "pl")

    def test_unknown_fusion(self, core_engine: SearchEngine) -> None:
        with pytest.raises(ValueError, match="valid: rrf, score"):
            core_engine.with_config(EngineConfig(fusion="magic"))

    @pytest.mark.parametrize("fusion", ["rrf", "score"])
    def test_with_config(self, core_engine: SearchEngine, fusion: str) -> None:
        engine = core_engine.with_config(EngineConfig(fusion=fusion))
        assert ids(search(engine, "walnut chair"))[0] == "CHAIR-2"

    def test_zero_weight_turns_a_retriever_off(self, core_engine: SearchEngine) -> None:
        engine = core_engine.with_config(replace_weights(EngineConfig(), lexical=0.0))
        query = engine.understander.understand(SearchRequest(text="walnut chair"))
        assert engine.run_retrievers(query, 10, None) == {}
        assert search(engine, "walnut chair").hits == ()

    def test_zero_weight_in_a_requests_tuning(self, core_engine: SearchEngine) -> None:
        # The same engine answers one request with the lexical retriever off and the next
        # with its own weights: the weights are a value passed with the request.
        off = Tuning(RankingWeights(retrievers={"lexical": 0.0}))
        request = SearchRequest(text="walnut chair")
        assert core_engine.search(request, off).hits == ()
        assert core_engine.search(request).hits[0].product.id == "CHAIR-2"

    def test_missing_snapshot(self, tmp_path: Path) -> None:
        with pytest.raises(SnapshotError, match="does not exist"):
            open_snapshot(tmp_path / "nowhere")


class TestQueries:
    @pytest.mark.parametrize(
        ("text", "first"),
        [
            ("walnut chair", "CHAIR-2"),
            ("oak dining table", "TABLE-1"),
            ("wool coat", "COAT-1"),
            ("Nordhem couch", "COUCH-1"),
            ("jeans", "JEANS-1"),
            ("160 cm table", "TABLE-1"),
            ("160cm", "TABLE-1"),
        ],
    )
    def test_best_match_first(self, core_engine: SearchEngine, text: str, first: str) -> None:
        result = search(core_engine, text)
        assert ids(result)[0] == first
        assert result.corrected_query is None
        assert result.query == text

    def test_scores_descend(self, core_engine: SearchEngine) -> None:
        result = search(core_engine, "oak")
        scores = [h.score for h in result.hits]
        assert scores == sorted(scores, reverse=True)
        # The three oak products, and the Polish "szafa dębowa" (the catalogue is analysed in
        # Polish too: an English word also matches its Polish translations).
        assert len(scores) == 4
        assert "SZAFA-1" in ids(result)

    @pytest.mark.parametrize(
        ("text", "corrected", "first"),
        [
            ("wallnut chiar", "walnut chair", "CHAIR-2"),
            ("wardrobbe", "wardrobe", "WARDROBE-1"),
            ("linnen shirt", "linen shirt", "SHIRT-1"),
        ],
    )
    def test_typo(self, core_engine: SearchEngine, text: str, corrected: str, first: str) -> None:
        result = search(core_engine, text, as_you_type=False)
        assert result.corrected_query == corrected
        assert ids(result)[0] == first

    @pytest.mark.parametrize(
        ("text", "product"),
        [
            ("krzesło", "KRZESLO-1"),
            ("krzeslo", "KRZESLO-1"),
            ("Krzesła", "KRZESLO-1"),  # inflected, diacritics
            ("krzesla", "KRZESLO-1"),  # inflected, no diacritics
            ("żółte krzesło", "KRZESLO-1"),
            ("zolte krzeslo", "KRZESLO-1"),
            ("szafa dębowa", "SZAFA-1"),
            ("szafa debowa", "SZAFA-1"),
            ("czerwonych kurtek", "KURTKA-1"),
        ],
    )
    def test_polish(self, core_engine: SearchEngine, text: str, product: str) -> None:
        result = search(core_engine, text, as_you_type=False)
        assert ids(result)[0] == product

    @pytest.mark.parametrize(
        ("text", "as_you_type", "product", "found"),
        [
            ("wardr", True, "WARDROBE-1", True),
            ("wardr", False, "WARDROBE-1", False),
            ("wardr ", True, "WARDROBE-1", False),  # a trailing space ends the word
            ("white wardr", True, "WARDROBE-1", True),
            ("wardr linen", True, "WARDROBE-1", False),  # only the last word is a prefix
            ("extend", True, "TABLE-1", True),
            ("krzes", True, "KRZESLO-1", True),
        ],
    )
    def test_as_you_type(
        self, core_engine: SearchEngine, text: str, as_you_type: bool, product: str, found: bool
    ) -> None:
        result = search(core_engine, text, as_you_type=as_you_type)
        if found:
            assert ids(result)[0] == product
        else:
            assert product not in ids(result)

    def test_search_ids(self, core_engine: SearchEngine) -> None:
        assert core_engine.search_ids("walnut chair", k=1) == ["CHAIR-2"]

    def test_no_match(self, core_engine: SearchEngine) -> None:
        result = search(core_engine, "xylophone")
        assert result.hits == ()
        assert result.total == 0


class TestBrowse:
    @pytest.mark.parametrize("text", ["", " ", "  \t ", "the", "and of"])
    def test_empty_query_lists_everything(self, core_engine: SearchEngine, text: str) -> None:
        result = search(core_engine, text, k=50)
        assert result.total == 12
        assert len(result.hits) == 12
        assert result.corrected_query is None

    def test_filtered_browse(self, core_engine: SearchEngine) -> None:
        result = search(core_engine, "", filters=Filters(categories=(("Clothing",),)), k=50)
        assert result.total == 4
        assert set(ids(result)) == {"SHIRT-1", "COAT-1", "JEANS-1", "KURTKA-1"}

    def test_pages_cover_the_catalogue_once(self, core_engine: SearchEngine) -> None:
        pages = [ids(search(core_engine, "", k=5, page=p)) for p in (1, 2, 3, 4)]
        assert [len(p) for p in pages] == [5, 5, 2, 0]
        seen = [i for page in pages for i in page]
        assert len(seen) == len(set(seen)) == 12


class TestFiltersAndFacets:
    @pytest.mark.parametrize(
        ("text", "filters", "expected"),
        [
            ("chair", Filters(brands=("woodly",)), {"CHAIR-1", "CHAIR-2"}),
            ("chair", Filters(brands=("Meble Łódź",)), {"KRZESLO-1"}),  # "krzesło"
            ("oak", Filters(categories=(("Furniture", "Dining"),)), {"CHAIR-1", "TABLE-1"}),
            ("chair", Filters(availability=(Availability.IN_STOCK,)), {"CHAIR-1", "KRZESLO-1"}),
            ("chair", Filters(price_max=100), {"CHAIR-1"}),
            ("", Filters(attributes={"size": ("S",)}), {"SHIRT-1", "KURTKA-1"}),
            ("", Filters(brands=("Fjord",), price_max=150), {"SHIRT-1", "COAT-1"}),
        ],
    )
    def test_filters(
        self, core_engine: SearchEngine, text: str, filters: Filters, expected: set[str]
    ) -> None:
        result = search(core_engine, text, filters=filters, k=50)
        assert set(ids(result)) == expected
        assert result.total == len(expected)

    def test_facets_count_the_matching_products(self, core_engine: SearchEngine) -> None:
        result = search(core_engine, "chair", facets=("brand", "category", "availability"))
        assert result.total == 3  # the two chairs and the Polish "krzesło"
        facets = {
            name: {v.value: v.count for v in values} for name, values in result.facets.items()
        }
        assert facets["brand"] == {"Woodly": 2, "Meble Łódź": 1}
        assert facets["category"]["Furniture > Dining > Chairs"] == 2
        assert facets["availability"] == {"in_stock": 2, "preorder": 1}

    def test_facets_respect_filters(self, core_engine: SearchEngine) -> None:
        result = search(
            core_engine, "", filters=Filters(categories=(("Clothing",),)), facets=("attr:size",)
        )
        assert {v.value: v.count for v in result.facets["attr:size"]} == {"M": 4, "S": 2, "L": 2}

    def test_no_facets_asked(self, core_engine: SearchEngine) -> None:
        assert search(core_engine, "chair").facets == {}

    def test_facet_names(self, core_engine: SearchEngine) -> None:
        assert "attr:size" in core_engine.facet_names()
        assert "colour" in core_engine.facet_names()


class TestSort:
    ASCENDING = (
        "SHIRT-1",  # 39
        "JEANS-1",  # 59
        "CHAIR-1",  # 89
        "CHAIR-2",  # 129
    )

    # Prices are in EUR but for two PLN products; with no exchange rate configured those
    # are not compared with euro amounts: after the EUR prices, before unknown prices.
    def test_browse_by_price_ascending(self, core_engine: SearchEngine) -> None:
        result = search(core_engine, "", sort=SortOrder.PRICE_ASC, k=50)
        assert result.currency == "EUR"
        order = ids(result)
        assert tuple(order[:4]) == self.ASCENDING
        assert set(order[-4:-2]) == {"KRZESLO-1", "SZAFA-1"}  # PLN: not comparable
        assert set(order[-2:]) == {"WARDROBE-1", "KURTKA-1"}  # unknown prices last
        prices = [h.product.effective_price for h in result.hits[:-4]]
        assert prices == sorted(prices)  # type: ignore[type-var]

    def test_browse_by_price_descending(self, core_engine: SearchEngine) -> None:
        result = search(core_engine, "", sort=SortOrder.PRICE_DESC, k=50)
        order = ids(result)
        assert order[:3] == ["SOFA-1", "COUCH-1", "TABLE-1"]  # 999 on sale, 899, 649 (EUR)
        assert set(order[-4:-2]) == {"KRZESLO-1", "SZAFA-1"}  # PLN: not comparable
        assert set(order[-2:]) == {"WARDROBE-1", "KURTKA-1"}  # unknown prices still last
        prices = [h.product.effective_price for h in result.hits[:-4]]
        assert prices == sorted(prices, reverse=True)  # type: ignore[type-var]

    @pytest.mark.parametrize(
        ("sort", "expected"),
        [
            (SortOrder.PRICE_ASC, ["CHAIR-1", "CHAIR-2", "TABLE-1"]),
            (SortOrder.PRICE_DESC, ["TABLE-1", "CHAIR-2", "CHAIR-1"]),
        ],
    )
    def test_query_by_price(
        self, core_engine: SearchEngine, sort: SortOrder, expected: list[str]
    ) -> None:
        assert ids(search(core_engine, "dining", sort=sort)) == expected

    def test_sorted_pages(self, core_engine: SearchEngine) -> None:
        first = ids(search(core_engine, "", sort=SortOrder.PRICE_ASC, k=2, page=1))
        second = ids(search(core_engine, "", sort=SortOrder.PRICE_ASC, k=2, page=2))
        assert tuple(first + second) == self.ASCENDING


class TestPagination:
    @pytest.mark.parametrize("text", ["", "dining", "oak"])
    def test_page_two_continues_page_one(self, core_engine: SearchEngine, text: str) -> None:
        whole = ids(search(core_engine, text, k=50))
        first = search(core_engine, text, k=2, page=1)
        second = search(core_engine, text, k=2, page=2)
        assert ids(first) + ids(second) == whole[:4]
        assert not set(ids(first)) & set(ids(second))
        assert first.total == second.total == len(whole)

    def test_page_past_the_end_is_empty(self, core_engine: SearchEngine) -> None:
        result = search(core_engine, "dining", k=10, page=5)
        assert result.hits == ()
        assert result.total == 3


class TestExplain:
    def test_off_by_default(self, core_engine: SearchEngine) -> None:
        assert all(h.explanation is None for h in search(core_engine, "oak").hits)

    def test_lexical_trace_and_exact_matches(self, core_engine: SearchEngine) -> None:
        result = search(core_engine, "oak chair", explain=True)
        for rank, hit in enumerate(result.hits, start=1):
            explanation = hit.explanation
            assert explanation is not None
            (trace,) = explanation.retrievers
            assert trace.retriever == "lexical"
            assert trace.rank == rank
            assert trace.score > 0
            assert trace.weight == 1.0
            assert explanation.fused_score == hit.score
        top = result.hits[0]
        assert top.product.id == "CHAIR-1"
        assert top.explanation is not None
        assert top.explanation.matched_terms == {
            "oak": ("oak (exact)",),
            "chair": ("chair (exact)",),
        }
        assert top.explanation.adjustments == ()

    def test_corrections_are_explained(self, core_engine: SearchEngine) -> None:
        result = search(core_engine, "wallnut chiar", explain=True)
        explanation = result.hits[0].explanation
        assert explanation is not None
        assert explanation.matched_terms == {
            "wallnut": ("walnut (fuzzy)",),
            "chiar": ("chair (fuzzy)",),
        }
        assert explanation.adjustments == (("understand", "searched as 'walnut chair'"),)

    def test_prefix_is_explained(self, core_engine: SearchEngine) -> None:
        explanation = search(core_engine, "wardr", explain=True).hits[0].explanation
        assert explanation is not None
        assert explanation.matched_terms == {"wardr": ("wardrobe (prefix)",)}

    def test_browse_has_no_retrievers(self, core_engine: SearchEngine) -> None:
        explanation = search(core_engine, "", explain=True).hits[0].explanation
        assert explanation is not None
        assert explanation.retrievers == ()
        assert explanation.matched_terms == {}


class TestValidation:
    @pytest.mark.parametrize(
        ("kwargs", "field"),
        [
            ({"k": 0}, "k"),
            ({"k": -1}, "k"),
            ({"k": 251}, "k"),
            ({"page": 0}, "page"),
            ({"page": -3}, "page"),
            ({"filters": Filters(price_min=10, price_max=5)}, "price_min"),
            ({"facets": ("nope",)}, "facets"),
            ({"facets": ("brand", "attr:colour")}, "facets"),
        ],
    )
    def test_invalid_request_names_the_field(
        self, core_engine: SearchEngine, kwargs: dict[str, object], field: str
    ) -> None:
        with pytest.raises(InvalidRequestError) as info:
            search(core_engine, "chair", **kwargs)
        assert info.value.field == field
        assert str(info.value).startswith(f"{field}: ")

    @pytest.mark.parametrize("k", [1, 250])
    def test_k_bounds_are_inclusive(self, core_engine: SearchEngine, k: int) -> None:
        assert len(search(core_engine, "", k=k).hits) == min(k, 12)

    def test_unknown_facet_lists_the_valid_ones(self, core_engine: SearchEngine) -> None:
        with pytest.raises(InvalidRequestError, match="valid facets: brand, category"):
            search(core_engine, "", facets=("size",))


class TestGetProduct:
    def test_get_product(self, core_engine: SearchEngine) -> None:
        product = core_engine.get_product("KRZESLO-1")
        assert product.title == "Żółte krzesło ogrodowe"
        assert product.lang == "pl"
        assert product.categories == (("Meble", "Ogród", "Krzesła"),)

    @pytest.mark.parametrize("product_id", ["", "nope", "krzeslo-1"])
    def test_unknown(self, core_engine: SearchEngine, product_id: str) -> None:
        with pytest.raises(ProductNotFoundError, match=repr(product_id)):
            core_engine.get_product(product_id)

    def test_no_import_report(self, core_engine: SearchEngine) -> None:
        assert core_engine.import_report() is None


class ToyEmbedder:
    """A deterministic stand-in for a text model: one dimension per concept.

    Words of one concept ("sofa", "couch") share a dimension, so semantic retrieval finds
    products that share no word with the query, without loading any weights.
    """

    CONCEPTS: tuple[frozenset[str], ...] = (
        frozenset({"sofa", "couch", "couches", "sofas", "settee"}),
        frozenset({"chair", "chairs", "krzesło", "krzesła", "stool"}),
        frozenset({"coat", "coats", "jacket", "jackets", "kurtka"}),
        frozenset({"wardrobe", "wardrobes", "szafa", "szafy", "closet"}),
    )
    version = "toy 1"
    min_similarity = 0.25

    def __init__(self, dim: int = 5, name: str = "toy") -> None:
        self.dim = dim
        self.name = name
        self.warmed = False

    def warm_up(self) -> None:
        self.warmed = True

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            words = set(text.lower().replace(",", " ").replace(".", " ").split())
            for col, concept in enumerate(self.CONCEPTS[: self.dim - 1]):
                out[row, col] = len(words & concept)
            out[row, -1] = 0.1  # never a zero vector
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed(texts)

    def embed_documents(
        self, texts: Sequence[str], batch_size: int = 64, show_progress: bool = False
    ) -> np.ndarray:
        return self._embed(texts)


@pytest.fixture(scope="module")
def toy_snapshot(
    core_products: tuple[Product, ...], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The shared catalogue with toy text vectors."""
    out = tmp_path_factory.mktemp("toy") / "snapshot"
    build_snapshot(
        core_products, out, config=BuildConfig(languages=("en", "pl")), embedder=ToyEmbedder()
    )
    return out


@pytest.fixture(scope="module")
def toy_engine(toy_snapshot: Path) -> SearchEngine:
    """Lexical and (toy) semantic retrieval."""
    return open_snapshot(toy_snapshot, embedder=ToyEmbedder())


class TestSemantic:
    """The semantic path with a toy embedder: vectors, faiss, filters, fusion, explanations."""

    def test_retrievers(self, toy_engine: SearchEngine) -> None:
        assert list(toy_engine.retrievers) == ["lexical", "semantic"]
        assert toy_engine.manifest.models["text_embedder"] == "toy"
        assert toy_engine.embedder is not None
        assert toy_engine.embedder.warmed  # type: ignore[attr-defined]

    def test_finds_a_product_without_shared_words(self, toy_engine: SearchEngine) -> None:
        result = toy_engine.search(SearchRequest(text="settee", explain=True))
        assert set(ids(result)) == {"COUCH-1", "SOFA-1"}
        assert result.total == 2
        for hit in result.hits:
            assert hit.explanation is not None
            (trace,) = hit.explanation.retrievers
            assert trace.retriever == "semantic"
            assert trace.weight == 0.4
            assert hit.explanation.matched_terms == {}

    def test_both_retrievers_in_the_explanation(self, toy_engine: SearchEngine) -> None:
        result = toy_engine.search(SearchRequest(text="sofa", explain=True))
        hits = {h.product.id: h.explanation for h in result.hits}
        assert hits["SOFA-1"] is not None
        assert {t.retriever for t in hits["SOFA-1"].retrievers} == {"lexical", "semantic"}
        assert result.hits[0].product.id == "SOFA-1"

    def test_filters_apply_to_semantic_hits(self, toy_engine: SearchEngine) -> None:
        filters = Filters(brands=("Nordhem",), price_max=950)
        result = toy_engine.search(SearchRequest(text="settee", filters=filters))
        assert ids(result) == ["COUCH-1"]

    def test_semantic_weight_zero(self, toy_engine: SearchEngine) -> None:
        engine = toy_engine.with_config(replace_weights(EngineConfig(), semantic=0.0))
        query = engine.understander.understand(SearchRequest(text="settee"))
        assert list(engine.run_retrievers(query, 10, None)) == ["lexical"]
        assert search(engine, "settee").hits == ()
        # The same, per request, on the engine that has semantic retrieval on.
        off = Tuning(RankingWeights(retrievers={"lexical": 1.0, "semantic": 0.0}))
        assert toy_engine.search(SearchRequest(text="settee"), off).hits == ()
        assert toy_engine.search(SearchRequest(text="settee")).hits != ()

    def test_zero_result_fallback_lowers_the_floor(self, toy_snapshot: Path) -> None:
        # "settee" shares no word with any product; with a strict similarity floor the normal
        # pipeline finds nothing, and the fallback shows the nearest products by meaning.
        strict = EngineConfig(semantic_min_similarity=0.999, fallback_margin=0.5)
        engine = open_snapshot(toy_snapshot, embedder=ToyEmbedder(), config=strict)
        result = engine.search(SearchRequest(text="settee"))
        assert result.fallback == "semantic"
        assert set(ids(result)) == {"COUCH-1", "SOFA-1"}
        off = engine.with_config(replace(strict, fallback_margin=0.0))
        result = off.search(SearchRequest(text="settee"))
        assert result.fallback is None and result.hits == ()

    def test_no_fallback_when_something_matches(self, toy_engine: SearchEngine) -> None:
        assert toy_engine.search(SearchRequest(text="sofa")).fallback is None

    def test_use_semantic_false(self, toy_snapshot: Path) -> None:
        engine = open_snapshot(toy_snapshot, embedder=ToyEmbedder(), use_semantic=False)
        assert list(engine.retrievers) == ["lexical"]

    def test_embedder_of_another_width_is_refused(self, toy_snapshot: Path) -> None:
        with pytest.raises(SnapshotError, match="gives 3-d vectors, the snapshot holds 5-d"):
            open_snapshot(toy_snapshot, embedder=ToyEmbedder(dim=3))
