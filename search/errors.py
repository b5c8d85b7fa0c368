"""Domain errors. Only ``api/`` turns these into HTTP responses."""

from __future__ import annotations


class SearchServiceError(Exception):
    """Base class of every error the service raises on purpose."""


class InvalidRequestError(SearchServiceError, ValueError):
    """A caller's parameter is wrong.

    Attributes:
        field: The parameter's name, as the caller wrote it.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class ProductNotFoundError(SearchServiceError, LookupError):
    """No product with that id in the serving snapshot."""

    def __init__(self, product_id: str) -> None:
        super().__init__(f"no product with id {product_id!r}")
        self.product_id = product_id


class CatalogueError(SearchServiceError):
    """The catalogue cannot be imported (unreadable file, unknown format, or bad rows under --strict)."""


class SnapshotError(SearchServiceError):
    """An index snapshot is missing, corrupt or incompatible; the message says which file and why."""
