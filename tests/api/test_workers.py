"""``productsearch serve --workers 2``: worker processes forked from the one that opened the
snapshot, each following catalogue changes another worker made.

A real server process (gunicorn with uvicorn workers) on loopback:
* two worker processes answer, both children of the server process;
* a product upserted through one worker is found on fresh connections (which land on either
  worker) within the follower's poll, and the log says a worker followed the folder;
* SIGTERM stops the server and its workers.
Plus the rate limiter's share: N workers each allow 1/N of a key's rate and burst.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from api.security import KeyStore, RateLimiter
from tests.api import build_snapshot
from tests.events.test_redis_store import free_port

REPO = Path(__file__).resolve().parents[2]


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces, so split after its closing paren.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


class Server:
    def __init__(self, folder: Path) -> None:
        self.snapshot = build_snapshot(folder)
        keys_db = folder / "keys.sqlite3"
        keys = KeyStore(keys_db)
        _, self.token = keys.create("ops", "admin", rate_per_minute=1_000_000, burst=100_000)
        keys.close()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = folder / "server.log"
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "HF_HUB_OFFLINE": "1",
            "PRODUCTSEARCH_TEXT_EMBEDDER": "none",
            "PRODUCTSEARCH_EVENTS_DB": str(folder / "events.sqlite3"),
            "PRODUCTSEARCH_KEYS_DB": str(keys_db),
            "PRODUCTSEARCH_MERCH_DB": str(folder / "merch.sqlite3"),
            "PRODUCTSEARCH_SPEECH_RECOGNIZER": "none",
            "PRODUCTSEARCH_LOG_FORMAT": "text",
            "PRODUCTSEARCH_SNAPSHOT_POLL_S": "0.2",
        }
        env.pop("PRODUCTSEARCH_CONFIG", None)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    "from api.cli import app; app()",
                    "serve",
                    "--index",
                    str(self.snapshot),
                    "--port",
                    str(self.port),
                    "--workers",
                    "2",
                    "--log-level",
                    "info",
                ],
                cwd=folder,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{self.url}/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"server did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.1)

    def ids(self, query: str) -> list[str]:
        # A new connection per search: the kernel hands each to either worker.
        response = httpx.get(
            f"{self.url}/search",
            params={"q": query, "as_you_type": "false"},
            headers={"X-API-Key": self.token},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        return [h["id"] for h in response.json()["hits"]]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = Server(tmp_path_factory.mktemp("workers"))
    try:
        yield s
    finally:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait(timeout=30)


@pytest.mark.slow
def test_two_workers_answer(server: Server) -> None:
    deadline = time.monotonic() + 60
    while len(_children(server.proc.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(_children(server.proc.pid)) == 2
    assert server.ids("sofa")


@pytest.mark.slow
def test_a_change_through_one_worker_reaches_the_other(server: Server) -> None:
    response = httpx.post(
        f"{server.url}/admin/catalogue/changes",
        json={"upserts": [{"id": "zz-1", "title": "Quokka velvet armchair"}]},
        headers={"X-API-Key": server.token},
        timeout=120,
    )
    assert response.status_code == 200, response.text
    # Every worker must find it: 30 searches in a row on fresh connections.
    deadline = time.monotonic() + 60
    streak = 0
    while streak < 30:
        assert time.monotonic() < deadline, (
            f"not on every worker:\n{server.log.read_text()[-3000:]}"
        )
        streak = streak + 1 if server.ids("quokka")[:1] == ["zz-1"] else 0
        if streak == 0:
            time.sleep(0.1)
    assert "following the folder: serving snapshot" in server.log.read_text()


def _search_count(server: Server) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{server.url}/metrics", headers={"X-API-Key": server.token}).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (
                sample.name == "productsearch_http_request_duration_seconds_count"
                and sample.labels.get("route") == "/search"
                and sample.labels.get("status") == "200"
            ):
                return sample.value
    return 0.0


@pytest.mark.slow
def test_metrics_add_up_every_workers_requests(server: Server) -> None:
    """Whichever worker answers the scrape, it counts the searches both workers served."""
    before = _search_count(server)
    for _ in range(20):
        server.ids("sofa")  # a new connection each: both workers serve some
    assert [_search_count(server) for _ in range(6)] == [before + 20] * 6


@pytest.mark.slow
def test_sigterm_stops_the_server_and_its_workers(server: Server) -> None:
    workers = _children(server.proc.pid)
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=60) == 0
    for pid in workers:
        assert (
            not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
        )


def test_rate_limits_are_shared_between_workers() -> None:
    now = [0.0]
    limiter = RateLimiter(lambda: now[0], share=2)
    # burst 10 over 2 workers: 5 here; rate 60/min over 2 workers: one token per 2 s here.
    assert [limiter.acquire("k", 60, 10) for _ in range(5)] == [None] * 5
    wait = limiter.acquire("k", 60, 10)
    assert wait == pytest.approx(2.0)
    now[0] += 2.0
    assert limiter.acquire("k", 60, 10) is None
    # A burst smaller than the share still lets one request through.
    assert RateLimiter(lambda: 0.0, share=4).acquire("one", 60, 1) is None
    with pytest.raises(ValueError, match="share"):
        RateLimiter(share=0)
