"""What the Algolia-compatible routes refuse, as domain errors (answered in :mod:`api.errors`
for the status and message, in Algolia's body shape by :mod:`api.routes.algolia`)."""

from __future__ import annotations

from search.errors import InvalidRequestError, SearchServiceError


class AlgoliaParamError(InvalidRequestError):
    """A parameter of an Algolia request that is malformed, out of range or not supported.

    Answered 400 ``{"message": "<param>: <why>", "status": 400}`` on the Algolia routes.

    Attributes:
        field: The parameter as the client wrote it (``facetFilters``, ``hitsPerPage``...).
    """


class UnknownIndexError(SearchServiceError, LookupError):
    """An Algolia index name this service does not answer for (404).

    Args:
        name: The index asked for.
        served: The names it answers for (the index and its sorted replicas).
    """

    def __init__(self, name: str, served: tuple[str, ...]) -> None:
        super().__init__(
            f"index {name!r} does not exist; this service answers for {', '.join(served)} "
            "(PRODUCTSEARCH_ALGOLIA_INDEX names the index)"
        )
        self.name = name
        self.served = served
