"""Simulated shoppers on the Home Depot catalogue: behavioural learning, personalisation,
event ingestion and search latency while events stream in.

    python -m benchmarks.behaviour --out benchmarks/results/behaviour.json
    python -m benchmarks.behaviour --limit 100          # a quick run

**Shoppers.** Each simulated user has hidden preferences: three favourite brands (the first
word of a Home Depot title, which is where the catalogue puts the brand). A session is one
user issuing one dev query and looking at the top 20 results under a position-based model: the
shopper examines position ``k`` with probability ``0.95 / k^0.75`` and clicks an examined
product with probability ``0.02 + 0.6 r + 0.3 r * preferred`` where ``r = (grade - 1) / 2`` is
the human grade on 0..1 (unjudged products count as grade 1) and ``preferred`` says the product
is of a favourite brand. A click adds to cart with probability ``0.1 + 0.6 r + 0.2 preferred``
and half the carts are bought. Events go through the real SQLite event store and the background
refresh path (:class:`events.signals.SignalsRefresher`).

**Measurements.**

1. *Learning curve*: nDCG@10 against the grades on the simulated queries after 0, 5, 10, 20
   and 40 sessions per query, for the foundation's ranking (fusion and learned ranker) and with
   the behavioural re-ranker; also on the queries held out from the learned ranker's training.
2. *Personalisation*: each user searches training queries (building a profile), then held-out
   queries where a relevant product of a favourite brand is among the candidates; nDCG@10 of
   the user's preferred relevant products (gain ``r`` for products of a favourite brand)
   with and without the personalisation re-ranker, per user, plus nDCG@10 against the grades
   on the same queries (personalisation must not cost relevance).
3. *Ingestion*: events/s validated and stored in SQLite (synchronous FULL and NORMAL) in
   batches, and through ``POST /events`` (FastAPI test client, in process) in batches of 100,
   the API's per-request cap.
4. *Latency*: the search path (understand, retrieve, fuse, learned ranker, then both
   re-rankers; paging and facets excluded) p50/p99 with no events and while a thread
   streams events into the store and the refresher folds them every second.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from api.service import open_snapshot
from benchmarks.common import learned_order, load_home_depot, ndcg_at_k, percentile
from benchmarks.train_ranker import is_training_query
from events.profiles import ProfileAggregator
from events.signals import BehaviourAggregator, SignalsRefresher
from events.store import SQLiteEventStore, ingest
from search.engine import SearchEngine
from search.rank.behaviour import BehaviourReranker
from search.rank.context import RankingContext
from search.rank.personal import Catalogue, PersonalisationReranker
from search.types import Hit, SearchRequest
from search.understand import AnalyzedQuery

SHOWN = 20
DEPTH = 50
CHECKPOINTS = (0, 5, 10, 20, 40)


def examination(position: int) -> float:
    """Probability that a simulated shopper looks at a 1-based position."""
    return 0.95 / position**0.75


@dataclass(frozen=True)
class Shopper:
    """A simulated user and their hidden favourite brands."""

    user_id: str
    brands: frozenset[str]
    channel: str


def brand_of_title(title: str) -> str:
    """The brand guess: the title's first word, lower case."""
    return title.split()[0].lower() if title.split() else ""


@dataclass
class World:
    """The catalogue, the engine's candidates per query and the truth."""

    engine: SearchEngine
    product_ids: list[str]
    brand: list[str]
    grades: Mapping[str, Mapping[str, float]]
    texts: dict[str, str]
    candidates: dict[str, tuple[AnalyzedQuery, list[Hit]]]

    def relevance(self, qid: str, doc: int) -> float:
        """The human grade of a product for a query on 0..1 (unjudged: 0)."""
        grade = self.grades.get(qid, {}).get(self.product_ids[doc], 1.0)
        return max(0.0, min(1.0, (grade - 1.0) / 2.0))

    def ndcg(self, qid: str, hits: Sequence[Hit]) -> float | None:
        """nDCG@10 of a ranking against the grades (None without a relevant product)."""
        return ndcg_at_k([self.product_ids[h.doc] for h in hits], self.grades[qid], 10)


def simulate(
    world: World,
    shopper: Shopper,
    qid: str,
    shown: Sequence[Hit],
    rng: random.Random,
    now: float,
) -> list[dict[str, Any]]:
    """One session's events (as a client would post them)."""
    session = uuid.uuid4().hex
    text = world.texts[qid]
    base = {"session_id": session, "user_id": shopper.user_id, "channel": shopper.channel}
    ids = [world.product_ids[h.doc] for h in shown[:SHOWN]]
    events: list[dict[str, Any]] = [
        {**base, "type": "search", "query": text, "results": ids, "timestamp": now}
    ]
    for position, hit in enumerate(shown[:SHOWN], start=1):
        r = world.relevance(qid, hit.doc)
        preferred = world.brand[hit.doc] in shopper.brands
        attract = 0.02 + 0.6 * r + (0.3 * r if preferred else 0.0)
        if rng.random() >= examination(position) * attract:
            continue
        product = {**base, "product_id": ids[position - 1], "query": text, "timestamp": now}
        events.append({**product, "type": "click", "position": position})
        events.append({**product, "type": "view"})
        if rng.random() < 0.1 + 0.6 * r + (0.2 if preferred else 0.0):
            events.append({**product, "type": "add_to_cart"})
            if rng.random() < 0.5:
                events.append({**product, "type": "purchase"})
    return events


def load_world(index: Path, n_queries: int, seed: int) -> World:
    """Open the snapshot and compute the foundation's ranking for a sample of dev queries."""
    hd = load_home_depot()
    engine = open_snapshot(index, use_semantic=False, verify=False)
    ids = [p.id for p in engine.store.products]
    brand = [brand_of_title(p.title) for p in engine.store.products]
    rng = random.Random(seed)
    usable = [
        qid for qid in sorted(hd.queries) if any(g > 1.0 for g in hd.qrels.get(qid, {}).values())
    ]
    rng.shuffle(usable)
    chosen = usable[:n_queries]
    candidates = {}
    for qid in chosen:
        found, ranked = learned_order(
            engine, SearchRequest(text=hd.queries[qid], as_you_type=False)
        )
        candidates[qid] = (found.query, ranked[:DEPTH])
    return World(engine, ids, brand, hd.qrels, dict(hd.queries), candidates)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def learning_curve(
    world: World,
    queries: Sequence[str],
    shoppers: Sequence[Shopper],
    store: SQLiteEventStore,
    seed: int,
) -> tuple[list[dict[str, Any]], BehaviourAggregator, ProfileAggregator, Catalogue, int]:
    """Sessions round by round over ``queries``; nDCG@10 at each checkpoint."""
    rng = random.Random(seed)
    behaviour = BehaviourAggregator()
    catalogue = Catalogue(
        world.engine.store.products,
        brand_of={pid: b for pid, b in zip(world.product_ids, world.brand, strict=True)},
    )
    profiles = ProfileAggregator(catalogue)
    refresher = SignalsRefresher(store, [behaviour, profiles])
    reranker = BehaviourReranker(behaviour, world.product_ids, depth=DEPTH)
    rows: list[dict[str, Any]] = []
    events_total = 0
    held_out = {q for q in queries if not is_training_query(q)}
    for round_ in range(max(CHECKPOINTS) + 1):
        if round_ in CHECKPOINTS:
            base, behav, base_h, behav_h = [], [], [], []
            for qid in queries:
                query, hits = world.candidates[qid]
                b = world.ndcg(qid, hits)
                r = world.ndcg(qid, reranker.rerank(query, hits).hits)
                if b is None or r is None:
                    continue
                base.append(b)
                behav.append(r)
                if qid in held_out:
                    base_h.append(b)
                    behav_h.append(r)
            row = {
                "sessions_per_query": round_,
                "queries": len(base),
                "ndcg10_foundation": _mean(base),
                "ndcg10_behaviour": _mean(behav),
                "lift": _mean(behav) / _mean(base) - 1.0 if base else 0.0,
                "held_out_queries": len(base_h),
                "held_out_ndcg10_foundation": _mean(base_h),
                "held_out_ndcg10_behaviour": _mean(behav_h),
                "events": events_total,
            }
            rows.append(row)
            print(
                f"  {round_:>3} sessions/query  nDCG@10 foundation {row['ndcg10_foundation']:.4f}"
                f"  behaviour {row['ndcg10_behaviour']:.4f}  ({row['lift']:+.1%})"
                f"  held-out {row['held_out_ndcg10_foundation']:.4f} -> "
                f"{row['held_out_ndcg10_behaviour']:.4f}",
                flush=True,
            )
        if round_ == max(CHECKPOINTS):
            break
        batch: list[dict[str, Any]] = []
        now = time.time()
        for qid in queries:
            query, hits = world.candidates[qid]
            shown = reranker.rerank(query, hits).hits
            batch.extend(simulate(world, rng.choice(shoppers), qid, shown, rng, now))
        for start in range(0, len(batch), 500):
            ingest(store, batch[start : start + 500])
        events_total += len(batch)
        refresher.refresh()
    return rows, behaviour, profiles, catalogue, events_total


def personalisation(
    world: World,
    pool: Sequence[str],
    behaviour: BehaviourAggregator,
    catalogue: Catalogue,
    store: SQLiteEventStore,
    n_users: int,
    seed: int,
    strength: float,
) -> dict[str, Any]:
    """Per-user lift of the personalisation re-ranker on held-out queries."""
    rng = random.Random(seed)
    counts: dict[str, int] = defaultdict(int)
    for b in world.brand:
        counts[b] += 1
    top_brands = [b for b, _ in sorted(counts.items(), key=lambda x: -x[1])[:60]]
    # Queries where a relevant product of the brand is among the candidates.
    by_brand: dict[str, list[str]] = defaultdict(list)
    for qid in pool:
        _, hits = world.candidates[qid]
        seen = {world.brand[h.doc] for h in hits if world.relevance(qid, h.doc) >= 0.5}
        for b in seen:
            by_brand[b].append(qid)
    profiles = ProfileAggregator(catalogue)
    refresher = SignalsRefresher(store, [profiles])
    refresher.last_seq = store.last_seq()
    personal = PersonalisationReranker(profiles, catalogue, strength=strength, depth=DEPTH)
    ranker = BehaviourReranker(behaviour, world.product_ids, depth=DEPTH)
    users: list[tuple[Shopper, list[str]]] = []
    batch: list[dict[str, Any]] = []
    for u in range(n_users):
        brands = [b for b in rng.sample(top_brands, len(top_brands)) if len(by_brand[b]) >= 4][:3]
        shopper = Shopper(f"puser-{u}", frozenset(brands), rng.choice(["web", "app"]))
        qids = sorted({q for b in brands for q in by_brand[b]})
        rng.shuffle(qids)
        if len(qids) < 6:
            continue
        cut = max(3, int(len(qids) * 0.6))
        train, test = qids[:cut], qids[cut : cut + 10]
        now = time.time()
        for qid in train:
            query, hits = world.candidates[qid]
            shown = ranker.rerank(query, hits).hits
            batch.extend(simulate(world, shopper, qid, shown, rng, now))
        users.append((shopper, test))
    for start in range(0, len(batch), 500):
        ingest(store, batch[start : start + 500])
    refresher.refresh()
    per_user: list[tuple[float, float]] = []
    grade_plain: list[float] = []
    grade_personal: list[float] = []
    for shopper, test in users:
        context = RankingContext(user_id=shopper.user_id, channel=shopper.channel)
        plain_scores, personal_scores = [], []
        for qid in test:
            query, hits = world.candidates[qid]
            ranked = ranker.rerank(query, hits).hits
            mine = personal.rerank(query, ranked, context).hits
            qrel = {
                world.product_ids[h.doc]: 1.0 + 2.0 * world.relevance(qid, h.doc)
                for h in hits
                if world.brand[h.doc] in shopper.brands
            }
            plain_ndcg = ndcg_at_k([world.product_ids[h.doc] for h in ranked], qrel, 10)
            mine_ndcg = ndcg_at_k([world.product_ids[h.doc] for h in mine], qrel, 10)
            if plain_ndcg is None or mine_ndcg is None:
                continue
            plain_scores.append(plain_ndcg)
            personal_scores.append(mine_ndcg)
            ga, gb = world.ndcg(qid, ranked), world.ndcg(qid, mine)
            if ga is not None and gb is not None:
                grade_plain.append(ga)
                grade_personal.append(gb)
        if plain_scores:
            per_user.append((_mean(plain_scores), _mean(personal_scores)))
    plain = _mean([p for p, _ in per_user])
    personalised = _mean([m for _, m in per_user])
    lifts = [m / p - 1.0 for p, m in per_user if p > 0]
    return {
        "users": len(per_user),
        "strength": strength,
        "preferred_ndcg10_unpersonalised": plain,
        "preferred_ndcg10_personalised": personalised,
        "lift": personalised / plain - 1.0 if plain else 0.0,
        "median_user_lift": statistics.median(lifts) if lifts else 0.0,
        "users_better": sum(1 for p, m in per_user if m > p),
        "users_worse": sum(1 for p, m in per_user if m < p),
        "grade_ndcg10_unpersonalised": _mean(grade_plain),
        "grade_ndcg10_personalised": _mean(grade_personal),
    }


def ingestion(n_events: int, seed: int) -> dict[str, Any]:
    """Events/s through validation and the SQLite store, and through ``POST /events``."""
    rng = random.Random(seed)
    now = time.time()

    def make(i: int) -> dict[str, Any]:
        kind = rng.choice(["search", "view", "click", "add_to_cart", "purchase"])
        e: dict[str, Any] = {
            "type": kind,
            "session_id": f"s{i % 997}",
            "user_id": f"u{i % 313}",
            "channel": "web",
            "timestamp": now,
            "query": "cordless drill",
        }
        if kind == "search":
            e["results"] = [str(100000 + j) for j in range(10)]
        else:
            e["product_id"] = str(100000 + i % 5000)
            e["position"] = 1 + i % 10
        return e

    raw = [make(i) for i in range(n_events)]
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for sync in ("FULL", "NORMAL"):
            for size in (100, 500):
                store = SQLiteEventStore(Path(tmp) / f"{sync}-{size}.db", synchronous=sync)
                started = time.perf_counter()
                for start in range(0, n_events, size):
                    ingest(store, raw[start : start + size])
                elapsed = time.perf_counter() - started
                assert store.count() == n_events
                store.close()
                out[f"store_{sync.lower()}_batch{size}_events_per_s"] = n_events / elapsed
                print(f"  store {sync:<6} batch {size:>3}: {n_events / elapsed:>9,.0f} events/s")
        from fastapi.testclient import TestClient

        from api.app import create_app
        from api.settings import Settings

        # Open mode without a per-client limit: one in-process client posts every batch.
        settings = Settings(open_mode=True, client_rate_per_minute=0, keys_db=None)
        app = create_app(settings, engine=object())  # type: ignore[arg-type]
        store = SQLiteEventStore(Path(tmp) / "http.db")
        app.state.event_store = store
        client = TestClient(app)
        size = 100  # the API's per-request cap (events_max_batch)
        started = time.perf_counter()
        for start in range(0, n_events, size):
            response = client.post("/events", json={"events": raw[start : start + size]})
            assert response.status_code == 200, response.text
        elapsed = time.perf_counter() - started
        assert store.count() == n_events
        store.close()
        out["http_batch100_events_per_s"] = n_events / elapsed
        print(f"  POST /events batch {size}: {n_events / elapsed:>9,.0f} events/s")
    return out


def latency(
    world: World,
    behaviour: BehaviourAggregator,
    profiles: ProfileAggregator,
    catalogue: Catalogue,
    store: SQLiteEventStore,
    texts: Sequence[str],
    rate: float,
) -> dict[str, Any]:
    """Search latency (engine + both re-rankers) without and with events streaming in."""
    engine = world.engine
    ranker = BehaviourReranker(behaviour, world.product_ids, depth=DEPTH)
    personal = PersonalisationReranker(profiles, catalogue, depth=DEPTH)
    users = [k.split(":", 1)[1] for k in profiles.snapshot.profiles if k.startswith("user:")]

    def one(text: str, i: int) -> float:
        started = time.perf_counter()
        user = users[i % len(users)] if users else None
        request = SearchRequest(text=text, as_you_type=False, user_id=user)
        found, ranked = learned_order(engine, request)
        context = RankingContext.from_request(request)
        hits = ranker.rerank(found.query, ranked, context).hits
        personal.rerank(found.query, hits, context)
        return (time.perf_counter() - started) * 1000.0

    for i, text in enumerate(texts[:20]):
        one(text, i)
    quiet = [one(t, i) for i, t in enumerate(texts)]
    refresher = SignalsRefresher(store, [behaviour, profiles], interval_s=1.0)
    refresher.last_seq = store.last_seq()
    refresher.start()
    stop = threading.Event()
    sent = [0]

    # Sessions are simulated beforehand: the streaming thread only posts them, as request
    # handlers would, so the measurement is ingestion plus refresh, not the simulator.
    rng = random.Random(7)
    qids = list(world.candidates)
    pending: list[dict[str, Any]] = []
    while len(pending) < rate * 60:
        qid = rng.choice(qids)
        _, hits = world.candidates[qid]
        shopper = Shopper(f"stream-{rng.randrange(1000)}", frozenset(), "web")
        pending.extend(simulate(world, shopper, qid, hits, rng, time.time()))
    per_tick = max(1, int(rate / 10))

    def stream() -> None:
        offset = 0
        while not stop.is_set() and offset < len(pending):
            started = time.perf_counter()
            ingest(store, pending[offset : offset + per_tick])
            offset += per_tick
            sent[0] = min(offset, len(pending))
            stop.wait(max(0.0, 0.1 - (time.perf_counter() - started)))

    thread = threading.Thread(target=stream, daemon=True)
    started = time.perf_counter()
    thread.start()
    busy = [one(t, i) for i, t in enumerate(texts)]
    stop.set()
    thread.join()
    elapsed = time.perf_counter() - started
    refresher.stop()
    result = {
        "searches": len(texts),
        "quiet_p50_ms": percentile(quiet, 50),
        "quiet_p99_ms": percentile(quiet, 99),
        "streaming_p50_ms": percentile(busy, 50),
        "streaming_p99_ms": percentile(busy, 99),
        "streamed_events_per_s": sent[0] / elapsed,
        "refresher_lag_events": store.last_seq() - refresher.last_seq,
    }
    print(
        f"  quiet p50 {result['quiet_p50_ms']:.1f} ms p99 {result['quiet_p99_ms']:.1f} ms; "
        f"streaming {result['streamed_events_per_s']:.0f} ev/s: p50 "
        f"{result['streaming_p50_ms']:.1f} ms p99 {result['streaming_p99_ms']:.1f} ms",
        flush=True,
    )
    return result


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; print a table and optionally write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--index", type=Path, default=Path("var/bench/hd-lexical"))
    parser.add_argument("--queries", type=int, default=600, help="queries in the learning curve")
    parser.add_argument("--pool", type=int, default=2500, help="queries for personalisation")
    parser.add_argument("--users", type=int, default=150, help="personalisation users")
    parser.add_argument("--strength", type=float, default=0.3)
    parser.add_argument("--events", type=int, default=50_000, help="ingestion events")
    parser.add_argument("--stream-rate", type=float, default=2000.0, help="events/s streamed")
    parser.add_argument("--limit", type=int, default=None, help="cap every count (quick runs)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.limit:
        args.queries = min(args.queries, args.limit)
        args.pool = min(args.pool, args.limit * 4)
        args.users = min(args.users, args.limit)
        args.events = min(args.events, args.limit * 100)
    started = time.perf_counter()
    print(f"loading {args.index} and ranking {args.queries + args.pool} queries...", flush=True)
    world = load_world(args.index, args.queries + args.pool, args.seed)
    qids = list(world.candidates)
    curve_queries, pool = qids[: args.queries], qids[args.queries :]
    shoppers = [
        Shopper(f"user-{i}", frozenset(), random.Random(i).choice(["web", "app"]))
        for i in range(500)
    ]
    report: dict[str, Any] = {"index": str(args.index), "seed": args.seed}
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteEventStore(Path(tmp) / "events.db", synchronous="NORMAL")
        print("learning curve (nDCG@10 against the human grades):", flush=True)
        curve, behaviour, profiles, catalogue, _ = learning_curve(
            world, curve_queries, shoppers, store, args.seed
        )
        report["learning_curve"] = curve
        print("personalisation:", flush=True)
        report["personalisation"] = personalisation(
            world, pool, behaviour, catalogue, store, args.users, args.seed, args.strength
        )
        p = report["personalisation"]
        print(
            f"  {p['users']} users: preferred-item nDCG@10 {p['preferred_ndcg10_unpersonalised']:.4f}"
            f" -> {p['preferred_ndcg10_personalised']:.4f} ({p['lift']:+.1%}); median user "
            f"{p['median_user_lift']:+.1%}; better {p['users_better']} worse {p['users_worse']};"
            f" grade nDCG@10 {p['grade_ndcg10_unpersonalised']:.4f} -> "
            f"{p['grade_ndcg10_personalised']:.4f}",
            flush=True,
        )
        print("search latency:", flush=True)
        report["latency"] = latency(
            world,
            behaviour,
            profiles,
            catalogue,
            store,
            [world.texts[q] for q in curve_queries[:300]],
            args.stream_rate,
        )
        store.close()
    print("ingestion:", flush=True)
    report["ingestion"] = ingestion(args.events, args.seed)
    at20 = next((r for r in curve if r["sessions_per_query"] == 20), curve[-1])
    report["floors"] = {
        "ndcg_lift_at_20_sessions": at20["lift"],
        "ndcg_lift_floor": 0.15,
        "personal_lift": report["personalisation"]["lift"],
        "personal_lift_floor": 0.20,
        "ingest_events_per_s": report["ingestion"]["http_batch100_events_per_s"],
        "ingest_floor": 5000,
    }
    report["seconds"] = time.perf_counter() - started
    f = report["floors"]
    print(
        f"floors: nDCG lift at 20 sessions {f['ndcg_lift_at_20_sessions']:+.1%} (>= +15%), "
        f"personal lift {f['personal_lift']:+.1%} (>= +20%), ingestion "
        f"{f['ingest_events_per_s']:,.0f} events/s over HTTP (>= 5,000); "
        f"{report['seconds']:.0f} s"
    )
    out = args.out
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2))
        print(f"wrote {out}")
    return report


if __name__ == "__main__":
    main()
