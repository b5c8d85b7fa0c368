"""Size limits per catalogue row and field: an over-long value is a bad row, reported in
seconds with its row number, field and reason, without the row ever being held whole in
memory; the good rows around it are imported. Also through the live catalogue API."""

from __future__ import annotations

import gzip
import json
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from indexer.catalogue import read_catalogue
from indexer.formats.fields import DEFAULT_LIMITS, FieldLimits, build_product
from tests.api import build_snapshot

GOOD_A = {"id": "a", "title": "Sofa A", "description": "A blue sofa", "price": 10}
GOOD_B = {"id": "b", "title": "Sofa B", "price": 20}
MB = 1 << 20


def write_lines(path: Path, *lines: bytes) -> Path:
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


def row(data: dict[str, Any]) -> bytes:
    return json.dumps(data).encode()


class TestFieldLimits:
    @pytest.mark.parametrize(
        ("field", "value", "limit"),
        [
            ("title", "t" * (DEFAULT_LIMITS.title_chars + 1), DEFAULT_LIMITS.title_chars),
            (
                "description",
                "d" * (DEFAULT_LIMITS.description_chars + 1),
                DEFAULT_LIMITS.description_chars,
            ),
            ("brand", "b" * (DEFAULT_LIMITS.text_chars + 1), DEFAULT_LIMITS.text_chars),
            ("images", ["x.jpg"] * (DEFAULT_LIMITS.list_items + 1), DEFAULT_LIMITS.list_items),
            ("colour_name", "c" * (DEFAULT_LIMITS.text_chars + 1), DEFAULT_LIMITS.text_chars),
        ],
    )
    def test_each_field_over_its_limit_drops_the_row(
        self, tmp_path: Path, field: str, value: object, limit: int
    ) -> None:
        big = {"id": "big", "title": "Big", field: value}
        path = write_lines(tmp_path / "c.jsonl", row(GOOD_A), row(big), row(GOOD_B))
        result = read_catalogue(path)
        assert [p.id for p in result.products] == ["a", "b"]
        (error,) = result.report.errors
        assert (error.row, error.field, error.product_id) == (2, field, "big")
        assert error.reason.startswith("too large: ")
        assert f"the limit is {limit:,}" in error.reason

    def test_nested_attribute_value_over_the_limit(self) -> None:
        data = {"id": "x", "title": "X", "attributes": {"material": ["oak", "o" * 5000]}}
        outcome = build_product(1, data, "")
        assert outcome.product is None
        assert [(e.field, e.reason) for e in outcome.errors] == [
            ("attributes", "too large: 5,000 characters; the limit is 4,096")
        ]

    def test_values_at_the_limits_are_kept(self) -> None:
        limits = DEFAULT_LIMITS
        data = {
            "id": "i" * limits.id_chars,
            "title": "t" * limits.title_chars,
            "description": "d" * limits.description_chars,
            "brand": "b" * limits.text_chars,
        }
        outcome = build_product(1, data, "")
        assert outcome.product is not None, outcome.errors
        assert len(outcome.product.description) == limits.description_chars

    def test_limits_are_configurable(self, tmp_path: Path) -> None:
        path = write_lines(tmp_path / "c.jsonl", row(GOOD_A), row(GOOD_B))
        strict = FieldLimits(description_chars=5)
        result = read_catalogue(path, limits=strict)
        assert [p.id for p in result.products] == ["b"]
        assert result.report.errors[0].field == "description"
        assert "the limit is 5" in result.report.errors[0].reason

    @pytest.mark.parametrize("bad", [0, -1, True, 1.5])
    def test_a_limit_must_be_a_positive_whole_number(self, bad: object) -> None:
        with pytest.raises(ValueError, match="title_chars"):
            FieldLimits(title_chars=bad)  # type: ignore[arg-type]

    @pytest.mark.parametrize("suffix", ["csv", "xml"])
    def test_other_formats_apply_the_field_limits(self, tmp_path: Path, suffix: str) -> None:
        long_title = "t" * (DEFAULT_LIMITS.title_chars + 1)
        if suffix == "csv":
            content = f"id,title\na,Sofa A\nbig,{long_title}\nb,Sofa B\n"
        else:
            items = "".join(
                f"<item><g:id>{i}</g:id><g:title>{t}</g:title></item>"
                for i, t in (("a", "Sofa A"), ("big", long_title), ("b", "Sofa B"))
            )
            content = (
                f'<rss xmlns:g="http://base.google.com/ns/1.0"><channel>{items}</channel></rss>'
            )
        path = tmp_path / f"c.{suffix}"
        path.write_text(content, encoding="utf-8")
        result = read_catalogue(path)
        assert [p.id for p in result.products] == ["a", "b"]
        (error,) = result.report.errors
        assert (error.field, error.product_id) == ("title", "big")


class TestLongLines:
    def test_100_mb_line_is_a_bad_row_in_seconds_without_being_read_whole(
        self, tmp_path: Path
    ) -> None:
        huge = b'{"id": "huge", "title": "Huge", "description": "' + b"x" * (100 * MB) + b'"}'
        path = write_lines(tmp_path / "c.jsonl", row(GOOD_A), huge, row(GOOD_B))
        tracemalloc.start()
        started = time.perf_counter()
        try:
            result = read_catalogue(path)
            took = time.perf_counter() - started
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert [p.id for p in result.products] == ["a", "b"]
        assert result.report.rows_read == 3
        (error,) = result.report.errors
        assert (error.row, error.field, error.product_id) == (2, "description", "huge")
        assert f"the row is {len(huge):,} bytes" in error.reason
        assert f"over the {DEFAULT_LIMITS.row_bytes:,}-byte row limit" in error.reason
        assert took < 10, f"{took:.1f} s"
        # The line is skipped in 1 MiB pieces: a few MiB at most, never its 100 MB.
        assert peak < 8 * MB, f"peak {peak / MB:.1f} MiB"

    def test_long_line_in_a_gzip_file_and_numbering_after_it(self, tmp_path: Path) -> None:
        limits = FieldLimits(row_bytes=1000)
        long_line = row({"id": 7, "title": "x" * 5000})
        lines = [row(GOOD_A), long_line, b"", row(GOOD_B)]
        path = tmp_path / "c.jsonl.gz"
        path.write_bytes(gzip.compress(b"".join(line + b"\n" for line in lines)))
        result = read_catalogue(path, limits=limits)
        assert [p.id for p in result.products] == ["a", "b"]
        (error,) = result.report.errors
        assert (error.row, error.field, error.product_id) == (2, "title", "7")

    def test_long_last_line_without_newline(self, tmp_path: Path) -> None:
        limits = FieldLimits(row_bytes=100)
        path = tmp_path / "c.jsonl"
        path.write_bytes(row(GOOD_A) + b"\n" + row({"id": "z", "title": "y" * 500}))
        result = read_catalogue(path, limits=limits)
        assert [p.id for p in result.products] == ["a"]
        assert result.report.errors[0].row == 2

    @pytest.mark.parametrize("extra", [0, 1])
    def test_a_line_exactly_at_the_limit_is_read(self, tmp_path: Path, extra: int) -> None:
        line = row({"id": "a", "title": "T" + "t" * 50})
        limits = FieldLimits(row_bytes=len(line) + extra)
        path = write_lines(tmp_path / "c.jsonl", line, line.replace(b'"a"', b'"b"'))
        result = read_catalogue(path, limits=limits)
        assert [p.id for p in result.products] == ["a", "b"]

    def test_a_line_one_byte_over_the_limit_is_refused(self, tmp_path: Path) -> None:
        line = row({"id": "a", "title": "T" + "t" * 50})
        limits = FieldLimits(row_bytes=len(line) - 1)
        path = write_lines(tmp_path / "c.jsonl", line, b'{"id": "b", "title": "B"}')
        result = read_catalogue(path, limits=limits)
        assert [p.id for p in result.products] == ["b"]
        assert result.report.errors[0].row == 1


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The service over a small snapshot, with an admin key in its headers."""
    from api.app import create_app
    from api.settings import Settings

    work = tmp_path_factory.mktemp("limits-live")
    app = create_app(
        Settings(index_dir=build_snapshot(work), text_embedder="none", events_db="none")
    )
    _, token = app.state.security.keys.create("ops", "admin")
    with TestClient(app) as test_client:
        test_client.headers["Authorization"] = f"Bearer {token}"
        yield test_client


class TestLongDelimitedLines:
    @pytest.mark.parametrize(("name", "sep"), [("c.csv", ","), ("c.tsv", "\t")])
    def test_long_line_is_a_bad_row_and_later_rows_keep_their_numbers(
        self, tmp_path: Path, name: str, sep: str
    ) -> None:
        path = tmp_path / name
        huge = "x" * (20 * MB)
        path.write_text(
            f"id{sep}title\na{sep}Sofa A\nhuge{sep}{huge}\n\nb{sep}Sofa B\r\nc{sep}Sofa C\n",
            encoding="utf-8",
        )
        tracemalloc.start()
        try:
            result = read_catalogue(path, limits=FieldLimits(row_bytes=MB))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert [p.id for p in result.products] == ["a", "b", "c"]
        (error,) = result.report.errors
        assert (error.row, error.field) == (3, "*")
        assert error.reason == (
            f"too large: the line is {len(huge) + 5:,} characters, over the "
            f"{MB:,}-character row limit"
        )
        assert peak < 12 * MB, f"peak {peak / MB:.1f} MiB"

    def test_a_field_over_128_kib_is_judged_by_the_field_limits(self, tmp_path: Path) -> None:
        # The csv module's own limit (131,072 characters) used to stop the whole file.
        path = tmp_path / "c.csv"
        long_description = "d" * 200_000
        path.write_text(
            f"id,title,description\na,Sofa A,{long_description}\nb,Sofa B,short\n",
            encoding="utf-8",
        )
        result = read_catalogue(path)
        assert [p.id for p in result.products] == ["b"]
        (error,) = result.report.errors
        assert (error.row, error.field, error.product_id) == (2, "description", "a")
        limits = FieldLimits(description_chars=300_000)
        assert [p.id for p in read_catalogue(path, limits=limits).products] == ["a", "b"]


class TestLongXmlTexts:
    def test_long_text_is_a_bad_row_without_being_held(self, tmp_path: Path) -> None:
        path = tmp_path / "feed.xml"
        description = b"sofa " * (20 * MB // 5)  # 20 MB of plain text
        path.write_bytes(
            b'<rss xmlns:g="http://base.google.com/ns/1.0"><channel>'
            b"<item><g:id>a</g:id><g:title>Sofa A</g:title></item>"
            b"<item><g:id>huge</g:id><g:title>Huge</g:title><g:description>"
            + description
            + b"</g:description></item>"
            b"<item><g:id>b</g:id><g:title>Sofa B</g:title></item></channel></rss>"
        )
        del description
        tracemalloc.start()
        try:
            result = read_catalogue(path, limits=FieldLimits(row_bytes=MB))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert [p.id for p in result.products] == ["a", "b"]
        (error,) = result.report.errors
        assert (error.row, error.field, error.product_id) == (2, "description", "huge")
        assert error.reason.startswith("too large: the item holds 20,971,52")
        assert f"over the {MB:,}-character row limit" in error.reason
        assert peak < 8 * MB, f"peak {peak / MB:.1f} MiB"

    def test_many_elements_in_one_item_are_not_built(self, tmp_path: Path) -> None:
        # Mixed content: no single text is long, the item's text is (100,000 <p> elements).
        path = tmp_path / "feed.xml"
        path.write_bytes(
            b'<rss xmlns:g="http://base.google.com/ns/1.0"><channel>'
            b"<item><g:id>huge</g:id><g:title>Huge</g:title><g:description>"
            + b"<p>sofa</p> "
            * 100_000
            + b"</g:description></item>"
            b"<item><g:id>b</g:id><g:title>Sofa B</g:title></item></channel></rss>"
        )
        tracemalloc.start()
        try:
            result = read_catalogue(path, limits=FieldLimits(row_bytes=50_000))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert [p.id for p in result.products] == ["b"]
        (error,) = result.report.errors
        assert (error.row, error.field, error.product_id) == (1, "description", "huge")
        assert "the item holds 500,00" in error.reason
        # Only the elements before the limit were built (about 10,000 of the 100,000).
        assert peak < 8 * MB, f"peak {peak / MB:.1f} MiB"

    def test_text_below_the_row_limit_meets_the_field_limit(self, tmp_path: Path) -> None:
        path = tmp_path / "feed.xml"
        path.write_text(
            '<rss xmlns:g="http://base.google.com/ns/1.0"><channel>'
            f"<item><g:id>x</g:id><g:title>{'t' * 2000}</g:title></item>"
            "</channel></rss>",
            encoding="utf-8",
        )
        (error,) = read_catalogue(path).report.errors
        assert (error.field, error.reason) == (
            "title",
            "too large: 2,000 characters; the limit is 1,024",
        )


class TestLiveCatalogue:
    """POST /admin/catalogue/changes refuses an oversized product before the catalogue lock:
    a 6.8 MB description used to hold the lock for 76 s."""

    def test_oversized_description_is_rejected_at_once(self, client: TestClient) -> None:
        big = {"id": "BIG-1", "title": "Big sofa", "description": "sofa " * (1_400_000)}
        started = time.perf_counter()
        response = client.post("/admin/catalogue/changes", json={"upserts": [big]})
        took = time.perf_counter() - started
        assert response.status_code == 422, response.text
        (rejected,) = response.json()["detail"]["rejected"]
        assert rejected["id"] == "BIG-1"
        assert rejected["errors"] == [
            {
                "field": "description",
                "reason": "too large: 7,000,000 characters; the limit is 65,536",
            }
        ]
        assert took < 5, f"{took:.1f} s"

    def test_good_rows_are_applied_beside_an_oversized_one(self, client: TestClient) -> None:
        good = {"id": "NEW-1", "title": "Small lamp", "price": 10}
        big = {"id": "BIG-2", "title": "L" * 2000}
        response = client.post("/admin/catalogue/changes", json={"upserts": [big, good]})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["inserted"] == ["NEW-1"]
        assert [r["index"] for r in body["rejected"]] == [0]
        assert body["rejected"][0]["errors"][0]["field"] == "title"


def test_the_service_takes_its_limits_from_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from api.app import create_app
    from api.settings import Settings

    monkeypatch.setenv("PRODUCTSEARCH_CATALOGUE_MAX_TITLE_CHARS", "10")
    settings = Settings(index_dir=build_snapshot(tmp_path), text_embedder="none", events_db="none")
    assert settings.catalogue_limits() == FieldLimits(title_chars=10)
    app = create_app(settings)
    _, token = app.state.security.keys.create("ops", "admin")
    with TestClient(app) as client:
        response = client.post(
            "/admin/catalogue/changes",
            json={"upserts": [{"id": "L", "title": "Lamp with a long name"}]},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert response.status_code == 422
    (rejected,) = response.json()["detail"]["rejected"]
    assert rejected["errors"][0]["reason"] == "too large: 21 characters; the limit is 10"
