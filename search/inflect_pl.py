"""Polish inflection of product words: the forms a shopper types, and adjective agreement.

Hand-written paradigms, no dictionary. They serve the Polish-English product lexicon
(:mod:`search.lexicon`), whose entries name a lemma and its word class; everything here works on
lower-case words with their diacritics. What is generated:

* adjectives (``adj``, lemma in ``-y`` or ``-i``): every case, gender and number a shopper
  writes, and the ``-o`` form that starts a compound (``granatowo-biały``); the virile plural
  (``granatowi``) is left out, since these adjectives describe things;
* nouns by gender (``m``, ``f``, ``n``) and pluralia tantum (``pl``: ``spodnie``, ``dżinsy``):
  the nominative plural, genitive (singular and plural, with the inserted ``e`` of
  ``kurtek``/``krzeseł``), accusative, instrumental, dative and locative forms (with the regular
  consonant changes: ``lampa`` -> ``lampie``, ``kurtka`` -> ``kurtce``). Irregular forms
  (``stół`` -> ``stołu``, ``kubek`` -> ``kubka`` is regular, ``okno`` -> ``okien`` is not) are
  written out in the lexicon beside the lemma;
* ``inv``: a word that does not inflect (``khaki``, ``bikini``).

Over-generating a rare wrong form is harmless (nobody types it); a generated form that is also
another word is caught by the lexicon's tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, get_args

WordClass = Literal["adj", "m", "f", "n", "pl", "inv"]
"""Word classes of the lexicon: adjective, masculine/feminine/neuter noun, plural-only noun,
invariable word."""

WORD_CLASSES: tuple[str, ...] = get_args(WordClass)

Gender = Literal["m", "f", "n", "pl"]
"""What an adjective agrees with: a singular noun's gender, or ``pl`` for any plural."""

_VOWELS = frozenset("aąeęioóuy")
_VELARS = ("k", "g", "ch")
# Stem endings after which a feminine or masculine noun takes the "soft" endings (-e plural,
# -i/-y genitive): ``koszula`` -> ``koszule``, ``fotel`` -> ``fotele``, ``płaszcz`` -> ``płaszcze``.
_SOFT_I = ("l", "j", "i")  # genitive -i: koszuli, foteli, kuchni
_SOFT_Y = ("c", "cz", "sz", "rz", "ż", "dz", "dż")  # genitive -y: spódnicy, płaszczy, tarczy
# Consonant changes of a hard stem before the locative -e (longest first).
_LOCATIVE = (
    ("st", "ście"),
    ("zd", "ździe"),
    ("sł", "śle"),
    ("sn", "śnie"),
    ("zn", "źnie"),
    ("ch", "sze"),
    ("t", "cie"),
    ("d", "dzie"),
    ("r", "rze"),
    ("ł", "le"),
    ("n", "nie"),
    ("m", "mie"),
    ("p", "pie"),
    ("b", "bie"),
    ("f", "fie"),
    ("w", "wie"),
    ("s", "sie"),
    ("z", "zie"),
    ("k", "ce"),
    ("g", "dze"),
)
# Softened stems of nouns ending in an accented consonant: ``kość`` -> ``kości``.
_ACCENTED = {"ć": "ci", "ń": "ni", "ś": "si", "ź": "zi", "dź": "dzi"}


@dataclass(frozen=True, slots=True)
class Inflection:
    """A lemma's forms.

    Attributes:
        lemma: The dictionary form (nominative singular; nominative plural for ``pl`` nouns;
            masculine nominative singular for adjectives).
        word_class: Its :data:`WordClass`.
        singular: The nominative singular ("" for a plural-only noun).
        plural: The nominative plural (for adjectives: the non-virile plural).
        forms: Every form, lemma first, without repeats.
    """

    lemma: str
    word_class: WordClass
    singular: str
    plural: str
    forms: tuple[str, ...]


def _unique(words: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(w for w in words if w))


def _ends(stem: str, endings: tuple[str, ...]) -> bool:
    return any(stem.endswith(e) for e in endings)


@lru_cache(maxsize=4096)
def adjective_forms(lemma: str) -> Inflection:
    """Every form of an adjective (``granatowy``, ``niebieski``, ``letni``).

    Raises:
        ValueError: the lemma does not end in ``-y`` or ``-i``.
    """
    if lemma.endswith("y"):
        stem = lemma[:-1]
        f, n = stem + "a", stem + "e"
        oblique = [stem + e for e in ("ego", "ej", "emu", "ą", "ym", "ych", "ymi", "o")]
    elif lemma.endswith("i"):
        stem = lemma[:-1]
        velar = _ends(stem, _VELARS)
        f = stem + "a" if velar else lemma + "a"
        n = lemma + "e"
        oblique = [lemma + e for e in ("ego", "ej", "emu", "m", "ch", "mi")]
        oblique += [stem + "ą" if velar else lemma + "ą", stem + "o" if velar else lemma + "o"]
    else:
        raise ValueError(f"adjective {lemma!r} must end in -y or -i")
    return Inflection(lemma, "adj", lemma, n, _unique([lemma, f, n, *oblique]))


def agree(adjective: str, gender: Gender) -> str:
    """The nominative form of an adjective lemma agreeing with a noun.

    Args:
        adjective: The adjective's lemma (``dębowy``).
        gender: The noun's gender when singular, or ``pl`` when plural.

    Returns:
        ``dębowy`` (m), ``dębowa`` (f), ``dębowe`` (n and plural).

    Raises:
        ValueError: the lemma is no adjective lemma (see :func:`adjective_forms`).
    """
    forms = adjective_forms(adjective).forms
    return {"m": forms[0], "f": forms[1], "n": forms[2], "pl": forms[2]}[gender]


def _insert_e(stem: str) -> str:
    """The genitive plural of a stem ending in a consonant cluster closed by k, ł or r
    (``kurtk`` -> ``kurtek``, ``krzesł`` -> ``krzeseł``, ``lustr`` -> ``luster``)."""
    if len(stem) >= 3 and stem[-1] in "kłr" and stem[-2] not in _VOWELS:
        return stem[:-1] + "e" + stem[-1]
    return stem


def _locative(stem: str) -> str:
    for ending, replaced in _LOCATIVE:
        if stem.endswith(ending):
            return stem[: -len(ending)] + replaced
    return stem + "e"


def _feminine(lemma: str) -> tuple[str, list[str]]:
    """(nominative plural, other forms) of a feminine noun."""
    if not lemma.endswith("a"):  # pościel, kość, mysz
        for accented, soft in _ACCENTED.items():
            if lemma.endswith(accented):
                stem = lemma[: -len(accented)] + soft
                return stem, [stem + e for e in ("ą", "om", "ami", "ach", "e")]
        genitive = lemma + ("y" if _ends(lemma, _SOFT_Y) else "i")
        plural = lemma + "e"
        return plural, [genitive, lemma + "ą", lemma + "om", lemma + "ami", lemma + "ach"]
    stem = lemma[:-1]
    common = [stem + e for e in ("ę", "ą", "om", "ami", "ach")]
    if _ends(stem, _VELARS):  # kurtka: kurtki, kurtce, kurtek
        plural = stem + "i"
        return plural, [*common, _locative(stem), _insert_e(stem)]
    if stem.endswith("i"):  # kuchnia: kuchnie, kuchni
        return stem + "e", [*common, stem]
    if _ends(stem, _SOFT_I):  # koszula: koszule, koszuli, koszul
        return stem + "e", [*common, stem + "i", stem]
    if _ends(stem, _SOFT_Y):  # spódnica: spódnice, spódnicy, spódnic
        return stem + "e", [*common, stem + "y", stem]
    # lampa: lampy, lampie, lamp; kołdra: kołdry, kołdrze, kołder
    return stem + "y", [*common, _locative(stem), _insert_e(stem)]


def _masculine(lemma: str) -> tuple[str, list[str]]:
    """(nominative plural, other forms) of a masculine (inanimate) noun."""
    stem = lemma
    for accented, soft in _ACCENTED.items():
        if lemma.endswith(accented):
            stem = lemma[: -len(accented)] + soft
            break
    else:
        # kubek -> kubk-, zegarek -> zegark-: the mobile e of -ek drops before an ending.
        if len(lemma) >= 5 and lemma.endswith("ek") and lemma[-3] not in _VOWELS:
            stem = lemma[:-2] + "k"
    common = [stem + e for e in ("a", "u", "owi", "om", "ami", "ach")]
    if _ends(stem, _VELARS):  # plecak: plecaki, plecaków, plecakiem
        return stem + "i", [*common, stem + "ów", stem + "iem"]
    if stem.endswith("i"):  # (accented) kamień -> kamieni-: kamienie, kamieni
        return stem + "e", [*common, stem, stem + "em", stem + "ów"]
    if _ends(stem, _SOFT_I) or _ends(stem, _SOFT_Y):  # fotel, płaszcz: fotele, foteli
        genitive = stem + ("y" if _ends(stem, _SOFT_Y) else "i")
        return stem + "e", [*common, genitive, stem + "ów", stem + "em"]
    # dywan: dywany, dywanów, dywanem, dywanie
    return stem + "y", [*common, stem + "ów", stem + "em", _locative(stem)]


def _neuter(lemma: str) -> tuple[str, list[str]]:
    """(nominative plural, other forms) of a neuter noun (``-o``, ``-e``, ``-um``)."""
    if lemma.endswith("um"):  # akwarium: akwaria, akwariów
        stem = lemma[:-2]
        return stem + "a", [stem + e for e in ("ów", "om", "ami", "ach")]
    stem = lemma[:-1]
    common = [stem + e for e in ("a", "u", "om", "ami", "ach")]
    if lemma.endswith("e"):  # narzędzie: narzędzia, narzędzi, narzędziem
        return stem + "a", [*common, stem, stem + "em"]
    if _ends(stem, _VELARS):  # łóżko: łóżka, łóżek, łóżkiem, łóżku
        return stem + "a", [*common, _insert_e(stem), stem + "iem"]
    # krzesło: krzesła, krzeseł, krzesłem, krześle
    return stem + "a", [*common, _insert_e(stem), stem + "em", _locative(stem)]


def _plural_only(lemma: str) -> list[str]:
    """Other forms of a plural-only noun (``spodnie``, ``dżinsy``, ``trampki``, ``drzwi``)."""
    if lemma.endswith("ie"):  # spodnie: spodni, spodniach
        base = lemma[:-1]
        return [base, base + "om", base + "ami", base + "ach"]
    if lemma.endswith(("y", "i")) and not lemma.endswith(("ki", "gi")) and lemma[-2] != "i":
        base = lemma[:-1]
        if lemma.endswith("i"):  # drzwi: drzwiach
            return [lemma + "om", lemma + "ami", lemma + "ach"]
        return [base + "ów", base + "om", base + "ami", base + "ach"]
    base = lemma[:-1]  # trampki: trampek, trampków
    return [_insert_e(base), base + "ów", base + "om", base + "ami", base + "ach"]


def inflect(lemma: str, word_class: WordClass, extra: tuple[str, ...] = ()) -> Inflection:
    """The forms of a lemma of a word class, plus forms written out.

    Args:
        lemma: The dictionary form, lower case with diacritics.
        word_class: One of :data:`WORD_CLASSES`.
        extra: Forms the paradigm misses (``stół``: ``stołu``, ``stole``...).

    Returns:
        The lemma's :class:`Inflection`.

    Raises:
        ValueError: an unknown word class, or an adjective lemma not in ``-y``/``-i``, or a
            neuter lemma not in ``-o``/``-e``/``-um``.
    """
    if word_class not in WORD_CLASSES:
        raise ValueError(f"unknown word class {word_class!r}; valid: {', '.join(WORD_CLASSES)}")
    if word_class == "adj":
        found = adjective_forms(lemma)
        return Inflection(
            lemma, "adj", found.singular, found.plural, _unique([*found.forms, *extra])
        )
    if word_class == "inv" or not lemma.isalpha():
        return Inflection(lemma, word_class, lemma, lemma, _unique([lemma, *extra]))
    if word_class == "pl":
        return Inflection(lemma, "pl", "", lemma, _unique([lemma, *_plural_only(lemma), *extra]))
    if word_class == "n" and not lemma.endswith(("o", "e", "um")):
        raise ValueError(f"neuter noun {lemma!r} must end in -o, -e or -um")
    build = {"f": _feminine, "m": _masculine, "n": _neuter}[word_class]
    plural, others = build(lemma)
    return Inflection(lemma, word_class, lemma, plural, _unique([lemma, plural, *others, *extra]))
