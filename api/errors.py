"""Domain errors as HTTP answers, decided in one place.

Routes raise the domain errors (:mod:`search.errors`, :class:`api.uploads.UploadError`,
:class:`api.audio.AudioError`) or let them through; this module alone decides each one's
status code and body. :func:`install_error_handlers` registers the answers with the
application; :func:`websocket_error` gives the WebSocket voice stream, which has no HTTP
response, the same status and words for its close. A domain error with no answer here (a bug,
or one no route lets through) stays a plain 500 without its message.

=================================  ======  =============================================
Error                              Status  Body
=================================  ======  =============================================
InvalidRequestError                422     FastAPI's validation shape, ``loc`` ``["query",
                                           field]`` (``["body", field]`` for
                                           :class:`InvalidBodyError`)
ProductNotFoundError               404     ``{"detail": "no product with id 'X'"}``
UnknownIndexError                  404     ``{"detail": "index 'X' does not exist; ..."}``
ConfigNotFoundError                404     ``{"detail": "no rule 'X'"}`` (its message)
ConfigConflictError                409     ``{"detail": ...}`` (its message)
SnapshotError                      409     ``{"detail": "kept the serving snapshot: ..."}``
EventStoreUnavailableError         503     a retry sentence, ``Retry-After`` header
UploadError, AudioError            theirs  ``{"detail": message}`` (413, 415 or 422)
=================================  ======  =============================================

The Algolia-compatible routes answer the same status and message in Algolia's body,
``{"message": ..., "status": ...}``, with 422 as 400 (:func:`request_error_answer`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse

from api.algolia.errors import UnknownIndexError
from api.audio import AudioError
from api.uploads import UploadError
from search.errors import (
    ConfigConflictError,
    ConfigNotFoundError,
    EventStoreUnavailableError,
    InvalidRequestError,
    ProductNotFoundError,
    SearchServiceError,
    SnapshotError,
)

__all__ = [
    "STORE_RETRY_AFTER_S",
    "ErrorAnswer",
    "InvalidBodyError",
    "body_fields",
    "error_answer",
    "install_error_handlers",
    "mapped_errors",
    "request_error_answer",
    "status_and_message",
    "websocket_error",
]

logger = logging.getLogger("productsearch.api")

STORE_RETRY_AFTER_S = 5
"""``Retry-After`` (seconds) of the 503 answered while the event store cannot be reached."""


class InvalidBodyError(InvalidRequestError):
    """An :class:`~search.errors.InvalidRequestError` about a field of the JSON request body.

    Answered like its parent, with ``loc`` ``["body", field]`` instead of ``["query", field]``
    (raised by :func:`body_fields`).
    """


@contextmanager
def body_fields() -> Iterator[None]:
    """Within the block, a malformed field is a field of the JSON request body.

    The codecs (rules, weights, experiments, filters) name a field as the body writes it
    (``rule.actions[0].position``) but cannot know that the request carried it in its body;
    a route that reads a JSON body says so with this block, and the answer's ``loc`` starts
    with ``"body"``.

    Raises:
        InvalidBodyError: For an InvalidRequestError raised inside (that error is its cause).
    """
    try:
        yield
    except InvalidBodyError:
        raise
    except InvalidRequestError as exc:
        raise InvalidBodyError(exc.field, exc.message) from exc


@dataclass(frozen=True, slots=True)
class ErrorAnswer:
    """What the service answers for one domain error.

    Attributes:
        status: The HTTP status code.
        detail: The JSON body's ``detail``: a sentence, or FastAPI's validation error list.
        message: The same in one line of text (a WebSocket close reason).
        headers: Response headers the answer needs (``Retry-After``).
    """

    status: int
    detail: str | list[dict[str, Any]]
    message: str
    headers: Mapping[str, str] = field(default_factory=dict)


_E = TypeVar("_E", bound=SearchServiceError)
_ANSWERS: dict[type[SearchServiceError], Callable[[Any], ErrorAnswer]] = {}


def _answers(
    error: type[_E],
) -> Callable[[Callable[[_E], ErrorAnswer]], Callable[[_E], ErrorAnswer]]:
    """Record the decorated function as the answer to ``error`` and its subclasses."""

    def record(answer: Callable[[_E], ErrorAnswer]) -> Callable[[_E], ErrorAnswer]:
        _ANSWERS[error] = answer
        return answer

    return record


@_answers(InvalidRequestError)
def _invalid_request(exc: InvalidRequestError) -> ErrorAnswer:
    # The shape of FastAPI's own RequestValidationError answers, so clients parse one format.
    where = "body" if isinstance(exc, InvalidBodyError) else "query"
    detail = [{"loc": [where, exc.field], "msg": exc.message, "type": "value_error"}]
    return ErrorAnswer(status.HTTP_422_UNPROCESSABLE_CONTENT, detail, str(exc))


@_answers(ProductNotFoundError)
def _product_not_found(exc: ProductNotFoundError) -> ErrorAnswer:
    message = f"no product with id {exc.product_id!r}"
    return ErrorAnswer(status.HTTP_404_NOT_FOUND, message, message)


@_answers(UnknownIndexError)
def _unknown_index(exc: UnknownIndexError) -> ErrorAnswer:
    return ErrorAnswer(status.HTTP_404_NOT_FOUND, str(exc), str(exc))


@_answers(ConfigNotFoundError)
def _config_not_found(exc: ConfigNotFoundError) -> ErrorAnswer:
    return ErrorAnswer(status.HTTP_404_NOT_FOUND, str(exc), str(exc))


@_answers(ConfigConflictError)
def _config_conflict(exc: ConfigConflictError) -> ErrorAnswer:
    return ErrorAnswer(status.HTTP_409_CONFLICT, str(exc), str(exc))


@_answers(SnapshotError)
def _snapshot(exc: SnapshotError) -> ErrorAnswer:
    # A request meets a SnapshotError only while swapping to a new snapshot, and the service
    # swaps only once the new one has opened: the serving snapshot is still the old one.
    message = f"kept the serving snapshot: {exc}"
    return ErrorAnswer(status.HTTP_409_CONFLICT, message, message)


@_answers(EventStoreUnavailableError)
def _store_unavailable(exc: EventStoreUnavailableError) -> ErrorAnswer:
    # The cause (a host name, a driver's message) goes to the log, not to the client.
    message = (
        "the event store cannot be reached right now, so nothing of this request was stored "
        f"or erased; retry in {STORE_RETRY_AFTER_S} s (a retried event batch with the same "
        "Idempotency-Key or event ids is not counted twice)"
    )
    return ErrorAnswer(
        status.HTTP_503_SERVICE_UNAVAILABLE,
        message,
        message,
        {"Retry-After": str(STORE_RETRY_AFTER_S)},
    )


@_answers(UploadError)
def _upload(exc: UploadError) -> ErrorAnswer:
    return ErrorAnswer(exc.status_code, exc.message, exc.message)


@_answers(AudioError)
def _audio(exc: AudioError) -> ErrorAnswer:
    return ErrorAnswer(exc.status_code, exc.message, exc.message)


def mapped_errors() -> tuple[type[SearchServiceError], ...]:
    """The domain error classes with an answer (their subclasses share it).

    Returns:
        The classes, in the order their answers are defined.
    """
    return tuple(_ANSWERS)


def error_answer(exc: BaseException) -> ErrorAnswer | None:
    """The answer to a domain error: that of its nearest mapped class.

    Args:
        exc: The error.

    Returns:
        The answer, or None for an error with none (answered as a plain 500).
    """
    for cls in type(exc).__mro__:
        answer = _ANSWERS.get(cls)
        if answer is not None:
            return answer(exc)
    return None


def status_and_message(exc: SearchServiceError) -> tuple[int, str]:
    """The status and one-line message of a domain error, for answers that are not HTTP
    responses (the WebSocket voice stream's error message and close reason).

    Args:
        exc: The error.

    Returns:
        ``(status, message)``: those of :func:`error_answer`, or 500 and the error's own
        message for a domain error with no answer.
    """
    answer = error_answer(exc)
    if answer is None:
        return status.HTTP_500_INTERNAL_SERVER_ERROR, str(exc)
    return answer.status, answer.message


def websocket_error(exc: SearchServiceError) -> tuple[int, int, str]:
    """How a WebSocket ends on a domain error: its close code, and the status and reason of
    :func:`status_and_message` (sent in the error message and repeated as the close reason).

    The close code is 1007 (invalid payload data) for audio that cannot be used, 1008 (policy
    violation) for any other 4xx, 1013 (try again later) for 503 and 1011 (internal error)
    for the rest.

    Args:
        exc: The error.

    Returns:
        ``(close code, status, reason)``.
    """
    code_status, message = status_and_message(exc)
    if isinstance(exc, AudioError):
        code = 1007
    elif code_status < 500:
        code = 1008
    elif code_status == status.HTTP_503_SERVICE_UNAVAILABLE:
        code = 1013
    else:
        code = 1011
    return code, code_status, message


def request_error_answer(request: Request, exc: BaseException) -> ErrorAnswer | None:
    """The answer to a domain error raised by a request, logging the cause of a 5xx (the
    client's answer leaves it out; the operator needs it).

    The Algolia-compatible routes (:mod:`api.routes.algolia`) answer with this status and
    message in Algolia's body shape, ``{"message": ..., "status": ...}``.

    Args:
        request: The request that raised it.
        exc: The error.

    Returns:
        The answer, or None for an error with none (answered as a plain 500).
    """
    answer = error_answer(exc)
    if answer is not None and answer.status >= 500:
        logger.warning(
            "%s answered %d for %s %s: %s",
            type(exc).__name__,
            answer.status,
            request.method,
            request.url.path,
            exc,
        )
    return answer


async def _answer(request: Request, exc: Exception) -> JSONResponse:
    answer = request_error_answer(request, exc)
    if answer is None:  # registered for mapped classes only: this is a wiring bug
        raise exc
    return JSONResponse(
        status_code=answer.status,
        content={"detail": answer.detail},
        headers=dict(answer.headers) or None,
    )


def install_error_handlers(app: FastAPI) -> None:
    """Register the answer to every mapped domain error (:func:`mapped_errors`) with ``app``.

    Args:
        app: The application (:func:`api.app.create_app` calls this once).
    """
    for error in _ANSWERS:
        app.add_exception_handler(error, _answer)
