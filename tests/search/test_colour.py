"""Colour knowledge: conversions, CIEDE2000, vocabulary, parsing, closeness, spotting in queries."""

from __future__ import annotations

import unicodedata

import numpy as np
import pytest

from search.colour import (
    CLOSE_DELTA_E,
    FAMILY_FLOOR,
    MAX_DELTA_E,
    Colour,
    Family,
    ciede2000,
    ciede2000_many,
    closeness,
    closeness_many,
    delta_e_grade,
    hex_to_lab,
    lab_to_hex,
    lab_to_srgb,
    lookup,
    nearest,
    parse_colour,
    spot_colours,
    srgb_to_lab,
    vocabulary,
)


def named(name: str) -> Colour:
    """A colour of the vocabulary that must exist."""
    colour = lookup(name)
    assert colour is not None, name
    return colour


#: Every baseColour label of the fashion data set (styles.csv), hard-coded on purpose.
FASHION_LABELS: tuple[str, ...] = (
    "Black", "White", "Blue", "Brown", "Grey", "Red", "Green", "Pink", "Navy Blue", "Purple",
    "Silver", "Yellow", "Beige", "Gold", "Maroon", "Orange", "Olive", "Multi", "Cream", "Steel",
    "Charcoal", "Peach", "Off White", "Skin", "Lavender", "Grey Melange", "Khaki", "Magenta",
    "Teal", "Tan", "Mustard", "Bronze", "Copper", "Rust", "Turquoise Blue", "Metallic",
    "Burgundy", "Coffee Brown", "Rose", "Mauve", "Nude", "Sea Green", "Mushroom Brown", "Taupe",
    "Lime Green", "Fluorescent Green",
)  # fmt: skip

#: Sharma, Wu & Dalal (2005), "The CIEDE2000 color-difference formula", Table 1.
SHARMA_PAIRS: tuple[tuple[tuple[float, float, float], tuple[float, float, float], float], ...] = (
    ((50.0000, 2.6772, -79.7751), (50.0000, 0.0000, -82.7485), 2.0425),
    ((50.0000, 3.1571, -77.2803), (50.0000, 0.0000, -82.7485), 2.8615),
    ((50.0000, 2.8361, -74.0200), (50.0000, 0.0000, -82.7485), 3.4412),
    ((50.0000, -1.3802, -84.2814), (50.0000, 0.0000, -82.7485), 1.0000),
    ((50.0000, -1.1848, -84.8006), (50.0000, 0.0000, -82.7485), 1.0000),
    ((50.0000, -0.9009, -85.5211), (50.0000, 0.0000, -82.7485), 1.0000),
    ((50.0000, 0.0000, 0.0000), (50.0000, -1.0000, 2.0000), 2.3669),
    ((50.0000, -1.0000, 2.0000), (50.0000, 0.0000, 0.0000), 2.3669),
    ((50.0000, 2.4900, -0.0010), (50.0000, -2.4900, 0.0009), 7.1792),
    ((50.0000, 2.4900, -0.0010), (50.0000, -2.4900, 0.0010), 7.1792),
    ((50.0000, 2.4900, -0.0010), (50.0000, -2.4900, 0.0011), 7.2195),
    ((50.0000, 2.4900, -0.0010), (50.0000, -2.4900, 0.0012), 7.2195),
    ((50.0000, -0.0010, 2.4900), (50.0000, 0.0009, -2.4900), 4.8045),
    ((50.0000, -0.0010, 2.4900), (50.0000, 0.0010, -2.4900), 4.8045),
    ((50.0000, -0.0010, 2.4900), (50.0000, 0.0011, -2.4900), 4.7461),
    ((50.0000, 2.5000, 0.0000), (50.0000, 0.0000, -2.5000), 4.3065),
    ((50.0000, 2.5000, 0.0000), (73.0000, 25.0000, -18.0000), 27.1492),
    ((50.0000, 2.5000, 0.0000), (61.0000, -5.0000, 29.0000), 22.8977),
    ((50.0000, 2.5000, 0.0000), (56.0000, -27.0000, -3.0000), 31.9030),
    ((50.0000, 2.5000, 0.0000), (58.0000, 24.0000, 15.0000), 19.4535),
    ((50.0000, 2.5000, 0.0000), (50.0000, 3.1736, 0.5854), 1.0000),
    ((50.0000, 2.5000, 0.0000), (50.0000, 3.2972, 0.0000), 1.0000),
    ((50.0000, 2.5000, 0.0000), (50.0000, 1.8634, 0.5757), 1.0000),
    ((50.0000, 2.5000, 0.0000), (50.0000, 3.2592, 0.3350), 1.0000),
    ((60.2574, -34.0099, 36.2677), (60.4626, -34.1751, 39.4387), 1.2644),
    ((63.0109, -31.0961, -5.8663), (62.8187, -29.7946, -4.0864), 1.2630),
    ((61.2901, 3.7196, -5.3901), (61.4292, 2.2480, -4.9620), 1.8731),
    ((35.0831, -44.1164, 3.7933), (35.0232, -40.0716, 1.5901), 1.8645),
    ((22.7233, 20.0904, -46.6940), (23.0331, 14.9730, -42.5619), 2.0373),
    ((36.4612, 47.8580, 18.3852), (36.2715, 50.5065, 21.2231), 1.4146),
    ((90.8027, -2.0831, 1.4410), (91.1528, -1.6435, 0.0447), 1.4441),
    ((90.9257, -0.5406, -0.9208), (88.6381, -0.8985, -0.7239), 1.5381),
    ((6.7747, -0.2908, -2.4247), (5.8714, -0.0985, -2.2286), 0.6377),
    ((2.0776, 0.0795, -1.1350), (0.9033, -0.0636, -0.5514), 0.9082),
)


class TestConversions:
    @pytest.mark.parametrize(
        ("hex_code", "lab"),
        [
            ("#ffffff", (100.0, 0.0, 0.0)),
            ("#000000", (0.0, 0.0, 0.0)),
            ("#ff0000", (53.2408, 80.0925, 67.2032)),
            ("#00ff00", (87.7347, -86.1827, 83.1793)),
            ("#0000ff", (32.2970, 79.1875, -107.8602)),
            ("#808080", (53.5850, 0.0, 0.0)),
        ],
    )
    def test_hex_to_lab_reference_values(
        self, hex_code: str, lab: tuple[float, float, float]
    ) -> None:
        assert hex_to_lab(hex_code) == pytest.approx(lab, abs=2e-3)

    def test_integer_input_is_0_to_255(self) -> None:
        as_int = srgb_to_lab(np.array([[255, 128, 0]], dtype=np.uint8))
        as_float = srgb_to_lab([[1.0, 128 / 255, 0.0]])
        np.testing.assert_allclose(as_int, as_float, atol=1e-9)
        assert as_int.shape == (1, 3)

    def test_srgb_round_trip_on_random_colours(self) -> None:
        rgb = np.random.default_rng(7).random((500, 3))
        np.testing.assert_allclose(lab_to_srgb(srgb_to_lab(rgb)), rgb, atol=1e-9)

    def test_out_of_gamut_is_clipped_unless_asked(self) -> None:
        vivid = (50.0, 120.0, -120.0)
        clipped = lab_to_srgb(vivid)
        assert clipped.min() >= 0.0 and clipped.max() <= 1.0
        raw = lab_to_srgb(vivid, clip=False)
        assert raw.min() < 0.0 or raw.max() > 1.0

    @pytest.mark.parametrize("colour", vocabulary(), ids=lambda c: c.name)
    def test_every_swatch_round_trips(self, colour: Colour) -> None:
        assert lab_to_hex(colour.lab) == colour.hex
        assert hex_to_lab(colour.hex) == pytest.approx(colour.lab)

    @pytest.mark.parametrize(
        ("text", "expected"),
        [("#1F2A44", "#1f2a44"), ("1f2a44", "#1f2a44"), ("#12a", "#1122aa"), (" #ABC ", "#aabbcc")],
    )
    def test_hex_spellings(self, text: str, expected: str) -> None:
        assert lab_to_hex(hex_to_lab(text)) == expected

    @pytest.mark.parametrize("text", ["", "#", "#12", "#1234", "#ggg000", "12a", "navy"])
    def test_bad_hex_raises(self, text: str) -> None:
        with pytest.raises(ValueError, match="hex"):
            hex_to_lab(text)

    @pytest.mark.parametrize("bad", [1.0, [1.0, 2.0], [[1.0, 2.0, 3.0, 4.0]]])
    def test_wrong_shapes_raise(self, bad: object) -> None:
        with pytest.raises(ValueError, match="3 components"):
            srgb_to_lab(bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="3 components"):
            lab_to_srgb(bad)  # type: ignore[arg-type]

    def test_lab_to_hex_wants_one_coordinate(self) -> None:
        with pytest.raises(ValueError, match="one coordinate"):
            lab_to_hex([[50.0, 0.0, 0.0], [60.0, 0.0, 0.0]])


class TestCiede2000:
    @pytest.mark.parametrize(
        ("lab1", "lab2", "expected"), SHARMA_PAIRS, ids=[f"pair{i}" for i in range(1, 35)]
    )
    def test_sharma_reference_pairs(
        self,
        lab1: tuple[float, float, float],
        lab2: tuple[float, float, float],
        expected: float,
    ) -> None:
        assert round(ciede2000(lab1, lab2), 4) == pytest.approx(expected, abs=1e-9)
        assert ciede2000(lab2, lab1) == pytest.approx(ciede2000(lab1, lab2), abs=1e-12)

    def test_vectorised_matches_scalar(self) -> None:
        lab1 = np.array([p[0] for p in SHARMA_PAIRS])
        lab2 = np.array([p[1] for p in SHARMA_PAIRS])
        expected = np.array([p[2] for p in SHARMA_PAIRS])
        np.testing.assert_allclose(ciede2000_many(lab1, lab2), expected, atol=5e-5)

    def test_one_to_many(self) -> None:
        navy = named("navy")
        labs = np.array([c.lab for c in vocabulary()])
        distances = ciede2000_many(navy.lab, labs)
        assert distances.shape == (len(vocabulary()),)
        for colour, distance in zip(vocabulary(), distances, strict=True):
            assert distance == pytest.approx(ciede2000(navy.lab, colour.lab), abs=1e-9)

    @pytest.mark.parametrize("lab", [(0.0, 0.0, 0.0), (50.0, 10.0, -20.0), (100.0, 0.0, 0.0)])
    def test_identical_colours_are_zero(self, lab: tuple[float, float, float]) -> None:
        assert ciede2000(lab, lab) == 0.0

    def test_scalar_form_wants_single_triples(self) -> None:
        with pytest.raises(ValueError, match="ciede2000_many"):
            ciede2000([[50.0, 0.0, 0.0]] * 2, (50.0, 0.0, 0.0))


class TestVocabulary:
    @pytest.mark.parametrize("label", FASHION_LABELS)
    def test_every_fashion_label_is_known(self, label: str) -> None:
        assert lookup(label) is not None
        assert lookup(label.lower()) == lookup(label.upper()) == lookup(label)

    @pytest.mark.parametrize(
        ("label", "name", "family"),
        [
            ("Navy Blue", "navy", Family.BLUE),
            ("Maroon", "maroon", Family.RED),
            ("Burgundy", "burgundy", Family.RED),
            ("Charcoal", "charcoal", Family.GREY),
            ("Grey Melange", "grey melange", Family.GREY),
            ("Off White", "off white", Family.WHITE),
            ("Steel", "steel", Family.METALLIC),
            ("Rose", "rose", Family.PINK),
            ("Coffee Brown", "coffee brown", Family.BROWN),
            ("Turquoise Blue", "turquoise", Family.BLUE),
            ("Lime Green", "lime green", Family.GREEN),
            ("Fluorescent Green", "fluorescent green", Family.GREEN),
            ("Multi", "multi", Family.MULTI),
            ("Skin", "skin", Family.BEIGE),
            ("Mauve", "mauve", Family.PURPLE),
        ],
    )
    def test_labels_map_to_canonical_names_and_families(
        self, label: str, name: str, family: Family
    ) -> None:
        colour = named(label)
        assert (colour.name, colour.family) == (name, family)

    def test_every_family_is_used(self) -> None:
        assert len(Family) == 14
        assert {c.family for c in vocabulary()} == set(Family)

    def test_names_are_unique_and_canonical(self) -> None:
        names = [c.name for c in vocabulary()]
        assert len(names) == len(set(names))
        assert all(named(n).name == n for n in names)

    @pytest.mark.parametrize(
        ("text", "name"),
        [
            ("gray", "grey"),
            ("Grey", "grey"),
            ("reds", "red"),
            ("navy-blue", "navy"),
            ("NAVY BLUE", "navy"),
            ("navyblue", "navy"),
            ("light gray", "light grey"),
            ("lightgrey", "light grey"),
            ("off-white", "off white"),
            ("offwhite", "off white"),
            ("multi colored", "multi"),
            ("multi-colour", "multi"),
            ("multicolor", "multi"),
            ("fuchsia", "magenta"),
            ("cyan", "aqua"),
            ("charcoal gray", "charcoal"),
            ("heather grey", "grey melange"),
            ("wine", "wine"),
            ("rose gold", "rose gold"),
            ("champagne", "champagne"),
            ("sky blue", "sky blue"),
            ("royal blue", "royal blue"),
            ("cobalt", "cobalt"),
            ("denim", "denim"),
            ("indigo", "indigo"),
            ("emerald", "emerald"),
            ("forest green", "forest green"),
            ("stone", "stone"),
            ("sand", "sand"),
        ],
    )
    def test_english_forms(self, text: str, name: str) -> None:
        assert named(text).name == name

    @pytest.mark.parametrize(
        ("text", "name"),
        [
            ("czerwonych", "red"),
            ("czerwień", "red"),
            ("granatowa", "navy"),
            ("granatowym", "navy"),
            ("żółte", "yellow"),
            ("zolte", "yellow"),
            ("ŻÓŁTEJ", "yellow"),
            ("czarnego", "black"),
            ("czarnej", "black"),
            ("białych", "white"),
            ("bialymi", "white"),
            ("szarą", "grey"),
            ("niebieskich", "blue"),
            ("niebieskie", "blue"),
            ("brązowym", "brown"),
            ("beżowe", "beige"),
            ("bordowa", "burgundy"),
            ("bordo", "burgundy"),
            ("kremowy", "cream"),
            ("złotych", "gold"),
            ("srebrne", "silver"),
            ("turkusowa", "turquoise"),
            ("oliwkowe", "olive"),
            ("musztardowy", "mustard"),
            ("błękitna", "sky blue"),
            ("grafitowy", "charcoal"),
            ("kawowy", "coffee brown"),
            ("wielokolorowa", "multi"),
            ("różowej", "pink"),
            ("pomarańczowych", "orange"),
            ("zielonymi", "green"),
            ("fioletowa", "purple"),
            ("jasnoniebieska", "light blue"),
            ("ciemnozielony", "dark green"),
            ("złamana biel", "off white"),
            ("różowe złoto", "rose gold"),
            ("brudny róż", "dusty pink"),
        ],
    )
    def test_polish_inflections(self, text: str, name: str) -> None:
        assert named(text).name == name

    @pytest.mark.parametrize(
        ("text", "name", "base", "darker"),
        [
            ("dark mustard", "dark mustard", "mustard", True),
            ("ciemnomusztardowa", "dark mustard", "mustard", True),
            ("ciemno-musztardowy", "dark mustard", "mustard", True),
            ("light olive", "light olive", "olive", False),
            ("jasny granat", "light navy", "navy", False),
            ("pale teal", "pale teal", "teal", False),
        ],
    )
    def test_modifiers_make_variants(self, text: str, name: str, base: str, darker: bool) -> None:
        variant, original = named(text), named(base)
        assert variant.name == name
        assert variant.family == original.family
        assert (variant.lab[0] < original.lab[0]) is darker
        assert lab_to_hex(variant.lab) == variant.hex

    def test_listed_variant_wins_over_a_computed_one(self) -> None:
        assert named("jasna zieleń") == named("light green")
        assert named("dark blue").hex == "#00008b"

    @pytest.mark.parametrize(
        "text", ["", "shirt", "bez", "dark", "jasno", "dark white", "light multi", "#1f2a44"]
    )
    def test_unknown_is_none(self, text: str) -> None:
        assert lookup(text) is None


class TestParseColour:
    @pytest.mark.parametrize("text", ["navy", "Navy Blue", " granatowa ", "GRANATOWY"])
    def test_names(self, text: str) -> None:
        assert parse_colour(text) == named("navy")

    @pytest.mark.parametrize(
        ("text", "hex_code", "name", "family"),
        [
            ("#1f2a44", "#1f2a44", "midnight blue", Family.BLUE),
            ("1F2A44", "#1f2a44", "midnight blue", Family.BLUE),
            ("#000081", "#000081", "navy", Family.BLUE),
            ("#c0c0c0", "#c0c0c0", "light grey", Family.GREY),
            ("#f00", "#ff0000", "scarlet", Family.RED),
        ],
    )
    def test_hex_keeps_exact_colour_and_borrows_the_nearest_name(
        self, text: str, hex_code: str, name: str, family: Family
    ) -> None:
        colour = parse_colour(text)
        assert (colour.hex, colour.name, colour.family) == (hex_code, name, family)
        assert colour.lab == pytest.approx(hex_to_lab(hex_code))

    @pytest.mark.parametrize("text", ["", "   ", "blurple", "#12345", "shirt"])
    def test_unknown_raises_with_examples(self, text: str) -> None:
        with pytest.raises(ValueError, match="navy") as info:
            parse_colour(text)
        assert "#1f2a44" in str(info.value)


class TestNearest:
    @pytest.mark.parametrize("name", ["navy", "burgundy", "beige", "teal", "mustard"])
    def test_a_named_colour_is_its_own_nearest(self, name: str) -> None:
        colour, distance = nearest(named(name).lab)
        assert colour.name == name
        assert distance == pytest.approx(0.0, abs=1e-9)

    def test_metallic_names_only_on_request(self) -> None:
        silver = named("silver")
        assert nearest(silver.lab)[0].family is Family.GREY
        assert nearest(silver.lab, include_metallic=True)[0] == silver

    def test_never_multi(self) -> None:
        assert nearest(named("multi").lab)[0].family is not Family.MULTI

    def test_wants_one_coordinate(self) -> None:
        with pytest.raises(ValueError, match="one coordinate"):
            nearest([[50.0, 0.0, 0.0]] * 2)


class TestCloseness:
    def test_navy_ordering(self) -> None:
        navy = named("navy")
        scores = {n: closeness(navy, named(n)) for n in ("navy", "dark blue", "blue", "orange")}
        assert scores["navy"] == 1.0
        assert scores["navy"] > scores["dark blue"] > scores["blue"] > 0.0
        assert scores["orange"] == 0.0

    @pytest.mark.parametrize("other", ["orange", "red", "yellow", "green", "pink"])
    def test_other_hues_score_zero_for_navy(self, other: str) -> None:
        assert closeness(named("navy"), named(other)) == 0.0
        assert closeness(named("navy"), named(other).lab) == 0.0

    def test_grade_shape(self) -> None:
        assert delta_e_grade(0.0) == 1.0
        assert delta_e_grade(CLOSE_DELTA_E) == pytest.approx(0.5)
        assert delta_e_grade(MAX_DELTA_E) == 0.0
        assert delta_e_grade(MAX_DELTA_E + 30.0) == 0.0
        grades = delta_e_grade(np.linspace(0.0, MAX_DELTA_E, 101))
        assert isinstance(grades, np.ndarray)
        assert np.all(np.diff(grades) < 0.0)

    def test_close_pairs_are_close(self) -> None:
        for a, b in [("navy", "dark blue"), ("light grey", "silver"), ("beige", "cream")]:
            assert ciede2000(named(a).lab, named(b).lab) <= CLOSE_DELTA_E
            assert closeness(named(a), named(b)) >= 0.5

    def test_family_floor_applies_to_colours_only(self) -> None:
        blue, light_blue = named("blue"), named("light blue")
        assert ciede2000(blue.lab, light_blue.lab) > MAX_DELTA_E
        assert closeness(blue, light_blue) == FAMILY_FLOOR
        assert closeness(blue, light_blue.lab) == 0.0

    def test_multi_matches_only_multi(self) -> None:
        multi = named("multi")
        assert closeness(multi, named("multicoloured")) == 1.0
        assert closeness(multi, named("grey")) == 0.0
        assert closeness(named("grey"), multi) == 0.0
        assert closeness(multi, named("grey").lab) == 0.0

    def test_hex_query(self) -> None:
        query = parse_colour("#000081")
        assert closeness(query, named("navy")) > closeness(query, named("blue")) > 0.0

    def test_many_matches_one_by_one(self) -> None:
        navy = named("navy")
        colours = [named(n) for n in ("navy", "dark blue", "blue", "light blue", "orange", "multi")]
        labs = np.array([c.lab for c in colours])
        families = [c.family for c in colours]
        expected = [closeness(navy, c) for c in colours]
        np.testing.assert_allclose(closeness_many(navy, labs, families), expected)
        np.testing.assert_allclose(
            closeness_many(navy, labs), [closeness(navy, c.lab) for c in colours]
        )
        assert closeness_many(named("multi"), labs, families).tolist() == [0, 0, 0, 0, 0, 1]

    def test_many_checks_lengths(self) -> None:
        with pytest.raises(ValueError, match="families"):
            closeness_many(named("navy"), [named("navy").lab], [Family.BLUE, Family.RED])


def spotted(query: str) -> tuple[list[str], str]:
    """Names of the colours spotted in a query and the remainder."""
    mentions, rest = spot_colours(query)
    return [m.colour.name for m in mentions], rest


class TestSpotColours:
    @pytest.mark.parametrize(
        ("query", "names", "rest"),
        [
            ("", [], ""),
            ("   ", [], ""),
            ("shirt", [], "shirt"),
            ("navy shirt", ["navy"], "shirt"),
            ("Navy Blue shirt", ["navy"], "shirt"),
            ("navy-blue shirt", ["navy"], "shirt"),
            ("shirt navy", ["navy"], "shirt"),
            ("sofa (navy)", ["navy"], "sofa"),
            ("rose gold ring", ["rose gold"], "ring"),
            ("off white sneakers", ["off white"], "sneakers"),
            ("off-white sneakers", ["off white"], "sneakers"),
            ("light grey sofa", ["light grey"], "sofa"),
            ("grey/gray hoodie", ["grey", "grey"], "hoodie"),
            ("black and white dress", ["black", "white"], "dress"),
            ("navy blue and white striped shirt", ["navy", "white"], "striped shirt"),
            ("multi colored dress", ["multi"], "dress"),
            ("dark mustard jumper", ["dark mustard"], "jumper"),
            ("#1f2a44 shirt", ["midnight blue"], "shirt"),
            ("shirt in navy", ["navy"], "shirt"),
            ("24 in black", ["black"], "24 in"),
            ("1/2 in. white pipe", ["white"], "1/2 in. pipe"),
        ],
    )
    def test_english(self, query: str, names: list[str], rest: str) -> None:
        assert spotted(query) == (names, rest)

    @pytest.mark.parametrize(
        ("query", "names", "rest"),
        [
            ("czerwonych butów", ["red"], "butów"),
            ("żółte krzesło", ["yellow"], "krzesło"),
            ("zolte krzeslo", ["yellow"], "krzeslo"),
            ("sukienka granatowa", ["navy"], "sukienka"),
            ("sukienka w kolorze granatowym", ["navy"], "sukienka"),
            ("czarno-biała sukienka", ["black", "white"], "sukienka"),
            ("jasno-niebieska koszula", ["light blue"], "koszula"),
            ("ciemnomusztardowy sweter", ["dark mustard"], "sweter"),
            ("butelkowa zieleń", ["bottle green"], ""),
            ("różowe złoto pierścionek", ["rose gold"], "pierścionek"),
            ("złota bransoletka", ["gold"], "bransoletka"),
            ("kawowa sofa", ["coffee brown"], "sofa"),
            ("sukienka w czerwone kropki", ["red"], "sukienka w kropki"),
            ("sukienka bez rękawów beżowa", ["beige"], "sukienka bez rękawów"),
            ("kolor złoty", ["gold"], ""),
        ],
    )
    def test_polish(self, query: str, names: list[str], rest: str) -> None:
        assert spotted(query) == (names, rest)

    @pytest.mark.parametrize(
        "query",
        [
            "coffee table",
            "oak coffee table",
            "wine glass",
            "white wine glass",
            "red wine",
            "copper pipe",
            "stone tile",
            "olive oil",
            "cream cheese",
            "ice cream",
            "face cream",
            "black pepper",
            "green tea",
            "blue cheese",
            "orange juice",
            "stainless steel sink",
            "dark chocolate",
            "dark chocolate bar",
            "mint condition",
            "raspberry pi",
            "black & decker drill",
            "black ink cartridge",
            "charcoal grill",
            "rose bush",
            "old navy",
            "stolik kawowy",
            "czarny pieprz",
            "zielona herbata",
            "czerwone wino",
            "herbata miętowa",
            "sok pomarańczowy",
            "sok granatowy",
            "tort bezowy",
            "100 złotych",
            "pierścionek 100 złotych",
        ],
    )
    def test_known_compounds_are_not_colours(self, query: str) -> None:
        assert spotted(query) == ([], " ".join(query.split()))

    @pytest.mark.parametrize(
        ("query", "names"),
        [
            # An ambiguous word alone, or last after its noun, is not taken for a colour ...
            ("orange", []),
            ("gold", []),
            ("coffee", []),
            ("shirt in orange", []),
            ("złote", []),
            ("kawowy", []),
            ("granat", []),
            # ... but it is when it describes the next word, or in Polish any other word.
            ("orange shirt", ["orange"]),
            ("orange and black shirt", ["orange", "black"]),
            ("gold ring", ["gold"]),
            ("wine dress", ["wine"]),
            ("cream sofa", ["cream"]),
            ("copper kettle", ["copper"]),
            ("mint dress", ["mint"]),
            ("miętowa sukienka", ["mint"]),
            ("sukienka granat", ["navy"]),
            ("coffee brown sofa", ["coffee brown"]),
            ("chocolate brown boots", ["chocolate"]),
            # A cue makes any colour word count.
            ("gold tone watch", ["gold"]),
            ("colour orange t-shirt", ["orange"]),
            # Labels count only with a cue.
            ("multi", []),
            ("skin", []),
            ("skin colour tights", ["skin"]),
            ("denim jacket", []),
        ],
    )
    def test_ambiguous_words(self, query: str, names: list[str]) -> None:
        assert spotted(query)[0] == names

    @pytest.mark.parametrize(
        "query", ["beaded necklace", "#1f2a4", "size #12", "Schwarz", "kolorowe kredki"]
    )
    def test_things_that_are_not_colours(self, query: str) -> None:
        assert spotted(query) == ([], query)

    def test_offsets_point_into_the_query(self) -> None:
        query = "Long navy-blue coat, #1F2A44 lining, czerwone guziki"
        mentions, rest = spot_colours(query)
        assert [m.text for m in mentions] == ["navy-blue", "#1F2A44", "czerwone"]
        assert all(query[m.start : m.end] == m.text for m in mentions)
        assert mentions[1].colour.hex == "#1f2a44"
        assert rest == "Long coat, lining, guziki"

    def test_decomposed_input_is_normalised(self) -> None:
        query = unicodedata.normalize("NFD", "żółte krzesło")
        mentions, rest = spot_colours(query)
        assert [m.text for m in mentions] == ["żółte"]
        assert rest == "krzesło"
