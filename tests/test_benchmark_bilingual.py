"""The bilingual benchmark's Polish catalogue and queries (benchmarks/polish_fashion.py,
benchmarks/bilingual.py), on a few rows in the fashion set's shape."""

from __future__ import annotations

import pytest

from benchmarks.bilingual import Query, make_queries
from benchmarks.polish_fashion import FashionRow, material_of, polish_product


def row(pid: str, article: str, colour: str, title: str, usage: str = "Casual") -> FashionRow:
    return FashionRow(pid, "Men", "Apparel", "Topwear", article, colour, usage, title)


class TestPolishProduct:
    @pytest.mark.parametrize(
        ("article", "colour", "words"),
        [
            ("Shirts", "Navy Blue", {"koszula", "granatowa", "męska", "bawełniana"}),
            ("Jeans", "Blue", {"jeansy", "niebieskie", "męskie", "bawełniane"}),
            ("Watches", "Black", {"zegarek", "czarny", "męski", "bawełniany"}),
        ],
    )
    def test_title_agrees_with_the_noun(self, article: str, colour: str, words: set[str]) -> None:
        product = polish_product(row("1", article, colour, "Turtle Men Cotton Thing"))
        assert product is not None
        assert set(product.title.lower().split()) == {*words, "turtle"}
        assert product.lang == "pl"
        assert product.brand == "Turtle"

    def test_use_other_than_casual_is_named(self) -> None:
        product = polish_product(row("1", "Tshirts", "Red", "Nike Men Red Tshirt", "Sports"))
        assert product is not None
        assert "sportowa" in product.title.lower().split()

    @pytest.mark.parametrize(("article", "colour"), [("Ipad", "Black"), ("Shirts", "Mushroom")])
    def test_no_polish_name(self, article: str, colour: str) -> None:
        assert polish_product(row("1", article, colour, "X Men Shirt")) is None

    def test_material_of_title(self) -> None:
        assert material_of("Baggit Women Leather-Look Bag") == "leather"
        assert material_of("Puma Men Shoes") is None


def test_queries_in_both_languages() -> None:
    rows = [row(str(i), "Shirts", "Navy Blue", f"Brand Men Navy Blue Shirt {i}") for i in range(3)]
    rows += [row("9", "Shirts", "Red", "Brand Men Red Shirt")]
    queries = make_queries(rows, min_pairs=3)
    assert len(queries) == 1
    (query,) = queries
    assert query.english == "navy blue shirts"
    assert query.polish in ("granatowa koszula", "granatowe koszule")
    assert query.relevant(rows[0]) and not query.relevant(rows[-1])


def test_relevance_needs_every_label() -> None:
    query = Query("use+type", "sports tshirts", "sportowa koszulka", "Tshirts", usage="Sports")
    assert query.relevant(row("1", "Tshirts", "Red", "t", "Sports"))
    assert not query.relevant(row("1", "Tshirts", "Red", "t", "Casual"))
    assert not query.relevant(row("1", "Shirts", "Red", "t", "Sports"))
