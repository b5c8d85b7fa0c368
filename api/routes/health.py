"""``GET /health`` and ``GET /ready``: what is served, and whether requests can be answered."""

from __future__ import annotations

from fastapi import APIRouter, Request, status
from fastapi.responses import JSONResponse

from api.deps import EngineDep
from api.schemas import HealthResponse, ReadyResponse

router = APIRouter(tags=["health"])


@router.get("/health", response_model=HealthResponse)
def health(engine: EngineDep) -> HealthResponse:
    """Describe the serving snapshot: id, format version, build time, counts and models."""
    manifest = engine.manifest
    return HealthResponse(
        snapshot_id=manifest.snapshot_id,
        format_version=manifest.format_version,
        created_at=manifest.created_at,
        catalogue_checksum=manifest.catalogue_checksum,
        products=len(engine),
        counts=dict(manifest.counts),
        models=dict(manifest.models),
        retrievers=list(engine.retrievers),
    )


@router.get(
    "/ready",
    response_model=ReadyResponse,
    responses={503: {"description": "No snapshot loaded yet."}},
)
def ready(request: Request) -> ReadyResponse | JSONResponse:
    """Answer 200 once a snapshot is loaded (a load balancer's readiness probe), else 503."""
    if getattr(request.app.state, "engine", None) is None:
        return JSONResponse(
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            content={"detail": "no index snapshot loaded"},
        )
    return ReadyResponse()
