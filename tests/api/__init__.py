"""Tests of the HTTP API, with a tiny catalogue built into a snapshot once per module."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from search.types import Availability, Product

PRODUCTS: tuple[Product, ...] = (
    Product(
        id="SOFA-1",
        title="Oslo three-seat sofa",
        description="A deep grey fabric sofa for three.",
        brand="Nordhem",
        categories=(("Furniture", "Sofas"),),
        attributes={"material": ("fabric",), "seats": ("3",)},
        colours=("grey",),
        price=799.0,
        currency="EUR",
        images=("https://shop.example/img/sofa-1.jpg",),
        url="https://shop.example/p/SOFA-1",
        gtin="4006381333931",
        lang="en",
    ),
    Product(
        id="SOFA-2",
        title="Bergen leather sofa",
        description="Brown leather sofa with oak legs.",
        brand="Nordhem",
        categories=(("Furniture", "Sofas"),),
        attributes={"material": ("leather",), "seats": ("3",)},
        colours=("brown",),
        price=1299.0,
        currency="EUR",
        sale_price=999.0,
    ),
    Product(
        id="SOFA-3",
        title="Compact two-seat sofa bed",
        description="Folds out into a bed.",
        brand="Casa",
        categories=(("Furniture", "Sofas"), ("Bedroom", "Beds")),
        attributes={"material": ("fabric",), "seats": ("2",)},
        colours=("blue",),
        price=499.0,
        currency="EUR",
        availability=Availability.OUT_OF_STOCK,
    ),
    Product(
        id="CHAIR-1",
        title="Oak dining chair",
        description="Solid oak chair.",
        brand="Casa",
        categories=(("Furniture", "Chairs"),),
        attributes={"material": ("oak",)},
        price=89.0,
        currency="EUR",
    ),
    Product(
        id="CHAIR-2",
        title="Walnut dining chair",
        description="Walnut chair with a curved back.",
        brand="Woodly",
        categories=(("Furniture", "Chairs"),),
        attributes={"material": ("walnut",)},
        price=129.0,
        currency="EUR",
        availability=Availability.PREORDER,
    ),
    Product(
        id="TABLE-1",
        title="Oak dining table",
        description="Extendable oak table for six.",
        brand="Woodly",
        categories=(("Furniture", "Tables"),),
        attributes={"material": ("oak",)},
        price=649.0,
        currency="EUR",
    ),
    Product(
        id="CUSHION-1",
        title="Linen cushion cover",
        description="Natural linen, 50 x 50 cm.",
        brand="Casa",
        categories=(("Home", "Textiles"),),
        attributes={"material": ("linen",)},
        colours=("beige",),
        price=19.5,
        currency="EUR",
    ),
    Product(
        id="LAMP-1",
        title="Desk lamp with brass finish",
        description="Adjustable arm.",
        categories=(("Home", "Lighting"),),
        attributes={"material": ("brass",)},
        availability=Availability.BACKORDER,
    ),
)
"""The test catalogue: sofas, chairs, a table and home goods, with every Product field used."""

PRODUCTS_BY_ID: Mapping[str, Product] = {product.id: product for product in PRODUCTS}


def write_catalogue(path: Path, rows: Iterable[Mapping[str, Any]] | None = None) -> Path:
    """Write catalogue rows as JSON Lines (the :data:`PRODUCTS` when ``rows`` is None)."""
    if rows is None:
        rows = [product.to_dict() for product in PRODUCTS]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def build_snapshot(work_dir: Path) -> Path:
    """Build a snapshot of :data:`PRODUCTS` without embeddings (fast) and return its folder."""
    from indexer.build import BuildConfig, build_from_catalogue

    catalogue = write_catalogue(work_dir / "catalogue.jsonl")
    result = build_from_catalogue(
        catalogue, work_dir / "snapshot", fmt="jsonl", config=BuildConfig(embedder="none")
    )
    return result.snapshot_dir
