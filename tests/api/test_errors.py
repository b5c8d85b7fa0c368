"""Domain errors become answers in one place (``api/errors.py``): each mapped error's status
and body through an application, the JSON body's fields, the WebSocket close, and no route
translating a domain error to an HTTPException on its own."""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import api.routes
from api.algolia.errors import UnknownIndexError
from api.app import create_app
from api.audio import AudioError
from api.errors import (
    STORE_RETRY_AFTER_S,
    InvalidBodyError,
    body_fields,
    error_answer,
    install_error_handlers,
    mapped_errors,
    status_and_message,
    websocket_error,
)
from api.settings import Settings
from api.uploads import UploadError
from search.errors import (
    CatalogueError,
    ConfigConflictError,
    ConfigNotFoundError,
    EventStoreUnavailableError,
    InvalidRequestError,
    ProductNotFoundError,
    SearchServiceError,
    SnapshotError,
)

ROUTES = Path(api.routes.__file__).parent

STORE_DOWN = (
    "the event store cannot be reached right now, so nothing of this request was stored or "
    "erased; retry in 5 s (a retried event batch with the same Idempotency-Key or event ids is "
    "not counted twice)"
)


@dataclass(frozen=True)
class Case:
    """A domain error and the answer clients have always had for it."""

    error: SearchServiceError
    status: int
    body: dict[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{type(self.error).__name__}-{self.status}"


CASES = (
    Case(
        InvalidRequestError("k", "must be at most 100, got 500"),
        422,
        {
            "detail": [
                {
                    "loc": ["query", "k"],
                    "msg": "must be at most 100, got 500",
                    "type": "value_error",
                }
            ]
        },
    ),
    Case(
        InvalidBodyError("rule.id", "must match the path ('r1')"),
        422,
        {
            "detail": [
                {
                    "loc": ["body", "rule.id"],
                    "msg": "must match the path ('r1')",
                    "type": "value_error",
                }
            ]
        },
    ),
    Case(ProductNotFoundError("NOPE"), 404, {"detail": "no product with id 'NOPE'"}),
    Case(
        UnknownIndexError("shop", ("products", "products_price_asc")),
        404,
        {
            "detail": "index 'shop' does not exist; this service answers for products, "
            "products_price_asc (PRODUCTSEARCH_ALGOLIA_INDEX names the index)"
        },
    ),
    Case(ConfigNotFoundError("rule", "r1"), 404, {"detail": "no rule 'r1'"}),
    Case(ConfigNotFoundError("version", 7), 404, {"detail": "no version 7"}),
    Case(
        ConfigConflictError(expected=3, current=5),
        409,
        {"detail": "configuration is at version 5, not 3: reload and retry"},
    ),
    Case(
        SnapshotError("manifest.json: checksum mismatch"),
        409,
        {"detail": "kept the serving snapshot: manifest.json: checksum mismatch"},
    ),
    Case(
        EventStoreUnavailableError("Redis event store: connection refused (10.0.0.7:6379)"),
        503,
        {"detail": STORE_DOWN},
        {"retry-after": "5"},
    ),
    Case(
        UploadError(413, "the photo is 30 MB; at most 10 MB"),
        413,
        {"detail": "the photo is 30 MB; at most 10 MB"},
    ),
    Case(UploadError(415, "not an image"), 415, {"detail": "not an image"}),
    Case(UploadError(422, "truncated image"), 422, {"detail": "truncated image"}),
    Case(
        AudioError(413, "audio is longer than 15 s"), 413, {"detail": "audio is longer than 15 s"}
    ),
    Case(
        AudioError(415, "the upload has no audio stream"),
        415,
        {"detail": "the upload has no audio stream"},
    ),
    Case(AudioError(422, "audio upload is empty"), 422, {"detail": "audio upload is empty"}),
)


def bare_app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    return app


def service_app(tmp_path: Path) -> FastAPI:
    # The whole application (middleware included); its lifespan never runs, so no snapshot.
    return create_app(Settings(index_dir=tmp_path, text_embedder="none", events_db="none"))


def raising(app: FastAPI, error: BaseException) -> TestClient:
    """A client of ``app`` with ``GET /boom`` raising ``error``."""

    def boom() -> None:
        raise error

    app.add_api_route("/boom", boom, methods=["GET"])
    return TestClient(app, raise_server_exceptions=False)


class TestHttpAnswers:
    @pytest.mark.parametrize("build", ["bare", "create_app"])
    @pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
    def test_each_mapped_error_answers_its_status_and_body(
        self, case: Case, build: str, tmp_path: Path
    ) -> None:
        app = bare_app() if build == "bare" else service_app(tmp_path)

        response = raising(app, case.error).get("/boom")

        assert response.status_code == case.status
        assert response.json() == case.body
        for name, value in case.headers.items():
            assert response.headers[name] == value

    def test_every_mapped_class_has_a_case(self) -> None:
        # A class added to api/errors.py without a row above fails here.
        covered = {type(case.error) for case in CASES}

        assert set(mapped_errors()) <= covered

    def test_the_store_retry_after_is_the_one_the_sentence_names(self) -> None:
        answer = error_answer(EventStoreUnavailableError("down"))

        assert answer is not None
        assert answer.headers == {"Retry-After": str(STORE_RETRY_AFTER_S)}
        assert f"retry in {STORE_RETRY_AFTER_S} s" in str(answer.detail)

    def test_the_store_cause_is_logged_not_answered(self, caplog: pytest.LogCaptureFixture) -> None:
        client = raising(bare_app(), EventStoreUnavailableError("connection refused (10.0.0.7)"))

        with caplog.at_level("WARNING", logger="productsearch.api"):
            response = client.get("/boom")

        assert "10.0.0.7" not in response.text
        assert "GET /boom" in caplog.text and "connection refused (10.0.0.7)" in caplog.text

    def test_an_unmapped_domain_error_stays_a_plain_500(self) -> None:
        response = raising(bare_app(), CatalogueError("/srv/secret/catalogue.csv unreadable")).get(
            "/boom"
        )

        assert response.status_code == 500
        assert "secret" not in response.text
        assert error_answer(CatalogueError("x")) is None

    def test_create_app_installs_every_handler(self, tmp_path: Path) -> None:
        app = service_app(tmp_path)

        assert set(mapped_errors()) <= set(app.exception_handlers)


class TestBodyFields:
    @pytest.fixture()
    def client(self) -> Iterator[TestClient]:
        app = bare_app()

        @app.post("/weights")
        def put_weights(body: dict[str, Any]) -> dict[str, Any]:
            with body_fields():
                if "nope" in body:
                    raise InvalidRequestError("weights.nope", "unknown key; valid: bm25, vector")
                if "version" in body:
                    raise ConfigConflictError(expected=body["version"], current=9)
            return body

        @app.get("/search")
        def search(k: int = 10) -> dict[str, int]:
            raise InvalidRequestError("k", f"must be at most 100, got {k}")

        with TestClient(app) as client:
            yield client

    def test_an_invalid_field_inside_the_block_is_a_body_field(self, client: TestClient) -> None:
        response = client.post("/weights", json={"nope": 1})

        assert response.status_code == 422
        assert response.json()["detail"] == [
            {
                "loc": ["body", "weights.nope"],
                "msg": "unknown key; valid: bm25, vector",
                "type": "value_error",
            }
        ]

    def test_outside_the_block_it_is_a_query_field(self, client: TestClient) -> None:
        response = client.get("/search", params={"k": 500})

        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["query", "k"]

    def test_other_errors_pass_through_unchanged(self, client: TestClient) -> None:
        response = client.post("/weights", json={"version": 3})

        assert response.status_code == 409
        assert response.json() == {
            "detail": "configuration is at version 9, not 3: reload and retry"
        }

    def test_the_original_error_is_the_cause(self) -> None:
        original = InvalidRequestError("rule.colour", "unknown colour 'blurple'")

        with pytest.raises(InvalidBodyError) as raised, body_fields():
            raise original

        assert raised.value.__cause__ is original
        assert (raised.value.field, raised.value.message) == (original.field, original.message)


class TestWebSocketError:
    @pytest.mark.parametrize(
        ("error", "expected"),
        [
            pytest.param(
                InvalidRequestError("lang", "scripted understands en, not 'pl'"),
                (1008, 422, "lang: scripted understands en, not 'pl'"),
                id="bad-parameter",
            ),
            pytest.param(
                AudioError(422, "PCM chunk has 3 bytes; 16-bit samples need an even count"),
                (1007, 422, "PCM chunk has 3 bytes; 16-bit samples need an even count"),
                id="bad-audio",
            ),
            pytest.param(
                ProductNotFoundError("NOPE"),
                (1008, 404, "no product with id 'NOPE'"),
                id="other-4xx",
            ),
            pytest.param(EventStoreUnavailableError("down"), (1013, 503, STORE_DOWN), id="503"),
            pytest.param(
                CatalogueError("no catalogue"), (1011, 500, "no catalogue"), id="unmapped"
            ),
        ],
    )
    def test_close_code_status_and_reason(
        self, error: SearchServiceError, expected: tuple[int, int, str]
    ) -> None:
        assert websocket_error(error) == expected

    @pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
    def test_status_matches_the_http_answer(self, case: Case) -> None:
        status, message = status_and_message(case.error)

        assert status == case.status
        assert message and "\n" not in message


# --- no route translates a domain error itself ----------------------------------------------


def _names(node: ast.expr | None) -> set[str]:
    if node is None:
        return set()
    if isinstance(node, ast.Tuple):
        return {name for element in node.elts for name in _names(element)}
    if isinstance(node, ast.Name):
        return {node.id}
    if isinstance(node, ast.Attribute):
        return {node.attr}
    return set()


def _raises_http_exception(body: list[ast.stmt], makers: set[str]) -> bool:
    """``body`` is one ``raise`` of ``HTTPException(...)`` or of a call to one of ``makers``."""
    if len(body) != 1 or not isinstance(body[0], ast.Raise):
        return False
    exc = body[0].exc
    return isinstance(exc, ast.Call) and bool(_names(exc.func) & {"HTTPException", *makers})


def _subclass_names(classes: tuple[type, ...]) -> set[str]:
    names: set[str] = set()
    todo = list(classes)
    while todo:
        cls = todo.pop()
        names.add(cls.__name__)
        todo.extend(cls.__subclasses__())
    return names


def translations(source: str, mapped: set[str]) -> list[str]:
    """Each ``except X: raise HTTPException(...)`` in ``source`` with X a mapped error (also
    through a helper of the module that returns an HTTPException)."""
    tree = ast.parse(source)
    makers = {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and "HTTPException" in _names(node.returns)
    }
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.ExceptHandler)
            and node.type is not None
            and _names(node.type) & mapped
            and _raises_http_exception(node.body, makers)
        ):
            found.append(f"line {node.lineno}: except {ast.unparse(node.type)}")
    return found


MAPPED_NAMES = _subclass_names(mapped_errors())


class TestRoutesLetDomainErrorsThrough:
    def test_the_check_finds_a_translation(self) -> None:
        # The shapes the admin, photo and voice routes had: the check must catch them, or it
        # proves nothing.
        source = (
            "try:\n    store.put()\n"
            "except search.errors.ConfigConflictError as exc:\n"
            "    raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc\n"
            "except (KeyError, UploadError) as exc:\n"
            "    raise fastapi.HTTPException(exc.status_code, exc.message)\n"
            "except KeyError:\n    raise HTTPException(422, 'missing')\n"
            "def audio_http_error(exc: AudioError) -> HTTPException:\n    return HTTPException()\n"
            "try:\n    decode()\n"
            "except AudioError as exc:\n    raise audio_http_error(exc) from exc\n"
        )

        assert translations(source, MAPPED_NAMES) == [
            "line 3: except search.errors.ConfigConflictError",
            "line 5: except (KeyError, UploadError)",
            "line 13: except AudioError",
        ]

    @pytest.mark.parametrize("module", sorted(ROUTES.glob("*.py")), ids=lambda p: p.name)
    def test_no_route_module_translates_a_mapped_error(self, module: Path) -> None:
        assert translations(module.read_text(), MAPPED_NAMES) == []
