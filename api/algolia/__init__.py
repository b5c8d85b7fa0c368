"""Algolia's search protocol over this service: what InstantSearch and the ``algoliasearch``
lite client send and read, mapped onto the same pipeline ``GET /search`` runs.

Pure functions and values, testable without HTTP (the routes are :mod:`api.routes.algolia`):

* :mod:`api.algolia.params`: a request's parameters (JSON fields or the URL-encoded ``params``
  string), checked; unsupported ones are refused by name.
* :mod:`api.algolia.filters`: ``facetFilters``, ``numericFilters`` and the ``filters`` grammar
  as one :data:`search.types.Condition`.
* :mod:`api.algolia.protocol`: the engine request an Algolia query asks for, and the engine's
  answer in Algolia's shape (facets, stats, paging).
* :mod:`api.algolia.records`: products as Algolia-style records, highlighting and snippets.
* :mod:`api.algolia.insights`: Insights events as shopper events.
* :mod:`api.algolia.errors`: what is refused (400 naming the parameter, 404 for an index).

``docs/instantsearch.md`` documents the record mapping and the supported parameters.
"""

from __future__ import annotations

from api.algolia.errors import AlgoliaParamError, UnknownIndexError
from api.algolia.filters import Fields
from api.algolia.params import QueryParams, merged_fields, parse_query_params

__all__ = [
    "AlgoliaParamError",
    "Fields",
    "QueryParams",
    "UnknownIndexError",
    "merged_fields",
    "parse_query_params",
]
