"""Opening the event store a setting names: SQLite, PostgreSQL or Redis.

The factory lives apart from the stores so that it can name them all: ``events.redis_store``
builds on ``events.store``'s event model, and a factory inside ``events.store`` would import
it back.
"""

from __future__ import annotations

from events.redis_store import RedisEventStore
from events.store import EventStore, PostgresEventStore, SQLiteEventStore, SQLiteSynchronous


def open_event_store(url: str, *, synchronous: SQLiteSynchronous = "FULL") -> EventStore:
    """Open the store a setting names.

    Args:
        url: ``postgresql://...`` / ``postgres://...`` for PostgreSQL; anything else is a
            SQLite file path (``sqlite:///path`` also accepted), or ``":memory:"``.
        synchronous: SQLite's durability level (ignored for PostgreSQL).

    Returns:
        The store.
    """
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresEventStore(url)
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisEventStore(url)  # redis:// also takes ?prefix=<key namespace>
    if url.startswith("sqlite:///"):
        url = url[len("sqlite:///") :]
    return SQLiteEventStore(url, synchronous=synchronous)
