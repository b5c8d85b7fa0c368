"""Public JSON shapes of the HTTP API (pydantic lives here and nowhere in the core)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal
from urllib.parse import quote

from pydantic import BaseModel, Field

from search.types import (
    Availability,
    ColourSource,
    Explanation,
    FacetValue,
    Product,
    ProductColour,
    ResultHit,
    SearchResult,
)

CATEGORY_SEPARATOR = " > "
"""How a category path is written in the API: ``"Furniture > Sofas"``."""


def format_category(path: tuple[str, ...]) -> str:
    """Write a category path the way the API reads and writes it.

    Args:
        path: The path from the root down, e.g. ``("Furniture", "Sofas")``.

    Returns:
        ``"Furniture > Sofas"``.
    """
    return CATEGORY_SEPARATOR.join(path)


class PricePublic(BaseModel):
    """An amount of money."""

    amount: float
    currency: str | None = None


class ColourPublic(BaseModel):
    """One colour of a product, read from its text or its main photo."""

    name: str = Field(description='Colour name ("navy").')
    family: str = Field(description='Colour family ("blue"), as the colour facet counts it.')
    hex: str = Field(description="Swatch, #rrggbb (measured for photo colours).")
    source: ColourSource = Field(description="text: the PIM colour, title or description; photo.")
    share: float = Field(description="Share of the product in this colour (0..1).")
    confidence: float = Field(description="How sure the indexer is (0..1).")

    @classmethod
    def from_colour(cls, colour: ProductColour) -> ColourPublic:
        """Convert a core :class:`~search.types.ProductColour`."""
        return cls(
            name=colour.name,
            family=colour.family,
            hex=colour.hex,
            source=colour.source,
            share=round(colour.share, 4),
            confidence=round(colour.confidence, 4),
        )


class ProductPublic(BaseModel):
    """Every field of one catalogue product."""

    id: str
    title: str
    description: str
    brand: str | None
    categories: list[str] = Field(description='Category paths written "Furniture > Sofas".')
    category_paths: list[list[str]] = Field(description="Category paths as lists, root first.")
    attributes: dict[str, list[str]]
    catalogue_colours: list[str] = Field(description="Colour names as the catalogue gave them.")
    colours: list[ColourPublic] = Field(
        description="Colours read from the product's text and main photo, main one first."
    )
    price: PricePublic | None = Field(description="Regular price, or null when unknown.")
    sale_price: PricePublic | None = Field(description="Reduced price, or null.")
    effective_price: PricePublic | None = Field(
        description="What a shopper pays now: the sale price when set, else the price."
    )
    availability: Availability
    images: list[str] = Field(
        description="Image URLs: remote images as given, local files served under /products/{id}/images/{n}."
    )
    url: str | None
    gtin: str | None
    lang: str | None

    @classmethod
    def from_product(
        cls, product: Product, colours: tuple[ProductColour, ...] = ()
    ) -> ProductPublic:
        """Convert a core :class:`~search.types.Product`.

        Args:
            product: The product to publish.
            colours: Its colours from the snapshot's colour index, main first.

        Returns:
            Its public form.
        """
        return cls(
            id=product.id,
            title=product.title,
            description=product.description,
            brand=product.brand,
            categories=[format_category(path) for path in product.categories],
            category_paths=[list(path) for path in product.categories],
            attributes={name: list(values) for name, values in product.attributes.items()},
            catalogue_colours=list(product.colours),
            colours=[ColourPublic.from_colour(c) for c in colours],
            price=_price(product.price, product.currency),
            sale_price=_price(product.sale_price, product.currency),
            effective_price=_price(product.effective_price, product.currency),
            availability=product.availability,
            images=[image_url(product, i) for i in range(len(product.images))],
            url=product.url,
            gtin=product.gtin,
            lang=product.lang,
        )


def image_url(product: Product, index: int) -> str:
    """A URL clients can load: http(s) images as they are, local files through the service."""
    location = product.images[index]
    if location.startswith(("http://", "https://")):
        return location
    return f"/products/{quote(product.id, safe='')}/images/{index}"


def _price(amount: float | None, currency: str | None) -> PricePublic | None:
    return None if amount is None else PricePublic(amount=amount, currency=currency)


class RetrieverTracePublic(BaseModel):
    """How one retriever ranked a hit."""

    retriever: str
    rank: int = Field(description="1-based rank in that retriever's run.")
    score: float
    weight: float


class AdjustmentPublic(BaseModel):
    """What one re-ranking stage did to a hit."""

    stage: str
    description: str


class ExplanationPublic(BaseModel):
    """Why a hit ranks where it does."""

    retrievers: list[RetrieverTracePublic]
    fused_score: float
    adjustments: list[AdjustmentPublic]
    matched_terms: dict[str, list[str]] = Field(
        description="Query term -> the catalogue terms that matched it."
    )

    @classmethod
    def from_explanation(cls, explanation: Explanation) -> ExplanationPublic:
        """Convert a core :class:`~search.types.Explanation`.

        Args:
            explanation: The pipeline's explanation of one hit.

        Returns:
            Its public form.
        """
        return cls(
            retrievers=[
                RetrieverTracePublic(
                    retriever=trace.retriever,
                    rank=trace.rank,
                    score=trace.score,
                    weight=trace.weight,
                )
                for trace in explanation.retrievers
            ],
            fused_score=explanation.fused_score,
            adjustments=[
                AdjustmentPublic(stage=stage, description=description)
                for stage, description in explanation.adjustments
            ],
            matched_terms={term: list(terms) for term, terms in explanation.matched_terms.items()},
        )


class SearchHitPublic(BaseModel):
    """One result: the fields a result list shows, flat."""

    id: str
    score: float
    title: str
    brand: str | None
    price: float | None = Field(description="What a shopper pays now (the sale price when set).")
    currency: str | None
    image: str | None = Field(description="The first image, or null.")
    url: str | None
    availability: Availability
    categories: list[str] = Field(description='Category paths written "Furniture > Sofas".')
    colours: list[ColourPublic] = Field(description="The product's colours, main one first.")
    explanation: ExplanationPublic | None = Field(
        default=None, description="Present when the request set explain=true."
    )

    @classmethod
    def from_hit(cls, hit: ResultHit) -> SearchHitPublic:
        """Convert a core :class:`~search.types.ResultHit`.

        Args:
            hit: One hit of a result page.

        Returns:
            Its public form.
        """
        product = hit.product
        return cls(
            id=product.id,
            score=hit.score,
            title=product.title,
            brand=product.brand,
            price=product.effective_price,
            currency=product.currency,
            image=image_url(product, 0) if product.images else None,
            url=product.url,
            availability=product.availability,
            categories=[format_category(path) for path in product.categories],
            colours=[ColourPublic.from_colour(c) for c in hit.colours],
            explanation=(
                ExplanationPublic.from_explanation(hit.explanation)
                if hit.explanation is not None
                else None
            ),
        )


class FacetValuePublic(BaseModel):
    """One facet bucket."""

    value: str
    count: int
    swatch: str | None = Field(
        default=None, description="#rrggbb to draw for a colour facet value, else null."
    )

    @classmethod
    def from_facet_value(cls, bucket: FacetValue) -> FacetValuePublic:
        """Convert a core :class:`~search.types.FacetValue`."""
        return cls(value=bucket.value, count=bucket.count, swatch=bucket.swatch)


class SearchResponse(BaseModel):
    """One page of search results."""

    query: str = Field(description="The query as received.")
    corrected_query: str | None = Field(
        description="The query as understood after spelling correction, or null."
    )
    total: int = Field(description="Products matching the query and filters.")
    page: int
    k: int = Field(description="Hits per page.")
    hits: list[SearchHitPublic]
    facets: dict[str, list[FacetValuePublic]] = Field(
        description="Facet name -> buckets, most frequent first."
    )
    took_ms: float
    fallback: Literal["semantic"] | None = Field(
        default=None,
        description="semantic: nothing matched the query; the hits are the nearest products by "
        "meaning instead of an empty page.",
    )

    redirect: str | None = Field(
        default=None, description="A merchandiser's rule sends this query to this URL."
    )
    variants: dict[str, str] = Field(
        default_factory=dict,
        description="A/B tests this shopper takes part in: experiment id -> variant. Send it "
        "back as the variants of the search, click, add_to_cart and purchase events; empty "
        "without a user_id or session_id.",
    )

    @classmethod
    def from_result(
        cls,
        result: SearchResult,
        *,
        page: int,
        k: int,
        variants: Mapping[str, str] | None = None,
    ) -> SearchResponse:
        """Convert a core :class:`~search.types.SearchResult`.

        Args:
            result: The pipeline's result page.
            page: The page asked for.
            k: The page size asked for.
            variants: The shopper's A/B test arms (experiment id -> variant).

        Returns:
            Its public form.
        """
        return cls(
            query=result.query,
            corrected_query=result.corrected_query,
            total=result.total,
            page=page,
            k=k,
            hits=[SearchHitPublic.from_hit(hit) for hit in result.hits],
            facets={
                name: [FacetValuePublic.from_facet_value(bucket) for bucket in buckets]
                for name, buckets in result.facets.items()
            },
            took_ms=result.took_ms,
            fallback="semantic" if result.fallback == "semantic" else None,
            redirect=result.redirect,
            variants=dict(variants) if variants else {},
        )


class HealthResponse(BaseModel):
    """What the service is serving."""

    status: Literal["ok"] = "ok"
    snapshot_id: str
    format_version: int
    created_at: str
    catalogue_checksum: str
    products: int = Field(description="Products in the serving snapshot.")
    counts: dict[str, int]
    models: dict[str, str]
    retrievers: list[str] = Field(
        description="Retrievers answering queries (no 'semantic' when it is off or absent)."
    )


class ReadyResponse(BaseModel):
    """Readiness: the snapshot is loaded and requests can be answered."""

    status: Literal["ready"] = "ready"
