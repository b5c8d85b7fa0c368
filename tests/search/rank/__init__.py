"""Tests of the ranking stages (search/rank/), and a small tool catalogue for personalisation."""

from __future__ import annotations

from search.types import Product

PRODUCTS = (
    Product(
        id="D1",
        title="Dewalt cordless drill",
        brand="DeWalt",
        price=199.0,
        colours=("yellow",),
        categories=(("Tools", "Drills"),),
    ),
    Product(
        id="D2",
        title="Makita cordless drill",
        brand="Makita",
        price=189.0,
        colours=("teal",),
        categories=(("Tools", "Drills"),),
    ),
    Product(
        id="D3",
        title="Bosch cordless drill",
        brand="Bosch",
        price=179.0,
        colours=("blue",),
        categories=(("Tools", "Drills"),),
    ),
    Product(
        id="D4",
        title="Makita drill bit set",
        brand="Makita",
        price=29.0,
        categories=(("Tools", "Accessories"),),
    ),
    Product(
        id="C1", title="Cheap hammer", brand="Acme", price=5.0, categories=(("Tools", "Hand"),)
    ),
    Product(
        id="C2",
        title="Budget screwdriver",
        brand="Acme",
        price=4.0,
        categories=(("Tools", "Hand"),),
    ),
    Product(
        id="L1", title="Luxury tool chest", brand="Snap", price=2500.0, categories=(("Storage",),)
    ),
    Product(
        id="L2", title="Premium work bench", brand="Snap", price=1900.0, categories=(("Storage",),)
    ),
    Product(
        id="M1",
        title="Makita impact driver",
        brand="Makita",
        price=210.0,
        categories=(("Tools", "Drivers"),),
    ),
    Product(
        id="M2",
        title="Makita angle grinder",
        brand="Makita",
        price=150.0,
        categories=(("Tools", "Grinders"),),
    ),
)
DOC = {p.id: i for i, p in enumerate(PRODUCTS)}
