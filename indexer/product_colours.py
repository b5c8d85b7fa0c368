"""Every product's colours for the snapshot: read from its text and its main photo, with a report
of photos that could not be read and of products whose text and photo disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search.colour import (
    Colour,
    Family,
    closeness,
    lab_to_hex,
)
from search.index.colours import ProductColour, text_colours

if TYPE_CHECKING:
    from indexer.colours import PhotoColourExtractor
    from search.types import Product

#: A photo colour needs this confidence before it can contradict the text.
CONFLICT_MIN_CONFIDENCE = 0.4

#: Text and photo agree when some pair of their colours is at least this close (graded
#: closeness of :func:`search.colour.closeness`, family floor included).
AGREE_CLOSENESS = 0.15

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True, slots=True)
class ColourConflict:
    """A product whose catalogue text names colours its main photo does not show.

    Attributes:
        product_id: The product.
        title: Its title.
        text_colours: Colour names read from its text.
        photo_colour: The photo's main colour (name).
        photo_hex: That colour as measured.
        photo_share: Its share of the product's pixels.
        photo_confidence: The extractor's confidence.
        image: The photo examined.
    """

    product_id: str
    title: str
    text_colours: tuple[str, ...]
    photo_colour: str
    photo_hex: str
    photo_share: float
    photo_confidence: float
    image: str

    def to_dict(self) -> dict[str, object]:
        """JSON form."""
        return {
            "product_id": self.product_id,
            "title": self.title,
            "text_colours": list(self.text_colours),
            "photo_colour": self.photo_colour,
            "photo_hex": self.photo_hex,
            "photo_share": round(self.photo_share, 3),
            "photo_confidence": round(self.photo_confidence, 3),
            "image": self.image,
        }


@dataclass(slots=True)
class ColourReport:
    """What colour indexing found worth a merchandiser's look.

    Attributes:
        conflicts: Products whose text and photo disagree (a wrong PIM colour is a real bug).
        photo_errors: ``{"product_id", "image", "reason"}`` for photos that could not be read.
        unrecognised: ``{"product_id", "value"}`` for colour attribute values that are no known
            colour name (the product is still indexed; add the name or fix the value).
        products_with_colour: Products with at least one colour.
        photos_read: Photos analysed successfully.
    """

    conflicts: list[ColourConflict] = field(default_factory=list)
    photo_errors: list[dict[str, str]] = field(default_factory=list)
    unrecognised: list[dict[str, str]] = field(default_factory=list)
    products_with_colour: int = 0
    photos_read: int = 0

    def to_dict(self) -> dict[str, object]:
        """JSON form (``colour_report.json`` in the snapshot)."""
        return {
            "products_with_colour": self.products_with_colour,
            "photos_read": self.photos_read,
            "conflicts": [c.to_dict() for c in self.conflicts],
            "photo_errors": self.photo_errors,
            "unrecognised": self.unrecognised,
        }


def photo_colours(
    extractor: PhotoColourExtractor, image: str, features: Any | None = None
) -> list[ProductColour]:
    """The dominant colours of one local photo as product colours.

    Raises:
        ColourExtractionError: the photo is missing, unreadable or not an image.
    """
    found = extractor.extract_path(Path(image), features)
    return [
        ProductColour(
            name=c.name,
            family=c.family,
            hex=_measured_hex(c.lab, c.hex),
            lab=c.lab,
            source="photo",
            share=c.share,
            confidence=c.confidence,
        )
        for c in found.colours
    ]


def _measured_hex(lab: tuple[float, float, float], fallback: str) -> str:
    try:
        return lab_to_hex(lab)
    except ValueError:
        return fallback


def _conflict(
    product: Product, text: Sequence[ProductColour], photo: Sequence[ProductColour], image: str
) -> ColourConflict | None:
    if not text or not photo:
        return None
    main = photo[0]
    if main.confidence < CONFLICT_MIN_CONFIDENCE:
        return None
    photo_colour = Colour(main.name, Family(main.family), main.lab, main.hex)
    for t in text:
        asked = Colour(t.name, Family(t.family), t.lab, t.hex)
        if t.family == "multi" and len(photo) > 1:
            return None
        if any(
            closeness(asked, Colour(p.name, Family(p.family), p.lab, p.hex)) >= AGREE_CLOSENESS
            for p in photo
        ):
            return None
    return ColourConflict(
        product_id=product.id,
        title=product.title,
        text_colours=tuple(t.name for t in text),
        photo_colour=photo_colour.name,
        photo_hex=main.hex,
        photo_share=main.share,
        photo_confidence=main.confidence,
        image=image,
    )


def _is_local(location: str) -> bool:
    return not location.startswith(("http://", "https://"))


def index_colours(
    products: Sequence[Product],
    *,
    extractor: PhotoColourExtractor | None = None,
    progress: Progress | None = None,
    features: Sequence[Any | None] | None = None,
) -> tuple[list[list[ProductColour]], ColourReport]:
    """Colours of every product: text colours first, then the main photo's colours.

    Both are kept when they disagree; the product is then listed in the report's conflicts.
    A photo that cannot be read is reported for its product and the rest go on.

    Args:
        products: The catalogue's products.
        extractor: Photo colour extractor, or None to read text only.
        progress: ``(stage, done, total)`` callback; the stage is ``"colours"``.
        features: Per product the CNN features of its main photo (see
            :meth:`indexer.colours.PhotoColourExtractor.extract`), or None.

    Returns:
        Per product its colours (main first) and the report.
    """
    from search.errors import ColourExtractionError

    report = ProgressReporter(progress, len(products))
    out: list[list[ProductColour]] = []
    colour_report = ColourReport()
    for i, product in enumerate(products):
        text, unknown = text_colours(product)
        colour_report.unrecognised.extend(
            {"product_id": product.id, "value": value} for value in unknown
        )
        photo: list[ProductColour] = []
        image = product.images[0] if product.images else None
        if extractor is not None and image is not None and _is_local(image):
            try:
                photo = photo_colours(extractor, image, features[i] if features else None)
                colour_report.photos_read += 1
            except (ColourExtractionError, OSError, ValueError) as exc:
                colour_report.photo_errors.append(
                    {"product_id": product.id, "image": image, "reason": str(exc)}
                )
        conflict = _conflict(product, text, photo, image or "")
        if conflict is not None:
            colour_report.conflicts.append(conflict)
        colours = [*text, *photo]
        if colours:
            colour_report.products_with_colour += 1
        out.append(colours)
        report(i + 1)
    return out, colour_report


class ProgressReporter:
    """Calls a progress callback every ``every`` items and at the end."""

    def __init__(self, progress: Progress | None, total: int, every: int = 200) -> None:
        self.progress = progress
        self.total = total
        self.every = every

    def __call__(self, done: int) -> None:
        if self.progress is not None and (done % self.every == 0 or done == self.total):
            self.progress("colours", done, self.total)
