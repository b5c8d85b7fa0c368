"""Shopper sessions as events, folded into behavioural signals through a real event store:
helpers for the tests of :mod:`events.signals` and of the ranking stages that read them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from events.signals import BehaviourAggregator, BehaviourConfig, SignalsRefresher
from events.store import SQLiteEventStore, ingest

NOW = 1_750_000_000.0


def session(
    query: str,
    shown: list[str],
    clicked: dict[str, int] | None = None,
    *,
    carts: tuple[str, ...] = (),
    buys: tuple[str, ...] = (),
    ts: float = NOW,
    sid: str = "s",
) -> list[dict[str, Any]]:
    """A search showing ``shown`` and the clicks (product -> position), carts and purchases."""
    base = {"session_id": sid, "timestamp": ts, "query": query}
    events: list[dict[str, Any]] = [{**base, "type": "search", "results": shown}]
    for pid, pos in (clicked or {}).items():
        events.append({**base, "type": "click", "product_id": pid, "position": pos})
    events += [{**base, "type": "add_to_cart", "product_id": p} for p in carts]
    events += [{**base, "type": "purchase", "product_id": p} for p in buys]
    return events


def folded(events: list[dict[str, Any]], tmp_path: Path, **config: Any) -> BehaviourAggregator:
    store = SQLiteEventStore(tmp_path / "e.db")
    ingest(store, events, now=NOW + 1)
    aggregator = BehaviourAggregator(BehaviourConfig(**config))
    SignalsRefresher(store, [aggregator], clock=lambda: NOW).refresh()
    return aggregator
