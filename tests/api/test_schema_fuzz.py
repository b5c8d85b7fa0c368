"""Property-based fuzzing of the service against its own OpenAPI schema (schemathesis).

Every operation of the schema, the ``/admin`` ones included (the requests carry an admin key,
which reaches every route), gets a bounded number of generated requests, valid ones (positive)
and ones that break the schema (negative); no answer may be a server error. A 5xx the operation documents
in its schema (503 "voice search is not configured") is the designed answer, not a crash, and
is allowed.

The operations are driven with Hypothesis directly (``APIOperation.as_strategy``) rather than
``schemathesis.pytest.from_fixture``, whose lazy loader breaks on pytest 9 (it reads the private
``Function._nodeid``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402

from api.app import create_app  # noqa: E402
from api.settings import Settings  # noqa: E402
from tests.api import PRODUCTS, build_snapshot  # noqa: E402

#: Generated requests per operation and mode: the ~45 operations, admin ones included, take
#: about two minutes on a busy 2-core machine.
EXAMPLES = 20

#: Fewer for the operations that rebuild and swap the snapshot (a child process each time).
SLOW_EXAMPLES = {"/admin/catalogue/changes": 6, "/admin/snapshot/reload": 3}


@dataclass(frozen=True)
class FuzzTarget:
    """The schema to fuzz and the admin token every generated request carries."""

    schema: Any
    headers: dict[str, str]
    app: Any
    storefront_headers: dict[str, str]

    def headers_for(self, path: str) -> dict[str, str]:
        """The admin key, or a search key for the Algolia-compatible routes (which refuse
        admin keys: fuzzed with the admin key they would only answer 403)."""
        return self.storefront_headers if path.startswith("/1/") else self.headers


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzTarget]:
    """The application's own schema, served in-process by a started application, and an admin
    key (limits high enough for every generated request) so the ``/admin`` routes are reached
    and not all answered 401."""
    work = tmp_path_factory.mktemp("schema-fuzz")
    app = create_app(
        Settings(
            index_dir=build_snapshot(work),
            text_embedder="none",
            events_db=str(work / "e.sqlite3"),
        )
    )
    _, token = app.state.security.keys.create(
        "fuzz", "admin", rate_per_minute=1_000_000, burst=100_000
    )
    _, storefront = app.state.security.keys.create(
        "fuzz-storefront", "search", rate_per_minute=1_000_000, burst=100_000
    )
    yield FuzzTarget(
        schema=schemathesis.openapi.from_asgi("/openapi.json", app),
        headers={"Authorization": f"Bearer {token}"},
        app=app,
        storefront_headers={"X-Algolia-API-Key": storefront},
    )
    from schemathesis.python.asgi import shutdown_lifespans

    shutdown_lifespans()


def documented_statuses(operation: Any) -> set[str]:
    """Status codes an operation's schema lists."""
    return {str(code) for code in operation.definition.raw.get("responses", {})}


def server_errors(operation: Any, mode: Any, headers: dict[str, str], **fixed: Any) -> list[str]:
    """Run ``EXAMPLES`` generated requests against one operation; describe each undocumented 5xx.

    ``headers`` (the admin key) are sent with every request, over any generated ones.

    ``fixed`` holds parts of the request not to generate (``path_parameters`` with a real id).
    """
    found: list[str] = []
    allowed = documented_statuses(operation)

    @given(case=operation.as_strategy(generation_mode=mode, **fixed))
    @settings(
        max_examples=SLOW_EXAMPLES.get(operation.path, EXAMPLES),
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        try:
            response = case.call(headers=headers)
        except Exception as exc:
            found.append(
                f"{type(exc).__name__}: {exc} for {case.method} {case.formatted_path} "
                f"query={case.query!r} body={case.body!r}"[:600]
            )
            return
        if response.status_code >= 500 and str(response.status_code) not in allowed:
            found.append(
                f"{response.status_code} for {case.method} {case.formatted_path} "
                f"query={case.query!r} headers={case.headers!r} body={case.body!r}: "
                f"{response.text[:300]}"
            )

    try:
        run()
    except Unsatisfiable:
        # Negative mode on an operation without inputs to break (``GET /health``).
        assert mode == "negative", f"no valid request could be generated for {operation.label}"
    return found


#: Set in the child interpreter that runs the fuzzing itself.
_CHILD = os.environ.get("PRODUCTSEARCH_FUZZ_CHILD") == "1"


@pytest.mark.skipif(_CHILD, reason="this is the child run")
def test_fuzzing_in_a_fresh_interpreter() -> None:
    """The fuzzing runs in its own interpreter: on CPython 3.11, Hypothesis raising the recursion
    limit while earlier tests' background threads still compile code can fail with
    "SystemError: AST constructor recursion depth mismatch" (a CPython bug, not ours)."""
    child = subprocess.run(
        [sys.executable, "-m", "pytest", __file__, "-q", "-p", "no:cacheprovider"],
        env={**os.environ, "PRODUCTSEARCH_FUZZ_CHILD": "1"},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert child.returncode == 0, child.stdout[-4000:] + child.stderr[-2000:]
    assert "3 passed" in child.stdout


#: Operations fuzzed last: each valid request rebuilds and swaps the snapshot, and a generated
#: delete could remove the product the ``{product_id}`` operations are given.
_LAST = ("/admin/catalogue/changes", "/admin/snapshot/reload")


@pytest.mark.skipif(not _CHILD, reason="runs in a fresh interpreter (see above)")
@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_no_server_errors(api_schema: FuzzTarget, mode: str) -> None:
    """No generated request, however malformed, gets an undocumented 5xx, on any route."""
    from schemathesis import GenerationMode

    errors: list[str] = []
    operations = [result.ok() for result in api_schema.schema.get_all_operations()]
    operations.sort(key=lambda operation: operation.path in _LAST)
    for operation in operations:
        headers = api_schema.headers_for(operation.path)
        errors.extend(server_errors(operation, GenerationMode(mode), headers))
        if mode == "positive" and "{product_id}" in operation.path:
            # Generated ids are never in the catalogue: also fuzz the rest of a real product's
            # requests (image index, query parameters).
            ids = {"product_id": PRODUCTS[0].id}
            errors.extend(
                server_errors(
                    operation, GenerationMode(mode), api_schema.headers, path_parameters=ids
                )
            )
    paths = {operation.path for operation in operations}
    # The schema was read and every router is in it, the admin ones included.
    assert {"/search", "/admin/rules", "/admin/versions", "/admin/audit"} <= paths
    assert not errors, "\n".join(errors)


def integer_parameters(schema: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """``(method, path, parameter)`` for every integer path or query parameter."""
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                node = parameter.get("schema", {})
                if any(b.get("type") == "integer" for b in node.get("anyOf", [node])):
                    yield method, path, parameter


@pytest.mark.skipif(not _CHILD, reason="runs in a fresh interpreter (see above)")
def test_huge_integers_in_every_parameter(api_schema: FuzzTarget) -> None:
    """Every integer parameter of every route, at 2**63 and 2**64 (past SQLite's and C's
    64 bits): a 4xx, never a 5xx. Random generation rarely reaches these values."""
    from fastapi.testclient import TestClient

    failures: list[str] = []
    tried = 0
    with TestClient(api_schema.app, raise_server_exceptions=False) as client:
        for method, path, parameter in integer_parameters(api_schema.app.openapi()):
            for value in (2**63, 2**64):
                url = re.sub(r"\{product_id\}", PRODUCTS[0].id, path)
                params = {}
                if parameter["in"] == "path":
                    url = url.replace("{" + parameter["name"] + "}", str(value))
                else:
                    params[parameter["name"]] = str(value)
                url = re.sub(r"\{[^}]+\}", "x", url)
                response = client.request(method, url, params=params, headers=api_schema.headers)
                tried += 1
                if response.status_code >= 500:
                    failures.append(f"{response.status_code} {method} {url} {params}")
    assert tried >= 10
    assert not failures, "\n".join(failures)
