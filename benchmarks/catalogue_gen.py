"""A generated product catalogue of any size for scale benchmarks (JSON Lines, canonical keys).

Titles look like a home-improvement shop's: a brand, modifiers, a colour or finish, a material,
a product noun phrase and sizes, e.g. ``"Korvani Heavy Duty 3/4 in. x 8 ft. Oak Stair Tread in
Natural"``. Word material comes from the Home Depot titles in ``../shared/data`` when they are
there (read at run time, never copied into the repository) and from small built-in lists
otherwise. Brands are made from syllables, so a million products carry tens of thousands of
distinct brand names, and the vocabulary keeps growing with the catalogue as real ones do.

Product ``i`` depends only on ``(seed, i)``: the first 100,000 products of a 1,000,000-product
catalogue are the 100,000-product catalogue, so vectors computed for the larger one serve the
smaller.

Run: ``python -m benchmarks.catalogue_gen --n 1000000 --out var/bench/catalogue-1000000.jsonl``.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import random
import re
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from benchmarks.common import shared_dir

#: Departments with keywords that put a product noun into them (first match wins).
DEPARTMENTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Bath", ("shower", "toilet", "tub", "vanity", "faucet", "sink", "bath", "towel", "mirror")),
    ("Lighting", ("light", "lamp", "bulb", "chandelier", "pendant", "sconce", "fixture", "led")),
    ("Electrical", ("outlet", "switch", "wire", "cable", "breaker", "cord", "plug", "volt")),
    ("Tools", ("drill", "saw", "wrench", "hammer", "driver", "bit", "blade", "tool", "sander")),
    ("Hardware", ("screw", "bolt", "nut", "hinge", "knob", "pull", "lock", "nail", "bracket")),
    ("Flooring", ("tile", "floor", "carpet", "laminate", "plank", "rug", "mat", "grout")),
    ("Paint", ("paint", "stain", "primer", "brush", "roller", "coating", "sealer", "caulk")),
    ("Plumbing", ("pipe", "valve", "fitting", "drain", "hose", "pump", "heater", "filter")),
    ("Outdoors", ("patio", "grill", "garden", "planter", "mower", "fence", "deck", "lawn")),
    ("Kitchen", ("cabinet", "range", "microwave", "refrigerator", "dishwasher", "kitchen")),
    ("Doors & Windows", ("door", "window", "blind", "shade", "curtain", "shutter", "screen")),
    ("Building Materials", ("lumber", "board", "panel", "moulding", "trim", "drywall", "roof")),
    ("Storage", ("shelf", "shelving", "rack", "bin", "organizer", "hook", "storage", "box")),
    ("Furniture", ("chair", "table", "sofa", "bench", "desk", "stool", "bed", "dresser")),
    ("Heating & Cooling", ("fan", "air", "thermostat", "vent", "duct", "furnace", "humidifier")),
)
FALLBACK_DEPARTMENTS = ("Home Decor", "Appliances", "Home Improvement", "Cleaning", "Automotive")

COLOURS = (
    "White", "Black", "Gray", "Silver", "Brown", "Beige", "Ivory", "Red", "Burgundy", "Orange",
    "Yellow", "Gold", "Green", "Olive", "Teal", "Blue", "Navy", "Purple", "Pink", "Natural",
    "Chrome", "Brushed Nickel", "Oil Rubbed Bronze", "Stainless Steel", "Satin Nickel",
    "Antique Brass", "Matte Black", "Espresso", "Cherry", "Walnut", "Charcoal", "Sand",
)  # fmt: skip
MATERIALS = (
    "Steel", "Stainless Steel", "Aluminum", "Brass", "Copper", "Oak", "Pine", "Cedar", "Maple",
    "Bamboo", "Vinyl", "PVC", "Plastic", "Glass", "Ceramic", "Porcelain", "Concrete", "Resin",
    "Fiberglass", "Cotton", "Polyester", "Wool", "Rubber", "Granite", "Marble", "MDF",
)  # fmt: skip
FINISHES = ("Matte", "Gloss", "Satin", "Semi-Gloss", "Textured", "Polished", "Brushed", "Hammered")
BUILTIN_NOUNS = (
    "Faucet", "Shower Head", "Vanity", "Ceiling Fan", "Pendant Light", "Door Knob", "Cabinet Pull",
    "Drill", "Circular Saw", "Tile", "Area Rug", "Paint Roller", "Garden Hose", "Patio Chair",
    "Storage Shelf", "Window Blind", "Wall Mirror", "Toilet Seat", "Deck Screw", "Extension Cord",
)  # fmt: skip
BUILTIN_MODIFIERS = (
    "Heavy Duty", "Premium", "Outdoor", "Indoor", "Adjustable", "Cordless", "Compact", "Modern",
    "Classic", "Rustic", "Decorative", "Commercial", "Universal", "Waterproof", "Folding", "Smart",
)  # fmt: skip
SYLLABLES = (
    "ar", "bel", "cor", "dan", "el", "far", "gen", "hal", "ir", "jas", "kor", "lum", "mar", "nor",
    "ob", "pel", "quin", "ros", "sol", "tor", "ul", "vel", "wex", "xan", "yor", "zel", "tri", "ka",
    "vo", "ri", "sta", "mon", "ex", "ax", "lo", "ven", "dur", "pro", "tek", "max", "flo", "gra",
)  # fmt: skip
BRAND_SUFFIXES = ("", "", "", " Home", " Pro", " Industries", " Co.", " Living", " Works", " & Co.")
SIZES = (
    "1/2 in.", "3/4 in.", "1 in.", "1-1/4 in.", "2 in.", "3 in.", "4 in.", "6 in.", "8 in.",
    "10 in.", "12 in.", "18 in.", "24 in.", "30 in.", "36 in.", "48 in.", "60 in.", "72 in.",
)  # fmt: skip
LENGTHS = ("2 ft.", "3 ft.", "4 ft.", "6 ft.", "8 ft.", "10 ft.", "12 ft.", "16 ft.", "25 ft.")
PACKS = ("2-Pack", "4-Pack", "6-Pack", "10-Pack", "12-Pack", "25-Pack", "50-Pack", "100-Pack")
CLOTH_SIZES = ("XS", "S", "M", "L", "XL", "XXL")
AVAILABILITY = ("in_stock",) * 85 + ("out_of_stock",) * 10 + ("backorder",) * 3 + ("preorder",) * 2
DESCRIPTION_OPENERS = (
    "Built for everyday use,", "Designed for easy installation,", "A reliable choice for any home,",
    "Made to last,", "Ideal for remodels and new construction,", "Engineered for performance,",
)  # fmt: skip
DESCRIPTION_MIDDLES = (
    "this {noun} features a {finish} {material} construction",
    "the {noun} combines {material} durability with a {finish} look",
    "this {brand} {noun} resists corrosion and wear",
    "the {colour} {noun} fits most standard setups",
)
DESCRIPTION_CLOSERS = (
    "Backed by a limited lifetime warranty.", "Tools required for installation.",
    "Easy to clean with mild soap and water.", "Meets applicable safety standards.",
    "Pairs well with other items from the {brand} collection.", "Ships in recyclable packaging.",
)  # fmt: skip

_WORD = re.compile(r"[A-Za-z][A-Za-z\-]*[A-Za-z]")
_STOP = frozenset((
    "in", "with", "and", "for", "of", "the", "to", "a", "x", "on", "by", "or", "at", "from", "ft",
    "gal", "oz", "lb", "sq", "cu", "amp", "watt", "volt", "pack", "piece", "set", "kit", "not",
    "included",
))  # fmt: skip


@dataclass(frozen=True, slots=True)
class WordMaterial:
    """Word pools the generator draws from.

    Attributes:
        nouns: Product noun phrases (one or two words, title case).
        modifiers: Words or short phrases that go before a noun.
        words: Other title words, for descriptions and variety.
    """

    nouns: tuple[str, ...]
    modifiers: tuple[str, ...]
    words: tuple[str, ...]


def load_word_material(shared: Path | None = None) -> WordMaterial:
    """Word pools from the Home Depot titles, or the built-in lists when they are absent.

    Nouns are the last one or two words before ``in``/``with``/``(`` of each title, modifiers
    the words before them, so combinations stay plausible ("Brushed Steel Cabinet Pull").

    Args:
        shared: The shared data folder (holding ``home_depot/``); None finds it like the
            other benchmarks do.

    Returns:
        The word pools (sorted, so the same data gives the same catalogue).
    """
    path = (shared or shared_dir() / "data") / "home_depot" / "products.csv.gz"
    if not path.is_file():
        return WordMaterial(BUILTIN_NOUNS, BUILTIN_MODIFIERS, BUILTIN_MODIFIERS + BUILTIN_NOUNS)
    nouns: Counter[str] = Counter()
    modifiers: Counter[str] = Counter()
    words: Counter[str] = Counter()
    with gzip.open(path, "rt", encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        next(reader, None)
        for row in reader:
            if len(row) < 2:
                continue
            head = re.split(r"\s(?:in|with|for)\s|\(|,", row[1])[0]
            tokens = [t for t in _WORD.findall(head) if t.lower() not in _STOP]
            for token in _WORD.findall(row[1]):
                if token.lower() not in _STOP and len(token) > 2:
                    words[token.title()] += 1
            if len(tokens) < 3:
                continue
            # Skip the first token: it is mostly the brand.
            noun = " ".join(t.title() for t in tokens[-2:])
            nouns[noun] += 1
            for t in tokens[1:-2]:
                if len(t) > 2:
                    modifiers[t.title()] += 1
    keep = lambda c, least: tuple(sorted(w for w, n in c.items() if n >= least))  # noqa: E731
    return WordMaterial(keep(nouns, 2), keep(modifiers, 2), keep(words, 1))


def make_brand(rng: random.Random) -> str:
    """A made-up brand name from two or three syllables and an optional suffix."""
    parts = [rng.choice(SYLLABLES) for _ in range(rng.choice((2, 3, 3)))]
    return "".join(parts).title() + rng.choice(BRAND_SUFFIXES)


class CatalogueGenerator:
    """Deterministic generated products.

    Args:
        seed: Catalogue seed.
        material: Word pools; None loads them (:func:`load_word_material`).
        n_brands: Distinct brands to draw from (a brand also owns a few favourite nouns, so
            brand and product type correlate as in a real shop).
    """

    def __init__(
        self, seed: int = 0, material: WordMaterial | None = None, n_brands: int = 40_000
    ) -> None:
        if n_brands < 1:
            raise ValueError(f"n_brands must be at least 1, got {n_brands}")
        self.seed = seed
        self.material = material or load_word_material()
        brand_rng = random.Random(seed)
        brands = {make_brand(brand_rng) for _ in range(n_brands)}
        self.brands = tuple(sorted(brands))
        self._departments = {noun: _department(noun) for noun in self.material.nouns}

    def product(self, i: int) -> dict[str, Any]:
        """Product ``i`` as a JSON Lines object (canonical keys of ``docs/catalogue.md``)."""
        rng = random.Random(self.seed * 1_000_003 + i * 7_919 + 17)
        m = self.material
        # Zipf-like brand popularity: a few brands are big, most are small.
        brand = self.brands[int(len(self.brands) * rng.random() ** 2.2)]
        noun = m.nouns[int(len(m.nouns) * rng.random() ** 1.3)]
        department, subcategory = self._departments[noun]
        colour = rng.choice(COLOURS)
        material = rng.choice(MATERIALS)
        finish = rng.choice(FINISHES)
        mods = [rng.choice(m.modifiers) for _ in range(rng.choice((0, 1, 1, 2, 2, 3)))]
        parts = [brand, *mods]
        if rng.random() < 0.5:
            parts.append(material)
        parts.append(noun)
        size = rng.choice(SIZES)
        attributes: dict[str, Any] = {"material": material, "finish": finish}
        shape = rng.random()
        if shape < 0.35:
            length = rng.choice(LENGTHS)
            parts.insert(1, f"{size} x {length}")
            attributes |= {"width": size, "length": length}
        elif shape < 0.55:
            parts.insert(1, size)
            attributes["size"] = size
        elif shape < 0.65 and department in ("Furniture", "Home Decor", "Outdoors"):
            attributes["size"] = rng.sample(CLOTH_SIZES, rng.randint(1, 3))
        title = " ".join(parts)
        if rng.random() < 0.7:
            title += f" in {colour}"
        if rng.random() < 0.15:
            title += f" ({rng.choice(PACKS)})"
        price = round(rng.lognormvariate(3.3, 1.1) + 0.99, 2)
        product: dict[str, Any] = {
            "id": f"G{i:08d}",
            "title": title,
            "brand": brand,
            "categories": [[department, subcategory, noun]],
            "colours": [colour],
            "attributes": attributes,
            "price": price,
            "currency": "USD",
            "availability": rng.choice(AVAILABILITY),
            "description": self._description(rng, brand, noun, colour, material, finish),
        }
        if rng.random() < 0.2:
            product["sale_price"] = round(price * rng.uniform(0.6, 0.95), 2)
        if rng.random() < 0.5:
            product["gtin"] = f"{rng.randrange(10**12, 10**13)}"
        return product

    def _description(
        self, rng: random.Random, brand: str, noun: str, colour: str, material: str, finish: str
    ) -> str:
        fill = {
            "noun": noun.lower(),
            "brand": brand,
            "colour": colour.lower(),
            "material": material.lower(),
            "finish": finish.lower(),
        }
        extra = " ".join(rng.choice(self.material.words).lower() for _ in range(rng.randint(3, 8)))
        return " ".join(
            [
                rng.choice(DESCRIPTION_OPENERS),
                rng.choice(DESCRIPTION_MIDDLES).format(**fill) + ".",
                f"Suited to {extra}.",
                rng.choice(DESCRIPTION_CLOSERS).format(**fill),
            ]
        )

    def products(self, n: int, start: int = 0) -> Iterator[dict[str, Any]]:
        """Products ``start`` .. ``start + n - 1``."""
        for i in range(start, start + n):
            yield self.product(i)


def _department(noun: str) -> tuple[str, str]:
    """Department and subcategory of a noun phrase (keyword table, else a stable fallback)."""
    head = noun.split()[-1]
    lowered = noun.lower()
    for department, keywords in DEPARTMENTS:
        if any(k in lowered for k in keywords):
            return department, _plural(head)
    return FALLBACK_DEPARTMENTS[sum(map(ord, head)) % len(FALLBACK_DEPARTMENTS)], _plural(head)


def _plural(word: str) -> str:
    if word.endswith(("s", "x", "ch", "sh")):
        return word if word.endswith("s") else word + "es"
    if word.endswith("y") and word[-2:-1] not in ("a", "e", "o", "u"):
        return word[:-1] + "ies"
    return word + "s"


def write_catalogue(path: Path, n: int, seed: int = 0) -> Path:
    """Write ``n`` generated products to ``path`` (JSON Lines), atomically.

    Args:
        path: Output file.
        n: Number of products.
        seed: Catalogue seed.

    Returns:
        ``path``.
    """
    generator = CatalogueGenerator(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as fh:
        for product in generator.products(n):
            fh.write(orjson.dumps(product) + b"\n")
    tmp.replace(path)
    return path


def main(argv: list[str] | None = None) -> int:
    """Command line: write a generated catalogue."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="number of products")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="JSON Lines file to write")
    args = parser.parse_args(argv)
    out = args.out or Path("var/bench") / f"catalogue-{args.n}-s{args.seed}.jsonl"
    started = time.perf_counter()
    write_catalogue(out, args.n, args.seed)
    print(f"wrote {args.n} products to {out} in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
