"""Scoped API keys: creation, hashed storage, per-key rate limits and FastAPI dependencies.

**Keys.** A key is a token ``ps_<id>_<secret>`` (``id``: 12 hex characters, public, used to look
the key up; ``secret``: 256 random bits). The token is shown once, when created; the store keeps
only ``HMAC-SHA256(server secret, token)`` (plain SHA-256 when no server secret is configured:
the token's entropy makes a dictionary attack hopeless either way, the server secret adds a
pepper against a stolen database). Comparison is constant-time (:func:`hmac.compare_digest`).

**Scopes.** ``"search"`` keys are for storefronts and apps: they reach the search routes only
and may embed fixed filters (``{"attr": {"country": ["PL"]}}``) that every search made with
the key is narrowed by (:func:`merge_filters`). ``"admin"`` keys reach the admin routes
(catalogue, rules, weights, analytics) and the search routes too.

**No keys at all (a fresh dev install).** While the key store holds no active key, search routes
are open (the service logs a warning at start-up, :meth:`Security.startup_warning`) and admin
routes are refused with 403 and a hint to create the first admin key with the CLI
(:func:`create_key_cli`). As soon as one key exists, every route needs a key. An admin route is
never open.

**Rate limits.** Each key has a token bucket (``rate_per_minute`` refill, ``burst`` capacity),
kept in process memory per replica; a request over the limit is answered 429 with
``Retry-After`` (whole seconds).

**Headers.** ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from fastapi import Depends, HTTPException, status
from starlette.requests import HTTPConnection

from search.analysis import fold
from search.errors import InvalidRequestError
from search.rules import filters_from_dict, filters_to_dict
from search.types import Filters

logger = logging.getLogger("productsearch.api.security")

Scope = Literal["search", "admin"]
SCOPES: tuple[str, ...] = get_args(Scope)
TOKEN_PREFIX = "ps_"
_TOKEN = re.compile(r"^ps_([0-9a-f]{12})_([A-Za-z0-9_-]{20,100})$")

#: Default limits per scope: (requests per minute, burst).
DEFAULT_LIMITS: dict[str, tuple[int, int]] = {"search": (600, 60), "admin": (120, 30)}


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
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
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
    """Token buckets per key, in memory.

    Args:
        clock: Monotonic seconds (tests pass a fake clock).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}

    def acquire(self, key: str, rate_per_minute: float, burst: int) -> float | None:
        """Take one token from a key's bucket.

        Args:
            key: Bucket name (the key id).
            rate_per_minute: Refill rate.
            burst: Capacity; a new bucket starts full.

        Returns:
            None when allowed, else the seconds until a token is available.
        """
        rate = rate_per_minute / 60.0
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(burst), now))
            tokens = min(float(burst), tokens + (now - last) * rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return None
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / rate


class Security:
    """What the dependencies need: the key store and the rate limiter.

    Args:
        keys: The key store.
        limiter: Rate limiter (a fresh one by default).
    """

    def __init__(self, keys: KeyStore, limiter: RateLimiter | None = None) -> None:
        self.keys = keys
        self.limiter = limiter or RateLimiter()

    def startup_warning(self) -> str | None:
        """A warning to log at start-up when no key exists (search open, admin refused)."""
        if self.keys.count_active() == 0:
            return (
                "no API keys configured: search is open to anyone and admin routes are refused; "
                "create an admin key with `productsearch keys create --scope admin --name <who>`"
            )
        return None


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


def get_security(request: HTTPConnection) -> Security:
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


def _authenticate(request: HTTPConnection, security: Security, scope: Scope) -> ApiKey | None:
    token = presented_token(request)
    if token is None:
        if security.keys.count_active() == 0:
            if scope == "search":
                return None  # a fresh install: search is open until the first key exists
            raise HTTPException(
                status_code=status.HTTP_403_FORBIDDEN,
                detail="no API keys configured: admin routes stay closed until an admin key is "
                "created (`productsearch keys create --scope admin --name <who>`)",
            )
        raise _unauthorised("an API key is required (Authorization: Bearer <key> or X-API-Key)")
    key = security.keys.authenticate(token)
    if key is None:
        raise _unauthorised("unknown or revoked API key")
    if scope == "admin" and key.scope != "admin":
        raise HTTPException(
            status_code=status.HTTP_403_FORBIDDEN,
            detail=f"this key's scope is {key.scope!r}; this route needs an admin key",
        )
    wait = security.limiter.acquire(key.id, key.rate_per_minute, key.burst)
    if wait is not None:
        raise HTTPException(
            status_code=status.HTTP_429_TOO_MANY_REQUESTS,
            detail=f"rate limit of {key.rate_per_minute} requests per minute exceeded",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )
    request.state.api_key = key
    return key


SecurityDep = Annotated[Security, Depends(get_security)]


def require_search_key(request: HTTPConnection, security: SecurityDep) -> ApiKey | None:
    """Dependency of the search routes: a search or admin key, rate-limited.

    Returns:
        The key (use ``merge_filters(request_filters, key.filters)``), or None while no key
        exists at all (open dev install).

    Raises:
        HTTPException: 401 without a valid key, 429 over the key's rate limit.
    """
    return _authenticate(request, security, "search")


def require_admin_key(request: HTTPConnection, security: SecurityDep) -> ApiKey:
    """Dependency of the admin routes: an admin key, rate-limited.

    Returns:
        The admin key (its :attr:`ApiKey.actor` goes into the audit log).

    Raises:
        HTTPException: 401 without a valid key, 403 for a search key or while no key exists,
            429 over the key's rate limit.
    """
    key = _authenticate(request, security, "admin")
    assert key is not None  # admin routes are never open
    return key


SearchKeyDep = Annotated[ApiKey | None, Depends(require_search_key)]
AdminKeyDep = Annotated[ApiKey, Depends(require_admin_key)]


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

    Args:
        keys_db: The key database (``PRODUCTSEARCH_KEYS_DB``).
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
        f"created {key.scope} key {key.id} ({key.name}); store this token now, it is not shown again:"
    )
    echo(token)
    return token


__all__ = [
    "SCOPES",
    "AdminKeyDep",
    "ApiKey",
    "KeyStore",
    "RateLimiter",
    "Scope",
    "SearchKeyDep",
    "Security",
    "create_key_cli",
    "get_security",
    "merge_filters",
    "presented_token",
    "require_admin_key",
    "require_search_key",
]
