"""A small demo catalogue of furniture and clothing that the repository generates itself.

:func:`write_demo_catalogue` writes ``catalogue.jsonl`` and one PNG drawing per product, with no
download and no external data. About a fifth of the products are written in Polish, some have
two colours, prices are in PLN, EUR or USD, and three deliberately bad rows at the end show
what an import report looks like.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import orjson
from PIL import Image, ImageDraw

__all__ = [
    "BACKGROUND",
    "BAD_ROWS",
    "COLOURS",
    "DemoColour",
    "write_demo_catalogue",
]

#: Number of deliberately bad rows appended after the good products.
BAD_ROWS = 3

#: The studio background of the drawings (near-white; the silhouettes' outlines set a white
#: product apart from it).
BACKGROUND = (244, 243, 240)

_IMAGE_SIZE = 256
#: Outline width of the silhouettes: wide enough to stay closed when a picture is shrunk for
#: colour analysis (to 96 pixels), so a white product is not taken for the near-white backdrop.
_EDGE_WIDTH = 3
_POLISH_SHARE = 0.2
_TWO_COLOUR_SHARE = 0.15
_EUR_PER_PLN = 0.23
_USD_PER_PLN = 0.25

Gender = Literal["m", "f", "n"]
Shape = Literal[
    "sofa",
    "chair",
    "table",
    "bed",
    "lamp",
    "shirt",
    "tshirt",
    "jacket",
    "dress",
    "jeans",
    "sneaker",
    "boot",
]


@dataclass(frozen=True, slots=True)
class DemoColour:
    """A colour of the demo catalogue.

    Attributes:
        name: English colour name, as written in the ``colours`` field.
        rgb: Its sRGB value, used to fill the drawings.
        polish: Polish adjective forms: masculine, feminine, neuter (also the plural of things).
        polish_prefix: Form that starts a two-colour compound (``"granatowo"``-biała).
    """

    name: str
    rgb: tuple[int, int, int]
    polish: tuple[str, str, str]
    polish_prefix: str

    def polish_for(self, gender: Gender) -> str:
        """The Polish adjective agreeing with a noun of ``gender``."""
        return self.polish["mfn".index(gender)]


def _colour(name: str, hex_rgb: str, m: str, f: str, n: str, prefix: str) -> DemoColour:
    rgb = (int(hex_rgb[0:2], 16), int(hex_rgb[2:4], 16), int(hex_rgb[4:6], 16))
    return DemoColour(name, rgb, (m, f, n), prefix)


#: Colour name -> colour. sRGB values are CSS named colours (lightblue, black, white, grey,
#: beige, olive, pink; crimson for red, forestgreen for green, gold for yellow, saddlebrown for
#: brown), common references (burgundy, mustard), or, where the screen swatch is a colour no
#: cloth shows, the fabric as it photographs: navy and dark blue as dyed denim and wool look
#: (CSS navy #000080 is a blue primary, which the photo-trained colour extractor reads as
#: purple), a neutral charcoal (the bluish #36454f read as navy) and an off-white cream
#: (#fffdd0 read as gold). With the CSS swatches and one-pixel outlines 81% of the drawings'
#: main photo colours were of their catalogue colour's family (66% with the CNN features a CLI
#: build adds); with these colours and ``_EDGE_WIDTH`` outlines, 97% either way.
COLOURS: dict[str, DemoColour] = {
    c.name: c
    for c in (
        _colour("navy", "1F2A44", "granatowy", "granatowa", "granatowe", "granatowo"),
        _colour(
            "dark blue",
            "1C285A",
            "ciemnoniebieski",
            "ciemnoniebieska",
            "ciemnoniebieskie",
            "ciemnoniebiesko",
        ),
        _colour(
            "light blue",
            "ADD8E6",
            "jasnoniebieski",
            "jasnoniebieska",
            "jasnoniebieskie",
            "jasnoniebiesko",
        ),
        _colour("red", "DC143C", "czerwony", "czerwona", "czerwone", "czerwono"),
        _colour("burgundy", "800020", "bordowy", "bordowa", "bordowe", "bordowo"),
        _colour("black", "000000", "czarny", "czarna", "czarne", "czarno"),
        _colour("white", "FFFFFF", "biały", "biała", "białe", "biało"),
        _colour("grey", "808080", "szary", "szara", "szare", "szaro"),
        _colour("charcoal", "484A4E", "grafitowy", "grafitowa", "grafitowe", "grafitowo"),
        _colour("beige", "F5F5DC", "beżowy", "beżowa", "beżowe", "beżowo"),
        _colour("green", "228B22", "zielony", "zielona", "zielone", "zielono"),
        _colour("olive", "808000", "oliwkowy", "oliwkowa", "oliwkowe", "oliwkowo"),
        _colour("yellow", "FFD700", "żółty", "żółta", "żółte", "żółto"),
        _colour("mustard", "E1AD01", "musztardowy", "musztardowa", "musztardowe", "musztardowo"),
        _colour("pink", "FFC0CB", "różowy", "różowa", "różowe", "różowo"),
        _colour("brown", "8B4513", "brązowy", "brązowa", "brązowe", "brązowo"),
        _colour("cream", "F0E8CD", "kremowy", "kremowa", "kremowe", "kremowo"),
    )
}

_MATERIALS_PL = {
    "velvet": "welur",
    "linen": "len",
    "bouclé": "bukla",
    "leather": "skóra",
    "oak": "dąb",
    "walnut": "orzech",
    "beech": "buk",
    "metal": "metal",
    "glass": "szkło",
    "brass": "mosiądz",
    "ceramic": "ceramika",
    "cotton": "bawełna",
    "wool": "wełna",
    "denim": "denim",
    "suede": "zamsz",
    "polyester": "poliester",
    "viscose": "wiskoza",
}


@dataclass(frozen=True, slots=True)
class _Kind:
    """One kind of product and how to describe and draw it."""

    category: tuple[str, ...]
    shape: Shape
    brands: tuple[str, ...]
    models: tuple[str, ...]
    forms: tuple[str, ...]
    # (Polish noun phrase, its gender, the material it implies or "")
    forms_pl: tuple[tuple[str, Gender, str], ...]
    materials: tuple[str, ...]
    colours: tuple[str, ...]
    sizes: tuple[str, ...]
    price_pln: tuple[int, int]
    title: str
    description: str
    description_pl: str
    weight: int
    gender: tuple[str, ...] = ()


_FURNITURE_BRANDS = ("Nordhaus", "Kowalski Meble", "Lumo Living", "Dębowy Dwór", "Fjordline")
_CLOTHING_BRANDS = ("UrbanThread", "Wiśniewska Atelier", "Northbound", "Linnea")
_SHOE_BRANDS = ("StrideLab", "Northbound", "Góral Boots")
_CITIES = ("Oslo", "Bergen", "Malmö", "Kraków", "Sopot", "Gdańsk", "Aarhus", "Łódź", "Turku")

_KINDS: tuple[_Kind, ...] = (
    _Kind(
        category=("Furniture", "Sofas"),
        shape="sofa",
        brands=_FURNITURE_BRANDS,
        models=_CITIES,
        forms=("3-Seater Sofa", "2-Seater Sofa", "Corner Sofa", "Sofa Bed"),
        forms_pl=(
            ("Sofa 3-osobowa", "f", ""),
            ("Sofa narożna", "f", ""),
            ("Kanapa rozkładana", "f", ""),
        ),
        materials=("velvet", "linen", "bouclé", "leather"),
        colours=(
            "navy",
            "grey",
            "charcoal",
            "beige",
            "green",
            "olive",
            "mustard",
            "pink",
            "burgundy",
            "cream",
        ),
        sizes=(),
        price_pln=(1499, 6999),
        title="{brand} {model} {form} in {Colour} {Material}",
        description="A {form_lower} upholstered in soft {material} with deep seat cushions "
        "and solid oak legs. Removable covers, easy to keep clean.",
        description_pl="Wygodna, głęboka kanapa na nóżkach z litego dębu. Materiał obicia: "
        "{material_pl}. Zdejmowane pokrowce.",
        weight=12,
    ),
    _Kind(
        category=("Furniture", "Chairs"),
        shape="chair",
        brands=_FURNITURE_BRANDS,
        models=_CITIES,
        forms=("Dining Chair", "Upholstered Chair", "Lounge Chair"),
        forms_pl=(
            ("Krzesło dębowe", "n", "oak"),
            ("Krzesło tapicerowane", "n", "velvet"),
            ("Fotel wypoczynkowy", "m", ""),
        ),
        materials=("oak", "beech", "walnut", "velvet"),
        colours=("black", "white", "grey", "green", "mustard", "navy", "brown", "beige"),
        sizes=(),
        price_pln=(249, 1499),
        title="{brand} {model} {Material} {form}, {Colour}",
        description="A sturdy {form_lower} in {material} with a gently curved backrest. "
        "Sold individually.",
        description_pl="Solidne krzesło z wygodnym, wyprofilowanym oparciem. Materiał: "
        "{material_pl}. Sprzedawane na sztuki.",
        weight=10,
    ),
    _Kind(
        category=("Furniture", "Tables"),
        shape="table",
        brands=_FURNITURE_BRANDS,
        models=_CITIES,
        forms=("Dining Table", "Coffee Table", "Extending Table"),
        forms_pl=(
            ("Stół dębowy", "m", "oak"),
            ("Stolik kawowy", "m", ""),
            ("Stół rozkładany", "m", ""),
        ),
        materials=("oak", "walnut", "beech", "glass"),
        colours=("brown", "black", "white", "beige", "grey"),
        sizes=("120x80 cm", "160x90 cm", "200x100 cm"),
        price_pln=(599, 4499),
        title="{brand} {model} {Material} {form}, {Colour}",
        description="A {form_lower} with a {material} top and a clean Scandinavian frame. "
        "Seats four to eight.",
        description_pl="Stół w skandynawskim stylu z blatem z materiału: {material_pl}. "
        "Mieści od czterech do ośmiu osób.",
        weight=8,
    ),
    _Kind(
        category=("Furniture", "Beds"),
        shape="bed",
        brands=_FURNITURE_BRANDS,
        models=_CITIES,
        forms=("Upholstered Double Bed", "King Size Bed", "Platform Bed"),
        forms_pl=(("Łóżko tapicerowane", "n", ""), ("Łóżko dębowe", "n", "oak")),
        materials=("velvet", "linen", "oak", "bouclé"),
        colours=("grey", "beige", "navy", "green", "pink", "cream", "charcoal"),
        sizes=("140x200", "160x200", "180x200"),
        price_pln=(1299, 5999),
        title="{brand} {model} {form} in {Colour} {Material}",
        description="A {form_lower} with a padded headboard in {material} and a slatted base. "
        "Mattress sold separately.",
        description_pl="Łóżko z miękkim zagłówkiem i stelażem. Materiał: {material_pl}. "
        "Materac sprzedawany osobno.",
        weight=7,
    ),
    _Kind(
        category=("Lighting", "Lamps"),
        shape="lamp",
        brands=("Lumo Living", "Nordhaus", "Świetlik"),
        models=("Luna", "Aura", "Halo", "Iskra", "Nova"),
        forms=("Floor Lamp", "Table Lamp", "Bedside Lamp"),
        forms_pl=(("Lampa stojąca", "f", ""), ("Lampka nocna", "f", "")),
        materials=("linen", "metal", "brass", "ceramic", "glass"),
        colours=("white", "black", "yellow", "mustard", "green", "pink", "beige", "grey"),
        sizes=(),
        price_pln=(149, 999),
        title="{brand} {model} {form} with {Colour} {Material} Shade",
        description="A {form_lower} with a {material} shade that casts a warm, even light. "
        "E27 bulb, not included.",
        description_pl="Lampa dająca ciepłe, rozproszone światło. Klosz: {material_pl}. "
        "Gwint E27, żarówka nie jest dołączona.",
        weight=6,
    ),
    _Kind(
        category=("Clothing", "Shirts"),
        shape="shirt",
        brands=_CLOTHING_BRANDS,
        models=("Slim Fit", "Regular Fit", "Relaxed Fit"),
        forms=("Oxford Shirt", "Linen Shirt", "Poplin Shirt", "Flannel Shirt"),
        forms_pl=(
            ("Koszula lniana", "f", "linen"),
            ("Koszula Oxford", "f", "cotton"),
            ("Koszula flanelowa", "f", "cotton"),
        ),
        materials=("cotton", "linen"),
        colours=("white", "light blue", "navy", "pink", "olive", "burgundy", "black", "beige"),
        sizes=("S", "M", "L", "XL", "XXL"),
        price_pln=(99, 399),
        title="{brand} {model} {form}, {Colour}",
        description="A {model_lower} {form_lower} in breathable {material} with a button-down "
        "collar. Machine washable at 30°C.",
        description_pl="Przewiewna koszula z kołnierzykiem na guziki. Materiał: {material_pl}. "
        "Można prać w pralce w 30°C.",
        weight=10,
        gender=("men", "women", "unisex"),
    ),
    _Kind(
        category=("Clothing", "T-Shirts"),
        shape="tshirt",
        brands=_CLOTHING_BRANDS,
        models=("Essential", "Heavyweight", "Organic"),
        forms=("Crew Neck T-Shirt", "V-Neck T-Shirt", "Pocket T-Shirt"),
        forms_pl=(("Koszulka bawełniana", "f", "cotton"), ("T-shirt bawełniany", "m", "cotton")),
        materials=("cotton",),
        colours=("white", "black", "grey", "navy", "red", "yellow", "green", "pink", "olive"),
        sizes=("XS", "S", "M", "L", "XL"),
        price_pln=(39, 149),
        title="{brand} {model} {form}, {Colour}",
        description="An everyday {form_lower} in soft {material} jersey with a relaxed cut.",
        description_pl="Codzienna koszulka o luźnym kroju z miękkiej dzianiny. Materiał: "
        "{material_pl}.",
        weight=8,
        gender=("men", "women", "unisex"),
    ),
    _Kind(
        category=("Clothing", "Dresses"),
        shape="dress",
        brands=("Wiśniewska Atelier", "Linnea", "UrbanThread"),
        models=("Midi", "Maxi", "Mini"),
        forms=("Wrap Dress", "Slip Dress", "Shirt Dress", "A-Line Dress"),
        forms_pl=(
            ("Sukienka midi", "f", ""),
            ("Sukienka kopertowa", "f", ""),
            ("Sukienka lniana", "f", "linen"),
        ),
        materials=("viscose", "linen", "cotton", "polyester"),
        colours=(
            "red",
            "burgundy",
            "black",
            "navy",
            "green",
            "yellow",
            "pink",
            "mustard",
            "white",
        ),
        sizes=("34", "36", "38", "40", "42"),
        price_pln=(149, 599),
        title="{brand} {model} {form} in {Colour}",
        description="A flowing {model_lower} {form_lower} in {material} with a tie waist.",
        description_pl="Zwiewna sukienka z wiązaniem w talii. Materiał: {material_pl}.",
        weight=9,
        gender=("women",),
    ),
    _Kind(
        category=("Clothing", "Jeans"),
        shape="jeans",
        brands=_CLOTHING_BRANDS,
        models=("Straight Leg", "Slim", "Relaxed", "Tapered"),
        forms=("Jeans",),
        forms_pl=(("Jeansy proste", "n", "denim"), ("Spodnie jeansowe", "n", "denim")),
        materials=("denim",),
        colours=("navy", "dark blue", "light blue", "black", "grey"),
        sizes=("W30 L32", "W32 L32", "W34 L32", "W36 L34"),
        price_pln=(149, 449),
        title="{brand} {model} {form}, {Colour}",
        description="{model} jeans in rigid {material} with five pockets and a button fly.",
        description_pl="Klasyczne jeansy z pięcioma kieszeniami. Materiał: {material_pl}.",
        weight=9,
        gender=("men", "women"),
    ),
    _Kind(
        category=("Clothing", "Jackets"),
        shape="jacket",
        brands=_CLOTHING_BRANDS,
        models=("Quilted", "Denim", "Waxed", "Puffer"),
        forms=("Jacket",),
        forms_pl=(("Kurtka pikowana", "f", ""), ("Kurtka przejściowa", "f", "")),
        materials=("cotton", "polyester", "denim", "wool"),
        colours=("olive", "navy", "black", "beige", "brown", "mustard", "charcoal"),
        sizes=("S", "M", "L", "XL"),
        price_pln=(249, 899),
        title="{brand} {model} {form}, {Colour}",
        description="A {model_lower} jacket in {material} with a two-way zip and deep pockets.",
        description_pl="Ciepła kurtka z dwukierunkowym zamkiem i głębokimi kieszeniami. "
        "Materiał: {material_pl}.",
        weight=8,
        gender=("men", "women", "unisex"),
    ),
    _Kind(
        category=("Shoes", "Sneakers"),
        shape="sneaker",
        brands=_SHOE_BRANDS,
        models=("Court", "Runner", "Classic", "Trail"),
        forms=("Low-Top Sneakers", "Leather Sneakers", "Canvas Sneakers"),
        forms_pl=(("Sneakersy skórzane", "n", "leather"), ("Trampki materiałowe", "n", "cotton")),
        materials=("leather", "suede", "cotton"),
        colours=("white", "black", "navy", "grey", "red", "green", "beige"),
        sizes=("38", "39", "40", "41", "42", "43", "44", "45"),
        price_pln=(199, 649),
        title="{brand} {model} {form}, {Colour}",
        description="{form} with a {material} upper and a cushioned rubber sole.",
        description_pl="Wygodne buty z amortyzowaną gumową podeszwą. Cholewka: {material_pl}.",
        weight=8,
        gender=("men", "women", "unisex"),
    ),
    _Kind(
        category=("Shoes", "Boots"),
        shape="boot",
        brands=_SHOE_BRANDS,
        models=("Chelsea", "Hiking", "Lace-Up", "Work"),
        forms=("Boots",),
        forms_pl=(("Sztyblety skórzane", "n", "leather"), ("Buty trekkingowe", "n", "")),
        materials=("leather", "suede"),
        colours=("black", "brown", "beige", "burgundy", "olive"),
        sizes=("37", "38", "39", "40", "41", "42", "43", "44", "45", "46"),
        price_pln=(299, 899),
        title="{brand} {model} {form} in {Colour} {Material}",
        description="{model} boots in {material} with a Goodyear-welted rubber sole.",
        description_pl="Trwałe buty za kostkę na gumowej podeszwie. Materiał: {material_pl}.",
        weight=7,
        gender=("men", "women"),
    ),
)

_AVAILABILITY = (
    ("in_stock", 70),
    ("in stock", 6),
    ("out_of_stock", 10),
    ("preorder", 7),
    ("backorder", 7),
)


def _shade(rgb: tuple[int, int, int], factor: float) -> tuple[int, int, int]:
    r, g, b = rgb
    return (int(r * factor), int(g * factor), int(b * factor))


def _outline(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    # Dark fills get a lighter edge so the silhouette still reads against the fill.
    return _shade(rgb, 0.6) if sum(rgb) > 150 else (90, 90, 90)


def _draw(
    shape: Shape, fill: tuple[int, int, int], accent: tuple[int, int, int] | None
) -> Image.Image:
    """Draw a product silhouette filled with ``fill`` (dominant) and an optional ``accent``."""
    image = Image.new("RGB", (_IMAGE_SIZE, _IMAGE_SIZE), BACKGROUND)
    draw = ImageDraw.Draw(image)
    edge = _outline(fill)
    second = accent if accent is not None else _shade(fill, 0.8)
    wood = (120, 85, 55)
    draw.ellipse((40, 214, 216, 232), fill=(226, 225, 222))  # floor shadow
    if shape == "sofa":
        for x in (58, 188):
            draw.rectangle((x, 186, x + 10, 204), fill=wood)
        draw.rounded_rectangle(
            (44, 74, 212, 150), radius=18, fill=fill, outline=edge, width=_EDGE_WIDTH
        )
        draw.rounded_rectangle(
            (36, 136, 220, 190), radius=10, fill=fill, outline=edge, width=_EDGE_WIDTH
        )
        draw.rounded_rectangle(
            (20, 104, 60, 192), radius=14, fill=fill, outline=edge, width=_EDGE_WIDTH
        )
        draw.rounded_rectangle(
            (196, 104, 236, 192), radius=14, fill=fill, outline=edge, width=_EDGE_WIDTH
        )
        if accent is not None:
            draw.rounded_rectangle((72, 92, 122, 134), radius=10, fill=accent)
            draw.rounded_rectangle((134, 92, 184, 134), radius=10, fill=accent)
    elif shape == "chair":
        for x in (84, 164):
            draw.rectangle((x, 140, x + 9, 216), fill=fill, outline=edge)
        draw.rounded_rectangle(
            (80, 30, 176, 130), radius=16, fill=fill, outline=edge, width=_EDGE_WIDTH
        )
        draw.rounded_rectangle(
            (70, 122, 186, 150), radius=8, fill=fill, outline=edge, width=_EDGE_WIDTH
        )
        if accent is not None:
            draw.rounded_rectangle((96, 48, 160, 110), radius=10, fill=accent)
    elif shape == "table":
        leg = accent if accent is not None else fill
        for x in (44, 196):
            draw.rectangle((x, 110, x + 16, 214), fill=leg, outline=edge)
        draw.rectangle((24, 80, 232, 112), fill=fill, outline=edge, width=_EDGE_WIDTH)
    elif shape == "bed":
        # Side view: tall padded headboard, long mattress, low footboard.
        draw.rectangle((34, 196, 46, 212), fill=wood)
        draw.rectangle((210, 196, 222, 212), fill=wood)
        draw.rounded_rectangle(
            (20, 56, 56, 200), radius=12, fill=fill, outline=edge, width=_EDGE_WIDTH
        )
        draw.rectangle((56, 150, 236, 198), fill=fill, outline=edge, width=_EDGE_WIDTH)
        draw.rounded_rectangle(
            (56, 124, 230, 152), radius=8, fill=fill, outline=edge, width=_EDGE_WIDTH
        )
        draw.rounded_rectangle(
            (212, 132, 238, 200), radius=8, fill=fill, outline=edge, width=_EDGE_WIDTH
        )
        draw.rounded_rectangle((62, 98, 122, 126), radius=12, fill=second, outline=edge)
        if accent is not None:
            draw.rectangle((130, 124, 212, 152), fill=accent)
    elif shape == "lamp":
        metal = accent if accent is not None else (70, 70, 70)
        draw.rectangle((123, 120, 133, 204), fill=metal)
        draw.ellipse((92, 198, 164, 218), fill=metal)
        draw.polygon(
            [(84, 24), (172, 24), (212, 124), (44, 124)], fill=fill, outline=edge, width=_EDGE_WIDTH
        )
    elif shape in ("shirt", "tshirt", "jacket"):
        sleeve = {"shirt": 150, "tshirt": 96, "jacket": 160}[shape]
        body = [
            (96, 36),
            (160, 36),
            (206, 58),
            (230, sleeve),
            (200, sleeve + 12),
            (184, 100),
            (184, 224),
            (72, 224),
            (72, 100),
            (56, sleeve + 12),
            (26, sleeve),
            (50, 58),
        ]
        draw.polygon(body, fill=fill, outline=edge, width=_EDGE_WIDTH)
        draw.polygon([(104, 36), (128, 60), (152, 36)], fill=second)
        # The collar must not open the outline: a light garment stays closed off from the
        # backdrop (a gap let the extractor's backdrop flood a white shirt's whole body).
        draw.line((96, 36, 160, 36), fill=edge, width=_EDGE_WIDTH)
        if shape == "jacket":
            draw.line((128, 60, 128, 224), fill=accent or edge, width=4)
        elif accent is not None:
            draw.rectangle((72, 200, 184, 224), fill=accent)
        else:
            for y in range(76, 216, 28):
                draw.ellipse((125, y, 131, y + 6), fill=edge)
    elif shape == "dress":
        bodice = [(100, 28), (156, 28), (150, 104), (106, 104)]
        draw.polygon(bodice, fill=fill, outline=edge, width=_EDGE_WIDTH)
        skirt = [(106, 104), (150, 104), (210, 226), (46, 226)]
        draw.polygon(skirt, fill=fill, outline=edge, width=_EDGE_WIDTH)
        if accent is not None:
            draw.rectangle((102, 100, 154, 114), fill=accent)
    elif shape == "jeans":
        draw.polygon(
            [(72, 50), (184, 50), (196, 226), (140, 226), (128, 110), (116, 226), (60, 226)],
            fill=fill,
            outline=edge,
            width=_EDGE_WIDTH,
        )
        draw.rectangle((72, 32, 184, 52), fill=accent if accent is not None else fill, outline=edge)
    else:  # sneaker, boot
        if shape == "boot":
            upper = [(60, 30), (132, 30), (136, 128), (176, 140), (212, 158), (226, 186), (52, 186)]
        else:
            upper = [
                (34, 186),
                (34, 128),
                (62, 116),
                (98, 126),
                (118, 100),
                (140, 104),
                (192, 134),
                (220, 150),
                (230, 174),
                (230, 186),
            ]
        draw.polygon(upper, fill=fill, outline=edge, width=_EDGE_WIDTH)
        draw.rounded_rectangle((26, 184, 234, 204), radius=6, fill=second, outline=edge)
        if shape == "sneaker":
            for x, y in ((132, 112), (150, 120), (168, 128)):
                draw.line((x, y, x + 8, y - 10), fill=edge, width=3)
    return image


def _pick_weighted(rng: random.Random, options: tuple[tuple[str, int], ...]) -> str:
    return rng.choices([o for o, _ in options], weights=[w for _, w in options])[0]


def _gtin13(rng: random.Random) -> str:
    digits = "590" + "".join(str(rng.randrange(10)) for _ in range(9))
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(digits))
    return digits + str((10 - total % 10) % 10)


def _price(rng: random.Random, kind: _Kind, currency: str) -> float:
    low, high = kind.price_pln
    pln = rng.uniform(low, high)
    rate = {"PLN": 1.0, "EUR": _EUR_PER_PLN, "USD": _USD_PER_PLN}[currency]
    amount = pln * rate
    # Shop-style prices: 1 299.00 / 1 349.99 in PLN, 49.99 in EUR and USD.
    step = 50 if amount >= 1000 else 10
    return round(max(step, round(amount / step) * step) - 0.01 * rng.choice((0, 1)), 2)


def _product(rng: random.Random, number: int) -> tuple[dict[str, object], _Kind, list[DemoColour]]:
    kind = rng.choices(_KINDS, weights=[k.weight for k in _KINDS])[0]
    polish = rng.random() < _POLISH_SHARE
    brand = rng.choice(kind.brands)
    model = rng.choice(kind.models)
    colours = [COLOURS[rng.choice(kind.colours)]]
    if rng.random() < _TWO_COLOUR_SHARE:
        colours.append(COLOURS[rng.choice([c for c in COLOURS if c != colours[0].name])])
    product_id = f"p{number:04d}"
    if polish:
        phrase, gender, implied = rng.choice(kind.forms_pl)
        material = implied if implied in kind.materials else rng.choice(kind.materials)
        colour_pl = colours[0].polish_for(gender)
        if len(colours) == 2:
            colour_pl = f"{colours[0].polish_prefix}-{colours[1].polish_for(gender)}"
        title = f"{phrase} {colour_pl} {brand} {model}"
        description = kind.description_pl.format(material_pl=_MATERIALS_PL[material])
        currency = "PLN"
    else:
        form = rng.choice(kind.forms)
        named = f"{model} {form}".lower().replace("canvas", "cotton")
        in_name = [m for m in kind.materials if m in named]
        material = in_name[0] if in_name else rng.choice(kind.materials)
        colour_en = " and ".join(c.name.title() for c in colours)
        title = kind.title.format(
            brand=brand, model=model, form=form, Colour=colour_en, Material=material.title()
        )
        description = kind.description.format(
            form=form,
            form_lower=form.lower(),
            model=model,
            model_lower=model.lower(),
            material=material,
        )
        currency = rng.choices(("PLN", "EUR", "USD"), weights=(6, 3, 1))[0]
    price = _price(rng, kind, currency)
    attributes: dict[str, object] = {"material": material}
    if kind.sizes:
        count = min(len(kind.sizes), rng.randint(1, 4))
        start = rng.randrange(len(kind.sizes) - count + 1)
        attributes["size"] = list(kind.sizes[start : start + count])
    if kind.gender:
        attributes["gender"] = rng.choice(kind.gender)
    row: dict[str, object] = {
        "id": product_id,
        "title": title,
        "description": description,
        "brand": brand,
        "categories": [list(kind.category)],
        "attributes": attributes,
        "colours": [c.name for c in colours],
        "price": price,
        "currency": currency,
        "availability": _pick_weighted(rng, _AVAILABILITY),
        "images": [f"images/{product_id}.png"],
        "url": f"https://demo-shop.example/{'pl' if polish else 'en'}/p/{product_id}",
        "gtin": _gtin13(rng),
        "lang": "pl" if polish else "en",
    }
    if rng.random() < 0.15:
        row["sale_price"] = round(price * rng.choice((0.7, 0.8, 0.9)), 2)
    if currency == "PLN" and rng.random() < 0.1:
        # Some PIMs export prices as text: exercises the importer's price parsing.
        row["price"] = f"{price:,.2f} zł".replace(",", " ").replace(".", ",")
    return row, kind, colours


def _bad_rows(first_id: str, next_number: int) -> list[dict[str, object]]:
    return [
        {  # no title
            "id": f"p{next_number:04d}",
            "description": "A row exported without its title.",
            "price": 99.0,
            "currency": "PLN",
        },
        {  # duplicate id: the first product keeps it
            "id": first_id,
            "title": "Duplicate Row Exported Twice",
            "price": 10.0,
            "currency": "EUR",
        },
        {  # unparsable price
            "id": f"p{next_number + 1:04d}",
            "title": "Kowalski Meble Price-on-Request Sideboard",
            "price": "call for price",
            "currency": "PLN",
        },
    ]


def write_demo_catalogue(out_dir: Path, *, seed: int = 7, n_products: int = 300) -> Path:
    """Write the demo catalogue and its product pictures.

    Writes ``out_dir/catalogue.jsonl`` (canonical JSON Lines: ``n_products`` good products,
    ids ``p0001``.., followed by exactly :data:`BAD_ROWS` deliberately bad rows: one without a
    title, one repeating the first product's id, one with the unparsable price ``"call for
    price"``) and ``out_dir/images/<id>.png`` for every good product: a 256x256 drawing of the
    product's silhouette filled with its first colour on a near-white background. Image paths
    in the JSON Lines are relative (``images/<id>.png``). The same seed gives byte-identical
    files.

    Args:
        out_dir: Folder to write into (created when missing; existing files are replaced).
        seed: Random seed.
        n_products: Number of good products.

    Returns:
        The path of ``catalogue.jsonl``.

    Raises:
        ValueError: ``n_products`` is below 1.
    """
    if n_products < 1:
        raise ValueError(f"n_products must be at least 1, got {n_products}")
    rng = random.Random(seed)
    images_dir = out_dir / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    lines: list[bytes] = []
    for number in range(1, n_products + 1):
        row, kind, colours = _product(rng, number)
        accent = colours[1].rgb if len(colours) > 1 else None
        _draw(kind.shape, colours[0].rgb, accent).save(images_dir / f"{row['id']}.png")
        lines.append(orjson.dumps(row))
    lines.extend(orjson.dumps(row) for row in _bad_rows("p0001", n_products + 1))
    path = out_dir / "catalogue.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path
