"""Live catalogue (admin key): upsert and delete products without a full rebuild, and swap to a
snapshot rebuilt elsewhere, with no downtime.

Changes are applied as a delta over the serving snapshot (``indexer.delta``: only changed
products are analysed, embedded and photo-read), published atomically into the same folder, then
opened and put into service by :func:`api.app.serve_engine`; requests in flight finish on the
engine they started with. One change runs at a time.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from api.deps import EngineDep, SettingsDep
from api.security import AdminKeyDep
from search.engine import EngineConfig, SearchEngine
from search.errors import SnapshotError

router = APIRouter(prefix="/admin", tags=["admin"])

_LOCK = asyncio.Lock()

#: Most upserts plus deletes in one request.
MAX_CHANGES = 10_000


@router.post("/catalogue/changes", summary="Upsert and delete products (live, no full rebuild)")
async def change_catalogue(
    request: Request,
    engine: EngineDep,
    settings: SettingsDep,
    _key: AdminKeyDep,
    upserts: Annotated[
        list[dict[str, Any]],
        Body(description="Products in the JSON Lines catalogue shape (id, title, ...)."),
    ] = [],  # noqa: B006
    deletes: Annotated[list[str], Body(description="Ids of products to remove.")] = [],  # noqa: B006
) -> dict[str, Any]:
    """Apply product changes and serve them within seconds.

    A bad product is listed in ``rejected`` with its errors and the good ones are applied;
    deleting an unknown id is listed in ``unknown_deletes``. 422 when nothing valid remains.

    Raises:
        HTTPException: 422 nothing to apply, 413 too many changes, 409 the service serves no
            snapshot folder (an engine given in code).
    """
    from indexer.formats.fields import build_product

    if len(upserts) + len(deletes) > MAX_CHANGES:
        raise HTTPException(413, f"at most {MAX_CHANGES} upserts and deletes per request")
    products = []
    rejected = []
    for number, data in enumerate(upserts, start=1):
        outcome = build_product(number, data, "")
        if outcome.product is None:
            rejected.append(
                {
                    "index": number - 1,
                    "id": outcome.product_id,
                    "errors": [{"field": e.field, "reason": e.reason} for e in outcome.errors],
                }
            )
        else:
            products.append(outcome.product)
    if not products and not deletes:
        raise HTTPException(422, {"message": "no valid change to apply", "rejected": rejected})
    if settings.index_dir is None or engine.snapshot_dir is None:
        raise HTTPException(409, "the service was given an engine, not a snapshot folder")
    started = time.perf_counter()
    async with _LOCK:
        result = await run_in_threadpool(_apply, request, engine, products, deletes, settings.max_k)
    return {
        "snapshot_id": result.manifest.snapshot_id,
        "inserted": list(result.inserted),
        "replaced": list(result.replaced),
        "deleted": list(result.deleted),
        "unknown_deletes": list(result.unknown_deletes),
        "rejected": rejected,
        "embedded": result.embedded,
        "took_ms": round((time.perf_counter() - started) * 1000.0, 1),
    }


def _apply(
    request: Request,
    engine: SearchEngine,
    products: list[Any],
    deletes: list[str],
    max_k: int,
) -> Any:
    from api.app import serve_engine
    from indexer.delta import apply_changes

    assert engine.snapshot_dir is not None
    result = apply_changes(
        engine.snapshot_dir,
        engine.snapshot_dir,
        upserts=products,
        deletes=deletes,
        embedder=engine.embedder,
        verify=False,
    )
    fresh = SearchEngine.open(
        engine.snapshot_dir,
        embedder=engine.embedder,
        use_semantic=engine.embedder is not None,
        config=EngineConfig(max_k=max_k),
        verify=False,
        image_encoder=engine.image_embedder,
    )
    serve_engine(request.app, fresh)
    return result


@router.post("/snapshot/reload", summary="Serve the snapshot folder again (after a rebuild)")
async def reload_snapshot(
    request: Request, settings: SettingsDep, _key: AdminKeyDep
) -> dict[str, Any]:
    """Open the configured snapshot folder (e.g. rebuilt by ``productsearch index --force``),
    check it, and swap to it. A corrupt or incompatible snapshot is refused with its reason and
    the current one keeps serving.

    Raises:
        HTTPException: 409 the new snapshot cannot be served (the message says why).
    """
    from api.app import open_engine, serve_engine

    async with _LOCK:
        try:
            fresh = await run_in_threadpool(open_engine, settings)
        except SnapshotError as exc:
            raise HTTPException(409, f"kept the serving snapshot: {exc}") from exc
        await run_in_threadpool(serve_engine, request.app, fresh)
    manifest = fresh.manifest
    return {"snapshot_id": manifest.snapshot_id, "products": len(fresh)}
