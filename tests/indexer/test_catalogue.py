"""Catalogue import: every format, the validation rules, the report and the file-level errors."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import unicodedata
from pathlib import Path

import orjson
import pytest

from indexer.catalogue import (
    CatalogueFormat,
    ImportReport,
    ImportResult,
    detect_format,
    parse_format,
    read_catalogue,
)
from indexer.formats.fields import parse_price
from search.errors import CatalogueError
from search.types import Availability, Product, RowError

G = "http://base.google.com/ns/1.0"


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    return path


def jsonl(*rows: object) -> str:
    return "".join(
        (row if isinstance(row, str) else json.dumps(row, ensure_ascii=False)) + "\n"
        for row in rows
    )


def ids(result: ImportResult) -> list[str]:
    return [product.id for product in result.products]


def only(result: ImportResult) -> Product:
    assert len(result.products) == 1, result.report.errors
    return result.products[0]


GOOD_A = {"id": "a", "title": "Sofa A", "price": 10}
GOOD_B = {"id": "b", "title": "Sofa B", "price": 20}


class TestDetectFormat:
    @pytest.mark.parametrize(
        ("name", "expected"),
        [
            ("catalogue.jsonl", "jsonl"),
            ("catalogue.ndjson", "jsonl"),
            ("export.v2.CSV", "csv"),
            ("feed.tsv", "merchant-tsv"),
            ("feed.txt", "merchant-tsv"),
            ("feed.xml", "merchant-xml"),
            ("feed.rss", "merchant-xml"),
            ("catalogue.jsonl.gz", "jsonl"),
            ("export.csv.gz", "csv"),
            ("feed.tsv.GZ", "merchant-tsv"),
            ("feed.xml.gz", "merchant-xml"),
        ],
    )
    def test_extensions(self, name: str, expected: CatalogueFormat) -> None:
        assert detect_format(Path(name)) == expected

    @pytest.mark.parametrize("name", ["catalogue.json", "catalogue", "catalogue.gz", "a.xlsx"])
    def test_unknown_extension_lists_the_valid_formats(self, name: str) -> None:
        with pytest.raises(CatalogueError) as info:
            detect_format(Path(name))
        message = str(info.value)
        for token in (".jsonl", ".csv", ".tsv", ".xml", ".gz", "merchant-xml", "jsonl"):
            assert token in message

    def test_unknown_format_argument(self, tmp_path: Path) -> None:
        path = write(tmp_path / "c.jsonl", jsonl(GOOD_A))
        with pytest.raises(CatalogueError, match="merchant-tsv"):
            read_catalogue(path, "json")  # type: ignore[arg-type]

    def test_parse_format(self) -> None:
        assert parse_format("merchant-xml") == "merchant-xml"
        with pytest.raises(CatalogueError, match="jsonl, csv, merchant-tsv, merchant-xml"):
            parse_format("xml")

    def test_explicit_format_overrides_the_extension(self, tmp_path: Path) -> None:
        path = write(tmp_path / "export.dat", "id;title\n1;Chair\n")
        assert ids(read_catalogue(path, "csv")) == ["1"]


class TestJsonl:
    def test_every_canonical_field(self, tmp_path: Path) -> None:
        row = {
            "id": "sofa-1",
            "title": "Nordhaus Oslo 3-Seater Sofa",
            "description": "Deep seats.",
            "brand": "Nordhaus",
            "categories": [["Furniture", "Sofas"], "Home > Living room"],
            "attributes": {"material": "velvet", "size": ["L", "XL"], "width_cm": 220},
            "colours": ["navy", "dark blue"],
            "price": 1299.0,
            "currency": "pln",
            "sale_price": "999,00",
            "availability": "out of stock",
            "images": ["https://cdn.example/sofa.jpg"],
            "url": "https://shop.example/sofa-1",
            "gtin": "5901234123457",
            "lang": "PL",
        }
        path = write(tmp_path / "c.jsonl", jsonl(row))
        result = read_catalogue(path)
        assert result.format == "jsonl"
        assert result.report == ImportReport(rows_read=1, products_ok=1, errors=())
        assert only(result) == Product(
            id="sofa-1",
            title="Nordhaus Oslo 3-Seater Sofa",
            description="Deep seats.",
            brand="Nordhaus",
            categories=(("Furniture", "Sofas"), ("Home", "Living room")),
            attributes={"material": ("velvet",), "size": ("L", "XL"), "width_cm": ("220",)},
            colours=("navy", "dark blue"),
            price=1299.0,
            currency="PLN",
            sale_price=999.0,
            availability=Availability.OUT_OF_STOCK,
            images=("https://cdn.example/sofa.jpg",),
            url="https://shop.example/sofa-1",
            gtin="5901234123457",
            lang="pl",
        )

    def test_only_id_and_title_are_required(self, tmp_path: Path) -> None:
        path = write(tmp_path / "c.jsonl", jsonl({"id": 7, "title": "Chair"}))
        assert only(read_catalogue(path)) == Product(id="7", title="Chair")

    @pytest.mark.parametrize(
        ("categories", "expected"),
        [
            ("Furniture > Sofas", (("Furniture", "Sofas"),)),
            (["Furniture > Sofas", "Sale"], (("Furniture", "Sofas"), ("Sale",))),
            ([["Furniture", " Sofas "], ["Furniture", "Sofas"]], (("Furniture", "Sofas"),)),
            (["Furniture>Sofas>", " > "], (("Furniture", "Sofas"),)),
            ([], ()),
        ],
    )
    def test_category_paths(
        self, tmp_path: Path, categories: object, expected: tuple[tuple[str, ...], ...]
    ) -> None:
        path = write(tmp_path / "c.jsonl", jsonl({**GOOD_A, "categories": categories}))
        assert only(read_catalogue(path)).categories == expected

    @pytest.mark.parametrize(
        ("key", "value", "expected"),
        [
            ("colours", ["red", "blue"], ("red", "blue")),
            ("colours", "red, blue", ("red", "blue")),
            ("colors", "navy/white", ("navy", "white")),
            ("color", "dark  blue", ("dark blue",)),
            ("colour", ["red", "red"], ("red",)),
        ],
    )
    def test_colours_and_aliases(
        self, tmp_path: Path, key: str, value: object, expected: tuple[str, ...]
    ) -> None:
        path = write(tmp_path / "c.jsonl", jsonl({**GOOD_A, key: value}))
        assert only(read_catalogue(path)).colours == expected

    def test_attribute_values_become_strings(self, tmp_path: Path) -> None:
        attributes = {"width": 80.5, "seats": 3, "height": 2.0, "foldable": True, "x": None}
        path = write(tmp_path / "c.jsonl", jsonl({**GOOD_A, "attributes": attributes}))
        assert only(read_catalogue(path)).attributes == {
            "width": ("80.5",),
            "seats": ("3",),
            "height": ("2",),
            "foldable": ("true",),
        }

    def test_unknown_keys_become_attributes(self, tmp_path: Path) -> None:
        row = {
            **GOOD_A,
            "attributes": {"material": "oak"},
            "material": "pine",
            "google_product_category": 443,
            "tags": ["sale", "new"],
            "nothing": None,
        }
        path = write(tmp_path / "c.jsonl", jsonl(row))
        result = read_catalogue(path)
        assert result.report.errors == ()
        assert only(result).attributes == {
            "material": ("oak", "pine"),
            "google_product_category": ("443",),
            "tags": ("sale", "new"),
        }

    def test_unknown_key_with_an_object_is_ignored_and_reported(self, tmp_path: Path) -> None:
        path = write(tmp_path / "c.jsonl", jsonl({**GOOD_A, "dimensions": {"w": 1}}))
        result = read_catalogue(path)
        assert only(result).attributes == {}
        (error,) = result.report.errors
        assert (error.row, error.field, error.product_id) == (1, "dimensions", "a")
        assert error.reason.startswith("ignored: ")

    def test_images_single_string_and_list(self, tmp_path: Path) -> None:
        path = write(
            tmp_path / "c.jsonl",
            jsonl(
                {**GOOD_A, "images": "https://cdn.example/a.jpg"},
                {**GOOD_B, "images": ["https://cdn.example/b.jpg", "http://x.example/b2.png"]},
            ),
        )
        result = read_catalogue(path)
        assert [p.images for p in result.products] == [
            ("https://cdn.example/a.jpg",),
            ("https://cdn.example/b.jpg", "http://x.example/b2.png"),
        ]

    def test_blank_lines_are_skipped_but_counted_for_line_numbers(self, tmp_path: Path) -> None:
        content = "\n" + jsonl(GOOD_A) + "   \n" + jsonl({"id": "x"})
        result = read_catalogue(write(tmp_path / "c.jsonl", content))
        assert result.report.rows_read == 2
        assert result.report.errors == (RowError(4, "title", "missing", "x"),)

    def test_utf8_bom_and_crlf(self, tmp_path: Path) -> None:
        content = "\ufeff" + json.dumps(GOOD_A) + "\r\n" + json.dumps(GOOD_B) + "\r\n"
        assert ids(read_catalogue(write(tmp_path / "c.jsonl", content))) == ["a", "b"]


class TestCsv:
    HEADER = "id{d}title{d}price{d}categories{d}images{d}attr:material{d}attribute.size{d}colour"

    @pytest.mark.parametrize("delimiter", [",", ";"])
    @pytest.mark.parametrize("bom", ["", "\ufeff"])
    def test_delimiters_and_bom(self, tmp_path: Path, delimiter: str, bom: str) -> None:
        d = delimiter
        content = (
            bom
            + self.HEADER.format(d=d)
            + "\n"
            + d.join(
                [
                    "s1",
                    '"Sofa Oslo, 3-Seater"',
                    '"1 299,50 zł"',
                    "Furniture > Sofas|Sale",
                    "images/s1.png|https://cdn.example/s1b.jpg",
                    "velvet",
                    "M|L",
                    "navy/white",
                ]
            )
            + "\n"
        )
        path = write(tmp_path / "c.csv", content)
        result = read_catalogue(path)
        assert result.format == "csv"
        assert result.report.errors == ()
        assert only(result) == Product(
            id="s1",
            title="Sofa Oslo, 3-Seater",
            categories=(("Furniture", "Sofas"), ("Sale",)),
            attributes={"material": ("velvet",), "size": ("M", "L")},
            colours=("navy", "white"),
            price=1299.5,
            currency="PLN",
            images=(str(tmp_path.resolve() / "images" / "s1.png"), "https://cdn.example/s1b.jpg"),
        )

    def test_header_names_are_case_insensitive_and_aliases(self, tmp_path: Path) -> None:
        content = "ID,Title,Category,Colors,Brand\n1,Chair,Furniture > Chairs,red,Nordhaus\n"
        product = only(read_catalogue(write(tmp_path / "c.csv", content)))
        assert product.categories == (("Furniture", "Chairs"),)
        assert (product.colours, product.brand) == (("red",), "Nordhaus")

    def test_unknown_columns_become_attributes_and_empty_cells_are_absent(
        self, tmp_path: Path
    ) -> None:
        content = "id,title,Material,season,price,\n1,Chair,oak,,,\n"
        product = only(read_catalogue(write(tmp_path / "c.csv", content)))
        assert product.attributes == {"Material": ("oak",)}
        assert product.price is None

    @pytest.mark.parametrize(
        ("cell", "expected"),
        [
            ("a.png,b.jpg", ("a.png", "b.jpg")),
            ("https://cdn.example/w_100,h_100/a.jpg", ("https://cdn.example/w_100,h_100/a.jpg",)),
            ("a.png|b.png", ("a.png", "b.png")),
        ],
    )
    def test_image_lists(self, tmp_path: Path, cell: str, expected: tuple[str, ...]) -> None:
        path = write(tmp_path / "c.csv", f'id,title,images\n1,Chair,"{cell}"\n')
        resolved = tuple(
            e if e.startswith("http") else str(tmp_path.resolve() / e) for e in expected
        )
        assert only(read_catalogue(path)).images == resolved

    def test_multiline_cell_rows_are_numbered_by_their_first_line(self, tmp_path: Path) -> None:
        content = 'id,title,description\n1,Chair,"two\nlines"\n2,,x\n'
        result = read_catalogue(write(tmp_path / "c.csv", content))
        assert only(result).description == "two lines"
        assert result.report.errors == (RowError(4, "title", "missing", "2"),)

    def test_wrong_number_of_columns(self, tmp_path: Path) -> None:
        content = "id,title,price\n1,Chair,10\n2,Table\n3,Bed,30,extra\n4,Lamp,40\n"
        result = read_catalogue(write(tmp_path / "c.csv", content))
        assert ids(result) == ["1", "4"]
        assert result.report.errors == (
            RowError(3, "*", "expected 3 columns, found 2", "2"),
            RowError(4, "*", "expected 3 columns, found 4", "3"),
        )

    @pytest.mark.parametrize(
        ("header", "match"),
        [("id,name,price", "'title'"), ("sku,title", "'id'"), ("id,title,Title", "two 'title'")],
    )
    def test_bad_header_is_a_file_error(self, tmp_path: Path, header: str, match: str) -> None:
        path = write(tmp_path / "c.csv", header + "\n1,a,b\n")
        with pytest.raises(CatalogueError, match=match):
            read_catalogue(path)

    def test_header_only(self, tmp_path: Path) -> None:
        result = read_catalogue(write(tmp_path / "c.csv", "id,title\n"))
        assert result.report == ImportReport(0, 0, ())


TSV_HEADER = (
    "g:id\tg:title\tg:description\tg:brand\tg:product_type\tg:google_product_category\t"
    "g:color\tg:material\tg:size\tg:gender\tg:price\tg:sale_price\tg:availability\t"
    "g:image_link\tg:additional_image_link\tg:link\tg:gtin\tg:shipping\tg:condition"
)


class TestMerchantTsv:
    def test_feed_mapping(self, tmp_path: Path) -> None:
        row = [
            "SKU-1",
            "UrbanThread Oxford Shirt",
            "<p>Soft <b>cotton</b> &amp; linen.</p>",
            "UrbanThread",
            "Clothing > Shirts",
            "Apparel & Accessories > Clothing > Shirts & Tops",
            "red/blue",
            "cotton/linen",
            "M",
            "male",
            "15.00 USD",
            "12.00 USD",
            "in stock",
            "https://cdn.example/1.jpg",
            "https://cdn.example/2.jpg,https://cdn.example/3.jpg",
            "https://shop.example/p/1",
            "00012345678905",
            "US:CA:Overnight:16.00 USD",
            "new",
        ]
        path = write(tmp_path / "feed.tsv", TSV_HEADER + "\n" + "\t".join(row) + "\n")
        result = read_catalogue(path)
        assert result.format == "merchant-tsv"
        assert result.report.errors == ()
        assert only(result) == Product(
            id="SKU-1",
            title="UrbanThread Oxford Shirt",
            description="Soft cotton & linen.",
            brand="UrbanThread",
            categories=(("Clothing", "Shirts"),),
            attributes={
                "google_product_category": ("Apparel & Accessories > Clothing > Shirts & Tops",),
                "material": ("cotton", "linen"),
                "size": ("M",),
                "gender": ("male",),
                "condition": ("new",),
            },
            colours=("red", "blue"),
            price=15.0,
            currency="USD",
            sale_price=12.0,
            availability=Availability.IN_STOCK,
            images=(
                "https://cdn.example/1.jpg",
                "https://cdn.example/2.jpg",
                "https://cdn.example/3.jpg",
            ),
            url="https://shop.example/p/1",
            gtin="00012345678905",
        )

    def test_header_without_g_prefix(self, tmp_path: Path) -> None:
        content = "id\ttitle\tprice\tavailability\tproduct detail\n"
        content += "1\tBoots\t120.00 EUR\tout_of_stock\tGeneral:Heel height:3 cm\n"
        product = only(read_catalogue(write(tmp_path / "feed.txt", content)))
        assert (product.price, product.currency) == (120.0, "EUR")
        assert product.availability is Availability.OUT_OF_STOCK
        assert product.attributes == {"Heel height": ("3 cm",)}

    def test_missing_title_column(self, tmp_path: Path) -> None:
        with pytest.raises(CatalogueError, match="'title'"):
            read_catalogue(write(tmp_path / "feed.tsv", "id\tprice\n1\t2\n"))

    def test_bad_row_keeps_the_others(self, tmp_path: Path) -> None:
        content = "id\ttitle\tprice\n1\tA\t1 USD\n2\tB\tfree\n3\tC\n4\tD\t4 USD\n"
        result = read_catalogue(write(tmp_path / "feed.tsv", content))
        assert ids(result) == ["1", "4"]
        assert [(e.row, e.field) for e in result.report.errors] == [(3, "price"), (4, "*")]


RSS_FEED = f"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:g="{G}">
  <channel>
    <title>Demo shop</title>
    <link>https://shop.example</link>
    <item>
      <g:id>D-1</g:id>
      <title>Wiśniewska Atelier Midi Wrap Dress</title>
      <link>https://shop.example/d-1</link>
      <description><![CDATA[<p>Flowing <i>viscose</i>.</p><li>Tie waist</li>]]></description>
      <g:brand>Wiśniewska Atelier</g:brand>
      <g:product_type>Clothing &gt; Dresses</g:product_type>
      <g:product_type>Sale</g:product_type>
      <g:google_product_category>2271</g:google_product_category>
      <g:color>burgundy</g:color>
      <g:size>38</g:size>
      <g:price>299.00 PLN</g:price>
      <g:availability>preorder</g:availability>
      <g:image_link>https://cdn.example/d1.jpg</g:image_link>
      <g:additional_image_link>https://cdn.example/d1-2.jpg</g:additional_image_link>
      <g:additional_image_link>https://cdn.example/d1-3.jpg</g:additional_image_link>
      <g:shipping>
        <g:country>PL</g:country>
        <g:price>15.00 PLN</g:price>
      </g:shipping>
      <g:product_detail>
        <g:section_name>General</g:section_name>
        <g:attribute_name>Length</g:attribute_name>
        <g:attribute_value>midi</g:attribute_value>
      </g:product_detail>
    </item>
    <item>
      <g:id>D-2</g:id>
      <g:title>Second</g:title>
      <title>Ignored plain title</title>
      <g:price>abc</g:price>
    </item>
    <item>
      <g:id>D-3</g:id>
      <g:title>Third</g:title>
      <g:availability>out of stock</g:availability>
    </item>
  </channel>
</rss>
"""

ATOM_FEED = f"""<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xmlns:g="{G}">
  <title>Demo shop</title>
  <updated>2024-01-01T00:00:00Z</updated>
  <entry>
    <id>tag:shop.example,2024:a-1</id>
    <g:id>A-1</g:id>
    <title>StrideLab Court Sneakers</title>
    <link rel="self" href="https://shop.example/feed/a-1"/>
    <link href="https://shop.example/a-1"/>
    <summary>Leather upper.</summary>
    <updated>2024-01-01T00:00:00Z</updated>
    <g:price>79.99 EUR</g:price>
    <g:color>white</g:color>
  </entry>
</feed>
"""


class TestMerchantXml:
    def test_rss_feed(self, tmp_path: Path) -> None:
        result = read_catalogue(write(tmp_path / "feed.xml", RSS_FEED))
        assert result.format == "merchant-xml"
        assert ids(result) == ["D-1", "D-3"]
        assert result.report.rows_read == 3
        (error,) = result.report.errors
        assert (error.row, error.field, error.product_id) == (2, "price", "D-2")
        first = result.products[0]
        assert first == Product(
            id="D-1",
            title="Wiśniewska Atelier Midi Wrap Dress",
            description="Flowing viscose. Tie waist",
            brand="Wiśniewska Atelier",
            categories=(("Clothing", "Dresses"), ("Sale",)),
            attributes={"google_product_category": ("2271",), "size": ("38",), "Length": ("midi",)},
            colours=("burgundy",),
            price=299.0,
            currency="PLN",
            availability=Availability.PREORDER,
            images=(
                "https://cdn.example/d1.jpg",
                "https://cdn.example/d1-2.jpg",
                "https://cdn.example/d1-3.jpg",
            ),
            url="https://shop.example/d-1",
        )
        assert result.products[1].availability is Availability.OUT_OF_STOCK

    def test_g_title_wins_over_the_plain_element(self, tmp_path: Path) -> None:
        feed = RSS_FEED.replace("<g:price>abc</g:price>", "")
        result = read_catalogue(write(tmp_path / "feed.rss", feed))
        assert result.products[1].title == "Second"

    def test_atom_feed(self, tmp_path: Path) -> None:
        result = read_catalogue(write(tmp_path / "feed.xml", ATOM_FEED))
        product = only(result)
        assert (product.id, product.title, product.description) == (
            "A-1",
            "StrideLab Court Sneakers",
            "Leather upper.",
        )
        assert product.url == "https://shop.example/a-1"
        assert (product.price, product.currency, product.colours) == (79.99, "EUR", ("white",))
        assert product.attributes == {}

    def test_many_items_stream(self, tmp_path: Path) -> None:
        items = "".join(
            f"<item><g:id>{i}</g:id><g:title>Item {i}</g:title></item>" for i in range(2500)
        )
        feed = f'<rss xmlns:g="{G}"><channel>{items}</channel></rss>'
        seen: list[int] = []
        result = read_catalogue(write(tmp_path / "feed.xml", feed), progress=seen.append)
        assert result.report.products_ok == 2500
        assert seen == [1000, 2000, 2500]

    @pytest.mark.parametrize(
        "document",
        [
            # billion laughs
            '<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol">'
            '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
            f'<rss xmlns:g="{G}"><channel><item><g:id>1</g:id><g:title>&lol2;</g:title>'
            "</item></channel></rss>",
            # external entity
            '<?xml version="1.0"?><!-- a comment first -->\n'
            '<!DOCTYPE rss [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
            f'<rss xmlns:g="{G}"><channel><item><g:id>1</g:id><g:title>&xxe;</g:title>'
            "</item></channel></rss>",
            # a bare DOCTYPE after a long comment
            "<!--" + "x" * 100_000 + '-->\n<!DOCTYPE rss SYSTEM "http://evil.example/x.dtd"><rss/>',
        ],
    )
    def test_entity_attacks_are_refused(self, tmp_path: Path, document: str) -> None:
        with pytest.raises(CatalogueError, match="DOCTYPE"):
            read_catalogue(write(tmp_path / "feed.xml", document))

    def test_doctype_in_utf16_is_refused(self, tmp_path: Path) -> None:
        document = '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE x [<!ENTITY a "b">]><rss/>'
        with pytest.raises(CatalogueError, match="DOCTYPE"):
            read_catalogue(write(tmp_path / "feed.xml", document.encode("utf-16")))

    @pytest.mark.parametrize(
        ("document", "match"),
        [
            ('{"id": 1, "title": "json, not xml"}', "not well-formed"),
            (f'<rss xmlns:g="{G}"><channel><item><g:id>1</g:id>', "not well-formed"),
            ("<html><body>hello</body></html>", "<html>"),
        ],
    )
    def test_not_a_feed(self, tmp_path: Path, document: str, match: str) -> None:
        with pytest.raises(CatalogueError, match=match):
            read_catalogue(write(tmp_path / "feed.xml", document))


# (row as JSON text or object, field of the error, words in the reason, row kept?)
BAD_ROWS: list[tuple[object, str, str, bool]] = [
    ({"title": "No id"}, "id", "missing", False),
    ({"id": "  ", "title": "Blank id"}, "id", "empty", False),
    ({"id": 1.5, "title": "Float id"}, "id", "got number", False),
    ({"id": "x"}, "title", "missing", False),
    ({"id": "x", "title": " \t "}, "title", "empty", False),
    ({"id": "x", "title": ["a", "b"]}, "title", "expected a string, got array", False),
    ({"id": "x", "title": "T", "description": 5}, "description", "got number", False),
    ({"id": "x", "title": "T", "attributes": ["a"]}, "attributes", "expected an object", False),
    ({"id": "x", "title": "T", "attributes": {"m": {"a": 1}}}, "attributes.m", "object", False),
    ({"id": "x", "title": "T", "categories": 5}, "categories", "got number", False),
    ({"id": "x", "title": "T", "categories": [{"a": 1}]}, "categories", "got object", False),
    ({"id": "x", "title": "T", "colours": 5}, "colours", "got number", False),
    ({"id": "x", "title": "T", "images": {"a": 1}}, "images", "got object", False),
    ({"id": "x", "title": "T", "price": "call us"}, "price", "unparsable", False),
    ({"id": "x", "title": "T", "price": -1}, "price", "negative", False),
    ({"id": "x", "title": "T", "price": "-3,50 zł"}, "price", "negative", False),
    ({"id": "x", "title": "T", "price": [1]}, "price", "got array", False),
    ({"id": "x", "title": "T", "price": "5 ABCD"}, "price", "unknown currency", False),
    ({"id": "x", "title": "T", "price": "5 EUR", "currency": "PLN"}, "price", "differs", False),
    ({"id": "x", "title": "T", "currency": "zloty"}, "currency", "unknown currency", False),
    ({"id": "x", "title": "T", "availability": "soon"}, "availability", "in_stock", False),
    ({"id": "x", "title": "T", "availability": 1}, "availability", "got number", False),
    ({"id": "x", "title": "T", "sale_price": [2]}, "sale_price", "got array", False),
    ('{"id": "x", "title": "T"', "*", "invalid JSON", False),
    ("[1, 2]", "*", "expected a JSON object, got array", False),
    ("null", "*", "expected a JSON object, got null", False),
    # kept without the field
    ({"id": "x", "title": "T", "price": 5, "sale_price": "abc"}, "sale_price", "ignored:", True),
    ({"id": "x", "title": "T", "price": 5, "sale_price": -1}, "sale_price", "ignored:", True),
    ({"id": "x", "title": "T", "price": 5, "sale_price": 6}, "sale_price", "above", True),
    (
        {"id": "x", "title": "T", "price": "5 EUR", "sale_price": "4 USD"},
        "sale_price",
        "ignored:",
        True,
    ),
    ({"id": "x", "title": "T", "gtin": "12-AB"}, "gtin", "ignored:", True),
    ({"id": "x", "title": "T", "lang": "Polish!"}, "lang", "ignored:", True),
    ({"id": "x", "title": "T", "images": ["data:image/png;base64,AA"]}, "images", "ignored:", True),
    ({"id": "x", "title": "T", "extra": [{"a": 1}]}, "extra", "ignored:", True),
]


class TestBadRows:
    @pytest.mark.parametrize(
        ("row", "field", "words", "kept"),
        BAD_ROWS,
        ids=[f"{i}-{row[1]}" for i, row in enumerate(BAD_ROWS)],
    )
    def test_one_error_and_the_good_rows_survive(
        self, tmp_path: Path, row: object, field: str, words: str, kept: bool
    ) -> None:
        path = write(tmp_path / "c.jsonl", jsonl(GOOD_A, row, GOOD_B))
        result = read_catalogue(path)
        (error,) = result.report.errors
        assert (error.row, error.field) == (2, field)
        assert words in error.reason
        assert error.reason.startswith("ignored: ") is kept
        assert ids(result) == (["a", "x", "b"] if kept else ["a", "b"])
        assert result.report.rows_read == 3
        assert result.report.ok is kept
        assert result.report.has_errors

    def test_ignored_sale_price_keeps_the_price(self, tmp_path: Path) -> None:
        row = {"id": "x", "title": "T", "price": "5,00 zł", "sale_price": "soon"}
        product = only(read_catalogue(write(tmp_path / "c.jsonl", jsonl(row))))
        assert (product.price, product.currency, product.sale_price) == (5.0, "PLN", None)

    def test_all_problems_of_a_row_are_reported(self, tmp_path: Path) -> None:
        row = {"id": "x", "title": "", "price": "?", "availability": "later"}
        result = read_catalogue(write(tmp_path / "c.jsonl", jsonl(row)))
        assert result.products == ()
        assert [e.field for e in result.report.errors] == ["title", "price", "availability"]
        assert all(e.product_id == "x" for e in result.report.errors)


class TestDuplicates:
    def test_first_occurrence_wins(self, tmp_path: Path) -> None:
        rows = [GOOD_A, {"id": "a", "title": "Second A"}, GOOD_B, {"id": "a", "title": "Third"}]
        result = read_catalogue(write(tmp_path / "c.jsonl", jsonl(*rows)))
        assert [(p.id, p.title) for p in result.products] == [("a", "Sofa A"), ("b", "Sofa B")]
        assert result.report.errors == (
            RowError(2, "id", "duplicate id; first seen on row 1", "a"),
            RowError(4, "id", "duplicate id; first seen on row 1", "a"),
        )

    def test_integer_and_string_ids_collide(self, tmp_path: Path) -> None:
        rows = [{"id": 1, "title": "A"}, {"id": "1", "title": "B"}]
        result = read_catalogue(write(tmp_path / "c.jsonl", jsonl(*rows)))
        assert [p.title for p in result.products] == ["A"]

    def test_a_dropped_row_still_claims_its_id(self, tmp_path: Path) -> None:
        rows = [{"id": "a", "title": "A", "price": "??"}, {"id": "a", "title": "A again"}]
        result = read_catalogue(write(tmp_path / "c.jsonl", jsonl(*rows)))
        assert result.products == ()
        assert [(e.row, e.field) for e in result.report.errors] == [(1, "price"), (2, "id")]


class TestStrict:
    def test_raises_with_the_first_errors_and_the_count(self, tmp_path: Path) -> None:
        rows = [GOOD_A] + [{"id": f"x{i}"} for i in range(8)]
        path = write(tmp_path / "c.jsonl", jsonl(*rows))
        with pytest.raises(CatalogueError) as info:
            read_catalogue(path, strict=True)
        message = str(info.value)
        assert "8 row errors" in message
        assert "row 2 title: missing" in message
        assert "row 6 title: missing" in message
        assert "row 7" not in message
        assert "and 3 more" in message

    def test_warnings_fail_strict_mode_too(self, tmp_path: Path) -> None:
        path = write(tmp_path / "c.jsonl", jsonl({**GOOD_A, "gtin": "abc"}))
        with pytest.raises(CatalogueError, match="1 row errors"):
            read_catalogue(path, strict=True)

    def test_clean_file_passes(self, tmp_path: Path) -> None:
        path = write(tmp_path / "c.jsonl", jsonl(GOOD_A, GOOD_B))
        assert ids(read_catalogue(path, strict=True)) == ["a", "b"]


class TestText:
    def test_decomposed_input_is_nfc_normalised(self, tmp_path: Path) -> None:
        decomposed = unicodedata.normalize("NFD", "Krzesło żółte, łóżko")
        assert decomposed != "Krzesło żółte, łóżko"
        row = {"id": "1", "title": decomposed, "brand": "Dębowy\u00a0Dwór", "colours": decomposed}
        product = only(read_catalogue(write(tmp_path / "c.jsonl", jsonl(row))))
        assert product.title == "Krzesło żółte, łóżko"
        assert product.title == unicodedata.normalize("NFC", product.title)
        assert product.brand == "Dębowy Dwór"
        assert product.colours == ("Krzesło żółte", "łóżko")

    def test_z_with_dot_above_combining_character(self, tmp_path: Path) -> None:
        row = {"id": "1", "title": "Sofa z\u0307o\u0301łta"}
        assert only(read_catalogue(write(tmp_path / "c.jsonl", jsonl(row)))).title == "Sofa żółta"

    def test_whitespace_is_collapsed_and_control_characters_dropped(self, tmp_path: Path) -> None:
        row = {"id": " 1 ", "title": "  Sofa\t\tOslo \n 3-seater\x00 ", "brand": "   "}
        product = only(read_catalogue(write(tmp_path / "c.jsonl", jsonl(row))))
        assert (product.id, product.title, product.brand) == ("1", "Sofa Oslo 3-seater", None)

    @pytest.mark.parametrize(
        ("html", "text"),
        [
            ("<p>Soft&nbsp;<b>vel</b>vet.</p><p>Oak legs.</p>", "Soft velvet. Oak legs."),
            ("Size&nbsp;M &amp; L<br/>in stock", "Size M & L in stock"),
            ("<style>p{color:red}</style>Plain <!-- hidden --> text", "Plain text"),
            ("width < 80 cm and > 60 cm", "width < 80 cm and > 60 cm"),
            ("&lt;b&gt; is a tag", "<b> is a tag"),
            ("Łóżko <em>dębowe</em>", "Łóżko dębowe"),
        ],
    )
    def test_description_html_is_stripped(self, tmp_path: Path, html: str, text: str) -> None:
        row = {"id": "1", "title": "T", "description": html}
        assert only(read_catalogue(write(tmp_path / "c.jsonl", jsonl(row)))).description == text


class TestPrices:
    @pytest.mark.parametrize(
        ("raw", "amount", "currency"),
        [
            (12, 12.0, None),
            (12.5, 12.5, None),
            ("12.50", 12.5, None),
            ("12,50", 12.5, None),
            ("12.50 PLN", 12.5, "PLN"),
            ("PLN 12.50", 12.5, "PLN"),
            ("12,50 zł", 12.5, "PLN"),
            ("12,50zł", 12.5, "PLN"),
            ("1 299,00 zł", 1299.0, "PLN"),
            ("1\u00a0299,00 zł", 1299.0, "PLN"),
            ("1,299.00 USD", 1299.0, "USD"),
            ("1.299,00 EUR", 1299.0, "EUR"),
            ("1,234,567", 1234567.0, None),
            ("15.00 usd", 15.0, "USD"),
            ("€12", 12.0, "EUR"),
            ("$ 9.99", 9.99, "USD"),
            ("£5", 5.0, "GBP"),
            ("0", 0.0, None),
            ("12.", 12.0, None),
        ],
    )
    def test_variants(self, raw: str | int | float, amount: float, currency: str | None) -> None:
        assert parse_price(raw) == (amount, currency)

    @pytest.mark.parametrize(
        "raw",
        ["", "abc", "12 złotych", "PLN 12 EUR", "1,2,3", "1.2.3,4,5", "-5", "12.5.0", "1 2 3 4a"],
    )
    def test_invalid(self, raw: str) -> None:
        with pytest.raises(ValueError):
            parse_price(raw)

    def test_boolean_is_not_a_price(self) -> None:
        with pytest.raises(ValueError):
            parse_price(True)


class TestImages:
    def test_relative_paths_resolve_against_the_catalogue_folder(self, tmp_path: Path) -> None:
        folder = tmp_path / "export"
        row = {
            **GOOD_A,
            "images": [
                "images/a.png",
                "./images/../img/b.png",
                "/abs/c.png",
                "https://cdn.example/d.jpg",
                "//cdn.example/e.jpg",
                "file:///srv/img/f%20g.png",
                "  ",
            ],
        }
        path = write(folder / "c.jsonl", jsonl(row))
        here = folder.resolve()
        assert only(read_catalogue(path)).images == (
            str(here / "images" / "a.png"),
            str(here / "img" / "b.png"),
            "/abs/c.png",
            "https://cdn.example/d.jpg",
            "https://cdn.example/e.jpg",
            "/srv/img/f g.png",
        )

    def test_relative_path_from_another_working_directory(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        write(tmp_path / "shop" / "c.jsonl", jsonl({**GOOD_A, "images": "a.png"}))
        monkeypatch.chdir(tmp_path)
        image = only(read_catalogue(Path("shop/c.jsonl"))).images[0]
        assert os.path.isabs(image)
        assert image == str(tmp_path.resolve() / "shop" / "a.png")


class TestFiles:
    def test_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(CatalogueError, match="not found"):
            read_catalogue(tmp_path / "nope.jsonl")

    def test_directory(self, tmp_path: Path) -> None:
        (tmp_path / "dir.jsonl").mkdir()
        with pytest.raises(CatalogueError, match="cannot open"):
            read_catalogue(tmp_path / "dir.jsonl")

    @pytest.mark.parametrize(
        ("name", "content"),
        [
            ("c.jsonl", '{"id": "1", "title": "Krzesło"}\n{"id": "2", "title": "Stół"}\n'),
            ("c.csv", "id,title\n1,Łóżko\n2,Stół\n"),
            ("c.tsv", "id\ttitle\n1\tŁóżko\n"),
        ],
    )
    def test_not_utf8(self, tmp_path: Path, name: str, content: str) -> None:
        path = write(tmp_path / name, content.encode("iso-8859-2"))
        with pytest.raises(CatalogueError, match="UTF-8"):
            read_catalogue(path)

    @pytest.mark.parametrize("name", ["c.jsonl", "c.csv", "c.tsv", "c.xml"])
    @pytest.mark.parametrize("content", ["", "\n  \n"])
    def test_empty_file(self, tmp_path: Path, name: str, content: str) -> None:
        result = read_catalogue(write(tmp_path / name, content))
        assert result.products == ()
        assert result.report == ImportReport(rows_read=0, products_ok=0, errors=())
        assert result.report.ok

    def test_checksum_is_sha256_of_the_file(self, tmp_path: Path) -> None:
        path = write(tmp_path / "c.jsonl", jsonl(GOOD_A, GOOD_B) + "\n\n")
        result = read_catalogue(path)
        assert result.checksum == hashlib.sha256(path.read_bytes()).hexdigest()


class TestGzip:
    @pytest.mark.parametrize(
        ("name", "content"),
        [
            ("c.jsonl.gz", jsonl(GOOD_A, GOOD_B)),
            ("c.csv.gz", "id;title\na;A\nb;B\n"),
            ("c.tsv.gz", "g:id\tg:title\na\tA\nb\tB\n"),
            (
                "c.xml.gz",
                f'<rss xmlns:g="{G}"><channel><item><g:id>a</g:id><g:title>A</g:title></item>'
                "<item><g:id>b</g:id><g:title>B</g:title></item></channel></rss>",
            ),
        ],
    )
    def test_every_format(self, tmp_path: Path, name: str, content: str) -> None:
        path = write(tmp_path / name, gzip.compress(content.encode()))
        result = read_catalogue(path)
        assert ids(result) == ["a", "b"]
        assert result.checksum == hashlib.sha256(path.read_bytes()).hexdigest()

    def test_compressed_content_is_recognised_without_the_extension(self, tmp_path: Path) -> None:
        path = write(tmp_path / "c.jsonl", gzip.compress(jsonl(GOOD_A).encode()))
        assert ids(read_catalogue(path)) == ["a"]

    def test_broken_gzip(self, tmp_path: Path) -> None:
        data = gzip.compress(jsonl(*[GOOD_A] * 50).encode())
        path = write(tmp_path / "c.jsonl.gz", data[: len(data) // 2])
        with pytest.raises(CatalogueError, match="cannot read"):
            read_catalogue(path)


class TestReport:
    def test_to_dict_is_json(self, tmp_path: Path) -> None:
        path = write(tmp_path / "c.jsonl", jsonl(GOOD_A, {"id": "x"}, {**GOOD_B, "gtin": "1"}))
        report = read_catalogue(path).report
        data = report.to_dict()
        assert json.loads(json.dumps(data)) == data
        assert data == {
            "rows_read": 3,
            "products_ok": 2,
            "rows_dropped": 1,
            "ok": False,
            "errors": [
                {"row": 2, "field": "title", "reason": "missing", "product_id": "x"},
                {
                    "row": 3,
                    "field": "gtin",
                    "reason": "ignored: '1' is not a GTIN (8 to 14 digits)",
                    "product_id": "b",
                },
            ],
        }
        assert [e.field for e in report.warnings] == ["gtin"]
        assert report.has_errors and not report.ok

    def test_progress_is_called_every_thousand_rows_and_at_the_end(self, tmp_path: Path) -> None:
        rows = b"".join(orjson.dumps({"id": str(i), "title": f"P{i}"}) + b"\n" for i in range(2000))
        seen: list[int] = []
        read_catalogue(write(tmp_path / "c.jsonl", rows), progress=seen.append)
        assert seen == [1000, 2000]
