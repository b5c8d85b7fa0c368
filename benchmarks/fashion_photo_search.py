"""Photo search through the engine on the fashion catalogue (issue 4): a shopper's photo alone,
and a photo with a colour word ("this, in black").

Uses the snapshot ``benchmarks.fashion_search`` builds (39,407 products, photo vectors for the
4,961 with a photo). Each query is the photo of a product with a photo, searched with that
product left out (``engine.similar``-style exclusion by filtering its id), decoded from its JPEG
bytes as an upload would be:

- photo only: precision@10 of hits with the query's article type;
- photo + "in <colour>": for a colour other than the query product's own, with at least 10 photo
  products of the query's type in it; precision@10 of hits with the type *and* that colour.

Latency is the whole ``decode + search_image`` call. With ``--http`` the snapshot is served by
``productsearch serve`` (its own process, one keep-alive client) and each query is a real
``POST /search/image`` upload of the JPEG bytes: latency is then the client's, upload, multipart
parsing, decoding, encoding, search and the JSON answer included.
Run: ``python -m benchmarks.fashion_photo_search [--http]``.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from api.service import open_snapshot
from api.uploads import decode_image_upload
from benchmarks.common import percentile, results_dir, shared_dir
from benchmarks.fashion_search import load_catalogue
from models.runtime import limit_cpu_threads
from search.types import SearchRequest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=shared_dir() / "data" / "fashion")
    parser.add_argument("--index", type=Path, default=Path("var/bench/fashion-text-none"))
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--out", type=Path, default=None, help="JSON path")
    parser.add_argument("--http", action="store_true", help="POST uploads to a served snapshot")
    args = parser.parse_args(argv)
    name = "fashion_photo_search_http.json" if args.http else "fashion_photo_search.json"
    out = args.out or results_dir() / name

    limit_cpu_threads(1)  # as the service runs
    products, truth = load_catalogue(args.data)
    if args.http:
        search: PhotoSearch = served_search(args.index)
    else:
        search = in_process_search(args.index)
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
        found = search(data, "")
        latencies.append((time.perf_counter() - started) * 1000)
        ids = [i for i in found if i != product.id][:10]
        type_p10.append(sum(truth[i][0] == article for i in ids) / 10)
        if others:
            target = random.Random(product.id).choice(others)
            started = time.perf_counter()
            found = search(data, f"in {colour_words[target]}")
            latencies.append((time.perf_counter() - started) * 1000)
            ids = [i for i in found if i != product.id][:10]
            colour_p10.append(sum(truth[i] == (article, target) for i in ids) / 10)
    summary = {
        "mode": "http" if args.http else "in-process",
        "queries": len(queries),
        "photo_only_type_p10": round(statistics.fmean(type_p10), 3),
        "photo_plus_colour_queries": len(colour_p10),
        "photo_plus_colour_type_and_colour_p10": round(statistics.fmean(colour_p10), 3),
        "latency_p50_ms": round(percentile(latencies, 50), 1),
        "latency_p99_ms": round(percentile(latencies, 99), 1),
    }
    print(json.dumps(summary, indent=2))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2))


PhotoSearch = Callable[[bytes, str], list[str]]
"""``(jpeg bytes, text) -> ids of the first 11 hits``."""


def in_process_search(index: Path) -> PhotoSearch:
    """Decode the upload and search the snapshot in this process."""
    engine = open_snapshot(index, use_semantic=False)
    if engine.images is None:
        raise SystemExit(f"{index} has no photo vectors: build it with benchmarks.fashion_search")

    def search(data: bytes, text: str) -> list[str]:
        photo = decode_image_upload(data)
        result = engine.search_image(photo, SearchRequest(text=text, k=11, as_you_type=False))
        return [h.product.id for h in result.hits]

    return search


def served_search(index: Path) -> PhotoSearch:
    """Serve a copy of the snapshot with ``productsearch serve`` and POST each photo to
    ``/search/image`` over one keep-alive connection (the server stops at exit)."""
    import atexit
    import tempfile

    import httpx

    from benchmarks.load import start_service

    work = Path(tempfile.mkdtemp(prefix="photo-http-"))
    service = start_service(index, work)  # one model thread per inference, the default
    client = httpx.Client(
        base_url=service.base_url,
        timeout=60.0,
        headers={"Authorization": f"Bearer {service.search_token}"},
    )

    def stop() -> None:
        client.close()
        service.stop()
        shutil.rmtree(work, ignore_errors=True)

    atexit.register(stop)

    def search(data: bytes, text: str) -> list[str]:
        form = {"k": "11", "q": text} if text else {"k": "11"}
        response = client.post(
            "/search/image", files={"image": ("photo.jpg", data, "image/jpeg")}, data=form
        )
        response.raise_for_status()
        return [hit["id"] for hit in response.json()["hits"]]

    search(_warm_up_photo(), "")  # the first request loads the photo model
    return search


def _warm_up_photo() -> bytes:
    """A small JPEG for the first (warm-up) request."""
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (60, 80), (200, 30, 30)).save(out, format="JPEG")
    return out.getvalue()


if __name__ == "__main__":
    main()
