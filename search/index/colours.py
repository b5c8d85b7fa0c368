"""Product colours at query time: each product's colours (from text and photos) and how well they
answer a colour a shopper asked for.

A product may carry several colours, each with its source (``text``: the PIM colour attribute,
title or description; ``photo``: the dominant colours of the main photo), its CIELAB coordinate,
its share of the product and a confidence. :class:`ColourIndex` keeps them as flat arrays and
grades every product against a query colour in one vectorised CIEDE2000 pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
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


#: Memory the per-colour match arrays cached by :meth:`ColourIndex.match` may take.
MATCH_CACHE_BYTES = 32 * 1024 * 1024

#: Colour families in code order (an entry's family is its position here).
_FAMILIES: tuple[str, ...] = tuple(f.value for f in Family)
_FAMILY_CODE = {family: code for code, family in enumerate(_FAMILIES)}


def _lab_tuple(values: npt.NDArray[np.float64]) -> tuple[float, float, float]:
    return (float(values[0]), float(values[1]), float(values[2]))


def family_swatch(family: str) -> str:
    """The swatch shown for a colour family in facets (the family's own named colour)."""
    colour = lookup(family)
    if colour is not None and colour.family == family:
        return colour.hex
    return _FAMILY_SWATCHES.get(family, "#808080")


_FAMILY_SWATCHES = {"metallic": "#c0c0c0", "multi": "#808080", "beige": "#d8c8a8"}


class ColourIndex:
    """Every product's colours as flat arrays, graded against query colours.

    Nothing is kept per product as Python objects (a million products' colours would take a
    gigabyte that way): each colour entry is a row of small arrays (its document, Lab as an index
    into the distinct coordinates, strength, family, source, share, confidence, name and swatch
    as indexes into tables of distinct strings), and :meth:`of` builds a document's
    :class:`~search.types.ProductColour` values when asked.

    Args:
        colours: Per document (position = document number), its colours, main first.
    """

    def __init__(self, colours: Iterable[Iterable[ProductColour]]) -> None:
        docs: list[int] = []
        labs: list[tuple[float, float, float]] = []
        strength: list[float] = []
        family: list[int] = []
        photo: list[bool] = []
        share: list[float] = []
        confidence: list[float] = []
        name: list[int] = []
        swatch: list[int] = []
        names: dict[str, int] = {}
        swatches: dict[str, int] = {}
        n_docs = 0
        for doc, product_colours in enumerate(colours):
            n_docs = doc + 1
            entries = tuple(product_colours)
            texts = sum(c.source == "text" for c in entries)
            seen_text = 0
            for c in entries:
                factor = 1.0
                if c.source == "text" and texts > 1:
                    factor = FIRST_OF_SEVERAL if seen_text == 0 else LATER_OF_SEVERAL
                    seen_text += 1
                docs.append(doc)
                labs.append(c.lab)
                strength.append(c.strength * factor)
                family.append(_FAMILY_CODE[c.family])
                photo.append(c.source == "photo")
                share.append(c.share)
                confidence.append(c.confidence)
                name.append(names.setdefault(c.name, len(names)))
                swatch.append(swatches.setdefault(c.hex, len(swatches)))
        self.n_docs = n_docs
        self._docs = np.asarray(docs, dtype=np.int64)
        self._strength = np.asarray(strength, dtype=np.float64)
        self._family = np.asarray(family, dtype=np.int8)
        self._photo = np.asarray(photo, dtype=bool)
        self._share = np.asarray(share, dtype=np.float64)
        self._confidence = np.asarray(confidence, dtype=np.float64)
        self._name = np.asarray(name, dtype=np.int32)
        self._swatch = np.asarray(swatch, dtype=np.int32)
        self._names = tuple(names)
        self._swatches = tuple(swatches)
        self._facet = self._strength >= FACET_STRENGTH
        self.has_colour = np.zeros(n_docs, dtype=bool)
        self.has_colour[self._docs] = True
        # Text colours repeat a few hundred named coordinates: grade each distinct one once.
        if docs:
            unique, inverse = np.unique(
                np.asarray(labs, dtype=np.float64).reshape(-1, 3), axis=0, return_inverse=True
            )
            self._unique_labs = unique
            self._inverse = inverse.ravel().astype(np.int32)
            self._starts = np.flatnonzero(np.r_[True, self._docs[1:] != self._docs[:-1]])
        else:
            self._unique_labs = np.zeros((0, 3))
            self._inverse = np.zeros(0, dtype=np.int32)
            self._starts = np.zeros(0, dtype=np.int64)
        # Where each document's entries start and end (a document without colours: empty).
        self._bounds = np.zeros(n_docs + 1, dtype=np.int64)
        if docs:
            np.add.at(self._bounds, self._docs + 1, 1)
            np.cumsum(self._bounds, out=self._bounds)
        self._multi = self._family == _FAMILY_CODE[Family.MULTI.value]
        self._cache: dict[tuple[str, tuple[float, float, float]], npt.NDArray[np.float32]] = {}

    def __len__(self) -> int:
        return self.n_docs

    def of(self, doc: int) -> tuple[ProductColour, ...]:
        """A document's colours, main first."""
        if not 0 <= doc < self.n_docs:
            raise IndexError(f"document {doc} out of range (0..{self.n_docs - 1})")
        return tuple(
            ProductColour(
                name=self._names[int(self._name[i])],
                family=_FAMILIES[int(self._family[i])],
                hex=self._swatches[int(self._swatch[i])],
                lab=_lab_tuple(self._unique_labs[int(self._inverse[i])]),
                source="photo" if self._photo[i] else "text",
                share=float(self._share[i]),
                confidence=float(self._confidence[i]),
            )
            for i in range(int(self._bounds[doc]), int(self._bounds[doc + 1]))
        )

    @property
    def colours(self) -> tuple[tuple[ProductColour, ...], ...]:
        """Every document's colours (builds them all: for offline use, such as a delta build)."""
        return tuple(self.of(doc) for doc in range(self.n_docs))

    def grades(self, query: Colour) -> npt.NDArray[np.float64]:
        """Closeness of each of the flat colour entries to ``query`` (before strength)."""
        if len(self._docs) == 0:
            return np.zeros(0)
        if query.family is Family.MULTI:
            return np.where(self._multi, 1.0, 0.0)
        unique = np.asarray(
            delta_e_grade(ciede2000_many(np.array(query.lab), self._unique_labs)),
            dtype=np.float64,
        )
        grades = unique[self._inverse]
        same = self._family == _FAMILY_CODE[query.family.value]
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
        if len(self._docs):
            weighted = self.grades(query) * self._strength
            out[self._docs[self._starts]] = np.maximum.reduceat(weighted, self._starts)
        out.flags.writeable = False
        # Most distinct query colours kept: up to 64, and at most MATCH_CACHE_BYTES of them
        # (a million products: 8 colours of 4 MB each, not 64).
        most = max(4, min(64, MATCH_CACHE_BYTES // max(1, out.nbytes)))
        while len(self._cache) >= most:
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
        for colour in self.of(doc):
            single = ColourIndex([[colour]])
            grade = float(single.match(query)[0])
            if best is None or grade > best[1]:
                best = (colour, grade)
        return best

    def family_mask(self, family: str) -> npt.NDArray[np.bool_]:
        """Products with a colour of ``family`` strong enough for the colour facet."""
        mask = np.zeros(self.n_docs, dtype=bool)
        code = _FAMILY_CODE.get(family)
        if code is None:
            return mask
        keep = self._facet & (self._family == code)
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
        if len(self._docs) == 0 or len(docs) == 0:
            return {}
        wanted = np.zeros(self.n_docs, dtype=bool)
        wanted[docs] = True
        keep = self._facet & wanted[self._docs]
        # Each (document, family) pair once: a product with two blues counts once for blue.
        pairs = np.unique(self._docs[keep] * len(_FAMILIES) + self._family[keep].astype(np.int64))
        codes, counts = np.unique(pairs % len(_FAMILIES), return_counts=True)
        return {_FAMILIES[int(c)]: int(n) for c, n in zip(codes, counts, strict=True)}

    # --- persistence ------------------------------------------------------------------------

    def save(self, path: Path) -> None:
        """Write the colours as JSON (one list per document)."""
        path.write_bytes(
            orjson.dumps([[c.to_dict() for c in self.of(d)] for d in range(self.n_docs)])
        )

    @classmethod
    def load(cls, path: Path) -> ColourIndex:
        """Read :meth:`save` output.

        Raises:
            ValueError: the file is not a list of colour lists, or a colour is malformed.
        """
        data = orjson.loads(path.read_bytes())
        if not isinstance(data, list):
            raise ValueError(f"{path.name}: expected a list of colour lists")
        # Each document's colours are parsed (and checked) as the index reads them, so only one
        # document's ProductColour objects exist at a time.
        return cls((ProductColour.from_dict(c) for c in cs) for cs in data)


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
