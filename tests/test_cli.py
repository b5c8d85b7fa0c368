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


class TestIndexLimits:
    """``index`` applies the catalogue size limits of the settings (issue 15 §7), as the live
    catalogue does: an over-long row is a bad row naming its field, the others are indexed."""

    @staticmethod
    def over_long_catalogue(path: Path) -> Path:
        rows: list[dict[str, Any]] = [product.to_dict() for product in PRODUCTS[:3]]
        rows.insert(
            1,
            {
                "id": "LONG-1",
                "title": "Sofa " + "very " * 20,
                "description": "Deep " * 100,
                "brand": "B" * 200,
            },
        )
        return write_catalogue(path, rows)

    @pytest.mark.parametrize(
        ("variable", "limit", "field"),
        [
            ("PRODUCTSEARCH_CATALOGUE_MAX_TITLE_CHARS", 60, "title"),
            ("PRODUCTSEARCH_CATALOGUE_MAX_DESCRIPTION_CHARS", 300, "description"),
            ("PRODUCTSEARCH_CATALOGUE_MAX_TEXT_CHARS", 150, "brand"),
            ("PRODUCTSEARCH_CATALOGUE_MAX_ROW_BYTES", 600, "description"),
        ],
    )
    def test_an_over_long_row_is_reported_and_the_rest_indexed(
        self, tmp_path: Path, variable: str, limit: int, field: str
    ) -> None:
        catalogue = self.over_long_catalogue(tmp_path / "long.jsonl")
        out = tmp_path / "snap"

        result = runner.invoke(
            app,
            ["index", str(catalogue), "--out", str(out), "--embedder", "none"],
            env={"COLUMNS": "200", variable: str(limit)},
        )

        assert result.exit_code == 0, result.output
        assert "rows read:         4" in result.stdout
        assert "products indexed:  3" in result.stdout
        report = json.loads((out / "import_report.json").read_text())
        errors = report["errors"]
        assert [(e["row"], e["field"]) for e in errors] == [(2, field)]
        assert "too large" in errors[0]["reason"] and f"{limit:,}" in errors[0]["reason"]
        assert "LONG-1" in result.stdout

    def test_the_defaults_take_the_same_row(self, tmp_path: Path) -> None:
        catalogue = self.over_long_catalogue(tmp_path / "long.jsonl")

        result = invoke("index", catalogue, "--out", tmp_path / "snap", "--embedder", "none")

        assert result.exit_code == 0, result.output
        assert "products indexed:  4" in result.stdout

    def test_an_invalid_limit_is_a_usage_error(self, tmp_path: Path, catalogue: Path) -> None:
        result = runner.invoke(
            app,
            ["index", str(catalogue), "--out", str(tmp_path / "s"), "--embedder", "none"],
            env={"PRODUCTSEARCH_CATALOGUE_MAX_TITLE_CHARS": "0"},
        )

        assert result.exit_code == 2
        assert "catalogue_max_title_chars" in result.stderr
        assert not (tmp_path / "s").exists()


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

    def test_demo_is_rebuilt_when_its_pictures_change(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Same catalogue, other pictures (a newer renderer): the old snapshot's photo
        colours are stale, so the demo is built again."""
        picture = {"bytes": b"\x89PNG first"}

        def tiny_demo(out_dir: Path, *, seed: int = 7, n_products: int = 300) -> Path:
            (out_dir / "images").mkdir(parents=True, exist_ok=True)
            (out_dir / "images" / "a.png").write_bytes(picture["bytes"])
            return write_catalogue(out_dir / "catalogue.jsonl")

        monkeypatch.setattr("indexer.demo.write_demo_catalogue", tiny_demo)

        first = prepare_demo(tmp_path / "demo", embedder="none")
        manifest = (first / "manifest.json").read_text()
        picture["bytes"] = b"\x89PNG second"
        second = prepare_demo(tmp_path / "demo", embedder="none")

        assert (second / "manifest.json").read_text() != manifest  # rebuilt


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


class TestApplyChanges:
    """``productsearch apply-changes``: offline on a snapshot folder and through a service."""

    @pytest.fixture
    def served_copy(self, snapshot: Path, tmp_path: Path) -> Path:
        import shutil

        copy = tmp_path / "snapshot"
        shutil.copytree(snapshot, copy)
        return copy

    @staticmethod
    def lines(path: Path, *rows: Any) -> Path:
        path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
        return path

    @staticmethod
    def search_ids(snapshot: Path, query: str) -> list[str]:
        result = invoke("search", "--index", snapshot, query, "--json")
        assert result.exit_code == 0, result.output
        return [hit["id"] for hit in json.loads(result.stdout)["hits"]]

    def test_json_lines_upsert_delete_and_a_bad_row(
        self, served_copy: Path, tmp_path: Path
    ) -> None:
        before = json.loads((served_copy / "manifest.json").read_text())["snapshot_id"]
        changes = self.lines(
            tmp_path / "changes.jsonl",
            {"id": "HAMMOCK-1", "title": "Garden hammock in teal", "price": 59},
            {"id": "SOFA-1", "title": "Oslo three-seat sofa, velvet edition"},
            {"delete": "LAMP-1"},
            {"title": "no id here"},
            "not json",
        )

        result = invoke("apply-changes", changes, "--index", served_copy)

        assert result.exit_code == 0, result.output
        assert "inserted:          1" in result.stdout
        assert "replaced:          1" in result.stdout
        assert "deleted:           1" in result.stdout
        assert "rejected:          2" in result.stdout
        after = json.loads((served_copy / "manifest.json").read_text())["snapshot_id"]
        assert after != before
        assert self.search_ids(served_copy, "hammock") == ["HAMMOCK-1"]
        assert "SOFA-1" in self.search_ids(served_copy, "velvet")
        assert "LAMP-1" not in self.search_ids(served_copy, "lamp")

    def test_request_body_format_and_json_output(self, served_copy: Path, tmp_path: Path) -> None:
        body = tmp_path / "changes.json"
        body.write_text(
            json.dumps(
                {
                    "upserts": [{"id": "RUG-1", "title": "Wool rug 160 x 230", "price": 120}],
                    "deletes": ["CUSHION-1", "NOT-THERE"],
                }
            )
        )

        result = invoke("apply-changes", body, "--index", served_copy, "--json")

        assert result.exit_code == 0, result.output
        outcome = json.loads(result.stdout)
        assert outcome["inserted"] == ["RUG-1"]
        assert outcome["deleted"] == ["CUSHION-1"]
        assert outcome["unknown_deletes"] == ["NOT-THERE"]
        assert outcome["rejected"] == []
        assert outcome["snapshot_id"] != outcome["base_snapshot_id"]

    def test_out_leaves_the_source_snapshot_alone(self, served_copy: Path, tmp_path: Path) -> None:
        manifest = (served_copy / "manifest.json").read_bytes()
        changes = self.lines(tmp_path / "c.jsonl", {"delete": "SOFA-2"})

        result = invoke("apply-changes", changes, "--index", served_copy, "--out", tmp_path / "new")

        assert result.exit_code == 0, result.output
        assert (served_copy / "manifest.json").read_bytes() == manifest
        assert "SOFA-2" in self.search_ids(served_copy, "bergen")
        assert "SOFA-2" not in self.search_ids(tmp_path / "new", "bergen")

    def test_delete_option_and_stdin(self, served_copy: Path) -> None:
        result = runner.invoke(
            app,
            ["apply-changes", "-", "--index", str(served_copy), "-d", "CHAIR-2", "--json"],
            input=json.dumps({"id": "STOOL-1", "title": "Bar stool"}) + "\n",
        )

        assert result.exit_code == 0, result.output
        outcome = json.loads(result.stdout)
        assert (outcome["inserted"], outcome["deleted"]) == (["STOOL-1"], ["CHAIR-2"])

    def test_strict_applies_nothing_when_a_row_is_bad(
        self, served_copy: Path, tmp_path: Path
    ) -> None:
        manifest = (served_copy / "manifest.json").read_bytes()
        changes = self.lines(
            tmp_path / "c.jsonl",
            {"id": "OK-1", "title": "Fine product"},
            {"id": "BAD-1", "title": "Bad price", "price": "cheap"},
        )

        result = invoke("apply-changes", changes, "--index", served_copy, "--strict")

        assert result.exit_code == 1
        assert "BAD-1" in result.stderr and "nothing applied" in result.stderr
        assert (served_copy / "manifest.json").read_bytes() == manifest

    def test_nothing_valid_fails(self, served_copy: Path, tmp_path: Path) -> None:
        changes = self.lines(tmp_path / "c.jsonl", {"title": "no id"})

        result = invoke("apply-changes", changes, "--index", served_copy)

        assert result.exit_code == 1
        assert "no valid change" in result.stderr

    def test_id_both_upserted_and_deleted_fails_cleanly(
        self, served_copy: Path, tmp_path: Path
    ) -> None:
        changes = self.lines(tmp_path / "c.jsonl", {"id": "X-1", "title": "X"}, {"delete": "X-1"})

        result = invoke("apply-changes", changes, "--index", served_copy)

        assert result.exit_code == 1
        assert "X-1" in result.stderr
        assert "Traceback" not in result.output

    def test_not_a_snapshot_fails_cleanly(self, tmp_path: Path) -> None:
        changes = self.lines(tmp_path / "c.jsonl", {"delete": "SOFA-1"})

        result = invoke("apply-changes", changes, "--index", tmp_path / "nowhere")

        assert result.exit_code == 1
        assert "cannot apply changes" in result.stderr

    @pytest.mark.parametrize(
        "args",
        [
            pytest.param([], id="neither-index-nor-url"),
            pytest.param(["--index", "snap", "--url", "http://127.0.0.1:9"], id="both"),
            pytest.param(["--url", "http://127.0.0.1:9", "--out", "x"], id="out-without-index"),
        ],
    )
    def test_usage_errors(self, tmp_path: Path, args: list[str]) -> None:
        changes = self.lines(tmp_path / "c.jsonl", {"delete": "SOFA-1"})

        result = runner.invoke(
            app, ["apply-changes", str(changes), *args], env={"PRODUCTSEARCH_ADMIN_KEY": "k"}
        )

        assert result.exit_code == 2
        assert "error:" in result.stderr

    def test_unreadable_or_malformed_changes_are_usage_errors(self, tmp_path: Path) -> None:
        missing = invoke("apply-changes", tmp_path / "absent.jsonl", "--index", tmp_path)
        malformed = tmp_path / "bad.json"
        malformed.write_text(json.dumps({"upserts": {"id": "A"}, "deletes": []}))
        bad_body = invoke("apply-changes", malformed, "--index", tmp_path)

        assert missing.exit_code == 2 and "cannot read" in missing.stderr
        assert bad_body.exit_code == 2 and "JSON arrays" in bad_body.stderr


@pytest.fixture
def live_service(tmp_path: Path, snapshot: Path) -> Any:
    """A real uvicorn server (in a thread) over a copy of the CLI snapshot, with an admin key;
    yields ``(base_url, admin_token, snapshot_dir)``."""
    import shutil
    import socket
    import threading
    import time

    import uvicorn

    from api.app import create_app
    from api.settings import Settings

    served = tmp_path / "served"
    shutil.copytree(snapshot, served)
    application = create_app(Settings(index_dir=served, text_embedder="none", events_db="none"))
    _, token = application.state.security.keys.create("ops", "admin")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(application, host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", token, served
    server.should_exit = True
    thread.join(timeout=30)


class TestApplyChangesOnline:
    def test_applies_through_the_service(self, live_service: Any, tmp_path: Path) -> None:
        import httpx

        url, token, _ = live_service
        changes = TestApplyChanges.lines(
            tmp_path / "c.jsonl",
            {"id": "HAMMOCK-1", "title": "Garden hammock in teal"},
            {"title": "no id"},
            {"delete": "LAMP-1"},
        )

        result = runner.invoke(
            app,
            ["apply-changes", str(changes), "--url", url, "--json"],
            env={"PRODUCTSEARCH_ADMIN_KEY": token},
        )

        assert result.exit_code == 0, result.output
        outcome = json.loads(result.stdout)
        assert outcome["inserted"] == ["HAMMOCK-1"] and outcome["deleted"] == ["LAMP-1"]
        assert [r["row"] for r in outcome["rejected"]] == [2]  # the line number in the file
        headers = {"Authorization": f"Bearer {token}"}
        hits = httpx.get(f"{url}/search", params={"q": "hammock"}, headers=headers).json()["hits"]
        assert [h["id"] for h in hits] == ["HAMMOCK-1"]
        health = httpx.get(f"{url}/health").json()
        assert health["snapshot_id"] == outcome["snapshot_id"]

    def test_wrong_key_is_refused(self, live_service: Any, tmp_path: Path) -> None:
        url, _, served = live_service
        manifest = (served / "manifest.json").read_bytes()
        changes = TestApplyChanges.lines(tmp_path / "c.jsonl", {"delete": "LAMP-1"})

        result = invoke("apply-changes", changes, "--url", url, "--admin-key", "ps_nope")

        assert result.exit_code == 1
        assert "401" in result.stderr
        assert (served / "manifest.json").read_bytes() == manifest

    def test_needs_a_key(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("PRODUCTSEARCH_ADMIN_KEY", raising=False)
        changes = TestApplyChanges.lines(tmp_path / "c.jsonl", {"delete": "LAMP-1"})

        result = invoke("apply-changes", changes, "--url", "http://127.0.0.1:9")

        assert result.exit_code == 2
        assert "admin key" in result.stderr

    def test_unreachable_service_fails_cleanly(self, tmp_path: Path) -> None:
        from benchmarks.peers import free_port

        changes = TestApplyChanges.lines(tmp_path / "c.jsonl", {"delete": "LAMP-1"})
        url = f"http://127.0.0.1:{free_port()}"

        result = invoke(
            "apply-changes", changes, "--url", url, "--admin-key", "k", "--timeout", "5"
        )

        assert result.exit_code == 1
        assert "cannot reach" in result.stderr
