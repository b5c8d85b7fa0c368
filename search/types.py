"""Core value types shared by the indexer, the query pipeline and the API.

Everything here is a frozen dataclass or an Enum: the core never passes ``dict[str, Any]`` around.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal, NamedTuple


class Availability(StrEnum):
    """Stock state of a product, with the Google Merchant Center vocabulary."""

    IN_STOCK = "in_stock"
    OUT_OF_STOCK = "out_of_stock"
    PREORDER = "preorder"
    BACKORDER = "backorder"


@dataclass(frozen=True, slots=True)
class Product:
    """One catalogue product in the canonical model every importer produces.

    Attributes:
        id: The shop's product id (unique within a catalogue).
        title: Display title (NFC-normalised, diacritics kept).
        description: Long text, may be empty.
        brand: Brand name, or None.
        categories: Category paths, each a tuple from the root down, e.g. ``("Furniture", "Sofas")``.
        attributes: Attribute name -> values (``{"material": ("oak",), "size": ("M", "L")}``).
        colours: Colour names given by the catalogue.
        price: Price amount in ``currency``, or None when unknown.
        currency: ISO 4217 code, or None.
        sale_price: Reduced price, or None.
        availability: Stock state.
        images: Image locations: absolute paths or http(s) URLs.
        url: Product page URL, or None.
        gtin: Global trade item number, or None.
        lang: Language code of the texts (``"en"``, ``"pl"``), or None for the catalogue default.
    """

    id: str
    title: str
    description: str = ""
    brand: str | None = None
    categories: tuple[tuple[str, ...], ...] = ()
    attributes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    colours: tuple[str, ...] = ()
    price: float | None = None
    currency: str | None = None
    sale_price: float | None = None
    availability: Availability = Availability.IN_STOCK
    images: tuple[str, ...] = ()
    url: str | None = None
    gtin: str | None = None
    lang: str | None = None

    @property
    def effective_price(self) -> float | None:
        """The price a shopper pays now: the sale price when set, else the price."""
        return self.sale_price if self.sale_price is not None else self.price

    def to_dict(self) -> dict[str, Any]:
        """Serialise to the canonical JSON Lines form (the keys the JSONL importer reads)."""
        return {
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "brand": self.brand,
            "categories": [list(path) for path in self.categories],
            "attributes": {name: list(values) for name, values in self.attributes.items()},
            "colours": list(self.colours),
            "price": self.price,
            "currency": self.currency,
            "sale_price": self.sale_price,
            "availability": self.availability.value,
            "images": list(self.images),
            "url": self.url,
            "gtin": self.gtin,
            "lang": self.lang,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Product:
        """Build from :meth:`to_dict` output (trusted data, e.g. a snapshot's product store).

        Raises:
            KeyError: ``id`` or ``title`` is missing.
            ValueError: ``availability`` is not an :class:`Availability` value.
        """
        return cls(
            id=str(data["id"]),
            title=str(data["title"]),
            description=data.get("description") or "",
            brand=data.get("brand"),
            categories=tuple(tuple(path) for path in data.get("categories") or ()),
            attributes={k: tuple(v) for k, v in (data.get("attributes") or {}).items()},
            colours=tuple(data.get("colours") or ()),
            price=data.get("price"),
            currency=data.get("currency"),
            sale_price=data.get("sale_price"),
            availability=Availability(data.get("availability") or Availability.IN_STOCK.value),
            images=tuple(data.get("images") or ()),
            url=data.get("url"),
            gtin=data.get("gtin"),
            lang=data.get("lang"),
        )


ColourSource = Literal["text", "photo"]

#: How far a colour measured on a product photo is trusted relative to a colour the catalogue
#: states (lighting, shadows and models' clothes make photos less certain than the PIM).
PHOTO_TRUST = 0.8

#: The colour families of :class:`search.colour.Family`, by value.
COLOUR_FAMILIES = frozenset(
    {
        "black", "white", "grey", "red", "pink", "orange", "yellow", "green", "blue", "purple",
        "brown", "beige", "metallic", "multi",
    }
)  # fmt: skip


def _family(value: object) -> str:
    family = str(value)
    if family not in COLOUR_FAMILIES:
        raise ValueError(
            f"unknown colour family {family!r}; valid: {', '.join(sorted(COLOUR_FAMILIES))}"
        )
    return family


@dataclass(frozen=True, slots=True)
class ProductColour:
    """One colour of one product.

    Attributes:
        name: Vocabulary name (``"navy"``).
        family: Colour family (``"blue"``).
        hex: Swatch, ``#rrggbb``: the named colour's for text colours, the measured one for photos.
        lab: CIELAB coordinate.
        source: ``"text"`` (PIM attribute, title, description) or ``"photo"``.
        share: Share of the product in this colour (photo); 1.0 for a text colour that is the
            only one named, else split evenly.
        confidence: 0..1, how sure the indexer is (photo: share and nearness to the name; text:
            1.0 from a colour attribute, 0.9 from the title, 0.7 from the description).
    """

    name: str
    family: str
    hex: str
    lab: tuple[float, float, float]
    source: ColourSource
    share: float
    confidence: float

    @property
    def strength(self) -> float:
        """How much this colour speaks for the product, 0..1 (used to weight closeness).

        Text colours weigh their confidence; photo colours :data:`PHOTO_TRUST` times their
        share (plus 0.3, capped at 1), so a small secondary colour of a photo counts little.
        """
        if self.source == "text":
            return self.confidence
        # A photo colour is matched by its measured Lab, not its name: how near the name is
        # does not matter here, how much of the product it covers does.
        return PHOTO_TRUST * min(1.0, 0.3 + self.share)

    def to_dict(self) -> dict[str, object]:
        """JSON form."""
        return {
            "name": self.name,
            "family": self.family,
            "hex": self.hex,
            "lab": [round(v, 2) for v in self.lab],
            "source": self.source,
            "share": round(self.share, 4),
            "confidence": round(self.confidence, 4),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> ProductColour:
        """Parse :meth:`to_dict` output.

        Raises:
            ValueError: a field is missing or malformed.
        """
        try:
            lab = tuple(float(v) for v in data["lab"])  # type: ignore[attr-defined]
            if len(lab) != 3:
                raise ValueError(f"lab must have 3 components, got {len(lab)}")
            source = str(data["source"])
            if source not in ("text", "photo"):
                raise ValueError(f"source must be 'text' or 'photo', got {source!r}")
            return cls(
                name=str(data["name"]),
                family=_family(data["family"]),
                hex=str(data["hex"]),
                lab=(lab[0], lab[1], lab[2]),
                source=source,  # type: ignore[arg-type]
                share=float(data["share"]),  # type: ignore[arg-type]
                confidence=float(data["confidence"]),  # type: ignore[arg-type]
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed product colour {data!r}: {exc!r}") from exc


@dataclass(frozen=True, slots=True)
class RowError:
    """One problem with one catalogue row, for the import report.

    Attributes:
        row: 1-based row (line or item) number in the source file.
        field: The offending field, or ``"*"`` for the row as a whole.
        reason: What is wrong, in words a shop's engineer can act on.
        product_id: The row's id when it could be read.
    """

    row: int
    field: str
    reason: str
    product_id: str | None = None


class SortOrder(StrEnum):
    """Result orderings offered to shoppers."""

    RELEVANCE = "relevance"
    PRICE_ASC = "price_asc"
    PRICE_DESC = "price_desc"


@dataclass(frozen=True, slots=True)
class Filters:
    """Hard filters: a product must satisfy all that are set.

    Attributes:
        brands: Any of these brands (case-insensitive); empty means no brand filter.
        categories: Any of these category paths or their prefixes (``"Furniture > Sofas"``
            written as a tuple); empty means no category filter.
        attributes: For each attribute name, any of these values.
        price_min: Effective price at least this.
        price_max: Effective price at most this.
        availability: Any of these stock states; empty means all.
    """

    brands: tuple[str, ...] = ()
    categories: tuple[tuple[str, ...], ...] = ()
    attributes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    price_min: float | None = None
    price_max: float | None = None
    availability: tuple[Availability, ...] = ()

    @property
    def is_empty(self) -> bool:
        """True when no filter is set."""
        return not (
            self.brands
            or self.categories
            or self.attributes
            or self.price_min is not None
            or self.price_max is not None
            or self.availability
        )


@dataclass(frozen=True, slots=True)
class ColourIs:
    """A condition: the product is in a colour, as the ``colour`` parameter asks it (a name
    in any supported language, a family, or ``#rrggbb``), but without ranking the closest
    first (that is :attr:`SearchRequest.colour`'s job).

    Attributes:
        value: The colour.
    """

    value: str


@dataclass(frozen=True, slots=True)
class AllOf:
    """A condition: every one of ``conditions`` holds (none: always true)."""

    conditions: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    """A condition: at least one of ``conditions`` holds (none: never true)."""

    conditions: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class Not:
    """A condition: ``condition`` does not hold."""

    condition: Condition


Condition = Filters | ColourIs | AllOf | AnyOf | Not
"""A boolean filter over products: :class:`Filters` and :class:`ColourIs` are the leaves,
:class:`AllOf`, :class:`AnyOf` and :class:`Not` combine them (``SearchRequest.where``)."""

MAX_CONDITION_DEPTH = 32
"""Deepest nesting of a :data:`Condition` a request may carry."""

MAX_CONDITION_LEAVES = 1000
"""Most leaves a :data:`Condition` a request carries may have (each costs a pass over the
products)."""

MAX_FACET_LIMIT = 1000
"""Most values a request may ask per facet (``SearchRequest.facet_limit``)."""


def condition_size(condition: Condition) -> tuple[int, int]:
    """The depth and the number of leaves of a condition, without recursion (a hostile one
    may be deeper than Python's stack).

    Args:
        condition: The condition.

    Returns:
        ``(depth, leaves)``: a leaf alone is ``(1, 1)``.
    """
    depth = leaves = 0
    stack: list[tuple[Condition, int]] = [(condition, 1)]
    while stack:
        node, level = stack.pop()
        depth = max(depth, level)
        if isinstance(node, AllOf | AnyOf):
            stack.extend((child, level + 1) for child in node.conditions)
        elif isinstance(node, Not):
            stack.append((node.condition, level + 1))
        else:
            leaves += 1
    return depth, leaves


@dataclass(frozen=True, slots=True)
class SearchRequest:
    """What a caller asks the pipeline for.

    Attributes:
        text: The raw query text (may be empty: a browse request).
        k: Hits per page.
        page: 1-based page number.
        filters: Hard filters.
        sort: Ordering of the results.
        facets: Facet names to count (``"brand"``, ``"category"``, ``"availability"``,
            ``"price"``, ``"attr:<name>"``).
        explain: Attach an explanation to every hit.
        as_you_type: Treat the last query token as a prefix.
        user_id: The shopper, when known (used by personalisation).
        session_id: The shopper's session, when known.
        channel: ``"web"`` or ``"app"``, when known.
        colour: A colour asked for outside the text (``colour=`` parameter, a colour facet
            click): a name in any supported language, a family, or ``#rrggbb``. Products must
            be in that colour (a family: any shade of it; a name or hex: close to it) and the
            closest rank first.
        currency: The currency (ISO 4217) of ``price_min``/``price_max``, of the price sort
            and of the price facet; None: the shop's base currency. Prices in other
            currencies are converted with the shop's exchange rates, and left out of price
            filters (last in a price sort) where no rate converts them.
        where: A boolean filter the products must also pass (with ``filters``): ``OR`` across
            fields and ``NOT``, which :class:`Filters` cannot say; None: none.
        facet_limit: Values kept per facet, most frequent first (at most
            :data:`MAX_FACET_LIMIT`).
    """

    text: str = ""
    k: int = 10
    page: int = 1
    filters: Filters = field(default_factory=Filters)
    sort: SortOrder = SortOrder.RELEVANCE
    facets: tuple[str, ...] = ()
    explain: bool = False
    as_you_type: bool = True
    user_id: str | None = None
    session_id: str | None = None
    channel: str | None = None
    colour: str | None = None
    currency: str | None = None
    where: Condition | None = None
    facet_limit: int = 20


class Hit(NamedTuple):
    """One scored candidate from a retriever, the fuser or a re-ranker.

    A named tuple rather than a frozen dataclass: a search makes hundreds of these, and a
    tuple is built in half the time.

    Attributes:
        doc: Dense document number in the snapshot (0..n-1).
        score: The stage's score; higher is better.
        source: The stage that produced the score (``"lexical"``, ``"fused"``...).
    """

    doc: int
    score: float
    source: str


@dataclass(frozen=True, slots=True)
class RetrieverTrace:
    """How one retriever saw one hit, for explanations."""

    retriever: str
    rank: int
    score: float
    weight: float


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why a hit ranks where it does.

    Attributes:
        retrievers: Each retriever that found the hit, with its rank (1-based) and score.
        fused_score: Score after fusion.
        adjustments: Re-ranker effects as ``(stage, description)`` pairs, in pipeline order.
        matched_terms: Query term -> the catalogue terms that matched it (corrections,
            phonetic matches, prefixes).
    """

    retrievers: tuple[RetrieverTrace, ...]
    fused_score: float
    adjustments: tuple[tuple[str, str], ...] = ()
    matched_terms: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ResultHit:
    """One hit in a result page."""

    product: Product
    score: float
    explanation: Explanation | None = None
    colours: tuple[ProductColour, ...] = ()


@dataclass(frozen=True, slots=True)
class FacetValue:
    """One facet bucket: a value and how many matching products carry it.

    Attributes:
        value: The bucket's value (as a filter takes it).
        count: Matching products in the bucket.
        swatch: ``#rrggbb`` to draw for a colour bucket, else None.
        currency: The currency of a price bucket's bounds, else None.
    """

    value: str
    count: int
    swatch: str | None = None
    currency: str | None = None


@dataclass(frozen=True, slots=True)
class FacetStats:
    """Statistics of a numeric facet over the matching products that have a value.

    Attributes:
        min: Lowest value.
        max: Highest value.
        avg: Mean value.
        sum: Sum of the values.
        count: Products with a value.
    """

    min: float
    max: float
    avg: float
    sum: float
    count: int


@dataclass(frozen=True, slots=True)
class SearchResult:
    """A result page.

    Attributes:
        query: The query text as received.
        corrected_query: The query as understood after spelling correction, or None when
            nothing was corrected.
        total: Number of products matching the query and filters.
        hits: This page's hits, best first.
        facets: Facet name -> buckets, most frequent first.
        took_ms: Time spent in the pipeline.
        fallback: ``"semantic"`` when nothing matched the query and the hits are the nearest
            products by meaning instead; None otherwise.
        redirect: A URL a merchandiser's rule sends this query to (the storefront should go
            there), or None.
        currency: The currency price filters, the price sort and the price facet compared
            prices in, or None when neither the shop nor the catalogue names one.
        converted: Some prices were converted from another currency with the shop's rates.
        facet_stats: For the ``price`` facet when asked: the statistics of the matching
            products' prices (in ``currency``); empty otherwise.
    """

    query: str
    corrected_query: str | None
    total: int
    hits: tuple[ResultHit, ...]
    facets: Mapping[str, tuple[FacetValue, ...]]
    took_ms: float
    fallback: str | None = None
    redirect: str | None = None
    currency: str | None = None
    converted: bool = False
    facet_stats: Mapping[str, FacetStats] = field(default_factory=dict)
