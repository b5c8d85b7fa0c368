"""Image search on the fashion photos: image embedder backends side by side.

Protocol (``shared/MODELS.md``): the 4,961 photos of ``shared/data/fashion``; 500 of them drawn
at random (``numpy.random.default_rng(0).permutation``) are queries, the other 4,461 the index;
cosine similarity (inner product of unit vectors), the query photo itself is not in the index.

* **P@10 type**: share of the 10 nearest index photos with the query's ``articleType``;
* **P@10 type+colour**: share with the query's ``articleType`` *and* ``baseColour``;
* **ANN recall@10**: overlap of the top 10 from an HNSW graph (:func:`search.retrievers.build_ann`,
  ``efSearch`` 128) with the exact top 10 (faiss flat);
* **ms/photo**: encode time per photo in batches of ``--batch-size`` (photos already decoded),
  and **query ms**: p50 of encoding one photo alone (what an upload costs), over 20 photos.

Each backend is also scored **adapted** (``+adapter``): the catalogue photo projection
(:mod:`models.image_adapter`) fitted, as the indexer fits it, on the *indexed* photos only, with
their ``articleType`` as the leaf category and the colour family their title names
(``productDisplayName``) as the text colour; query photos are projected, never fitted on.

A combined backend (``lite0``) is also reported part by part (``lite0/lite0-raw``,
``lite0/descriptor``) from the same encoding run, and ``--sweep`` scores a grid of part weights
from those vectors (how the shipped weights were chosen).

Run ``python -m benchmarks.fashion_image [--backends descriptor,lite0] [--limit N]``; JSON goes
to ``benchmarks/results/fashion_image.json`` unless ``--out`` says otherwise.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

from benchmarks.common import results_dir, shared_dir
from indexer.images import ImageLoader
from models.image import CombinedImageEmbedder, ImageEmbedder, load_image_embedder
from models.image_adapter import ImageAdapter, fit_image_adapter, shape_columns
from search.colour import spot_colours
from search.retrievers import VectorIndex, build_ann

#: Floors the offline default must reach (issue 4).
FLOORS = {"p10_type": 0.68, "p10_type_colour": 0.30}
#: Published references (shared/MODELS.md), same protocol.
REFERENCES = {
    "EfficientNet-Lite0 (MODELS.md)": (0.673, 0.193),
    "Lite0 + thumbnail + RGB histogram (MODELS.md)": (0.664, 0.269),
}


@dataclass(frozen=True, slots=True)
class Photo:
    """A labelled fashion photo.

    Attributes:
        product_id: The ``id`` column.
        path: The JPEG.
        article_type: ``articleType``.
        colour: ``baseColour``.
        title: ``productDisplayName``.
    """

    product_id: str
    path: Path
    article_type: str
    colour: str
    title: str = ""


@dataclass(frozen=True, slots=True)
class Row:
    """One backend's results.

    Attributes:
        backend: Spec (or ``spec/part``).
        version: The embedder's version string.
        dim: Vector length.
        p10_type: Precision@10, same article type.
        p10_type_colour: Precision@10, same article type and colour.
        ann_recall_10: HNSW top 10 against exact top 10.
        ms_per_photo: Batched encode time per photo (None for parts of a combination, timed
            separately inside it).
        query_ms_p50: Encoding one photo alone, p50 (None for parts).
        warm_up_s: Seconds to load the weights.
    """

    backend: str
    version: str
    dim: int
    p10_type: float
    p10_type_colour: float
    ann_recall_10: float
    ms_per_photo: float | None
    query_ms_p50: float | None
    warm_up_s: float | None


def load_photos(shared: Path | None = None) -> list[Photo]:
    """The fashion photos with their labels, in ``styles.csv.gz`` order.

    Args:
        shared: The shared folder; defaults to :func:`benchmarks.common.shared_dir`.

    Returns:
        Every product with a photo.

    Raises:
        FileNotFoundError: When the data is missing.
    """
    root = (shared or shared_dir()) / "data" / "fashion"
    if not root.is_dir():
        raise FileNotFoundError(f"no fashion data at {root} (set PRODUCTSEARCH_SHARED)")
    with gzip.open(root / "styles.csv.gz", "rt", encoding="utf-8", newline="") as f:
        return [
            Photo(
                row["id"],
                root / row["image"],
                row["articleType"],
                row["baseColour"],
                row["productDisplayName"] or "",
            )
            for row in csv.DictReader(f)
            if row["image"]
        ]


def split(n: int, queries: int, seed: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Query and index positions: the first ``queries`` of a seeded permutation, and the rest.

    Args:
        n: Photos.
        queries: Query photos (< n).
        seed: ``numpy.random.default_rng`` seed.

    Returns:
        Query positions (permutation order) and index positions (ascending).
    """
    order = np.random.default_rng(seed).permutation(n)
    return order[:queries], np.sort(order[queries:])


def precision_at_10(
    top: npt.NDArray[np.int64], query: npt.NDArray[np.int64], photos: Sequence[Photo]
) -> tuple[float, float]:
    """Mean P@10 of same type, and of same type and colour.

    Args:
        top: ``(q, 10)`` photo positions found per query.
        query: ``(q,)`` query photo positions.
        photos: All photos.

    Returns:
        ``(p10_type, p10_type_colour)``.
    """
    types = np.array([p.article_type for p in photos])
    colours = np.array([p.colour for p in photos])
    same_type = types[top] == types[query][:, None]
    same_both = same_type & (colours[top] == colours[query][:, None])
    return float(same_type.mean()), float(same_both.mean())


def evaluate(
    vectors: npt.NDArray[np.float32],
    query: npt.NDArray[np.int64],
    index: npt.NDArray[np.int64],
    photos: Sequence[Photo],
) -> tuple[float, float, float]:
    """P@10 (exact search) and the ANN's recall@10 for one backend's vectors.

    Args:
        vectors: ``(n, dim)`` unit rows for every photo.
        query: Query positions.
        index: Index positions.
        photos: All photos.

    Returns:
        ``(p10_type, p10_type_colour, ann_recall_10)``.
    """
    index_vectors = np.ascontiguousarray(vectors[index])
    exact = VectorIndex(index_vectors)
    approximate = VectorIndex(index_vectors, ann=build_ann(index_vectors))
    top = np.zeros((len(query), 10), dtype=np.int64)
    overlap = 0
    for i, q in enumerate(query):
        _, found = exact.search(vectors[q], 10)
        _, near = approximate.search(vectors[q], 10)
        top[i] = index[found]
        overlap += len(set(found.tolist()) & set(near.tolist()))
    p_type, p_both = precision_at_10(top, query, photos)
    return p_type, p_both, overlap / (10 * len(query))


def encode(
    embedder: ImageEmbedder, images: Sequence[Image.Image], batch_size: int
) -> tuple[npt.NDArray[np.float32], float]:
    """Encode photos in batches.

    Returns:
        The vectors and milliseconds per photo.
    """
    started = time.perf_counter()
    vectors = embedder.embed_images(images, batch_size=batch_size, show_progress=True)
    return vectors, (time.perf_counter() - started) * 1000 / max(1, len(images))


def query_latency(embedder: ImageEmbedder, images: Sequence[Image.Image]) -> float:
    """p50 milliseconds of encoding one photo alone (after one warm-up call)."""
    embedder.embed_images(images[:1], batch_size=1)
    times = []
    for image in images:
        started = time.perf_counter()
        embedder.embed_images([image], batch_size=1)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def run_backend(
    spec: str,
    images: Sequence[Image.Image],
    query: npt.NDArray[np.int64],
    index: npt.NDArray[np.int64],
    photos: Sequence[Photo],
    batch_size: int,
    sweep: bool,
) -> list[Row]:
    """Encode every photo with one backend and score it (and its parts, for a combination)."""
    embedder = load_image_embedder(spec)
    if embedder is None:
        return []
    started = time.perf_counter()
    embedder.warm_up()
    warm_up_s = time.perf_counter() - started
    rows: list[Row] = []
    if isinstance(embedder, CombinedImageEmbedder):
        started = time.perf_counter()
        parts = [encode(part, images, batch_size)[0] for part, _ in embedder.parts]
        vectors = embedder.combine(parts)
        ms = (time.perf_counter() - started) * 1000 / max(1, len(images))
        for (part, _), part_vectors in zip(embedder.parts, parts, strict=True):
            rows.append(
                untimed_row(f"{spec}/{part.name}", part.version, part_vectors, query, index, photos)
            )
        if sweep:
            sweep_weights(embedder, parts, query, index, photos)
    else:
        vectors, ms = encode(embedder, images, batch_size)
    p_type, p_both, recall = evaluate(vectors, query, index, photos)
    latency = query_latency(embedder, images[:20])
    rows.append(
        Row(spec, embedder.version, embedder.dim, p_type, p_both, recall, ms, latency, warm_up_s)
    )
    adapter = fit_on_index(vectors, index, photos, shape_columns(embedder))
    if adapter is not None:
        version = f"{embedder.version} + {adapter.describe()}"
        rows.append(
            untimed_row(f"{spec}+adapter", version, adapter.apply(vectors), query, index, photos)
        )
    return rows


def untimed_row(
    name: str,
    version: str,
    vectors: npt.NDArray[np.float32],
    query: npt.NDArray[np.int64],
    index: npt.NDArray[np.int64],
    photos: Sequence[Photo],
) -> Row:
    """The scores of vectors derived from a backend's run (a part, a projection): no timings."""
    p_type, p_both, recall = evaluate(vectors, query, index, photos)
    return Row(name, version, vectors.shape[1], p_type, p_both, recall, None, None, None)


def fit_on_index(
    vectors: npt.NDArray[np.float32],
    index: npt.NDArray[np.int64],
    photos: Sequence[Photo],
    shape: npt.NDArray[np.int64] | None,
) -> ImageAdapter | None:
    """The catalogue photo projection fitted on the indexed photos only: article type as the
    leaf category, the family of the first colour the title names as the text colour."""
    has = np.zeros(len(photos), dtype=bool)
    has[index] = True
    families = []
    for photo in photos:
        mentions, _ = spot_colours(photo.title)
        families.append(str(mentions[0].colour.family) if mentions else None)
    return fit_image_adapter(vectors, has, [p.article_type for p in photos], families, shape=shape)


def sweep_weights(
    embedder: CombinedImageEmbedder,
    parts: Sequence[npt.NDArray[np.float32]],
    query: npt.NDArray[np.int64],
    index: npt.NDArray[np.int64],
    photos: Sequence[Photo],
) -> None:
    """Print P@10 over a grid of weights for the parts after the first (the first keeps 1)."""
    grid = (0.0, 0.15, 0.25, 0.35, 0.5, 0.7)
    print(f"\nweight sweep of {embedder.name} (first part at 1.0):")
    for weights in np.array(np.meshgrid(*[grid] * (len(parts) - 1))).T.reshape(-1, len(parts) - 1):
        combined = np.concatenate(
            [parts[0]] + [v * w for v, w in zip(parts[1:], weights, strict=True)], axis=1
        )
        combined /= np.linalg.norm(combined, axis=1, keepdims=True)
        top = index[np.argsort(-(combined[query] @ combined[index].T), axis=1)[:, :10]]
        p_type, p_both = precision_at_10(top, query, photos)
        print(f"  {', '.join(f'{w:.2f}' for w in weights)}: {p_type:.3f} / {p_both:.3f}")


def print_table(rows: Sequence[Row], photos: int, queries: int) -> None:
    """The results table, with the floors and the published references."""
    print(f"\n{photos} photos: {queries} queries, {photos - queries} indexed; cosine; P@10")
    header = f"{'backend':<24} {'dim':>5} {'P@10 type':>10} {'type+colour':>12} {'ANN R@10':>9} {'ms/photo':>9} {'query ms':>9}"
    print(header)
    print("-" * len(header))
    for r in rows:
        ms = f"{r.ms_per_photo:.1f}" if r.ms_per_photo is not None else "-"
        qms = f"{r.query_ms_p50:.1f}" if r.query_ms_p50 is not None else "-"
        print(
            f"{r.backend:<24} {r.dim:>5} {r.p10_type:>10.3f} {r.p10_type_colour:>12.3f} "
            f"{r.ann_recall_10:>9.3f} {ms:>9} {qms:>9}"
        )
    for name, (p_type, p_both) in REFERENCES.items():
        print(f"{name:<48} {p_type:.3f} / {p_both:.3f}")
    print(f"floors: P@10 type >= {FLOORS['p10_type']}, type+colour >= {FLOORS['p10_type_colour']}")


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: encode, score, print the table, write the JSON.

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--backends",
        default="descriptor,lite0",
        help="comma-separated image embedder specs (models.image.load_image_embedder)",
    )
    parser.add_argument("--limit", type=int, default=None, help="seeded sample of N photos")
    parser.add_argument("--queries", type=int, default=500, help="query photos (default 500)")
    parser.add_argument("--seed", type=int, default=0, help="split (and sample) seed")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--sweep", action="store_true", help="weight grid of combined backends")
    parser.add_argument("--out", type=Path, default=None, help="JSON path")
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 20:
        parser.error("--limit must be at least 20")

    try:
        import torch

        torch.set_num_threads(args.threads)
    except ImportError:
        pass
    photos = load_photos()
    if args.limit is not None and args.limit < len(photos):
        keep = np.sort(np.random.default_rng(args.seed).permutation(len(photos))[: args.limit])
        photos = [photos[i] for i in keep]
    queries = min(args.queries, len(photos) // 5)
    query, index = split(len(photos), queries, args.seed)

    loader = ImageLoader(max_side=None)
    started = time.perf_counter()
    images = [loader.load(str(p.path)) for p in photos]
    load_ms = (time.perf_counter() - started) * 1000 / len(photos)
    rows: list[Row] = []
    for spec in [s.strip() for s in args.backends.split(",") if s.strip()]:
        print(f"== {spec}", flush=True)
        rows.extend(run_backend(spec, images, query, index, photos, args.batch_size, args.sweep))
    print_table(rows, len(photos), queries)
    result = {
        "photos": len(photos),
        "queries": queries,
        "indexed": len(photos) - queries,
        "seed": args.seed,
        "limit": args.limit,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "load_ms_per_photo": round(load_ms, 3),
        "floors": FLOORS,
        "references": {k: list(v) for k, v in REFERENCES.items()},
        "backends": [asdict(r) for r in rows],
    }
    out = args.out or results_dir() / "fashion_image.json"
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
