"""Request limits (:mod:`api.limits`): body size, query-string length, search time limit."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from api.app import create_app
from api.limits import install_limits
from api.settings import Settings
from tests.api import build_snapshot

LIMIT = 1000


@pytest.fixture(scope="module")
def snapshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_snapshot(tmp_path_factory.mktemp("limits-api"))


def events_body(padding: int) -> dict[str, object]:
    return {"events": [{"type": "view", "session_id": "s" * padding, "product_id": "SOFA-1"}]}


@pytest.fixture(scope="module")
def client(snapshot_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The real application with a 1,000-byte body limit and a generous time limit."""
    events = tmp_path_factory.mktemp("limits-events") / "events.sqlite3"
    app = create_app(Settings(index_dir=snapshot_dir, text_embedder="none", events_db=str(events)))
    install_limits(app, max_body_bytes=LIMIT, timeout_s=30, max_query_bytes=2000)
    with TestClient(app) as c:
        yield c


class TestBodySize:
    """413 with the limit named, from Content-Length or while the body streams in."""

    def test_small_body_passes(self, client: TestClient) -> None:
        response = client.post("/events", json=events_body(10))
        assert response.status_code == 200, response.text
        assert response.json()["accepted"] == 1

    def test_declared_too_large(self, client: TestClient) -> None:
        response = client.post("/events", json=events_body(5000))
        assert response.status_code == 413
        assert response.json() == {"detail": "request body too large: the limit is 1,000 bytes"}

    def test_streamed_too_large(self, client: TestClient) -> None:
        def chunks() -> Iterator[bytes]:
            yield b'{"events": [{"type": "view", "session_id": "'
            for _ in range(20):
                yield b"s" * 100
            yield b'", "product_id": "SOFA-1"}]}'

        # A generator body goes out chunked, without Content-Length.
        response = client.post(
            "/events", content=chunks(), headers={"content-type": "application/json"}
        )
        assert response.status_code == 413
        assert "1,000 bytes" in response.json()["detail"]

    def test_streamed_small_body_passes(self, client: TestClient) -> None:
        def chunks() -> Iterator[bytes]:
            yield b'{"events": [{"type": "view", '
            yield b'"session_id": "s1", "product_id": "SOFA-1"}]}'

        response = client.post(
            "/events", content=chunks(), headers={"content-type": "application/json"}
        )
        assert response.status_code == 200, response.text

    def test_body_exactly_at_the_limit_passes(self) -> None:
        app = FastAPI()

        @app.post("/echo")
        async def echo(request: Request) -> dict[str, int]:
            return {"size": len(await request.body())}

        install_limits(app, max_body_bytes=LIMIT, timeout_s=5)
        with TestClient(app) as c:
            assert c.post("/echo", content=b"x" * LIMIT).json() == {"size": LIMIT}
            assert c.post("/echo", content=b"x" * (LIMIT + 1)).status_code == 413

    def test_raw_stream_reader_gets_413(self) -> None:
        """A handler reading ``request.stream()`` itself, outside FastAPI's body parsing."""
        app = FastAPI()

        @app.post("/count")
        async def count(request: Request) -> dict[str, int]:
            total = 0
            async for chunk in request.stream():
                total += len(chunk)
            return {"size": total}

        install_limits(app, max_body_bytes=LIMIT, timeout_s=5)
        with TestClient(app) as c:
            response = c.post("/count", content=iter([b"x" * 600, b"x" * 600]))
            assert response.status_code == 413
            assert response.json()["detail"].endswith("1,000 bytes")

    def test_long_query_string_gets_414(self, client: TestClient) -> None:
        response = client.get("/search", params={"q": "sofa " * 500})
        assert response.status_code == 414
        assert "2,000 bytes" in response.json()["detail"]
        assert client.get("/search", params={"q": "sofa " * 100}).status_code == 200

    @pytest.mark.parametrize(
        ("body", "timeout", "message"),
        [(0, 1.0, "must be >= 1"), (100, 0, "timeout_s must be > 0"), (100, -1, "> 0")],
    )
    def test_bad_limits(self, body: int, timeout: float, message: str) -> None:
        with pytest.raises(ValueError, match=message):
            install_limits(FastAPI(), max_body_bytes=body, timeout_s=timeout)


class TestTimeLimit:
    """A search that has not answered within the time limit gets 503 quickly."""

    def test_real_search_over_the_limit(self, snapshot_dir: Path) -> None:
        app = create_app(Settings(index_dir=snapshot_dir, text_embedder="none", events_db="none"))
        # The search runs in the thread pool; a microsecond is always over.
        install_limits(app, max_body_bytes=LIMIT, timeout_s=1e-6)
        with TestClient(app) as c:
            response = c.get("/search", params={"q": "oak chair"})
            assert response.status_code == 503
            assert "1e-06 s limit" in response.json()["detail"]
            assert response.headers["retry-after"] == "1"
            # Only the search endpoints are limited.
            assert c.get("/health").status_code == 200
            assert c.get("/products/SOFA-1").status_code == 200

    def test_answer_comes_at_the_limit_not_after_the_work(self) -> None:
        app = FastAPI()

        @app.get("/search")
        def slow() -> dict[str, str]:
            time.sleep(1.5)
            return {"late": "yes"}

        @app.get("/suggest")
        def fast() -> dict[str, str]:
            return {"fast": "yes"}

        install_limits(app, max_body_bytes=LIMIT, timeout_s=0.2)
        with TestClient(app) as c:
            started = time.perf_counter()
            response = c.get("/search")
            elapsed = time.perf_counter() - started
            assert response.status_code == 503
            assert elapsed < 1.0
            assert c.get("/suggest").json() == {"fast": "yes"}

    def test_fast_search_is_untouched(self, client: TestClient) -> None:
        response = client.get("/search", params={"q": "oak"})
        assert response.status_code == 200
        assert response.json()["total"] >= 2
