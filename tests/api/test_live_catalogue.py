"""Live catalogue changes through the API: upserts and deletes are searchable on the next
request, bad products are reported while good ones apply, a corrupt rebuilt snapshot is refused
and the serving one keeps answering."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import Settings
from tests.api import build_snapshot


@pytest.fixture()
def env(tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str], Path]]:
    snapshot = build_snapshot(tmp_path)
    app = create_app(Settings(index_dir=snapshot, text_embedder="none", events_db="none"))
    with TestClient(app) as client:
        _, token = app.state.security.keys.create("ops", "admin")
        yield client, {"Authorization": f"Bearer {token}"}, snapshot


def ids(client: TestClient, headers: dict[str, str], q: str) -> list[str]:
    body = client.get("/search", params={"q": q, "as_you_type": "false"}, headers=headers).json()
    return [h["id"] for h in body["hits"]]


class TestLiveCatalogue:
    def test_upsert_and_delete_are_searchable_at_once(
        self, env: tuple[TestClient, dict[str, str], Path]
    ) -> None:
        client, admin, _ = env
        before = client.get("/health").json()["snapshot_id"]
        response = client.post(
            "/admin/catalogue/changes",
            json={
                "upserts": [
                    {"id": "HAMMOCK-1", "title": "Garden hammock in teal", "price": 59},
                    {"id": "SOFA-1", "title": "Oslo three-seat sofa, renamed velvet edition"},
                    {"title": "a product without an id"},
                ],
                "deletes": ["LAMP-1", "NOT-THERE"],
            },
            headers=admin,
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["inserted"] == ["HAMMOCK-1"]
        assert body["replaced"] == ["SOFA-1"]
        assert body["deleted"] == ["LAMP-1"]
        assert body["unknown_deletes"] == ["NOT-THERE"]
        assert [r["index"] for r in body["rejected"]] == [2]
        assert client.get("/health").json()["snapshot_id"] != before
        assert ids(client, admin, "hammock") == ["HAMMOCK-1"]
        assert "SOFA-1" in ids(client, admin, "velvet")
        assert client.get("/products/LAMP-1", headers=admin).status_code == 404

    def test_nothing_valid_is_422(self, env: tuple[TestClient, dict[str, str], Path]) -> None:
        client, admin, _ = env
        response = client.post(
            "/admin/catalogue/changes", json={"upserts": [{"title": "no id"}]}, headers=admin
        )
        assert response.status_code == 422
        assert "rejected" in response.text

    def test_needs_an_admin_key(self, env: tuple[TestClient, dict[str, str], Path]) -> None:
        client, _, _ = env
        response = client.post("/admin/catalogue/changes", json={"deletes": ["SOFA-1"]})
        assert response.status_code == 401

    def test_corrupt_rebuild_is_refused_and_the_old_snapshot_serves(
        self, env: tuple[TestClient, dict[str, str], Path]
    ) -> None:
        client, admin, snapshot = env
        serving = client.get("/health").json()["snapshot_id"]
        backup = snapshot.parent / "backup"
        shutil.copytree(snapshot, backup)
        (snapshot / "lexical.npz").write_bytes(b"truncated")
        response = client.post("/admin/snapshot/reload", headers=admin)
        assert response.status_code == 409
        assert "lexical.npz" in response.text
        assert client.get("/health").json()["snapshot_id"] == serving
        assert ids(client, admin, "sofa")
        shutil.rmtree(snapshot)
        shutil.copytree(backup, snapshot)
        assert client.post("/admin/snapshot/reload", headers=admin).status_code == 200


def test_a_change_in_flight_leaves_the_request_threads_to_searches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With one request thread, a catalogue change that takes its time (held here until the
    search has answered) must not take that thread: the search answers meanwhile."""
    import threading

    import api.routes.catalogue as catalogue

    snapshot = build_snapshot(tmp_path)
    settings = Settings(
        index_dir=snapshot,
        text_embedder="none",
        events_db="none",
        request_threads=1,
        search_timeout_s=5,
    )
    app = create_app(settings)
    searched = threading.Event()
    applying = threading.Event()
    apply = catalogue._apply

    def slow_apply(*args: object) -> object:
        applying.set()
        assert searched.wait(30), "the search never answered while the change ran"
        return apply(*args)

    monkeypatch.setattr(catalogue, "_apply", slow_apply)
    with TestClient(app) as client:
        _, token = app.state.security.keys.create("ops", "admin")
        admin = {"Authorization": f"Bearer {token}"}
        outcome: dict[str, object] = {}

        def change() -> None:
            outcome["response"] = client.post(
                "/admin/catalogue/changes",
                json={"upserts": [{"id": "NEW-1", "title": "Quokka lamp"}]},
                headers=admin,
            )

        worker = threading.Thread(target=change)
        worker.start()
        assert applying.wait(30)
        response = client.get("/search", params={"q": "sofa"}, headers=admin)
        searched.set()
        worker.join(60)
        assert response.status_code == 200 and response.json()["hits"]
        assert outcome["response"].status_code == 200  # type: ignore[attr-defined]
        assert ids(client, admin, "quokka") == ["NEW-1"]
