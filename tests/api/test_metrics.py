"""Prometheus metrics (``GET /metrics``) and JSON logs with request ids (:mod:`api.metrics`)."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from api.metrics import (
    UNMATCHED_ROUTE,
    JsonFormatter,
    configure_json_logging,
    install_metrics,
    metrics_of,
)
from api.settings import Settings
from tests.api import PRODUCTS, build_snapshot

handler_logger = logging.getLogger("tests.api.handler")


def make_app(snapshot_dir: Path) -> FastAPI:
    """The real application with metrics, plus two routes a test needs: one that logs from the
    thread pool and one that fails."""
    app = create_app(Settings(index_dir=snapshot_dir, text_embedder="none", events_db="none"))
    install_metrics(app)

    def log_something() -> dict[str, str]:
        handler_logger.warning("inside the handler", extra={"answer": 42})
        return {"ok": "yes"}

    def boom() -> None:
        raise RuntimeError("boom")

    app.add_api_route("/test/log", log_something, methods=["GET"])
    app.add_api_route("/test/boom", boom, methods=["GET"])
    return app


@pytest.fixture(scope="module")
def snapshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_snapshot(tmp_path_factory.mktemp("metrics-api"))


@pytest.fixture()
def app(snapshot_dir: Path) -> FastAPI:
    return make_app(snapshot_dir)


@pytest.fixture()
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def samples(client: TestClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Scrape ``/metrics``: (sample name, labels) -> value."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def labels(**values: str) -> frozenset[tuple[str, str]]:
    return frozenset(values.items())


class TestMetrics:
    """Request latency per route template and status, in-flight requests, snapshot, hooks."""

    def test_requests_by_route_template(self, client: TestClient) -> None:
        assert client.get("/products/SOFA-1").status_code == 200
        assert client.get("/products/CHAIR-1").status_code == 200
        assert client.get("/products/NO-SUCH").status_code == 404
        assert client.get("/search", params={"q": "sofa"}).status_code == 200
        assert client.get("/no/such/path/12345").status_code == 404
        scraped = samples(client)
        name = "productsearch_http_request_duration_seconds_count"
        route = "/products/{product_id}"
        assert scraped[(name, labels(method="GET", route=route, status="200"))] == 2
        assert scraped[(name, labels(method="GET", route=route, status="404"))] == 1
        assert scraped[(name, labels(method="GET", route="/search", status="200"))] == 1
        assert scraped[(name, labels(method="GET", route=UNMATCHED_ROUTE, status="404"))] == 1
        bucket = "productsearch_http_request_duration_seconds_bucket"
        assert (
            scraped[(bucket, labels(method="GET", route="/search", status="200", le="+Inf"))] == 1
        )
        text = client.get("/metrics").text
        assert "SOFA-1" not in text and "12345" not in text  # raw paths never become labels

    def test_server_error_is_counted_as_500(self, client: TestClient) -> None:
        assert client.get("/test/boom").status_code == 500
        scraped = samples(client)
        key = labels(method="GET", route="/test/boom", status="500")
        assert scraped[("productsearch_http_request_duration_seconds_count", key)] == 1

    def test_in_flight_counts_the_scrape_itself(self, client: TestClient) -> None:
        assert samples(client)[("productsearch_http_requests_in_flight", labels())] == 1

    def test_snapshot(self, client: TestClient) -> None:
        health = client.get("/health").json()
        scraped = samples(client)
        info = labels(
            snapshot_id=health["snapshot_id"],
            format_version=str(health["format_version"]),
            created_at=health["created_at"],
        )
        assert scraped[("productsearch_snapshot_info", info)] == 1
        assert scraped[("productsearch_snapshot_products", labels())] == len(PRODUCTS)
        assert scraped[("productsearch_snapshot_created_timestamp_seconds", labels())] > 1.7e9

    def test_event_lag_and_cache_hooks(self, app: FastAPI, client: TestClient) -> None:
        metrics = metrics_of(app)
        metrics.set_event_lag(3.5)
        metrics.cache_hit("query")
        metrics.record_cache("query", hit=True)
        metrics.cache_miss("query")
        scraped = samples(client)
        assert scraped[("productsearch_event_lag_seconds", labels())] == 3.5
        name = "productsearch_cache_requests_total"
        assert scraped[(name, labels(cache="query", result="hit"))] == 2
        assert scraped[(name, labels(cache="query", result="miss"))] == 1
        metrics.set_event_lag(-1)  # clock skew never shows as negative lag
        assert samples(client)[("productsearch_event_lag_seconds", labels())] == 0

    def test_query_vector_cache_counts_follow_the_serving_embedder(
        self, app: FastAPI, client: TestClient
    ) -> None:
        from models.text import CachedQueryEmbedder
        from tests.models.test_text import _Counting

        engine = app.state.engine
        cached = CachedQueryEmbedder(_Counting())
        engine.embedder = cached
        try:
            cached.embed_queries(["sofa", "sofa", "lamp"])  # one call: all three missed
            cached.embed_queries(["sofa", "lamp"])
            name = "productsearch_cache_requests_total"
            scraped = samples(client)
            assert scraped[(name, labels(cache="query_vector", result="hit"))] == 2
            assert scraped[(name, labels(cache="query_vector", result="miss"))] == 3
            cached.embed_queries(["sofa"])
            assert samples(client)[(name, labels(cache="query_vector", result="hit"))] == 3
            # A reloaded model counts from zero: the counter keeps rising, never falls.
            fresh = CachedQueryEmbedder(_Counting())
            engine.embedder = fresh
            fresh.embed_queries(["chair"])
            scraped = samples(client)
            assert scraped[(name, labels(cache="query_vector", result="hit"))] == 3
            assert scraped[(name, labels(cache="query_vector", result="miss"))] == 4
        finally:
            engine.embedder = None

    def test_install_twice_is_one_install(self, app: FastAPI) -> None:
        assert install_metrics(app) is metrics_of(app)
        with TestClient(app) as c:
            c.get("/health")
            key = labels(method="GET", route="/health", status="200")
            # Counted once: a second middleware would count every request twice.
            assert samples(c)[("productsearch_http_request_duration_seconds_count", key)] == 1

    def test_each_app_has_its_own_registry(self, snapshot_dir: Path) -> None:
        with (
            TestClient(make_app(snapshot_dir)) as first,
            TestClient(make_app(snapshot_dir)) as second,
        ):
            first.get("/health")
            key = labels(method="GET", route="/health", status="200")
            name = "productsearch_http_request_duration_seconds_count"
            assert samples(first)[(name, key)] == 1
            assert (name, key) not in samples(second)

    def test_request_refused_before_routing_is_named_by_its_path(self, snapshot_dir: Path) -> None:
        # create_app installs the limits inside the metrics, so the metrics see the 413.
        app = create_app(
            Settings(
                index_dir=snapshot_dir, text_embedder="none", events_db="none", max_body_bytes=100
            )
        )
        with TestClient(app) as c:
            refused = c.post("/events", content=b"x" * 500, headers={"x-request-id": "big-1"})
            assert refused.status_code == 413
            assert c.get("/no/such/path", params={"q": "x" * 10}).status_code == 404
            scraped = samples(c)
        name = "productsearch_http_request_duration_seconds_count"
        assert scraped[(name, labels(method="POST", route="/events", status="413"))] == 1
        assert scraped[(name, labels(method="GET", route=UNMATCHED_ROUTE, status="404"))] == 1

    def test_metrics_is_not_in_the_public_schema(self, client: TestClient) -> None:
        assert "/metrics" not in client.get("/openapi.json").json()["paths"]


@pytest.fixture()
def json_log() -> Iterator[io.StringIO]:
    """Route logging to a JSON stream for one test, then put the previous set-up back."""
    loggers = [logging.getLogger(n) for n in ("", "uvicorn", "uvicorn.error", "uvicorn.access")]
    saved = [(list(lg.handlers), lg.level, lg.propagate) for lg in loggers]
    stream = io.StringIO()
    configure_json_logging("info", stream=stream)
    try:
        yield stream
    finally:
        for logger, (handlers, level, propagate) in zip(loggers, saved, strict=True):
            logger.handlers[:] = handlers
            logger.setLevel(level)
            logger.propagate = propagate


def records(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


class TestJsonLogs:
    """One JSON object per log line, carrying the id of the request being handled."""

    def test_access_log_carries_the_callers_request_id(
        self, client: TestClient, json_log: io.StringIO
    ) -> None:
        response = client.get("/products/SOFA-1", headers={"X-Request-ID": "req-abc-123"})
        assert response.headers["x-request-id"] == "req-abc-123"
        (access,) = [r for r in records(json_log) if r["logger"] == "productsearch.access"]
        assert access["request_id"] == "req-abc-123"
        assert access["route"] == "/products/{product_id}"
        assert access["path"] == "/products/SOFA-1"
        assert access["status"] == 200
        assert access["method"] == "GET"
        assert access["duration_ms"] > 0
        assert access["level"] == "info"
        assert access["ts"].endswith("+00:00")

    def test_handler_logs_carry_the_generated_request_id(
        self, client: TestClient, json_log: io.StringIO
    ) -> None:
        response = client.get("/test/log")
        request_id = response.headers["x-request-id"]
        (line,) = [r for r in records(json_log) if r["logger"] == handler_logger.name]
        assert line["message"] == "inside the handler"
        assert line["request_id"] == request_id  # logged from the thread pool
        assert line["answer"] == 42
        assert line["level"] == "warning"

    def test_requests_get_distinct_ids(self, client: TestClient, json_log: io.StringIO) -> None:
        client.get("/health")
        client.get("/health")
        ids = [r["request_id"] for r in records(json_log) if r["logger"] == "productsearch.access"]
        assert len(ids) == len(set(ids)) == 2

    def test_outside_a_request_there_is_no_id(self, json_log: io.StringIO) -> None:
        logging.getLogger("tests.api.outside").error("no request here")
        (line,) = records(json_log)
        assert "request_id" not in line
        assert line["message"] == "no request here"

    def test_exception_is_logged_with_traceback(self) -> None:
        try:
            raise ValueError("bad value")
        except ValueError:
            record = logging.getLogger("x").makeRecord(
                "x", logging.ERROR, __file__, 1, "failed: %s", ("it",), exc_info=sys.exc_info()
            )
        line = json.loads(JsonFormatter().format(record))
        assert line["message"] == "failed: it"
        assert "ValueError: bad value" in line["exception"]

    def test_unknown_level_lists_valid_ones(self) -> None:
        with pytest.raises(ValueError, match="valid levels: critical, error, warning, info"):
            configure_json_logging("loud")
