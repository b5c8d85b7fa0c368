"""A Polish shop for the voice benchmark: a generated catalogue, queries and graded judgements.

No public Polish product-search set with shopper queries and human grades is reachable here, so
the benchmark makes its own from a closed description of 30 kinds of product: each product is a
kind with a use (``ogrodowe``), a material (``drewniane``) and a colour (``żółte``), written as a
Polish title with the adjectives agreeing with the noun's gender (``Krzesło ogrodowe drewniane,
żółte``); a sixth of the products are written in English, as mixed catalogues are. Queries are
what a shopper says: adjectives before the noun (``żółte krzesło ogrodowe``), some in the plural
(``czarne krzesła biurowe``), some naming only the kind and one property. A product's grade
comes from the description, never from a search: 3 (gain 2) when its kind and every property the
query names match, 2 (gain 1) when its kind matches and at most one property differs, else
unjudged (gain 0). Everything is deterministic for a seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from search.types import Product

Gender = Literal["m", "f", "n"]


@dataclass(frozen=True, slots=True)
class Word:
    """An adjective: its Polish masculine form and its English translation."""

    pl: str
    en: str


def agree(adjective: str, gender: Gender, plural: bool = False) -> str:
    """The Polish adjective in the gender (and number) of a noun.

    ``czarny`` -> ``czarna`` (f), ``czarne`` (n, and every non-personal plural); ``niebieski``
    -> ``niebieska``, ``niebieskie``.
    """
    if " " in adjective:  # a fixed phrase ("do salonu")
        return adjective
    stem, ending = adjective[:-1], adjective[-1]
    if plural or gender == "n":
        return stem + ("ie" if ending == "i" else "e")
    if gender == "f":
        # "niebieski" -> "niebieska", but a soft stem keeps its i: "letni" -> "letnia".
        return stem + "a" if ending == "y" or stem[-1] in "kg" else adjective + "a"
    return adjective


@dataclass(frozen=True, slots=True)
class Kind:
    """A kind of product.

    Attributes:
        noun: Polish singular (nominative).
        plural: Polish plural (nominative).
        gender: Grammatical gender of ``noun``.
        category: Category path.
        uses: Adjectives of use or form (``ogrodowy``).
        materials: Material adjectives (empty for kinds that are not described by one).
        en: English noun.
    """

    noun: str
    plural: str
    gender: Gender
    category: tuple[str, ...]
    uses: tuple[Word, ...]
    materials: tuple[Word, ...]
    en: str


def _w(*pairs: str) -> tuple[Word, ...]:
    return tuple(Word(pairs[i], pairs[i + 1]) for i in range(0, len(pairs), 2))


COLOURS: tuple[Word, ...] = _w(
    "czarny", "black", "biały", "white", "czerwony", "red", "zielony", "green", "niebieski",
    "blue", "żółty", "yellow", "szary", "grey", "brązowy", "brown", "różowy", "pink",
    "granatowy", "navy", "beżowy", "beige", "pomarańczowy", "orange",
)  # fmt: skip
"""Colour adjectives (Polish masculine form, English)."""

KINDS: tuple[Kind, ...] = (
    Kind("krzesło", "krzesła", "n", ("Meble", "Krzesła"),
         _w("ogrodowy", "garden", "kuchenny", "kitchen", "biurowy", "office", "składany", "folding"),
         _w("drewniany", "wooden", "dębowy", "oak", "metalowy", "metal", "plastikowy", "plastic"),
         "chair"),
    Kind("sofa", "sofy", "f", ("Meble", "Sofy"),
         _w("narożny", "corner", "rozkładany", "sofa bed", "dwuosobowy", "two-seat"),
         _w("skórzany", "leather", "welurowy", "velvet", "lniany", "linen"), "sofa"),
    Kind("stół", "stoły", "m", ("Meble", "Stoły"),
         _w("rozkładany", "extending", "kuchenny", "kitchen", "ogrodowy", "garden", "okrągły",
            "round"),
         _w("dębowy", "oak", "drewniany", "wooden", "szklany", "glass"), "table"),
    Kind("lampa", "lampy", "f", ("Oświetlenie", "Lampy"),
         _w("stojący", "floor", "wiszący", "pendant", "biurkowy", "desk", "nocny", "bedside"),
         _w("metalowy", "metal", "szklany", "glass", "ceramiczny", "ceramic"), "lamp"),
    Kind("szafa", "szafy", "f", ("Meble", "Szafy"),
         _w("przesuwny", "sliding", "narożny", "corner", "dziecięcy", "children's"),
         _w("dębowy", "oak", "sosnowy", "pine"), "wardrobe"),
    Kind("łóżko", "łóżka", "n", ("Meble", "Łóżka"),
         _w("piętrowy", "bunk", "dziecięcy", "children's", "małżeński", "double"),
         _w("drewniany", "wooden", "metalowy", "metal", "tapicerowany", "upholstered"), "bed"),
    Kind("fotel", "fotele", "m", ("Meble", "Fotele"),
         _w("biurowy", "office", "obrotowy", "swivel", "bujany", "rocking"),
         _w("skórzany", "leather", "welurowy", "velvet", "rattanowy", "rattan"), "armchair"),
    Kind("komoda", "komody", "f", ("Meble", "Komody"),
         _w("wysoki", "tall", "niski", "low", "dziecięcy", "children's"),
         _w("dębowy", "oak", "sosnowy", "pine", "lakierowany", "lacquered"), "chest of drawers"),
    Kind("biurko", "biurka", "n", ("Meble", "Biurka"),
         _w("narożny", "corner", "regulowany", "adjustable", "dziecięcy", "children's"),
         _w("dębowy", "oak", "szklany", "glass", "metalowy", "metal"), "desk"),
    Kind("regał", "regały", "m", ("Meble", "Regały"),
         _w("wysoki", "tall", "wiszący", "wall", "narożny", "corner"),
         _w("metalowy", "metal", "sosnowy", "pine", "bambusowy", "bamboo"), "bookcase"),
    Kind("dywan", "dywany", "m", ("Dom", "Dywany"),
         _w("okrągły", "round", "włochaty", "shaggy", "dziecięcy", "children's"),
         _w("wełniany", "wool", "bawełniany", "cotton", "jutowy", "jute"), "rug"),
    Kind("poduszka", "poduszki", "f", ("Dom", "Poduszki"),
         _w("dekoracyjny", "decorative", "ortopedyczny", "orthopaedic", "ogrodowy", "garden"),
         _w("bawełniany", "cotton", "lniany", "linen", "aksamitny", "velvet"), "cushion"),
    Kind("kurtka", "kurtki", "f", ("Odzież", "Kurtki"),
         _w("zimowy", "winter", "przeciwdeszczowy", "rain", "damski", "women's", "męski",
            "men's"),
         _w("skórzany", "leather", "puchowy", "down", "jeansowy", "denim"), "jacket"),
    Kind("sukienka", "sukienki", "f", ("Odzież", "Sukienki"),
         _w("wieczorowy", "evening", "letni", "summer", "koktajlowy", "cocktail"),
         _w("bawełniany", "cotton", "lniany", "linen", "jedwabny", "silk"), "dress"),
    Kind("koszula", "koszule", "f", ("Odzież", "Koszule"),
         _w("męski", "men's", "damski", "women's", "elegancki", "formal"),
         _w("bawełniany", "cotton", "lniany", "linen", "flanelowy", "flannel"), "shirt"),
    Kind("sweter", "swetry", "m", ("Odzież", "Swetry"),
         _w("damski", "women's", "męski", "men's", "świąteczny", "Christmas"),
         _w("wełniany", "wool", "kaszmirowy", "cashmere", "bawełniany", "cotton"), "sweater"),
    Kind("czajnik", "czajniki", "m", ("Kuchnia", "Czajniki"),
         _w("elektryczny", "electric", "turystyczny", "camping"),
         _w("stalowy", "steel", "szklany", "glass", "emaliowany", "enamel"), "kettle"),
    Kind("patelnia", "patelnie", "f", ("Kuchnia", "Patelnie"),
         _w("głęboki", "deep", "grillowy", "grill"),
         _w("żeliwny", "cast iron", "stalowy", "steel", "ceramiczny", "ceramic"), "frying pan"),
    Kind("garnek", "garnki", "m", ("Kuchnia", "Garnki"),
         _w("indukcyjny", "induction", "ciśnieniowy", "pressure"),
         _w("stalowy", "steel", "emaliowany", "enamel", "żeliwny", "cast iron"), "pot"),
    Kind("kubek", "kubki", "m", ("Kuchnia", "Kubki"),
         _w("termiczny", "thermal", "podróżny", "travel"),
         _w("ceramiczny", "ceramic", "szklany", "glass", "porcelanowy", "porcelain"), "mug"),
    Kind("wiertarka", "wiertarki", "f", ("Narzędzia", "Wiertarki"),
         _w("akumulatorowy", "cordless", "udarowy", "hammer", "kompaktowy", "compact"), (),
         "drill"),
    Kind("młotek", "młotki", "m", ("Narzędzia", "Młotki"),
         _w("ciesielski", "claw", "murarski", "brick"),
         _w("gumowy", "rubber", "stalowy", "steel", "drewniany", "wooden"), "hammer"),
    Kind("kosiarka", "kosiarki", "f", ("Ogród", "Kosiarki"),
         _w("elektryczny", "electric", "spalinowy", "petrol", "akumulatorowy", "cordless",
            "ręczny", "manual"), (), "lawn mower"),
    Kind("grill", "grille", "m", ("Ogród", "Grille"),
         _w("gazowy", "gas", "węglowy", "charcoal", "elektryczny", "electric"),
         _w("żeliwny", "cast iron", "stalowy", "steel"), "barbecue"),
    Kind("parasol", "parasole", "m", ("Ogród", "Parasole"),
         _w("ogrodowy", "garden", "plażowy", "beach", "składany", "folding"),
         _w("aluminiowy", "aluminium", "drewniany", "wooden"), "umbrella"),
    Kind("namiot", "namioty", "m", ("Sport", "Namioty"),
         _w("turystyczny", "camping", "dwuosobowy", "two-person", "czteroosobowy",
            "four-person"), (), "tent"),
    Kind("rower", "rowery", "m", ("Sport", "Rowery"),
         _w("górski", "mountain", "miejski", "city", "dziecięcy", "children's", "elektryczny",
            "electric"),
         _w("aluminiowy", "aluminium", "stalowy", "steel"), "bike"),
    Kind("plecak", "plecaki", "m", ("Sport", "Plecaki"),
         _w("szkolny", "school", "turystyczny", "hiking", "miejski", "city"),
         _w("skórzany", "leather", "bawełniany", "canvas"), "backpack"),
    Kind("zegarek", "zegarki", "m", ("Akcesoria", "Zegarki"),
         _w("męski", "men's", "damski", "women's", "sportowy", "sports"),
         _w("stalowy", "steel", "skórzany", "leather"), "watch"),
    Kind("ręcznik", "ręczniki", "m", ("Dom", "Ręczniki"),
         _w("kąpielowy", "bath", "plażowy", "beach"),
         _w("bawełniany", "cotton", "bambusowy", "bamboo"), "towel"),
)  # fmt: skip
"""The kinds of product the shop sells."""

BRANDS = ("Kowalski", "Nowak Design", "Dębowy Dwór", "Wiśniewski", "Polmeb", "Sosnowa Chata",
          "Bałtyk", "Tatra", "Mazur", "Zorza")  # fmt: skip
"""Brands, written into titles as shops do."""
_MODELS = ("Sopot", "Kraków", "Gdańsk", "Łódź", "Poznań", "Wrocław", "Lublin", "Toruń")


@dataclass(frozen=True, slots=True)
class Item:
    """A product's description: what the grades are computed from."""

    kind: Kind
    use: Word | None
    material: Word | None
    colour: Word


@dataclass(frozen=True, slots=True)
class Need:
    """What a query asks for: a kind and some of its properties (None: not asked)."""

    kind: Kind
    use: Word | None
    material: Word | None
    colour: Word | None

    def grade(self, item: Item) -> float:
        """3 when everything asked matches, 2 when the kind does and one property differs,
        else 1 (unjudged)."""
        if item.kind != self.kind:
            return 1.0
        asked = [(w, h) for w, h in ((self.use, item.use), (self.material, item.material),
                                     (self.colour, item.colour)) if w is not None]  # fmt: skip
        missed = sum(1 for wanted, has in asked if wanted != has)
        if missed == 0:
            return 3.0
        return 2.0 if missed == 1 else 1.0


def _title_pl(item: Item, brand: str, model: str, rng: random.Random) -> str:
    kind, g = item.kind, item.kind.gender
    parts = [kind.noun.capitalize()]
    if item.use is not None:
        parts.append(agree(item.use.pl, g))
    parts.append(model)
    tail = [agree(w.pl, g) for w in (item.material, item.colour) if w is not None]
    if rng.random() < 0.5:
        return f"{' '.join(parts)}, {', '.join(tail)} – {brand}"
    return f"{brand} {' '.join(parts)} {' '.join(tail)}"


def _title_en(item: Item, brand: str, model: str) -> str:
    words = [w.en for w in (item.colour, item.material, item.use) if w is not None]
    return f"{brand} {model} {' '.join(words)} {item.kind.en}".replace("  ", " ")


def catalogue(seed: int = 0, per_kind: int = 22, english_share: float = 1 / 6) -> list[Item]:
    """The catalogue's descriptions (``per_kind`` products of every kind), in id order."""
    rng = random.Random(seed)
    items: list[Item] = []
    for kind in KINDS:
        for _ in range(per_kind):
            use = rng.choice(kind.uses) if rng.random() < 0.85 else None
            material = rng.choice(kind.materials) if kind.materials else None
            items.append(Item(kind, use, material, rng.choice(COLOURS)))
    return items


def products(seed: int = 0) -> tuple[list[Product], list[Item]]:
    """The catalogue as products (ids ``PL-0000``...) with their descriptions."""
    rng = random.Random(seed + 1)
    items = catalogue(seed)
    out: list[Product] = []
    for i, item in enumerate(items):
        brand, model = rng.choice(BRANDS), rng.choice(_MODELS)
        english = rng.random() < 1 / 6
        title = _title_en(item, brand, model) if english else _title_pl(item, brand, model, rng)
        material = (item.material.en if english else agree(item.material.pl, item.kind.gender)
                    ) if item.material else None  # fmt: skip
        out.append(
            Product(
                id=f"PL-{i:04d}",
                title=title,
                description="" if english else f"{item.kind.noun.capitalize()} marki {brand}.",
                brand=brand,
                categories=(item.kind.category,),
                attributes={"material": (material,)} if material else {},
                colours=(item.colour.en if english else agree(item.colour.pl, item.kind.gender),),
                price=float(rng.randrange(49, 4999)),
                currency="PLN",
                lang="en" if english else "pl",
            )
        )
    return out, items


def _say(need: Need, plural: bool, order: int) -> str:
    kind, g = need.kind, need.kind.gender
    noun = kind.plural if plural else kind.noun

    def adj(word: Word | None) -> str | None:
        return agree(word.pl, g, plural) if word is not None else None

    colour, material, use = adj(need.colour), adj(need.material), adj(need.use)
    if order == 0:  # "żółte drewniane krzesło ogrodowe": the usual spoken order
        words = [colour, material, noun, use]
    elif order == 1:  # "krzesło ogrodowe żółte": a catalogue-like order
        words = [noun, use, material, colour]
    else:  # "ogrodowe krzesło": the property first
        words = [use, material, colour, noun]
    return " ".join(w for w in words if w)


def queries(
    items: list[Item], count: int = 80, seed: int = 0
) -> tuple[dict[str, str], dict[str, dict[str, float]], dict[str, Need]]:
    """Spoken Polish queries with graded judgements over ``items`` (ids as :func:`products`).

    Each query names a kind and one or two of the properties of an existing product; about a
    quarter are in the plural.

    Returns:
        ``(queries, qrels, needs)``: query id -> text, query id -> product id -> grade (only
        grades above 1), and what each query asks for.
    """
    rng = random.Random(seed + 2)
    texts: dict[str, str] = {}
    qrels: dict[str, dict[str, float]] = {}
    needs: dict[str, Need] = {}
    seen: set[str] = set()
    while len(texts) < count:
        target = rng.choice(items)
        props = [p for p in ("use", "material", "colour") if getattr(target, p) is not None]
        asked = set(rng.sample(props, k=min(len(props), rng.choice((1, 2, 2)))))
        need = Need(
            target.kind,
            target.use if "use" in asked else None,
            target.material if "material" in asked else None,
            target.colour if "colour" in asked else None,
        )
        text = _say(need, plural=rng.random() < 0.25, order=rng.choice((0, 0, 1, 2)))
        if text in seen:
            continue
        seen.add(text)
        qid = f"plq{len(texts):03d}"
        texts[qid] = text
        needs[qid] = need
        qrels[qid] = {
            f"PL-{i:04d}": g for i, item in enumerate(items) if (g := need.grade(item)) > 1.0
        }
    return texts, qrels, needs
