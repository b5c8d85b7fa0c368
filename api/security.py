"""Scoped API keys: creation, hashed storage, rate limits, FastAPI dependencies and log redaction.

**Keys.** A key is a token ``ps_<id>_<secret>`` (``id``: 12 hex characters, public, used to look
the key up; ``secret``: 256 random bits). The token is shown once, when created; the store keeps
only ``HMAC-SHA256(server secret, token)`` (plain SHA-256 when no server secret is configured:
the token's entropy makes a dictionary attack hopeless either way, the server secret adds a
pepper against a stolen database, so the service warns loudly without one). Comparison is
constant-time (:func:`hmac.compare_digest`). The key database is created with mode 0600.

**Scopes.** ``"search"`` keys are for storefronts and apps: they reach the search routes
(search, suggest, photo, voice, products, events) and may embed fixed filters
(``{"attr": {"country": ["PL"]}}``) that every route revealing a product narrows by
(:func:`merge_filters`; :func:`api.deps.visible_product`). ``"admin"`` keys reach everything:
the admin routes (catalogue, rules, weights, keys), shopper data (erasure) and analytics, and
the search routes. Public routes (health, readiness, the pages, metrics, the docs) need no key.

**Open mode** (``PRODUCTSEARCH_OPEN_MODE``, off by default) lets the search routes answer
without a key, whether or not keys exist (creating the first admin key does not close the
storefront). Admin routes, shopper data and analytics always need an admin key. With open mode
off, a request without a key gets 401 naming how to create a key or turn open mode on.

**Rate limits.** Token buckets (``rate_per_minute`` refill, ``burst`` capacity), in process
memory per replica: one per key, and, under a search key or in open mode, one per client of
that key (its address; ``X-Forwarded-For`` is read only from configured trusted proxies), so
one client cannot spend the budget of a storefront's whole audience. A request carrying several
searches (Algolia's multi-query) costs one token per search (:func:`charge_searches`). Over a
limit: 429 with ``Retry-After`` (whole seconds).

**Headers.** ``Authorization: Bearer <key>`` or ``X-API-Key: <key>`` (declared in the OpenAPI
schema as the ``BearerKey`` and ``ApiKeyHeader`` schemes); a WebSocket may pass ``?api_key=``,
which :class:`RedactSecretsFilter` removes from log lines. The Algolia-compatible routes
(:func:`require_storefront_key`) also read ``X-Algolia-API-Key`` and the ``x-algolia-api-key``
query parameter (redacted too) and refuse admin keys: a storefront's key is public.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import math
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from fastapi import Depends, HTTPException, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from api.settings import Settings
from search.analysis import fold
from search.errors import InvalidRequestError
from search.private_files import prepare_private_db
from search.rules import filters_from_dict, filters_to_dict
from search.types import Filters

logger = logging.getLogger("productsearch.api.security")

Scope = Literal["search", "admin"]
SCOPES: tuple[str, ...] = get_args(Scope)
TOKEN_PREFIX = "ps_"
_TOKEN = re.compile(r"^ps_([0-9a-f]{12})_([A-Za-z0-9_-]{20,100})$")

#: Default limits per scope: (requests per minute, burst).
DEFAULT_LIMITS: dict[str, tuple[int, int]] = {"search": (600, 60), "admin": (120, 30)}

#: Default limit per client under a search key or in open mode: (requests per minute, burst).
#: A shopper typing and paging makes a few requests a second at most.
DEFAULT_CLIENT_LIMIT: tuple[int, int] = (120, 40)

OPEN_MODE_ENV = "PRODUCTSEARCH_OPEN_MODE"
KEYS_DB_ENV = "PRODUCTSEARCH_KEYS_DB"
KEYS_SECRET_ENV = "PRODUCTSEARCH_KEYS_SECRET"

SECRET_WARNING = (
    f"{KEYS_SECRET_ENV} is not set: API keys are stored as plain SHA-256 hashes, without a "
    "server secret (pepper) against a stolen key database. Set it to a long random value "
    "(openssl rand -hex 32) before creating keys; changing it later invalidates every key."
)
"""Logged at start-up and by the ``keys`` commands while no server secret is configured."""


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored key (never its token).

    Attributes:
        id: Public key id (the token's middle part).
        name: Who or what it is for (``"storefront-pl"``); written to the audit log.
        scope: ``"search"`` or ``"admin"``.
        filters: Fixed filters every search with this key is narrowed by, or None.
        rate_per_minute: Sustained request rate allowed.
        burst: Requests allowed at once (bucket capacity).
        created_at: Creation time (UTC).
        revoked_at: Revocation time, or None while active.
    """

    id: str
    name: str
    scope: Scope
    filters: Filters | None = None
    rate_per_minute: int = 600
    burst: int = 60
    created_at: datetime = datetime(1970, 1, 1, tzinfo=UTC)
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        """True until revoked."""
        return self.revoked_at is None

    @property
    def actor(self) -> str:
        """The name used in audit entries: ``"<name> (key <id>)"``."""
        return f"{self.name} (key {self.id})"

    def to_public(self) -> dict[str, Any]:
        """JSON form for listings (no secret, no hash)."""
        return {
            "id": self.id,
            "name": self.name,
            "scope": self.scope,
            "filters": filters_to_dict(self.filters) if self.filters is not None else None,
            "rate_per_minute": self.rate_per_minute,
            "burst": self.burst,
            "created_at": self.created_at.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }


_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    scope TEXT NOT NULL,
    hash TEXT NOT NULL,
    filters TEXT,
    rate_per_minute INTEGER NOT NULL,
    burst INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
"""


class KeyStore:
    """API keys in SQLite (WAL), hashed.

    Args:
        path: Database file (created with its folder), or ``":memory:"``.
        secret: Server secret for HMAC hashing, or None for plain SHA-256. Changing it
            invalidates every key.
    """

    def __init__(self, path: Path | str, *, secret: str | bytes | None = None) -> None:
        # Created with mode 0600 (and its folder) before SQLite opens it: key hashes are private.
        prepare_private_db(path)
        self.location = str(path)
        self._secret = secret.encode() if isinstance(secret, str) else secret
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    def _hash(self, token: str) -> str:
        if self._secret:
            return hmac.new(self._secret, token.encode(), hashlib.sha256).hexdigest()
        return hashlib.sha256(token.encode()).hexdigest()

    def create(
        self,
        name: str,
        scope: str,
        *,
        filters: Filters | None = None,
        rate_per_minute: int | None = None,
        burst: int | None = None,
    ) -> tuple[ApiKey, str]:
        """Create a key.

        Args:
            name: What it is for (1-100 characters).
            scope: ``"search"`` or ``"admin"``.
            filters: Fixed filters (search keys only).
            rate_per_minute: Sustained rate (default by scope: :data:`DEFAULT_LIMITS`).
            burst: Bucket capacity (default by scope).

        Returns:
            The key and its token; the token is not stored and cannot be shown again.

        Raises:
            InvalidRequestError: a bad name, scope, limit, or filters on an admin key.
        """
        name = name.strip()
        if not 1 <= len(name) <= 100:
            raise InvalidRequestError("name", "must be 1-100 characters")
        if scope not in SCOPES:
            raise InvalidRequestError(
                "scope", f"unknown scope {scope!r}; valid: {', '.join(SCOPES)}"
            )
        if filters is not None and scope != "search":
            raise InvalidRequestError("filters", "only search keys carry fixed filters")
        if filters is not None and filters.is_empty:
            filters = None
        default_rate, default_burst = DEFAULT_LIMITS[scope]
        rate = default_rate if rate_per_minute is None else rate_per_minute
        cap = default_burst if burst is None else burst
        if not 1 <= rate <= 1_000_000:
            raise InvalidRequestError("rate_per_minute", "must be from 1 to 1000000")
        if not 1 <= cap <= 100_000:
            raise InvalidRequestError("burst", "must be from 1 to 100000")
        key_id = secrets.token_hex(6)
        token = f"{TOKEN_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        key = ApiKey(
            id=key_id,
            name=name,
            scope=scope,  # type: ignore[arg-type]
            filters=filters,
            rate_per_minute=rate,
            burst=cap,
            created_at=datetime.now(UTC),
        )
        with self._lock:
            self._db.execute(
                "INSERT INTO api_keys VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL)",
                (
                    key.id,
                    key.name,
                    key.scope,
                    self._hash(token),
                    json.dumps(filters_to_dict(filters)) if filters is not None else None,
                    key.rate_per_minute,
                    key.burst,
                    key.created_at.isoformat(),
                ),
            )
        return key, token

    @staticmethod
    def _key(row: tuple[Any, ...]) -> ApiKey:
        kid, name, scope, _, filters, rate, burst, created, revoked = row
        return ApiKey(
            id=kid,
            name=name,
            scope=scope,
            filters=filters_from_dict(json.loads(filters)) if filters else None,
            rate_per_minute=rate,
            burst=burst,
            created_at=datetime.fromisoformat(created),
            revoked_at=datetime.fromisoformat(revoked) if revoked else None,
        )

    def list(self, *, include_revoked: bool = True) -> list[ApiKey]:
        """Keys, oldest first."""
        sql = "SELECT * FROM api_keys"
        if not include_revoked:
            sql += " WHERE revoked_at IS NULL"
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY created_at, id").fetchall()
        return [self._key(r) for r in rows]

    def get(self, key_id: str) -> ApiKey | None:
        """A key by id, or None."""
        with self._lock:
            row = self._db.execute("SELECT * FROM api_keys WHERE id = ?", (key_id,)).fetchone()
        return self._key(row) if row else None

    def count_active(self, scope: str | None = None) -> int:
        """Active keys (of one scope, or all)."""
        sql = "SELECT COUNT(*) FROM api_keys WHERE revoked_at IS NULL"
        params: tuple[str, ...] = ()
        if scope is not None:
            sql += " AND scope = ?"
            params = (scope,)
        with self._lock:
            return int(self._db.execute(sql, params).fetchone()[0])

    def revoke(self, key_id: str) -> ApiKey | None:
        """Revoke a key (kept for the record); None when unknown."""
        with self._lock:
            self._db.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (datetime.now(UTC).isoformat(), key_id),
            )
        return self.get(key_id)

    def authenticate(self, token: str) -> ApiKey | None:
        """The active key a token belongs to, or None.

        Args:
            token: The presented token.
        """
        m = _TOKEN.match(token.strip())
        if m is None:
            return None
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM api_keys WHERE id = ? AND revoked_at IS NULL", (m.group(1),)
            ).fetchone()
        if row is None:
            # Hash anyway so that unknown ids and wrong secrets take the same time.
            hmac.compare_digest(self._hash(token), "0" * 64)
            return None
        if not hmac.compare_digest(self._hash(token.strip()), row[3]):
            return None
        return self._key(row)


class RateLimiter:
    """Token buckets by name (a key id, or a key id and a client), in memory.

    Once more than ``max_buckets`` exist, buckets that have refilled completely are dropped (a
    full bucket is what a new one would be), then the least recently used ones down to 90% of
    the bound, so a stream of distinct clients can neither grow the table without bound nor
    make every request scan it (a scan per 10% of the bound).

    Args:
        clock: Monotonic seconds (tests pass a fake clock).
        max_buckets: Buckets kept before full ones are dropped.
        share: Processes enforcing the same limits side by side (``workers``): each allows
            ``1/share`` of every rate and burst (at least one token), so a key never gets more
            than its rate in total, whichever worker its connections land on.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_buckets: int = 100_000,
        share: int = 1,
    ) -> None:
        if share < 1:
            raise ValueError(f"share must be at least 1, got {share}")
        self._share = share
        self._clock = clock
        self._lock = threading.Lock()
        self._max_buckets = max_buckets
        # name -> (tokens, last update, time the bucket is full again)
        self._buckets: dict[str, tuple[float, float, float]] = {}

    def __len__(self) -> int:
        return len(self._buckets)

    def acquire(self, key: str, rate_per_minute: float, burst: int, cost: int = 1) -> float | None:
        """Take ``cost`` tokens from a bucket (all or none).

        Args:
            key: Bucket name.
            rate_per_minute: Refill rate.
            burst: Capacity; a new bucket starts full.
            cost: Tokens the request costs (several searches in one request cost several);
                at most the capacity.

        Returns:
            None when allowed, else the seconds until enough tokens are available.
        """
        rate = rate_per_minute / 60.0 / self._share
        burst = max(1, -(-burst // self._share))
        need = float(min(max(cost, 1), burst))
        now = self._clock()
        with self._lock:
            # Popped and put back: the dict's order is then least recently used first.
            tokens, last, _ = self._buckets.pop(key, (float(burst), now, now))
            tokens = min(float(burst), tokens + (now - last) * rate)
            allowed = tokens >= need
            if allowed:
                tokens -= need
            self._buckets[key] = (tokens, now, now + (burst - tokens) / rate)
            if len(self._buckets) > self._max_buckets:
                self._prune(now)
        return None if allowed else (need - tokens) / rate

    def _prune(self, now: float) -> None:
        full = [name for name, (_, _, full_at) in self._buckets.items() if full_at <= now]
        for name in full:
            del self._buckets[name]
        excess = len(self._buckets) - int(self._max_buckets * 0.9)
        if excess > 0:
            # Forgetting a partly spent bucket gives that client a fresh one: lenient, bounded.
            for name in list(self._buckets)[:excess]:
                del self._buckets[name]


def _networks(
    values: Iterable[str],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    out = []
    for value in values:
        try:
            out.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise InvalidRequestError(
                "trusted_proxies", f"{value!r} is not an IP address or network (CIDR)"
            ) from None
    return tuple(out)


class Security:
    """What the dependencies need: the key store, the rate limiter and the access policy.

    Args:
        keys: The key store.
        limiter: Rate limiter (a fresh one by default).
        open_mode: Let the search routes answer requests without a key.
        client_limit: (requests per minute, burst) per client under a search key or in open
            mode; None turns per-client limits off.
        trusted_proxies: Addresses or networks of reverse proxies whose ``X-Forwarded-For``
            names the client; from any other peer the header is ignored.
        secret_configured: Whether the key store hashes with a server secret (a warning at
            start-up otherwise).

    Raises:
        InvalidRequestError: a trusted proxy that is not an address or network.
    """

    def __init__(
        self,
        keys: KeyStore,
        limiter: RateLimiter | None = None,
        *,
        open_mode: bool = False,
        client_limit: tuple[int, int] | None = DEFAULT_CLIENT_LIMIT,
        trusted_proxies: Sequence[str] = (),
        secret_configured: bool = True,
    ) -> None:
        self.keys = keys
        self.limiter = limiter if limiter is not None else RateLimiter()
        self.open_mode = open_mode
        self.client_limit = client_limit
        self.trusted_proxies = _networks(trusted_proxies)
        self.secret_configured = secret_configured

    def startup_warning(self) -> str | None:
        """What to log at start-up about access: open mode, or no key at all, else None."""
        if self.open_mode:
            return (
                f"open mode ({OPEN_MODE_ENV}=true): search routes answer without an API key; "
                "admin routes, shopper data and analytics still need an admin key"
            )
        if self.keys.count_active() == 0:
            return (
                f"no API keys in {self.keys.location} and open mode is off: every route but "
                f"the public ones answers 401. {_HOW_TO_GET_A_KEY}"
            )
        return None

    def startup_report(self) -> list[tuple[int, str]]:
        """Log lines for start-up, with their levels: where the keys are, what is open, and a
        loud warning without a server secret."""
        lines = [
            (
                logging.INFO,
                f"API keys from {self.keys.location}: {self.keys.count_active('admin')} admin, "
                f"{self.keys.count_active('search')} search; open mode "
                f"{'on' if self.open_mode else 'off'}",
            )
        ]
        warning = self.startup_warning()
        if warning:
            lines.append((logging.WARNING, warning))
        if not self.secret_configured:
            lines.append((logging.WARNING, SECRET_WARNING))
        return lines

    def client_of(self, request: HTTPConnection) -> str:
        """The client a request comes from: the peer address, or, when the peer is a trusted
        proxy, the right-most address in ``X-Forwarded-For`` that is not a trusted proxy."""
        peer = request.client.host if request.client else ""
        if not self.trusted_proxies or not self._trusted(peer):
            return _client_id(peer)
        forwarded = [
            part.strip()
            for header in request.headers.getlist("x-forwarded-for")
            for part in header.split(",")
            if part.strip()
        ]
        for address in reversed(forwarded):
            if not self._trusted(address):
                return _client_id(address)
        return _client_id(forwarded[0] if forwarded else peer)

    def _trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.trusted_proxies)


def _client_id(address: str) -> str:
    """The rate-limited identity of an address: itself, or its /64 for IPv6 (one subscriber
    gets a whole /64 and could otherwise take a fresh address per request)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


_HOW_TO_GET_A_KEY = (
    "Create a key with `productsearch keys create --scope search --name <who>` (admin: "
    "`--scope admin`) using the service's PRODUCTSEARCH_KEYS_DB, or set "
    f"{OPEN_MODE_ENV}=true to let search routes answer without a key."
)


def build_security(settings: Settings) -> Security:
    """The :class:`Security` the settings describe (key database, secret, open mode, client
    limits, trusted proxies).

    Raises:
        InvalidRequestError: a trusted proxy that is not an address or network.
    """
    secret = settings.keys_secret.get_secret_value() if settings.keys_secret else None
    keys = KeyStore(settings.keys_db if settings.keys_db is not None else ":memory:", secret=secret)
    client_limit = (
        (settings.client_rate_per_minute, settings.client_burst)
        if settings.client_rate_per_minute
        else None
    )
    return Security(
        keys,
        RateLimiter(share=settings.workers),
        open_mode=settings.open_mode,
        client_limit=client_limit,
        trusted_proxies=settings.trusted_proxies,
        secret_configured=bool(secret),
    )


def merge_filters(requested: Filters, fixed: Filters | None) -> Filters:
    """Narrow a request's filters by a key's fixed filters (both must hold).

    Where both name values for the same thing, only the common values stay; when nothing is
    common, the result matches no product (a key fixed to Poland never sees German stock).

    Args:
        requested: The filters of the request.
        fixed: The key's filters, or None.

    Returns:
        Filters a product must pass to be shown.
    """
    if fixed is None or fixed.is_empty:
        return requested
    nothing = False

    def both(a: tuple[Any, ...], b: tuple[Any, ...]) -> tuple[Any, ...]:
        nonlocal nothing
        if not a or not b:
            return a or b
        common = tuple(v for v in a if v in b)
        nothing |= not common
        return common

    def folded(values: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(fold(v) for v in values))

    brands = both(folded(requested.brands), folded(fixed.brands))
    categories = _narrowest(requested.categories, fixed.categories)
    nothing |= bool(requested.categories and fixed.categories and not categories)
    # The store folds attribute names and values when filtering; compare them the same way.
    attributes = {fold(name): folded(values) for name, values in requested.attributes.items()}
    for name, values in fixed.attributes.items():
        attributes[fold(name)] = both(attributes.get(fold(name), ()), folded(values))
    availability = both(requested.availability, fixed.availability)
    lows = [p for p in (requested.price_min, fixed.price_min) if p is not None]
    highs = [p for p in (requested.price_max, fixed.price_max) if p is not None]
    price_min = max(lows) if lows else None
    price_max = min(highs) if highs else None
    if price_min is not None and price_max is not None and price_min > price_max:
        nothing = True
    if nothing:
        # An attribute value no product has: matches nothing, passes the engine's checks.
        return Filters(attributes={"\x00none": ("\x00none",)})
    return Filters(
        brands=brands,
        categories=categories,
        attributes=attributes,
        price_min=price_min,
        price_max=price_max,
        availability=availability,
    )


def _narrowest(
    a: tuple[tuple[str, ...], ...], b: tuple[tuple[str, ...], ...]
) -> tuple[tuple[str, ...], ...]:
    """Category paths inside both sets (a path is inside its prefixes), compared folded."""
    if not a or not b:
        return a or b

    def inside(path: tuple[str, ...], others: tuple[tuple[str, ...], ...]) -> bool:
        key = tuple(fold(p) for p in path)
        return any(key[: len(o)] == tuple(fold(p) for p in o) for o in others)

    return tuple(dict.fromkeys([p for p in a if inside(p, b)] + [p for p in b if inside(p, a)]))


# --------------------------------------------------------------------------------------------
# FastAPI dependencies


async def get_security(request: HTTPConnection) -> Security:
    """Dependency: the :class:`Security` on ``app.state.security``.

    The request dependencies on the search path are ``async def``: they do no blocking work
    worth a thread (a key is one indexed SQLite read), and FastAPI runs every plain ``def``
    dependency in the thread pool, a hand-off per dependency per request.
    """
    return security_of(request)


def security_of(request: HTTPConnection) -> Security:
    """The :class:`Security` on ``app.state.security``.

    Raises:
        RuntimeError: the application did not set one.
    """
    security: Security | None = getattr(request.app.state, "security", None)
    if security is None:
        raise RuntimeError("no Security on app.state.security: create one in create_app")
    return security


def presented_token(request: HTTPConnection) -> str | None:
    """The key a request presents (``Authorization: Bearer`` or ``X-API-Key``; a WebSocket,
    which browsers open without custom headers, may also pass ``?api_key=``), or None."""
    auth = request.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    header = request.headers.get("x-api-key", "").strip()
    if not header and request.scope.get("type") == "websocket":
        header = request.query_params.get("api_key", "").strip()
    return header or None


def _unauthorised(message: str) -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail=message,
        headers={"WWW-Authenticate": "Bearer"},
    )


def _limit(
    security: Security, bucket: str, rate: int, burst: int, what: str, cost: int = 1
) -> None:
    wait = security.limiter.acquire(bucket, rate, burst, cost)
    if wait is not None:
        raise HTTPException(
            status_code=status.HTTP_429_TOO_MANY_REQUESTS,
            detail=f"rate limit of {rate} requests per minute {what} exceeded",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )


def _limit_client(request: HTTPConnection, security: Security, owner: str, cost: int = 1) -> None:
    """The per-client bucket under a shared search key (``owner``: the key id, or open mode)."""
    if security.client_limit is None:
        return
    rate, burst = security.client_limit
    client = security.client_of(request)
    _limit(security, f"{owner}|{client}", rate, burst, "per client", cost)


def _charge(request: HTTPConnection, security: Security, key: ApiKey | None, cost: int = 1) -> None:
    """Charge a request to its buckets: the client's under a search key or in open mode
    (``key`` None), then the key's."""
    if key is None:
        _limit_client(request, security, "open", cost)
        return
    if key.scope == "search":
        # First, so one client over its share does not spend the shared key's tokens.
        _limit_client(request, security, key.id, cost)
    _limit(security, key.id, key.rate_per_minute, key.burst, "for this key", cost)


def charge_searches(request: HTTPConnection, key: ApiKey | None, searches: int) -> None:
    """Charge the searches beyond the first of one request to the rate limits (its key
    dependency charged one): a request carrying several searches (Algolia's multi-query) costs
    what as many ``GET /search`` requests would.

    Args:
        request: The request.
        key: Its key (None in open mode).
        searches: The searches it carries.

    Raises:
        HTTPException: 429 over the key's or the client's limit.
    """
    if searches > 1:
        _charge(request, security_of(request), key, searches - 1)


def _missing_key(security: Security, scope: Scope) -> HTTPException:
    if security.keys.count_active() == 0:
        hint = (
            f"no API keys exist yet and open mode is off. {_HOW_TO_GET_A_KEY}"
            if scope == "search"
            else "this route needs an admin key and none exists yet: create one with "
            "`productsearch keys create --scope admin --name <who>` using the service's "
            "PRODUCTSEARCH_KEYS_DB"
        )
        return _unauthorised(hint)
    needed = "an admin API key" if scope == "admin" else "an API key"
    return _unauthorised(f"{needed} is required (Authorization: Bearer <key> or X-API-Key)")


def _authenticate(
    request: HTTPConnection,
    security: Security,
    scope: Scope,
    token: str | None = None,
    *,
    storefront: bool = False,
) -> ApiKey | None:
    """The request's key, checked for ``scope`` and rate-limited.

    Args:
        token: The key presented (default: :func:`presented_token`).
        storefront: Refuse admin keys (403): the route is for browsers, which see the key.
    """
    token = token if token is not None else presented_token(request)
    if token is None:
        if scope == "search" and security.open_mode:
            _charge(request, security, None)
            return None
        raise _missing_key(security, scope)
    key = security.keys.authenticate(token)
    if key is None:
        raise _unauthorised("unknown, malformed or revoked API key")
    if scope == "admin" and key.scope != "admin":
        raise HTTPException(
            status_code=status.HTTP_403_FORBIDDEN,
            detail=f"this key's scope is {key.scope!r}; this route needs an admin key",
        )
    if storefront and key.scope != "search":
        raise HTTPException(
            status_code=status.HTTP_403_FORBIDDEN,
            detail=f"this is an {key.scope} key; the Algolia-compatible routes take a search "
            "key only, because every shopper's browser sees the key it sends (create one with "
            "`productsearch keys create --scope search --name storefront`)",
        )
    _charge(request, security, key)
    request.state.api_key = key
    return key


SecurityDep = Annotated[Security, Depends(get_security)]

# Declared for the OpenAPI schema (the Authorize button of /docs and each operation's
# security); the token itself is read by presented_token, which also serves WebSockets.
bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="BearerKey",
    description="An API key (`ps_...`) as `Authorization: Bearer <key>`. Search keys reach "
    "the search routes; admin keys reach every route.",
)
api_key_header_scheme = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    scheme_name="ApiKeyHeader",
    description="An API key (`ps_...`) in the `X-API-Key` header (same keys as BearerKey).",
)
algolia_key_scheme = APIKeyHeader(
    name="X-Algolia-API-Key",
    auto_error=False,
    scheme_name="AlgoliaApiKey",
    description="A search key (`ps_...`) as Algolia clients send it: the `X-Algolia-API-Key` "
    "header, or the `x-algolia-api-key` query parameter. Admin keys are refused.",
)
_BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]
_HeaderDep = Annotated[str | None, Depends(api_key_header_scheme)]
_AlgoliaDep = Annotated[str | None, Depends(algolia_key_scheme)]

ALGOLIA_KEY_PARAM = "x-algolia-api-key"
"""The header and query parameter (any case) Algolia clients send their key in."""


def algolia_token(request: HTTPConnection) -> str | None:
    """The key an Algolia client presents: the ``X-Algolia-API-Key`` header, else the
    ``x-algolia-api-key`` query parameter in any case (the browser lite client and
    ``search-insights`` put it there to avoid a CORS preflight); None when neither is there."""
    header = request.headers.get(ALGOLIA_KEY_PARAM, "").strip()
    if header:
        return header
    for name, value in request.query_params.multi_items():
        if name.lower() == ALGOLIA_KEY_PARAM and value.strip():
            return value.strip()
    return None


async def require_search_key(
    request: HTTPConnection,
    security: SecurityDep,
    _bearer: _BearerDep = None,
    _header: _HeaderDep = None,
) -> ApiKey | None:
    """Dependency of the search routes: a search or admin key, rate-limited.

    Returns:
        The key (use ``merge_filters(request_filters, key.filters)``), or None for a request
        without a key in open mode.

    Raises:
        HTTPException: 401 without a valid key (open mode off), 429 over the key's or the
            client's rate limit.
    """
    return _authenticate(request, security, "search")


async def require_admin_key(
    request: HTTPConnection,
    security: SecurityDep,
    _bearer: _BearerDep = None,
    _header: _HeaderDep = None,
) -> ApiKey:
    """Dependency of the admin routes, shopper data and analytics: an admin key, rate-limited.

    Returns:
        The admin key (its :attr:`ApiKey.actor` goes into the audit log).

    Raises:
        HTTPException: 401 without a valid key (open mode or not), 403 for a search key, 429
            over the key's rate limit.
    """
    key = _authenticate(request, security, "admin")
    assert key is not None  # admin routes are never open
    return key


async def require_storefront_key(
    request: HTTPConnection,
    security: SecurityDep,
    _algolia: _AlgoliaDep = None,
    _bearer: _BearerDep = None,
    _header: _HeaderDep = None,
) -> ApiKey | None:
    """Dependency of the Algolia-compatible routes: a search key, never an admin key.

    The key comes from :func:`algolia_token`, else from ``Authorization: Bearer`` or
    ``X-API-Key``; open mode, fixed filters and rate limits are those of the search routes.

    Returns:
        The key, or None for a request without a key in open mode.

    Raises:
        HTTPException: 401 without a valid key (open mode off), 403 for an admin key, 429 over
            the key's or the client's rate limit.
    """
    token = algolia_token(request) or presented_token(request)
    return _authenticate(request, security, "search", token, storefront=True)


SearchKeyDep = Annotated[ApiKey | None, Depends(require_search_key)]
StorefrontKeyDep = Annotated[ApiKey | None, Depends(require_storefront_key)]
AdminKeyDep = Annotated[ApiKey, Depends(require_admin_key)]


# --------------------------------------------------------------------------------------------
# Logs

_SECRET_PARAM = re.compile(
    r"((?:^|[?&;\s])(?:api_key|x-algolia-api-key)=)[^&\s\"';]*", re.IGNORECASE
)
_BEARER = re.compile(r"(\bBearer\s+)ps_[0-9a-f]{12}_[A-Za-z0-9_-]+")
REDACTED = "[redacted]"


def redact(text: str) -> str:
    """``text`` with ``api_key=`` and ``x-algolia-api-key=`` query values and bearer tokens
    replaced by ``[redacted]``."""
    lowered = text.lower()
    if "api_key=" not in lowered and "api-key=" not in lowered and "ps_" not in text:
        return text
    return _BEARER.sub(r"\1" + REDACTED, _SECRET_PARAM.sub(r"\1" + REDACTED, text))


class RedactSecretsFilter(logging.Filter):
    """Removes API keys from log records (uvicorn writes a WebSocket's path with its query
    string, ``?api_key=...`` included, and its access log every request's query string).

    The record's message and string arguments are redacted in place, so formatters that
    unpack the arguments (uvicorn's access formatter) still work.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the record; never drops it."""
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redact_arg(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _redact_arg(v) for k, v in record.args.items()}
        return True


def _redact_arg(value: object) -> object:
    # Numbers stay numbers (formatters use %d); other objects (an httpx.URL) are replaced by
    # their redacted text only when they held a key.
    if value is None or isinstance(value, int | float):
        return value
    text = value if isinstance(value, str) else str(value)
    cleaned = redact(text)
    return value if cleaned == text and not isinstance(value, str) else cleaned


#: Loggers that write request paths (uvicorn's server and access logs).
REDACTED_LOGGERS = ("uvicorn.error", "uvicorn.access")


def install_log_redaction(*handlers: logging.Handler) -> RedactSecretsFilter:
    """Attach :class:`RedactSecretsFilter` to uvicorn's loggers and to ``handlers``.

    A filter on a logger sees only records logged on that logger; one on a handler sees
    everything the handler writes, propagated records included. Idempotent.

    Returns:
        The filter.
    """
    redactor = RedactSecretsFilter()
    for target in [*(logging.getLogger(n) for n in REDACTED_LOGGERS), *handlers]:
        if not any(isinstance(f, RedactSecretsFilter) for f in target.filters):
            target.addFilter(redactor)
    return redactor


def uvicorn_log_config(text: bool) -> dict[str, Any] | None:
    """The ``log_config`` to run uvicorn with: its default text set-up plus
    :class:`RedactSecretsFilter` on its loggers and handlers, or None for JSON logs (set up
    by :func:`api.metrics.configure_json_logging`, then :func:`install_log_redaction`).

    Args:
        text: Text logs (uvicorn's format) rather than JSON.
    """
    if not text:
        return None
    import copy

    import uvicorn.config

    config: dict[str, Any] = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config.setdefault("filters", {})["redact_secrets"] = {"()": RedactSecretsFilter}
    for handler in config.get("handlers", {}).values():
        handler.setdefault("filters", []).append("redact_secrets")
    for name in REDACTED_LOGGERS:
        config.setdefault("loggers", {}).setdefault(name, {}).setdefault("filters", []).append(
            "redact_secrets"
        )
    return config


# --------------------------------------------------------------------------------------------
# CLI


def create_key_cli(
    keys_db: Path,
    name: str,
    scope: str = "admin",
    filters_json: str | None = None,
    rate_per_minute: int | None = None,
    burst: int | None = None,
    secret: str | None = None,
    echo: Callable[[str], None] = print,
) -> str:
    """Create a key from the command line (the first admin key of a fresh install).

    The message names the key database used, so a key created in another database than the
    service's is noticed at once.

    Args:
        keys_db: The key database (``PRODUCTSEARCH_KEYS_DB``), as the service resolves it.
        name: What the key is for.
        scope: ``"search"`` or ``"admin"``.
        filters_json: Fixed filters of a search key as JSON (``'{"attr": {"country": ["PL"]}}'``).
        rate_per_minute: Sustained rate (default by scope).
        burst: Bucket capacity (default by scope).
        secret: The server secret (``PRODUCTSEARCH_KEYS_SECRET``), or None.
        echo: Where to print (tests capture it).

    Returns:
        The token (printed once; it cannot be shown again).

    Raises:
        InvalidRequestError: a bad argument (naming it).
    """
    filters = None
    if filters_json:
        try:
            data = json.loads(filters_json)
        except json.JSONDecodeError as exc:
            raise InvalidRequestError("filters", f"not valid JSON: {exc}") from None
        filters = filters_from_dict(data)
    store = KeyStore(keys_db, secret=secret)
    try:
        key, token = store.create(
            name, scope, filters=filters, rate_per_minute=rate_per_minute, burst=burst
        )
    finally:
        store.close()
    echo(
        f"created {key.scope} key {key.id} ({key.name}) in {keys_db}; store this token now, "
        "it is not shown again:"
    )
    echo(token)
    return token


__all__ = [
    "DEFAULT_CLIENT_LIMIT",
    "REDACTED",
    "SCOPES",
    "SECRET_WARNING",
    "AdminKeyDep",
    "ApiKey",
    "KeyStore",
    "RateLimiter",
    "RedactSecretsFilter",
    "Scope",
    "SearchKeyDep",
    "Security",
    "api_key_header_scheme",
    "bearer_scheme",
    "build_security",
    "create_key_cli",
    "get_security",
    "install_log_redaction",
    "merge_filters",
    "presented_token",
    "redact",
    "require_admin_key",
    "require_search_key",
    "security_of",
    "uvicorn_log_config",
]
