"""A restart with a corrupt snapshot serves the last good one, loudly, instead of refusing to
start (a bad rebuild was refused by ``/admin/snapshot/reload``, then a restart took the shop
down). With no good snapshot kept, start-up still fails with the reason."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import Settings
from indexer.build import BuildConfig, build_from_catalogue
from search.errors import SnapshotError
from search.index.snapshot import PRODUCTS as PRODUCTS_FILE
from search.index.snapshot import last_good_path, read_manifest, record_last_good
from tests.api import PRODUCTS, build_snapshot, write_catalogue


def settings(snapshot: Path, tmp_path: Path) -> Settings:
    return Settings(
        index_dir=snapshot,
        text_embedder="none",
        events_db="none",
        keys_db=tmp_path / "keys.sqlite3",
    )


def rebuild(snapshot: Path, tmp_path: Path, n: int) -> None:
    """Publish a new build of the first ``n`` products over ``snapshot``."""
    catalogue = write_catalogue(
        tmp_path / f"catalogue-{n}.jsonl", [p.to_dict() for p in PRODUCTS[:n]]
    )
    build_from_catalogue(
        catalogue, snapshot, fmt="jsonl", config=BuildConfig(embedder="none", overwrite=True)
    )


def corrupt(snapshot: Path) -> None:
    """Flip bytes in the middle of the products file (same size: only the SHA-256 tells)."""
    path = snapshot / PRODUCTS_FILE
    data = bytearray(path.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 8] = b"XXXXXXXX"
    path.write_bytes(bytes(data))


@pytest.fixture()
def served(tmp_path: Path) -> Iterator[Path]:
    """A snapshot the service has verified and served once (so it is kept as last good)."""
    snapshot = build_snapshot(tmp_path)
    with TestClient(create_app(settings(snapshot, tmp_path))) as client:
        assert client.get("/health").json()["degraded"] is False
    assert last_good_path(snapshot).is_dir()
    yield snapshot


class TestRestartWithACorruptSnapshot:
    def test_serves_the_last_good_snapshot_with_a_loud_warning(
        self, served: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        good = read_manifest(served)
        rebuild(served, tmp_path, 3)  # a new build is published...
        corrupt(served)  # ...and damaged (a bad disk, a half-finished copy)
        with pytest.raises(SnapshotError, match="corrupt"):
            read_manifest(served)

        app = create_app(settings(served, tmp_path))
        with caplog.at_level(logging.ERROR, logger="productsearch.api"), TestClient(app) as client:
            health = client.get("/health").json()
            _, token = app.state.security.keys.create("ops", "admin")
            search = client.get(
                "/search", params={"q": "lamp"}, headers={"Authorization": f"Bearer {token}"}
            )

        assert health["degraded"] is True
        assert health["snapshot_id"] == good.snapshot_id
        assert health["products"] == len(PRODUCTS)
        assert str(served) in health["warning"] and "corrupt" in health["warning"]
        assert search.status_code == 200
        assert [h["id"] for h in search.json()["hits"]][:1] == ["LAMP-1"]
        logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert any("DEGRADED" in m and "last good" in m for m in logged)

    def test_a_good_reload_ends_the_degraded_state(self, served: Path, tmp_path: Path) -> None:
        rebuild(served, tmp_path, 3)
        corrupt(served)
        app = create_app(settings(served, tmp_path))
        with TestClient(app) as client:
            _, token = app.state.security.keys.create("ops", "admin")
            admin = {"Authorization": f"Bearer {token}"}
            assert client.get("/health").json()["degraded"] is True
            # A reload of the still-corrupt folder is refused and the last good one keeps serving.
            refused = client.post("/admin/snapshot/reload", headers=admin)
            assert refused.status_code == 409, refused.text
            assert client.get("/health").json()["degraded"] is True

            rebuild(served, tmp_path, 4)
            reloaded = client.post("/admin/snapshot/reload", headers=admin)
            assert reloaded.status_code == 200, reloaded.text
            health = client.get("/health").json()
        assert health["degraded"] is False and health["warning"] is None
        assert health["products"] == 4
        # The reloaded snapshot is now the one kept as last good.
        assert read_manifest(last_good_path(served)).snapshot_id == health["snapshot_id"]

    def test_without_a_good_snapshot_start_up_fails_with_both_reasons(self, tmp_path: Path) -> None:
        snapshot = build_snapshot(tmp_path)  # never served: nothing kept
        corrupt(snapshot)
        with (
            pytest.raises(SnapshotError, match="corrupt"),
            TestClient(create_app(settings(snapshot, tmp_path))),
        ):
            pass

    def test_a_damaged_last_good_snapshot_is_not_served(self, served: Path, tmp_path: Path) -> None:
        rebuild(served, tmp_path, 3)
        corrupt(served)
        corrupt(last_good_path(served))
        with (
            pytest.raises(SnapshotError, match=r"last good snapshot .* fails too"),
            TestClient(create_app(settings(served, tmp_path))),
        ):
            pass

    def test_a_catalogue_change_while_degraded_repairs_the_configured_folder(
        self, served: Path, tmp_path: Path
    ) -> None:
        rebuild(served, tmp_path, 3)
        corrupt(served)
        app = create_app(settings(served, tmp_path))
        with TestClient(app) as client:
            _, token = app.state.security.keys.create("ops", "admin")
            admin = {"Authorization": f"Bearer {token}"}
            assert client.get("/health").json()["degraded"] is True
            changed = client.post(
                "/admin/catalogue/changes",
                json={"upserts": [{"id": "HAMMOCK-1", "title": "Garden hammock"}]},
                headers=admin,
            )
            assert changed.status_code == 200, changed.text
            health = client.get("/health").json()
        # The change applied to the snapshot being served (the last good one) and published
        # into the configured folder, which is whole again.
        assert health["degraded"] is False
        assert health["products"] == len(PRODUCTS) + 1
        assert read_manifest(served, verify=True).snapshot_id == health["snapshot_id"]


class TestRecordLastGood:
    def test_kept_files_survive_a_new_publish(self, tmp_path: Path) -> None:
        snapshot = build_snapshot(tmp_path)
        manifest = read_manifest(snapshot)
        kept = record_last_good(snapshot, manifest)
        assert sorted(p.name for p in kept.iterdir()) == sorted([*manifest.files, "manifest.json"])
        rebuild(snapshot, tmp_path, 2)
        assert read_manifest(kept, verify=True) == manifest
        # Recording again replaces it whole, leaving nothing else beside the snapshot.
        record_last_good(snapshot, read_manifest(snapshot))
        assert read_manifest(kept).counts["products"] == 2
        assert sorted(p.name for p in snapshot.parent.iterdir() if p.name.startswith(".")) == [
            kept.name
        ]
