"""Faults: processes killed with SIGKILL while building or swapping snapshots, corrupt snapshot
files, and snapshot swaps under concurrent load.

The serving snapshot must stay complete whatever is killed when: a build or a delta writes into
a temporary sibling folder and publishes it in one atomic step, so a restart serves either the
previous snapshot or the new one, never a mixture or half of one. (SIGKILL during event ingest:
``tests/api/test_events.py``; a truncated file refused on reload: ``test_live_catalogue.py``.)
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.service import open_snapshot
from api.settings import Settings
from benchmarks.home_depot import serve_command
from benchmarks.load import Service, publish_copy, start_service
from search.errors import SnapshotError
from search.index.snapshot import MANIFEST, read_manifest
from tests.api import PRODUCTS, build_snapshot, write_catalogue

REPO = Path(__file__).resolve().parents[2]

#: Products of the generated catalogue: its build and reload take long enough to be killed in.
BIG = 10_000

_NOUNS = ("drill", "saw", "hammer", "ladder", "faucet", "toilet", "vanity", "door", "lamp", "fan")
_ADJECTIVES = ("cordless", "brushed", "white", "black", "oak", "steel", "compact", "outdoor")
_BRANDS = ("Dewalt", "Makita", "Ryobi", "Moen", "Kohler", "Husky", "Hampton", "Delta")


def generated_catalogue(path: Path, n: int, *, seed: int = 0) -> Path:
    """``n`` Home-Depot-like products as JSON Lines (big enough for a build to take a while)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        title = (
            f"{rng.choice(_BRANDS)} {rng.choice(_ADJECTIVES)} {rng.choice(_ADJECTIVES)} "
            f"{rng.choice(_NOUNS)} {rng.randint(2, 60)} in. model {i}"
        )
        rows.append(
            {
                "id": f"GEN-{i}",
                "title": title,
                "description": f"{title}. Ships in {rng.randint(1, 9)} days.",
                "brand": title.split()[0],
                "price": round(rng.uniform(5, 900), 2),
            }
        )
    return write_catalogue(path, rows)


def productsearch(*args: str | Path) -> list[str]:
    """argv of the ``productsearch`` command in this virtualenv."""
    exe = Path(sys.executable).with_name("productsearch")
    prefix = [str(exe)] if exe.exists() else [sys.executable, "-m", "api.cli"]
    return [*prefix, *(str(a) for a in args)]


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def building_folders(snapshot: Path) -> list[Path]:
    return sorted(snapshot.parent.glob(f".{snapshot.name}.building-*"))


def product_ids(snapshot: Path) -> set[str]:
    return {json.loads(line)["id"] for line in (snapshot / "products.jsonl").open()}


@pytest.fixture(scope="module")
def big_catalogue(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generated_catalogue(tmp_path_factory.mktemp("faults") / "big.jsonl", BIG)


@pytest.fixture(scope="module")
def big_snapshot(big_catalogue: Path) -> Path:
    """A lexical snapshot of the generated catalogue (start-up and reload take a moment)."""
    from indexer.build import BuildConfig, build_from_catalogue

    out = big_catalogue.parent / "big-snapshot"
    build_from_catalogue(big_catalogue, out, fmt="jsonl", config=BuildConfig(embedder="none"))
    return out


# --------------------------------------------------------------------------------------------
# SIGKILL during a build


@pytest.mark.slow
def test_sigkill_during_a_build_keeps_the_previous_snapshot(
    tmp_path: Path, big_catalogue: Path
) -> None:
    out = tmp_path / "snapshot"
    small = write_catalogue(tmp_path / "small.jsonl")
    first = subprocess.run(
        productsearch("index", small, "--out", out, "--embedder", "none"),
        cwd=REPO,
        capture_output=True,
    )
    assert first.returncode == 0, first.stderr.decode()
    before = read_manifest(out).snapshot_id
    rebuild: list[str | Path] = [
        *("index", big_catalogue, "--out", out, "--force"),
        *("--embedder", "none", "--image-embedder", "none"),
    ]

    build = subprocess.Popen(
        productsearch(*rebuild),
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # Killed once it is writing the new snapshot's files: the riskiest moment.
        wait_for(lambda: any(any(f.iterdir()) for f in building_folders(out)), 300, "the write")
        os.kill(build.pid, signal.SIGKILL)
        build.wait(timeout=30)
    finally:
        if build.poll() is None:
            build.kill()
            build.wait()
    assert build.returncode == -signal.SIGKILL

    # The previous snapshot is intact (every file's SHA-256) and serves.
    assert read_manifest(out, verify=True).snapshot_id == before
    assert product_ids(out) == {p.id for p in PRODUCTS}
    assert open_snapshot(out).search_ids("sofa", 3)
    # The half-written folder is never taken for a snapshot.
    [half] = building_folders(out)
    with pytest.raises(SnapshotError, match=MANIFEST):
        read_manifest(half)

    rerun = subprocess.run(
        productsearch(*rebuild),
        cwd=REPO,
        capture_output=True,
    )
    assert rerun.returncode == 0, rerun.stderr.decode()
    assert read_manifest(out, verify=True).counts["products"] == BIG
    assert building_folders(out) == []  # the rebuild cleared the killed build's folder


_KILLED_MID_PUBLISH = """
import os, signal, sys
from pathlib import Path

import search.index.snapshot as snapshot
from indexer.build import BuildConfig, build_snapshot
from search.types import Product

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

real_replace = os.replace

def replace_then_die(src, dst):
    real_replace(src, dst)
    die()

# The first rename or clean-up once the new snapshot is complete is the last thing it does.
snapshot.os.replace = replace_then_die
snapshot.shutil.rmtree = die
build_snapshot(
    [Product(id="NEW-1", title="New garden hose")],
    Path(sys.argv[1]),
    config=BuildConfig(embedder="none", overwrite=True),
)
"""


def test_sigkill_while_publishing_leaves_a_complete_snapshot(tmp_path: Path) -> None:
    """Killed while swapping the new folder into place: the old snapshot or the new one is
    there, complete (publishing used to rename the old one away first, and a kill before the
    second rename left no snapshot at all)."""
    out = build_snapshot(tmp_path)
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_MID_PUBLISH, str(out)], cwd=REPO, capture_output=True
    )

    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()
    manifest = read_manifest(out, verify=True)
    assert product_ids(out) in ({p.id for p in PRODUCTS}, {"NEW-1"})
    assert manifest.counts["products"] == len(product_ids(out))
    assert open_snapshot(out).search_ids("", 20)


# --------------------------------------------------------------------------------------------
# SIGKILL during a swap in a real server


@pytest.fixture
def service(tmp_path: Path, big_snapshot: Path) -> Iterator[Service]:
    served = start_service(big_snapshot, tmp_path, startup_timeout_s=180)
    try:
        yield served
    finally:
        served.stop()


def admin(service: Service) -> dict[str, str]:
    return {"Authorization": f"Bearer {service.admin_token}"}


def post_in_background(service: Service, path: str, body: Any) -> dict[str, Any]:
    """POST from a thread; the returned dict gets ``status`` (None: no answer) when done."""
    outcome: dict[str, Any] = {}

    def send() -> None:
        try:
            with httpx.Client(base_url=service.base_url, timeout=120) as http:
                response = http.post(path, json=body, headers=admin(service))
            outcome["status"] = response.status_code
            outcome["body"] = response.json() if response.status_code == 200 else response.text
        except httpx.HTTPError:
            outcome["status"] = None
        outcome["done"] = True

    outcome["thread"] = threading.Thread(target=send, daemon=True)
    outcome["thread"].start()
    return outcome


def kill(service: Service) -> None:
    assert service.proc is not None
    os.kill(service.proc.pid, signal.SIGKILL)
    service.proc.wait(timeout=30)


@pytest.mark.slow
class TestSigkillDuringASwap:
    def test_during_a_delta_restart_serves_the_old_or_the_new_snapshot(
        self, service: Service
    ) -> None:
        served = service.snapshot_dir
        before = httpx.get(f"{service.base_url}/health").json()["snapshot_id"]
        upserts = [{"id": f"NEW-{i}", "title": f"Teal garden hammock {i}"} for i in range(50)]
        outcome = post_in_background(
            service, "/admin/catalogue/changes", {"upserts": upserts, "deletes": ["GEN-1"]}
        )
        # Killed while the delta writes the new snapshot next to the served one.
        wait_for(
            lambda: bool(building_folders(served)) or "done" in outcome, 120, "the delta's write"
        )
        kill(service)
        outcome["thread"].join(timeout=60)

        service.restart()
        health = httpx.get(f"{service.base_url}/health").json()
        manifest = read_manifest(served, verify=True)
        assert health["snapshot_id"] == manifest.snapshot_id
        ids = product_ids(served)
        if outcome.get("status") == 200:  # acknowledged before the kill: it must have stayed
            assert health["snapshot_id"] == outcome["body"]["snapshot_id"]
        if health["snapshot_id"] == before:
            assert "NEW-0" not in ids and "GEN-1" in ids
        else:  # all of the change, never part of it
            assert {f"NEW-{i}" for i in range(50)} <= ids and "GEN-1" not in ids
        headers = {"Authorization": f"Bearer {service.search_token}"}
        search = httpx.get(
            f"{service.base_url}/search", params={"q": "cordless drill"}, headers=headers
        )
        assert search.status_code == 200 and search.json()["hits"]

    def test_during_a_reload_restart_serves_a_consistent_snapshot(
        self, service: Service, big_snapshot: Path
    ) -> None:
        served = service.snapshot_dir
        published = publish_copy(big_snapshot, served)
        outcome = post_in_background(service, "/admin/snapshot/reload", None)
        time.sleep(0.3)  # the reload opens and checks 10,000 products: well under way
        kill(service)
        outcome["thread"].join(timeout=60)

        service.restart()
        health = httpx.get(f"{service.base_url}/health").json()
        assert health["snapshot_id"] == published == read_manifest(served, verify=True).snapshot_id
        assert health["products"] == BIG
        headers = {"Authorization": f"Bearer {service.search_token}"}
        search = httpx.get(f"{service.base_url}/search", params={"q": "ladder"}, headers=headers)
        assert search.status_code == 200 and search.json()["hits"]


# --------------------------------------------------------------------------------------------
# Corrupt snapshot files on reload (a truncated lexical.npz: test_live_catalogue.py)


def flip_a_byte(snapshot: Path) -> str:
    path = snapshot / "products.jsonl"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # same size: only the SHA-256 tells
    path.write_bytes(bytes(data))
    return "products.jsonl is corrupt"


def garble_the_manifest(snapshot: Path) -> str:
    (snapshot / MANIFEST).write_text('{"format_version": 1, "files": ')
    return "not valid JSON"


def delete_a_file(snapshot: Path) -> str:
    (snapshot / "vocabulary.json").unlink()
    return "vocabulary.json is missing"


def a_future_format(snapshot: Path) -> str:
    manifest = json.loads((snapshot / MANIFEST).read_text())
    manifest["format_version"] = 99
    (snapshot / MANIFEST).write_text(json.dumps(manifest))
    return "format 99"


@pytest.mark.parametrize(
    "damage", [flip_a_byte, garble_the_manifest, delete_a_file, a_future_format]
)
def test_a_damaged_snapshot_is_refused_and_the_old_one_keeps_serving(
    tmp_path: Path, damage: Callable[[Path], str]
) -> None:
    snapshot = build_snapshot(tmp_path)
    app = create_app(Settings(index_dir=snapshot, text_embedder="none", events_db="none"))
    with TestClient(app) as client:
        _, token = app.state.security.keys.create("ops", "admin")
        headers = {"Authorization": f"Bearer {token}"}
        serving = client.get("/health").json()["snapshot_id"]
        reason = damage(snapshot)

        response = client.post("/admin/snapshot/reload", headers=headers)

        assert response.status_code == 409
        assert "kept the serving snapshot" in response.json()["detail"]
        assert reason in response.json()["detail"]
        assert client.get("/health").json()["snapshot_id"] == serving
        hits = client.get("/search", params={"q": "sofa"}, headers=headers).json()["hits"]
        assert {h["id"] for h in hits} >= {"SOFA-1", "SOFA-2"}


@pytest.mark.slow
def test_a_damaged_snapshot_is_refused_at_start_up(tmp_path: Path) -> None:
    snapshot = build_snapshot(tmp_path)
    flip_a_byte(snapshot)
    server = subprocess.run(
        serve_command(snapshot, "127.0.0.1", 9), cwd=REPO, capture_output=True, timeout=120
    )

    assert server.returncode == 1
    assert b"products.jsonl is corrupt" in server.stderr


# --------------------------------------------------------------------------------------------
# Swaps under load


@pytest.mark.slow
def test_no_request_fails_while_snapshots_swap_under_load(tmp_path: Path) -> None:
    """The load benchmark's quick mode: 8 clients typing queries (suggest, search, events) for
    10 s while a delta and a full reload alternate every 1.5 s (each takes seconds on a busy
    machine, so there may be only a few)."""
    from benchmarks.load import main

    catalogue = generated_catalogue(tmp_path / "catalogue.jsonl", 2_000)
    out = tmp_path / "load.json"
    args = "--quick --swap --peers none --duration 10 --warmup 1 --swap-every 1.5"
    status = main(
        [
            *args.split(),
            *("--catalogue", str(catalogue), "--index", str(tmp_path / "cache")),
            *("--out", str(out)),
        ]
    )

    [ours] = json.loads(out.read_text())["systems"]
    assert ours["errors"] == 0, ours["error_samples"]
    swaps = ours["swaps"]
    assert len(swaps) >= 2
    assert all(s["status"] == 200 for s in swaps), swaps
    assert {s["kind"] for s in swaps} == {"delta", "reload"}
    assert all(ours["kinds"][kind]["requests"] > 0 for kind in ("search prefix", "suggest"))
    assert ours["kinds"]["events"]["requests"] > 0
    assert status == 0


def test_a_swap_serves_an_engine_whose_suggester_is_built(tmp_path: Path) -> None:
    snapshot = build_snapshot(tmp_path)
    settings = Settings(index_dir=snapshot, text_embedder="none", events_db=str(tmp_path / "e.db"))
    app = create_app(settings)
    with TestClient(app) as client:
        _, token = app.state.security.keys.create("ops", "admin")
        reload = client.post("/admin/snapshot/reload", headers={"Authorization": f"Bearer {token}"})
        assert reload.status_code == 200

        # Built before the swap (serve_engine warms it up), not by the next keystroke.
        assert app.state.engine._suggester_box, "the suggester is built before the swap"
