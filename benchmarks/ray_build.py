"""Snapshot build time, local against Ray Data, on the Home Depot titles (issue 8 §5).

Builds the same products twice: with :func:`indexer.build.build_snapshot` in this process, and
with :func:`indexer.ray_build.build_snapshot_on_ray` on a Ray instance (a local one started
here, or ``--address`` of a cluster). Reports the build times, Ray's start-up time and how far
the two snapshots differ (every file but the vectors must be identical; the vectors within
float tolerance). On one small machine Ray only adds overhead (actor start-up, model loaded per
worker, data through the object store); it pays off when a cluster has more cores than one
machine. Run: ``python -m benchmarks.ray_build [--limit 10000]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import load_home_depot, results_dir
from search.index.snapshot import IMAGE_VECTORS, TEXT_VECTORS, read_manifest


def compare(local: Path, ray: Path) -> dict[str, Any]:
    """How two snapshots of the same products differ.

    Args:
        local: The local build's folder.
        ray: The Ray build's folder.

    Returns:
        ``files_differing`` (names of non-vector files whose bytes differ), ``counts_equal``,
        ``models_equal`` and, with text vectors, ``vectors_max_abs_diff`` and
        ``vectors_min_cosine``.
    """
    a, b = read_manifest(local), read_manifest(ray)
    differing = sorted(
        name
        for name in set(a.files) | set(b.files)
        if name not in (TEXT_VECTORS, IMAGE_VECTORS)
        and (name not in a.files or name not in b.files or a.files[name] != b.files[name])
    )
    out: dict[str, Any] = {
        "files_differing": differing,
        "counts_equal": a.counts == b.counts,
        "models_equal": a.models == b.models,
    }
    if (local / TEXT_VECTORS).is_file() and (ray / TEXT_VECTORS).is_file():
        left, right = np.load(local / TEXT_VECTORS), np.load(ray / TEXT_VECTORS)
        out["vectors_max_abs_diff"] = float(np.abs(left - right).max()) if len(left) else 0.0
        out["vectors_min_cosine"] = float((left * right).sum(axis=1).min()) if len(left) else 1.0
    return out


def _torch_threads() -> int | None:
    import sys

    torch = sys.modules.get("torch")
    return int(torch.get_num_threads()) if torch is not None else None


def main(argv: list[str] | None = None) -> None:
    """Build locally and on Ray, print and write the JSON result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="first N products (default all)")
    parser.add_argument("--embedder", default="minilm", help="text embedder spec (or none)")
    parser.add_argument("--address", default=None, help="Ray cluster (default: a local instance)")
    parser.add_argument("--workers", type=int, default=None, help="model actors per stage")
    parser.add_argument("--work", type=Path, default=Path("var/bench/ray-build"))
    parser.add_argument("--out", type=Path, default=results_dir() / "ray_build.json")
    args = parser.parse_args(argv)

    import ray

    from indexer.build import BuildConfig, build_snapshot
    from indexer.ray_build import RayOptions, build_snapshot_on_ray
    from search.types import Product

    hd = load_home_depot()
    products = [Product(id=uid, title=title) for uid, title in hd.products[: args.limit]]
    config = BuildConfig(embedder=args.embedder, overwrite=True)
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)

    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    build_snapshot(products, args.work / "local", config=config)
    local_s = time.perf_counter() - started
    torch_threads = _torch_threads()

    started = time.perf_counter()
    if args.address is None:
        ray.init(include_dashboard=False, log_to_driver=False)
    else:
        ray.init(address=args.address, log_to_driver=False)
    init_s = time.perf_counter() - started
    cpus = ray.cluster_resources().get("CPU", 0)
    started = time.perf_counter()
    build_snapshot_on_ray(
        products,
        args.work / "ray",
        config=config,
        options=RayOptions(address=args.address, workers=args.workers),
    )
    ray_s = time.perf_counter() - started
    ray.shutdown()

    result = {
        "products": len(products),
        "embedder": args.embedder,
        "machine_cpus": os.cpu_count(),
        # Other processes' load skews both timings; torch threads matter most under it.
        "load_average_before": round(load_before, 1),
        "local_torch_threads": torch_threads,
        "ray_worker_threads": 1,
        "ray_cluster_cpus": cpus,
        "ray_address": args.address or "local instance",
        "local_build_s": round(local_s, 1),
        "ray_init_s": round(init_s, 1),
        "ray_build_s": round(ray_s, 1),
        "ray_over_local": round(ray_s / local_s, 2),
        **compare(args.work / "local", args.work / "ray"),
    }
    print(json.dumps(result, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
