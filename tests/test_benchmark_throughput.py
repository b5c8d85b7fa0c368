"""The throughput benchmark's report: the issue's floors judged from wrk's figures."""

from __future__ import annotations

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
    ]
    lines = floors(runs)
    assert lines[0] == "default req/s 0.60 x Typesense (floor >= 0.5): ok"
    assert lines[1] == "default p99 1.50 x Typesense (floor <= 2): ok"
    assert lines[2] == "lexical req/s 0.90 x Typesense (floor >= 1): MISSED"
    assert lines[3].endswith("MISSED")  # p50 holds, p99 16 ms does not
    assert runs[0].errors == 3
    assert runs[0].requests_per_s == 600.0
    table = format_table(runs)
    assert "default" in table and "600.0" in table


def test_paths_are_url_encoded() -> None:
    assert our_path("1/2 in. pvc & tee") == "/search?q=1%2F2+in.+pvc+%26+tee&k=10"
    assert typesense_path("products", "a b").startswith(
        "/collections/products/documents/search?q=a+b"
    )
