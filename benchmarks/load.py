"""Load benchmark: many concurrent shoppers against our service, then the same text searches
against Typesense, on the same catalogue and machine.

Our service runs as ``productsearch serve`` (uvicorn, its own process) over a copy of a cached
Home Depot snapshot; the load comes from separate processes (asyncio + httpx, ``--generators``)
so the client never shares the server's GIL. Every simulated shopper picks a dev query and types
it: at each step it asks ``GET /suggest`` and ``GET /search`` (``as_you_type``) for what is typed
so far, then searches the whole query (``as_you_type=false``) and sends a ``POST /events`` batch
(the search, a view and a click). Typesense gets exactly the same search texts, in the same order,
from as many clients (``query_by=title``, ``per_page=10``, its default prefix and typo settings).

``--swap`` also changes the catalogue under load: it alternates a full snapshot swap (a fresh
snapshot published into the served folder, then ``POST /admin/snapshot/reload``) and a delta
(``POST /admin/catalogue/changes``: an upsert and a delete), and reports every failed request
(there must be none) with when it was sent.

Usage::

    python -m benchmarks.load                                  # 64 clients, 60 s, Typesense too
    python -m benchmarks.load --clients 16 --duration 30 --swap
    python -m benchmarks.load --quick                          # 8 clients, 10 s, 2,000 products
    python -m benchmarks.load --quick --swap --peers none --catalogue tests/catalogue.jsonl

Prints a table and writes ``benchmarks/results/load.json`` (``load_quick.json`` with ``--quick``)
unless ``--out`` says otherwise. Exits 1 when a request failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Literal

from benchmarks.common import percentile, results_dir, rss_bytes

#: Request kinds, in table order.
KINDS: tuple[str, ...] = ("search prefix", "search query", "suggest", "events")

#: Kinds Typesense is sent (text searches only).
TEXT_KINDS: tuple[str, ...] = ("search prefix", "search query")

#: Hits per search page, as a shop's result list asks.
PAGE_K = 10

Target = Literal["ours", "typesense"]


# --------------------------------------------------------------------------------------------
# Workload


@dataclass(frozen=True, slots=True)
class Step:
    """One request of a shopper: its kind and the text typed so far (the query for events)."""

    kind: str
    text: str


def typing_steps(query: str) -> list[str]:
    """What an as-you-type box sends while ``query`` is typed: half of each word of 4+ letters,
    then each whole word (with the words before it).

    Args:
        query: The whole query.

    Returns:
        Prefixes, the whole query last; empty for a blank query.
    """
    words = query.split()
    steps: list[str] = []
    for i, word in enumerate(words):
        head = " ".join(words[:i])
        if len(word) >= 4:
            steps.append(f"{head} {word[: (len(word) + 1) // 2]}".strip())
        steps.append(f"{head} {word}".strip())
    return list(dict.fromkeys(steps))


def shopper_steps(query: str) -> list[Step]:
    """The requests of one shopper typing ``query``: suggest and search per prefix, the whole
    query searched, then an events batch."""
    prefixes = typing_steps(query)
    steps: list[Step] = []
    for prefix in prefixes[:-1]:
        steps += [Step("suggest", prefix), Step("search prefix", prefix)]
    if prefixes:
        steps += [Step("suggest", prefixes[-1]), Step("search query", prefixes[-1])]
        steps.append(Step("events", prefixes[-1]))
    return steps


@dataclass(frozen=True, slots=True)
class GeneratorConfig:
    """What one load-generator process does (plain data: it crosses a process boundary).

    Attributes:
        target: ``ours`` (all kinds) or ``typesense`` (text searches only).
        base_url: Server address.
        headers: Sent with every request (API key).
        queries: Query texts the shoppers pick from.
        product_ids: Ids the events name.
        clients: Concurrent shoppers in this process (one connection each).
        duration_s: Measured seconds.
        warmup_s: Seconds of load before measuring.
        start_at: ``time.time()`` at which to start (so generators start together).
        seed: Seeds the shoppers' choices (client ``i`` uses ``(seed, i)``).
        first_client: Number of this process's first client (for seeding).
        collection: Typesense collection name.
    """

    target: Target
    base_url: str
    headers: Mapping[str, str]
    queries: Sequence[str]
    product_ids: Sequence[str]
    clients: int
    duration_s: float
    warmup_s: float
    start_at: float
    seed: int = 0
    first_client: int = 0
    collection: str = "products"


def run_generator(config: GeneratorConfig) -> dict[str, Any]:
    """Run one generator process's clients to the end (the entry point of each process).

    Returns:
        ``{"latencies_ms": {kind: [...]}, "errors": {kind: n}, "error_samples": [...],
        "error_times_s": [...], "elapsed_s": measured seconds}`` (error times: when each failed
        request was sent, in seconds from the start of the measurement).
    """
    return asyncio.run(_generate(config))


async def _generate(config: GeneratorConfig) -> dict[str, Any]:
    import httpx

    latencies: dict[str, list[float]] = {kind: [] for kind in KINDS}
    errors: dict[str, int] = dict.fromkeys(KINDS, 0)
    samples: list[str] = []
    error_times: list[float] = []
    delay = config.start_at - time.time()
    if delay > 0:
        await asyncio.sleep(delay)
    measure_from = time.perf_counter() + config.warmup_s
    stop_at = measure_from + config.duration_s
    # Idle connections are dropped before uvicorn's 5 s keep-alive timeout closes them: a
    # request sent on a connection the server is closing fails with a ReadError.
    limits = httpx.Limits(
        max_connections=config.clients,
        max_keepalive_connections=config.clients,
        keepalive_expiry=2.0,
    )
    async with httpx.AsyncClient(
        base_url=config.base_url,
        headers=dict(config.headers),
        timeout=httpx.Timeout(60.0),
        limits=limits,
    ) as client:

        async def shopper(number: int) -> None:
            rng = random.Random(f"{config.seed}:{number}")
            session = f"load-{config.seed}-{number}"
            while time.perf_counter() < stop_at:
                query = rng.choice(config.queries)
                for step in shopper_steps(query):
                    if config.target == "typesense" and step.kind not in TEXT_KINDS:
                        continue
                    start = time.perf_counter()
                    if start >= stop_at:
                        return
                    problem = await _send(client, config, step, session, rng)
                    end = time.perf_counter()
                    if start < measure_from:
                        continue
                    if problem is None:
                        latencies[step.kind].append((end - start) * 1000.0)
                    else:
                        errors[step.kind] += 1
                        error_times.append(round(start - measure_from, 2))
                        if len(samples) < 20:
                            samples.append(f"{step.kind} {step.text!r}: {problem}")

        numbers = range(config.first_client, config.first_client + config.clients)
        await asyncio.gather(*(shopper(n) for n in numbers))
    return {
        "latencies_ms": latencies,
        "errors": errors,
        "error_samples": samples,
        "error_times_s": error_times,
        "elapsed_s": config.duration_s,
    }


async def _send(
    client: Any, config: GeneratorConfig, step: Step, session: str, rng: random.Random
) -> str | None:
    """Send one request; None when it succeeded, else what went wrong."""
    import httpx

    try:
        if config.target == "typesense":
            response = await client.get(
                f"/collections/{config.collection}/documents/search",
                params={"q": step.text, "query_by": "title", "per_page": PAGE_K},
            )
        elif step.kind == "suggest":
            response = await client.get("/suggest", params={"q": step.text, "session_id": session})
        elif step.kind == "events":
            shown = rng.sample(config.product_ids, min(PAGE_K, len(config.product_ids)))
            clicked = shown[0]
            events = [
                {"type": "search", "session_id": session, "query": step.text, "results": shown},
                {"type": "view", "session_id": session, "product_id": clicked},
                {
                    "type": "click",
                    "session_id": session,
                    "product_id": clicked,
                    "query": step.text,
                    "position": 1,
                },
            ]
            response = await client.post("/events", json={"events": events})
        else:
            response = await client.get(
                "/search",
                params={
                    "q": step.text,
                    "k": PAGE_K,
                    "as_you_type": "true" if step.kind == "search prefix" else "false",
                    "session_id": session,
                },
            )
        await response.aread()
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"
    if response.status_code != 200:
        return f"HTTP {response.status_code}: {response.text[:200]}"
    return None


@dataclass
class LoadResult:
    """Merged outcome of all generator processes against one system.

    Attributes:
        system: Row label.
        clients: Concurrent clients.
        duration_s: Measured seconds.
        latencies_ms: Kind -> per-request latency.
        errors: Kind -> failed requests (transport error or a status other than 200).
        error_samples: The first failures, described.
        error_times_s: When each failed request was sent (seconds into the measurement).
        extra: Load average, RSS, swaps and the like.
    """

    system: str
    clients: int
    duration_s: float
    latencies_ms: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)
    error_times_s: list[float] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def total_errors(self) -> int:
        """Failed requests of every kind."""
        return sum(self.errors.values())

    def summary(self) -> dict[str, dict[str, float | int]]:
        """Kind (and ``all``) -> requests, QPS, p50, p99, mean, errors."""
        out: dict[str, dict[str, float | int]] = {}
        every: list[float] = []
        for kind, values in self.latencies_ms.items():
            if not values and not self.errors.get(kind):
                continue
            every += values
            out[kind] = _stats(values, self.errors.get(kind, 0), self.duration_s)
        out["all"] = _stats(every, self.total_errors, self.duration_s)
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (percentiles, not raw samples)."""
        return {
            "system": self.system,
            "clients": self.clients,
            "duration_s": self.duration_s,
            "kinds": self.summary(),
            "errors": self.total_errors,
            "error_samples": self.error_samples,
            "error_times_s": self.error_times_s[:1000],
            **self.extra,
        }


def _stats(values: Sequence[float], errors: int, duration_s: float) -> dict[str, float | int]:
    return {
        "requests": len(values) + errors,
        "qps": (len(values) + errors) / duration_s if duration_s > 0 else float("nan"),
        "p50_ms": percentile(values, 50),
        "p99_ms": percentile(values, 99),
        "mean_ms": sum(values) / len(values) if values else float("nan"),
        "errors": errors,
    }


def run_load(
    system: str,
    target: Target,
    base_url: str,
    *,
    queries: Sequence[str],
    product_ids: Sequence[str],
    clients: int,
    duration_s: float,
    warmup_s: float = 2.0,
    headers: Mapping[str, str] | None = None,
    generators: int = 1,
    seed: int = 0,
    during: Any = None,
    server_pid: int | None = None,
) -> LoadResult:
    """Drive ``clients`` shoppers against ``base_url`` from ``generators`` separate processes.

    Args:
        system: Row label.
        target: ``ours`` or ``typesense``.
        base_url: Server address.
        queries: Query texts the shoppers type.
        product_ids: Ids named by events.
        clients: Concurrent clients in all (split across the processes).
        duration_s: Measured seconds.
        warmup_s: Seconds of load before measuring.
        headers: Sent with every request.
        generators: Load-generator processes.
        seed: Seeds the shoppers.
        during: Called with ``(start_at, stop_at)`` (``time.time()`` values) in this process
            while the load runs (e.g. to swap snapshots); its return value goes to
            ``extra["during"]``.
        server_pid: The server's process: its CPU time during the measurement goes to
            ``extra["server_cpu_seconds"]`` and ``extra["server_cpu_ms_per_request"]`` (a
            figure that depends less on what else the machine runs than latency does).

    Returns:
        The merged result.

    Raises:
        ValueError: ``clients`` or ``generators`` below 1, or no queries.
    """
    if clients < 1 or generators < 1:
        raise ValueError(f"clients and generators must be at least 1, got {clients}, {generators}")
    if not queries:
        raise ValueError("queries must not be empty")
    generators = min(generators, clients)
    start_at = time.time() + 2.0 + 0.5 * generators  # spawned interpreters import first
    configs = []
    for g in range(generators):
        first = g * clients // generators
        count = (g + 1) * clients // generators - first
        configs.append(
            GeneratorConfig(
                target=target,
                base_url=base_url,
                headers=dict(headers or {}),
                queries=list(queries),
                product_ids=list(product_ids),
                clients=count,
                duration_s=duration_s,
                warmup_s=warmup_s,
                start_at=start_at,
                seed=seed,
                first_client=first,
            )
        )
    result = LoadResult(system, clients, duration_s)
    load_before = os.getloadavg()
    cpu: list[float | None] = []
    if server_pid is not None:
        meter = threading.Thread(
            target=_meter_cpu,
            args=(server_pid, start_at + warmup_s, start_at + warmup_s + duration_s, cpu),
            daemon=True,
        )
        meter.start()
    with ProcessPoolExecutor(max_workers=generators, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(run_generator, c) for c in configs]
        if during is not None:
            result.extra["during"] = during(start_at + warmup_s, start_at + warmup_s + duration_s)
        parts = [f.result() for f in futures]
    if server_pid is not None:
        meter.join()
    for kind in KINDS if target == "ours" else TEXT_KINDS:
        result.latencies_ms[kind] = [v for p in parts for v in p["latencies_ms"][kind]]
        result.errors[kind] = sum(p["errors"][kind] for p in parts)
    result.error_samples = [s for p in parts for s in p["error_samples"]][:20]
    result.error_times_s = sorted(t for p in parts for t in p["error_times_s"])
    result.extra["load_average_before"] = [round(v, 2) for v in load_before]
    result.extra["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    result.extra["generators"] = generators
    if len(cpu) == 2 and None not in cpu:
        busy = float(cpu[1] or 0.0) - float(cpu[0] or 0.0)
        done = sum(len(v) + result.errors[k] for k, v in result.latencies_ms.items())
        result.extra["server_cpu_seconds"] = round(busy, 2)
        result.extra["server_cpu_ms_per_request"] = round(1000.0 * busy / max(done, 1), 3)
    return result


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system, all threads) a process has used, from ``/proc``; None where
    that cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _meter_cpu(pid: int, start: float, stop: float, out: list[float | None]) -> None:
    """Append the server's CPU seconds at ``start`` and at ``stop`` (wall clock) to ``out``."""
    for at in (start, stop):
        time.sleep(max(0.0, at - time.time()))
        out.append(cpu_seconds(pid))


# --------------------------------------------------------------------------------------------
# Our service


@dataclass
class Service:
    """Our service in its own process, with an admin and a search key.

    Attributes:
        base_url: Its address.
        admin_token: An admin key.
        search_token: A search key without a practical rate limit.
        snapshot_dir: The folder it serves (a copy: swaps write here).
        work_dir: Its keys, events and log.
        env: The server's environment.
        startup_timeout_s: How long :meth:`restart` waits for ``/ready``.
        proc: The server process (None until started).
    """

    base_url: str
    admin_token: str
    search_token: str
    snapshot_dir: Path
    work_dir: Path
    env: dict[str, str]
    startup_timeout_s: float = 300.0
    proc: subprocess.Popen[bytes] | None = None

    def log_tail(self) -> str:
        """The end of the server's log."""
        path = self.work_dir / "serve.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 20 s)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def restart(self) -> None:
        """Start the server again (after :meth:`stop` or a kill) on the same folder, keys,
        events and port, and wait until it is ready.

        Raises:
            RuntimeError: It is still running, exits, or is not ready in time.
        """
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("the server is still running")
        self.proc = _launch(self)


def _launch(service: Service) -> subprocess.Popen[bytes]:
    """Start ``productsearch serve`` for ``service`` and wait for ``/ready``."""
    from benchmarks.common import wait_until_ready
    from benchmarks.home_depot import serve_command

    host, _, port = service.base_url.removeprefix("http://").partition(":")
    with (service.work_dir / "serve.log").open("ab") as log:
        proc = subprocess.Popen(
            serve_command(service.snapshot_dir, host, int(port)),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=service.env,
        )
    try:
        wait_until_ready(
            proc,
            service.base_url,
            service.startup_timeout_s,
            log_tail=service.log_tail,
            interval_s=0.2,
        )
    except RuntimeError:
        proc.kill()
        proc.wait()
        raise
    return proc


def start_service(
    snapshot: Path,
    work_dir: Path,
    *,
    semantic: bool = False,
    startup_timeout_s: float = 300.0,
    env: Mapping[str, str] | None = None,
    link: bool = False,
) -> Service:
    """Copy ``snapshot`` into ``work_dir`` and serve the copy with ``productsearch serve``.

    Keys, events and merchandising live in ``work_dir``; the keys' rate limits are lifted so
    the benchmark measures serving, not the limiter.

    Args:
        snapshot: Snapshot folder (only read).
        work_dir: Empty folder for the served copy, keys, events and the log.
        semantic: Serve with query embeddings (the snapshot must have text vectors).
        startup_timeout_s: How long to wait for ``/ready``.
        env: Extra environment variables for the server.
        link: Hard-link the snapshot's files instead of copying them (same file system; only
            for runs that never swap snapshots: a delta would write through the links).

    Returns:
        The running service.

    Raises:
        RuntimeError: The server exits or is not ready in time.
    """
    from api.security import KeyStore
    from benchmarks.peers import free_port

    served = work_dir / "snapshot"
    shutil.copytree(snapshot, served, copy_function=os.link if link else shutil.copy2)
    keys_db = work_dir / "keys.sqlite3"
    keys = KeyStore(keys_db)
    _, admin = keys.create("load-admin", "admin", rate_per_minute=1_000_000, burst=100_000)
    _, search = keys.create("load-search", "search", rate_per_minute=1_000_000, burst=100_000)
    keys.close()
    host = "127.0.0.1"
    server_env = {
        **os.environ,
        "PRODUCTSEARCH_KEYS_DB": str(keys_db),
        "PRODUCTSEARCH_EVENTS_DB": str(work_dir / "events.sqlite3"),
        "PRODUCTSEARCH_MERCH_DB": str(work_dir / "merch.sqlite3"),
        "PRODUCTSEARCH_TEXT_EMBEDDER": "auto" if semantic else "none",
        # One load generator plays many shoppers from one address: no per-client limit.
        "PRODUCTSEARCH_CLIENT_RATE_PER_MINUTE": "0",
        **(env or {}),
    }
    service = Service(
        f"http://{host}:{free_port(host)}",
        admin,
        search,
        served,
        work_dir,
        server_env,
        startup_timeout_s,
    )
    service.proc = _launch(service)
    return service


def publish_copy(source: Path, target: Path) -> str:
    """Publish a fresh snapshot at ``target`` holding ``source``'s files, the way the indexer
    publishes one (temporary sibling, checksums, manifest, atomic rename), with a new id.

    Returns:
        The new snapshot id.
    """
    from search.index.snapshot import MANIFEST, SnapshotWriter, read_manifest

    manifest = read_manifest(source, verify=False)
    with SnapshotWriter(target, overwrite=True) as writer:
        for path in source.iterdir():
            if path.is_file() and path.name != MANIFEST:
                shutil.copyfile(path, writer.path(path.name))
        fresh = writer.commit(
            catalogue_checksum=manifest.catalogue_checksum,
            languages=tuple(manifest.languages),
            counts=manifest.counts,
            models=manifest.models,
            settings=manifest.settings,
        )
    return fresh.snapshot_id


class Swapper:
    """Changes the served catalogue while the load runs: a full snapshot swap, then a delta,
    alternately, every ``every_s`` seconds (or as soon as the previous one is done).

    Args:
        service: The service under load.
        pristine: The snapshot a full swap publishes (a copy of what the service started on).
        titles: Titles to make upserted products from.
        every_s: Seconds between changes.
    """

    def __init__(
        self, service: Service, pristine: Path, titles: Sequence[str], every_s: float
    ) -> None:
        self.service = service
        self.pristine = pristine
        self.titles = list(titles)
        self.every_s = every_s
        self.swaps: list[dict[str, Any]] = []

    def __call__(self, start_at: float, stop_at: float) -> list[dict[str, Any]]:
        """Swap from ``start_at`` until ``every_s`` before ``stop_at`` (wall clock)."""
        import httpx

        rng = random.Random(1)
        headers = {"Authorization": f"Bearer {self.service.admin_token}"}
        number = 0
        next_at = start_at + min(1.0, self.every_s / 2)
        with httpx.Client(base_url=self.service.base_url, headers=headers, timeout=600) as http:
            while next_at < stop_at - 0.5:
                time.sleep(max(0.0, next_at - time.time()))
                number += 1
                started = time.perf_counter()
                record: dict[str, Any] = {"at_s": round(time.time() - start_at, 1)}
                try:
                    if number % 2 == 0:
                        record["kind"] = "delta"
                        title = rng.choice(self.titles)
                        body = {
                            "upserts": [
                                {"id": f"LOAD-SWAP-{number}", "title": f"{title} {number}"}
                            ],
                            "deletes": [f"LOAD-SWAP-{number - 2}"] if number > 2 else [],
                        }
                        response = http.post("/admin/catalogue/changes", json=body)
                    else:
                        record["kind"] = "reload"
                        record["published"] = publish_copy(self.pristine, self.service.snapshot_dir)
                        response = http.post("/admin/snapshot/reload")
                    record["status"] = response.status_code
                    if response.status_code == 200:
                        record["snapshot_id"] = response.json().get("snapshot_id")
                    else:
                        record["error"] = response.text[:300]
                except httpx.HTTPError as exc:
                    record["status"] = None
                    record["error"] = f"{type(exc).__name__}: {exc}"
                record["seconds"] = round(time.perf_counter() - started, 2)
                self.swaps.append(record)
                _log(f"  swap {number}: {record}")
                next_at = max(next_at + self.every_s, time.time() + 0.5)
        return self.swaps


# --------------------------------------------------------------------------------------------
# Data and snapshot


@dataclass(frozen=True)
class Catalogue:
    """Products to index and the queries shoppers type.

    Attributes:
        name: Label for the report.
        products: ``(id, title)`` pairs.
        queries: Query texts.
        catalogue_file: A JSON Lines catalogue to build from instead of ``products``.
    """

    name: str
    products: list[tuple[str, str]]
    queries: list[str]
    catalogue_file: Path | None = None


def home_depot_catalogue(limit: int | None) -> Catalogue:
    """The Home Depot titles (the first ``limit``) and the dev queries (all: a query with no
    match is a realistic request too)."""
    from benchmarks.common import load_home_depot

    data = load_home_depot()
    products = data.products[:limit] if limit else data.products
    queries = sorted({q for q in data.queries.values() if q.strip()})
    name = "home_depot" + (f"[:{limit}]" if limit else "")
    return Catalogue(name, products, queries)


def file_catalogue(path: Path) -> Catalogue:
    """A JSON Lines catalogue; the queries are its titles and their first two words."""
    products: list[tuple[str, str]] = []
    with path.open("rb") as fh:
        for line in fh:
            if line.strip():
                row = json.loads(line)
                products.append((str(row["id"]), str(row["title"])))
    queries = sorted({t for _, t in products} | {" ".join(t.split()[:2]) for _, t in products})
    return Catalogue(path.name, products, queries, catalogue_file=path)


def cached_snapshot(catalogue: Catalogue, cache: Path, *, semantic: bool) -> tuple[Path, dict]:
    """Our snapshot of the catalogue, built into ``cache`` once and reused after.

    Returns:
        The folder and what was done (``reused`` or build seconds).
    """
    from search.errors import SnapshotError
    from search.index.snapshot import read_manifest

    try:
        manifest = read_manifest(cache, verify=False)
        if manifest.counts.get("products") == len(catalogue.products):
            return cache, {"reused": True, "snapshot_id": manifest.snapshot_id}
    except SnapshotError:
        pass
    _log(f"building {cache} ({len(catalogue.products)} products, semantic={semantic})")
    started = time.perf_counter()
    if catalogue.catalogue_file is not None:
        from indexer.build import BuildConfig, build_from_catalogue

        build_from_catalogue(
            catalogue.catalogue_file,
            cache,
            fmt="jsonl",
            config=BuildConfig(embedder="minilm" if semantic else "none", overwrite=True),
        )
    else:
        from indexer.build import BuildConfig, build_snapshot
        from search.types import Product

        build_snapshot(
            [Product(id=uid, title=title) for uid, title in catalogue.products],
            cache,
            config=BuildConfig(embedder="minilm" if semantic else "none", overwrite=True),
        )
    return cache, {"reused": False, "build_seconds": round(time.perf_counter() - started, 1)}


# --------------------------------------------------------------------------------------------
# Harness


def first_suggest(service: Service) -> float:
    """Send one ``GET /suggest`` and wait for it; returns its seconds.

    The served engine may build its suggester on the first suggestion rather than at start-up
    (every suggestion waits for that meanwhile); this keeps that one-off cost out of the
    measured load and reports it on its own.
    """
    import httpx

    headers = {"Authorization": f"Bearer {service.search_token}"}
    started = time.perf_counter()
    httpx.get(f"{service.base_url}/suggest", params={"q": "a"}, headers=headers, timeout=600)
    return time.perf_counter() - started


def measure_ours(
    catalogue: Catalogue,
    snapshot: Path,
    args: argparse.Namespace,
) -> LoadResult:
    """Serve ``snapshot`` and load it (with swaps when asked)."""
    with tempfile.TemporaryDirectory(prefix="productsearch-load-") as tmp:
        service = start_service(snapshot, Path(tmp), semantic=args.semantic)
        try:
            first_suggest_s = first_suggest(service)
            swapper = None
            if args.swap:
                swapper = Swapper(
                    service, snapshot, [t for _, t in catalogue.products], args.swap_every
                )
            label = "ours " + ("hybrid" if args.semantic else "lexical")
            result = run_load(
                label,
                "ours",
                service.base_url,
                queries=catalogue.queries,
                product_ids=[pid for pid, _ in catalogue.products],
                clients=args.clients,
                duration_s=args.duration,
                warmup_s=args.warmup,
                headers={"Authorization": f"Bearer {service.search_token}"},
                generators=args.generators,
                seed=args.seed,
                during=swapper,
                server_pid=service.proc.pid if service.proc is not None else None,
            )
            assert service.proc is not None
            result.extra["first_suggest_seconds"] = round(first_suggest_s, 2)
            result.extra["rss_bytes"] = rss_bytes(service.proc.pid)
            if service.proc.poll() is not None:
                result.extra["server_exit"] = service.proc.returncode
        finally:
            service.stop()
            if args.verbose:
                _log(service.log_tail())
    if swapper is not None:
        result.extra["swaps"] = result.extra.pop("during", [])
    return result


def typesense_base(peer: Any) -> tuple[str, dict[str, str]]:
    """A running :class:`benchmarks.peers.TypesensePeer`'s address and key header."""
    # The peer keeps its client private; its base URL and key are all the load needs.
    client = peer._client
    return str(client.base_url).rstrip("/"), {
        "X-TYPESENSE-API-KEY": client.headers["X-TYPESENSE-API-KEY"]
    }


def measure_typesense(catalogue: Catalogue, args: argparse.Namespace) -> LoadResult:
    """Index the titles in Typesense and send it the same text searches."""
    from benchmarks.peers import TypesensePeer

    with TypesensePeer(catalogue.products) as peer:
        base_url, headers = typesense_base(peer)
        result = run_load(
            peer.name,
            "typesense",
            base_url,
            queries=catalogue.queries,
            product_ids=[],
            clients=args.clients,
            duration_s=args.duration,
            warmup_s=args.warmup,
            headers=headers,
            generators=args.generators,
            seed=args.seed,
            server_pid=peer.pid,
        )
        result.extra["rss_bytes"] = rss_bytes(peer.pid)
        result.extra["index_seconds"] = round(peer.index_seconds, 1)
    return result


def format_table(rows: Sequence[LoadResult]) -> str:
    """One line per system and request kind: requests, QPS, p50, p99, errors."""
    header = (
        f"{'system':<28} {'kind':<14} {'requests':>9} {'QPS':>8} "
        f"{'p50 ms':>8} {'p99 ms':>8} {'errors':>7}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        for kind, s in row.summary().items():
            lines.append(
                f"{row.system:<28} {kind:<14} {s['requests']:>9} {s['qps']:>8.1f} "
                f"{s['p50_ms']:>8.2f} {s['p99_ms']:>8.2f} {s['errors']:>7}"
            )
    return "\n".join(lines)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.load", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--clients", type=int, default=None, help="concurrent clients (64)")
    parser.add_argument("--duration", type=float, default=None, help="measured seconds (60)")
    parser.add_argument("--warmup", type=float, default=None, help="seconds before measuring (5)")
    parser.add_argument(
        "--generators", type=int, default=1, help="load-generator processes (default: 1)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="8 clients, 10 s, the first 2,000 products (a test can run it)",
    )
    parser.add_argument(
        "--products", type=int, default=None, metavar="N", help="index the first N products"
    )
    parser.add_argument(
        "--catalogue",
        type=Path,
        default=None,
        metavar="FILE",
        help="a JSON Lines catalogue instead of Home Depot (queries: its titles)",
    )
    parser.add_argument(
        "--semantic", action="store_true", help="hybrid: MiniLM text vectors and query embeddings"
    )
    parser.add_argument(
        "--index",
        type=Path,
        default=None,
        metavar="DIR",
        help="snapshot cache: reused when it holds this catalogue, else built there "
        "(default: var/bench/load-<catalogue>)",
    )
    parser.add_argument(
        "--peers", default="typesense", help="typesense (default) or none: skip Typesense"
    )
    parser.add_argument("--no-ours", dest="ours", action="store_false", help="only the peers")
    parser.add_argument(
        "--swap", action="store_true", help="swap snapshots during the load; count failures"
    )
    parser.add_argument(
        "--swap-every", type=float, default=None, help="seconds between swaps (10; quick 2)"
    )
    parser.add_argument("--seed", type=int, default=0, help="shoppers' seed")
    parser.add_argument("--out", type=Path, default=None, help="JSON output")
    parser.add_argument("--verbose", action="store_true", help="print the server's log after")
    args = parser.parse_args(argv)
    quick = args.quick
    args.clients = args.clients or (8 if quick else 64)
    args.duration = args.duration or (10.0 if quick else 60.0)
    args.warmup = args.warmup if args.warmup is not None else (1.0 if quick else 5.0)
    args.swap_every = args.swap_every or (2.0 if quick else 10.0)
    if args.products is None and quick and args.catalogue is None:
        args.products = 2000
    if args.peers not in ("typesense", "none"):
        parser.error(f"unknown peer {args.peers!r}; valid: typesense, none")
    if args.clients < 1 or args.generators < 1 or args.duration <= 0:
        parser.error("--clients, --generators and --duration must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print the table, write the JSON.

    Returns:
        0, or 1 when a request or a swap failed.
    """
    args = parse_args(argv)
    if args.catalogue is not None:
        catalogue = file_catalogue(args.catalogue)
    else:
        catalogue = home_depot_catalogue(args.products)
    kind = "minilm" if args.semantic else "lexical"
    slug = (args.catalogue.stem if args.catalogue else f"hd{args.products or ''}").replace("/", "-")
    cache = args.index or Path("var/bench") / f"load-{slug}-{kind}"
    report: dict[str, Any] = {
        "catalogue": catalogue.name,
        "products": len(catalogue.products),
        "queries": len(catalogue.queries),
        "clients": args.clients,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "generators": args.generators,
        "swap": args.swap,
        "environment": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
    }
    _log(
        f"{report['catalogue']}: {len(catalogue.products)} products, {len(catalogue.queries)} "
        f"queries; {args.clients} clients for {args.duration:g} s"
    )
    rows: list[LoadResult] = []
    if args.ours:
        snapshot, build = cached_snapshot(catalogue, cache, semantic=args.semantic)
        report["snapshot"] = {"path": str(snapshot), **build}
        _log(f"ours: {report['snapshot']}")
        rows.append(measure_ours(catalogue, snapshot, args))
    if args.peers == "typesense":
        _log("typesense")
        rows.append(measure_typesense(catalogue, args))
    report["systems"] = [row.to_dict() for row in rows]

    print(format_table(rows))
    failed = False
    for row in rows:
        print(
            f"{row.system}: load average {row.extra['load_average_before']} before, "
            f"{row.extra['load_average_after']} after"
            + (
                f", RSS {row.extra['rss_bytes'] / 2**20:.0f} MiB"
                if row.extra.get("rss_bytes")
                else ""
            )
            + (
                f", server CPU {row.extra['server_cpu_ms_per_request']:.2f} ms per request"
                if "server_cpu_ms_per_request" in row.extra
                else ""
            )
        )
        for sample in row.error_samples[:5]:
            print(f"  failed: {sample}")
        if row.error_times_s:
            times = row.error_times_s
            print(f"  failures sent between {times[0]:.1f} s and {times[-1]:.1f} s into the run")
        failed |= row.total_errors > 0
        swaps = row.extra.get("swaps")
        if swaps is not None:
            bad = [s for s in swaps if s.get("status") != 200]
            print(
                f"{row.system}: {len(swaps)} swaps "
                f"({sum(s['kind'] == 'delta' for s in swaps)} deltas, "
                f"{sum(s['kind'] == 'reload' for s in swaps)} reloads), {len(bad)} failed, "
                f"{row.total_errors} failed requests during the run"
            )
            failed |= bool(bad) or not swaps
    out = args.out or results_dir() / ("load_quick.json" if args.quick else "load.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, allow_nan=True))
    print(f"wrote {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
