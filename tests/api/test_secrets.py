"""Secrets and defaults (issue 15 §6): API keys never reach the logs in clear, one setting names
the key database, open mode is explicit, the storefront keeps its key when the first admin key
is created, a missing server secret is loud, the databases are private files, and a shared
search key is rate-limited per client too."""

from __future__ import annotations

import io
import logging
import os
import socket
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, WebSocket
from fastapi.testclient import TestClient
from typer.testing import CliRunner
from websockets.sync.client import connect

from api.app import create_app
from api.cli import app as cli
from api.metrics import configure_json_logging
from api.security import (
    REDACTED,
    KeyStore,
    RateLimiter,
    RedactSecretsFilter,
    Security,
    install_log_redaction,
    redact,
    uvicorn_log_config,
)
from api.settings import Settings
from events.store import SQLiteEventStore
from merchandising.store import ConfigStore
from tests.api import build_snapshot

runner = CliRunner()
TOKEN = "ps_0123456789ab_" + "S3cr3t-t0ken_" * 3


@pytest.fixture(scope="module")
def snapshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_snapshot(tmp_path_factory.mktemp("secrets"))


# --------------------------------------------------------------------------------------------
# Logs


class Collect(logging.Handler):
    """Keeps the formatted lines of the records it receives."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _socket_app() -> FastAPI:
    app = FastAPI()

    @app.websocket("/search/voice/stream")
    async def stream(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("hello")
        await websocket.close()

    @app.get("/search")
    def search() -> dict[str, Any]:
        return {"hits": []}

    return app


@contextmanager
def _serve(config: uvicorn.Config) -> Iterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def _talk(port: int) -> None:
    with connect(f"ws://127.0.0.1:{port}/search/voice/stream?api_key={TOKEN}&k=5") as ws:
        assert ws.recv(timeout=5) == "hello"
    import httpx

    httpx.get(f"http://127.0.0.1:{port}/search", params={"api_key": TOKEN, "q": "sofa"})
    time.sleep(0.2)  # the access line is written after the response


@pytest.fixture
def restore_logging() -> Iterator[None]:
    names = ("", "uvicorn", "uvicorn.error", "uvicorn.access")
    loggers = [logging.getLogger(n) for n in names]
    saved = [
        (list(lg.handlers), list(lg.filters), lg.level, lg.propagate, lg.disabled) for lg in loggers
    ]
    yield
    for logger, (handlers, filters, level, propagate, disabled) in zip(loggers, saved, strict=True):
        logger.handlers[:] = handlers
        logger.filters[:] = filters
        logger.setLevel(level)
        logger.propagate = propagate
        logger.disabled = disabled


class TestLogs:
    def test_redact_removes_query_tokens_and_bearer_tokens(self) -> None:
        line = f'1.2.3.4 - "WebSocket /search/voice/stream?k=5&api_key={TOKEN}&lang=en" [accepted]'
        assert TOKEN not in redact(line)
        assert f"api_key={REDACTED}&lang=en" in redact(line)
        assert redact(f"?api_key={TOKEN}") == f"?api_key={REDACTED}"
        assert TOKEN not in redact(f"Authorization: Bearer {TOKEN}")
        assert redact("GET /search?q=sofa") == "GET /search?q=sofa"

    def test_text_logs_of_a_real_server_hide_the_websocket_key(self, restore_logging: None) -> None:
        """What ``productsearch serve`` runs with log_format=text (uvicorn's own format)."""
        config = uvicorn.Config(
            _socket_app(), log_config=uvicorn_log_config(text=True), log_level="info"
        )
        collect = Collect()
        for name in ("uvicorn.error", "uvicorn.access"):
            logging.getLogger(name).addHandler(collect)
        with _serve(config) as port:
            # The configured handlers carry the filter too (what reaches standard error).
            for name in ("uvicorn", "uvicorn.access"):
                for handler in logging.getLogger(name).handlers:
                    if handler is collect:
                        continue
                    assert any(isinstance(f, RedactSecretsFilter) for f in handler.filters)
            _talk(port)
        text = "\n".join(collect.lines)
        assert "WebSocket /search/voice/stream?" in text  # the line is there...
        assert f"api_key={REDACTED}" in text
        assert TOKEN not in text  # ...without the key

    def test_json_logs_of_a_real_server_hide_the_websocket_key(self, restore_logging: None) -> None:
        """What ``productsearch serve`` runs with log_format=json."""
        stream = io.StringIO()
        install_log_redaction(configure_json_logging("info", stream=stream))
        config = uvicorn.Config(_socket_app(), log_config=uvicorn_log_config(text=False))
        with _serve(config) as port:
            _talk(port)
        text = stream.getvalue()
        assert "WebSocket /search/voice/stream?" in text
        assert TOKEN not in text


# --------------------------------------------------------------------------------------------
# The key database: one setting, absolute, named in every message


@pytest.fixture
def no_keys_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The settings a user has before configuring anything (the session sets test values)."""
    for name in ("KEYS_DB", "OPEN_MODE", "KEYS_SECRET", "CONFIG", "STOREFRONT_KEY"):
        monkeypatch.delenv(f"PRODUCTSEARCH_{name}", raising=False)


def _token(output: str) -> str:
    return next(line for line in output.splitlines() if line.startswith("ps_"))


class TestKeysDatabase:
    def test_the_default_is_absolute_and_named_by_keys_create(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_keys_env: None
    ) -> None:
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        monkeypatch.chdir(elsewhere)
        result = runner.invoke(cli, ["keys", "create", "--name", "shop", "--scope", "admin"])
        assert result.exit_code == 0, result.output
        # The user sees at once which file the key went into.
        assert f"in {elsewhere / 'var' / 'keys.sqlite3'}" in result.output
        assert Settings().keys_db == elsewhere / "var" / "keys.sqlite3"
        assert Settings().keys_db.is_absolute()  # type: ignore[union-attr]

    def test_cli_and_service_read_the_same_setting(
        self,
        tmp_path: Path,
        snapshot_dir: Path,
        monkeypatch: pytest.MonkeyPatch,
        no_keys_env: None,
    ) -> None:
        shop = tmp_path / "shop"
        shop.mkdir()
        monkeypatch.chdir(shop)
        monkeypatch.setenv("PRODUCTSEARCH_KEYS_DB", "state/keys.sqlite3")  # relative
        result = runner.invoke(cli, ["keys", "create", "--name", "front", "--scope", "search"])
        assert result.exit_code == 0, result.output
        db = shop / "state" / "keys.sqlite3"
        assert f"in {db}" in result.output
        token = _token(result.output)
        listing = runner.invoke(cli, ["keys", "list"])
        assert listing.exit_code == 0 and f"1 key(s) in {db}" in listing.output
        # The service started in another folder with the same (now absolute) setting.
        settings = Settings(index_dir=snapshot_dir, text_embedder="none", events_db="none")
        monkeypatch.chdir(tmp_path)
        with TestClient(create_app(settings)) as client:
            ok = client.get("/search", params={"q": "sofa"}, headers={"X-API-Key": token})
            assert ok.status_code == 200
        key_id = token.split("_")[1]
        monkeypatch.chdir(shop)
        revoked = runner.invoke(cli, ["keys", "revoke", key_id])
        assert revoked.exit_code == 0 and f"in {db}" in revoked.output

    def test_service_logs_the_database_it_uses(
        self, tmp_path: Path, snapshot_dir: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        db = tmp_path / "k.sqlite3"
        settings = Settings(
            index_dir=snapshot_dir, text_embedder="none", events_db="none", keys_db=db
        )
        with caplog.at_level(logging.INFO), TestClient(create_app(settings)):
            pass
        assert f"API keys from {db}: 0 admin, 0 search; open mode" in caplog.text


# --------------------------------------------------------------------------------------------
# Open mode and the storefront


def _service(snapshot_dir: Path, tmp_path: Path, **settings: Any) -> FastAPI:
    values: dict[str, Any] = {
        "index_dir": snapshot_dir,
        "text_embedder": "none",
        "events_db": "none",
        "keys_db": tmp_path / "keys.sqlite3",
        **settings,
    }
    return create_app(Settings(**values))


class TestOpenMode:
    def test_off_by_default(self, no_keys_env: None) -> None:
        assert Settings().open_mode is False

    def test_without_keys_and_open_mode_off_search_is_401_saying_what_to_do(
        self, snapshot_dir: Path, tmp_path: Path
    ) -> None:
        with TestClient(_service(snapshot_dir, tmp_path, open_mode=False)) as client:
            response = client.get("/search", params={"q": "sofa"})
            assert response.status_code == 401
            detail = response.json()["detail"]
            assert "productsearch keys create" in detail
            assert "PRODUCTSEARCH_OPEN_MODE=true" in detail
            assert client.get("/health").status_code == 200  # public routes stay public

    def test_the_first_admin_key_does_not_close_the_storefront(
        self, snapshot_dir: Path, tmp_path: Path
    ) -> None:
        app = _service(snapshot_dir, tmp_path, open_mode=True)
        keys_db = tmp_path / "keys.sqlite3"
        with TestClient(app) as client:
            assert client.get("/search", params={"q": "sofa"}).status_code == 200
            runner.invoke(
                cli,
                ["keys", "create", "--name", "ops", "--scope", "admin", "--keys-db", str(keys_db)],
            )
            assert app.state.security.keys.count_active("admin") == 1
            assert client.get("/search", params={"q": "sofa"}).status_code == 200
            # Shopper data stays closed in open mode.
            assert client.get("/analytics/queries").status_code == 401

    def test_with_open_mode_off_the_storefront_gets_its_key_from_the_settings(
        self, snapshot_dir: Path, tmp_path: Path
    ) -> None:
        keys = KeyStore(tmp_path / "keys.sqlite3")
        keys.create("ops", "admin")
        _, storefront = keys.create("storefront", "search")
        keys.close()
        app = _service(snapshot_dir, tmp_path, open_mode=False, storefront_key=storefront)
        with TestClient(app) as client:
            page = client.get("/storefront").text
            assert f'content="{storefront}"' in page
            headers = {"Authorization": f"Bearer {storefront}"}
            assert client.get("/search", params={"q": "sofa"}, headers=headers).status_code == 200


# --------------------------------------------------------------------------------------------
# Server secret


class TestSecretWarning:
    def test_startup_warns_without_a_secret(
        self, snapshot_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        with caplog.at_level(logging.WARNING), TestClient(_service(snapshot_dir, tmp_path)):
            pass
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert any("PRODUCTSEARCH_KEYS_SECRET is not set" in r.getMessage() for r in warnings)

    def test_no_warning_with_a_secret(
        self, snapshot_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        app = _service(snapshot_dir, tmp_path, keys_secret="x" * 32)
        with caplog.at_level(logging.WARNING), TestClient(app):
            pass
        assert "PRODUCTSEARCH_KEYS_SECRET is not set" not in caplog.text

    def test_keys_commands_warn_without_a_secret(
        self, tmp_path: Path, no_keys_env: None, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        db = tmp_path / "k.sqlite3"
        result = runner.invoke(cli, ["keys", "create", "--name", "a", "--keys-db", str(db)])
        assert result.exit_code == 0
        assert "PRODUCTSEARCH_KEYS_SECRET is not set" in result.output
        monkeypatch.setenv("PRODUCTSEARCH_KEYS_SECRET", "y" * 32)
        quiet = runner.invoke(cli, ["keys", "list", "--keys-db", str(db)])
        assert "PRODUCTSEARCH_KEYS_SECRET is not set" not in quiet.output


# --------------------------------------------------------------------------------------------
# Private database files


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


class TestFileModes:
    @pytest.fixture(autouse=True)
    def loose_umask(self) -> Iterator[None]:
        old = os.umask(0o022)  # the usual umask: files would be world-readable
        yield
        os.umask(old)

    def test_new_databases_are_0600(self, tmp_path: Path) -> None:
        keys = KeyStore(tmp_path / "keys" / "keys.sqlite3")
        keys.create("ops", "admin")
        events = SQLiteEventStore(tmp_path / "events.sqlite3")
        merch = ConfigStore(tmp_path / "merch.sqlite3")
        try:
            for name in ("keys/keys.sqlite3", "events.sqlite3", "merch.sqlite3"):
                assert _mode(tmp_path / name) == 0o600, name
            for side in tmp_path.rglob("*.sqlite3-*"):  # WAL and shared-memory files
                assert _mode(side) & 0o077 == 0, side
        finally:
            keys.close()
            events.close()
            merch.close()

    def test_an_existing_world_readable_database_is_narrowed(self, tmp_path: Path) -> None:
        db = tmp_path / "keys.sqlite3"
        KeyStore(db).close()
        os.chmod(db, 0o644)
        KeyStore(db).close()
        assert _mode(db) == 0o600


# --------------------------------------------------------------------------------------------
# Rate limits per client under a shared key


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class TestClientLimits:
    @pytest.fixture
    def app(self, snapshot_dir: Path, tmp_path: Path) -> Iterator[tuple[FastAPI, str]]:
        app = _service(
            snapshot_dir,
            tmp_path,
            open_mode=True,
            client_rate_per_minute=1,  # no refill to speak of during a test
            client_burst=3,
            trusted_proxies=["10.0.0.0/8"],
        )
        _, token = app.state.security.keys.create("storefront", "search")  # 600/min, burst 60
        yield app, token

    def calls(self, app: FastAPI, client: tuple[str, int], n: int, **headers: str) -> list[int]:
        with TestClient(app, client=client) as http:
            return [
                http.get("/search", params={"q": "sofa"}, headers=headers).status_code
                for _ in range(n)
            ]

    def test_one_client_cannot_spend_a_shared_keys_budget(self, app: tuple[FastAPI, str]) -> None:
        service, token = app
        auth = {"Authorization": f"Bearer {token}"}
        assert self.calls(service, ("203.0.113.5", 1000), 6, **auth) == [200] * 3 + [429] * 3
        # Another shopper of the same storefront is not affected.
        assert self.calls(service, ("203.0.113.6", 1000), 3, **auth) == [200] * 3

    def test_open_mode_is_limited_per_client(self, app: tuple[FastAPI, str]) -> None:
        service, _ = app
        assert self.calls(service, ("203.0.113.7", 1), 4) == [200] * 3 + [429]

    def test_forwarded_for_counts_only_from_a_trusted_proxy(self, app: tuple[FastAPI, str]) -> None:
        service, token = app
        auth = {"Authorization": f"Bearer {token}"}
        # An untrusted peer cannot pick a fresh identity per request with the header.
        with TestClient(service, client=("198.51.100.9", 1)) as http:
            spoofed = [
                http.get(
                    "/search",
                    params={"q": "sofa"},
                    headers={**auth, "X-Forwarded-For": f"1.1.1.{i}"},
                ).status_code
                for i in range(5)
            ]
        assert spoofed == [200] * 3 + [429] * 2
        # Behind the trusted proxy, shoppers are told apart by the header.
        proxy = ("10.1.2.3", 1)
        for shopper in ("192.0.2.1", "192.0.2.2"):
            got = self.calls(service, proxy, 4, **auth, **{"X-Forwarded-For": shopper})
            assert got == [200] * 3 + [429]

    def test_admin_keys_are_not_limited_per_client(self, app: tuple[FastAPI, str]) -> None:
        service, _ = app
        _, admin = service.state.security.keys.create(
            "ops", "admin", rate_per_minute=10_000, burst=1000
        )
        auth = {"Authorization": f"Bearer {admin}"}
        assert self.calls(service, ("203.0.113.8", 1), 6, **auth) == [200] * 6

    def test_buckets_of_gone_clients_are_dropped(self) -> None:
        clock = FakeClock()
        limiter = RateLimiter(clock, max_buckets=100)
        for i in range(1000):
            limiter.acquire(f"k|client-{i}", 60, 3)
            clock.now += 0.01
        assert len(limiter) <= 100  # full buckets dropped, then the least recently used
        assert limiter.acquire("k|client-999", 60, 3) is None  # state kept for the recent
        assert limiter.acquire("k|client-999", 60, 3) is None
        assert limiter.acquire("k|client-999", 60, 3) is not None  # its burst of 3 is spent

    def test_a_request_may_cost_several_tokens(self) -> None:
        clock = FakeClock()
        limiter = RateLimiter(clock)
        assert limiter.acquire("k", 60, 5, cost=3) is None
        wait = limiter.acquire("k", 60, 5, cost=3)  # two left: all or nothing
        assert wait == pytest.approx(1.0)  # one more token at 1 per second
        assert limiter.acquire("k", 60, 5, cost=2) is None
        clock.now += 10
        assert limiter.acquire("k", 60, 5, cost=50) is None  # at most the capacity

    def test_client_of_ignores_garbage(self) -> None:
        security = Security(KeyStore(":memory:"), trusted_proxies=["127.0.0.1"])
        assert security.client_of(_conn("8.8.8.8", "1.2.3.4")) == "8.8.8.8"
        assert security.client_of(_conn("127.0.0.1", "1.2.3.4, 127.0.0.1")) == "1.2.3.4"
        assert security.client_of(_conn("127.0.0.1", "")) == "127.0.0.1"
        assert security.client_of(_conn("127.0.0.1", "not an address")) == "not an address"
        # One IPv6 subscriber (a /64) is one client.
        a = security.client_of(_conn("2001:db8:1:2::1", ""))
        assert a == security.client_of(_conn("2001:db8:1:2:ffff::9", "")) == "2001:db8:1:2::/64"


def _conn(peer: str, forwarded: str) -> Any:
    from starlette.requests import Request

    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
    return Request({"type": "http", "client": (peer, 1), "headers": headers})


# --------------------------------------------------------------------------------------------
# Tests never read the working directory's databases


class TestIsolation:
    """A README-following user has keys (and events, rules) in ``./var``; the tests, and the
    services they start, must not see them (``tests/conftest.py``)."""

    @pytest.fixture
    def user_folder(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
        keys = KeyStore(tmp_path / "var" / "keys.sqlite3")
        keys.create("merchandiser", "admin")
        keys.close()
        ConfigStore(tmp_path / "var" / "merch.sqlite3").close()
        monkeypatch.chdir(tmp_path)
        return tmp_path

    def test_an_app_built_by_a_test_reads_none_of_them(
        self, user_folder: Path, snapshot_dir: Path
    ) -> None:
        app = create_app(Settings(index_dir=snapshot_dir, text_embedder="none"))
        with TestClient(app) as client:
            assert app.state.security.keys.count_active() == 0
            assert client.get("/search", params={"q": "sofa"}).status_code == 200
        assert "var" not in str(app.state.settings.events_db)

    def test_a_service_started_in_a_subprocess_reads_none_of_them(self, user_folder: Path) -> None:
        import subprocess
        import sys

        code = (
            "from api.settings import Settings; s = Settings(); "
            "print(s.keys_db, s.merch_db, s.events_db, s.open_mode)"
        )
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        ).stdout.split()
        assert out[:2] == ["None", "None"]
        assert not out[2].startswith("var") and str(user_folder) not in out[2]
        assert out[3] == "True"
