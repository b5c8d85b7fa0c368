"""The parameters of one Algolia search request, read and checked.

A request's parameters arrive as JSON fields (``{"query": "sofa", "hitsPerPage": 20}``), as the
URL-encoded ``params`` string the older clients send (``query=sofa&hitsPerPage=20``, arrays
as URL-encoded JSON: ``facetFilters=%5B%5B%22brand%3AX%22%5D%5D``), or both (a JSON field wins
over the same name in ``params``). :func:`parse_query_params` reads them into a
:class:`QueryParams`; every parameter is checked for its type and range, and a parameter this
service does not support answers 400 naming it (:class:`~api.algolia.errors.AlgoliaParamError`)
instead of being ignored, except where the value asks for what the service does anyway
(``enableRules=true``, an empty ``tagFilters``): see :data:`NO_OP_VALUES`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson

from api.algolia.errors import AlgoliaParamError

MAX_QUERY_CHARS = 1000
"""Longest ``query`` (as ``GET /search``'s ``q``)."""
MAX_FILTER_CHARS = 8192
"""Longest ``filters`` string, and longest single entry of ``facetFilters`` or
``numericFilters``."""
MAX_FILTER_ENTRIES = 256
"""Most filter strings ``facetFilters`` or ``numericFilters`` may hold (nested ones counted)."""
MAX_LIST_ITEMS = 100
"""Most items of a list parameter (``facets``, ``attributesToRetrieve``...)."""
MAX_PARAMS_CHARS = 65536
"""Longest ``params`` string."""
MAX_TAG_CHARS = 100
"""Longest ``highlightPreTag``, ``highlightPostTag`` or ``snippetEllipsisText``."""
PAGINATION_LIMIT = 1000
"""Hits reachable by paging (Algolia's default ``paginationLimitedTo``)."""
DEFAULT_HITS_PER_PAGE = 20
DEFAULT_MAX_VALUES_PER_FACET = 100
MAX_VALUES_PER_FACET = 1000
DEFAULT_SNIPPET_WORDS = 10
MAX_SNIPPET_WORDS = 100
USER_TOKEN = re.compile(r"^[A-Za-z0-9_=/+.@:-]{1,129}$")
"""A ``userToken``: Algolia's characters (letters, digits, ``_ = / + -``) plus ``. @ :``, at
most 129 of them."""

FilterGroups = tuple[tuple[str, ...], ...]
"""``facetFilters`` or ``numericFilters``: filters that must all hold, each a tuple of
alternatives of which one must hold (a plain string entry is a group of one)."""


@dataclass(frozen=True, slots=True)
class QueryParams:
    """One search request's parameters, checked.

    Attributes:
        query: The query text.
        hits_per_page: Hits per page (0: facets and counts only).
        page: 0-based page.
        facets: Attributes to count values of, as the client named them.
        max_values_per_facet: Values returned per facet.
        facet_filters: ``facetFilters`` (AND of ORs).
        numeric_filters: ``numericFilters`` (AND of ORs).
        filters: The ``filters`` expression, or empty.
        attributes_to_retrieve: Record attributes to return (``*``: all; ``-name`` leaves
            one out of ``*``).
        attributes_to_highlight: Attributes to highlight, or None for the default ones.
        attributes_to_snippet: ``(attribute, words)`` to snippet.
        highlight_pre_tag: Put before a highlighted word.
        highlight_post_tag: Put after a highlighted word.
        snippet_ellipsis_text: Marks text cut from a snippet.
        analytics: Record the search (analytics, and the ``queryID`` clicks refer to).
        click_analytics: Return a ``queryID`` for insights events.
        user_token: The shopper (personalisation, A/B tests, event attribution), or None.
        prefix_last: Match the last query word as a prefix (``queryType=prefixLast``).
        echo: The parameters as received, URL-encoded (the answer's ``params``).
    """

    query: str = ""
    hits_per_page: int = DEFAULT_HITS_PER_PAGE
    page: int = 0
    facets: tuple[str, ...] = ()
    max_values_per_facet: int = DEFAULT_MAX_VALUES_PER_FACET
    facet_filters: FilterGroups = ()
    numeric_filters: FilterGroups = ()
    filters: str = ""
    attributes_to_retrieve: tuple[str, ...] = ("*",)
    attributes_to_highlight: tuple[str, ...] | None = None
    attributes_to_snippet: tuple[tuple[str, int], ...] = ()
    highlight_pre_tag: str = "<em>"
    highlight_post_tag: str = "</em>"
    snippet_ellipsis_text: str = "…"
    analytics: bool = True
    click_analytics: bool = False
    user_token: str | None = None
    prefix_last: bool = True
    echo: str = ""


def decode_params_string(text: object) -> dict[str, str]:
    """The fields of a URL-encoded ``params`` string.

    Args:
        text: The ``params`` value as received.

    Returns:
        Name -> value (strings; a repeated name keeps its last value).

    Raises:
        AlgoliaParamError: not a string, longer than :data:`MAX_PARAMS_CHARS`, or not
            URL-encoded ``name=value`` pairs (field ``params``).
    """
    if not isinstance(text, str):
        raise AlgoliaParamError("params", "must be a URL-encoded string such as 'query=sofa'")
    if len(text) > MAX_PARAMS_CHARS:
        raise AlgoliaParamError("params", f"is longer than {MAX_PARAMS_CHARS} characters")
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=False, max_num_fields=200)
    except ValueError as exc:  # more fields than max_num_fields
        raise AlgoliaParamError("params", f"cannot be read: {exc}") from None
    return dict(pairs)


def merged_fields(request: Mapping[str, Any], *, ignore: frozenset[str]) -> dict[str, Any]:
    """One request's parameters: its ``params`` string's fields, then its JSON fields.

    Args:
        request: The request object (a multi-query entry, or a single query's body).
        ignore: Names that are not search parameters (``indexName``, ``type``).

    Raises:
        AlgoliaParamError: a malformed ``params`` string.
    """
    fields: dict[str, Any] = {}
    if "params" in request and request["params"] is not None:
        fields.update(decode_params_string(request["params"]))
    for name, value in request.items():
        if name != "params" and name not in ignore and value is not None:
            fields[name] = value
    return fields


def parse_query_params(fields: Mapping[str, Any]) -> QueryParams:
    """Read and check a search request's parameters.

    Args:
        fields: Name -> value, JSON-typed or strings (see :func:`merged_fields`).

    Returns:
        The parameters.

    Raises:
        AlgoliaParamError: the first bad or unsupported parameter, named.
    """
    values: dict[str, Any] = {}
    for name, value in fields.items():
        if not isinstance(name, str):
            raise AlgoliaParamError(str(name), "parameter names must be strings")
        reader = _READERS.get(name)
        if reader is not None:
            attribute, read = reader
            values[attribute] = read(name, value)
            continue
        accepts = NO_OP_VALUES.get(name)
        if accepts is None:
            raise AlgoliaParamError(
                name,
                "is not supported by this service (docs/instantsearch.md lists what is); "
                f"supported: {', '.join(sorted(_READERS))}",
            )
        expected, check = accepts
        if not check(value):
            raise AlgoliaParamError(
                name, f"is supported only as {expected} (what this service always does)"
            )
    params = QueryParams(**values, echo=_echo(fields))
    if (params.page + 1) * max(params.hits_per_page, 1) > PAGINATION_LIMIT and params.page > 0:
        raise AlgoliaParamError(
            "page",
            f"page {params.page} with hitsPerPage {params.hits_per_page} is past the first "
            f"{PAGINATION_LIMIT} hits, the most paging reaches",
        )
    return params


def _echo(fields: Mapping[str, Any]) -> str:
    return urlencode(
        {
            name: value if isinstance(value, str) else orjson.dumps(value).decode()
            for name, value in fields.items()
        }
    )


# --- readers ---------------------------------------------------------------------------------


def _int(low: int, high: int) -> Callable[[str, Any], int]:
    def read(name: str, value: Any) -> int:
        number: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif (isinstance(value, float) and value.is_integer()) or (
            isinstance(value, str) and re.fullmatch(r"\s*-?\d{1,9}\s*", value)
        ):
            number = int(value)
        if number is None:
            raise AlgoliaParamError(name, f"must be a whole number, got {_show(value)}")
        if not low <= number <= high:
            raise AlgoliaParamError(name, f"must be between {low} and {high}, got {number}")
        return number

    return read


def _bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    raise AlgoliaParamError(name, f"must be true or false, got {_show(value)}")


def _text(max_chars: int) -> Callable[[str, Any], str]:
    def read(name: str, value: Any) -> str:
        if not isinstance(value, str):
            raise AlgoliaParamError(name, f"must be a string, got {_show(value)}")
        if len(value) > max_chars:
            raise AlgoliaParamError(name, f"is longer than {max_chars} characters")
        if any(ord(ch) < 32 and ch not in "\t\n\r" for ch in value):
            raise AlgoliaParamError(name, "must not contain control characters")
        return value

    return read


def _json_if_array(name: str, value: Any) -> Any:
    """A string holding a JSON array (how the ``params`` string carries arrays), decoded."""
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            raise AlgoliaParamError(name, "is not a valid JSON array") from None
    return value


def _names(name: str, value: Any) -> tuple[str, ...]:
    """A list of attribute names: a JSON array, or a comma-separated string."""
    value = _json_if_array(name, value)
    if isinstance(value, str):
        items: list[Any] = [part.strip() for part in value.split(",") if part.strip()]
    elif isinstance(value, list):
        items = value
    else:
        raise AlgoliaParamError(name, f"must be a list of attribute names, got {_show(value)}")
    if len(items) > MAX_LIST_ITEMS:
        raise AlgoliaParamError(name, f"lists more than {MAX_LIST_ITEMS} items")
    out: dict[str, None] = {}
    for item in items:
        if not isinstance(item, str) or not item.strip() or len(item) > 200:
            raise AlgoliaParamError(
                name, f"items must be attribute names (1 to 200 characters), got {_show(item)}"
            )
        out[item.strip()] = None
    return tuple(out)


def _filter_groups(name: str, value: Any) -> FilterGroups:
    """``facetFilters`` / ``numericFilters``: a string (one filter) or an array whose items are
    filters or arrays of filters (one level of nesting, as Algolia allows)."""
    value = _json_if_array(name, value)
    if isinstance(value, str):
        value = [value] if value.strip() else []
    if not isinstance(value, list):
        raise AlgoliaParamError(
            name, f"must be a filter string or an array of them, got {_show(value)}"
        )
    groups: list[tuple[str, ...]] = []
    count = 0
    for item in value:
        alternatives = item if isinstance(item, list) else [item]
        group: list[str] = []
        for alternative in alternatives:
            if isinstance(alternative, list):
                raise AlgoliaParamError(
                    name, "nests arrays more than two deep (an AND of ORs is the most allowed)"
                )
            if not isinstance(alternative, str):
                raise AlgoliaParamError(name, f"filters must be strings, got {_show(alternative)}")
            if len(alternative) > MAX_FILTER_CHARS:
                raise AlgoliaParamError(
                    name, f"a filter is longer than {MAX_FILTER_CHARS} characters"
                )
            group.append(alternative)
            count += 1
            if count > MAX_FILTER_ENTRIES:
                raise AlgoliaParamError(name, f"holds more than {MAX_FILTER_ENTRIES} filters")
        if group:
            groups.append(tuple(group))
    return tuple(groups)


def _snippets(name: str, value: Any) -> tuple[tuple[str, int], ...]:
    out: list[tuple[str, int]] = []
    for item in _names(name, value):
        attribute, sep, words = item.partition(":")
        count = DEFAULT_SNIPPET_WORDS
        if sep:
            if not words.strip().isdigit() or not 1 <= int(words) <= MAX_SNIPPET_WORDS:
                raise AlgoliaParamError(
                    name,
                    f"{item!r}: write attribute:words with 1 to {MAX_SNIPPET_WORDS} words",
                )
            count = int(words)
        out.append((attribute.strip(), count))
    return tuple(out)


def _user_token(name: str, value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not USER_TOKEN.fullmatch(value):
        raise AlgoliaParamError(
            name,
            "must be 1 to 129 letters, digits or _ = / + - . @ : "
            f"(a shopper's stable pseudonymous id), got {_show(value)}",
        )
    return value


def _query_type(name: str, value: Any) -> bool:
    if value == "prefixLast":
        return True
    if value == "prefixNone":
        return False
    raise AlgoliaParamError(
        name, f"must be prefixLast or prefixNone (prefixAll is not supported), got {_show(value)}"
    )


_READERS: dict[str, tuple[str, Callable[[str, Any], Any]]] = {
    "query": ("query", _text(MAX_QUERY_CHARS)),
    "hitsPerPage": ("hits_per_page", _int(0, PAGINATION_LIMIT)),
    "page": ("page", _int(0, PAGINATION_LIMIT)),
    "facets": ("facets", _names),
    "maxValuesPerFacet": ("max_values_per_facet", _int(1, MAX_VALUES_PER_FACET)),
    "facetFilters": ("facet_filters", _filter_groups),
    "numericFilters": ("numeric_filters", _filter_groups),
    "filters": ("filters", _text(MAX_FILTER_CHARS)),
    "attributesToRetrieve": ("attributes_to_retrieve", _names),
    "attributesToHighlight": ("attributes_to_highlight", _names),
    "attributesToSnippet": ("attributes_to_snippet", _snippets),
    "highlightPreTag": ("highlight_pre_tag", _text(MAX_TAG_CHARS)),
    "highlightPostTag": ("highlight_post_tag", _text(MAX_TAG_CHARS)),
    "snippetEllipsisText": ("snippet_ellipsis_text", _text(MAX_TAG_CHARS)),
    "analytics": ("analytics", _bool),
    "clickAnalytics": ("click_analytics", _bool),
    "userToken": ("user_token", _user_token),
    "queryType": ("prefix_last", _query_type),
}


def _empty(value: Any) -> bool:
    return value in ("", "[]", [], None)


def _is(*accepted: Any) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        if isinstance(value, str):
            return value.strip().lower() in {str(a).lower() for a in accepted}
        return any(value == a and type(value) is type(a) for a in accepted)

    return check


def _either_bool(value: Any) -> bool:
    return _is(True, False, "true", "false")(value)


NO_OP_VALUES: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "tagFilters": ("empty", _empty),
    "optionalFilters": ("empty", _empty),
    "ruleContexts": ("empty", _empty),
    "analyticsTags": ("empty", _empty),
    "getRankingInfo": ("false", _is(False, "false", 0)),
    "distinct": ("false or 0", _is(False, "false", 0, "0")),
    "enableRules": ("true (merchandising rules always apply)", _is(True, "true")),
    "enableABTest": ("true (A/B tests always apply)", _is(True, "true")),
    "enablePersonalization": (
        "true (a userToken's search is always personalised)",
        _is(True, "true"),
    ),
    "typoTolerance": ("true (typos are always tolerated)", _is(True, "true")),
    "advancedSyntax": ("false", _is(False, "false")),
    "sortFacetValuesBy": ("count", _is("count")),
    "responseFields": ('["*"]', lambda v: v in (["*"], '["*"]', "*")),
    "facetingAfterDistinct": ("true or false", _either_bool),
    "percentileComputation": ("true or false", _either_bool),
    "restrictHighlightAndSnippetArrays": ("false", _is(False, "false")),
    "synonyms": ("true (synonyms always apply)", _is(True, "true")),
}
"""Parameters read only to check that they ask for what the service does anyway: their
accepted values, in words, and the check. Any other value answers 400 naming the parameter."""


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def finite(name: str, text: str) -> float:
    """A finite number written in a filter.

    Raises:
        AlgoliaParamError: ``text`` is not a finite number (field ``name``).
    """
    try:
        number = float(text)
    except ValueError:
        raise AlgoliaParamError(name, f"{_show(text)} is not a number") from None
    if not math.isfinite(number):
        raise AlgoliaParamError(name, f"{_show(text)} is not a finite number")
    return number
