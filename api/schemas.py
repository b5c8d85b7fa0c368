"""Public JSON shapes of the HTTP API (pydantic lives here and nowhere in the core)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, PlainValidator

from merchandising.experiments import Unit
from search.rules import MatchKind
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
    currency: str | None = Field(
        default=None,
        description="The currency of a price bucket's bounds (absent on other facets).",
        # Only price buckets carry it: other facets' buckets keep their shape.
        exclude_if=lambda value: value is None,
    )

    @classmethod
    def from_facet_value(cls, bucket: FacetValue) -> FacetValuePublic:
        """Convert a core :class:`~search.types.FacetValue`."""
        return cls(
            value=bucket.value, count=bucket.count, swatch=bucket.swatch, currency=bucket.currency
        )


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
    currency: str | None = Field(
        default=None,
        description="The currency price_min, price_max, the price sort and the price facet "
        "compared prices in (the request's currency, else the shop's base currency).",
    )
    converted: bool = Field(
        default=False,
        description="Some prices were converted from another currency with the shop's "
        "exchange rates; prices no rate converts were left out of price filters and sorted "
        "last.",
    )
    variants: dict[str, str] = Field(
        default_factory=dict,
        description="A/B tests this shopper takes part in: experiment id -> variant. Send it "
        "back as the variants of the search, click, add_to_cart and purchase events; empty "
        "without a user_id or session_id.",
    )
    query_id: str | None = Field(
        default=None,
        description="Id of this answer (as Algolia's queryID): the service recorded what it "
        "showed, so send it as the query_id of the click, add_to_cart and purchase events of "
        "its products (with the same user_id or session_id) and the query and position are "
        "taken from the record. Photo and voice answers have one too (the recorded query is "
        "the photo's text, none for a photo alone, or the query the voice search searched). "
        "null for a browse, a voice recording without speech, or with events off.",
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
            currency=result.currency,
            converted=result.converted,
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
    degraded: bool = Field(
        default=False,
        description="True while the configured snapshot cannot be served and the last good "
        "one is served instead (``warning`` says why).",
    )
    warning: str | None = Field(default=None, description="Why the service is degraded.")


class ReadyResponse(BaseModel):
    """Readiness: the snapshot is loaded and requests can be answered."""

    status: Literal["ready"] = "ready"


# --- request integers ------------------------------------------------------------------------

MAX_REQUEST_INT = 2**53 - 1
"""Largest integer any request parameter or body field accepts (versions, offsets, counts).

Without an upper bound an integer of 2**63 or more reached SQLite ("Python int too large to
convert to SQLite INTEGER") or a float conversion and answered 500; every integer a request
carries is declared with ``le=MAX_REQUEST_INT`` so it is refused with 422 instead. 2**53 - 1
is the largest integer a JSON client (JavaScript) holds exactly, and fits SQLite's 64 bits."""


# --- admin bodies ----------------------------------------------------------------------------
# These models document the admin request bodies in the OpenAPI schema. They do not validate:
# the codecs in search/ (rule_from_dict, RankingWeights.from_dict, experiment_from_dict) stay
# the single validator, so the HTTP API and the stored configuration can never disagree and
# every error names the field the way the codec does. The ``*JSON`` aliases at the end tie a
# model to a plain JSON object body.


def _json_object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError("must be a JSON object")
    return value


def documented_as(model: type[BaseModel]) -> PlainValidator:
    """Annotation metadata for a JSON object that OpenAPI documents as ``model`` but that
    arrives as a plain dict: ``Annotated[dict[str, Any], documented_as(RuleIn)]``.

    Args:
        model: The pydantic model describing the object's fields.

    Returns:
        A validator refusing anything but a JSON object (422) and leaving the rest to the codec.
    """
    return PlainValidator(_json_object, json_schema_input_type=model)


_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,100}$"


class FiltersIn(BaseModel):
    """Filters as the admin API takes them (:func:`search.rules.filters_from_dict`)."""

    brands: list[str] | None = None
    categories: list[str | list[str]] | None = Field(
        default=None, description='Category paths, "Furniture > Sofas" or a list of levels.'
    )
    attributes: dict[str, list[str]] | None = Field(
        default=None, description="Attribute name -> accepted values (alias: attr)."
    )
    price_min: float | None = None
    price_max: float | None = None
    availability: list[Availability] | None = None


class PinAction(BaseModel):
    """Put a product at a 1-based position."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["pin"]
    product_id: str = Field(min_length=1)
    position: int = Field(ge=1, le=10_000)


class _SelectingAction(BaseModel):
    """An action on the products ``product_ids`` and/or ``filter`` select."""

    model_config = ConfigDict(extra="forbid")

    product_ids: list[str] | None = None
    filter: FiltersIn | None = None


class BoostAction(_SelectingAction):
    """Lift the selected products (``product_ids`` and/or ``filter``) by ``weight``."""

    type: Literal["boost"]
    weight: float = Field(gt=0, le=10, description="Share of the result list (see the docs).")


class BuryAction(_SelectingAction):
    """Push the selected products (``product_ids`` and/or ``filter``) down by ``weight``."""

    type: Literal["bury"]
    weight: float = Field(gt=0, le=10, description="Share of the result list (see the docs).")


class HideAction(_SelectingAction):
    """Remove the selected products (``product_ids`` and/or ``filter``) from the results."""

    type: Literal["hide"]


class SynonymsAction(BaseModel):
    """Words searched as each other (``one_way``: the first finds the others only)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["synonyms"]
    words: list[str] = Field(min_length=2)
    one_way: bool = False


class RedirectAction(BaseModel):
    """Answer the query with a URL: absolute http(s), or a site-relative path."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["redirect"]
    url: str


RuleAction = Annotated[
    PinAction | BoostAction | BuryAction | HideAction | SynonymsAction | RedirectAction,
    Field(discriminator="type"),
]


class RuleIn(BaseModel):
    """A merchandising rule (:func:`search.rules.rule_from_dict` validates it)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=_ID_PATTERN)
    match: MatchKind = Field(
        description="exact: the whole query; contains: these words in order; pattern: an RE2 "
        "regular expression; global: every query."
    )
    query: str = Field(default="", description="Empty for a global rule.")
    actions: list[RuleAction] = Field(min_length=1)
    channels: list[str] = Field(default_factory=list, description="Empty: every channel.")
    segments: list[str] = Field(default_factory=list, description="Empty: every shopper.")
    active_from: datetime | None = None
    active_to: datetime | None = Field(default=None, description="Exclusive.")
    priority: int = Field(default=0, ge=-1_000_000, le=1_000_000)
    enabled: bool = True
    description: str = ""


class RuleReplaceIn(RuleIn):
    """A rule put at ``/admin/rules/{rule_id}``: ``id`` may be left out (it is the path's)."""

    id: str | None = Field(default=None, pattern=_ID_PATTERN)  # type: ignore[assignment]


class RulesIn(BaseModel):
    """The whole rule set (``PUT /admin/rules``)."""

    rules: list[RuleIn]


class RankingWeightsIn(BaseModel):
    """Ranking weights (:meth:`search.weights.RankingWeights.from_dict`); keys left out take
    their defaults."""

    model_config = ConfigDict(extra="forbid")

    retrievers: dict[str, Annotated[float, Field(ge=0, le=100)]] | None = Field(
        default=None, description='Fusion weight per retriever, e.g. {"semantic": 0.6}.'
    )
    colour_weight: float | None = Field(default=None, ge=0, le=10)
    colour_rerank: float | None = Field(default=None, ge=0, le=100)
    behaviour: float | None = Field(default=None, ge=0, le=100)
    personalisation: float | None = Field(default=None, ge=0, le=0.9)


class VariantIn(BaseModel):
    """One arm of an experiment; the first is the control."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=_ID_PATTERN)
    share: float = Field(gt=0, le=1, description="Share of the units; the shares add up to 1.")
    weights: RankingWeightsIn | None = None


class ExperimentIn(BaseModel):
    """An A/B test (:func:`merchandising.experiments.experiment_from_dict`); ``id`` may be left out (it is
    the path's)."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(default=None, pattern=_ID_PATTERN)
    unit: Unit = "user"
    variants: list[VariantIn] = Field(min_length=2)
    enabled: bool = True
    description: str = ""


FiltersJSON = Annotated[dict[str, Any], documented_as(FiltersIn)]
"""Filters, validated by :func:`search.rules.filters_from_dict`."""
RuleJSON = Annotated[dict[str, Any], documented_as(RuleIn)]
"""A rule, validated by :func:`search.rules.rule_from_dict`."""
RuleReplaceJSON = Annotated[dict[str, Any], documented_as(RuleReplaceIn)]
"""A rule whose id may come from the path."""
RulesJSON = Annotated[dict[str, Any], documented_as(RulesIn)]
"""``{"rules": [...]}``, validated by :func:`search.rules.rules_from_list`."""
WeightsJSON = Annotated[dict[str, Any], documented_as(RankingWeightsIn)]
"""Ranking weights, validated by :meth:`search.weights.RankingWeights.from_dict`."""
ExperimentJSON = Annotated[dict[str, Any], documented_as(ExperimentIn)]
"""An experiment, validated by :func:`merchandising.experiments.experiment_from_dict`."""


class ProductIn(BaseModel):
    """A product in the JSON Lines catalogue shape (``docs/catalogue.md``), as
    ``POST /admin/catalogue/changes`` takes it; validated by
    :func:`indexer.formats.fields.build_product`. Any other key becomes an attribute."""

    model_config = ConfigDict(extra="allow")

    id: str | int = Field(description="Unique product id.")
    title: str
    description: str | None = Field(default=None, description="Plain text or simple HTML.")
    brand: str | None = None
    categories: str | list[str | list[str]] | None = Field(
        default=None, description='Category paths, "Furniture > Sofas" or a list of levels.'
    )
    attributes: dict[str, str | float | bool | list[str | float | bool]] | None = None
    colours: str | list[str] | None = None
    price: float | str | None = Field(default=None, description='A number or "12,50 PLN".')
    currency: str | None = Field(default=None, description="ISO 4217 code.")
    sale_price: float | str | None = None
    availability: str | None = Field(
        default=None, description="in_stock, out_of_stock, preorder or backorder."
    )
    images: str | list[str] | None = Field(default=None, description="http(s) URLs or paths.")
    url: str | None = None
    gtin: str | int | None = None
    lang: str | None = Field(default=None, description='Language code, e.g. "en" or "pl".')


ProductJSON = Annotated[dict[str, Any], documented_as(ProductIn)]
"""A catalogue product, validated by :func:`indexer.formats.fields.build_product`."""
