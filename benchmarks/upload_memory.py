"""Memory of the service under photo-upload decompression bombs (issue 15 §3).

Starts the real service (``productsearch serve``) in a subprocess over a tiny snapshot (the
demo catalogue's first products, lexical only: the bombs are refused or decoded before any
photo search runs, so no model is needed), measures its RSS, fires ``--bombs`` concurrent
uploads of a 7000x7000 PNG of zeros (~190 KB that decodes to ~150 MB of RGB), samples the
server's RSS every few milliseconds while they run, then measures it again after the answers.

Floor (issue 15): the bombs add at most 300 MB at peak, and RSS returns within 10% of its
start.

Run::

    python -m benchmarks.upload_memory            # 8 bombs, writes results/upload_memory.json
    python -m benchmarks.upload_memory --bombs 16 --rounds 3

After the bombs it fires as many concurrent PNGs just inside the decoding limit (5000x5000,
25 MP, decoded whole): what the concurrency bound and the memory hand-back are for.
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.common import results_dir, rss_bytes

MB = 1024 * 1024
#: Issue 15's floor: peak RSS added by the bombs, and how close RSS must come back to its start.
PEAK_FLOOR_MB = 300.0
RETURN_FLOOR = 0.10


def png_bomb(side: int = 7000) -> bytes:
    """A ``side`` x ``side`` RGB PNG of zeros: tiny on the wire, ``3 * side**2`` bytes decoded.

    Args:
        side: Width and height in pixels.

    Returns:
        The PNG file's bytes.
    """
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (side, side)).save(buffer, format="PNG", optimize=False, compress_level=9)
    return buffer.getvalue()


def _build_snapshot(work: Path) -> Path:
    """A lexical-only snapshot of 30 demo products (seconds to build)."""
    from indexer.build import BuildConfig, build_from_catalogue
    from indexer.demo import write_demo_catalogue

    catalogue = write_demo_catalogue(work / "demo", n_products=30)
    config = BuildConfig(embedder="none", image_embedder="none", photo_colours=False)
    return build_from_catalogue(catalogue, work / "snapshot", config=config).snapshot_dir


def _settle(pid: int, seconds: float = 1.5) -> int:
    """RSS once it stops moving (the lowest of a few samples over ``seconds``)."""
    samples = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        samples.append(rss_bytes(pid) or 0)
        time.sleep(0.1)
    return min(samples)


def _scenario(
    base_url: str,
    headers: dict[str, str],
    pid: int,
    payload: bytes,
    bombs: int,
    rounds: int,
) -> dict[str, Any]:
    """Fire ``bombs`` concurrent uploads of ``payload``, ``rounds`` times, sampling RSS."""
    import httpx

    start = _settle(pid)
    statuses: Counter[str] = Counter()
    details: set[str] = set()
    peak = start
    after_rounds: list[int] = []
    seconds: list[float] = []

    def fire(_: int) -> tuple[int, str]:
        with httpx.Client(base_url=base_url, headers=headers, timeout=300) as one:
            response = one.post(
                "/search/image", files={"image": ("bomb.png", payload, "image/png")}
            )
        detail = ""
        if response.status_code >= 400:
            detail = str(response.json().get("detail", ""))[:160]
        return response.status_code, detail

    for _ in range(rounds):
        stop = threading.Event()

        def sample(stop: threading.Event = stop) -> None:
            nonlocal peak
            while not stop.is_set():
                peak = max(peak, rss_bytes(pid) or 0)
                time.sleep(0.005)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        began = time.perf_counter()
        with ThreadPoolExecutor(max_workers=bombs) as pool:
            answers = list(pool.map(fire, range(bombs)))
        seconds.append(time.perf_counter() - began)
        time.sleep(0.3)
        stop.set()
        sampler.join()
        for status, detail in answers:
            statuses[str(status)] += 1
            if detail:
                details.add(detail)
        after_rounds.append(_settle(pid, 2.0))
    after = after_rounds[-1]
    peak_added = (peak - start) / MB
    returned = (after - start) / start
    return {
        "bytes": len(payload),
        "statuses": dict(statuses),
        "details": sorted(details),
        "seconds_per_round": [round(s, 3) for s in seconds],
        "rss_start_mb": round(start / MB, 1),
        "rss_peak_mb": round(peak / MB, 1),
        "rss_after_mb": [round(a / MB, 1) for a in after_rounds],
        "peak_added_mb": round(peak_added, 1),
        "after_vs_start": round(returned, 4),
        "passes": peak_added <= PEAK_FLOOR_MB and returned <= RETURN_FLOOR,
    }


def run(bombs: int, rounds: int, side: int, accepted_side: int) -> dict[str, Any]:
    """Start the service and fire the bombs, then the largest photos it accepts.

    Args:
        bombs: Concurrent uploads per round.
        rounds: Rounds per scenario (RSS is measured after each).
        side: The bomb's width and height.
        accepted_side: Width and height of the "largest accepted" PNG (0 skips that scenario):
            5000 is 25 MP, just inside the default decoding limit, so these are decoded whole.

    Returns:
        The report (also printed by :func:`main`).
    """
    import httpx

    from benchmarks.load import start_service

    with tempfile.TemporaryDirectory(prefix="upload-memory-") as tmp:
        work = Path(tmp)
        snapshot = _build_snapshot(work)
        serve_dir = work / "serve"
        serve_dir.mkdir()
        service = start_service(snapshot, serve_dir)
        try:
            assert service.proc is not None
            pid = service.proc.pid
            headers = {"Authorization": f"Bearer {service.search_token}"}
            with httpx.Client(base_url=service.base_url, headers=headers, timeout=120) as client:
                for _ in range(3):  # warm the upload path with a small photo
                    client.post(
                        "/search/image",
                        files={"image": ("small.png", png_bomb(64), "image/png")},
                    )
            scenarios = {
                "bomb": {
                    "side": side,
                    **_scenario(service.base_url, headers, pid, png_bomb(side), bombs, rounds),
                }
            }
            if accepted_side:
                scenarios["largest_accepted"] = {
                    "side": accepted_side,
                    **_scenario(
                        service.base_url, headers, pid, png_bomb(accepted_side), bombs, rounds
                    ),
                }
        finally:
            service.stop()
    return {
        "bombs": bombs,
        "rounds": rounds,
        "floor": {"peak_added_mb": PEAK_FLOOR_MB, "after_vs_start": RETURN_FLOOR},
        "scenarios": scenarios,
        "passes": scenarios["bomb"]["passes"],
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry point: run, print and write ``results/upload_memory.json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bombs", type=int, default=8, help="concurrent uploads per round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of concurrent uploads")
    parser.add_argument("--side", type=int, default=7000, help="the bomb's width and height")
    parser.add_argument(
        "--accepted-side",
        type=int,
        default=5000,
        help="side of the largest accepted PNG fired after the bombs (0: skip)",
    )
    parser.add_argument("--out", type=Path, default=None, help="JSON report path")
    args = parser.parse_args(argv)
    report = run(args.bombs, args.rounds, args.side, args.accepted_side)
    for name, found in report["scenarios"].items():
        print(
            f"{name}: {args.bombs} concurrent {found['side']}x{found['side']} PNGs "
            f"({found['bytes'] / 1024:.0f} KB each) x {args.rounds} rounds: "
            f"answers {found['statuses']}"
        )
        for detail in found["details"]:
            print(f"  detail: {detail}")
        print(
            f"  RSS start {found['rss_start_mb']} MB, peak {found['rss_peak_mb']} MB "
            f"(+{found['peak_added_mb']} MB, floor {PEAK_FLOOR_MB:.0f}), after "
            f"{found['rss_after_mb']} MB ({found['after_vs_start']:+.1%} of start, floor "
            f"{RETURN_FLOOR:+.0%}): {'PASS' if found['passes'] else 'FAIL'}"
        )
    out = args.out or results_dir() / "upload_memory.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")
    return report


if __name__ == "__main__":
    main()
