"""The throughput benchmark's report: the issue's floors judged from wrk's figures."""

from __future__ import annotations

from pathlib import Path

from benchmarks.throughput import Run, floors, format_table, our_path, typesense_path


def _run(system: str, load: str, requests: int, p50_ms: float, p99_ms: float) -> Run:
    stats = {
        "requests": requests,
        "duration_us": 10_000_000,
        "p50_us": int(p50_ms * 1000),
        "p90_us": int(p99_ms * 900),
        "p99_us": int(p99_ms * 1000),
        "max_us": int(p99_ms * 1200),
        "connect_errors": 0,
        "read_errors": 0,
        "write_errors": 0,
        "status_errors": 2,
        "timeouts": 1,
        "wrapped": 0,
    }
    return Run(system, load, 2, 32, stats, {"rss_mib": 100.0})


def test_floors_compare_with_typesense_in_the_same_run() -> None:
    runs = [
        _run("default", "concurrent", 6_000, 40, 150),
        _run("default", "one client", 2_000, 4.5, 16),
        _run("lexical", "concurrent", 9_000, 20, 90),
        _run("typesense 0.24.1", "concurrent", 10_000, 20, 100),
        _run("engine-lexical", "concurrent", 6_300, 30, 100),
    ]
    lines = floors(runs)
    assert lines[0] == "default req/s 0.60 x Typesense (floor >= 0.5): ok"
    assert lines[1] == "default p99 1.50 x Typesense (floor <= 2): ok"
    assert lines[2] == "lexical req/s 0.90 x Typesense (floor >= 1): MISSED"
    assert lines[3].endswith("MISSED")  # p50 holds, p99 16 ms does not
    assert lines[4] == (
        "engine-lexical (the engine alone, no service around it) req/s 0.63 x Typesense"
    )
    assert runs[0].errors == 3
    assert runs[0].requests_per_s == 600.0
    table = format_table(runs)
    assert "default" in table and "600.0" in table


def test_paths_are_url_encoded() -> None:
    assert our_path("1/2 in. pvc & tee") == "/search?q=1%2F2+in.+pvc+%26+tee&k=10"
    assert typesense_path("products", "a b").startswith(
        "/collections/products/documents/search?q=a+b"
    )


def test_the_bare_engine_app_answers_what_the_engine_ranks(tmp_path: Path) -> None:
    """The ceiling probe serves the engine's own page (ids, titles, scores, total), answers
    422 to a bad ``k`` and 404 elsewhere."""
    import orjson
    from starlette.testclient import TestClient

    from benchmarks.bare_engine import bare_app
    from indexer.build import BuildConfig, build_snapshot
    from search.engine import SearchEngine
    from search.types import Product, SearchRequest

    titles = ["Red oak chair", "White toilet seat", "Oak dining table", "Navy shirt", "Chair pad"]
    build_snapshot(
        [Product(id=str(i), title=t) for i, t in enumerate(titles)],
        tmp_path / "snap",
        config=BuildConfig(embedder="none"),
    )
    engine = SearchEngine.open(tmp_path / "snap")
    client = TestClient(bare_app(engine))

    def get(path: str, query: dict[str, str]) -> tuple[int, bytes]:
        response = client.get(path, params=query)
        return response.status_code, response.content

    status, body = get("/search", {"q": "chiar", "k": "3"})
    answer = orjson.loads(body)
    expected = engine.search(SearchRequest(text="chiar", k=3))
    assert status == 200
    assert answer["total"] == expected.total
    assert [(h["id"], h["title"], h["score"]) for h in answer["hits"]] == [
        (h.product.id, h.product.title, h.score) for h in expected.hits
    ]
    assert {h["title"] for h in answer["hits"]} >= {"Red oak chair", "Chair pad"}
    assert get("/search", {"q": "chair", "k": "x"})[0] == 422
    assert get("/search", {"q": "chair", "k": "0"})[0] == 422
    assert get("/ready", {})[0] == 200
    assert get("/admin", {})[0] == 404
