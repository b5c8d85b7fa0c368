"""Home Depot relevance benchmark: our engine and its peers on three query sets.

Runs every system on the dev queries as written, with one keyboard typo, and with one word spelled
by sound (see :mod:`benchmarks.common`), and reports nDCG@10, recall@100, MRR and latency; our
engine is also measured over HTTP (``productsearch serve``) with the serving process's RSS.

Usage::

    python -m benchmarks.home_depot                          # everything, all 8,260 queries
    python -m benchmarks.home_depot --limit-queries 1500 --peers bm25s --no-http
    python -m benchmarks.home_depot --peers none --index var/bench/hd   # reuse a snapshot

Writes ``benchmarks/results/home_depot.json`` unless ``--out`` says otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from api.service import open_snapshot
from benchmarks.common import (
    QUERY_SETS,
    HomeDepot,
    Metrics,
    evaluate,
    load_home_depot,
    make_query_sets,
    percentile,
    results_dir,
    rss_bytes,
    wait_until_ready,
)
from benchmarks.train_ranker import is_training_query

#: Results per query the metrics need (recall@100, MRR cut at 100).
K = 100

#: Page size of the HTTP latency probe: what a shop's result page asks for.
HTTP_K = 10

PEERS = ("bm25s", "bm25s-tuned", "typesense")

Search = Callable[[str, int], list[str]]


# --------------------------------------------------------------------------------------------
# Our engine: the only part that knows its API. Adjust here when signatures change.


def build_ours(products: Sequence[tuple[str, str]], out_dir: Path, *, semantic: bool) -> None:
    """Build our snapshot of the titles into ``out_dir``.

    Args:
        products: ``(uid, title)`` pairs.
        out_dir: Snapshot folder (absent or empty).
        semantic: Whether to embed titles with all-MiniLM-L6-v2.
    """
    from indexer.build import BuildConfig, build_snapshot

    config = BuildConfig(embedder="minilm" if semantic else "none")
    build_snapshot(_as_products(products), out_dir, config=config)


def _as_products(products: Sequence[tuple[str, str]]) -> list[Any]:
    from search.types import Product

    return [Product(id=uid, title=title) for uid, title in products]


def open_ours(index_dir: Path, *, semantic: bool, learned: bool = True) -> Search:
    """Open our snapshot in-process.

    Args:
        index_dir: Snapshot folder.
        semantic: False opens it without query embeddings: the lexical-only configuration.
        learned: Re-rank with the packaged learned ranker (False: fusion order).

    Returns:
        ``search(text, k) -> product ids``.
    """

    # use_semantic=True loads the query embedder the snapshot's manifest names.
    engine = open_snapshot(index_dir, use_semantic=semantic, ranker="auto" if learned else "none")
    return engine.search_ids


def serve_command(index_dir: Path, host: str, port: int) -> list[str]:
    """Command line that serves a snapshot over HTTP.

    Args:
        index_dir: Snapshot folder.
        host: Loopback address.
        port: Port.

    Returns:
        The argv for ``subprocess``.
    """
    exe = shutil.which("productsearch", path=str(Path(sys.executable).parent))
    prefix = [exe] if exe else [sys.executable, "-c", "from api.cli import app; app()"]
    args = ["serve", "--index", str(index_dir), "--host", host, "--port", str(port)]
    return [*prefix, *args, "--log-level", "warning"]


def http_search_params(query: str, k: int) -> dict[str, str | int]:
    """Query parameters of ``GET /search`` for one query."""
    return {"q": query, "k": k}


# --------------------------------------------------------------------------------------------
# Harness


@dataclass
class SystemResult:
    """One system (or configuration) on every query set.

    Attributes:
        system: Row label.
        metrics: Query set name -> metrics.
        held_out: Query set name -> metrics on the dev queries the packaged ranker was not
            trained on (``benchmarks.train_ranker.is_training_query`` is False).
        latencies_ms: Per-query latency over all sets (HTTP latency for HTTP systems).
        extra: Build time, sizes, RSS and the like.
    """

    system: str
    metrics: dict[str, Metrics] = field(default_factory=dict)
    held_out: dict[str, Metrics] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form with latency percentiles instead of raw samples."""
        return {
            "system": self.system,
            "metrics": {name: m.to_dict() for name, m in self.metrics.items()},
            "held_out_metrics": {name: m.to_dict() for name, m in self.held_out.items()},
            "latency_ms": _latency_summary(self.latencies_ms),
            **self.extra,
        }


def _latency_summary(latencies_ms: Sequence[float]) -> dict[str, float | int]:
    return {
        "n": len(latencies_ms),
        "p50": percentile(latencies_ms, 50),
        "p99": percentile(latencies_ms, 99),
        "mean": sum(latencies_ms) / len(latencies_ms) if latencies_ms else float("nan"),
    }


def run_system(
    name: str,
    search: Search,
    query_sets: Mapping[str, Mapping[str, str]],
    qrels: Mapping[str, Mapping[str, float]],
    *,
    timed: bool = True,
    warm_up: int = 20,
    after_warm_up: Callable[[], object] | None = None,
) -> SystemResult:
    """Run ``search`` on every query of every set, one at a time, and score the runs.

    Args:
        name: Row label.
        search: ``search(text, k) -> product ids``.
        query_sets: Set name -> query id -> text.
        qrels: Judgements.
        timed: Whether to record the in-process time of each call (False when the system
            measures its own, e.g. over HTTP).
        warm_up: Untimed searches first (caches, lazy loads, JIT).
        after_warm_up: Called after them (to reset a system's own latency log).

    Returns:
        Metrics per set and the latencies.
    """
    result = SystemResult(name)
    first = next(iter(query_sets.values()), {})
    for text in list(first.values())[:warm_up]:
        search(text, K)
    if after_warm_up is not None:
        after_warm_up()
    for set_name, queries in query_sets.items():
        run: dict[str, list[str]] = {}
        start_set = time.perf_counter()
        for qid, text in queries.items():
            start = time.perf_counter()
            run[qid] = search(text, K)
            if timed:
                result.latencies_ms.append((time.perf_counter() - start) * 1000.0)
        result.metrics[set_name] = evaluate(run, qrels)
        held_out = {q: ids for q, ids in run.items() if not is_training_query(q)}
        if held_out:
            result.held_out[set_name] = evaluate(held_out, qrels)
        _log(
            f"  {name} / {set_name}: nDCG@10 {result.metrics[set_name].ndcg_at_10:.3f} "
            f"({time.perf_counter() - start_set:.1f} s)"
        )
    return result


def measure_http(
    index_dir: Path,
    queries: Sequence[str],
    *,
    startup_timeout_s: float = 300.0,
    semantic: bool = True,
) -> dict[str, Any]:
    """Serve the snapshot with ``productsearch serve`` on loopback and time ``GET /search``.

    Args:
        index_dir: Snapshot folder.
        queries: Texts to send, one request at a time, over one keep-alive connection.
        startup_timeout_s: How long to wait for ``/ready``.
        semantic: False serves with ``PRODUCTSEARCH_TEXT_EMBEDDER=none`` (lexical-only).

    Returns:
        Latency summary (client-side, ``k`` = :data:`HTTP_K`), RSS after the run, start-up time.

    Raises:
        RuntimeError: When the server does not come up or a request fails.
    """
    from benchmarks.peers import free_port

    host = "127.0.0.1"
    port = free_port(host)
    with tempfile.TemporaryDirectory(prefix="productsearch-serve-") as tmp:
        log_path = Path(tmp) / "serve.log"
        with log_path.open("wb") as log:
            started = time.perf_counter()
            env = {
                **os.environ,
                "PRODUCTSEARCH_TEXT_EMBEDDER": "auto" if semantic else "none",
                # Requests carry no key, from one client; no keys or rules of ./var are read.
                "PRODUCTSEARCH_OPEN_MODE": "true",
                "PRODUCTSEARCH_CLIENT_RATE_PER_MINUTE": "0",
                "PRODUCTSEARCH_KEYS_DB": "none",
                "PRODUCTSEARCH_MERCH_DB": "none",
            }
            proc = subprocess.Popen(
                serve_command(index_dir, host, port), stdout=log, stderr=subprocess.STDOUT, env=env
            )
            try:
                startup_s, rss_idle, latencies, rss = _probe_http(
                    proc, f"http://{host}:{port}", queries, startup_timeout_s, log_path
                )
                startup_s -= started
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    return {
        "k": HTTP_K,
        "latency_ms": _latency_summary(latencies),
        "rss_bytes_idle": rss_idle,
        "rss_bytes": rss,
        "startup_seconds": startup_s,
        "latencies_ms": latencies,
    }


def _probe_http(
    proc: subprocess.Popen[bytes],
    base_url: str,
    queries: Sequence[str],
    startup_timeout_s: float,
    log_path: Path,
) -> tuple[float, int | None, list[float], int | None]:
    """Wait for ``/ready``, then time the queries; returns (ready at, RSS idle, ms, RSS)."""
    import httpx

    def tail() -> str:
        return log_path.read_text(errors="replace")[-3000:]

    wait_until_ready(proc, base_url, startup_timeout_s, log_tail=tail)
    with httpx.Client(base_url=base_url, timeout=60.0) as client:
        ready_at = time.perf_counter()
        rss_idle = rss_bytes(proc.pid)
        for text in queries[:20]:
            client.get("/search", params=http_search_params(text, HTTP_K))
        latencies: list[float] = []
        for text in queries:
            start = time.perf_counter()
            response = client.get("/search", params=http_search_params(text, HTTP_K))
            latencies.append((time.perf_counter() - start) * 1000.0)
            if response.status_code != 200:
                raise RuntimeError(f"GET /search {text!r}: {response.status_code} {response.text}")
        return ready_at, rss_idle, latencies, rss_bytes(proc.pid)


def dir_size(path: Path) -> int:
    """Bytes of all files under ``path``."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def limit_queries(data: HomeDepot, n: int | None, seed: int) -> dict[str, str]:
    """A seeded random sample of ``n`` judged queries (all when ``n`` is None)."""
    qids = sorted((q for q in data.queries if q in data.qrels), key=lambda q: (len(q), q))
    if n is not None and n < len(qids):
        qids = sorted(random.Random(seed).sample(qids, n), key=lambda q: (len(q), q))
    return {qid: data.queries[qid] for qid in qids}


def run_peer(
    name: str,
    data: HomeDepot,
    query_sets: Mapping[str, Mapping[str, str]],
) -> SystemResult:
    """Index the titles with one peer and run it on every set.

    Args:
        name: One of :data:`PEERS`.
        data: The Home Depot set.
        query_sets: Set name -> query id -> text.

    Returns:
        Its result row.

    Raises:
        ValueError: For an unknown peer name (the message lists them).
    """
    from benchmarks.peers import Bm25sPeer, TypesensePeer

    start = time.perf_counter()
    if name in ("bm25s", "bm25s-tuned"):
        k1, b = (1.5, 0.75) if name == "bm25s" else (0.9, 0.4)
        with Bm25sPeer(data.products, k1=k1, b=b) as bm25:
            index_s = time.perf_counter() - start
            result = run_system(bm25.name, bm25.search, query_sets, data.qrels)
        result.extra = {"index_seconds": index_s, "latency_kind": "in-process"}
        return result
    if name == "typesense":
        with TypesensePeer(data.products) as ts:
            startup_s = time.perf_counter() - start
            result = run_system(
                ts.name,
                ts.search,
                query_sets,
                data.qrels,
                timed=False,
                after_warm_up=ts.latencies_ms.clear,
            )
            result.latencies_ms = list(ts.latencies_ms)
            result.extra = {
                "index_seconds": ts.index_seconds,
                "startup_and_index_seconds": startup_s,
                "rss_bytes": rss_bytes(ts.pid),
                "latency_kind": f"HTTP, per_page={ts.per_page}",
            }
        return result
    raise ValueError(f"unknown peer {name!r}; valid: {', '.join(PEERS)}")


def format_table(rows: Sequence[SystemResult], *, held_out: bool = False) -> str:
    """One line per system: nDCG@10 on each set, recall@100 and MRR as written, latency.

    With ``held_out`` the metrics are those of the queries the ranker never saw."""
    header = (
        f"{'system':<34} {'nDCG as':>7} {'typo':>6} {'sound':>6} "
        f"{'R@100':>6} {'MRR':>6} {'p50 ms':>8} {'p99 ms':>8}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        cells = [f"{row.system:<34}"]
        metrics = row.held_out if held_out else row.metrics
        for set_name in QUERY_SETS:
            m = metrics.get(set_name)
            width = 7 if set_name == "as_written" else 6
            cells.append(f"{m.ndcg_at_10:>{width}.3f}" if m else " " * (width - 1) + "-")
        written = metrics.get("as_written")
        cells.append(f"{written.recall_at_100:>6.3f}" if written else "     -")
        cells.append(f"{written.mrr:>6.3f}" if written else "     -")
        lat = _latency_summary(row.latencies_ms)
        cells.append(f"{lat['p50']:>8.2f}" if row.latencies_ms else "       -")
        cells.append(f"{lat['p99']:>8.2f}" if row.latencies_ms else "       -")
        lines.append(" ".join(cells))
    return "\n".join(lines)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.home_depot", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--limit-queries",
        type=int,
        default=None,
        metavar="N",
        help="score a seeded random sample of N queries (default: all)",
    )
    parser.add_argument(
        "--peers",
        default=",".join(PEERS),
        help=f"comma-separated peers from {', '.join(PEERS)}, or 'none'",
    )
    parser.add_argument(
        "--semantic",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="build and search with all-MiniLM-L6-v2 (default: on)",
    )
    parser.add_argument(
        "--ours",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run our engine (default: on; --no-ours runs only the peers)",
    )
    parser.add_argument(
        "--no-http",
        dest="http",
        action="store_false",
        help="skip the HTTP latency and RSS measurement",
    )
    parser.add_argument(
        "--http-queries",
        type=int,
        default=1000,
        metavar="N",
        help="queries sent over HTTP (default: 1000)",
    )
    parser.add_argument(
        "--index",
        type=Path,
        default=None,
        metavar="DIR",
        help="snapshot folder: reused when it holds a snapshot, else built there "
        "and kept (default: a temporary folder, deleted)",
    )
    parser.add_argument("--seed", type=int, default=0, help="query-set and sampling seed")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="JSON output (default: benchmarks/results/home_depot.json)",
    )
    args = parser.parse_args(argv)
    peers = (
        []
        if args.peers.strip().lower() in ("", "none")
        else [p.strip() for p in args.peers.split(",") if p.strip()]
    )
    unknown = [p for p in peers if p not in PEERS]
    if unknown:
        parser.error(f"unknown peer(s) {', '.join(unknown)}; valid: {', '.join(PEERS)}, none")
    args.peers = peers
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print the table, write the JSON.

    Returns:
        The process exit status.
    """
    args = parse_args(argv)
    data = load_home_depot()
    queries = limit_queries(data, args.limit_queries, args.seed)
    query_sets = make_query_sets(queries, seed=args.seed)
    _log(f"{len(data.products)} products, {len(queries)} queries, sets {', '.join(query_sets)}")
    rows: list[SystemResult] = []
    report: dict[str, Any] = {
        "dataset": "home_depot",
        "products": len(data.products),
        "queries": len(queries),
        "seed": args.seed,
        "k": K,
        "environment": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
    }

    if args.ours:
        temp = args.index is None
        index_dir = Path(tempfile.mkdtemp(prefix="productsearch-hd-")) if temp else args.index
        try:
            reuse = not temp and index_dir.is_dir() and any(index_dir.iterdir())
            build: dict[str, Any] = {"reused": reuse, "semantic": args.semantic}
            if not reuse:
                _log(f"building snapshot in {index_dir} (semantic={args.semantic})")
                start = time.perf_counter()
                build_ours(data.products, index_dir, semantic=args.semantic)
                build["seconds"] = time.perf_counter() - start
            build["size_bytes"] = dir_size(index_dir)
            report["build"] = build
            _log(f"  build: {build}")

            configs = (
                [("ours hybrid + learned", True, True), ("ours hybrid, fusion only", True, False)]
                if args.semantic
                else []
            )
            configs += [
                ("ours lexical + learned", False, True),
                ("ours lexical, fusion only", False, False),
            ]
            for label, semantic, learned in configs:
                start = time.perf_counter()
                search = open_ours(index_dir, semantic=semantic, learned=learned)
                row = run_system(label, search, query_sets, data.qrels)
                row.extra = {
                    "open_seconds": time.perf_counter() - start,
                    "latency_kind": "in-process search_ids",
                }
                rows.append(row)
                del search

            if args.http:
                texts = [t for s in query_sets.values() for t in s.values() if t.strip()]
                sample = random.Random(args.seed).sample(texts, min(args.http_queries, len(texts)))
                for label, semantic in [("hybrid", True)] * args.semantic + [("lexical", False)]:
                    _log(f"serving {label} over HTTP, {len(sample)} queries")
                    http = measure_http(index_dir, sample, semantic=semantic)
                    row = SystemResult(
                        f"ours {label} over HTTP (k=10)", latencies_ms=http.pop("latencies_ms")
                    )
                    row.extra = {**http, "latency_kind": "HTTP GET /search"}
                    rows.append(row)
        finally:
            if temp:
                shutil.rmtree(index_dir, ignore_errors=True)

    for peer in args.peers:
        _log(f"peer {peer}")
        rows.append(run_peer(peer, data, query_sets))

    report["systems"] = [row.to_dict() for row in rows]
    table = format_table(rows)
    print("all dev queries (the learned ranker was trained on 70% of them)")
    print(table)
    print("\nheld-out dev queries only (30%, never used to train the ranker)")
    print(format_table(rows, held_out=True))
    if "build" in report and "seconds" in report["build"]:
        print(
            f"\nour build: {report['build']['seconds']:.1f} s, "
            f"snapshot {report['build']['size_bytes'] / 2**20:.1f} MiB"
        )
    for row in rows:
        if row.extra.get("rss_bytes"):
            print(f"{row.system}: RSS {row.extra['rss_bytes'] / 2**20:.0f} MiB")
    out = args.out or results_dir() / "home_depot.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, allow_nan=True))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
