"""Merchandising rules: pin, boost, bury, hide, synonyms and redirects, matched per query.

A :class:`Rule` says *when* (a query condition, channels, segments, an active window) and *what*
(one or more actions). A :class:`RuleSet` compiles many rules for fast matching: exact queries
are looked up in a dict, ``contains`` rules are indexed by their first token, patterns are
compiled once, and global rules are always candidates. :meth:`RuleSet.match` returns the rules
that apply to one request, in resolution order; :meth:`RuleSet.apply` re-orders a ranked hit
list with them. Rules apply last in the pipeline, after every re-ranker, so a merchandiser's
word is final.

Conflict resolution (documented here, tested in ``tests/search/test_rules.py``):

1. **Order.** Matched rules are ordered by ``priority`` (higher first), then by how specific
   their query condition is (``exact`` > ``pattern`` > ``contains`` > ``global``), then by id.
   "Earlier" below means earlier in this order.
2. **Hide beats everything.** A product hidden by any matched rule is removed, even when another
   rule (of any priority) pins or boosts it.
3. **Boost and bury add up.** Each hit gets a rank score from 1 (first) down to ``1/n`` (last);
   every matching boost adds its weight, every matching bury subtracts its weight, and hits are
   re-sorted stably by the result. A weight is thus in "share of the list": 0.2 lifts a
   product past the next fifth of the list, 1 or more lifts it above every unboosted hit.
4. **Pins are placed last and are never moved by boosts or buries.** A product pinned by
   several rules takes the position of the earliest rule. When two pins want the same position
   the earlier rule gets it and the other shifts down to the next free position. A pinned
   product that retrieval did not find is inserted (when it exists in the store and passes the
   request's filters, ``allowed``); a position past the end of the list puts it last.
5. **Synonyms merge.** Synonyms of all matched rules are merged (union per word).
6. **The earliest redirect wins.** Only one redirect is returned; the others are ignored.

Rules are data: :func:`rule_from_dict` validates JSON input (raising
:class:`~search.errors.InvalidRequestError` naming the offending field) and :func:`rule_to_dict`
writes it back.
"""

from __future__ import annotations

import json
import logging
import re
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, get_args

import numpy as np
import numpy.typing as npt

from search.analysis import fold, normalise_query
from search.errors import InvalidRequestError
from search.index.store import ProductStore, category_label, parse_category
from search.types import Availability, Filters, Hit
from search.weights import json_number as _number

MatchKind = Literal["exact", "contains", "pattern", "global"]
MATCH_KINDS: tuple[str, ...] = get_args(MatchKind)

#: Specificity of each match kind: more specific conditions win ties of priority.
SPECIFICITY: Mapping[str, int] = {"exact": 3, "pattern": 2, "contains": 1, "global": 0}

#: Stage name used in explanations (``Explanation.adjustments``).
STAGE = "rules"

_logger = logging.getLogger("productsearch.rules")

_TOKEN = re.compile(r"\w+")
_ID = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")


#: Longest ``pattern`` rule accepted (characters).
MAX_PATTERN_CHARS = 1_000

#: Memory RE2 may use for one compiled pattern (bytes): bounds what a huge counted repetition
#: (``(a{1000}){1000}``) can cost; such a pattern is refused on save.
_PATTERN_MAX_MEM = 8 << 20


def compile_pattern(pattern: str) -> Any:
    """Compile a ``pattern`` rule's expression with RE2, case-insensitively.

    RE2 matches in time linear in the query, whatever the pattern: Python's backtracking ``re``
    took 14 s for ``(x+x+)+y`` against 27 characters and held the GIL meanwhile, so every
    request of the service waited. RE2 has no backreferences and no look-around (``(?=``,
    ``(?<=``, ``\\1``); such patterns are refused with the reason. ``\\w`` and ``\\b`` are
    ASCII in RE2; rules match the folded query (no diacritics), so Latin scripts are unaffected.

    Args:
        pattern: The expression as the merchandiser wrote it.

    Returns:
        The compiled pattern (``search(text)`` is truthy on a match).

    Raises:
        ValueError: RE2 cannot compile it (the message says why).
    """
    import re2

    options = re2.Options()
    options.case_sensitive = False
    options.max_mem = _PATTERN_MAX_MEM
    options.log_errors = False  # the error is raised (and answered 422), not logged by RE2
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise ValueError(
            f"invalid regular expression for RE2 (no backreferences or look-around): {reason}"
        ) from None


# --------------------------------------------------------------------------------------------
# Model


@dataclass(frozen=True, slots=True)
class Selector:
    """Which products an action targets: listed ids, products passing filters, or both (union).

    Attributes:
        product_ids: Product ids.
        filters: Filters a product must pass; None selects nothing by filter.
    """

    product_ids: tuple[str, ...] = ()
    filters: Filters | None = None

    def mask(self, store: ProductStore) -> npt.NDArray[np.bool_]:
        """Boolean mask over the store's documents of the selected products.

        Args:
            store: The serving snapshot's products.

        Returns:
            True for each selected document (unknown ids are skipped).
        """
        out = np.zeros(len(store), dtype=bool)
        if self.filters is not None and not self.filters.is_empty:
            selected = store.mask(self.filters)
            if selected is not None:
                out |= selected
        for pid in self.product_ids:
            doc = store.doc_of.get(pid)
            if doc is not None:
                out[doc] = True
        return out


@dataclass(frozen=True, slots=True)
class Pin:
    """Put a product at a 1-based position."""

    product_id: str
    position: int


@dataclass(frozen=True, slots=True)
class Boost:
    """Lift selected products by ``weight`` (share of the list, see the module notes)."""

    selector: Selector
    weight: float


@dataclass(frozen=True, slots=True)
class Bury:
    """Push selected products down by ``weight`` (share of the list)."""

    selector: Selector
    weight: float


@dataclass(frozen=True, slots=True)
class Hide:
    """Remove selected products from the results."""

    selector: Selector


@dataclass(frozen=True, slots=True)
class Synonyms:
    """Words searched as each other.

    Attributes:
        words: Folded single words.
        one_way: True: the first word also finds the others, not the reverse ("tv" ->
            "television"); False: every word finds every other.
    """

    words: tuple[str, ...]
    one_way: bool = False

    def mapping(self) -> dict[str, tuple[str, ...]]:
        """Word -> the words it also finds, as ``UnderstandConfig.synonyms`` takes them."""
        if self.one_way:
            return {self.words[0]: self.words[1:]}
        return {w: tuple(o for o in self.words if o != w) for w in self.words}


@dataclass(frozen=True, slots=True)
class Redirect:
    """Answer the query with a URL (a landing page) instead of results."""

    url: str


Action = Pin | Boost | Bury | Hide | Synonyms | Redirect


@dataclass(frozen=True, slots=True)
class Rule:
    """One merchandising rule.

    Attributes:
        id: Unique id (letters, digits, ``._:-``).
        match: ``"exact"`` (the whole normalised query), ``"contains"`` (the query contains
            these words in this order, whole words), ``"pattern"`` (a regular expression
            searched, case-insensitively, in the normalised query: folded, punctuation dropped,
            so write patterns without diacritics) or ``"global"`` (every query, browse
            included).
        query: The text or pattern of the condition; empty for ``global``. Stored normalised
            for ``exact`` and ``contains``.
        actions: What the rule does.
        channels: Channels the rule applies to; empty means every channel.
        segments: Shopper segments the rule applies to; empty means everyone. A rule naming
            segments never applies to a request without one.
        active_from: Start of the active window (UTC), or None.
        active_to: End of the active window, exclusive (UTC), or None.
        priority: Higher wins conflicts (see the module notes).
        enabled: A disabled rule never matches.
        description: Free text for merchandisers.
    """

    id: str
    match: MatchKind
    query: str = ""
    actions: tuple[Action, ...] = ()
    channels: tuple[str, ...] = ()
    segments: tuple[str, ...] = ()
    active_from: datetime | None = None
    active_to: datetime | None = None
    priority: int = 0
    enabled: bool = True
    description: str = ""

    def __post_init__(self) -> None:
        # Date-times without an offset are UTC, so that windows compare with an aware "now".
        for name in ("active_from", "active_to"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                object.__setattr__(self, name, value.replace(tzinfo=UTC))

    def active_at(self, now: datetime) -> bool:
        """True when the rule is enabled and ``now`` (aware) lies in its active window."""
        if not self.enabled:
            return False
        if self.active_from is not None and now < self.active_from:
            return False
        return self.active_to is None or now < self.active_to

    @property
    def order_key(self) -> tuple[int, int, str]:
        """Sort key of the resolution order (earlier wins)."""
        return (-self.priority, -SPECIFICITY[self.match], self.id)


# --------------------------------------------------------------------------------------------
# Validation and JSON


def _fail(field_name: str, message: str) -> InvalidRequestError:
    return InvalidRequestError(field_name, message)


def _str_list(value: Any, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise _fail(name, "must be a list of strings")
    return tuple(dict.fromkeys(v.strip() for v in value if v.strip()))


def filters_from_dict(data: Any, name: str = "filters") -> Filters:
    """Parse filters written as JSON.

    Accepted keys: ``brands``, ``categories`` (``"Furniture > Sofas"`` or a list of levels),
    ``attributes`` (alias ``attr``: name -> list of values), ``price_min``, ``price_max``,
    ``availability`` (values of :class:`~search.types.Availability`).

    Args:
        data: A mapping.
        name: Field name used in errors.

    Returns:
        The filters.

    Raises:
        InvalidRequestError: an unknown key or a malformed value (naming it).
    """
    if not isinstance(data, Mapping):
        raise _fail(name, "must be an object")
    valid = ("brands", "categories", "attributes", "attr", "price_min", "price_max", "availability")
    for key in data:
        if key not in valid:
            raise _fail(f"{name}.{key}", f"unknown filter; valid: {', '.join(valid)}")
    categories: list[tuple[str, ...]] = []
    for i, cat in enumerate(data.get("categories") or ()):
        path = parse_category(cat) if isinstance(cat, str) else None
        if isinstance(cat, list | tuple) and all(isinstance(c, str) for c in cat):
            path = tuple(c.strip() for c in cat if c.strip())
        if not path:
            raise _fail(f"{name}.categories[{i}]", 'must be a path like "Furniture > Sofas"')
        categories.append(path)
    attrs_in = data.get("attributes", data.get("attr")) or {}
    if not isinstance(attrs_in, Mapping):
        raise _fail(f"{name}.attributes", "must be an object of name -> list of values")
    attributes = {}
    for key, values in attrs_in.items():
        vals = _str_list(values, f"{name}.attributes.{key}")
        if not vals:
            raise _fail(f"{name}.attributes.{key}", "must list at least one value")
        attributes[str(key)] = vals
    availability = []
    for value in _str_list(data.get("availability"), f"{name}.availability"):
        try:
            availability.append(Availability(value))
        except ValueError:
            raise _fail(
                f"{name}.availability",
                f"unknown value {value!r}; valid: {', '.join(a.value for a in Availability)}",
            ) from None
    price_min = _number(data.get("price_min"), f"{name}.price_min")
    price_max = _number(data.get("price_max"), f"{name}.price_max")
    if price_min is not None and price_max is not None and price_min > price_max:
        raise _fail(f"{name}.price_min", "must not exceed price_max")
    return Filters(
        brands=_str_list(data.get("brands"), f"{name}.brands"),
        categories=tuple(categories),
        attributes=attributes,
        price_min=price_min,
        price_max=price_max,
        availability=tuple(availability),
    )


def filters_to_dict(filters: Filters) -> dict[str, Any]:
    """JSON form of filters, read back by :func:`filters_from_dict` (unset keys left out)."""
    out: dict[str, Any] = {}
    if filters.brands:
        out["brands"] = list(filters.brands)
    if filters.categories:
        out["categories"] = [category_label(p) for p in filters.categories]
    if filters.attributes:
        out["attributes"] = {k: list(v) for k, v in filters.attributes.items()}
    if filters.price_min is not None:
        out["price_min"] = filters.price_min
    if filters.price_max is not None:
        out["price_max"] = filters.price_max
    if filters.availability:
        out["availability"] = [a.value for a in filters.availability]
    return out


def _selector(data: Mapping[str, Any], name: str) -> Selector:
    ids = _str_list(data.get("product_ids"), f"{name}.product_ids")
    filters = filters_from_dict(data["filter"], f"{name}.filter") if "filter" in data else None
    if not ids and (filters is None or filters.is_empty):
        raise _fail(name, "needs product_ids or a non-empty filter")
    return Selector(ids, filters)


def _weight(data: Mapping[str, Any], name: str) -> float:
    weight = _number(data.get("weight"), f"{name}.weight")
    if weight is None or not 0 < weight <= 10:
        raise _fail(f"{name}.weight", "must be a number above 0 and at most 10")
    return weight


ACTION_TYPES = ("pin", "boost", "bury", "hide", "synonyms", "redirect")


def action_from_dict(data: Any, name: str = "action") -> Action:
    """Parse one action written as JSON.

    Forms: ``{"type": "pin", "product_id": "SOFA-1", "position": 1}``,
    ``{"type": "boost"|"bury", "filter": {...}, "product_ids": [...], "weight": 0.3}``,
    ``{"type": "hide", "product_ids": [...], "filter": {...}}``,
    ``{"type": "synonyms", "words": ["tv", "television"], "one_way": false}``,
    ``{"type": "redirect", "url": "https://shop.example/sale"}``.

    Raises:
        InvalidRequestError: the action is malformed (naming the field).
    """
    if not isinstance(data, Mapping):
        raise _fail(name, "must be an object")
    kind = data.get("type")
    if kind not in ACTION_TYPES:
        raise _fail(f"{name}.type", f"unknown action {kind!r}; valid: {', '.join(ACTION_TYPES)}")
    if kind == "pin":
        pid = data.get("product_id")
        if not isinstance(pid, str) or not pid.strip():
            raise _fail(f"{name}.product_id", "must be a product id")
        position = data.get("position")
        if (
            isinstance(position, bool)
            or not isinstance(position, int)
            or not 1 <= position <= 10_000
        ):
            raise _fail(f"{name}.position", "must be a whole number from 1 to 10000")
        return Pin(pid.strip(), position)
    if kind == "boost":
        return Boost(_selector(data, name), _weight(data, name))
    if kind == "bury":
        return Bury(_selector(data, name), _weight(data, name))
    if kind == "hide":
        return Hide(_selector(data, name))
    if kind == "synonyms":
        words = tuple(dict.fromkeys(fold(w) for w in _str_list(data.get("words"), f"{name}.words")))
        if len(words) < 2:
            raise _fail(f"{name}.words", "must list at least two different words")
        for w in words:
            if _TOKEN.fullmatch(w) is None:
                raise _fail(f"{name}.words", f"{w!r} is not a single word (letters and digits)")
        one_way = data.get("one_way", False)
        if not isinstance(one_way, bool):
            raise _fail(f"{name}.one_way", "must be true or false")
        return Synonyms(words, one_way)
    url = data.get("url")
    if not isinstance(url, str):
        raise _fail(f"{name}.url", "must be a string")
    problem = redirect_url_problem(url.strip())
    if problem is not None:
        raise _fail(f"{name}.url", problem)
    return Redirect(url.strip())


#: Characters a redirect target may not hold anywhere: controls (browsers drop tab and newline,
#: so ``/\t/evil.example`` becomes ``//evil.example``), white space, and the backslash, which
#: browsers read as ``/`` (``/\evil.example`` is protocol-relative to them).
_URL_FORBIDDEN = re.compile(r"[\x00-\x20\x7f-\x9f\\]")


def redirect_url_problem(url: str) -> str | None:
    """Why ``url`` is not a safe redirect target, or None when it is.

    Safe targets are absolute ``http``/``https`` URLs with a host, and site-relative paths that
    start with exactly one ``/``. Anything a browser could read as another site is refused:
    protocol-relative ``//host``, ``/\\host``, other schemes (``javascript:``), and control or
    white-space characters (browsers drop some of them before parsing).

    Args:
        url: The target as given (already stripped of surrounding white space).

    Returns:
        A message naming the problem, or None.
    """
    if not url:
        return "must be an http(s) URL or a path starting with /"
    bad = _URL_FORBIDDEN.search(url)
    if bad is not None:
        return (
            f"must not contain {bad.group()!r} (control characters, spaces and backslashes are "
            "refused); encode them (%20, %5C)"
        )
    if url.startswith("/"):
        if url.startswith("//"):
            return "a path must start with a single / (//host is another site)"
        return None
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError as exc:
        return f"is not a valid URL: {exc}"
    if parts.scheme.lower() not in ("http", "https"):
        return "must be an absolute http(s) URL (https://host/...) or a path starting with /"
    if not url.lower().startswith(parts.scheme.lower() + "://") or not host:
        return "an absolute URL must name its host: https://host/..."
    return None


def action_to_dict(action: Action) -> dict[str, Any]:
    """JSON form of an action (read back by :func:`action_from_dict`)."""
    if isinstance(action, Pin):
        return {"type": "pin", "product_id": action.product_id, "position": action.position}
    if isinstance(action, Synonyms):
        return {"type": "synonyms", "words": list(action.words), "one_way": action.one_way}
    if isinstance(action, Redirect):
        return {"type": "redirect", "url": action.url}
    out: dict[str, Any] = {"type": type(action).__name__.lower()}
    sel = action.selector
    if sel.product_ids:
        out["product_ids"] = list(sel.product_ids)
    if sel.filters is not None and not sel.filters.is_empty:
        out["filter"] = filters_to_dict(sel.filters)
    if isinstance(action, Boost | Bury):
        out["weight"] = action.weight
    return out


def _datetime(value: Any, name: str) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise _fail(name, f"must be an ISO 8601 date-time, got {value!r}") from None
    else:
        raise _fail(name, "must be an ISO 8601 date-time string")
    # A date-time without an offset is taken as UTC.
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


_RULE_KEYS = (
    "id", "match", "query", "actions", "channels", "segments", "active_from", "active_to",
    "priority", "enabled", "description",
)  # fmt: skip


def rule_from_dict(data: Any, name: str = "rule", *, check_pattern: bool = True) -> Rule:
    """Validate and parse a rule written as JSON (the admin API's body).

    Args:
        data: A mapping with the fields of :class:`Rule` (dates as ISO 8601 strings).
        name: Prefix of field names in errors (``"rules[3]"``).
        check_pattern: Compile a ``pattern`` rule's expression with RE2 (on save). Reading
            back saved rules skips it, so a pattern saved before RE2 (a look-ahead, say) does
            not make every version unreadable: :class:`RuleSet` leaves it out, loudly.

    Returns:
        The rule; ``exact`` and ``contains`` queries normalised.

    Raises:
        InvalidRequestError: a field is missing or malformed; the error names it and lists the
            valid values.
    """
    if not isinstance(data, Mapping):
        raise _fail(name, "must be an object")
    for key in data:
        if key not in _RULE_KEYS:
            raise _fail(f"{name}.{key}", f"unknown field; valid: {', '.join(_RULE_KEYS)}")
    rule_id = data.get("id")
    if not isinstance(rule_id, str) or not _ID.match(rule_id):
        raise _fail(f"{name}.id", "must be 1-100 letters, digits or ._:-")
    match = data.get("match")
    if match not in MATCH_KINDS:
        raise _fail(f"{name}.match", f"unknown match {match!r}; valid: {', '.join(MATCH_KINDS)}")
    query = data.get("query", "")
    if not isinstance(query, str):
        raise _fail(f"{name}.query", "must be a string")
    if match == "global":
        if query.strip():
            raise _fail(f"{name}.query", "must be empty for a global rule")
        query = ""
    elif match == "pattern":
        if not query.strip():
            raise _fail(f"{name}.query", "must be a regular expression")
        if len(query) > MAX_PATTERN_CHARS:
            raise _fail(f"{name}.query", f"must be at most {MAX_PATTERN_CHARS} characters")
        if check_pattern:
            try:
                compile_pattern(query)
            except ValueError as exc:
                raise _fail(f"{name}.query", str(exc)) from None
    else:
        query = normalise_query(query)
        if not query:
            raise _fail(f"{name}.query", f"must contain a word for a {match} rule")
    raw_actions = data.get("actions")
    if not isinstance(raw_actions, list | tuple) or not raw_actions:
        raise _fail(f"{name}.actions", "must be a non-empty list")
    actions = tuple(action_from_dict(a, f"{name}.actions[{i}]") for i, a in enumerate(raw_actions))
    if sum(isinstance(a, Redirect) for a in actions) > 1:
        raise _fail(f"{name}.actions", "at most one redirect per rule")
    active_from = _datetime(data.get("active_from"), f"{name}.active_from")
    active_to = _datetime(data.get("active_to"), f"{name}.active_to")
    if active_from is not None and active_to is not None and active_from >= active_to:
        raise _fail(f"{name}.active_to", "must be after active_from")
    priority = data.get("priority", 0)
    if isinstance(priority, bool) or not isinstance(priority, int) or abs(priority) > 1_000_000:
        raise _fail(f"{name}.priority", "must be a whole number between -1000000 and 1000000")
    enabled = data.get("enabled", True)
    if not isinstance(enabled, bool):
        raise _fail(f"{name}.enabled", "must be true or false")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise _fail(f"{name}.description", "must be a string")
    return Rule(
        id=rule_id,
        match=match,
        query=query,
        actions=actions,
        channels=_str_list(data.get("channels"), f"{name}.channels"),
        segments=_str_list(data.get("segments"), f"{name}.segments"),
        active_from=active_from,
        active_to=active_to,
        priority=priority,
        enabled=enabled,
        description=description,
    )


def rule_to_dict(rule: Rule) -> dict[str, Any]:
    """JSON form of a rule (read back by :func:`rule_from_dict`)."""
    return {
        "id": rule.id,
        "match": rule.match,
        "query": rule.query,
        "actions": [action_to_dict(a) for a in rule.actions],
        "channels": list(rule.channels),
        "segments": list(rule.segments),
        "active_from": rule.active_from.isoformat() if rule.active_from else None,
        "active_to": rule.active_to.isoformat() if rule.active_to else None,
        "priority": rule.priority,
        "enabled": rule.enabled,
        "description": rule.description,
    }


def rules_from_list(data: Any, name: str = "rules") -> tuple[Rule, ...]:
    """Parse a list of rules, checking that ids are unique.

    Raises:
        InvalidRequestError: a rule is malformed or an id repeats.
    """
    if not isinstance(data, list | tuple):
        raise _fail(name, "must be a list of rules")
    rules = tuple(rule_from_dict(r, f"{name}[{i}]") for i, r in enumerate(data))
    seen: set[str] = set()
    for i, rule in enumerate(rules):
        if rule.id in seen:
            raise _fail(f"{name}[{i}].id", f"duplicate rule id {rule.id!r}")
        seen.add(rule.id)
    return rules


# --------------------------------------------------------------------------------------------
# Matching


@dataclass(frozen=True, slots=True)
class MatchedRules:
    """The rules that apply to one request, in resolution order (earliest wins).

    Attributes:
        rules: Matched rules, highest priority first.
    """

    rules: tuple[Rule, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.rules)

    @property
    def redirect(self) -> str | None:
        """The URL to answer with, from the earliest rule with a redirect, or None."""
        for rule in self.rules:
            for action in rule.actions:
                if isinstance(action, Redirect):
                    return action.url
        return None

    @property
    def synonyms(self) -> dict[str, tuple[str, ...]]:
        """Folded word -> words it also finds, merged over every matched rule (for
        ``UnderstandConfig.synonyms``)."""
        merged: dict[str, dict[str, None]] = defaultdict(dict)
        for rule in self.rules:
            for action in rule.actions:
                if isinstance(action, Synonyms):
                    for word, others in action.mapping().items():
                        merged[word].update(dict.fromkeys(others))
        return {w: tuple(o) for w, o in merged.items()}


Selection = npt.NDArray[np.uint8] | tuple[int, ...]

#: Selections of at most this many products are kept as a tuple of numbers (looked up in the
#: hits' positions), larger ones as a bitset over the catalogue (one bit per product).
SMALL_SELECTION = 64


def _select(selector: Selector, store: ProductStore) -> Selection:
    """The documents a selector picks: their numbers when few, else a packed bitset."""
    mask = selector.mask(store)
    picked = np.flatnonzero(mask)
    if len(picked) <= SMALL_SELECTION:
        return tuple(picked.tolist())
    return np.packbits(mask)


def _members(
    selected: Selection, docs: npt.NDArray[np.int64], position: Mapping[int, int]
) -> npt.NDArray[np.bool_]:
    """Which of ``docs`` are selected: a look-up per selected number, or a bit test per doc
    (cost grows with the hits and small selections, never with the catalogue).

    Args:
        selected: What :func:`_select` returned.
        docs: The documents under consideration.
        position: Document -> its index in ``docs``.
    """
    if isinstance(selected, tuple):
        out = np.zeros(len(docs), dtype=bool)
        at = [position[d] for d in selected if d in position]
        if at:
            out[at] = True
        return out
    bits = (selected[docs >> 3] >> (7 - (docs & 7)).astype(np.uint8)) & 1
    return np.asarray(bits.astype(bool))


def _selector_key(selector: Selector) -> str:
    filters = filters_to_dict(selector.filters) if selector.filters is not None else {}
    return json.dumps([sorted(selector.product_ids), filters], sort_keys=True)


@dataclass(frozen=True, slots=True)
class _Contains:
    tokens: tuple[str, ...]
    rule: Rule


class RuleSet:
    """Rules compiled for fast matching.

    Args:
        rules: The rules (ids must be unique).

    Raises:
        InvalidRequestError: two rules share an id. A pattern RE2 cannot compile (saved
            before patterns were checked) is left out and listed in :attr:`broken`.
    """

    def __init__(self, rules: Iterable[Rule] = ()) -> None:
        self.rules: tuple[Rule, ...] = tuple(sorted(rules, key=lambda r: r.order_key))
        ids = [r.id for r in self.rules]
        if len(set(ids)) != len(ids):
            dup = next(i for i in ids if ids.count(i) > 1)
            raise InvalidRequestError("rules", f"duplicate rule id {dup!r}")
        self._exact: dict[str, list[Rule]] = defaultdict(list)
        self._contains: dict[str, list[_Contains]] = defaultdict(list)
        self._patterns: list[tuple[Any, Rule]] = []  # compiled RE2 patterns
        #: Rule id -> why it is left out (a saved pattern RE2 cannot compile).
        self.broken: dict[str, str] = {}
        self._global: list[Rule] = []
        for rule in self.rules:
            if not rule.enabled:
                continue
            if rule.match == "exact":
                self._exact[normalise_query(rule.query)].append(rule)
            elif rule.match == "contains":
                tokens = tuple(normalise_query(rule.query).split())
                self._contains[tokens[0]].append(_Contains(tokens, rule))
            elif rule.match == "pattern":
                try:
                    compiled = compile_pattern(rule.query)
                except ValueError as exc:
                    # Saved before patterns were checked with RE2: serving every other rule
                    # beats failing every search; the rule is reported and never matches.
                    self.broken[rule.id] = str(exc)
                    _logger.error("rule %r is left out: %s", rule.id, exc)
                    continue
                self._patterns.append((compiled, rule))
            else:
                self._global.append(rule)
        self.has_rules = bool(self._exact or self._contains or self._patterns or self._global)
        # Selections are cached by content: rules that share a filter share one entry.
        self._owned = {
            id(a.selector): _selector_key(a.selector)
            for r in self.rules
            for a in r.actions
            if isinstance(a, Boost | Bury | Hide)
        }
        self._mask_store: ProductStore | None = None
        self._masks: dict[str, Selection] = {}

    def __len__(self) -> int:
        return len(self.rules)

    def match(
        self,
        query: str,
        *,
        channel: str | None = None,
        segment: str | Collection[str] | None = None,
        now: datetime | None = None,
    ) -> MatchedRules:
        """The rules that apply to a request.

        Args:
            query: The query text (normalised here with :func:`normalise_query`; passing an
                already normalised text is fine).
            channel: The request's channel, or None.
            segment: The shopper's segment or segments (a profile may have several: a rule
                naming any of them applies), or None.
            now: The time to check active windows against (default: now, UTC).

        Returns:
            The matched rules in resolution order.
        """
        if not self.has_rules:
            return MatchedRules()
        now = now or datetime.now(UTC)
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        segments: Collection[str] = (
            () if segment is None else (segment,) if isinstance(segment, str) else segment
        )
        text = normalise_query(query)
        tokens = text.split()
        found: list[Rule] = list(self._global)
        if text:
            found += self._exact.get(text, ())
            n = len(tokens)
            for i, token in enumerate(tokens):
                for cand in self._contains.get(token, ()):
                    k = len(cand.tokens)
                    if k == 1 or (i + k <= n and tuple(tokens[i : i + k]) == cand.tokens):
                        found.append(cand.rule)
            for pattern, rule in self._patterns:
                if pattern.search(text):
                    found.append(rule)
        out: dict[str, Rule] = {}
        for rule in found:
            if rule.id in out:
                continue
            if rule.channels and channel not in rule.channels:
                continue
            if rule.segments and not any(seg in rule.segments for seg in segments):
                continue
            if rule.active_at(now):
                out[rule.id] = rule
        if len(out) > 1:
            return MatchedRules(tuple(sorted(out.values(), key=lambda r: r.order_key)))
        return MatchedRules(tuple(out.values()))

    # --- applying ---------------------------------------------------------------------------

    def _selected(self, selector: Selector, store: ProductStore) -> Selection:
        """The documents a selector picks, cached per store for this set's own rules."""
        if store is not self._mask_store:
            self._mask_store = store
            self._masks = {}
        key = self._owned.get(id(selector))
        if key is not None:
            cached = self._masks.get(key)
            if cached is None:
                cached = self._masks[key] = _select(selector, store)
            return cached
        return _select(selector, store)

    def hidden_mask(
        self, store: ProductStore, matched: MatchedRules
    ) -> npt.NDArray[np.bool_] | None:
        """Products the matched rules hide, as a mask over the store, or None when none.

        AND its negation into the request's filter mask before retrieval so that hidden
        products are neither retrieved nor counted in ``total`` and facets; :meth:`apply`
        removes them from the hits either way.

        Args:
            store: The serving snapshot's products.
            matched: What :meth:`match` returned for this request.
        """
        out: npt.NDArray[np.bool_] | None = None
        for rule in matched.rules:
            for action in rule.actions:
                if isinstance(action, Hide):
                    selected = self._selected(action.selector, store)
                    if isinstance(selected, tuple):
                        mask = np.zeros(len(store), dtype=bool)
                        mask[list(selected)] = True
                    else:
                        mask = np.unpackbits(selected, count=len(store)).astype(bool)
                    out = mask if out is None else out | mask
        return out

    def apply(
        self,
        hits: Sequence[Hit],
        store: ProductStore,
        matched: MatchedRules,
        *,
        allowed: npt.NDArray[np.bool_] | None = None,
        explain: bool = True,
        window: int | None = None,
    ) -> tuple[list[Hit], dict[int, list[str]]]:
        """Apply matched rules to a ranked hit list (the whole ranked list, before paging).

        The rules need not belong to this set (a preview applies proposed rules through the
        serving set); selections of the set's own rules are cached per store. Work is done
        over the hits only (and pinned products), never over the whole catalogue.

        Args:
            hits: Hits best first, after every re-ranker.
            store: The serving snapshot's products (ids -> documents, filter masks).
            matched: What :meth:`match` returned for this request.
            allowed: The request's filter mask, or None: a pinned product outside it is not
                inserted.
            explain: Collect explanation lines (False saves their formatting when the
                request asks for no explanations).
            window: Hits the caller will show (``page * k``), or None for all. After a boost
                or bury the first ``window`` hits get new hit objects with the rank score plus
                weights (source ``"rules"``); hits past it keep their objects and scores, in
                the new order. Building hits is most of the cost of a long list.

        Returns:
            The new hit list and, per document, the explanation lines of the rules that
            touched it (hidden documents included), for ``Explanation.adjustments`` with stage
            :data:`STAGE`; empty when ``explain`` is False. A boost or bury rewrites scores
            (see ``window``) so they fall monotonically; a pinned hit (source ``"rules"``)
            keeps its own score (0 when it was inserted), so scores around pins need not.
        """
        if not matched:
            return list(hits), {}
        effects: dict[int, list[str]] = defaultdict(list)
        # Pinned documents first: the earliest rule's pin of a product wins.
        pins: dict[int, tuple[int, Rule]] = {}
        for rule in matched.rules:
            for action in rule.actions:
                if isinstance(action, Pin):
                    doc = store.doc_of.get(action.product_id)
                    if doc is not None and doc not in pins:
                        pins[doc] = (action.position, rule)
        n_hits = len(hits)
        # Documents under consideration: the hits, then pinned products retrieval missed.
        docs = np.fromiter((h.doc for h in hits), dtype=np.int64, count=n_hits)
        where = {d: i for i, d in enumerate(docs.tolist())}
        index = dict(where) if pins else where
        extra = [d for d in pins if d not in index]
        if extra:
            docs = np.concatenate([docs, np.asarray(extra, dtype=np.int64)])
            where.update((d, n_hits + i) for i, d in enumerate(extra))
        hidden = np.zeros(len(docs), dtype=bool)
        delta = np.zeros(len(docs), dtype=np.float64)
        reorder = False
        for rule in matched.rules:
            for action in rule.actions:
                if isinstance(action, Hide):
                    member = _members(self._selected(action.selector, store), docs, where)
                    if explain:
                        for i in np.flatnonzero(member & ~hidden).tolist():
                            effects[int(docs[i])].append(f"hidden by rule {rule.id!r}")
                    hidden |= member
                elif isinstance(action, Boost | Bury):
                    member = _members(self._selected(action.selector, store), docs, where)
                    boost = isinstance(action, Boost)
                    delta[member] += action.weight if boost else -action.weight
                    reorder = True
                    if explain and member.any():
                        word = "boosted" if boost else "buried"
                        line = f"{word} {action.weight:.2f} by rule {rule.id!r}"
                        for i in np.flatnonzero(member[:n_hits]).tolist():
                            effects[int(docs[i])].append(line)
        hidden_docs = set(docs[hidden].tolist()) if hidden.any() else set()
        # 1. Hide beats everything, pins included.
        for doc, (_, rule) in list(pins.items()):
            if doc in hidden_docs:
                if explain:
                    effects[doc].append(f"pin by rule {rule.id!r} overridden: hidden")
                del pins[doc]
            elif doc not in index and allowed is not None and not allowed[doc]:
                if explain:
                    effects[doc].append(f"pin by rule {rule.id!r} skipped: outside the filters")
                del pins[doc]
        # 2. Boost and bury the unpinned hits: rank score (1 down to 1/n) plus weights.
        keep = ~hidden[:n_hits]
        if pins:
            keep &= ~np.isin(docs[:n_hits], np.fromiter(pins, dtype=np.int64, count=len(pins)))
        positions = np.flatnonzero(keep)
        if reorder and len(positions):
            n = len(positions)
            final = 1.0 - np.arange(n, dtype=np.float64) / n + delta[positions]
            order = np.argsort(-final, kind="stable").tolist()
            # Only the head a caller shows gets rewritten scores (building hits is most of the
            # cost); the tail keeps its hit objects in the new order.
            head = len(order) if window is None else min(window, len(order))
            scores = final.tolist()
            at = positions.tolist()
            free = [Hit(hits[at[i]].doc, scores[i], STAGE) for i in order[:head]]
            free += [hits[at[i]] for i in order[head:]]
        else:
            free = [hits[i] for i in positions.tolist()]
        if not pins:
            return free, dict(effects)
        # 3. Pins, earliest rule first; a taken position shifts the later pin down.
        slots: dict[int, Hit] = {}
        for doc, (position, rule) in sorted(pins.items(), key=lambda kv: kv[1][1].order_key):
            pos = position
            while pos in slots:
                pos += 1
            found = index.get(doc)
            slots[pos] = Hit(doc, hits[found].score if found is not None else 0.0, STAGE)
            if explain:
                note = f"pinned at {position} by rule {rule.id!r}"
                if pos != position:
                    note += f" (shifted to {pos}: position taken by an earlier rule's pin)"
                if found is None:
                    note += " (inserted: not retrieved)"
                effects[doc].append(note)
        result: list[Hit] = []
        rest = iter(free)
        pos = 1
        while slots:
            if pos in slots:
                result.append(slots.pop(pos))
            else:
                nxt = next(rest, None)
                if nxt is None:
                    # Pins past the end of the list go last, in position order.
                    result.extend(slots[p] for p in sorted(slots))
                    break
                result.append(nxt)
            pos += 1
        result.extend(rest)
        return result, dict(effects)

    def unknown_products(self, store: ProductStore) -> list[str]:
        """Product ids named by pins and selectors that the store lacks (for warnings).

        Args:
            store: The serving snapshot's products.

        Returns:
            ``"<rule id>: <product id>"`` entries.
        """
        out: list[str] = []
        for rule in self.rules:
            for action in rule.actions:
                ids: Sequence[str] = ()
                if isinstance(action, Pin):
                    ids = (action.product_id,)
                elif isinstance(action, Boost | Bury | Hide):
                    ids = action.selector.product_ids
                out += [f"{rule.id}: {pid}" for pid in ids if pid not in store.doc_of]
        return out


def explain_lines(effects: Mapping[int, Sequence[str]], doc: int) -> tuple[tuple[str, str], ...]:
    """A document's rule effects as ``Explanation.adjustments`` pairs.

    Args:
        effects: What :meth:`RuleSet.apply` returned.
        doc: The document.

    Returns:
        ``(STAGE, line)`` pairs.
    """
    return tuple((STAGE, line) for line in effects.get(doc, ()))


__all__ = [
    "MATCH_KINDS",
    "STAGE",
    "Action",
    "Boost",
    "Bury",
    "Hide",
    "MatchKind",
    "MatchedRules",
    "Pin",
    "Redirect",
    "Rule",
    "RuleSet",
    "Selector",
    "Synonyms",
    "action_from_dict",
    "action_to_dict",
    "explain_lines",
    "filters_from_dict",
    "filters_to_dict",
    "rule_from_dict",
    "rule_to_dict",
    "rules_from_list",
]
