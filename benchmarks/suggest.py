"""As-you-type suggestion latency on the Home Depot titles (issue 6: p99 <= 10 ms).

Every dev query is typed letter by letter (prefixes of 1..n characters); each prefix is one
suggestion request, timed in-process. Run: ``python -m benchmarks.suggest``.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from api.service import open_snapshot
from benchmarks.common import load_home_depot, percentile, results_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, default=Path("var/bench/hd-lexical"))
    parser.add_argument(
        "--queries", type=int, default=500, help="dev queries typed (seeded sample)"
    )
    parser.add_argument("--out", type=Path, default=results_dir() / "suggest.json")
    args = parser.parse_args(argv)

    hd = load_home_depot()
    engine = open_snapshot(args.index, use_semantic=False, ranker="none")
    started = time.perf_counter()
    suggester = engine.suggester
    build_s = time.perf_counter() - started
    texts = random.Random(0).sample(sorted(hd.queries.values()), args.queries)
    popular = {q.lower(): 1 + i % 7 for i, q in enumerate(texts)}
    timings: list[float] = []
    empty = 0
    for text in texts:
        for end in range(1, len(text) + 1):
            t0 = time.perf_counter()
            found = suggester.suggest(text[:end], 8, popular=popular)
            timings.append((time.perf_counter() - t0) * 1000)
            empty += not found.suggestions
    result = {
        "phrases": len(suggester),
        "build_s": round(build_s, 2),
        "requests": len(timings),
        "p50_ms": round(percentile(timings, 50), 3),
        "p99_ms": round(percentile(timings, 99), 3),
        "max_ms": round(max(timings), 3),
        "empty_share": round(empty / len(timings), 3),
    }
    print(json.dumps(result, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
