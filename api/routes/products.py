"""``GET /products/{product_id}``: one product by id."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

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
    return ProductPublic.from_product(engine.get_product(product_id))
