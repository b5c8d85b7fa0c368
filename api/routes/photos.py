"""Photo search: ``POST /search/image`` (a shopper's photo, optional text) and
``GET /products/{id}/similar`` (products that look like this one).

A photo answer with text is recorded as ``GET /search`` answers are
(:func:`api.routes.search.record_answer`): its ``query_id`` lets clicks be attributed, and the
recorded query is the shopper's own text, never a made-up one, so analytics count only what
shoppers typed. A photo without text is recorded with no query: its clicks are attributed, and
query analytics do not count it.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from starlette.concurrency import run_in_threadpool

from api.deps import EngineDep, SettingsDep, serve_variants, visible_product
from api.routes.search import (
    ChannelForm,
    SessionIdForm,
    UserIdForm,
    parse_facets,
    parse_filters,
    record_answer,
)
from api.schemas import SearchResponse
from api.security import SearchKeyDep, merge_filters
from api.uploads import DEFAULT_UPLOAD_MAX_BYTES, decode_upload
from search.errors import InvalidRequestError
from search.types import Availability, Filters, SearchRequest

router = APIRouter(tags=["search"])

_UPLOAD_ERRORS: dict[int | str, dict[str, Any]] = {
    413: {"description": "The photo is larger than the limit (bytes or pixels)."},
    415: {"description": "Not a JPEG, PNG, WebP or HEIC image."},
    422: {"description": "The photo is empty or truncated, or a parameter is invalid."},
}


@router.post(
    "/search/image",
    response_model=SearchResponse,
    summary="Find products that look like a photo",
    responses=_UPLOAD_ERRORS,
)
async def search_by_image(
    http: Request,
    engine: EngineDep,
    settings: SettingsDep,
    key: SearchKeyDep,
    image: Annotated[
        UploadFile,
        File(
            description="The shopper's photo: JPEG, PNG, WebP or HEIC (iPhone), at most "
            f"{DEFAULT_UPLOAD_MAX_BYTES // (1024 * 1024)} MB; EXIF orientation is applied."
        ),
    ],
    q: Annotated[
        str, Form(max_length=1000, description='Optional text: "in black", "sofa"...')
    ] = "",
    k: Annotated[int, Form(ge=1, description="Hits per page.")] = 10,
    page: Annotated[int, Form(ge=1)] = 1,
    brand: Annotated[list[str], Form()] = [],  # noqa: B006
    category: Annotated[list[str], Form()] = [],  # noqa: B006
    attr: Annotated[list[str], Form()] = [],  # noqa: B006
    price_min: Annotated[float | None, Form(ge=0, allow_inf_nan=False)] = None,
    price_max: Annotated[float | None, Form(ge=0, allow_inf_nan=False)] = None,
    availability: Annotated[list[Availability], Form()] = [],  # noqa: B006
    colour: Annotated[str | None, Form(max_length=100)] = None,
    facets: Annotated[str, Form()] = "",
    explain: Annotated[bool, Form()] = False,
    user_id: UserIdForm = None,
    session_id: SessionIdForm = None,
    channel: ChannelForm = None,
) -> SearchResponse:
    """Rank the products whose photos look most like the uploaded one; text and a colour
    narrow and re-rank them ("this, in black").

    Raises:
        UploadError: An unusable photo (answered 413, 415 or 422 by :mod:`api.errors`).
        InvalidRequestError: A parameter is malformed, or the snapshot has no photo vectors.
    """
    if k > settings.max_k:
        raise InvalidRequestError("k", f"must be at most {settings.max_k}, got {k}")
    data = await image.read(DEFAULT_UPLOAD_MAX_BYTES + 1)
    photo = await decode_upload(data, settings)  # pixel limits, a few at a time
    request = SearchRequest(
        text=q if q.strip() else "",
        k=k,
        page=page,
        filters=merge_filters(
            parse_filters(brand, category, attr, price_min, price_max, availability),
            key.filters if key is not None else None,
        ),
        facets=parse_facets(facets, engine.facet_names()),
        explain=explain,
        as_you_type=False,
        colour=colour if colour is None or colour.strip() else None,
        user_id=user_id,
        session_id=session_id,
        channel=channel,
    )
    tuning, assignment = serve_variants(http, engine, user_id, session_id)
    result = await run_in_threadpool(engine.search_image, photo, request, tuning)
    response = SearchResponse.from_result(result, page=page, k=k, variants=assignment.variants)
    response.query_id = record_answer(http, request, result, assignment.variants, without_text=True)
    return response


@router.get(
    "/products/{product_id}/similar",
    response_model=SearchResponse,
    summary="Products that look like this one",
)
async def similar_products(
    product_id: str,
    engine: EngineDep,
    settings: SettingsDep,
    key: SearchKeyDep,
    k: Annotated[int, Query(ge=1)] = 10,
    colour: Annotated[str | None, Query(max_length=100)] = None,
) -> SearchResponse:
    """The products whose main photos are nearest this product's (the product itself left out).

    A key's fixed filters hold for the seed (a product outside them is answered as an unknown
    id) and for the results.

    Raises:
        ProductNotFoundError: unknown id, or one the key's filters leave out (404).
        InvalidRequestError: the product has no readable photo or photo search is off (422).
    """
    if k > settings.max_k:
        raise InvalidRequestError("k", f"must be at most {settings.max_k}, got {k}")
    visible_product(engine, key, product_id)  # before the photo checks: no existence oracle
    request = SearchRequest(
        k=k,
        filters=merge_filters(Filters(), key.filters if key is not None else None),
        colour=colour if colour is None or colour.strip() else None,
    )
    result = await run_in_threadpool(engine.similar, product_id, request)
    return SearchResponse.from_result(result, page=1, k=k)
