"""Shopper events in Redis: one behavioural store shared by every service replica.

:class:`RedisEventStore` implements :class:`events.store.EventStore` over a handful of keys that
share one hash tag (``{<prefix>}``), so they live in one slot:

* ``{p}:seq``: the sequence counter (``INCR``); numbers are never reused, even after deletes;
* ``{p}:events``: hash ``seq -> event as JSON`` (:func:`events.store.event_to_dict`);
* ``{p}:order``: sorted set of ``seq`` scored by ``seq`` (``read_since``, ``last_seq``,
  ``count``);
* ``{p}:ts``: sorted set of ``seq`` scored by the event's timestamp (``scan``, ``purge_before``);
* ``{p}:ids``: hash ``event_id -> seq`` (idempotency);
* ``{p}:session:<session_id>``: set of the session's ``seq`` numbers, and
  ``{p}:user:<user_id>``: set of the user's session ids (``forget_user``);
* the erasure log (:meth:`RedisEventStore.erasures_since`): ``{p}:erasure_seq``, its counter,
  and two sorted sets of the entries ``"<seq>:<timestamp>:<user_id>"``, ``{p}:erasures`` scored
  by ``seq`` (reading) and ``{p}:erasure_ts`` scored by time (retention). ``forget_user``
  deletes the events and appends the entry in one script.

Redis that cannot be reached (after the client's retries), or that answers as a read-only
replica, raises :class:`search.errors.EventStoreUnavailableError`.

One Redis primary holds them (Redis Cluster is not supported: the scripts name the session and
user keys themselves).

Every write is one Lua script, and Redis runs a script atomically: a batch is numbered, checked
for duplicates and indexed with no other client in between, so a sequence number becomes
visible only with every smaller one already there, and an incremental reader
(:class:`events.signals.SignalsRefresher`) never skips an event.

**What an acknowledged event means.** ``append`` returns after Redis answered the script. Redis
answers a write only after appending it to its append-only file (AOF) when ``appendonly yes``;
with ``appendfsync always`` that file is also fsync'd before the answer, so an acknowledged
event survives a crash, a ``kill -9`` or a power cut of the Redis machine, as with PostgreSQL or
SQLite ``FULL``. With ``appendfsync everysec`` (Redis's default when AOF is on) up to about one
second of acknowledged events can be lost to a power cut (not to a crash of the Redis process);
without AOF (RDB snapshots only) minutes can be. ``maxmemory-policy`` must stay ``noeviction``
(the default): an evicting policy drops events silently. Replication to Redis replicas is
asynchronous: acknowledged means "in the primary's AOF", and a failover to a replica may lose
the last acknowledged events. The store checks ``appendonly``/``appendfsync`` when it connects and logs a warning when they promise
less (a managed Redis that forbids ``CONFIG`` is not checked).

Events are serialised only with :func:`events.store.event_to_dict` and read back with
:func:`events.store.parse_event`, so a field added to :class:`events.store.Event` passes through
unchanged; keys a newer replica wrote that this version's :class:`~events.store.Event` lacks are
dropped on reading (a rolling upgrade does not stop the older replicas' refreshers).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson

from events.store import Erasure, Event, EventType, StoredEvent, event_to_dict, parse_event
from search.errors import EventStoreUnavailableError

logger = logging.getLogger("productevents.store.redis")

DEFAULT_PREFIX = "productsearch:events"
"""Key prefix (inside the hash tag) unless the URL's ``prefix`` parameter names another."""

_CHUNK = 1000  # ids per HMGET / events per purge script: bounded work per round trip
_EVENT_FIELDS = frozenset(f.name for f in dataclasses.fields(Event))

# KEYS: seq, events, order, ts, ids. ARGV[1]: key prefix of the per-session/per-user sets;
# then 5 per event: event_id, JSON, timestamp, session_id, user_id ('' for none).
_APPEND = """
local base = ARGV[1]
local out = {}
for j = 2, #ARGV, 5 do
  local id = ARGV[j]
  if redis.call('HEXISTS', KEYS[5], id) == 1 then
    out[#out + 1] = 0
  else
    local seq = redis.call('INCR', KEYS[1])
    redis.call('HSET', KEYS[5], id, seq)
    redis.call('HSET', KEYS[2], seq, ARGV[j + 1])
    redis.call('ZADD', KEYS[3], seq, seq)
    redis.call('ZADD', KEYS[4], ARGV[j + 2], seq)
    redis.call('SADD', base .. 'session:' .. ARGV[j + 3], seq)
    if ARGV[j + 4] ~= '' then
      redis.call('SADD', base .. 'user:' .. ARGV[j + 4], ARGV[j + 3])
    end
    out[#out + 1] = 1
  end
end
return out
"""

# KEYS: events, order. ARGV: after_seq, limit. Returns seq, JSON, seq, JSON...
_READ = """
local seqs = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. ARGV[1], '+inf', 'LIMIT', 0, ARGV[2])
local out = {}
for i = 1, #seqs, 1000 do
  local chunk = {}
  for k = i, math.min(i + 999, #seqs) do chunk[#chunk + 1] = seqs[k] end
  local docs = redis.call('HMGET', KEYS[1], unpack(chunk))
  for k = 1, #chunk do
    if docs[k] then
      out[#out + 1] = chunk[k]
      out[#out + 1] = docs[k]
    end
  end
end
return out
"""

# Shared by the two deleting scripts: forget one event (its data and every index entry but
# the session set, which the caller handles). KEYS: events, order, ts, ids.
_DROP = """
local function drop(seq, doc)
  redis.call('HDEL', KEYS[1], seq)
  redis.call('ZREM', KEYS[2], seq)
  redis.call('ZREM', KEYS[3], seq)
  if doc and type(doc.event_id) == 'string' then
    if redis.call('HGET', KEYS[4], doc.event_id) == seq then
      redis.call('HDEL', KEYS[4], doc.event_id)
    end
  end
end
"""

# KEYS: events, order, ts, ids, erasure_seq, erasures, erasure_ts. ARGV: key prefix, user_id,
# timestamp. Deletes the user's events and every event of a session in which the user has an
# event (as the SQL stores do), and appends the erasure to the log. The user's set of
# sessions may name a session whose user events were purged since: those are left alone.
_FORGET = (
    _DROP
    + """
local base = ARGV[1]
local ukey = base .. 'user:' .. ARGV[2]
local deleted = 0
for _, sid in ipairs(redis.call('SMEMBERS', ukey)) do
  local skey = base .. 'session:' .. sid
  local seqs = redis.call('SMEMBERS', skey)
  local docs = {}
  local owned = false
  for k, seq in ipairs(seqs) do
    local raw = redis.call('HGET', KEYS[1], seq)
    if raw then
      docs[k] = cjson.decode(raw)
      if docs[k].user_id == ARGV[2] then owned = true end
    end
  end
  if owned then
    for k, seq in ipairs(seqs) do
      if docs[k] then deleted = deleted + 1 end
      drop(seq, docs[k])
    end
    redis.call('DEL', skey)
  end
end
redis.call('DEL', ukey)
local eseq = redis.call('INCR', KEYS[5])
local entry = eseq .. ':' .. ARGV[3] .. ':' .. ARGV[2]
redis.call('ZADD', KEYS[6], eseq, entry)
redis.call('ZADD', KEYS[7], ARGV[3], entry)
return deleted
"""
)

# KEYS: events, order, ts, ids. ARGV: key prefix, exclusive upper timestamp bound, limit.
# Deletes at most ``limit`` events (the caller loops), so one call never blocks Redis long.
_PURGE = (
    _DROP
    + """
local base = ARGV[1]
local seqs = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', '(' .. ARGV[2], 'LIMIT', 0, ARGV[3])
for _, seq in ipairs(seqs) do
  local raw = redis.call('HGET', KEYS[1], seq)
  local doc = nil
  if raw then doc = cjson.decode(raw) end
  drop(seq, doc)
  if doc and type(doc.session_id) == 'string' then
    local skey = base .. 'session:' .. doc.session_id
    redis.call('SREM', skey, seq)
    if type(doc.user_id) == 'string' and redis.call('SCARD', skey) == 0 then
      redis.call('SREM', base .. 'user:' .. doc.user_id, doc.session_id)
    end
  end
end
return #seqs
"""
)


# KEYS: erasures, erasure_ts. ARGV: exclusive upper timestamp bound, limit.
_PURGE_ERASURES = """
local entries = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[1], 'LIMIT', 0, ARGV[2])
for _, entry in ipairs(entries) do
  redis.call('ZREM', KEYS[1], entry)
  redis.call('ZREM', KEYS[2], entry)
end
return #entries
"""


def _split_prefix(url: str) -> tuple[str, str | None]:
    """``url`` without its ``prefix`` query parameter (redis-py refuses unknown ones), and it."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefix = next((v for k, v in query if k == "prefix"), None)
    rest = urlencode([(k, v) for k, v in query if k != "prefix"])
    return urlunsplit(parts._replace(query=rest)), prefix


def _score(value: float) -> str:
    if math.isnan(value):
        raise ValueError("a timestamp bound must be a number, not NaN")
    return repr(float(value))  # round-trips exactly; 'inf' and '-inf' are valid Redis scores


class RedisEventStore:
    """Events in Redis, shared by several service replicas (see the module docstring).

    Args:
        url: ``redis://[user:password@]host[:port][/db]``, ``rediss://...`` (TLS) or
            ``unix:///path/redis.sock``; an optional ``prefix=<name>`` query parameter namespaces
            the keys (several shops or tests on one Redis).
        prefix: Key prefix when the URL names none (default :data:`DEFAULT_PREFIX`).
        check_durability: Read the server's ``appendonly``/``appendfsync`` settings at start
            and log a warning when acknowledged events could be lost.
        socket_timeout: Seconds a command may wait for Redis before failing.
        retries: Attempts after the first when Redis cannot be reached or is still loading.

    Raises:
        ImportError: The ``redis`` package is not installed.
        ValueError: The prefix is empty or holds braces (they would break the hash tag).
        search.errors.EventStoreUnavailableError: Redis cannot be reached.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        check_durability: bool = True,
        socket_timeout: float = 10.0,
        retries: int = 3,
    ) -> None:
        try:
            import redis
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("install 'productsearch[redis]' to keep events in Redis") from exc
        url, url_prefix = _split_prefix(url)
        prefix = url_prefix if url_prefix is not None else prefix
        if not prefix or "{" in prefix or "}" in prefix:
            raise ValueError(f"prefix must be non-empty and free of braces, not {prefix!r}")
        self.prefix = prefix
        self._base = "{" + prefix + "}:"
        names = ("seq", "events", "order", "ts", "ids", "erasure_seq", "erasures", "erasure_ts")
        self._keys = {name: self._base + name for name in names}
        from redis.backoff import ExponentialBackoff
        from redis.exceptions import BusyLoadingError, ReadOnlyError
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError
        from redis.retry import Retry

        # What "Redis cannot serve us now" looks like once the retries are spent (a replica
        # left read-only by a failover too); anything else is a bug and stays as it is.
        self._unavailable: tuple[type[Exception], ...] = (
            RedisConnectionError,
            RedisTimeoutError,
            ReadOnlyError,
        )

        self._redis = redis.Redis.from_url(
            url,
            socket_timeout=socket_timeout,
            socket_connect_timeout=min(socket_timeout, 5.0),
            health_check_interval=30,
            # Every operation is safe to repeat (appends are deduplicated by event id), so a
            # dropped connection or a Redis still loading its file after a restart costs a
            # retry (0.2 + 0.4 + 0.8 s of waiting at most), not a failed request.
            retry=Retry(ExponentialBackoff(cap=1.0, base=0.1), retries),
            retry_on_error=[BusyLoadingError, RedisConnectionError, RedisTimeoutError],
        )
        self._append = self._redis.register_script(_APPEND)
        self._read = self._redis.register_script(_READ)
        self._forget = self._redis.register_script(_FORGET)
        self._purge = self._redis.register_script(_PURGE)
        self._purge_erasures = self._redis.register_script(_PURGE_ERASURES)
        self._closed = False
        with self._reachable():
            self._redis.ping()
            if check_durability:
                self._warn_unless_durable()

    @contextmanager
    def _reachable(self) -> Iterator[None]:
        """Refuse on a closed store; Redis unreachable -> EventStoreUnavailableError."""
        if self._closed:
            raise EventStoreUnavailableError("the event store is closed")
        try:
            yield
        except self._unavailable as exc:
            raise EventStoreUnavailableError(f"Redis event store: {exc}") from exc

    def _warn_unless_durable(self) -> None:
        from redis.exceptions import ResponseError

        try:
            raw: Any = self._redis.config_get("append*")
        except ResponseError:  # CONFIG renamed or disabled (managed Redis): cannot tell
            return
        config = {_text(k): _text(v) for k, v in dict(raw).items()}
        aof, fsync = config.get("appendonly", ""), config.get("appendfsync", "")
        if aof != "yes" or fsync != "always":
            logger.warning(
                "Redis runs with appendonly=%s appendfsync=%s: acknowledged events can be lost "
                "if Redis or its machine crashes; set appendonly yes and appendfsync always",
                aof or "?",
                fsync or "?",
            )

    def _key_list(self, *names: str) -> list[str]:
        return [self._keys[n] for n in names]

    def append(self, events: Sequence[Event]) -> list[bool]:
        """See :meth:`events.store.EventStore.append`; one atomic script per batch, answered
        once Redis has logged it (see the module docstring for what that guarantees).

        A batch whose answer a broken connection lost is sent again; if the first attempt was
        stored, the retry reports its events as duplicates (stored once either way).
        """
        with self._reachable():
            if not events:
                return []
            args: list[str | float] = [self._base]
            for event in events:
                args += [
                    event.event_id,
                    orjson.dumps(event_to_dict(event)).decode(),
                    repr(float(event.timestamp)),
                    event.session_id,
                    event.user_id or "",
                ]
            keys = self._key_list("seq", "events", "order", "ts", "ids")
            stored = self._append(keys=keys, args=args)
            return [bool(flag) for flag in stored]

    def read_since(self, after_seq: int, limit: int = 10_000) -> list[StoredEvent]:
        """See :meth:`events.store.EventStore.read_since`."""
        with self._reachable():
            if limit < 1:
                return []
            keys = self._key_list("events", "order")
            flat: Any = self._read(keys=keys, args=[int(after_seq), limit])
        return [StoredEvent(int(flat[i]), _decode(flat[i + 1])) for i in range(0, len(flat), 2)]

    def scan(
        self,
        start: float | None = None,
        end: float | None = None,
        types: Sequence[EventType] = (),
    ) -> Iterator[Event]:
        """See :meth:`events.store.EventStore.scan`.

        Without bounds the events are read in ``seq`` order, a chunk at a time; with bounds the
        timestamp index is read first (events appended meanwhile are left out).
        """
        wanted = frozenset(types)
        if start is None and end is None:
            after = 0
            while chunk := self.read_since(after, _CHUNK):
                for stored in chunk:
                    if not wanted or stored.event.type in wanted:
                        yield stored.event
                after = chunk[-1].seq
            return
        low = _score(start) if start is not None else "-inf"
        high = "(" + _score(end) if end is not None else "+inf"
        with self._reachable():
            members: Any = self._redis.zrangebyscore(self._keys["ts"], low, high)
        seqs = sorted(int(s) for s in members)
        for i in range(0, len(seqs), _CHUNK):
            with self._reachable():
                docs: Any = self._redis.hmget(self._keys["events"], seqs[i : i + _CHUNK])
            for doc in docs:
                if doc is None:  # deleted since the index was read
                    continue
                event = _decode(doc)
                if not wanted or event.type in wanted:
                    yield event

    def get_event(self, event_id: str) -> Event | None:
        """See :meth:`events.store.EventStore.get_event` (the ``ids`` hash, then the event)."""
        with self._reachable():
            seq: Any = self._redis.hget(self._keys["ids"], event_id)
            doc: Any = self._redis.hget(self._keys["events"], seq) if seq is not None else None
        return _decode(doc) if doc is not None else None

    def last_seq(self) -> int:
        """See :meth:`events.store.EventStore.last_seq`."""
        with self._reachable():
            top: Any = self._redis.zrevrange(self._keys["order"], 0, 0, withscores=True)
        return int(top[0][1]) if top else 0

    def count(self) -> int:
        """See :meth:`events.store.EventStore.count`."""
        with self._reachable():
            return int(self._redis.zcard(self._keys["order"]))

    def forget_user(self, user_id: str) -> int:
        """See :meth:`events.store.EventStore.forget_user` (one atomic script: the events go
        and the erasure is logged together)."""
        keys = self._key_list(
            "events", "order", "ts", "ids", "erasure_seq", "erasures", "erasure_ts"
        )
        with self._reachable():
            return int(self._forget(keys=keys, args=[self._base, user_id, repr(time.time())]))

    def erasures_since(self, after_seq: int, limit: int = 10_000) -> list[Erasure]:
        """See :meth:`events.store.EventStore.erasures_since`."""
        with self._reachable():
            if limit < 1:
                return []
            entries: Any = self._redis.zrangebyscore(
                self._keys["erasures"], f"({int(after_seq)}", "+inf", start=0, num=limit
            )
        out: list[Erasure] = []
        for entry in entries:
            seq, ts, user_id = _text(entry).split(":", 2)
            out.append(Erasure(int(seq), user_id, float(ts)))
        return out

    def purge_erasures_before(self, timestamp: float) -> int:
        """See :meth:`events.store.EventStore.purge_erasures_before`."""
        bound = _score(timestamp)
        keys = self._key_list("erasures", "erasure_ts")
        deleted = 0
        while True:
            with self._reachable():
                n = int(self._purge_erasures(keys=keys, args=[bound, _CHUNK]))
            deleted += n
            if n < _CHUNK:
                return deleted

    def purge_before(self, timestamp: float) -> int:
        """See :meth:`events.store.EventStore.purge_before`; deletes in atomic chunks of
        1,000 events, so a long purge never blocks Redis (and the other replicas) for long."""
        bound = _score(timestamp)
        keys = self._key_list("events", "order", "ts", "ids")
        deleted = 0
        while True:
            with self._reachable():
                n = int(self._purge(keys=keys, args=[self._base, bound, _CHUNK]))
            deleted += n
            if n < _CHUNK:
                return deleted

    def close(self) -> None:
        """See :meth:`events.store.EventStore.close`."""
        if self._closed:
            return
        self._closed = True
        self._redis.close()

    def __repr__(self) -> str:
        return f"RedisEventStore(prefix={self.prefix!r})"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _decode(doc: bytes | str) -> Event:
    data = orjson.loads(doc)
    extra = [k for k in data if k not in _EVENT_FIELDS]
    for key in extra:  # written by a newer version of the service: not ours to read
        del data[key]
    event_id = data.pop("event_id")
    # The stored event was validated when it arrived: ``now`` no earlier than its timestamp
    # keeps a replica whose clock runs behind from calling it "in the future", and the id goes
    # in as the default (ids derived from an idempotency key may exceed the client limit).
    now = max(time.time(), float(data.get("timestamp") or 0.0))
    return parse_event(data, now=now, default_event_id=event_id)
