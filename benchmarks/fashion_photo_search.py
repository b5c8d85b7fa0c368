"""Photo search through the engine on the fashion catalogue (issue 4): a shopper's photo alone,
and a photo with a colour word ("this, in black").

Uses the snapshot ``benchmarks.fashion_search`` builds (39,407 products, photo vectors for the
4,961 with a photo). Each query is the photo of a product with a photo, searched with that
product left out (``engine.similar``-style exclusion by filtering its id), decoded from its JPEG
bytes as an upload would be:

- photo only: precision@10 of hits with the query's article type;
- photo + "in <colour>": for a colour other than the query product's own, with at least 10 photo
  products of the query's type in it; precision@10 of hits with the type *and* that colour.

Latency is the whole ``decode + search_image`` call. Run: ``python -m benchmarks.fashion_photo_search``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections import Counter
from pathlib import Path

from api.uploads import decode_image_upload
from benchmarks.common import percentile, results_dir, shared_dir
from benchmarks.fashion_search import load_catalogue
from models.runtime import limit_cpu_threads
from search.engine import SearchEngine
from search.types import SearchRequest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=shared_dir() / "data" / "fashion")
    parser.add_argument("--index", type=Path, default=Path("var/bench/fashion-text-none"))
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--out", type=Path, default=results_dir() / "fashion_photo_search.json")
    args = parser.parse_args(argv)

    limit_cpu_threads(1)  # as the service runs
    products, truth = load_catalogue(args.data)
    engine = SearchEngine.open(args.index, use_semantic=False)
    if engine.images is None:
        raise SystemExit(
            f"{args.index} has no photo vectors: build it with benchmarks.fashion_search"
        )
    with_photo = [p for p in products if p.images]
    by_type_colour = Counter(truth[p.id] for p in with_photo)
    queries = random.Random(0).sample(with_photo, min(args.queries, len(with_photo)))
    colour_words = {"Black": "black", "White": "white", "Blue": "blue", "Red": "red",
                    "Grey": "grey", "Brown": "brown", "Green": "green", "Pink": "pink",
                    "Navy Blue": "navy blue", "Purple": "purple"}  # fmt: skip

    type_p10: list[float] = []
    colour_p10: list[float] = []
    latencies: list[float] = []
    for product in queries:
        article, own_colour = truth[product.id]
        data = Path(product.images[0]).read_bytes()
        others = [c for c in colour_words if c != own_colour and by_type_colour[(article, c)] >= 10]
        started = time.perf_counter()
        photo = decode_image_upload(data)
        result = engine.search_image(photo, SearchRequest(k=11, as_you_type=False))
        latencies.append((time.perf_counter() - started) * 1000)
        ids = [h.product.id for h in result.hits if h.product.id != product.id][:10]
        type_p10.append(sum(truth[i][0] == article for i in ids) / 10)
        if others:
            target = random.Random(product.id).choice(others)
            started = time.perf_counter()
            photo = decode_image_upload(data)
            request = SearchRequest(text=f"in {colour_words[target]}", k=11, as_you_type=False)
            result = engine.search_image(photo, request)
            latencies.append((time.perf_counter() - started) * 1000)
            ids = [h.product.id for h in result.hits if h.product.id != product.id][:10]
            colour_p10.append(sum(truth[i] == (article, target) for i in ids) / 10)
    summary = {
        "queries": len(queries),
        "photo_only_type_p10": round(statistics.fmean(type_p10), 3),
        "photo_plus_colour_queries": len(colour_p10),
        "photo_plus_colour_type_and_colour_p10": round(statistics.fmean(colour_p10), 3),
        "latency_p50_ms": round(percentile(latencies, 50), 1),
        "latency_p99_ms": round(percentile(latencies, 99), 1),
    }
    print(json.dumps(summary, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
