"""The ``productsearch`` command line: index, search, serve and --version."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from api import __version__
from api.cli import app, prepare_demo
from tests.api import PRODUCTS, write_catalogue

runner = CliRunner()


def invoke(*args: str | Path) -> Any:
    return runner.invoke(app, [str(arg) for arg in args], env={"COLUMNS": "200"})


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_catalogue(tmp_path_factory.mktemp("cli") / "catalogue.jsonl")


@pytest.fixture(scope="module")
def snapshot(catalogue: Path) -> Path:
    out = catalogue.parent / "snapshot"
    result = invoke("index", catalogue, "--out", out, "--embedder", "none")
    assert result.exit_code == 0, result.output
    return out


def bad_catalogue(path: Path) -> Path:
    rows: list[dict[str, Any]] = [product.to_dict() for product in PRODUCTS[:3]]
    rows.append({"id": "BROKEN-1", "title": "Chair", "price": "cheap"})
    rows.append(PRODUCTS[3].to_dict())
    return write_catalogue(path, rows)


class TestIndex:
    def test_builds_and_reports(self, snapshot: Path, catalogue: Path) -> None:
        result = invoke("index", catalogue, "--out", snapshot, "--embedder", "none", "--force")

        assert result.exit_code == 0, result.output
        assert "rows read:         8" in result.stdout
        assert "products indexed:  8" in result.stdout
        assert "rows dropped:      0" in result.stdout
        assert "errors:            0" in result.stdout
        assert (snapshot / "manifest.json").is_file()

    def test_writes_the_full_report_and_says_where(self, snapshot: Path) -> None:
        result = invoke("index", "--help")  # cheap; the snapshot fixture already ran the build
        report = snapshot / "import_report.json"

        assert result.exit_code == 0
        assert report.is_file()
        assert json.loads(report.read_text())["products_ok"] == len(PRODUCTS)

    def test_bad_row_is_reported_and_skipped(self, tmp_path: Path) -> None:
        catalogue = bad_catalogue(tmp_path / "bad.jsonl")

        result = invoke("index", catalogue, "--out", tmp_path / "snap", "--embedder", "none")

        assert result.exit_code == 0, result.output
        assert "rows read:         5" in result.stdout
        assert "products indexed:  4" in result.stdout
        assert "rows dropped:      1" in result.stdout
        assert "BROKEN-1" in result.stdout
        assert "price" in result.stdout
        assert f"full report: {tmp_path / 'snap' / 'import_report.json'}" in result.stdout

    def test_strict_fails_on_a_bad_row(self, tmp_path: Path) -> None:
        catalogue = bad_catalogue(tmp_path / "bad.jsonl")

        result = invoke(
            "index", catalogue, "--out", tmp_path / "snap", "--embedder", "none", "--strict"
        )

        assert result.exit_code == 1
        assert "error:" in result.stderr
        assert "Traceback" not in result.output

    def test_unreadable_catalogue_fails_cleanly(self, tmp_path: Path) -> None:
        catalogue = tmp_path / "garbage.xml"
        catalogue.write_text("<rss><channel><item>")

        result = invoke(
            "index", catalogue, "--out", tmp_path / "snap", "--embedder", "none",
            "--format", "merchant-xml",
        )  # fmt: skip

        assert result.exit_code == 1
        assert "error:" in result.stderr

    def test_refuses_to_overwrite_a_non_empty_folder(self, tmp_path: Path, catalogue: Path) -> None:
        out = tmp_path / "precious"
        out.mkdir()
        (out / "keep.txt").write_text("mine")

        result = invoke("index", catalogue, "--out", out, "--embedder", "none")

        assert result.exit_code == 1
        assert "--force" in result.stderr
        assert (out / "keep.txt").read_text() == "mine"

    def test_empty_folder_is_fine(self, tmp_path: Path, catalogue: Path) -> None:
        out = tmp_path / "empty"
        out.mkdir()

        assert invoke("index", catalogue, "--out", out, "--embedder", "none").exit_code == 0

    def test_missing_catalogue_is_a_usage_error(self, tmp_path: Path) -> None:
        result = invoke("index", tmp_path / "absent.jsonl", "--out", tmp_path / "snap")

        assert result.exit_code == 2

    def test_unknown_format_is_a_usage_error(self, tmp_path: Path, catalogue: Path) -> None:
        result = invoke("index", catalogue, "--out", tmp_path / "s", "--format", "parquet")

        assert result.exit_code == 2


class TestSearch:
    def test_prints_a_ranked_table(self, snapshot: Path) -> None:
        result = invoke("search", "--index", snapshot, "sofa", "-k", "3")

        assert result.exit_code == 0, result.output
        for product_id in ("SOFA-1", "SOFA-2", "SOFA-3"):
            assert product_id in result.stdout
        assert "CHAIR-1" not in result.stdout
        assert "Nordhem" in result.stdout

    def test_json_is_the_api_response(self, snapshot: Path) -> None:
        result = invoke("search", "--index", snapshot, "oak", "--json", "--explain")

        assert result.exit_code == 0, result.output
        body = json.loads(result.stdout)
        assert body["query"] == "oak"
        assert body["k"] == 10
        assert {"CHAIR-1", "TABLE-1"} <= {hit["id"] for hit in body["hits"]}
        assert all(hit["explanation"] is not None for hit in body["hits"])

    def test_explain_adds_a_column(self, snapshot: Path) -> None:
        result = invoke("search", "--index", snapshot, "oak chair", "--explain")

        assert result.exit_code == 0, result.output
        assert "why" in result.stdout

    def test_shows_the_corrected_query(self, snapshot: Path) -> None:
        result = invoke("search", "--index", snapshot, "leathr sofa")

        assert result.exit_code == 0, result.output
        assert "showing results for" in result.stdout

    def test_empty_query_browses(self, snapshot: Path) -> None:
        result = invoke("search", "--index", snapshot, "--json", "-k", "50")

        assert json.loads(result.stdout)["total"] == len(PRODUCTS)

    def test_not_a_snapshot_fails_cleanly(self, tmp_path: Path) -> None:
        result = invoke("search", "--index", tmp_path, "sofa")

        assert result.exit_code == 1
        assert "cannot open snapshot" in result.stderr


class TestServe:
    @pytest.fixture
    def served(self, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
        calls: dict[str, Any] = {}

        def fake_run(app: Any, **kwargs: Any) -> None:
            calls["app"] = app
            calls.update(kwargs)

        monkeypatch.setattr("uvicorn.run", fake_run)
        return calls

    def test_serves_the_snapshot(self, snapshot: Path, served: dict[str, Any]) -> None:
        result = invoke("serve", "--index", snapshot, "--host", "0.0.0.0", "--port", "8123")

        assert result.exit_code == 0, result.output
        assert (served["host"], served["port"]) == ("0.0.0.0", 8123)
        assert served["app"].state.settings.index_dir == snapshot

    def test_refuses_a_broken_snapshot(self, tmp_path: Path, served: dict[str, Any]) -> None:
        result = invoke("serve", "--index", tmp_path)

        assert result.exit_code == 1
        assert "refusing to serve" in result.stderr
        assert served == {}

    def test_needs_a_snapshot(
        self, served: dict[str, Any], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv("PRODUCTSEARCH_INDEX_DIR", raising=False)

        result = invoke("serve")

        assert result.exit_code == 2
        assert "--demo" in result.stderr

    def test_demo_builds_once_and_reuses(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def tiny_demo(out_dir: Path, *, seed: int = 7, n_products: int = 300) -> Path:
            return write_catalogue(out_dir / "catalogue.jsonl")

        monkeypatch.setattr("indexer.demo.write_demo_catalogue", tiny_demo)

        first = prepare_demo(tmp_path / "demo", embedder="none")
        manifest = (first / "manifest.json").read_text()
        second = prepare_demo(tmp_path / "demo", embedder="none")

        assert first == second
        assert (second / "manifest.json").read_text() == manifest  # not rebuilt


def test_version() -> None:
    result = invoke("--version")

    assert result.exit_code == 0
    assert result.stdout.strip() == f"productsearch {__version__}"


class TestKeysCommand:
    def test_creates_a_key_the_service_accepts(self, tmp_path: Path) -> None:
        from api.security import KeyStore

        db = tmp_path / "keys.sqlite3"
        result = runner.invoke(
            app, ["keys", "create", "--name", "shop", "--scope", "admin", "--keys-db", str(db)]
        )
        assert result.exit_code == 0, result.output
        token = next(line for line in result.output.splitlines() if line.startswith("ps_"))
        key = KeyStore(db).authenticate(token)
        assert key is not None and key.scope == "admin"

    def test_bad_scope_names_the_valid_ones(self, tmp_path: Path) -> None:
        result = runner.invoke(
            app,
            [
                "keys",
                "create",
                "--name",
                "x",
                "--scope",
                "root",
                "--keys-db",
                str(tmp_path / "k.db"),
            ],
        )
        assert result.exit_code != 0
        assert "search, admin" in result.output
