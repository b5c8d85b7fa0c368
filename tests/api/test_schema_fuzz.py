"""Property-based fuzzing of the service against its own OpenAPI schema (schemathesis).

Every operation gets a bounded number of generated requests, valid ones (positive) and ones
that break the schema (negative); no answer may be a server error. A 5xx the operation documents
in its schema (503 "voice search is not configured") is the designed answer, not a crash, and
is allowed.

The operations are driven with Hypothesis directly (``APIOperation.as_strategy``) rather than
``schemathesis.pytest.from_fixture``, whose lazy loader breaks on pytest 9 (it reads the private
``Function._nodeid``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402

from api.app import create_app  # noqa: E402
from api.settings import Settings  # noqa: E402
from tests.api import PRODUCTS, build_snapshot  # noqa: E402

#: Generated requests per operation and mode: about 30 operations finish in well under a minute.
EXAMPLES = 20


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The application's own schema, served in-process by a started application."""
    work = tmp_path_factory.mktemp("schema-fuzz")
    app = create_app(
        Settings(
            index_dir=build_snapshot(work),
            text_embedder="none",
            events_db=str(work / "e.sqlite3"),
        )
    )
    yield schemathesis.openapi.from_asgi("/openapi.json", app)
    from schemathesis.python.asgi import shutdown_lifespans

    shutdown_lifespans()


def documented_statuses(operation: Any) -> set[str]:
    """Status codes an operation's schema lists."""
    return {str(code) for code in operation.definition.raw.get("responses", {})}


def server_errors(operation: Any, mode: Any, **fixed: Any) -> list[str]:
    """Run ``EXAMPLES`` generated requests against one operation; describe each undocumented 5xx.

    ``fixed`` holds parts of the request not to generate (``path_parameters`` with a real id).
    """
    found: list[str] = []
    allowed = documented_statuses(operation)

    @given(case=operation.as_strategy(generation_mode=mode, **fixed))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        response = case.call()
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
    assert "2 passed" in child.stdout


@pytest.mark.skipif(not _CHILD, reason="runs in a fresh interpreter (see above)")
@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_no_server_errors(api_schema: Any, mode: str) -> None:
    """No generated request, however malformed, gets an undocumented 5xx."""
    from schemathesis import GenerationMode

    errors: list[str] = []
    operations = 0
    for result in api_schema.get_all_operations():
        operation = result.ok()
        operations += 1
        errors.extend(server_errors(operation, GenerationMode(mode)))
        if mode == "positive" and "{product_id}" in operation.path:
            # Generated ids are never in the catalogue: also fuzz the rest of a real product's
            # requests (image index, query parameters).
            ids = {"product_id": PRODUCTS[0].id}
            errors.extend(server_errors(operation, GenerationMode(mode), path_parameters=ids))
    assert operations >= 10  # the schema was read and every router is in it
    assert not errors, "\n".join(errors)
