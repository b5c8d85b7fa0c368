"""``GET /health`` and ``GET /ready``: what is served, and whether requests can be answered."""

from __future__ import annotations

from fastapi import APIRouter, Request, status
from fastapi.responses import JSONResponse

from api.deps import EngineDep
from api.schemas import HealthResponse, ReadyResponse

router = APIRouter(tags=["health"])


@router.get("/health", response_model=HealthResponse)
def health(request: Request, engine: EngineDep) -> HealthResponse:
    """Describe the serving snapshot: id, format version, build time, counts and models.

    ``degraded`` is true, with the reason in ``warning``, while the configured snapshot cannot
    be served and the last good one is served instead.
    """
    manifest = engine.manifest
    warning: str | None = getattr(request.app.state, "snapshot_warning", None)
    return HealthResponse(
        snapshot_id=manifest.snapshot_id,
        format_version=manifest.format_version,
        created_at=manifest.created_at,
        catalogue_checksum=manifest.catalogue_checksum,
        products=len(engine),
        counts=dict(manifest.counts),
        models=dict(manifest.models),
        retrievers=list(engine.retrievers),
        degraded=warning is not None,
        warning=warning,
    )


@router.get(
    "/ready",
    response_model=ReadyResponse,
    responses={503: {"description": "No snapshot loaded yet, or the engine is still warming up."}},
)
def ready(request: Request) -> ReadyResponse | JSONResponse:
    """Answer 200 once a snapshot is loaded and warm (its first real query answered: models
    loaded and run once, suggester built), else 503: a load balancer's readiness probe."""
    state = request.app.state
    if getattr(state, "engine", None) is None:
        return _not_ready("no index snapshot loaded")
    if not getattr(state, "ready", False):
        return _not_ready("warming up: the first query has not been answered yet")
    return ReadyResponse()


def _not_ready(detail: str) -> JSONResponse:
    return JSONResponse(
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        content={"detail": detail},
        headers={"Retry-After": "1"},
    )
