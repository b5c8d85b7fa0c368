"""The generated demo catalogue: rows, bad rows, pictures, determinism, and its import."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from PIL import Image

from indexer.catalogue import ImportResult, read_catalogue
from indexer.demo import BACKGROUND, BAD_ROWS, COLOURS, write_demo_catalogue
from search.types import Availability

N = 300
CATEGORIES = {
    ("Furniture", "Sofas"),
    ("Furniture", "Chairs"),
    ("Furniture", "Tables"),
    ("Furniture", "Beds"),
    ("Lighting", "Lamps"),
    ("Clothing", "Shirts"),
    ("Clothing", "T-Shirts"),
    ("Clothing", "Dresses"),
    ("Clothing", "Jeans"),
    ("Clothing", "Jackets"),
    ("Shoes", "Sneakers"),
    ("Shoes", "Boots"),
}
POLISH_LETTERS = set("ąćęłńóśźżĄĆĘŁŃÓŚŹŻ")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_demo_catalogue(tmp_path_factory.mktemp("demo"))


@pytest.fixture(scope="module")
def imported(demo: Path) -> ImportResult:
    return read_catalogue(demo)


def dominant_colour(path: Path) -> tuple[int, int, int]:
    """The most frequent colour of a picture other than the studio background."""
    with Image.open(path) as image:
        counts = image.convert("RGB").getcolors(maxcolors=256 * 256) or []
    count, colour = max((c for c in counts if c[1] != BACKGROUND), key=lambda c: c[0])
    assert count > 256 * 256 // 20, "the product covers at least 5% of the picture"
    assert isinstance(colour, tuple)
    return (colour[0], colour[1], colour[2])


class TestDemoCatalogue:
    def test_writes_the_products_then_the_bad_rows(self, demo: Path) -> None:
        assert demo == demo.parent / "catalogue.jsonl"
        rows = [orjson.loads(line) for line in demo.read_bytes().splitlines()]
        assert len(rows) == N + BAD_ROWS
        assert [row["id"] for row in rows[:N]] == [f"p{i:04d}" for i in range(1, N + 1)]
        no_title, duplicate, bad_price = rows[N:]
        assert "title" not in no_title
        assert duplicate["id"] == "p0001"
        assert bad_price["price"] == "call for price"

    def test_image_paths_are_relative(self, demo: Path) -> None:
        rows = [orjson.loads(line) for line in demo.read_bytes().splitlines()[:N]]
        assert all(row["images"] == [f"images/{row['id']}.png"] for row in rows)

    def test_import_report(self, imported: ImportResult) -> None:
        report = imported.report
        assert (report.rows_read, report.products_ok) == (N + BAD_ROWS, N)
        assert [(e.row, e.field, e.product_id) for e in report.errors] == [
            (N + 1, "title", f"p{N + 1:04d}"),
            (N + 2, "id", "p0001"),
            (N + 3, "price", f"p{N + 2:04d}"),
        ]
        assert report.warnings == ()

    def test_the_first_product_keeps_its_duplicated_id(self, imported: ImportResult) -> None:
        assert imported.products[0].id == "p0001"
        assert imported.products[0].title != "Duplicate Row Exported Twice"

    def test_images_are_pngs_with_the_product_colour_dominant(
        self, demo: Path, imported: ImportResult
    ) -> None:
        for product in imported.products:
            (image_path,) = product.images
            path = Path(image_path)
            assert path.is_absolute()
            assert path == demo.parent.resolve() / "images" / f"{product.id}.png"
            with Image.open(path) as image:
                assert (image.format, image.size, image.mode) == ("PNG", (256, 256), "RGB")
                image.verify()
            assert dominant_colour(path) == COLOURS[product.colours[0]].rgb, product.id

    def test_content_mix(self, imported: ImportResult) -> None:
        products = imported.products
        assert {p.categories[0] for p in products} == CATEGORIES
        assert all(len(p.categories) == 1 for p in products)
        assert {c for p in products for c in p.colours} <= set(COLOURS)
        assert {p.currency for p in products} == {"PLN", "EUR", "USD"}
        assert set(Availability) == {p.availability for p in products}
        assert all(p.price is not None and p.price > 0 for p in products)
        assert all(p.sale_price is None or p.sale_price < (p.price or 0) for p in products)
        assert len({p.brand for p in products}) >= 8
        two_colour = sum(len(p.colours) == 2 for p in products)
        assert 0.08 * N <= two_colour <= 0.25 * N
        assert all(p.gtin is not None and len(p.gtin) == 13 for p in products)

    def test_about_a_fifth_is_polish_with_diacritics(self, imported: ImportResult) -> None:
        polish = [p for p in imported.products if p.lang == "pl"]
        assert 0.12 * N <= len(polish) <= 0.3 * N
        assert all(p.currency == "PLN" for p in polish)
        with_diacritics = [p for p in polish if POLISH_LETTERS & set(p.title + p.description)]
        assert len(with_diacritics) == len(polish)
        assert {p.lang for p in imported.products} == {"pl", "en"}

    def test_clothing_has_sizes_and_gender(self, imported: ImportResult) -> None:
        clothing = [p for p in imported.products if p.categories[0][0] in ("Clothing", "Shoes")]
        assert clothing
        assert all("size" in p.attributes and "gender" in p.attributes for p in clothing)
        assert all("material" in p.attributes for p in imported.products)


class TestDeterminism:
    def test_same_seed_same_bytes(self, tmp_path: Path) -> None:
        first = write_demo_catalogue(tmp_path / "a", seed=3, n_products=25)
        second = write_demo_catalogue(tmp_path / "b", seed=3, n_products=25)
        assert first.read_bytes() == second.read_bytes()
        for image in sorted((first.parent / "images").iterdir()):
            assert image.read_bytes() == (second.parent / "images" / image.name).read_bytes()

    def test_other_seed_other_catalogue(self, tmp_path: Path) -> None:
        first = write_demo_catalogue(tmp_path / "a", seed=1, n_products=25)
        second = write_demo_catalogue(tmp_path / "b", seed=2, n_products=25)
        assert first.read_bytes() != second.read_bytes()

    def test_small_catalogue_counts(self, tmp_path: Path) -> None:
        path = write_demo_catalogue(tmp_path, n_products=5)
        assert len(list((tmp_path / "images").glob("*.png"))) == 5
        report = read_catalogue(path).report
        assert (report.rows_read, report.products_ok, len(report.errors)) == (8, 5, 3)

    def test_rejects_an_empty_catalogue(self, tmp_path: Path) -> None:
        with pytest.raises(ValueError, match="n_products"):
            write_demo_catalogue(tmp_path, n_products=0)
