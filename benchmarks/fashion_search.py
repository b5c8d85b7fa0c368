"""Colour-aware text search on the fashion catalogue (issue 3, benchmark b).

The 39,407 fashion products become a text catalogue (title = productDisplayName, category =
master > sub > article type, gender/usage/season attributes, the photo where one exists). The
``baseColour`` label is the truth and is *not* indexed. Two query sets:

- colour + type: "<colour label> <article type>" for every pair with at least ``--min-pairs``
  products ("navy blue shirts", "black casual shoes");
- synonyms: a shop word for a label ("burgundy" for Maroon, "charcoal" for Grey/Charcoal,
  "ivory" for Off White/Cream...) with an article type.

A hit is relevant when it has the query's article type *and* one of its colour labels.
precision@10 is compared between the colour-aware pipeline and the foundation's text-only
pipeline (same snapshot, no product colours) in the same run.

Run: ``python -m benchmarks.fashion_search [--embedder none|minilm] [--no-photos]``.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from api.service import open_snapshot
from benchmarks.common import results_dir, shared_dir
from indexer.build import BuildConfig, build_snapshot
from search.colour import lookup
from search.engine import SearchEngine
from search.index.colours import ColourIndex
from search.types import Product

#: Shop words for fashion colour labels: word -> the labels a shopper using it would accept.
SYNONYMS: dict[str, tuple[str, ...]] = {
    "burgundy": ("Maroon", "Burgundy"),
    "wine": ("Maroon", "Burgundy"),
    "charcoal": ("Charcoal", "Grey"),
    "navy": ("Navy Blue",),
    "dark blue": ("Navy Blue",),
    "ivory": ("Off White", "Cream"),
    "scarlet": ("Red",),
    "crimson": ("Red",),
    "violet": ("Purple", "Lavender"),
    "lilac": ("Lavender", "Purple"),
    "fuchsia": ("Magenta", "Pink"),
    "camel": ("Tan", "Brown", "Khaki", "Coffee Brown"),
    "nude": ("Nude", "Skin", "Beige", "Peach"),
    "sand": ("Beige", "Khaki", "Cream"),
    "olive green": ("Olive",),
    "turquoise": ("Turquoise Blue", "Teal"),
    "emerald": ("Green", "Sea Green"),
    "chocolate": ("Brown", "Coffee Brown"),
}


@dataclass(frozen=True, slots=True)
class Query:
    """One benchmark query and its truth."""

    text: str
    article_type: str
    labels: tuple[str, ...]
    kind: str


def load_catalogue(data: Path) -> tuple[list[Product], dict[str, tuple[str, str]]]:
    """Products (without colour labels) and the truth: id -> (article type, base colour)."""
    products: list[Product] = []
    truth: dict[str, tuple[str, str]] = {}
    with gzip.open(data / "styles.csv.gz", "rt", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            title = (row["productDisplayName"] or "").strip()
            if not title or not row["articleType"]:
                continue
            images = (str((data / row["image"]).resolve()),) if row.get("image") else ()
            attributes = {
                name: (row[name],) for name in ("gender", "usage", "season") if row.get(name)
            }
            products.append(
                Product(
                    id=row["id"],
                    title=title,
                    categories=((row["masterCategory"], row["subCategory"], row["articleType"]),),
                    attributes=attributes,
                    images=images,
                )
            )
            truth[row["id"]] = (row["articleType"], row["baseColour"])
    return products, truth


def make_queries(truth: dict[str, tuple[str, str]], min_pairs: int) -> list[Query]:
    """Colour + type queries for frequent pairs, and synonym queries."""
    pairs = Counter(truth.values())
    queries = [
        Query(f"{colour.lower()} {article.lower()}", article, (colour,), "colour+type")
        for (article, colour), n in sorted(pairs.items())
        if n >= min_pairs and colour and lookup(colour) is not None
    ]
    for word, labels in SYNONYMS.items():
        by_type = Counter(a for (a, c), n in pairs.items() for _ in range(n) if c in labels)
        for article, n in sorted(by_type.items()):
            if n >= min_pairs:
                queries.append(Query(f"{word} {article.lower()}", article, labels, "synonym"))
    return queries


def precision_at_10(
    engine: SearchEngine, queries: Sequence[Query], truth: dict[str, tuple[str, str]]
) -> tuple[list[float], list[float]]:
    """Per query precision@10 and latency (ms)."""
    precisions, latencies = [], []
    for q in queries:
        started = time.perf_counter()
        ids = engine.search_ids(q.text, 10, as_you_type=False)
        latencies.append((time.perf_counter() - started) * 1000)
        good = sum(1 for i in ids if truth[i][0] == q.article_type and truth[i][1] in q.labels)
        precisions.append(good / 10)
    return precisions, latencies


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=shared_dir() / "data" / "fashion")
    parser.add_argument("--index", type=Path, default=Path("var/bench/fashion-text"))
    parser.add_argument("--embedder", default="none", help="none (lexical) or minilm (hybrid)")
    parser.add_argument("--no-photos", action="store_true", help="colours from text only")
    parser.add_argument(
        "--image-embedder",
        default="lite0",
        help="photo vectors (lite0 also names photo colours better); none to skip",
    )
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--min-pairs", type=int, default=20)
    parser.add_argument("--out", type=Path, default=results_dir() / "fashion_search.json")
    args = parser.parse_args(argv)

    products, truth = load_catalogue(args.data)
    index = args.index.with_name(
        f"{args.index.name}-{args.embedder}{'-nophoto' if args.no_photos else ''}"
    )
    build_s = None
    if args.rebuild or not (index / "manifest.json").is_file():
        started = time.perf_counter()
        last = [0.0]

        def progress(stage: str, done: int, total: int) -> None:
            now = time.perf_counter()
            if now - last[0] > 5 or done == total:
                last[0] = now
                print(f"  {stage} {done}/{total}", flush=True)

        build_snapshot(
            products,
            index,
            config=BuildConfig(
                embedder=args.embedder,
                overwrite=True,
                photo_colours=not args.no_photos,
                image_embedder="none" if args.no_photos else args.image_embedder,
            ),
            progress=progress,
        )
        build_s = time.perf_counter() - started
    engine = open_snapshot(index, use_semantic=args.embedder != "none")
    text_only = SearchEngine(
        engine.manifest,
        engine.store,
        engine.lexical,
        engine.vocabulary,
        engine.analyzer,
        vectors=engine.vector_index.vectors if engine.vector_index else None,
        ann=engine.vector_index.ann if engine.vector_index else None,
        embedder=engine.embedder,
        config=engine.config,
        scorer=engine.scorer,
        colours=ColourIndex([() for _ in range(len(engine.store))]),
    )
    queries = make_queries(truth, args.min_pairs)
    print(
        f"{len(products)} products ({sum(1 for p in products if p.images)} with photos), "
        f"{engine.manifest.counts.get('products_with_colour', 0)} with a colour, "
        f"{len(queries)} queries; snapshot {index}"
        + (f", built in {build_s:.0f} s" if build_s else "")
    )
    results: dict[str, object] = {"products": len(products), "queries": len(queries)}
    print(f"{'query set':<14} {'n':>4} {'colour-aware':>13} {'text-only':>10} {'p50 ms':>7}")
    for kind in ("colour+type", "synonym"):
        subset = [q for q in queries if q.kind == kind]
        ours, lat = precision_at_10(engine, subset, truth)
        base, _ = precision_at_10(text_only, subset, truth)
        row = {
            "n": len(subset),
            "colour_aware_p10": statistics.fmean(ours) if ours else 0.0,
            "text_only_p10": statistics.fmean(base) if base else 0.0,
            "p50_ms": statistics.median(lat) if lat else 0.0,
            "worst": sorted(
                ((o, q.text) for o, q in zip(ours, subset, strict=True)), key=lambda t: t[0]
            )[:8],
        }
        results[kind] = row
        print(
            f"{kind:<14} {len(subset):>4} {row['colour_aware_p10']:>13.3f} "
            f"{row['text_only_p10']:>10.3f} {row['p50_ms']:>7.1f}"
        )
        print("   weakest:", ", ".join(f"{t} {p:.1f}" for p, t in row["worst"]))  # type: ignore[attr-defined]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
