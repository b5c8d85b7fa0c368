"""The ``colour`` parameter narrows a text query's matches; it never replaces them.

Issue 15 §8: with ``colour=navy`` the demo catalogue answered ``shirt``, ``sofa`` and an empty
query alike with every navy product (64 of them): the parameter's colour took part in the text
match as a scored group, so a navy product matched "shirt" for being navy. Totals, facets and
every page must be the intersection of the text match and the colour filter.
"""

from __future__ import annotations

import numpy as np
import pytest

from api.service import open_snapshot
from indexer.build import BuildConfig, build_snapshot
from indexer.catalogue import read_catalogue
from indexer.demo import write_demo_catalogue
from search.engine import SearchEngine
from search.types import SearchRequest, SearchResult

PAGE = 20


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> SearchEngine:
    """The demo catalogue's snapshot (text and photo colours, lexical retrieval only)."""
    work = tmp_path_factory.mktemp("demo-colour-filter")
    products = read_catalogue(write_demo_catalogue(work / "demo")).products
    build_snapshot(
        products, work / "snap", config=BuildConfig(languages=("en", "pl"), embedder="none")
    )
    return open_snapshot(work / "snap", use_semantic=False, ranker="none")


def search(engine: SearchEngine, text: str, colour: str | None, page: int = 1) -> SearchResult:
    return engine.search(
        SearchRequest(
            text=text,
            colour=colour,
            k=PAGE,
            page=page,
            as_you_type=False,
            facets=("category",),
        )
    )


def every_id(engine: SearchEngine, text: str, colour: str | None) -> list[str]:
    """The ids of every page of a search, in order."""
    first = search(engine, text, colour)
    found = [h.product.id for h in first.hits]
    for page in range(2, (first.total + PAGE - 1) // PAGE + 1):
        found += [h.product.id for h in search(engine, text, colour, page).hits]
    return found


def in_colour(engine: SearchEngine, colour: str) -> set[str]:
    return {engine.store.ids[int(d)] for d in np.flatnonzero(engine.colour_filter(colour))}


class TestColourParameterNarrows:
    @pytest.mark.parametrize("text", ["shirt", "sofa", "jacket", "jeans"])
    def test_total_and_pages_are_the_intersection(self, engine: SearchEngine, text: str) -> None:
        expected = set(every_id(engine, text, None)) & in_colour(engine, "navy")
        assert expected, "the demo catalogue has navy products matching the text"
        result = search(engine, text, "navy")
        assert result.total == len(expected)
        found = every_id(engine, text, "navy")
        assert len(found) == len(set(found)) == len(expected)
        assert set(found) == expected

    @pytest.mark.parametrize("text", ["shirt", "sofa"])
    def test_facets_count_the_intersection(self, engine: SearchEngine, text: str) -> None:
        result = search(engine, text, "navy")
        found = set(every_id(engine, text, "navy"))
        products = [engine.get_product(i) for i in found]
        for bucket in result.facets["category"]:
            path = tuple(bucket.value.split(" > "))
            in_bucket = [p for p in products if any(c[: len(path)] == path for c in p.categories)]
            assert bucket.count == len(in_bucket), bucket.value

    def test_text_still_narrows(self, engine: SearchEngine) -> None:
        # The reported symptom: the same total (every navy product) whatever the text.
        browse = search(engine, "", "navy").total
        assert browse == len(in_colour(engine, "navy"))
        shirts, sofas = search(engine, "shirt", "navy").total, search(engine, "sofa", "navy").total
        assert 0 < sofas < shirts < browse
        sofa_hits = search(engine, "sofa", "navy").hits
        assert all(("Furniture", "Sofas") in h.product.categories for h in sofa_hits)

    def test_the_colour_still_ranks_closest_first(self, engine: SearchEngine) -> None:
        # Among the shirts in the family, the ones whose text says navy come before other
        # blues (the parameter narrows and orders; it is no longer a word of the text).
        hits = search(engine, "shirt", "navy").hits
        assert hits and "navy" in hits[0].product.colours
