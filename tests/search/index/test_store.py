"""The product store: look-ups, filters, facets and persistence."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest

from search.errors import InvalidRequestError, ProductNotFoundError
from search.index.store import (
    IdIndex,
    LazyProducts,
    ProductIds,
    ProductStore,
    category_label,
    parse_category,
)
from search.types import Availability, FacetValue, Filters, Product


@pytest.fixture(scope="module")
def store(core_products: tuple[Product, ...]) -> ProductStore:
    """The shared catalogue's store."""
    return ProductStore(core_products)


PRICED = {
    "COUCH-1",
    "SOFA-1",
    "CHAIR-1",
    "CHAIR-2",
    "TABLE-1",
    "KRZESLO-1",
    "SZAFA-1",
    "SHIRT-1",
    "COAT-1",
    "JEANS-1",
}
"""Products of the shared catalogue that have a price."""


def filtered(store: ProductStore, filters: Filters) -> set[str]:
    """Ids of the products passing the filters."""
    mask = store.mask(filters)
    assert mask is not None
    return {store.products[d].id for d in np.flatnonzero(mask)}


def all_docs(store: ProductStore) -> np.ndarray:
    """Every document number."""
    return np.arange(len(store), dtype=np.int64)


def counts(values: tuple[FacetValue, ...]) -> dict[str, int]:
    """Facet buckets as a dict."""
    return {v.value: v.count for v in values}


class TestCategories:
    @pytest.mark.parametrize(
        ("text", "path"),
        [
            ("", ()),
            ("  ", ()),
            ("Furniture", ("Furniture",)),
            ("Furniture > Sofas", ("Furniture", "Sofas")),
            ("Furniture/Sofas", ("Furniture", "Sofas")),
            ("Furniture | Sofas |", ("Furniture", "Sofas")),
        ],
    )
    def test_parse_category(self, text: str, path: tuple[str, ...]) -> None:
        assert parse_category(text) == path

    def test_label(self) -> None:
        assert category_label(("Furniture", "Sofas")) == "Furniture > Sofas"
        assert parse_category(category_label(("A", "B", "C"))) == ("A", "B", "C")


class TestLookup:
    def test_get(self, store: ProductStore, core_products: tuple[Product, ...]) -> None:
        assert len(store) == len(core_products)
        for product in core_products:
            assert store.get(product.id) == product

    @pytest.mark.parametrize("product_id", ["", "NOPE", "sofa-1"])
    def test_unknown_id(self, store: ProductStore, product_id: str) -> None:
        with pytest.raises(ProductNotFoundError) as info:
            store.get(product_id)
        assert info.value.product_id == product_id
        assert isinstance(info.value, LookupError)

    def test_prices_are_effective_prices(self, store: ProductStore) -> None:
        assert store.prices[store.doc_of["SOFA-1"]] == 999.0  # sale price
        assert store.prices[store.doc_of["CHAIR-1"]] == 89.0
        assert np.isnan(store.prices[store.doc_of["WARDROBE-1"]])


class TestIdIndex:
    def test_ids_map_to_their_documents(self) -> None:
        ids = ["SKU-1", "zażółć-2", "", "x" * 300, "SKU-10"]
        index = IdIndex(ids)
        assert [index[i] for i in ids] == list(range(len(ids)))
        assert list(index) == ids and len(index) == len(ids)
        assert index.get("SKU-2") is None and "SKU-2" not in index and 42 not in index
        with pytest.raises(KeyError):
            index["nope"]
        assert ProductIds(index)[1] == "zażółć-2" and ProductIds(index)[-1] == "SKU-10"
        assert list(ProductIds(index)[1:3]) == ["zażółć-2", ""]

    def test_ids_with_the_same_hash_are_told_apart(self) -> None:
        assert zlib.crc32(b"plumless") == zlib.crc32(b"buckeroo")  # a known CRC-32 collision
        index = IdIndex(["a", "plumless", "b", "buckeroo"])
        assert index["plumless"] == 1 and index["buckeroo"] == 3
        assert index.get("buckeroo2") is None

    def test_the_store_looks_ids_up_through_it(
        self, store: ProductStore, core_products: tuple[Product, ...]
    ) -> None:
        assert isinstance(store.doc_of, IdIndex)
        for doc, product in enumerate(core_products):
            assert store.doc_of[product.id] == doc and store.ids[doc] == product.id


class TestFilters:
    def test_no_filter_is_no_mask(self, store: ProductStore) -> None:
        assert store.mask(Filters()) is None

    @pytest.mark.parametrize(
        ("filters", "expected"),
        [
            (Filters(brands=("Woodly",)), {"CHAIR-1", "CHAIR-2", "TABLE-1"}),
            (Filters(brands=("woodly",)), {"CHAIR-1", "CHAIR-2", "TABLE-1"}),
            (Filters(brands=("FJORD",)), {"SHIRT-1", "COAT-1", "KURTKA-1"}),
            (Filters(brands=("meble lodz",)), {"KRZESLO-1", "SZAFA-1"}),
            (Filters(brands=("Casa", "Denimo")), {"WARDROBE-1", "JEANS-1"}),
            (Filters(brands=("Unknown",)), set()),
            (
                Filters(categories=(("Furniture",),)),
                {"COUCH-1", "SOFA-1", "CHAIR-1", "CHAIR-2", "TABLE-1", "WARDROBE-1"},
            ),
            (Filters(categories=(("furniture", "dining"),)), {"CHAIR-1", "CHAIR-2", "TABLE-1"}),
            (Filters(categories=(("Furniture", "Dining", "Chairs"),)), {"CHAIR-1", "CHAIR-2"}),
            (
                Filters(categories=(("Clothing", "Men"), ("Meble",))),
                {"SHIRT-1", "JEANS-1", "KRZESLO-1", "SZAFA-1"},
            ),
            (Filters(categories=(("Dining",),)), set()),  # not a prefix path
            (Filters(attributes={"size": ("S",)}), {"SHIRT-1", "KURTKA-1"}),
            (Filters(attributes={"Size": ("s", "L")}), {"SHIRT-1", "JEANS-1", "KURTKA-1"}),
            (
                Filters(attributes={"size": ("S", "L"), "material": ("linen", "denim")}),
                {"SHIRT-1", "JEANS-1"},
            ),
            (Filters(attributes={"size": ("S",), "material": ("denim",)}), set()),
            (Filters(attributes={"material": ("dąb",)}), {"SZAFA-1"}),
            (Filters(attributes={"material": ("dab",)}), {"SZAFA-1"}),
            (Filters(attributes={"colour": ("red",)}), set()),  # colours are not attributes
            (Filters(price_min=1000), {"SZAFA-1"}),  # SOFA-1 costs 1299 but is on sale for 999
            (Filters(price_max=999), PRICED - {"SZAFA-1"}),
            (Filters(price_min=140, price_max=150), {"KRZESLO-1", "COAT-1"}),  # coat: sale 149
            # Unknown prices never pass a price filter.
            (Filters(price_min=0), PRICED),
            (Filters(availability=(Availability.OUT_OF_STOCK,)), {"SZAFA-1"}),
            (
                Filters(availability=(Availability.PREORDER, Availability.BACKORDER)),
                {"CHAIR-2", "WARDROBE-1"},
            ),
            (
                Filters(brands=("Woodly",), categories=(("Furniture", "Dining"),), price_max=100),
                {"CHAIR-1"},
            ),
        ],
    )
    def test_mask(self, store: ProductStore, filters: Filters, expected: set[str]) -> None:
        assert filtered(store, filters) == expected


class TestFacets:
    def test_facet_names(self, store: ProductStore) -> None:
        assert store.facet_names() == [
            "brand",
            "category",
            "availability",
            "price",
            "colour",
            "attr:material",
            "attr:size",
        ]

    def test_no_names_no_facets(self, store: ProductStore) -> None:
        assert store.facets(all_docs(store), []) == {}

    def test_brand_merges_spellings(self, store: ProductStore) -> None:
        brand = store.facets(all_docs(store), ["brand"])["brand"]
        assert counts(brand) == {
            "Fjord": 3,  # "Fjord" twice and "fjord" once: the common spelling is shown
            "Woodly": 3,
            "Meble Łódź": 2,
            "Nordhem": 2,
            "Casa": 1,
            "Denimo": 1,
        }
        assert [v.count for v in brand] == sorted((v.count for v in brand), reverse=True)

    def test_category_levels(self, store: ProductStore) -> None:
        category = counts(store.facets(all_docs(store), ["category"], limit=100)["category"])
        assert category["Furniture"] == 6
        assert category["Furniture > Dining"] == 3
        assert category["Furniture > Dining > Chairs"] == 2
        assert category["Clothing"] == 4
        assert category["Meble > Ogród > Krzesła"] == 1

    def test_attribute_and_colour(self, store: ProductStore) -> None:
        facets = store.facets(all_docs(store), ["attr:size", "colour"])
        assert counts(facets["attr:size"]) == {"M": 4, "L": 2, "S": 2}
        colour = counts(facets["colour"])
        assert colour["blue"] == 2
        assert colour["żółty"] == 1

    def test_availability(self, store: ProductStore) -> None:
        facet = store.facets(all_docs(store), ["availability"])["availability"]
        assert counts(facet) == {"in_stock": 9, "preorder": 1, "backorder": 1, "out_of_stock": 1}

    def test_counts_only_the_given_documents(self, store: ProductStore) -> None:
        docs = np.asarray([store.doc_of["CHAIR-1"], store.doc_of["SHIRT-1"]], dtype=np.int64)
        facets = store.facets(docs, ["brand", "category", "attr:size"])
        assert counts(facets["brand"]) == {"Woodly": 1, "Fjord": 1}
        assert counts(facets["category"])["Furniture"] == 1
        assert counts(facets["attr:size"]) == {"S": 1, "M": 1, "L": 1}

    @pytest.mark.parametrize(
        "name", ["brand", "category", "availability", "price", "colour", "attr:size"]
    )
    def test_no_documents(self, store: ProductStore, name: str) -> None:
        assert store.facets(np.zeros(0, dtype=np.int64), [name]) == {name: ()}

    def test_limit(self, store: ProductStore) -> None:
        assert len(store.facets(all_docs(store), ["category"], limit=3)["category"]) == 3

    def test_price_buckets_are_ordered_ranges(self, store: ProductStore) -> None:
        price = store.facets(all_docs(store), ["price"])["price"]
        bounds = [tuple(float(x) for x in v.value.split("-")) for v in price]
        assert all(low < high for low, high in bounds)
        assert bounds == sorted(bounds)

    @pytest.mark.parametrize("ids", [None, ("SHIRT-1",)], ids=["all", "cheapest only"])
    def test_price_buckets_count_every_priced_product(
        self, store: ProductStore, ids: tuple[str, ...] | None
    ) -> None:
        docs = (
            all_docs(store)
            if ids is None
            else np.asarray([store.doc_of[i] for i in ids], dtype=np.int64)
        )
        priced = int(np.isfinite(store.prices[docs]).sum())
        price = store.facets(docs, ["price"])["price"]
        assert sum(v.count for v in price) == priced

    @pytest.mark.parametrize("name", ["", "size", "attr:colour", "Brand", "attr:"])
    def test_unknown_facet(self, store: ProductStore, name: str) -> None:
        with pytest.raises(InvalidRequestError, match="valid facets: brand") as info:
            store.facets(all_docs(store), [name])
        assert info.value.field == "facets"

    def test_store_without_prices_has_no_price_buckets(self) -> None:
        store = ProductStore([Product(id="a", title="A"), Product(id="b", title="B")])
        assert store.facets(all_docs(store), ["price", "brand"]) == {"price": (), "brand": ()}


class TestPersistence:
    def test_round_trip(self, store: ProductStore, tmp_path: Path) -> None:
        path = tmp_path / "products.jsonl"
        store.save(path)
        loaded = ProductStore.load(path)
        assert loaded.products == store.products
        np.testing.assert_array_equal(loaded.prices, store.prices)

    def test_empty(self, tmp_path: Path) -> None:
        path = tmp_path / "products.jsonl"
        ProductStore([]).save(path)
        assert len(ProductStore.load(path)) == 0


class TestLazyProducts:
    """A store opened from a snapshot file decodes products on access."""

    def test_open_matches_the_in_memory_store(self, store: ProductStore, tmp_path: Path) -> None:
        path = tmp_path / "products.jsonl"
        store.save(path)
        opened = ProductStore.open(path)
        assert isinstance(opened.products, LazyProducts)
        assert len(opened) == len(store)
        assert list(opened.products) == list(store.products)
        assert opened.products[-1] == store.products[-1]
        assert tuple(opened.products[1:3]) == tuple(store.products[1:3])
        assert opened.doc_of == store.doc_of
        np.testing.assert_array_equal(opened.prices, store.prices)
        np.testing.assert_array_equal(opened.brand_ids, store.brand_ids)
        assert opened.facets(all_docs(opened), ["brand", "category"]) == store.facets(
            all_docs(store), ["brand", "category"]
        )

    def test_many_lookups_past_the_cache(self, store: ProductStore, tmp_path: Path) -> None:
        path = tmp_path / "products.jsonl"
        store.save(path)
        opened = ProductStore.open(path, cache_size=2)
        for _ in range(50):
            for doc, product in enumerate(store.products):
                assert opened.products[doc] == product
                assert opened.get(product.id) == product

    def test_out_of_range_and_blank_lines(self, store: ProductStore, tmp_path: Path) -> None:
        path = tmp_path / "products.jsonl"
        store.save(path)
        path.write_bytes(b"\n" + path.read_bytes() + b"  \n\n")
        products = LazyProducts(path)
        assert list(products) == list(store.products)
        assert len(products) == len(store)
        with pytest.raises(IndexError):
            products[len(store)]
