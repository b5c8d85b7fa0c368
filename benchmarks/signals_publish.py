"""How long the behaviour refresher holds a worker: folding recorded searches and publishing.

Every search a service answers is recorded with the products it showed, and every
``PRODUCTSEARCH_BEHAVIOUR_REFRESH_S`` each worker folds the new records into its
:class:`events.signals.BehaviourAggregator` and publishes a snapshot (the click model refitted over
every impression cell). This replays ``--searches`` recorded searches of the Home Depot dev queries
(as written, with keyboard typos, spelled by sound, half-typed: the throughput benchmark's texts),
each by its own session and showing ten Home Depot products, then times: the first publish, a
publish after ``--batch`` more searches (what a refresh does under load), and a full fit.

Usage::

    python -m benchmarks.signals_publish                   # 50,000 searches, batches of 400
    python -m benchmarks.signals_publish --searches 5000

Prints the timings and writes ``benchmarks/results/signals_publish.json``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Sequence

from benchmarks.common import load_home_depot, results_dir
from benchmarks.throughput import query_pool
from events.signals import BehaviourAggregator
from events.store import Event, EventType, StoredEvent

#: Event time of the first search (any fixed time: only differences matter).
START = 1_780_000_000.0


def recorded_searches(
    queries: Sequence[str], products: Sequence[str], n: int, first_seq: int, seed: int
) -> list[StoredEvent]:
    """``n`` recorded searches, one per session, each showing ten random products."""
    rng = random.Random(seed + first_seq)
    out = []
    for seq in range(first_seq, first_seq + n):
        out.append(
            StoredEvent(
                seq,
                Event(
                    f"e{seq}",
                    EventType.SEARCH,
                    f"session-{seq}",
                    START + seq * 0.01,
                    query=queries[seq % len(queries)],
                    results=tuple(rng.sample(products, 10)),
                    query_id=f"q{seq}",
                ),
            )
        )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.signals_publish")
    parser.add_argument("--searches", type=int, default=50_000, help="history before the timings")
    parser.add_argument("--batch", type=int, default=400, help="searches new at each refresh")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    products = [uid for uid, _ in load_home_depot().products]
    queries = query_pool(args.seed)
    aggregator = BehaviourAggregator()
    started = time.perf_counter()
    seq = 1
    while seq <= args.searches:
        n = min(10_000, args.searches - seq + 1)
        aggregator.fold(recorded_searches(queries, products, n, seq, args.seed))
        seq += n
    fold_all_s = time.perf_counter() - started
    timings: dict[str, float] = {}

    def publish(label: str, *, full: bool) -> None:
        nonlocal seq
        batch = recorded_searches(queries, products, args.batch, seq, args.seed)
        seq += args.batch
        t = time.perf_counter()
        aggregator.fold(batch)
        timings[f"{label}_fold_ms"] = round((time.perf_counter() - t) * 1e3, 1)
        t = time.perf_counter()
        aggregator.snapshot = aggregator.build(START + seq * 0.01, full=full)
        timings[f"{label}_publish_ms"] = round((time.perf_counter() - t) * 1e3, 1)

    publish("first", full=True)
    publish("refresh", full=False)
    publish("refresh_again", full=False)
    publish("full_fit", full=True)
    report = {
        "searches": args.searches,
        "batch": args.batch,
        "queries": len(aggregator.snapshot.queries),
        "fold_history_s": round(fold_all_s, 1),
        **timings,
    }
    for key, value in report.items():
        print(f"{key:24s} {value}")
    out = results_dir() / "signals_publish.json"
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
