"""Crowd evidence against single actors, on the Home Depot catalogue (issue 15 §4).

    python -m benchmarks.crowd --index var/bench/hd-lexical --out benchmarks/results/crowd.json
    python -m benchmarks.crowd --queries 30            # a quick run

**Crowd.** On held-out dev queries (those the packaged learned ranker was not trained on), pick
a relevant product (human grade 2.33 or more) that the engine ranks at #7-#30. Twenty-five
distinct shoppers (a user id and a session each, drawn from a pool) search the query, are shown
the top 30 as currently ranked, and click that product at the position it was shown; a third
of them also add it to the cart, and one in five also clicks some other product of the top 10
(noise). Events go through :func:`events.store.ingest` into a SQLite store in batches of at
most 100 (the API's per-request cap) and through :class:`events.signals.SignalsRefresher`,
as in the service. Measured: the share of queries where the product then ranks in the top 3
for another shopper (floor: 70%), and its rank before and after.

``--protocol`` says how the search reaches the event store: ``query-id`` (default, the
service's way) records each answer server-side (:class:`events.impressions.ImpressionRecorder`)
and the clicks and carts carry only its ``query_id``; ``reported``: the client posts the search
with the ids shown and clicks with query and position; ``clicks``: the client posts only clicks
and carts with query and position (no impressions anywhere: what a client that did not report
searches gave before the service recorded them).

**Single actors.** On other held-out queries, a product ranked #25-#40 is pushed by one
session (600 events: searches showing it first, clicks at position 1, views, carts and
purchases) and, separately, by one user id spread over 600 sessions. Measured: how many places
it moved for another shopper (floor: 0) and how many reached the top 3.

The engine is lexical with the packaged learned ranker (no query embedder), so a run takes a
few minutes on two busy cores; the behavioural re-ranker is the service's, at its defaults.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from api.service import open_snapshot
from benchmarks.common import learned_order, load_home_depot, percentile
from benchmarks.train_ranker import is_training_query
from events.impressions import ImpressionRecorder
from events.signals import BehaviourAggregator, SignalsRefresher
from events.store import SQLiteEventStore, ingest
from search.engine import SearchEngine
from search.rank.behaviour import BehaviourReranker
from search.types import Hit, SearchRequest
from search.understand import AnalyzedQuery

Protocol = str  # "query-id", "reported" or "clicks"
PROTOCOLS = ("query-id", "reported", "clicks")

DEPTH = 50
SHOWN = 30
SHOPPERS = 25
BATCH = 100
ACTOR_EVENTS = 600


@dataclass
class Case:
    """One query and the product the crowd (or the actor) chooses."""

    qid: str
    text: str
    query: AnalyzedQuery
    hits: list[Hit]
    target: str
    rank_before: int


def rank_of(ids: Sequence[str], hits: Sequence[Hit], product_id: str) -> int:
    """1-based rank of a product in a hit list (``len + 1`` when absent)."""
    for rank, hit in enumerate(hits, start=1):
        if ids[hit.doc] == product_id:
            return rank
    return len(hits) + 1


def pick_cases(
    engine: SearchEngine, n_crowd: int, n_actor: int, seed: int
) -> tuple[list[Case], list[Case]]:
    """Held-out queries with a relevant product at #7-#30 (crowd) and others with a product at
    #25-#40 (single actors)."""
    hd = load_home_depot()
    ids = engine.store.ids
    rng = random.Random(seed)
    qids = [q for q in sorted(hd.queries) if not is_training_query(q)]
    rng.shuffle(qids)
    crowd: list[Case] = []
    actor: list[Case] = []
    for qid in qids:
        if len(crowd) >= n_crowd and len(actor) >= n_actor:
            break
        text = hd.queries[qid]
        found, ranked = learned_order(engine, SearchRequest(text=text, as_you_type=False))
        hits = ranked[:DEPTH]
        if len(crowd) < n_crowd:
            grades = hd.qrels.get(qid, {})
            relevant = [
                (rank, ids[h.doc])
                for rank, h in enumerate(hits, start=1)
                if 7 <= rank <= 30 and grades.get(ids[h.doc], 0.0) >= 2.33
            ]
            if relevant:
                rank, target = rng.choice(relevant)
                crowd.append(Case(qid, text, found.query, hits, target, rank))
                continue
        if len(actor) < n_actor and len(hits) >= 40:
            rank = rng.randint(25, 40)
            actor.append(Case(qid, text, found.query, hits, ids[hits[rank - 1].doc], rank))
    return crowd, actor


def post(
    store: SQLiteEventStore,
    events: Sequence[dict[str, Any]],
    recorder: ImpressionRecorder | None = None,
) -> None:
    """Store events in requests of at most ``BATCH`` (the API's per-request cap), as
    ``POST /events`` does (``query_id`` looked up in ``recorder``)."""
    served = recorder.lookup if recorder is not None else None
    for start in range(0, len(events), BATCH):
        outcome = ingest(store, events[start : start + BATCH], served=served)
        if outcome.rejected:
            raise AssertionError(f"events rejected: {dict(outcome.rejected)}")


def crowd_events(
    case: Case,
    ids: Sequence[str],
    ranker: BehaviourReranker,
    shopper: int,
    rng: random.Random,
    now: float,
    *,
    protocol: Protocol,
    recorder: ImpressionRecorder,
) -> list[dict[str, Any]]:
    """One crowd shopper's events: shown the current ranking, they choose the target (see
    the module docstring for ``protocol``)."""
    shown = [ids[h.doc] for h in ranker.rerank(case.query, case.hits).hits[:SHOWN]]
    base = {"user_id": f"shopper-{shopper}", "session_id": f"s-{case.qid}-{shopper}"}
    events: list[dict[str, Any]] = []
    if protocol == "reported":
        events.append(
            {**base, "type": "search", "query": case.text, "results": shown, "timestamp": now}
        )
    query_id = None
    if protocol == "query-id":
        query_id = recorder.record(
            case.text, shown, user_id=base["user_id"], session_id=base["session_id"]
        )

    def chose(product_id: str, kind: str) -> dict[str, Any]:
        event = {**base, "type": kind, "product_id": product_id, "timestamp": now}
        if query_id is not None:
            return {**event, "query_id": query_id}
        position = shown.index(product_id) + 1 if kind == "click" else None
        return {**event, "query": case.text, **({"position": position} if position else {})}

    events.append(chose(case.target, "click"))
    events.append(chose(case.target, "view"))
    if rng.random() < 1 / 3:
        events.append(chose(case.target, "add_to_cart"))
    if rng.random() < 0.2:
        other = shown[rng.randrange(min(10, len(shown)))]
        if other != case.target:
            events.append(chose(other, "click"))
    return events


def actor_events(case: Case, ids: Sequence[str], *, one_user: bool) -> list[dict[str, Any]]:
    """600 events pushing ``case.target``: from one session, or one user over 600 sessions."""
    shown = [case.target] + [ids[h.doc] for h in case.hits if ids[h.doc] != case.target]
    kinds = ("search", "click", "view", "add_to_cart", "purchase")
    events: list[dict[str, Any]] = []
    for i in range(ACTOR_EVENTS):
        kind = kinds[i % len(kinds)]
        who = (
            {"user_id": "actor-user", "session_id": f"actor-{case.qid}-{i}"}
            if one_user
            else {"session_id": f"actor-{case.qid}"}
        )
        event: dict[str, Any] = {**who, "type": kind, "query": case.text}
        if kind == "search":
            event["results"] = shown[:SHOWN]
        else:
            event["product_id"] = case.target
            event["position"] = 1 if kind == "click" else None
        events.append({k: v for k, v in event.items() if v is not None})
    return events


def recording_cost(
    store: SQLiteEventStore, engine: SearchEngine, texts: Sequence[str], n: int = 20_000
) -> dict[str, float]:
    """What recording an answer costs a search (``record``) and the background writer, beside
    the search itself (engine p50 over ``texts``)."""
    latencies = []
    for text in texts:
        started = time.perf_counter()
        engine.search(SearchRequest(text=text, as_you_type=False))
        latencies.append((time.perf_counter() - started) * 1000.0)
    recorder = ImpressionRecorder(store)
    shown = [f"P{i}" for i in range(30)]
    started = time.perf_counter()
    for i in range(n):
        recorder.record("cordless drill", shown, session_id=f"s{i % 997}", user_id=f"u{i % 313}")
    record_us = (time.perf_counter() - started) / n * 1e6
    started = time.perf_counter()
    recorder.flush()
    flush_s = time.perf_counter() - started
    search_p50 = percentile(latencies, 50)
    return {
        "record_us_mean": record_us,
        "flush_records_per_s": n / flush_s,
        "search_p50_ms": search_p50,
        "record_share_of_search_p50": record_us / 1000.0 / search_p50 if search_p50 else 0.0,
    }


def run(
    index: Path, n_crowd: int, n_actor: int, seed: int, *, protocol: Protocol
) -> dict[str, Any]:
    """Both measurements; returns the report."""
    started = time.perf_counter()
    engine = open_snapshot(index, use_semantic=False, verify=False)
    ids = engine.store.ids
    print(f"picking {n_crowd} crowd and {n_actor} single-actor queries...", flush=True)
    crowd, actor = pick_cases(engine, n_crowd, n_actor, seed)
    rng = random.Random(seed)
    report: dict[str, Any] = {
        "index": str(index),
        "seed": seed,
        "shoppers": SHOPPERS,
        "protocol": protocol,
    }
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteEventStore(Path(tmp) / "events.db", synchronous="NORMAL")
        behaviour = BehaviourAggregator()
        refresher = SignalsRefresher(store, [behaviour])
        ranker = BehaviourReranker(behaviour, ids, depth=DEPTH)
        recorder = ImpressionRecorder(store)
        now = time.time()
        pool = list(range(SHOPPERS * 8))
        # Shoppers arrive in rounds (each query gets one shopper per round) and the signals
        # refresh between rounds, so later shoppers see what earlier ones moved.
        chosen = {c.qid: rng.sample(pool, SHOPPERS) for c in crowd}
        for round_ in range(SHOPPERS):
            events: list[dict[str, Any]] = []
            for case in crowd:
                events.extend(
                    crowd_events(
                        case,
                        ids,
                        ranker,
                        chosen[case.qid][round_],
                        rng,
                        now,
                        protocol=protocol,
                        recorder=recorder,
                    )
                )
            post(store, events, recorder)
            recorder.flush()
            refresher.refresh()
        ranks = [
            (c.rank_before, rank_of(ids, ranker.rerank(c.query, c.hits).hits, c.target))
            for c in crowd
        ]
        top3 = sum(1 for _, after in ranks if after <= 3)
        report["crowd"] = {
            "queries": len(crowd),
            "reached_top3": top3,
            "fraction_top3": top3 / len(crowd) if crowd else 0.0,
            "floor": 0.70,
            "mean_rank_before": sum(b for b, _ in ranks) / max(1, len(ranks)),
            "mean_rank_after": sum(a for _, a in ranks) / max(1, len(ranks)),
            "ranks": [
                {"qid": c.qid, "query": c.text, "before": b, "after": a}
                for c, (b, a) in zip(crowd, ranks, strict=True)
            ],
        }
        print(
            f"crowd: {top3}/{len(crowd)} reached the top 3 ({report['crowd']['fraction_top3']:.0%},"
            f" floor 70%); mean rank {report['crowd']['mean_rank_before']:.1f} -> "
            f"{report['crowd']['mean_rank_after']:.1f}",
            flush=True,
        )
        half = len(actor) // 2
        for name, cases, one_user in (
            ("one_session", actor[:half], False),
            ("one_user", actor[half:], True),
        ):
            # Ranks just before the attack (the crowd's evidence is in the store by then).
            before = [
                rank_of(ids, ranker.rerank(case.query, case.hits).hits, case.target)
                for case in cases
            ]
            for case in cases:
                post(store, actor_events(case, ids, one_user=one_user))
            refresher.refresh()
            moves = [
                rank - rank_of(ids, ranker.rerank(case.query, case.hits).hits, case.target)
                for case, rank in zip(cases, before, strict=True)
            ]
            report[name] = {
                "queries": len(cases),
                "events_each": ACTOR_EVENTS,
                "max_places_up": max(moves, default=0),
                "mean_places_up": sum(moves) / max(1, len(moves)),
                "moved_up": sum(1 for m in moves if m > 0),
                "reached_top3": sum(
                    1 for rank, m in zip(before, moves, strict=True) if rank - m <= 3
                ),
                "floor_places_up": 0,
            }
            r = report[name]
            print(
                f"{name.replace('_', ' ')}: {ACTOR_EVENTS} events on each of {r['queries']} "
                f"queries moved the product up on {r['moved_up']} (max {r['max_places_up']} "
                f"places, mean {r['mean_places_up']:.1f}); {r['reached_top3']} reached the top 3",
                flush=True,
            )
        report["recording"] = recording_cost(store, engine, [c.text for c in crowd + actor])
        r = report["recording"]
        print(
            f"recording an answer: {r['record_us_mean']:.1f} us per search "
            f"({r['record_share_of_search_p50']:.2%} of the search p50 {r['search_p50_ms']:.1f} "
            f"ms); written at {r['flush_records_per_s']:,.0f} records/s",
            flush=True,
        )
        store.close()
    report["seconds"] = time.perf_counter() - started
    return report


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; print the figures and optionally write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--index", type=Path, default=Path("var/bench/hd-lexical"))
    parser.add_argument("--queries", type=int, default=60, help="crowd queries")
    parser.add_argument("--actor-queries", type=int, default=20, help="single-actor queries")
    parser.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default="query-id",
        help="how searches reach the event store (see the module docstring)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    report = run(args.index, args.queries, args.actor_queries, args.seed, protocol=args.protocol)
    print(f"{report['seconds']:.0f} s")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))
        print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
