"""Product colours at query time: each product's colours (from text and photos) and how well they
answer a colour a shopper asked for.

A product may carry several colours, each with its source (``text``: the PIM colour attribute,
title or description; ``photo``: the dominant colours of the main photo), its CIELAB coordinate,
its share of the product and a confidence. :class:`ColourIndex` keeps them as flat arrays and
grades every product against a query colour in one vectorised CIEDE2000 pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import orjson

from search.analysis import fold
from search.colour import (
    Colour,
    Family,
    ciede2000_many,
    delta_e_grade,
    lookup,
    parse_colour,
    spot_colours,
)
from search.types import ProductColour

if TYPE_CHECKING:
    from search.types import Product


#: Attribute names (folded) that hold a product's colour in PIM exports.
COLOUR_ATTRIBUTES = frozenset(
    {"colour", "color", "colours", "colors", "kolor", "kolory", "barwa", "farbe", "couleur"}
)

#: Confidence of a text colour by where it was read.
TEXT_CONFIDENCE = {"attribute": 1.0, "title": 0.9, "description": 0.7}


#: Least grade of a product colour of the query colour's family (ranking only): a charcoal
#: query still ranks grey products above unrelated ones, below close shades.
FAMILY_GRADE = 0.4

#: Factor on the grade of a product colour of another family than the asked one.
OTHER_FAMILY = 0.8

#: Weighted grade from which a product counts as matching the asked colour (the colour words'
#: group of a query is covered; a ``colour=`` filter keeps it): a shade of the same family read
#: from the text (0.4 x 0.9) or the main photo (0.4 x 0.8), or a close colour of another family
#: (ΔE00 up to about 14). Closer shades still score higher: navy, then dark blue, then blue.
MATCH_GRADE = 0.3

#: A product colour counts for the colour facet from this strength on (text colours, the main
#: photo colour and large secondary photo colours).
FACET_STRENGTH = 0.5


#: Factors on the strength of text colours when the text names several ("Red & Black T-shirt"):
#: the first named colour, and each later one. Such a product is in its first colour less surely
#: than one whose text names a single colour, and in a later one less surely still (on the
#: fashion catalogue a single title colour was the labelled colour for 94% of products, the
#: first of several for 58%, a later one for 33%), so single-colour products rank first.
FIRST_OF_SEVERAL = 0.9
LATER_OF_SEVERAL = 0.75


def _text_order_factors(colours: Sequence[Sequence[ProductColour]]) -> npt.NDArray[np.float64]:
    """Per flat colour entry, the factor on its strength for its place among the text colours
    of its product (1 for photo colours and for a product's only text colour)."""
    factors: list[float] = []
    for cs in colours:
        several = sum(c.source == "text" for c in cs) > 1
        seen = 0
        for c in cs:
            if c.source != "text" or not several:
                factors.append(1.0)
                continue
            factors.append(FIRST_OF_SEVERAL if seen == 0 else LATER_OF_SEVERAL)
            seen += 1
    return np.asarray(factors, dtype=np.float64)


def family_swatch(family: str) -> str:
    """The swatch shown for a colour family in facets (the family's own named colour)."""
    colour = lookup(family)
    if colour is not None and colour.family == family:
        return colour.hex
    return _FAMILY_SWATCHES.get(family, "#808080")


_FAMILY_SWATCHES = {"metallic": "#c0c0c0", "multi": "#808080", "beige": "#d8c8a8"}


class ColourIndex:
    """Every product's colours as flat arrays, graded against query colours.

    Args:
        colours: Per document (position = document number), its colours, main first.
    """

    def __init__(self, colours: Sequence[Sequence[ProductColour]]) -> None:
        self.colours: tuple[tuple[ProductColour, ...], ...] = tuple(tuple(c) for c in colours)
        n_docs = len(self.colours)
        flat = [(doc, c) for doc, cs in enumerate(self.colours) for c in cs]
        self.n_docs = n_docs
        self._docs = np.fromiter((d for d, _ in flat), dtype=np.int64, count=len(flat))
        self._labs = np.array([c.lab for _, c in flat], dtype=np.float64).reshape(-1, 3)
        self._strength = np.fromiter(
            (c.strength for _, c in flat), dtype=np.float64, count=len(flat)
        ) * _text_order_factors(self.colours)
        self._families = np.array([c.family for _, c in flat], dtype=object)
        self._facet = self._strength >= FACET_STRENGTH
        self.has_colour = np.zeros(n_docs, dtype=bool)
        self.has_colour[self._docs] = True
        # Text colours repeat a few hundred named coordinates: grade each distinct one once.
        if len(self._labs):
            self._unique_labs, inverse = np.unique(self._labs, axis=0, return_inverse=True)
            self._inverse = inverse.ravel()
            self._starts = np.flatnonzero(np.r_[True, self._docs[1:] != self._docs[:-1]])
        else:
            self._unique_labs = np.zeros((0, 3))
            self._inverse = np.zeros(0, dtype=np.int64)
            self._starts = np.zeros(0, dtype=np.int64)
        self._multi = self._families == Family.MULTI.value
        self._cache: dict[tuple[str, tuple[float, float, float]], npt.NDArray[np.float32]] = {}

    def __len__(self) -> int:
        return self.n_docs

    def of(self, doc: int) -> tuple[ProductColour, ...]:
        """A document's colours, main first."""
        return self.colours[doc]

    def grades(self, query: Colour) -> npt.NDArray[np.float64]:
        """Closeness of each of the flat colour entries to ``query`` (before strength)."""
        if len(self._labs) == 0:
            return np.zeros(0)
        if query.family is Family.MULTI:
            return np.where(self._families == Family.MULTI.value, 1.0, 0.0)
        unique = np.asarray(
            delta_e_grade(ciede2000_many(np.array(query.lab), self._unique_labs)),
            dtype=np.float64,
        )
        grades = unique[self._inverse]
        same = self._families == query.family.value
        # A shade of the family the shopper named beats a look-alike from another family
        # (violet: purples before blues that happen to lie as close in CIEDE2000); within the
        # family closer shades still rank first (scarlet: red before maroon), so the family's
        # floor is lifted by the closeness rather than replacing it.
        grades = np.where(same, FAMILY_GRADE + (1.0 - FAMILY_GRADE) * grades, grades * OTHER_FAMILY)
        return np.where(self._multi, 0.0, grades)

    def match(self, query: Colour) -> npt.NDArray[np.float32]:
        """Per document, how well its colours answer ``query``: the best of its colours'
        closeness times strength, 0 for products without colours.

        Returns:
            Shape ``(n_docs,)``, values in ``[0, 1]``.
        """
        key = (query.family.value, query.lab)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        out = np.zeros(self.n_docs, dtype=np.float32)
        if len(self._labs):
            weighted = self.grades(query) * self._strength
            out[self._docs[self._starts]] = np.maximum.reduceat(weighted, self._starts)
        out.flags.writeable = False
        if len(self._cache) >= 64:
            self._cache.pop(next(iter(self._cache)))
        self._cache[key] = out
        return out

    def match_all(self, colours: Sequence[Colour]) -> npt.NDArray[np.float32]:
        """:meth:`match` for several asked colours ("black and white"): the mean per document."""
        if not colours:
            return np.zeros(self.n_docs, dtype=np.float32)
        total = np.zeros(self.n_docs, dtype=np.float32)
        for colour in colours:
            total += self.match(colour)
        return (total / len(colours)).astype(np.float32)

    def best_colour(self, doc: int, query: Colour) -> tuple[ProductColour, float] | None:
        """The colour of ``doc`` that best answers ``query`` and its weighted grade (explain)."""
        best: tuple[ProductColour, float] | None = None
        for colour in self.colours[doc]:
            single = ColourIndex([[colour]])
            grade = float(single.match(query)[0])
            if best is None or grade > best[1]:
                best = (colour, grade)
        return best

    def family_mask(self, family: str) -> npt.NDArray[np.bool_]:
        """Products with a colour of ``family`` strong enough for the colour facet."""
        mask = np.zeros(self.n_docs, dtype=bool)
        keep = self._facet & (self._families == family)
        mask[self._docs[keep]] = True
        return mask

    def filter_mask(self, colour: Colour) -> npt.NDArray[np.bool_]:
        """Products "in" a colour for a ``colour=`` filter or a colour facet click: those with
        a colour of its family (every shade: navy keeps light blue too, ranked after the
        closer shades by the caller) or a colour close to it in another family.

        Args:
            colour: The colour asked for.
        """
        return self.family_mask(colour.family.value) | (self.match(colour) >= MATCH_GRADE)

    def family_counts(self, docs: npt.NDArray[np.int64]) -> dict[str, int]:
        """Products among ``docs`` per colour family (each product once per family)."""
        if len(self._labs) == 0 or len(docs) == 0:
            return {}
        wanted = np.zeros(self.n_docs, dtype=bool)
        wanted[docs] = True
        keep = self._facet & wanted[self._docs]
        pairs = {
            (int(d), str(f)) for d, f in zip(self._docs[keep], self._families[keep], strict=True)
        }
        counts: dict[str, int] = {}
        for _, family in pairs:
            counts[family] = counts.get(family, 0) + 1
        return counts

    # --- persistence ------------------------------------------------------------------------

    def save(self, path: Path) -> None:
        """Write the colours as JSON (one list per document)."""
        path.write_bytes(orjson.dumps([[c.to_dict() for c in cs] for cs in self.colours]))

    @classmethod
    def load(cls, path: Path) -> ColourIndex:
        """Read :meth:`save` output.

        Raises:
            ValueError: the file is not a list of colour lists.
        """
        data = orjson.loads(path.read_bytes())
        if not isinstance(data, list):
            raise ValueError(f"{path.name}: expected a list of colour lists")
        return cls([[ProductColour.from_dict(c) for c in cs] for cs in data])


def _product_colour(colour: Colour, where: str, share: float) -> ProductColour:
    return ProductColour(
        name=colour.name,
        family=colour.family.value,
        hex=colour.hex,
        lab=colour.lab,
        source="text",
        share=share,
        confidence=TEXT_CONFIDENCE[where],
    )


def text_colours(product: Product) -> tuple[list[ProductColour], list[str]]:
    """The colours a product's text names.

    The catalogue's colour field and colour attributes win; without them the title's colour
    words count, and only without those the description's (descriptions often mention other
    products' colours: "pairs well with black jeans").

    Args:
        product: The product.

    Returns:
        Its text colours (main first, one per name) and the colour values that are no known
        colour name.
    """
    declared: list[str] = list(product.colours)
    for name, values in product.attributes.items():
        if fold(name) in COLOUR_ATTRIBUTES:
            declared.extend(values)
    found: list[tuple[Colour, str]] = []
    unknown: list[str] = []
    for value in declared:
        parsed = _parse_declared(value)
        if parsed is None:
            unknown.append(value)
        else:
            found.extend((c, "attribute") for c in parsed)
    if not found:
        found = [(m.colour, "title") for m in spot_colours(product.title)[0]]
    if not found and product.description:
        found = [(m.colour, "description") for m in spot_colours(product.description)[0]]
    unique: dict[str, tuple[Colour, str]] = {}
    for colour, where in found:
        unique.setdefault(colour.name, (colour, where))
    share = 1.0 / len(unique) if unique else 0.0
    return [_product_colour(c, where, share) for c, where in unique.values()], unknown


def _parse_declared(value: str) -> list[Colour] | None:
    """A colour attribute value: one name or hex code, or several ("black/white", "red, blue")."""
    text = value.strip()
    if not text:
        return []
    try:
        return [parse_colour(text)]
    except ValueError:
        pass
    parts = [
        p for p in (s.strip() for s in text.replace("/", ",").replace("&", ",").split(",")) if p
    ]
    if len(parts) > 1:
        colours = [lookup(p) for p in parts]
        if all(c is not None for c in colours):
            return [c for c in colours if c is not None]
    mentions = spot_colours(text)[0]
    return [m.colour for m in mentions] or None
