"""Scale benchmark: a generated catalogue of up to 1,000,000 products.

Steps (each can be run on its own; results go to ``benchmarks/results/scale-<n>.json``):

``embed``
    Text vectors of the generated catalogue's products (MiniLM int8, as the indexer makes
    them), computed in chunks of 10,000 and cached under ``var/bench/scale-vectors-s<seed>/``.
    Product ``i`` of the generator does not depend on the catalogue size, so the chunks of a
    1M run serve every smaller run; a killed run resumes at its last whole chunk.
``run``
    Generates the catalogue file, builds a snapshot from it with the indexer (per-stage times;
    the text vectors come from the cache, the embedding time is the cache's measured rate),
    then loads the snapshot in a fresh process and measures its RSS, search p50/p99 over
    text / typo / filtered queries, and recall@10 of the snapshot's compressed text ANN
    against exact search.
``vectors``
    Text vectors and their compressed index at ``n`` (1M) without the lexical build: index
    build time and size, RSS of the product store, the memory-mapped vectors with the index
    and the query embedder (fresh process), recall@10 against exact search.
``image``
    A compressed ANN over image-sized vectors (2173-d, like the ``lite0`` photo vectors):
    SYNTHETIC vectors made around real ``lite0`` vectors of the fashion photos when
    ``var/bench/fashion-text-none`` exists, recall@10 against exact search, bytes per vector.

Where the cache holds fewer real vectors than ``n``, the rest are synthetic
(:func:`synthetic_vectors`) and every result says how many of each.

Usage::

    nice -n 10 python -m benchmarks.scale embed --n 1000000        # long: hours on 2 cores
    python -m benchmarks.scale run --n 100000 --kind hnsw-sq8
    python -m benchmarks.scale vectors --n 1000000 --kind hnsw-sq8
    python -m benchmarks.scale image --n 100000
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from api.service import open_snapshot
from benchmarks.catalogue_gen import CatalogueGenerator, write_catalogue
from benchmarks.common import percentile, results_dir, rss_bytes, with_keyboard_typo

#: Products per cached vector chunk.
CHUNK = 10_000

#: Default cache and work folder (git-ignored).
WORK = Path("var/bench")


def vector_dir(seed: int) -> Path:
    """Folder of the cached text-vector chunks of catalogue ``seed``."""
    return WORK / f"scale-vectors-s{seed}"


def _chunk_path(seed: int, chunk: int) -> Path:
    return vector_dir(seed) / f"chunk-{chunk:05d}.npy"


# --------------------------------------------------------------------------------------------
# Embedding cache


def embed(n: int, seed: int, embedder_spec: str = "minilm", batch_size: int = 64) -> None:
    """Embed the first ``n`` generated products into the chunk cache (missing chunks only).

    Args:
        n: Products to cover (rounded up to whole chunks).
        seed: Catalogue seed.
        embedder_spec: Text embedder spec, as the indexer takes it.
        batch_size: Texts per encoding batch.
    """
    from indexer.build import embedding_text
    from models.text import load_text_embedder
    from search.types import Product

    embedder = load_text_embedder(embedder_spec)
    if embedder is None:
        raise ValueError(f"embedder {embedder_spec!r} gives no vectors")
    embedder.warm_up()
    generator = CatalogueGenerator(seed)
    folder = vector_dir(seed)
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "timing.jsonl"
    for chunk in range((n + CHUNK - 1) // CHUNK):
        path = _chunk_path(seed, chunk)
        if path.exists():
            continue
        texts = []
        for row in generator.products(CHUNK, start=chunk * CHUNK):
            product = Product(
                id=row["id"],
                title=row["title"],
                brand=row["brand"],
                categories=tuple(tuple(p) for p in row["categories"]),
            )
            texts.append(embedding_text(product))
        started = time.perf_counter()
        # As the indexer does: embed in length order so batches pad little.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        vectors = np.zeros((len(texts), embedder.dim), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            batch = order[start : start + batch_size]
            vectors[batch] = embedder.embed_documents(
                [texts[i] for i in batch], batch_size=batch_size
            )
        seconds = time.perf_counter() - started
        tmp = path.with_name(path.name + ".tmp.npy")
        np.save(tmp, vectors, allow_pickle=False)
        tmp.replace(path)
        with log.open("a") as fh:
            fh.write(
                json.dumps({"chunk": chunk, "products": len(texts), "seconds": seconds}) + "\n"
            )
        print(f"chunk {chunk}: {len(texts)} products in {seconds:.1f} s", flush=True)


def cached_vectors(n: int, seed: int) -> npt.NDArray[np.float32] | None:
    """The first ``n`` cached text vectors, or None when the cache does not cover them."""
    chunks = (n + CHUNK - 1) // CHUNK
    if not all(_chunk_path(seed, c).exists() for c in range(chunks)):
        return None
    first = np.load(_chunk_path(seed, 0), mmap_mode="r")
    out = np.empty((n, first.shape[1]), dtype=np.float32)
    for c in range(chunks):
        part = np.load(_chunk_path(seed, c))
        end = min((c + 1) * CHUNK, n)
        out[c * CHUNK : end] = part[: end - c * CHUNK]
    return out


def embed_rate(seed: int) -> float | None:
    """Measured embedding seconds per product from the cache's timing log, or None."""
    log = vector_dir(seed) / "timing.jsonl"
    if not log.exists():
        return None
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    products = sum(r["products"] for r in rows)
    return sum(r["seconds"] for r in rows) / products if products else None


# --------------------------------------------------------------------------------------------
# Catalogue and lexical build


def catalogue_path(n: int, seed: int) -> Path:
    """Where the generated catalogue of ``n`` products is written."""
    return WORK / f"catalogue-{n}-s{seed}.jsonl"


class StageClock:
    """Progress callback that records each build stage's first and last report."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.spans: dict[str, list[float]] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.perf_counter()
        if stage not in self.spans or (done % 100_000 == 0 and done):
            # Partial timings for a run that is stopped before it ends.
            print(f"{now - self.started:8.1f} s  {stage} {done}/{total}", flush=True)
        span = self.spans.setdefault(stage, [now, now])
        span[1] = now

    def seconds(self) -> dict[str, float]:
        """Seconds per stage, from the end of the previous stage to the stage's last report."""
        out: dict[str, float] = {}
        previous = self.started
        for stage, (_, end) in self.spans.items():
            out[stage] = round(end - previous, 1)
            previous = end
        return out


def build_lexical(n: int, seed: int) -> dict[str, Any]:
    """Generate the catalogue (when missing) and build its snapshot without text vectors.

    The text vectors are attached afterwards (:func:`attach_vectors`) from the cache, so the
    long embedding and the analysis can run apart.

    Returns:
        Timings (generation, per build stage, total) and the snapshot folder.
    """
    from indexer.build import BuildConfig, build_from_catalogue

    path = catalogue_path(n, seed)
    generated = 0.0
    if not path.exists():
        started = time.perf_counter()
        write_catalogue(path, n, seed)
        generated = time.perf_counter() - started
    out = WORK / f"scale-lex-{n}-s{seed}"
    clock = StageClock()
    config = BuildConfig(embedder="none", overwrite=True, photo_colours=False)
    build_from_catalogue(path, out, config=config, progress=clock)
    total = time.perf_counter() - clock.started
    result = {
        "n": n,
        "seed": seed,
        "catalogue_bytes": path.stat().st_size,
        "generate_s": round(generated, 1),
        "stages_s": clock.seconds(),
        "total_s": round(total, 1),
        "max_rss_build_bytes": _max_rss_self(),
        "snapshot": str(out),
    }
    (WORK / f"scale-lex-{n}-s{seed}.json").write_text(json.dumps(result, indent=2))
    return result


def _max_rss_self() -> int:
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


# --------------------------------------------------------------------------------------------
# Text vectors: real (cached MiniLM) or, past what was embedded, synthetic


def synthetic_vectors(
    real: npt.NDArray[np.float32],
    n: int,
    seed: int = 0,
    noise: float = 0.5,
    out: npt.NDArray[np.float32] | None = None,
) -> npt.NDArray[np.float32]:
    """``n`` unit vectors shaped like ``real``: each a real vector plus Gaussian noise in the
    real vectors' own principal subspace (so the spectrum and clustering stay alike).

    Only for measuring memory and ANN behaviour past the vectors that could be embedded in
    time; results on them are labelled synthetic.

    Args:
        real: Real unit vectors to imitate.
        n: Number of vectors to make.
        seed: Random seed.
        noise: Noise scale, relative to the real vectors' spread along each principal axis.
        out: Where to write them (e.g. a memory-mapped file), or None for a new array.

    Returns:
        ``out`` (or the new array) holding ``n`` unit rows.
    """
    rng = np.random.default_rng(seed)
    sample = real[rng.choice(len(real), size=min(len(real), 20_000), replace=False)]
    mean = sample.mean(axis=0)
    _, singular, basis = np.linalg.svd(sample - mean, full_matrices=False)
    scale = (singular / np.sqrt(len(sample))).astype(np.float32)
    if out is None:
        out = np.empty((n, real.shape[1]), dtype=np.float32)
    for start in range(0, n, 50_000):
        m = min(50_000, n - start)
        base = np.asarray(real[np.sort(rng.integers(0, len(real), m))], dtype=np.float32)
        jitter = (rng.standard_normal((m, len(scale))).astype(np.float32) * scale) @ basis
        rows = base + noise * jitter.astype(np.float32)
        out[start : start + m] = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    return out


def text_vectors(n: int, seed: int) -> tuple[npt.NDArray[np.float32], int]:
    """Text vectors for ``n`` products: the cached MiniLM vectors where the cache covers them,
    then synthetic ones (:func:`synthetic_vectors`).

    Returns:
        The vectors and how many of them are real.
    """
    chunks = 0
    while _chunk_path(seed, chunks).exists():
        chunks += 1
    real_n = min(n, chunks * CHUNK)
    if real_n == 0:
        raise RuntimeError(f"no cached text vectors in {vector_dir(seed)}: run the embed step")
    real = cached_vectors(real_n, seed)
    assert real is not None
    if real_n == n:
        return real, n
    out = np.empty((n, real.shape[1]), dtype=np.float32)
    out[:real_n] = real
    out[real_n:] = synthetic_vectors(real, n - real_n, seed)
    return out, real_n


def attach_vectors(
    lexical_dir: Path, out_dir: Path, vectors: npt.NDArray[np.float32], kind: str
) -> dict[str, Any]:
    """Publish ``lexical_dir`` plus text vectors and their index as a new snapshot.

    The lexical snapshot's files are hard-linked (not copied); the manifest gains the
    embedder, the vector count and ``settings["text_index"]``, as ``indexer.build`` writes
    them.

    Returns:
        Seconds to write the vectors and to build the index, and the index kind.
    """
    import faiss

    from search.index.snapshot import (
        MANIFEST,
        TEXT_ANN,
        TEXT_COMPRESSED,
        TEXT_VECTORS,
        SnapshotWriter,
    )
    from search.retrievers import build_vector_index

    base = json.loads((lexical_dir / MANIFEST).read_text())
    with SnapshotWriter(out_dir, overwrite=True) as writer:
        for name in base["files"]:
            os.link(lexical_dir / name, writer.path(name))
        started = time.perf_counter()
        with writer.path(TEXT_VECTORS).open("wb") as fh:
            np.save(fh, vectors, allow_pickle=False)
        written = time.perf_counter() - started
        started = time.perf_counter()
        index = build_vector_index(vectors, kind)
        indexed = time.perf_counter() - started
        if index is not None:
            name = TEXT_ANN if kind == "hnsw" else TEXT_COMPRESSED
            faiss.write_index(index, str(writer.path(name)))
        del index
        writer.commit(
            catalogue_checksum=base["catalogue_checksum"],
            languages=tuple(base["languages"]),
            counts=base["counts"] | {"text_vectors": len(vectors)},
            models=base["models"]
            | {
                "text_embedder": "minilm",
                "text_embedder_version": "benchmark cache",
                "text_embedder_dim": str(vectors.shape[1]),
            },
            settings=base.get("settings", {}) | {"text_index": kind},
        )
    return {"kind": kind, "write_vectors_s": round(written, 1), "index_s": round(indexed, 1)}


def attach_prebuilt(n: int, seed: int, kind: str) -> Path:
    """Publish the lexical snapshot of ``n`` products plus the text vectors and index that the
    ``vectors`` step built (hard links, nothing rebuilt) as ``scale-<n>-s<seed>-<kind>``.

    Returns:
        The snapshot folder.

    Raises:
        FileNotFoundError: the lexical snapshot or the ``vectors`` step's files are missing.
    """
    from search.index.snapshot import (
        MANIFEST,
        TEXT_ANN,
        TEXT_COMPRESSED,
        TEXT_VECTORS,
        SnapshotWriter,
    )

    lexical_dir = WORK / f"scale-lex-{n}-s{seed}"
    vectors_file = WORK / f"scale-vectors-{n}-s{seed}.npy"
    index_file = WORK / f"scale-vectors-{n}-s{seed}.{kind}"
    for path in (lexical_dir / MANIFEST, vectors_file, index_file):
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: run the build and vectors steps first")
    base = json.loads((lexical_dir / MANIFEST).read_text())
    out_dir = WORK / f"scale-{n}-s{seed}-{kind}"
    with SnapshotWriter(out_dir, overwrite=True) as writer:
        for name in base["files"]:
            os.link(lexical_dir / name, writer.path(name))
        os.link(vectors_file, writer.path(TEXT_VECTORS))
        os.link(index_file, writer.path(TEXT_ANN if kind == "hnsw" else TEXT_COMPRESSED))
        writer.commit(
            catalogue_checksum=base["catalogue_checksum"],
            languages=tuple(base["languages"]),
            counts=base["counts"] | {"text_vectors": n},
            models=base["models"]
            | {
                "text_embedder": "minilm",
                "text_embedder_version": "benchmark cache",
                "text_embedder_dim": str(np.load(vectors_file, mmap_mode="r").shape[1]),
            },
            settings=base.get("settings", {}) | {"text_index": kind},
        )
    return out_dir


def snapshot_bytes(folder: Path) -> dict[str, int]:
    """Size of each file of a snapshot, and ``total``."""
    sizes = {p.name: p.stat().st_size for p in sorted(folder.iterdir()) if p.is_file()}
    return sizes | {"total": sum(sizes.values())}


# --------------------------------------------------------------------------------------------
# Queries


@dataclass(frozen=True, slots=True)
class BenchQuery:
    """One benchmark query: its set, text and filters (as ``SearchRequest`` keywords)."""

    kind: str
    text: str
    brand: str | None = None
    category: str | None = None
    price_max: float | None = None
    in_stock: bool = False


def make_queries(n_products: int, seed: int, count: int) -> list[BenchQuery]:
    """``count`` queries per set, written from random generated products.

    Sets: ``text`` (a product's noun phrase, sometimes with a modifier, colour or material),
    ``typo`` (the same with one keyboard typo), ``filtered`` (text plus a category, brand,
    price or stock filter), ``brand`` (a brand name and a noun).
    """
    generator = CatalogueGenerator(seed)
    rng = random.Random(seed + 99)
    out: list[BenchQuery] = []
    for kind in ("text", "typo", "filtered", "brand"):
        for _ in range(count):
            row = generator.product(rng.randrange(n_products))
            noun = row["categories"][0][2].lower()
            words = [noun]
            roll = rng.random()
            if roll < 0.3:
                words.insert(0, row["colours"][0].lower())
            elif roll < 0.5:
                words.insert(0, row["attributes"]["material"].lower())
            text = " ".join(words)
            if kind == "typo":
                out.append(BenchQuery(kind, with_keyboard_typo(text, rng)))
            elif kind == "filtered":
                which = rng.randrange(4)
                out.append(
                    BenchQuery(
                        kind,
                        text,
                        category=" > ".join(row["categories"][0][:2]) if which == 0 else None,
                        brand=row["brand"] if which == 1 else None,
                        price_max=row["price"] * 1.5 if which == 2 else None,
                        in_stock=which == 3,
                    )
                )
            elif kind == "brand":
                out.append(BenchQuery(kind, f"{row['brand'].split()[0].lower()} {noun}"))
            else:
                out.append(BenchQuery(kind, text))
    return out


def _request(query: BenchQuery, k: int) -> Any:
    from search.index.store import parse_category
    from search.types import Availability, Filters, SearchRequest

    filters = Filters(
        brands=(query.brand,) if query.brand else (),
        categories=(parse_category(query.category),) if query.category else (),
        price_max=query.price_max,
        availability=(Availability.IN_STOCK,) if query.in_stock else (),
    )
    return SearchRequest(query.text, k=k, filters=filters)


# --------------------------------------------------------------------------------------------
# Serving measurement (run in a fresh process: ``python -m benchmarks.scale serve-probe``)


def serve_probe(snapshot: Path, queries: int, seed: int, semantic: bool) -> dict[str, Any]:
    """Load a snapshot as the service does and measure RSS and search latency.

    Returns:
        Load seconds, RSS before and after loading and after the queries (with the
        anonymous / file-backed split from ``/proc``), p50/p99/mean per query set.
    """
    from models.runtime import limit_cpu_threads

    limit_cpu_threads(1)  # as the service does (PRODUCTSEARCH_MODEL_THREADS)
    rss_start = rss_bytes(os.getpid())
    started = time.perf_counter()
    engine = open_snapshot(snapshot, use_semantic=semantic, use_images=False)
    load_s = time.perf_counter() - started
    gc.collect()
    rss_loaded = rss_bytes(os.getpid())
    loaded_split = _rss_split()
    n = len(engine)
    bench = make_queries(n, seed, queries)
    # Warm-up: first queries build lazy structures (suggester aside) and fill caches.
    for query in bench[:20]:
        engine.search(_request(query, 10))
    latencies: dict[str, list[float]] = {}
    totals: dict[str, int] = {}
    for query in bench:
        request = _request(query, 10)
        t0 = time.perf_counter()
        result = engine.search(request)
        latencies.setdefault(query.kind, []).append((time.perf_counter() - t0) * 1000.0)
        totals[query.kind] = totals.get(query.kind, 0) + (1 if result.hits else 0)
    all_ms = [v for values in latencies.values() for v in values]
    totals["all"] = sum(totals.values())
    return {
        "products": n,
        "semantic": semantic and engine.vector_index is not None,
        "vector_index": engine.vector_index.kind if engine.vector_index else None,
        "load_s": round(load_s, 1),
        "rss_start_bytes": rss_start,
        "rss_loaded_bytes": rss_loaded,
        "rss_loaded_split": loaded_split,
        "rss_after_queries_bytes": rss_bytes(os.getpid()),
        "rss_after_queries_split": _rss_split(),
        "peak_rss_bytes": _max_rss_self(),
        "latency_ms": {
            kind: _latency(values) | {"with_hits": totals.get(kind, 0)}
            for kind, values in [*latencies.items(), ("all", all_ms)]
        },
    }


def _latency(values: Sequence[float]) -> dict[str, Any]:
    return {
        "queries": len(values),
        "p50": round(percentile(values, 50), 2),
        "p99": round(percentile(values, 99), 2),
        "mean": round(sum(values) / max(len(values), 1), 2),
    }


def _rss_split(pid: int | None = None) -> dict[str, int]:
    """``RssAnon`` / ``RssFile`` of a process (this one by default, bytes), where ``/proc``
    tells."""
    out: dict[str, int] = {}
    try:
        status = Path(f"/proc/{pid if pid is not None else 'self'}/status")
        for line in status.read_text().splitlines():
            if line.startswith(("RssAnon:", "RssFile:", "RssShmem:")):
                key, value = line.split(":", 1)
                out[key] = int(value.split()[0]) * 1024
    except OSError:
        pass
    return out


def service_probe(snapshot: Path, queries: int, seed: int, semantic: bool) -> dict[str, Any]:
    """Serve a snapshot with ``productsearch serve`` as a shop runs it (events, behaviour and
    personalisation on, the suggester built at start-up) and measure the server process: RSS
    after start-up, after shoppers' events and after ``4 x queries`` searches over HTTP (one
    keep-alive client, each search in a shopper's session), and client-side latency.

    Returns:
        Start-up seconds, the server's RSS (with its anonymous / file-backed split) at each
        step, and p50/p99 per query set.
    """
    import tempfile

    import httpx

    from benchmarks.load import start_service

    with tempfile.TemporaryDirectory(prefix="scale-service-", dir=snapshot.parent) as tmp:
        started = time.perf_counter()
        service = start_service(
            snapshot, Path(tmp), semantic=semantic, startup_timeout_s=1800, link=True
        )
        try:
            assert service.proc is not None
            pid = service.proc.pid
            out: dict[str, Any] = {
                "startup_s": round(time.perf_counter() - started, 1),
                "rss_ready_bytes": rss_bytes(pid),
                "rss_ready_split": _rss_split(pid),
            }
            bench = make_queries(_products_in(snapshot), seed, queries)
            headers = {"Authorization": f"Bearer {service.search_token}"}
            with httpx.Client(base_url=service.base_url, timeout=120, headers=headers) as http:
                # Shoppers who clicked: their profiles and the products' signals are built.
                first = http.get("/search", params={"q": bench[0].text, "k": 10}).json()
                clicked = [h["id"] for h in first["hits"]] or ["none"]
                events = [
                    {
                        "type": "click",
                        "session_id": f"s{i % 50}",
                        "product_id": clicked[i % len(clicked)],
                        "query": bench[i].text,
                        "position": 1,
                    }
                    for i in range(200)
                ]
                http.post("/events", json={"events": events}).raise_for_status()
                time.sleep(2)
                out["rss_after_events_bytes"] = rss_bytes(pid)
                latencies: dict[str, list[float]] = {}
                for i, query in enumerate(bench):
                    params = _http_params(query) | {"session_id": f"s{i % 50}"}
                    t0 = time.perf_counter()
                    http.get("/search", params=params).raise_for_status()
                    latencies.setdefault(query.kind, []).append((time.perf_counter() - t0) * 1000)
            out["rss_after_queries_bytes"] = rss_bytes(pid)
            out["rss_after_queries_split"] = _rss_split(pid)
            all_ms = [v for values in latencies.values() for v in values]
            out["latency_ms"] = {
                kind: _latency(values) for kind, values in [*latencies.items(), ("all", all_ms)]
            }
            return {"products": _products_in(snapshot), "semantic": semantic} | out
        finally:
            service.stop()


def _products_in(snapshot: Path) -> int:
    from search.index.snapshot import read_manifest

    return int(read_manifest(snapshot, verify=False).counts["products"])


def _http_params(query: BenchQuery) -> dict[str, Any]:
    """``GET /search`` parameters of a benchmark query."""
    params: dict[str, Any] = {"q": query.text, "k": 10}
    if query.brand:
        params["brand"] = query.brand
    if query.category:
        params["category"] = query.category
    if query.price_max is not None:
        params["price_max"] = query.price_max
    if query.in_stock:
        params["availability"] = "in_stock"
    return params


def run_probe(snapshot: Path, queries: int, seed: int, semantic: bool) -> dict[str, Any]:
    """:func:`serve_probe` in a fresh interpreter (RSS of only what serving loads)."""
    command = [
        sys.executable,
        "-m",
        "benchmarks.scale",
        "serve-probe",
        "--snapshot",
        str(snapshot),
        "--queries",
        str(queries),
        "--seed",
        str(seed),
    ] + ([] if semantic else ["--lexical"])
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


# --------------------------------------------------------------------------------------------
# ANN recall against exact search


def exact_top(
    vectors: npt.NDArray[np.float32], queries: npt.NDArray[np.float32], k: int
) -> npt.NDArray[np.int64]:
    """Exact inner-product top ``k`` per query, streaming over ``vectors`` in blocks."""
    best_s = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(queries), k), dtype=np.int64)
    for start in range(0, len(vectors), 100_000):
        block = np.asarray(vectors[start : start + 100_000], dtype=np.float32)
        sims = queries @ block.T
        top = np.argpartition(-sims, min(k, sims.shape[1] - 1), axis=1)[:, :k]
        cand_s = np.concatenate([best_s, np.take_along_axis(sims, top, 1)], axis=1)
        cand_i = np.concatenate([best_i, top + start], axis=1)
        order = np.argsort(-cand_s, axis=1)[:, :k]
        best_s = np.take_along_axis(cand_s, order, 1)
        best_i = np.take_along_axis(cand_i, order, 1)
    return best_i


def recall_report(
    stored: npt.NDArray[np.float32],
    ann: Any,
    probe: npt.NDArray[np.float32],
    n: int,
    real_n: int,
    filter_fractions: Sequence[float],
) -> dict[str, Any]:
    """recall@10 rows unfiltered and under random filters keeping ``filter_fractions`` of the
    products (32 probes), with how many of the ``n`` vectors are real MiniLM ones."""
    rows = ann_recall(stored, ann, probe)
    for fraction in filter_fractions:
        rows += ann_recall(stored, ann, probe, nprobes=(32,), filter_fraction=fraction)
    return {
        "queries": len(probe),
        "note": (
            "real MiniLM vectors"
            if real_n == n
            else f"first {real_n} real MiniLM vectors, the other {n - real_n} SYNTHETIC"
        ),
        "rows": rows,
    }


def ann_recall(
    vectors: npt.NDArray[np.float32],
    ann: Any,
    queries: npt.NDArray[np.float32],
    *,
    nprobes: Sequence[int] = (8, 16, 32, 64),
    rerank: int = 100,
    filter_fraction: float | None = None,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """recall@10 of :class:`search.retrievers.VectorIndex` over ``ann`` against exact search.

    Args:
        vectors: The indexed vectors (may be memory-mapped).
        ann: The faiss index.
        queries: Query vectors.
        nprobes: IVF probe counts to try (one row each; HNSW ignores them).
        rerank: Candidates re-scored exactly.
        filter_fraction: When set, a random filter keeping this fraction of the products.
        seed: Filter seed.

    Returns:
        One row per ``nprobe``: recall@10, mean and p99 ms per query.
    """
    from search.retrievers import VectorIndex

    allowed = None
    if filter_fraction is not None:
        allowed = np.random.default_rng(seed).random(len(vectors)) < filter_fraction
        docs = np.flatnonzero(allowed)
        local = exact_top(vectors[docs], queries, 10)
        truth = docs[local]
    else:
        truth = exact_top(vectors, queries, 10)
    rows = []
    for nprobe in nprobes:
        index = VectorIndex(vectors, ann, nprobe=nprobe, rerank=rerank)
        found = 0
        ms: list[float] = []
        for q, expected in zip(queries, truth, strict=True):
            t0 = time.perf_counter()
            _, docs_found = index.search(q, 10, allowed)
            ms.append((time.perf_counter() - t0) * 1000.0)
            found += len(set(expected.tolist()) & set(docs_found.tolist()))
        rows.append(
            {
                "nprobe": nprobe,
                "rerank": rerank,
                "filter_fraction": filter_fraction,
                "recall_at_10": round(found / (10 * len(queries)), 4),
                "mean_ms": round(sum(ms) / len(ms), 2),
                "p99_ms": round(percentile(ms, 99), 2),
            }
        )
        if index.kind in ("hnsw", "hnsw-sq8", "flat"):
            break
    return rows


def query_vectors(n_products: int, seed: int, count: int) -> npt.NDArray[np.float32]:
    """MiniLM vectors of ``count`` benchmark query texts (text and typo sets)."""
    from models.text import load_text_embedder

    embedder = load_text_embedder("minilm")
    assert embedder is not None
    embedder.warm_up()
    texts = [
        q.text for q in make_queries(n_products, seed, count // 2) if q.kind in ("text", "typo")
    ]
    return np.asarray(embedder.embed_queries(texts), dtype=np.float32)


# --------------------------------------------------------------------------------------------
# Image-sized vectors

#: Width of the service's ``lite0`` photo vectors (Lite0 GeM features + colour histogram +
#: layout thumbnail, see ``models/image.py``).
IMAGE_DIM = 2173


def real_image_vectors() -> tuple[npt.NDArray[np.float32], str]:
    """Real ``lite0`` photo vectors from a fashion snapshot built by ``benchmarks.fashion_image``
    (``var/bench/fashion-text-none``), or random clustered ones when there is none.

    Returns:
        The vectors and a description of where they come from.
    """
    folder = WORK / "fashion-text-none"
    vectors_path = folder / "image_vectors.npy"
    if vectors_path.exists():
        vectors = np.load(vectors_path, mmap_mode="r")
        has = np.load(folder / "image_has_vector.npy").astype(bool)
        if vectors.shape[1] == IMAGE_DIM and has.any():
            real = np.asarray(vectors[np.flatnonzero(has)], dtype=np.float32)
            return real, f"{len(real)} real lite0 vectors of fashion photos ({folder})"
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((500, IMAGE_DIM)).astype(np.float32)
    rows = centres[rng.integers(0, 500, 5000)] + rng.standard_normal((5000, IMAGE_DIM)).astype(
        np.float32
    )
    return rows / np.linalg.norm(rows, axis=1, keepdims=True), "random clustered vectors"


def image_bench(n: int, kinds: Sequence[str], queries: int = 200) -> dict[str, Any]:
    """Compressed ANN over ``n`` synthetic image-sized vectors: build time, bytes per vector,
    recall@10 against exact search (unfiltered and with a 10% filter), latency.

    The vectors are synthetic (:func:`synthetic_vectors` around real ``lite0`` photo vectors
    when a fashion snapshot is at hand) and kept in a memory-mapped file, as a snapshot's are.
    """
    import faiss

    from search.retrievers import build_ivf

    real, source = real_image_vectors()
    path = WORK / f"scale-image-{n}.npy"
    if not path.exists():
        tmp = path.with_name(path.name + ".tmp.npy")
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, IMAGE_DIM))
        synthetic_vectors(real, n, seed=1, out=out)
        out.flush()
        del out
        tmp.replace(path)
    vectors = np.load(path, mmap_mode="r")
    probe = synthetic_vectors(real, queries, seed=2)
    result: dict[str, Any] = {
        "n": n,
        "dim": IMAGE_DIM,
        "vectors": f"SYNTHETIC: real vector + noise in its principal subspace, from {source}",
        "float_bytes": int(n * IMAGE_DIM * 4),
        "kinds": {},
    }
    for kind in kinds:
        started = time.perf_counter()
        ann = build_ivf(vectors, kind)
        build_s = time.perf_counter() - started
        size = len(faiss.serialize_index(ann))
        rows = ann_recall(vectors, ann, probe, nprobes=(8, 16, 32, 64))
        rows += ann_recall(vectors, ann, probe, nprobes=(32,), filter_fraction=0.1)
        result["kinds"][kind] = {
            "build_s": round(build_s, 1),
            "index_bytes": size,
            "bytes_per_vector": round(size / n, 1),
            "nlist": int(ann.nlist),
            "recall": rows,
        }
        print(json.dumps({kind: result["kinds"][kind]}), flush=True)
        del ann
    return result


# --------------------------------------------------------------------------------------------
# The whole run


def run(n: int, seed: int, kind: str, queries: int, recall_queries: int) -> dict[str, Any]:
    """Build (or reuse) the lexical snapshot, attach text vectors, probe serving and recall.

    Returns:
        Everything measured; also written to ``benchmarks/results/scale-<n>.json``.
    """
    import faiss

    from search.index.snapshot import TEXT_ANN, TEXT_COMPRESSED
    from search.retrievers import choose_index_kind

    lexical_dir = WORK / f"scale-lex-{n}-s{seed}"
    build_log = WORK / f"scale-lex-{n}-s{seed}.json"
    build = (
        json.loads(build_log.read_text())
        if build_log.exists() and lexical_dir.exists()
        else build_lexical(n, seed)
    )
    print(json.dumps({"build": build}), flush=True)
    result: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared), {platform.python_version()}",
        "n": n,
        "seed": seed,
        "build": build,
        "lexical_snapshot_bytes": snapshot_bytes(lexical_dir)["total"],
    }
    result["serve_lexical"] = run_probe(lexical_dir, queries, seed, semantic=False)
    print(json.dumps({"serve_lexical": result["serve_lexical"]}), flush=True)

    vectors, real_n = text_vectors(n, seed)
    rate = embed_rate(seed)
    kind = choose_index_kind(n, kind)
    full_dir = WORK / f"scale-{n}-s{seed}-{kind}"
    attach = attach_vectors(lexical_dir, full_dir, vectors, kind)
    result["vectors"] = {
        "real_minilm": real_n,
        "synthetic": n - real_n,
        "embed_s_per_product": rate,
        "embed_s_estimated_for_n": round(rate * n, 0) if rate else None,
    } | attach
    del vectors
    gc.collect()
    result["snapshot_bytes"] = snapshot_bytes(full_dir)
    result["serve_semantic"] = run_probe(full_dir, queries, seed, semantic=True)
    print(json.dumps({"serve_semantic": result["serve_semantic"]}), flush=True)

    stored = np.load(full_dir / "text_vectors.npy", mmap_mode="r")
    name = TEXT_ANN if kind == "hnsw" else TEXT_COMPRESSED
    ann = faiss.read_index(str(full_dir / name)) if kind != "flat" else None
    result["text_recall"] = recall_report(
        stored, ann, query_vectors(n, seed, recall_queries), n, real_n, (0.1, 0.03)
    )
    out = results_dir() / f"scale-{n}.json"
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps({"text_recall": result["text_recall"]}), flush=True)
    print(f"wrote {out}")
    if os.environ.get("SCALE_CLEAN"):
        shutil.rmtree(full_dir, ignore_errors=True)
    return result


def memory_probe(n: int, seed: int, index_file: Path, vectors_file: Path) -> dict[str, Any]:
    """RSS of the biggest serving parts at ``n`` products, measured one after the other in this
    process: the product store (the catalogue's products), the text vectors (memory-mapped)
    with their ANN index, and the query embedder.

    Returns:
        RSS after each part and the seconds each took.
    """
    import faiss

    from indexer.catalogue import read_catalogue
    from models.runtime import limit_cpu_threads
    from models.text import load_text_embedder
    from search.index.store import ProductStore
    from search.retrievers import VectorIndex

    limit_cpu_threads(1)  # as the service does (PRODUCTSEARCH_MODEL_THREADS)
    out: dict[str, Any] = {"rss_start_bytes": rss_bytes(os.getpid())}
    started = time.perf_counter()
    products = read_catalogue(catalogue_path(n, seed)).products
    store = ProductStore(products)
    del products
    gc.collect()
    out["store_s"] = round(time.perf_counter() - started, 1)
    out["rss_store_bytes"] = rss_bytes(os.getpid())
    started = time.perf_counter()
    vectors = np.load(vectors_file, mmap_mode="r")
    index = VectorIndex(vectors, faiss.read_index(str(index_file)))
    out["vector_index_s"] = round(time.perf_counter() - started, 1)
    out["vector_index_kind"] = index.kind
    out["rss_vectors_bytes"] = rss_bytes(os.getpid())
    embedder = load_text_embedder("minilm")
    assert embedder is not None
    embedder.warm_up()
    query = embedder.embed_queries(["cordless drill"])[0]
    ms = []
    for _ in range(50):
        t0 = time.perf_counter()
        index.search(query, 200)
        ms.append((time.perf_counter() - t0) * 1000.0)
    out["vector_search_200_ms"] = _latency(ms)
    out["rss_embedder_bytes"] = rss_bytes(os.getpid())
    out["rss_split"] = _rss_split()
    out["products"] = len(store)
    return out


def vectors_at_scale(n: int, seed: int, kind: str, recall_queries: int) -> dict[str, Any]:
    """Text vectors and their compressed index at ``n`` products (real where embedded, then
    synthetic), built here; memory measured in a fresh process (:func:`memory_probe`);
    recall@10 against exact search.

    Returns:
        Build time and size of the index, the memory probe and the recall rows.
    """
    import faiss

    from search.retrievers import build_vector_index, choose_index_kind

    kind = choose_index_kind(n, kind)
    vectors, real_n = text_vectors(n, seed)
    vectors_file = WORK / f"scale-vectors-{n}-s{seed}.npy"
    np.save(vectors_file, vectors, allow_pickle=False)
    started = time.perf_counter()
    index = build_vector_index(vectors, kind)
    build_s = time.perf_counter() - started
    index_file = WORK / f"scale-vectors-{n}-s{seed}.{kind}"
    faiss.write_index(index, str(index_file))
    del index, vectors
    gc.collect()
    result: dict[str, Any] = {
        "n": n,
        "kind": kind,
        "real_minilm": real_n,
        "synthetic": n - real_n,
        "index_build_s": round(build_s, 1),
        "index_bytes": index_file.stat().st_size,
        "vectors_bytes": vectors_file.stat().st_size,
    }
    print(json.dumps(result), flush=True)
    command = [
        sys.executable, "-m", "benchmarks.scale", "memory-probe", "--n", str(n),
        "--seed", str(seed), "--index-file", str(index_file), "--vectors-file", str(vectors_file),
    ]  # fmt: skip
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    result["memory"] = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps({"memory": result["memory"]}), flush=True)
    stored = np.load(vectors_file, mmap_mode="r")
    ann = faiss.read_index(str(index_file))
    result["recall"] = recall_report(
        stored, ann, query_vectors(n, seed, recall_queries), n, real_n, (0.1,)
    )
    out = results_dir() / f"scale-vectors-{n}-{kind}.json"
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps({"recall": result["recall"]}), flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    """Command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="step", required=True)
    p_embed = sub.add_parser("embed", help="embed generated products into the vector cache")
    p_run = sub.add_parser("run", help="build, serve and measure")
    p_image = sub.add_parser("image", help="compressed ANN over image-sized vectors")
    p_probe = sub.add_parser("serve-probe", help="(internal) load a snapshot and measure")
    p_service = sub.add_parser(
        "service-probe", help="serve a snapshot with `productsearch serve`: RSS and latency"
    )
    p_service.add_argument("--snapshot", type=Path, required=True)
    p_service.add_argument("--queries", type=int, default=500, help="queries per set (4 sets)")
    p_service.add_argument("--seed", type=int, default=0)
    p_service.add_argument("--lexical", action="store_true", help="no query embeddings")
    p_vec = sub.add_parser("vectors", help="text vectors + compressed index at n: memory, recall")
    p_mem = sub.add_parser("memory-probe", help="(internal) RSS of store, vectors, embedder")
    p_att = sub.add_parser("attach", help="lexical snapshot + the vectors step's files")
    p_att.add_argument("--n", type=int, default=1_000_000)
    p_att.add_argument("--seed", type=int, default=0)
    p_att.add_argument("--kind", default="hnsw-sq8")
    p_vec.add_argument("--kind", default="auto")
    p_vec.add_argument("--recall-queries", type=int, default=400)
    p_mem.add_argument("--index-file", type=Path, required=True)
    p_mem.add_argument("--vectors-file", type=Path, required=True)
    for p in (p_embed, p_run, p_image, p_vec, p_mem):
        p.add_argument("--n", type=int, default=1_000_000, help="number of products / vectors")
    for p in (p_embed, p_run, p_probe, p_vec, p_mem):
        p.add_argument("--seed", type=int, default=0, help="catalogue seed")
    p_run.add_argument("--kind", default="auto", help="text vector index: auto, hnsw, ivf-sq8...")
    p_run.add_argument("--queries", type=int, default=1000, help="queries per set (4 sets)")
    p_run.add_argument("--recall-queries", type=int, default=400)
    p_image.add_argument("--kinds", default="ivf-pq,ivf-sq8")
    p_image.add_argument("--queries", type=int, default=200)
    p_probe.add_argument("--snapshot", type=Path, required=True)
    p_probe.add_argument("--queries", type=int, default=1000)
    p_probe.add_argument("--lexical", action="store_true", help="no text vectors")
    args = parser.parse_args(argv)
    if args.step == "embed":
        embed(args.n, args.seed)
    elif args.step == "run":
        run(args.n, args.seed, args.kind, args.queries, args.recall_queries)
    elif args.step == "image":
        result = image_bench(args.n, args.kinds.split(","), args.queries)
        out = results_dir() / f"scale-image-{args.n}.json"
        out.write_text(json.dumps(result, indent=2))
        print(f"wrote {out}")
    elif args.step == "vectors":
        vectors_at_scale(args.n, args.seed, args.kind, args.recall_queries)
    elif args.step == "attach":
        print(attach_prebuilt(args.n, args.seed, args.kind))
    elif args.step == "service-probe":
        result = service_probe(args.snapshot, args.queries, args.seed, not args.lexical)
        out = results_dir() / f"scale-service-{result['products']}.json"
        out.write_text(json.dumps(result, indent=2))
        print(json.dumps(result))
    elif args.step == "memory-probe":
        print(json.dumps(memory_probe(args.n, args.seed, args.index_file, args.vectors_file)))
    else:
        print(json.dumps(serve_probe(args.snapshot, args.queries, args.seed, not args.lexical)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
