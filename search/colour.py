"""Colour knowledge for automatic colour search: names, CIELAB coordinates, ΔE00 and query spotting.

* A vocabulary (:mod:`search.colour_data`) of English and Polish colour names with their
  inflections and shop terms, each with a CIELAB (D65) coordinate, an sRGB swatch and one of
  fourteen :class:`Family` values. :func:`lookup` finds a name in any form (``"Navy Blue"``,
  ``"granatowa"``, ``"zolte"``, ``"dark mustard"``); :func:`parse_colour` also takes hex codes.
* Conversions between sRGB, hex and CIELAB (:func:`srgb_to_lab`, :func:`lab_to_srgb`,
  :func:`hex_to_lab`, :func:`lab_to_hex`) and the CIEDE2000 colour difference
  (:func:`ciede2000`, :func:`ciede2000_many`).
* A graded :func:`closeness` of a product colour to a query colour.
* :func:`spot_colours`: the colours a shopper wrote in a query and the rest of the query.

Only numpy is needed; the index is built at import from the table (about 25 ms).
"""

from __future__ import annotations

import itertools
import math
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Literal, TypeAlias

import numpy as np
from numpy.typing import ArrayLike, NDArray

from search.analysis import fold, get_language
from search.colour_data import (
    CONNECTORS,
    CUES_AFTER,
    CUES_BEFORE,
    CURRENCY_COLOURS,
    ENTRIES,
    EXCEPTIONS,
    MODIFIER_PREFIXES_PL,
    MODIFIER_STEMS_PL,
    MODIFIERS_EN,
    POLISH_HARD_SUFFIXES,
    POLISH_SOFT_SUFFIXES,
)

__all__ = [
    "CLOSE_DELTA_E",
    "FAMILY_FLOOR",
    "MAX_DELTA_E",
    "Colour",
    "ColourMention",
    "Family",
    "Lab",
    "ciede2000",
    "ciede2000_many",
    "closeness",
    "closeness_many",
    "delta_e_grade",
    "hex_to_lab",
    "lab_to_hex",
    "lab_to_srgb",
    "lookup",
    "nearest",
    "parse_colour",
    "spot_colours",
    "srgb_to_lab",
    "vocabulary",
]

#: A CIELAB (D65) coordinate: L* in [0, 100], a* and b* roughly in [-128, 127].
Lab: TypeAlias = tuple[float, float, float]


class Family(StrEnum):
    """The colour family of a named colour: the coarse bucket a shop's colour facet shows."""

    BLACK = "black"
    WHITE = "white"
    GREY = "grey"
    RED = "red"
    PINK = "pink"
    ORANGE = "orange"
    YELLOW = "yellow"
    GREEN = "green"
    BLUE = "blue"
    PURPLE = "purple"
    BROWN = "brown"
    BEIGE = "beige"
    METALLIC = "metallic"
    MULTI = "multi"


@dataclass(frozen=True, slots=True)
class Colour:
    """A colour with a name.

    Attributes:
        name: Canonical English name (``"navy"``, ``"light grey"``, ``"dark mustard"``); for a
            colour parsed from a hex code, the name of the nearest named colour.
        family: Its colour family.
        lab: CIELAB (D65) coordinate.
        hex: sRGB swatch, ``"#rrggbb"`` (lower case).
    """

    name: str
    family: Family
    lab: Lab
    hex: str


@dataclass(frozen=True, slots=True)
class ColourMention:
    """A colour written in a query.

    Attributes:
        colour: The colour meant.
        start: Offset of the first character of the mention in the (NFC-normalised) query.
        end: Offset just past its last character: ``query[start:end] == text``.
        text: The words as written (``"navy-blue"``, ``"granatowa"``, ``"#1f2a44"``).
    """

    colour: Colour
    start: int
    end: int
    text: str


# --- sRGB <-> CIELAB ----------------------------------------------------------------------------

# IEC 61966-2-1 sRGB primaries, D65 white (Lindbloom's matrix).
_SRGB_TO_XYZ = np.array(
    [
        [0.4124564, 0.3575761, 0.1804375],
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339, 0.1191920, 0.9503041],
    ]
)
_XYZ_TO_SRGB = np.linalg.inv(_SRGB_TO_XYZ)
# The reference white is the matrix's image of sRGB white (0.95047, 1.0, 1.08883): white is
# exactly L*=100, a*=b*=0.
_WHITE = _SRGB_TO_XYZ.sum(axis=1)
_DELTA = 6.0 / 29.0


def _as_triples(values: ArrayLike, what: str) -> NDArray[np.float64]:
    arr = np.asarray(values)
    if arr.ndim == 0 or arr.shape[-1] != 3:
        raise ValueError(f"{what} must have 3 components in its last axis, got shape {arr.shape}")
    return arr.astype(np.float64)


def srgb_to_lab(rgb: ArrayLike) -> NDArray[np.float64]:
    """Convert sRGB to CIELAB (D65, 2° observer).

    Args:
        rgb: sRGB components in the last axis, shape ``(..., 3)``. Floats are in ``[0, 1]``
            (clipped to it); integer arrays (``uint8`` pixels, ``[255, 0, 0]``) are in
            ``[0, 255]``.

    Returns:
        L*, a*, b* in the last axis, same leading shape.

    Raises:
        ValueError: the last axis does not have 3 components.
    """
    raw = np.asarray(rgb)
    scale = 255.0 if np.issubdtype(raw.dtype, np.integer) else 1.0
    c = np.clip(_as_triples(raw, "rgb") / scale, 0.0, 1.0)
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    t = (linear @ _SRGB_TO_XYZ.T) / _WHITE
    f = np.where(t > _DELTA**3, np.cbrt(t), t / (3 * _DELTA**2) + 4.0 / 29.0)
    lightness = 116.0 * f[..., 1] - 16.0
    a = 500.0 * (f[..., 0] - f[..., 1])
    b = 200.0 * (f[..., 1] - f[..., 2])
    return np.stack([lightness, a, b], axis=-1)


def lab_to_srgb(lab: ArrayLike, *, clip: bool = True) -> NDArray[np.float64]:
    """Convert CIELAB (D65) to sRGB, the inverse of :func:`srgb_to_lab`.

    Args:
        lab: L*, a*, b* in the last axis, shape ``(..., 3)``.
        clip: Clip out-of-gamut results to ``[0, 1]`` (per channel); without it, components
            outside the gamut come back below 0 or above 1.

    Returns:
        sRGB components in ``[0, 1]`` (when clipped), same leading shape.

    Raises:
        ValueError: the last axis does not have 3 components.
    """
    arr = _as_triples(lab, "lab")
    fy = (arr[..., 0] + 16.0) / 116.0
    f = np.stack([fy + arr[..., 1] / 500.0, fy, fy - arr[..., 2] / 200.0], axis=-1)
    t = np.where(f > _DELTA, f**3, 3 * _DELTA**2 * (f - 4.0 / 29.0))
    linear = (t * _WHITE) @ _XYZ_TO_SRGB.T
    if clip:
        linear = np.clip(linear, 0.0, 1.0)
    magnitude = np.abs(linear)
    encoded = np.where(
        magnitude <= 0.0031308, 12.92 * magnitude, 1.055 * magnitude ** (1 / 2.4) - 0.055
    )
    return np.asarray(np.sign(linear) * encoded, dtype=np.float64)


_HEX_RE = re.compile(r"#?([0-9a-f]{6})|#([0-9a-f]{3})")


def _parse_hex(text: str) -> tuple[int, int, int] | None:
    match = _HEX_RE.fullmatch(text.strip().lower())
    if match is None:
        return None
    digits = match.group(1) or "".join(ch * 2 for ch in match.group(2))
    return int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16)


def _lab_tuple(values: NDArray[np.float64]) -> Lab:
    return float(values[0]), float(values[1]), float(values[2])


def hex_to_lab(hex_code: str) -> Lab:
    """The CIELAB coordinate of an sRGB hex code.

    Args:
        hex_code: ``"#rrggbb"``, ``"rrggbb"`` or ``"#rgb"`` (any case).

    Returns:
        ``(L*, a*, b*)``.

    Raises:
        ValueError: not a hex colour code.
    """
    rgb = _parse_hex(hex_code)
    if rgb is None:
        raise ValueError(f"not a hex colour code: {hex_code!r}; expected '#rrggbb' or '#rgb'")
    return _lab_tuple(srgb_to_lab(np.array(rgb, dtype=np.uint8)))


def lab_to_hex(lab: ArrayLike) -> str:
    """The sRGB hex code of a CIELAB coordinate (out-of-gamut channels are clipped).

    Args:
        lab: ``(L*, a*, b*)``.

    Returns:
        ``"#rrggbb"``, lower case.

    Raises:
        ValueError: ``lab`` does not have 3 components.
    """
    arr = _as_triples(lab, "lab")
    if arr.shape != (3,):
        raise ValueError(f"lab must be one coordinate of shape (3,), got shape {arr.shape}")
    r, g, b = (int(v) for v in np.rint(lab_to_srgb(arr) * 255.0))
    return f"#{r:02x}{g:02x}{b:02x}"


# --- CIEDE2000 ----------------------------------------------------------------------------------

_POW25_7 = 25.0**7


def _ciede2000(lab1: NDArray[np.float64], lab2: NDArray[np.float64]) -> NDArray[np.float64]:
    """CIEDE2000 (kL = kC = kH = 1) of broadcast arrays of Lab triples.

    Follows Sharma, Wu & Dalal (2005), eqs. 1-17, including their notes: the hue difference and
    mean hue of a pair with a neutral colour (C' = 0) are 0 and h1' + h2'.
    """
    l1, a1, b1 = lab1[..., 0], lab1[..., 1], lab1[..., 2]
    l2, a2, b2 = lab2[..., 0], lab2[..., 1], lab2[..., 2]
    c_mean7 = ((np.hypot(a1, b1) + np.hypot(a2, b2)) / 2.0) ** 7
    g = 0.5 * (1.0 - np.sqrt(c_mean7 / (c_mean7 + _POW25_7)))
    a1p, a2p = (1.0 + g) * a1, (1.0 + g) * a2
    c1p, c2p = np.hypot(a1p, b1), np.hypot(a2p, b2)
    h1p = np.degrees(np.arctan2(b1, a1p)) % 360.0
    h2p = np.degrees(np.arctan2(b2, a2p)) % 360.0
    neutral = (c1p * c2p) == 0.0

    d_lp = l2 - l1
    d_cp = c2p - c1p
    dh = h2p - h1p
    dh = np.where(dh > 180.0, dh - 360.0, np.where(dh < -180.0, dh + 360.0, dh))
    dh = np.where(neutral, 0.0, dh)
    d_hp = 2.0 * np.sqrt(c1p * c2p) * np.sin(np.radians(dh / 2.0))

    l_mean = (l1 + l2) / 2.0
    c_mean = (c1p + c2p) / 2.0
    h_sum = h1p + h2p
    h_mean = np.where(
        np.abs(h1p - h2p) <= 180.0,
        h_sum / 2.0,
        np.where(h_sum < 360.0, (h_sum + 360.0) / 2.0, (h_sum - 360.0) / 2.0),
    )
    h_mean = np.where(neutral, h_sum, h_mean)

    t = (
        1.0
        - 0.17 * np.cos(np.radians(h_mean - 30.0))
        + 0.24 * np.cos(np.radians(2.0 * h_mean))
        + 0.32 * np.cos(np.radians(3.0 * h_mean + 6.0))
        - 0.20 * np.cos(np.radians(4.0 * h_mean - 63.0))
    )
    d_theta = 30.0 * np.exp(-(((h_mean - 275.0) / 25.0) ** 2))
    c_mean_7 = c_mean**7
    r_c = 2.0 * np.sqrt(c_mean_7 / (c_mean_7 + _POW25_7))
    s_l = 1.0 + 0.015 * (l_mean - 50.0) ** 2 / np.sqrt(20.0 + (l_mean - 50.0) ** 2)
    s_c = 1.0 + 0.045 * c_mean
    s_h = 1.0 + 0.015 * c_mean * t
    r_t = -np.sin(np.radians(2.0 * d_theta)) * r_c

    dl, dc, dhh = d_lp / s_l, d_cp / s_c, d_hp / s_h
    return np.asarray(np.sqrt(dl**2 + dc**2 + dhh**2 + r_t * dc * dhh), dtype=np.float64)


def ciede2000(lab1: ArrayLike, lab2: ArrayLike) -> float:
    """The CIEDE2000 colour difference ΔE00 of two colours (kL = kC = kH = 1).

    Args:
        lab1: ``(L*, a*, b*)`` of one colour.
        lab2: ``(L*, a*, b*)`` of the other.

    Returns:
        ΔE00 (symmetric, 0 for equal colours; about 1 is a just-noticeable difference).

    Raises:
        ValueError: an argument is not one Lab triple.
    """
    a, b = _as_triples(lab1, "lab1"), _as_triples(lab2, "lab2")
    if a.shape != (3,) or b.shape != (3,):
        raise ValueError("ciede2000 compares two single Lab triples; use ciede2000_many")
    return float(_ciede2000(a, b))


def ciede2000_many(lab: ArrayLike, labs: ArrayLike) -> NDArray[np.float64]:
    """ΔE00 from one colour to many (or element-wise between broadcastable arrays).

    Args:
        lab: ``(L*, a*, b*)``, shape ``(3,)`` (or any shape broadcastable against ``labs``).
        labs: Lab triples, shape ``(..., 3)``.

    Returns:
        ΔE00 values, shape ``labs.shape[:-1]``.

    Raises:
        ValueError: an argument does not have 3 components in its last axis.
    """
    return _ciede2000(_as_triples(lab, "lab"), _as_triples(labs, "labs"))


# --- closeness ----------------------------------------------------------------------------------

#: ΔE00 up to which two colours count as *close* (grade 0.5 to 1): what a shopper would call the
#: same colour. About 1 is a just-noticeable difference and 2-10 is "visibly different but the
#: same colour name"; the vocabulary agrees: navy/dark blue 1.6, off white/white 1.9, light
#: grey/silver 4.7, navy/midnight blue 5.6, beige/cream 5.8, orange/mustard 9.7. Names shoppers
#: keep apart lie beyond 10: navy/blue 16.5, red/burgundy 18.9, green/olive 18.7. 10 also
#: absorbs the spread of real product photos around a catalogue name.
CLOSE_DELTA_E: float = 10.0

#: ΔE00 from which a colour gets no credit; between :data:`CLOSE_DELTA_E` and this the grade
#: falls linearly from 0.5 to 0. Related shades still rank (navy -> blue 16.5 gives 0.28,
#: red -> burgundy 18.9 gives 0.20, black -> charcoal 20.1 gives 0.16) while another hue or a
#: neutral does not (navy -> black 29.7, red -> pink 34.9, red -> orange 43.7, blue -> green
#: 62.3, navy -> orange 83.8 all give 0).
MAX_DELTA_E: float = 25.0

#: Least grade of a product colour of the same :class:`Family` as the query when both are
#: :class:`Colour` objects, however far apart: blue still ranks a light blue product (ΔE00 50)
#: and navy a royal blue one (29.6) a little above unrelated colours, and metallic finishes
#: (gold/silver 26.3) stay together. Small, so it never beats a close colour.
FAMILY_FLOOR: float = 0.1


def delta_e_grade(delta_e: float | NDArray[np.float64]) -> float | NDArray[np.float64]:
    """The grade of a ΔE00: 1 at 0, 0.5 at :data:`CLOSE_DELTA_E`, 0 from :data:`MAX_DELTA_E` on.

    Piecewise linear and strictly decreasing on ``[0, MAX_DELTA_E]``.

    Args:
        delta_e: ΔE00 value(s), non-negative.

    Returns:
        Grade(s) in ``[0, 1]``; an array for an array.
    """
    d = np.asarray(delta_e, dtype=np.float64)
    near = 1.0 - 0.5 * d / CLOSE_DELTA_E
    far = 0.5 * (MAX_DELTA_E - d) / (MAX_DELTA_E - CLOSE_DELTA_E)
    grade = np.clip(np.where(d <= CLOSE_DELTA_E, near, far), 0.0, 1.0)
    return float(grade) if grade.ndim == 0 else grade


def closeness(query: Colour, target: Colour | ArrayLike) -> float:
    """How well a product colour answers a query colour, in ``[0, 1]``.

    The ΔE00 between them graded by :func:`delta_e_grade`. When ``target`` is a
    :class:`Colour`, its family is known: one of the query's family gets at least
    :data:`FAMILY_FLOOR`. ``multi`` has no coordinate: it matches only ``multi`` (1.0).

    Args:
        query: The colour asked for.
        target: The product's colour, or its Lab coordinate (no family floor then).

    Returns:
        1.0 for the same colour, decreasing with distance, 0.0 for an unrelated colour.

    Raises:
        ValueError: ``target`` is not a Colour or a Lab triple.
    """
    if isinstance(target, Colour):
        if Family.MULTI in (query.family, target.family):
            return 1.0 if query.family is target.family else 0.0
        grade = float(delta_e_grade(ciede2000(query.lab, target.lab)))
        return max(grade, FAMILY_FLOOR) if target.family is query.family else grade
    if query.family is Family.MULTI:
        return 0.0
    return float(delta_e_grade(ciede2000(query.lab, target)))


def closeness_many(
    query: Colour, labs: ArrayLike, families: Sequence[Family] | None = None
) -> NDArray[np.float64]:
    """:func:`closeness` of many product colours at once.

    Args:
        query: The colour asked for.
        labs: Lab coordinates, shape ``(n, 3)``.
        families: The products' colour families (length ``n``) for the family floor and
            ``multi``; without them only the coordinates count.

    Returns:
        Grades, shape ``(n,)``.

    Raises:
        ValueError: ``labs`` is not ``(n, 3)`` or ``families`` has another length.
    """
    arr = _as_triples(labs, "labs").reshape(-1, 3)
    if families is not None and len(families) != len(arr):
        raise ValueError(f"got {len(families)} families for {len(arr)} colours")
    if query.family is Family.MULTI:
        if families is None:
            return np.zeros(len(arr))
        return np.array([1.0 if f is Family.MULTI else 0.0 for f in families])
    grades = np.asarray(delta_e_grade(ciede2000_many(np.array(query.lab), arr)), dtype=np.float64)
    if families is not None:
        fam = np.array([str(f) for f in families])
        grades = np.where(fam == str(query.family), np.maximum(grades, FAMILY_FLOOR), grades)
        grades = np.where(fam == str(Family.MULTI), 0.0, grades)
    return grades


# --- vocabulary ---------------------------------------------------------------------------------

_Use = Literal["plain", "ambiguous", "label"]
_Lang = Literal["en", "pl"]
_STRICTNESS: dict[str, int] = {"plain": 0, "ambiguous": 1, "label": 2}


@dataclass(frozen=True, slots=True)
class _Form:
    """What one surface form means: the colour, its vocabulary entry, how sure, which language."""

    colour: Colour
    base: str
    use: _Use
    lang: _Lang


_WORD_RE = re.compile(r"[^\W_]+")


def _key(text: str) -> str:
    """The lookup key of a name: folded words joined by single spaces."""
    return " ".join(_WORD_RE.findall(fold(text)))


def _split_marker(form: str) -> tuple[_Use, str]:
    if form.startswith("?"):
        return "ambiguous", form[1:]
    if form.startswith("!"):
        return "label", form[1:]
    return "plain", form


_ENGLISH_SPELLINGS = (
    ("grey", "gray"),
    ("colour", "color"),
    ("coloured", "colored"),
    ("colours", "colors"),
)


def _english_keys(phrase: str) -> set[str]:
    """Keys of an English name: British/American spellings and the closed two-word compound."""
    keys = {_key(phrase)}
    for british, american in _ENGLISH_SPELLINGS:
        keys |= {" ".join(american if w == british else w for w in k.split()) for k in keys}
    keys |= {k.replace(" ", "") for k in keys if len(k.split()) == 2}
    return keys


def _polish_keys(stem: str) -> set[str]:
    """Every inflected form of a Polish adjective stem (both words alike for a two-word stem)."""
    words = _key(stem).split()
    tables = [POLISH_SOFT_SUFFIXES if word[-1] in "kg" else POLISH_HARD_SUFFIXES for word in words]
    return {
        " ".join(word + table[i] for word, table in zip(words, tables, strict=True))
        for i in range(len(POLISH_HARD_SUFFIXES))
    }


def _build() -> tuple[dict[str, _Form], dict[str, Colour]]:
    index: dict[str, _Form] = {}
    by_name: dict[str, Colour] = {}

    def add(key: str, form: _Form) -> None:
        existing = index.get(key)
        if existing is None:
            index[key] = form
        elif existing.base != form.base:
            raise RuntimeError(
                f"colour vocabulary: {key!r} names both {existing.base!r} and {form.base!r}"
            )
        elif _STRICTNESS[form.use] > _STRICTNESS[existing.use]:
            index[key] = form

    for entry in ENTRIES:
        if entry.name in by_name:
            raise RuntimeError(f"colour vocabulary: {entry.name!r} is listed twice")
        colour = Colour(entry.name, Family(entry.family), hex_to_lab(entry.hex), entry.hex.lower())
        by_name[entry.name] = colour
        add(_key(entry.name), _Form(colour, entry.name, "plain", "en"))
        for written in entry.english:
            use, phrase = _split_marker(written)
            for key in _english_keys(phrase):
                add(key, _Form(colour, entry.name, use, "en"))
        for written in entry.polish:
            use, stem = _split_marker(written)
            for key in _polish_keys(stem):
                add(key, _Form(colour, entry.name, use, "pl"))
        for written in entry.polish_words:
            use, phrase = _split_marker(written)
            add(_key(phrase), _Form(colour, entry.name, use, "pl"))
    unknown = set(EXCEPTIONS) - set(by_name)
    if unknown:
        raise RuntimeError(f"colour exceptions name unknown colours: {sorted(unknown)}")
    return index, by_name


_INDEX, _BY_NAME = _build()
_NAMED: tuple[Colour, ...] = tuple(_BY_NAME.values())
_MAX_WORDS = max(len(key.split()) for key in _INDEX) + 1  # + a modifier ("dark navy blue")
_PL_MODIFIERS: dict[str, str] = {
    form: modifier for stem, modifier in MODIFIER_STEMS_PL.items() for form in _polish_keys(stem)
}
_MODIFIERS: dict[str, str] = {**_PL_MODIFIERS, **MODIFIERS_EN}
_NO_VARIANTS = (Family.BLACK, Family.WHITE, Family.MULTI)

# Named colours that a bare coordinate may be called (see nearest()).
_POOL_ALL = tuple(c for c in _NAMED if c.family is not Family.MULTI)
_POOL_FLAT = tuple(c for c in _POOL_ALL if c.family is not Family.METALLIC)
_POOL_ALL_LABS = np.array([c.lab for c in _POOL_ALL])
_POOL_FLAT_LABS = np.array([c.lab for c in _POOL_FLAT])


def vocabulary() -> tuple[Colour, ...]:
    """Every named colour of the vocabulary, in table order (modifier variants not included).

    Returns:
        The named colours.
    """
    return _NAMED


def _shift(colour: Colour, modifier: str) -> Colour:
    """A lighter, paler, darker or brighter variant of a colour (kept inside the sRGB gamut)."""
    lightness, a, b = colour.lab
    chroma, hue = math.hypot(a, b), math.atan2(b, a)
    if modifier == "light":
        lightness, chroma = lightness + (100.0 - lightness) * 0.4, chroma * 0.8
    elif modifier == "pale":
        lightness, chroma = lightness + (100.0 - lightness) * 0.55, chroma * 0.55
    elif modifier == "dark":
        lightness, chroma = lightness * 0.65, chroma * 0.9
    else:  # bright
        chroma *= 1.3
    hex_code = lab_to_hex((lightness, chroma * math.cos(hue), chroma * math.sin(hue)))
    return Colour(f"{modifier} {colour.name}", colour.family, hex_to_lab(hex_code), hex_code)


def _derive(modifier: str, base: _Form) -> _Form | None:
    if base.colour.family in _NO_VARIANTS:
        return None
    explicit = _BY_NAME.get(f"{modifier} {base.colour.name}")
    colour = explicit if explicit is not None else _shift(base.colour, modifier)
    return _Form(colour, base.base, base.use, base.lang)


@lru_cache(maxsize=8192)
def _resolve(key: str) -> _Form | None:
    """The meaning of a key: a listed form, or a modifier (``dark``, ``jasno``) and a listed form."""
    form = _INDEX.get(key)
    if form is not None:
        return form
    words = key.split()
    if not words:
        return None
    first, rest = words[0], words[1:]
    if rest:
        if first in MODIFIER_PREFIXES_PL:  # "jasno-niebieska" is "jasnoniebieska"
            joined = _INDEX.get(" ".join([first + rest[0], *rest[1:]]))
            if joined is not None:
                return joined
        modifier = _MODIFIERS.get(first)
        base = _INDEX.get(" ".join(rest))
        if modifier is not None and base is not None:
            return _derive(modifier, base)
        return None
    for prefix, modifier in MODIFIER_PREFIXES_PL.items():  # "ciemnomusztardowa"
        if first.startswith(prefix) and len(first) > len(prefix):
            base = _INDEX.get(first[len(prefix) :])
            if base is not None and base.lang == "pl":
                return _derive(modifier, base)
    return None


def lookup(word_or_phrase: str) -> Colour | None:
    """Find a colour by name, in English or Polish, in any inflection, with or without diacritics.

    Hyphens, case and spacing do not matter (``"Navy-Blue"``, ``"navy blue"``, ``"navyblue"``).
    A modifier before a name gives a variant (``"dark mustard"``, ``"jasnozielona"``,
    ``"ciemny granat"``) unless a listed colour has that name. Hex codes are not names: see
    :func:`parse_colour`.

    Args:
        word_or_phrase: A colour name as written.

    Returns:
        The colour, or None when the text is not a colour name.
    """
    form = _resolve(_key(word_or_phrase))
    return None if form is None else form.colour


def nearest(lab: ArrayLike, *, include_metallic: bool = False) -> tuple[Colour, float]:
    """The named colour nearest a coordinate, by ΔE00.

    Metallic names (gold, silver, steel...) are left out unless asked for: a flat coordinate
    cannot show a sheen, so ``#c0c0c0`` is a light grey, not silver. ``multi`` never matches.

    Args:
        lab: ``(L*, a*, b*)``.
        include_metallic: Also consider the metallic names.

    Returns:
        The nearest named colour and its ΔE00 from ``lab``.

    Raises:
        ValueError: ``lab`` is not one Lab triple.
    """
    arr = _as_triples(lab, "lab")
    if arr.shape != (3,):
        raise ValueError(f"lab must be one coordinate of shape (3,), got shape {arr.shape}")
    pool, labs = (_POOL_ALL, _POOL_ALL_LABS) if include_metallic else (_POOL_FLAT, _POOL_FLAT_LABS)
    distances = _ciede2000(arr, labs)
    best = int(np.argmin(distances))
    return pool[best], float(distances[best])


_EXAMPLES = "navy, 'light grey', burgundy, czerwony, granatowa, żółte, '#1f2a44'"


def parse_colour(value: str) -> Colour:
    """Parse a colour given by a caller: a name (see :func:`lookup`) or an sRGB hex code.

    A hex code keeps its exact coordinate and swatch and takes the name and family of the
    nearest named (non-metallic) colour: ``"#1f2a44"`` is a ``midnight blue`` (family blue)
    with its own Lab.

    Args:
        value: ``"navy"``, ``"granatowa"``, ``"#1f2a44"``, ``"1F2A44"`` or ``"#12a"``.

    Returns:
        The colour.

    Raises:
        ValueError: neither a known colour name nor a hex code; the message gives examples.
    """
    text = value.strip()
    if not text:
        raise ValueError(f"empty colour; give a colour name or hex code, e.g. {_EXAMPLES}")
    named = lookup(text)
    if named is not None:
        return named
    rgb = _parse_hex(text)
    if rgb is None:
        raise ValueError(
            f"unknown colour {value!r}; give a colour name or hex code, e.g. {_EXAMPLES}"
        )
    lab = _lab_tuple(srgb_to_lab(np.array(rgb, dtype=np.uint8)))
    near, _ = nearest(lab)
    return Colour(near.name, near.family, lab, "#{:02x}{:02x}{:02x}".format(*rgb))


# --- spotting colours in queries ----------------------------------------------------------------

_SCAN_RE = re.compile(
    r"(?P<hex>#(?:[0-9A-Fa-f]{6}|[0-9A-Fa-f]{3})(?![0-9A-Za-z]))"
    r"|(?P<word>[^\W\d_]+)"
    r"|(?P<num>\d+(?:[.,/]\d+)*)"
)
_PHRASE_GAP_RE = re.compile(r"[\s\-]*")
_PUNCT_ONLY_RE = re.compile(r"[^\w\"'”’]+")
_EDGE_PUNCT = " \t-/&,+|;:"


@dataclass(frozen=True, slots=True)
class _Token:
    kind: Literal["hex", "word", "num"]
    folded: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class _Candidate:
    form: _Form
    first: int  # token index
    stop: int  # token index past the last
    is_hex: bool = False


@lru_cache(maxsize=1)
def _stopwords() -> frozenset[str]:
    return get_language("en").stopwords | get_language("pl").stopwords


def _scan(query: str) -> list[_Token]:
    tokens: list[_Token] = []
    for match in _SCAN_RE.finditer(query):
        kind: Literal["hex", "word", "num"] = (
            "hex" if match.lastgroup == "hex" else "word" if match.lastgroup == "word" else "num"
        )
        tokens.append(_Token(kind, fold(match.group(0)), match.start(), match.end()))
    return tokens


def _candidates(query: str, tokens: list[_Token]) -> list[_Candidate]:
    """Colour words and phrases in the query, longest phrase first, left to right."""
    found: list[_Candidate] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token.kind == "hex":
            colour = parse_colour(token.folded)
            found.append(_Candidate(_Form(colour, colour.name, "plain", "en"), i, i + 1, True))
            i += 1
            continue
        step = 1
        if token.kind == "word":
            for length in range(min(_MAX_WORDS, len(tokens) - i), 0, -1):
                span = tokens[i : i + length]
                if any(t.kind != "word" for t in span) or any(
                    not _PHRASE_GAP_RE.fullmatch(query[a.end : b.start])
                    for a, b in itertools.pairwise(span)
                ):
                    continue
                form = _resolve(" ".join(t.folded for t in span))
                if form is not None:
                    found.append(_Candidate(form, i, i + length))
                    step = length
                    break
        i += step
    return found


def _matches_exception(base: str, word: str) -> bool:
    for pattern in EXCEPTIONS.get(base, ()):
        if pattern.endswith("*"):
            if word.startswith(pattern[:-1]):
                return True
        elif word in (pattern, pattern + "s", pattern + "es"):
            return True
    return False


def _neighbour(tokens: list[_Token], index: int, step: int, stop: frozenset[str]) -> _Token | None:
    """The nearest token from ``index`` on in direction ``step`` that is not a stopword."""
    while 0 <= index < len(tokens):
        if tokens[index].folded not in stop:
            return tokens[index]
        index += step
    return None


def _cue_before(tokens: list[_Token], first: int) -> int | None:
    """Index of the first token of a cue (``kolor``, ``w kolorze``) right before ``first``."""
    if first >= 2 and f"{tokens[first - 2].folded} {tokens[first - 1].folded}" in CUES_BEFORE:
        return first - 2
    if first >= 1 and tokens[first - 1].folded in CUES_BEFORE:
        return first - 1
    return None


def _has_cue_after(tokens: list[_Token], stop_index: int) -> bool:
    return stop_index < len(tokens) and tokens[stop_index].folded in CUES_AFTER


def _is_colour(
    cand: _Candidate, tokens: list[_Token], spans: set[int], stop: frozenset[str]
) -> bool:
    """Whether a candidate is meant as a colour; the rules are those of :func:`spot_colours`."""
    if cand.is_hex:
        return True
    form = cand.form
    if (
        form.base in CURRENCY_COLOURS
        and form.lang == "pl"
        and cand.first > 0
        and tokens[cand.first - 1].kind == "num"
    ):
        return False
    for neighbour in (
        _neighbour(tokens, cand.first - 1, -1, stop),
        _neighbour(tokens, cand.stop, 1, stop),
    ):
        if neighbour is not None and _matches_exception(form.base, neighbour.folded):
            return False
    if _cue_before(tokens, cand.first) is not None or _has_cue_after(tokens, cand.stop):
        return True
    if form.use == "plain":
        return True
    if form.use == "label":
        return False
    if form.lang == "en":  # an English colour adjective comes before the noun it describes
        j = cand.stop
        while j < len(tokens) and tokens[j].folded in CONNECTORS:
            j += 1
        return j < len(tokens) and tokens[j].kind == "word" and tokens[j].folded not in stop
    # Polish adjectives stand before or after their noun: any other content word will do.
    return any(
        t.kind == "word" and t.folded not in stop and k not in spans and t.folded not in CUES_AFTER
        for k, t in enumerate(tokens)
    )


def _removed_ranges(tokens: list[_Token], accepted: list[_Candidate]) -> list[tuple[int, int]]:
    """Character ranges to cut from the query: the mentions, their cues and the joins between."""
    token_spans: list[tuple[int, int]] = []
    for cand in accepted:
        first, stop_index = cand.first, cand.stop
        cue = _cue_before(tokens, first)
        if cue is not None:
            first = cue
        elif (
            first >= 1
            and tokens[first - 1].folded == "in"
            and (first < 2 or tokens[first - 2].kind != "num")
        ):
            # "shirt in navy": drop the "in", unless it is the inch after a number ("24 in").
            first -= 1
        if _has_cue_after(tokens, stop_index):
            stop_index += 1
        token_spans.append((first, stop_index))
    merged: list[tuple[int, int]] = []
    for first, stop_index in token_spans:
        if merged:
            prev_first, prev_stop = merged[-1]
            between = tokens[prev_stop:first]
            if all(t.kind == "word" and t.folded in CONNECTORS for t in between):
                merged[-1] = (prev_first, max(prev_stop, stop_index))
                continue
        merged.append((first, stop_index))
    return [(tokens[a].start, tokens[b - 1].end) for a, b in merged]


_CUT = "\x00"  # marks where a mention was cut out


def _tidy(text: str) -> str:
    """Collapse whitespace and drop the punctuation a cut left orphaned (``"sofa (navy)"``)."""
    words = text.replace(_CUT, f" {_CUT} ").split()
    kept = [
        w
        for i, w in enumerate(words)
        if w != _CUT
        and not (
            _PUNCT_ONLY_RE.fullmatch(w)
            and _CUT in (words[i - 1] if i > 0 else "", words[i + 1] if i + 1 < len(words) else "")
        )
    ]
    result = " ".join(kept)
    return result.strip(_EDGE_PUNCT) if _CUT in words else result


def spot_colours(text: str) -> tuple[tuple[ColourMention, ...], str]:
    """Find the colours a shopper wrote in a query and what remains to search for.

    Colour phrases are matched longest first (``"navy blue"``, ``"rose gold"``, ``"off-white"``,
    ``"light grey"``, ``"złamana biel"``, ``"dark mustard"``), in any inflection and with or
    without diacritics; ``#rrggbb``/``#rgb`` codes are colours too (the ``#`` is required in a
    query: ``beaded`` is a word). ``"grey/gray"`` gives two mentions of grey.

    A false colour filter empties a result page, so a colour word counts only when the query
    supports it:

    1. **Compounds are not colours.** If the nearest non-stopword neighbour (either side) forms
       a known compound with the word (:data:`search.colour_data.EXCEPTIONS`: ``black pepper``,
       ``white wine``, ``coffee table``, ``wine glass``, ``copper pipe``, ``stone tile``,
       ``olive oil``, ``ice cream``, ``stolik kawowy``, ``czerwone wino``), it is not a colour.
       ``złoty`` right after a number is the currency (``100 złotych``).
    2. **A cue makes a colour**: ``colour``/``color``/``kolor``/``w kolorze`` before, or
       ``colour``/``coloured``/``tone``/``kolor`` after (``gold tone watch``).
    3. **Plain colour words** (black, navy, beige, granatowy...) count anywhere else.
    4. **Ambiguous words**, also a thing, material or flavour (orange, rose, gold, silver,
       coffee, wine, olive, cream, sand, stone, mint, lime, chocolate, copper, peach...), count
       only when they describe another word: in English when the next word (after ``and``/
       ``or``) is a content word (``orange shirt`` yes; ``orange``, ``face cream``,
       ``dark chocolate`` no); in Polish when the query has another content word
       (``złota bransoletka`` yes; ``złote`` alone no), since Polish adjectives go either side.
    5. **Labels** (``skin``, ``multi``, ``denim``, ``petrol``) count only with a cue.

    A word that is not taken for a colour stays in the remainder, so the lexical retriever
    still matches it.

    Args:
        text: The query as typed.

    Returns:
        The mentions, left to right, and the query without them (and without their cues,
        a leading ``in`` and the ``and``/``i`` joining two colours), whitespace collapsed.
        Offsets index the NFC-normalised query, which is the input itself for NFC text.
    """
    query = unicodedata.normalize("NFC", text)
    tokens = _scan(query)
    candidates = _candidates(query, tokens)
    if not candidates:
        return (), _tidy(query)
    stop = _stopwords()
    spans = {k for cand in candidates for k in range(cand.first, cand.stop)}
    accepted = [c for c in candidates if _is_colour(c, tokens, spans, stop)]
    mentions = tuple(
        ColourMention(
            c.form.colour,
            tokens[c.first].start,
            tokens[c.stop - 1].end,
            query[tokens[c.first].start : tokens[c.stop - 1].end],
        )
        for c in accepted
    )
    pieces: list[str] = []
    position = 0
    for start, end in _removed_ranges(tokens, accepted):
        pieces.append(query[position:start])
        pieces.append(_CUT)
        position = end
    pieces.append(query[position:])
    return mentions, _tidy("".join(pieces))
