"""``GET /products/{product_id}``: one product by id."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

from api.deps import EngineDep
from api.schemas import ProductPublic

router = APIRouter(prefix="/products", tags=["products"])

_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {
        "description": "No product with that id in the serving snapshot.",
        "content": {"application/json": {"example": {"detail": "no product with id 'X1'"}}},
    }
}


@router.get("/{product_id}", response_model=ProductPublic, responses=_NOT_FOUND)
def read_product(product_id: str, engine: EngineDep) -> ProductPublic:
    """Return every field of one product.

    Raises:
        ProductNotFoundError: The id is unknown (answered 404 naming it).
    """
    product = engine.get_product(product_id)
    return ProductPublic.from_product(product, engine.colours.of(engine.store.doc_of[product.id]))


@router.get("/{product_id}/images/{index}", response_class=FileResponse, responses=_NOT_FOUND)
def read_product_image(product_id: str, index: int, engine: EngineDep) -> FileResponse:
    """Serve one of a product's local image files (remote images are linked directly).

    Raises:
        ProductNotFoundError: The id is unknown (404).
        HTTPException: No image with that index, or the file is not on this machine (404).
    """
    product = engine.get_product(product_id)
    if not 0 <= index < len(product.images):
        raise HTTPException(404, f"product {product_id!r} has no image {index}")
    location = product.images[index]
    if location.startswith(("http://", "https://")) or not Path(location).is_file():
        raise HTTPException(404, f"image {index} of product {product_id!r} is not a local file")
    return FileResponse(location)
