"""A Polish-titled catalogue made from the fashion set's labels, and Polish words for its queries.

The fashion set (``shared/data/fashion/styles.csv.gz``) titles its 39,407 products in English
("Turtle Men Navy Blue Shirt"). This module writes the same products as a Polish shop would
("Granatowa koszula męska bawełniana Turtle"): the article type as a Polish noun, the colour
label as an adjective agreeing with it, the gender and use labels, the material the English
title names, the brand (the title's first word). Word order varies by product (noun first or
colour first), as in Polish shops.

The Polish words here are written out by hand for this benchmark, apart from the search
lexicon (``search/data/lexicon_pl_en.tsv``): a Polish shop's own wording, which the lexicon
has to meet. Article types and colours without a natural Polish name are left out.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from search.types import Product

#: Article type -> (Polish noun phrase, gender: m/f/n or pl for a plural noun, category name).
ARTICLES: dict[str, tuple[str, str, str]] = {
    "Tshirts": ("koszulka", "f", "Koszulki"),
    "Shirts": ("koszula", "f", "Koszule"),
    "Casual Shoes": ("buty codzienne", "pl", "Buty"),
    "Watches": ("zegarek", "m", "Zegarki"),
    "Sports Shoes": ("buty sportowe", "pl", "Buty sportowe"),
    "Kurtas": ("kurta", "f", "Kurty"),
    "Handbags": ("torebka", "f", "Torebki"),
    "Tops": ("bluzka", "f", "Bluzki"),
    "Heels": ("szpilki", "pl", "Szpilki"),
    "Sunglasses": ("okulary przeciwsłoneczne", "pl", "Okulary przeciwsłoneczne"),
    "Wallets": ("portfel", "m", "Portfele"),
    "Flip Flops": ("japonki", "pl", "Japonki"),
    "Sandals": ("sandały", "pl", "Sandały"),
    "Briefs": ("majtki", "pl", "Bielizna"),
    "Belts": ("pasek", "m", "Paski"),
    "Backpacks": ("plecak", "m", "Plecaki"),
    "Socks": ("skarpetki", "pl", "Skarpetki"),
    "Formal Shoes": ("półbuty", "pl", "Półbuty"),
    "Jeans": ("jeansy", "pl", "Jeansy"),
    "Perfume and Body Mist": ("perfumy", "pl", "Perfumy"),
    "Trousers": ("spodnie", "pl", "Spodnie"),
    "Shorts": ("szorty", "pl", "Szorty"),
    "Flats": ("baleriny", "pl", "Baleriny"),
    "Bra": ("biustonosz", "m", "Biustonosze"),
    "Dresses": ("sukienka", "f", "Sukienki"),
    "Earrings": ("kolczyki", "pl", "Kolczyki"),
    "Sarees": ("sari", "n", "Sari"),
    "Deodorant": ("dezodorant", "m", "Dezodoranty"),
    "Nail Polish": ("lakier do paznokci", "m", "Lakiery do paznokci"),
    "Lipstick": ("szminka", "f", "Szminki"),
    "Track Pants": ("spodnie dresowe", "pl", "Spodnie dresowe"),
    "Sweatshirts": ("bluza", "f", "Bluzy"),
    "Caps": ("czapka", "f", "Czapki"),
    "Clutches": ("kopertówka", "f", "Kopertówki"),
    "Sweaters": ("sweter", "m", "Swetry"),
    "Ties": ("krawat", "m", "Krawaty"),
    "Jackets": ("kurtka", "f", "Kurtki"),
    "Tunics": ("tunika", "f", "Tuniki"),
    "Nightdress": ("koszula nocna", "f", "Koszule nocne"),
    "Leggings": ("legginsy", "pl", "Legginsy"),
    "Pendant": ("wisiorek", "m", "Wisiorki"),
    "Skirts": ("spódnica", "f", "Spódnice"),
    "Ring": ("pierścionek", "m", "Pierścionki"),
    "Scarves": ("szalik", "m", "Szaliki"),
    "Bracelet": ("bransoletka", "f", "Bransoletki"),
    "Boxers": ("bokserki", "pl", "Bokserki"),
    "Necklace and Chains": ("naszyjnik", "m", "Naszyjniki"),
    "Duffel Bag": ("torba sportowa", "f", "Torby sportowe"),
    "Laptop Bag": ("torba na laptopa", "f", "Torby na laptopa"),
    "Lip Gloss": ("błyszczyk", "m", "Błyszczyki"),
    "Night suits": ("piżama", "f", "Piżamy"),
    "Cufflinks": ("spinki do mankietów", "pl", "Spinki do mankietów"),
}

#: Plural of each singular noun phrase above (queries are written in either number).
PLURALS: dict[str, str] = {
    "koszulka": "koszulki", "koszula": "koszule", "zegarek": "zegarki", "kurta": "kurty",
    "torebka": "torebki", "bluzka": "bluzki", "portfel": "portfele", "pasek": "paski",
    "plecak": "plecaki", "biustonosz": "biustonosze", "sukienka": "sukienki", "sari": "sari",
    "dezodorant": "dezodoranty", "lakier do paznokci": "lakiery do paznokci",
    "szminka": "szminki", "bluza": "bluzy", "czapka": "czapki", "kopertówka": "kopertówki",
    "sweter": "swetry", "krawat": "krawaty", "kurtka": "kurtki", "tunika": "tuniki",
    "koszula nocna": "koszule nocne", "wisiorek": "wisiorki", "spódnica": "spódnice",
    "pierścionek": "pierścionki", "szalik": "szaliki", "bransoletka": "bransoletki",
    "naszyjnik": "naszyjniki", "torba sportowa": "torby sportowe",
    "torba na laptopa": "torby na laptopa", "błyszczyk": "błyszczyki", "piżama": "piżamy",
}  # fmt: skip

#: Colour label -> Polish adjective (masculine, feminine, neuter and plural).
COLOURS: dict[str, tuple[str, str, str]] = {
    "Black": ("czarny", "czarna", "czarne"),
    "White": ("biały", "biała", "białe"),
    "Blue": ("niebieski", "niebieska", "niebieskie"),
    "Brown": ("brązowy", "brązowa", "brązowe"),
    "Grey": ("szary", "szara", "szare"),
    "Red": ("czerwony", "czerwona", "czerwone"),
    "Green": ("zielony", "zielona", "zielone"),
    "Pink": ("różowy", "różowa", "różowe"),
    "Navy Blue": ("granatowy", "granatowa", "granatowe"),
    "Purple": ("fioletowy", "fioletowa", "fioletowe"),
    "Silver": ("srebrny", "srebrna", "srebrne"),
    "Yellow": ("żółty", "żółta", "żółte"),
    "Beige": ("beżowy", "beżowa", "beżowe"),
    "Gold": ("złoty", "złota", "złote"),
    "Maroon": ("bordowy", "bordowa", "bordowe"),
    "Orange": ("pomarańczowy", "pomarańczowa", "pomarańczowe"),
    "Olive": ("oliwkowy", "oliwkowa", "oliwkowe"),
    "Cream": ("kremowy", "kremowa", "kremowe"),
    "Charcoal": ("grafitowy", "grafitowa", "grafitowe"),
    "Peach": ("brzoskwiniowy", "brzoskwiniowa", "brzoskwiniowe"),
    "Lavender": ("lawendowy", "lawendowa", "lawendowe"),
    "Magenta": ("fuksjowy", "fuksjowa", "fuksjowe"),
    "Teal": ("morski", "morska", "morskie"),
    "Mustard": ("musztardowy", "musztardowa", "musztardowe"),
    "Turquoise Blue": ("turkusowy", "turkusowa", "turkusowe"),
    "Rust": ("rdzawy", "rdzawa", "rdzawe"),
    "Copper": ("miedziany", "miedziana", "miedziane"),
    "Steel": ("stalowy", "stalowa", "stalowe"),
    "Multi": ("wielokolorowy", "wielokolorowa", "wielokolorowe"),
    "Metallic": ("metaliczny", "metaliczna", "metaliczne"),
    "Khaki": ("khaki", "khaki", "khaki"),
}

#: Gender label -> Polish adjective (m, f, n/plural).
GENDERS: dict[str, tuple[str, str, str]] = {
    "Men": ("męski", "męska", "męskie"),
    "Women": ("damski", "damska", "damskie"),
    "Boys": ("chłopięcy", "chłopięca", "chłopięce"),
    "Girls": ("dziewczęcy", "dziewczęca", "dziewczęce"),
    "Unisex": ("unisex", "unisex", "unisex"),
}

#: Usage label -> Polish adjective (m, f, n/plural).
USES: dict[str, tuple[str, str, str]] = {
    "Casual": ("codzienny", "codzienna", "codzienne"),
    "Sports": ("sportowy", "sportowa", "sportowe"),
    "Formal": ("wizytowy", "wizytowa", "wizytowe"),
    "Ethnic": ("etniczny", "etniczna", "etniczne"),
    "Party": ("imprezowy", "imprezowa", "imprezowe"),
    "Travel": ("podróżny", "podróżna", "podróżne"),
}

#: Material word of an English title -> Polish adjective (m, f, n/plural).
MATERIALS: dict[str, tuple[str, str, str]] = {
    "cotton": ("bawełniany", "bawełniana", "bawełniane"),
    "leather": ("skórzany", "skórzana", "skórzane"),
    "denim": ("jeansowy", "jeansowa", "jeansowe"),
    "silk": ("jedwabny", "jedwabna", "jedwabne"),
    "linen": ("lniany", "lniana", "lniane"),
    "woollen": ("wełniany", "wełniana", "wełniane"),
    "wool": ("wełniany", "wełniana", "wełniane"),
    "suede": ("zamszowy", "zamszowa", "zamszowe"),
    "canvas": ("płócienny", "płócienna", "płócienne"),
    "knitted": ("dziany", "dziana", "dziane"),
}

_MASTER = {
    "Apparel": "Odzież",
    "Footwear": "Obuwie",
    "Accessories": "Akcesoria",
    "Personal Care": "Kosmetyki",
}


def form(adjective: tuple[str, str, str], gender: str) -> str:
    """The form of an adjective (m, f, n/plural) agreeing with a noun of ``gender``."""
    return adjective[{"m": 0, "f": 1}.get(gender, 2)]


@dataclass(frozen=True, slots=True)
class FashionRow:
    """One labelled product of the fashion set."""

    id: str
    gender: str
    master: str
    sub: str
    article: str
    colour: str
    usage: str
    title: str


def material_of(title: str) -> str | None:
    """The first material word of an English title (lower case), or None."""
    words = title.lower().replace("-", " ").split()
    return next((w for w in words if w in MATERIALS), None)


def polish_product(row: FashionRow) -> Product | None:
    """The product as a Polish shop titles it, or None when its type or colour has no Polish
    name here."""
    article = ARTICLES.get(row.article)
    colour = COLOURS.get(row.colour)
    if article is None or colour is None:
        return None
    noun, gender, category = article
    words = [form(colour, gender)]
    sex = GENDERS.get(row.gender)
    if sex is not None:
        words.append(form(sex, gender))
    material = material_of(row.title)
    if material is not None:
        words.append(form(MATERIALS[material], gender))
    use = USES.get(row.usage)
    if use is not None and row.usage != "Casual":
        words.append(form(use, gender))
    brand = row.title.split()[0] if row.title.split() else ""
    # Half the titles name the noun first ("Koszula granatowa męska"), half the colour first.
    if zlib.crc32(row.id.encode()) % 2:
        title = " ".join([noun.capitalize(), *words, brand])
    else:
        title = " ".join([words[0].capitalize(), noun, *words[1:], brand])
    attributes = {}
    if sex is not None:
        attributes["płeć"] = (form(sex, "pl"),)
    if use is not None:
        attributes["zastosowanie"] = (form(use, "pl"),)
    return Product(
        id=row.id,
        title=title,
        categories=((_MASTER.get(row.master, row.master), category),),
        attributes=attributes,
        brand=brand or None,
        lang="pl",
    )
