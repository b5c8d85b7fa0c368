"""Domain errors. Only ``api/`` turns these into HTTP responses."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal


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


# Merchandising configuration (merchandising/store.py)


class ConfigNotFoundError(SearchServiceError, LookupError):
    """No rule, experiment or version with that id (answered 404)."""

    def __init__(self, kind: str, key: str | int) -> None:
        super().__init__(f"no {kind} {key!r}")
        self.kind = kind
        self.key = key


class ConfigConflictError(SearchServiceError):
    """The configuration changed since the version the caller edited (answered 409)."""

    def __init__(self, expected: int, current: int) -> None:
        super().__init__(f"configuration is at version {current}, not {expected}: reload and retry")
        self.expected = expected
        self.current = current


# Behavioural events (events/store.py)


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem with one field of an event.

    Attributes:
        field: The field's name, as the caller wrote it (``"*"`` for the event as a whole).
        message: What is wrong and what is valid.
    """

    field: str
    message: str


class EventStoreUnavailableError(SearchServiceError, RuntimeError):
    """The event store cannot be reached or used right now (server down, connection lost,
    database locked beyond its timeout, store closed). Nothing of the failed call is
    acknowledged: retrying it later is safe (appends are idempotent by ``event_id``)."""


class InvalidEventError(SearchServiceError, ValueError):
    """An event failed validation.

    Attributes:
        errors: Every problem found, one per field.
    """

    def __init__(self, errors: Sequence[FieldError]) -> None:
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))
        self.errors = tuple(errors)


# Photos (indexer/images.py, indexer/colours.py)

ProblemKind = Literal["missing", "corrupt", "unsupported", "too-large", "http"]
"""Why a photo could not be read (:class:`ImageLoadError`)."""


class ImageLoadError(SearchServiceError, ValueError):
    """A photo cannot be read.

    Attributes:
        kind: ``missing`` (no such file), ``corrupt`` (truncated or damaged data),
            ``unsupported`` (not an image, or a format this install cannot read),
            ``too-large`` (past the byte or pixel limit) or ``http`` (download failed).
        location: The photo's path or URL, when known.
    """

    def __init__(self, kind: ProblemKind, message: str, location: str = "") -> None:
        super().__init__(message)
        self.kind: ProblemKind = kind
        self.location = location
        self.message = message


class ColourExtractionError(SearchServiceError, ValueError):
    """A photo cannot be read: missing, unreadable, truncated or not an image.

    Attributes:
        path: The file, when the photo came from one.
    """

    def __init__(self, message: str, path: Path | None = None) -> None:
        super().__init__(message)
        self.path = path
