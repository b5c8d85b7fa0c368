"""Search latency while the catalogue changes: a snapshot reload and a live delta under load.

The real service (``productsearch serve``, its own process) serves a generated catalogue
(:mod:`benchmarks.catalogue_gen`); 16 clients (threads in two load processes, so the clients
never share the server's GIL) search without pause. The driver measures the warm p99 over a
quiet window, then, in turn, publishes a fresh snapshot and ``POST /admin/snapshot/reload``,
and sends ``POST /admin/catalogue/changes`` (an upsert and a delete). Each request's send time
is recorded, so the searches sent while a reload or a change was under way (from the admin
request until one second after its answer: a new engine's first queries count too) are
compared with the warm ones. The goal: p99 during a swap within 2x the warm p99.

Usage::

    python -m benchmarks.swap_latency                    # 20,000 products, 16 clients
    python -m benchmarks.swap_latency --n 5000 --rounds 2 --quiet-s 4

Prints the figures and writes ``benchmarks/results/swap_latency.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from benchmarks.common import percentile, results_dir

#: Seconds after an admin request's answer during which searches still count as "during" it.
TAIL_S = 1.0


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """What one load process does.

    Attributes:
        base_url: The service.
        token: A search key.
        queries: Texts to search.
        threads: Clients in this process.
        stop_at: ``time.time()`` at which to stop at the latest.
        stop_file: The clients stop once this file exists.
        seed: Seeds the query choice.
    """

    base_url: str
    token: str
    queries: Sequence[str]
    threads: int
    stop_at: float
    stop_file: str
    seed: int


def run_clients(config: ClientConfig) -> list[tuple[float, float, int]]:
    """Search from ``config.threads`` threads until told to stop (a load process's entry point).

    Returns:
        ``(sent_at, latency_ms, status)`` per request (``sent_at`` from ``time.time()``,
        status 0 for a transport error).
    """
    import httpx

    samples: list[tuple[float, float, int]] = []
    lock = threading.Lock()
    stop = Path(config.stop_file)

    def client(number: int) -> None:
        rng = random.Random(f"{config.seed}:{number}")
        mine: list[tuple[float, float, int]] = []
        headers = {"Authorization": f"Bearer {config.token}"}
        with httpx.Client(base_url=config.base_url, headers=headers, timeout=60.0) as http:
            while time.time() < config.stop_at and not stop.exists():
                query = rng.choice(config.queries)
                sent = time.time()
                started = time.perf_counter()
                try:
                    status = http.get(
                        "/search", params={"q": query, "k": 10, "as_you_type": "false"}
                    ).status_code
                except httpx.HTTPError:
                    status = 0
                mine.append((sent, (time.perf_counter() - started) * 1000.0, status))
        with lock:
            samples.extend(mine)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(config.threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return samples


def window_stats(
    samples: Sequence[tuple[float, float, int]], windows: Sequence[tuple[float, float]]
) -> dict[str, Any]:
    """p50/p99/max, errors and statuses of the requests sent inside any of ``windows``."""
    inside = [s for s in samples if any(a <= s[0] < b for a, b in windows)]
    ok = [ms for _, ms, status in inside if status == 200]
    statuses: dict[str, int] = {}
    for _, _, status in inside:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    return {
        "requests": len(inside),
        "errors": len(inside) - len(ok),
        "statuses": statuses,
        "p50_ms": round(percentile(ok, 50), 1),
        "p99_ms": round(percentile(ok, 99), 1),
        "max_ms": round(max(ok), 1) if ok else float("nan"),
    }


def prepare_snapshot(n: int, cache: Path) -> tuple[Path, list[str]]:
    """A snapshot of ``n`` generated products (built once into ``cache``) and query texts."""
    import orjson

    from benchmarks.catalogue_gen import write_catalogue
    from indexer.build import BuildConfig, build_from_catalogue
    from search.errors import SnapshotError
    from search.index.snapshot import read_manifest

    catalogue = cache / f"catalogue-{n}.jsonl"
    snapshot = cache / f"snapshot-{n}"
    if not catalogue.exists():
        write_catalogue(catalogue, n)
    try:
        if read_manifest(snapshot, verify=False).counts.get("products") != n:
            raise SnapshotError("stale")
    except SnapshotError:
        _log(f"building a snapshot of {n} products in {snapshot}")
        build_from_catalogue(
            catalogue, snapshot, fmt="jsonl", config=BuildConfig(embedder="none", overwrite=True)
        )
    rng = random.Random(0)
    titles = [orjson.loads(line)["title"] for line in catalogue.read_bytes().splitlines()[:5000]]
    queries = []
    for title in rng.sample(titles, min(300, len(titles))):
        words = title.split()
        start = rng.randrange(max(1, len(words) - 2))
        queries.append(" ".join(words[start : start + rng.choice((1, 2, 3))]))
    return snapshot, queries


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Run the benchmark; returns the report."""
    import httpx

    from benchmarks.load import publish_copy, start_service

    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    snapshot, queries = prepare_snapshot(args.n, cache)
    with tempfile.TemporaryDirectory(prefix="swap-latency-") as tmp:
        work = Path(tmp)
        # Every client comes from one address: lift the per-client rate limit (it would
        # answer 429 and measure the limiter, not serving).
        service = start_service(snapshot, work, env={"PRODUCTSEARCH_CLIENT_RATE_PER_MINUTE": "0"})
        _log(f"serving {args.n} products at {service.base_url}")
        admin = {"Authorization": f"Bearer {service.admin_token}"}
        windows: dict[str, list[tuple[float, float]]] = {"warm": [], "reload": [], "delta": []}
        admin_s: dict[str, list[float]] = {"reload": [], "delta": []}
        total_s = args.quiet_s * (2 * args.rounds + 1) + 60.0 * 2 * args.rounds + 10
        stop_at = time.time() + 2.0 + total_s
        processes = 2
        configs = [
            ClientConfig(
                service.base_url,
                service.search_token,
                queries,
                args.clients // processes + (p < args.clients % processes),
                stop_at,
                str(work / "stop"),
                p,
            )
            for p in range(processes)
        ]
        try:
            with (
                ProcessPoolExecutor(processes, mp_context=get_context("spawn")) as pool,
                httpx.Client(base_url=service.base_url, headers=admin, timeout=600) as http,
            ):
                futures = [pool.submit(run_clients, c) for c in configs]
                time.sleep(2.0 + args.settle_s)  # load processes start; caches fill
                for number in range(args.rounds):
                    quiet = time.time()
                    time.sleep(args.quiet_s)
                    windows["warm"].append((quiet, time.time()))
                    publish_copy(snapshot, service.snapshot_dir)
                    began = time.time()
                    response = http.post("/admin/snapshot/reload")
                    ended = time.time()
                    assert response.status_code == 200, response.text
                    windows["reload"].append((began, ended + TAIL_S))
                    admin_s["reload"].append(round(ended - began, 2))
                    time.sleep(TAIL_S + args.quiet_s / 2)
                    body = {
                        "upserts": [{"id": f"SWAP-{number}", "title": f"{queries[0]} {number}"}],
                        "deletes": [f"SWAP-{number - 1}"] if number else [],
                    }
                    began = time.time()
                    response = http.post("/admin/catalogue/changes", json=body)
                    ended = time.time()
                    assert response.status_code == 200, response.text
                    windows["delta"].append((began, ended + TAIL_S))
                    admin_s["delta"].append(round(ended - began, 2))
                    time.sleep(TAIL_S + args.quiet_s / 2)
                    _log(
                        f"round {number + 1}: reload {admin_s['reload'][-1]} s, "
                        f"delta {admin_s['delta'][-1]} s"
                    )
                quiet = time.time()
                time.sleep(args.quiet_s)
                windows["warm"].append((quiet, time.time()))
                (work / "stop").touch()
                samples = [s for f in futures for s in f.result()]
        finally:
            service.stop()
    phases = {name: window_stats(samples, spans) for name, spans in windows.items()}
    warm = float(phases["warm"]["p99_ms"])
    report = {
        "benchmark": "swap_latency",
        "products": args.n,
        "clients": args.clients,
        "rounds": args.rounds,
        "phases": phases,
        "admin_seconds": admin_s,
        "p99_ratio": {
            name: round(float(phases[name]["p99_ms"]) / warm, 2) for name in ("reload", "delta")
        },
        "goal": "p99 during a reload or a delta within 2x the warm p99",
    }
    return report


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20_000, help="products in the catalogue")
    parser.add_argument("--clients", type=int, default=16, help="concurrent search clients")
    parser.add_argument("--rounds", type=int, default=3, help="reloads and deltas each")
    parser.add_argument("--quiet-s", type=float, default=5.0, help="warm window per round")
    parser.add_argument("--settle-s", type=float, default=3.0, help="load before measuring")
    parser.add_argument("--cache", default="var/bench/swap", help="catalogue and snapshot cache")
    parser.add_argument("--out", type=Path, default=None, help="JSON report path")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run, print and write the report."""
    args = parse_args(argv)
    report = measure(args)
    for name, stats in report["phases"].items():
        print(
            f"{name:>7}: p50 {stats['p50_ms']:8.1f} ms  p99 {stats['p99_ms']:8.1f} ms  "
            f"max {stats['max_ms']:8.1f} ms  requests {stats['requests']:6d}  "
            f"errors {stats['errors']}"
        )
    ratio = report["p99_ratio"]
    print(
        f"p99 ratio to warm: reload {ratio['reload']:.2f}x, delta {ratio['delta']:.2f}x "
        f"(goal <= 2x)"
    )
    out = args.out or results_dir() / "swap_latency.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")
    return 0


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
