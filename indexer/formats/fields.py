"""Field rules shared by every catalogue format, and the raw row -> :class:`Product` builder.

Readers only split a file into rows and name the fields; every value rule (text normalisation,
prices, availability, images, attributes) lives here so that the formats cannot drift apart.
The rules are documented for shops in ``docs/catalogue.md``.
"""

from __future__ import annotations

import html
import os
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from search.types import Availability, Product, RowError

#: Prefix of the reason of a :class:`RowError` that did not drop its row (the field was left out).
IGNORED = "ignored: "

#: Field names with a meaning of their own; any other key of a row becomes an attribute.
CANONICAL_FIELDS = frozenset(
    {
        "id",
        "title",
        "description",
        "brand",
        "categories",
        "category",
        "attributes",
        "colours",
        "colour",
        "colors",
        "color",
        "price",
        "currency",
        "sale_price",
        "availability",
        "images",
        "url",
        "gtin",
        "lang",
    }
)

_CATEGORY_KEYS = ("categories", "category")
_COLOUR_KEYS = ("colours", "colour", "colors", "color")
_COLOUR_SPLIT = re.compile(r"[,/|]")
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")
_HTML_BLOCKS = re.compile(
    r"<(script|style)\b[^>]*>.*?</\1\s*>|<!--.*?-->", re.IGNORECASE | re.DOTALL
)
_HTML_TAG = re.compile(r"</?([A-Za-z][A-Za-z0-9]*)\b[^<>]*>")
# Inline tags vanish without a trace ("<b>Sof</b>a"); any other tag separates words.
_INLINE_TAGS = frozenset(
    {"a", "abbr", "b", "em", "font", "i", "small", "span", "strong", "sub", "sup", "u"}
)
_PRICE = re.compile(
    r"^(?P<pre>[^0-9\s.,+\-]+)?\s*(?P<sign>-)?\s*"
    r"(?P<num>[0-9](?:[0-9.,' \u00a0\u2009\u202f]*[0-9])?[.,]?)"
    r"\s*(?P<post>[^0-9\s.,+\-]+)?$"
)
_DIGIT_GROUPING = re.compile(r"[' \u00a0\u2009\u202f]")
_CURRENCY_SYMBOLS = {
    "zł": "PLN",
    "zl": "PLN",
    "€": "EUR",
    "$": "USD",
    "us$": "USD",
    "£": "GBP",
    "kč": "CZK",
}
_AVAILABILITY = {
    "instock": Availability.IN_STOCK,
    "outofstock": Availability.OUT_OF_STOCK,
    "preorder": Availability.PREORDER,
    "backorder": Availability.BACKORDER,
}
_AVAILABILITY_NOISE = re.compile(r"[\s_\-]")
_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]+:")
_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".avif", ".bmp", ".tif", ".tiff")
_LANG = re.compile(r"^[a-z]{2,3}(?:-[a-z0-9]{1,8})*$")


@dataclass(frozen=True, slots=True)
class FieldLimits:
    """The largest values one catalogue row may hold; a row over any of them is reported as a
    bad row (field and sizes named) and dropped, before any of its text is processed.

    A 100 MB JSON line took 300 s and 3.9 GB to import, and a 6.8 MB description sent to the
    live catalogue held its lock for 76 s: no real product needs that much, and every later
    step (HTML cleaning, analysis, embedding) costs in proportion. Text sizes are in characters.

    Attributes:
        row_bytes: One row as stored: a JSON line in bytes, a CSV or TSV line in characters
            (read in bounded pieces: a longer line is skipped to its end without being held
            in memory).
        id_chars: The product id.
        title_chars: The title.
        description_chars: The description (before its HTML is removed).
        text_chars: Any other single text: brand, URL, price, an image location, a category
            path or level, a colour, an attribute name or value.
        list_items: Items of one list: images, categories, colours, attributes, the values of
            one attribute.
    """

    row_bytes: int = 1 << 20
    id_chars: int = 256
    title_chars: int = 1024
    description_chars: int = 64 * 1024
    text_chars: int = 4096
    list_items: int = 1000

    def __post_init__(self) -> None:
        for name in self.__slots__:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"FieldLimits.{name} must be a whole number >= 1, got {value!r}")

    def chars_for(self, field: str) -> int:
        """The character limit of one text field (``title``, ``description``, ``id``, others)."""
        if field == "id":
            return self.id_chars
        if field == "title":
            return self.title_chars
        if field == "description":
            return self.description_chars
        return self.text_chars


#: The limits a catalogue import and the live catalogue apply unless given others.
DEFAULT_LIMITS = FieldLimits()


@dataclass(frozen=True, slots=True)
class RawRow:
    """One row as a format reader saw it, before validation.

    Attributes:
        row: 1-based row number: the line (JSON Lines), the line a record starts on (CSV, TSV;
            the header is line 1) or the item number (XML).
        data: Field name -> raw value, JSON-like (str, int, float, bool, None, list, dict);
            None when the row could not be parsed at all.
        error: Why the row could not be parsed; set exactly when ``data`` is None.
    """

    row: int
    data: Mapping[str, object] | None
    error: RowError | None = None


@dataclass(frozen=True, slots=True)
class BuildOutcome:
    """What :func:`build_product` made of one row.

    Attributes:
        product: The product, or None when the row is dropped.
        product_id: The row's id when it could be read (also for dropped rows).
        errors: Every problem found, dropping (``product`` is None) or ``ignored:`` ones.
    """

    product: Product | None
    product_id: str | None
    errors: tuple[RowError, ...]


class _Problems:
    """Collects one row's errors; a ``fail`` drops the row, a ``warn`` only leaves a field out."""

    __slots__ = ("errors", "fatal", "product_id", "row")

    def __init__(self, row: int) -> None:
        self.row = row
        self.product_id: str | None = None
        self.errors: list[RowError] = []
        self.fatal = False

    def fail(self, field: str, reason: str) -> None:
        self.errors.append(RowError(self.row, field, reason, self.product_id))
        self.fatal = True

    def warn(self, field: str, reason: str) -> None:
        self.errors.append(RowError(self.row, field, IGNORED + reason, self.product_id))


def json_type(value: object) -> str:
    """Name a value's type the way JSON does, for error messages.

    Args:
        value: Any parsed value.

    Returns:
        ``"string"``, ``"number"``, ``"boolean"``, ``"array"``, ``"object"``, ``"null"`` or the
        Python type name.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def normalize_text(text: str) -> str:
    """NFC-normalise, drop control characters and collapse whitespace; diacritics are kept.

    Args:
        text: Raw text.

    Returns:
        The text on one line with single spaces and no leading or trailing whitespace.
    """
    if not text.isascii() and not unicodedata.is_normalized("NFC", text):
        text = unicodedata.normalize("NFC", text)
    if not text.isprintable():
        text = _CONTROL_CHARS.sub("", text)
    return " ".join(text.split())


def _replace_tag(match: re.Match[str]) -> str:
    return "" if match.group(1).lower() in _INLINE_TAGS else " "


def clean_html(text: str) -> str:
    """Turn a description that may hold simple HTML into plain normalised text.

    Tags are removed (script and style with their content), entities unescaped, then the text
    is normalised by :func:`normalize_text`.

    Args:
        text: Raw description.

    Returns:
        Plain text.
    """
    if "<" in text:
        text = _HTML_BLOCKS.sub(" ", text)
        text = _HTML_TAG.sub(_replace_tag, text)
    if "&" in text:
        text = html.unescape(text)
    return normalize_text(text)


def resolve_currency(token: str) -> str | None:
    """Read a currency code or symbol.

    Args:
        token: ``"PLN"``, ``"pln"``, ``"zł"``, ``"€"``, ``"$"``, ``"£"``...

    Returns:
        The upper-case ISO 4217 code, or None when the token is not a known code or symbol.
    """
    token = token.strip()
    if len(token) == 3 and token.isascii() and token.isalpha():
        return token.upper()
    return _CURRENCY_SYMBOLS.get(token.lower())


def _parse_decimal(number: str) -> float:
    number = _DIGIT_GROUPING.sub("", number)
    dots, commas = number.count("."), number.count(",")
    fraction = ""
    if dots and commas:
        decimal = "." if number.rfind(".") > number.rfind(",") else ","
        if number.count(decimal) != 1:
            raise ValueError("mixed decimal and grouping separators")
        whole, fraction = number.split(decimal)
        groups = whole.split("," if decimal == "." else ".")
    elif dots > 1 or commas > 1:
        groups = number.split("." if dots else ",")
    elif dots or commas:
        whole, fraction = number.split("." if dots else ",")
        groups = [whole]
    else:
        groups = [number]
    if len(groups) > 1 and (
        not 1 <= len(groups[0]) <= 3 or any(len(group) != 3 for group in groups[1:])
    ):
        raise ValueError("digit groups must have three digits")
    return float(f"{''.join(groups)}.{fraction or '0'}")


def parse_price(value: str | int | float) -> tuple[float, str | None]:
    """Read a price amount and the currency written with it.

    Accepted: numbers; ``"12.50"``, ``"12,50"``, ``"1 299,00"``, ``"1,299.00"``, ``"1.299,00"``;
    a currency code or symbol before or after (``"12.50 PLN"``, ``"PLN 12.50"``, ``"12,50 zł"``,
    ``"€12"``). One separator is the decimal separator; with both, the last one is; a repeated
    separator groups thousands (groups of three digits).

    Args:
        value: The raw price.

    Returns:
        ``(amount, currency)``; the currency is None when the value names none.

    Raises:
        ValueError: The value is not a price or is negative; the message says why.
    """
    if isinstance(value, bool):
        raise ValueError("expected a number or a string")
    if isinstance(value, (int, float)):
        amount, currency = float(value), None
    else:
        match = _PRICE.match(value.strip())
        if match is None:
            raise ValueError(f"unparsable price {value!r}")
        pre, post = match.group("pre"), match.group("post")
        if pre and post:
            raise ValueError(f"two currencies in price {value!r}")
        currency = None
        if pre or post:
            currency = resolve_currency(pre or post)
            if currency is None:
                raise ValueError(f"unknown currency {pre or post!r} in price {value!r}")
        try:
            amount = _parse_decimal(match.group("num"))
        except ValueError as exc:
            raise ValueError(f"unparsable price {value!r}: {exc}") from None
        if match.group("sign"):
            amount = -amount
    if amount < 0:
        raise ValueError(f"negative price {value!r}")
    if amount != amount or amount == float("inf"):
        raise ValueError(f"price {value!r} is not a finite number")
    return amount, currency


def parse_availability(value: str) -> Availability | None:
    """Read a stock state as PIMs and Google Merchant Center write it.

    Case, spaces, hyphens and underscores are ignored (``"in stock"``, ``"In-Stock"``,
    ``"in_stock"``) and schema.org URLs are accepted (``"https://schema.org/InStock"``).

    Args:
        value: The raw value.

    Returns:
        The availability, or None when the value is unknown.
    """
    key = value.strip().rsplit("/", 1)[-1]
    return _AVAILABILITY.get(_AVAILABILITY_NOISE.sub("", key.lower()))


def resolve_image(location: str, base_dir: str) -> str | None:
    """Turn an image location into an http(s) URL or an absolute path.

    http(s) URLs are kept as they are, protocol-relative ``//host/...`` gets ``https:``,
    ``file://`` URLs become paths, and relative paths resolve against ``base_dir`` (the
    catalogue's folder). Files are not checked for existence here.

    Args:
        location: The raw location, stripped.
        base_dir: Absolute folder that relative paths are relative to.

    Returns:
        The resolved location, or None for another URL scheme (``data:``, ``ftp:``...).
    """
    lowered = location[:8].lower()
    if lowered.startswith(("http://", "https://")):
        return location
    if location.startswith("//"):
        return "https:" + location
    if lowered.startswith("file://"):
        return os.path.normpath(unquote(urlsplit(location).path))
    if _URL_SCHEME.match(location):
        return None
    return os.path.normpath(os.path.join(base_dir, location))


def split_image_list(cell: str) -> list[str]:
    """Split a CSV cell holding several image locations.

    ``|`` always separates. Without ``|``, commas separate only when the cell has no
    whitespace and every piece ends in an image file extension, so that URLs with commas in
    them (image CDN transformations) stay whole.

    Args:
        cell: The raw cell.

    Returns:
        The locations, stripped, empty ones left out.
    """
    if "|" in cell:
        pieces = cell.split("|")
    elif "," in cell and not any(ch.isspace() for ch in cell.strip()):
        pieces = cell.split(",")
        if not all(piece.split("?", 1)[0].lower().endswith(_IMAGE_EXTENSIONS) for piece in pieces):
            pieces = [cell]
    else:
        pieces = [cell]
    return [piece.strip() for piece in pieces if piece.strip()]


def _scalar_text(value: object) -> str | None:
    if isinstance(value, str):
        return normalize_text(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return None


def _attribute_values(value: object) -> list[str] | None:
    """Values of an attribute: a scalar or a list of scalars; None when it is anything else."""
    items: Iterable[object] = value if isinstance(value, (list, tuple)) else (value,)
    texts: list[str] = []
    for item in items:
        if item is None:
            continue
        text = _scalar_text(item)
        if text is None:
            return None
        if text and text not in texts:
            texts.append(text)
    return texts


def _string_list(value: object) -> list[str] | None:
    """A string or a list of strings as a list; None for anything else."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)):
        for item in value:
            if not isinstance(item, str):
                return None
        return list(value)
    return None


def _optional_string(problems: _Problems, data: Mapping[str, object], key: str) -> str | None:
    value = data.get(key)
    if value is None or isinstance(value, str):
        return value
    problems.fail(key, f"expected a string, got {json_type(value)}")
    return None


def _read_id(problems: _Problems, data: Mapping[str, object]) -> str | None:
    value = data.get("id")
    if value is None:
        problems.fail("id", "missing")
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        problems.fail("id", f"expected a string or an integer, got {json_type(value)}")
        return None
    text = value.strip()
    if not text.isascii():
        text = unicodedata.normalize("NFC", text)
    if not text:
        problems.fail("id", "empty")
        return None
    return text


def _read_title(problems: _Problems, data: Mapping[str, object]) -> str:
    value = data.get("title")
    if value is None:
        problems.fail("title", "missing")
        return ""
    if not isinstance(value, str):
        problems.fail("title", f"expected a string, got {json_type(value)}")
        return ""
    title = normalize_text(value)
    if not title:
        problems.fail("title", "empty after removing whitespace")
    return title


def _read_categories(
    problems: _Problems, data: Mapping[str, object]
) -> tuple[tuple[str, ...], ...]:
    paths: list[tuple[str, ...]] = []
    for key in _CATEGORY_KEYS:
        value = data.get(key)
        if value is None:
            continue
        if isinstance(value, str):
            items: list[object] = [value]
        elif isinstance(value, (list, tuple)):
            items = list(value)
        else:
            problems.fail(key, f"expected a list of category paths, got {json_type(value)}")
            continue
        for item in items:
            if isinstance(item, str):
                levels = item.split(">")
            else:
                strings = _string_list(item) if isinstance(item, (list, tuple)) else None
                if strings is None:
                    problems.fail(
                        key,
                        "each category path must be a string 'A > B' or a list of strings, "
                        f"got {json_type(item)}",
                    )
                    break
                levels = strings
            path = tuple([level for level in map(normalize_text, levels) if level])
            if path and path not in paths:
                paths.append(path)
    return tuple(paths)


def _read_colours(problems: _Problems, data: Mapping[str, object]) -> tuple[str, ...]:
    colours: list[str] = []
    for key in _COLOUR_KEYS:
        value = data.get(key)
        if value is None:
            continue
        strings = _string_list(value)
        if strings is None:
            problems.fail(key, f"expected a string or a list of strings, got {json_type(value)}")
            continue
        for string in strings:
            for part in _COLOUR_SPLIT.split(string):
                colour = normalize_text(part)
                if colour and colour not in colours:
                    colours.append(colour)
    return tuple(colours)


def _read_attributes(problems: _Problems, data: Mapping[str, object]) -> dict[str, tuple[str, ...]]:
    merged: dict[str, list[str]] = {}

    def add(name: str, values: list[str]) -> None:
        bucket = merged.setdefault(name, [])
        bucket.extend(value for value in values if value not in bucket)

    declared = data.get("attributes")
    if isinstance(declared, (dict, Mapping)):
        for raw_name, value in declared.items():
            name = normalize_text(str(raw_name))
            values = _attribute_values(value)
            if values is None:
                problems.fail(
                    f"attributes.{name}",
                    f"expected a string, a number or a list of them, got {json_type(value)}",
                )
            elif name:
                add(name, values)
            elif values:
                problems.warn("attributes", "attribute with an empty name")
    elif declared is not None:
        problems.fail("attributes", f"expected an object, got {json_type(declared)}")

    for key, value in data.items():
        if key in CANONICAL_FIELDS or value is None:
            continue
        values = _attribute_values(value)
        name = normalize_text(key)
        if values is None:
            problems.warn(
                key,
                f"unknown field with a {json_type(value)} value is not imported "
                "(only strings, numbers and lists of them become attributes)",
            )
        elif name:
            add(name, values)
    return {name: tuple(values) for name, values in merged.items() if values}


def _read_currency(problems: _Problems, data: Mapping[str, object]) -> str | None:
    raw = _optional_string(problems, data, "currency")
    if raw is None or not raw.strip():
        return None
    currency = resolve_currency(raw)
    if currency is None:
        problems.fail("currency", f"unknown currency {raw!r}; expected an ISO 4217 code")
    return currency


def _read_money(
    problems: _Problems, data: Mapping[str, object], key: str, *, fatal: bool
) -> tuple[float | None, str | None]:
    value = data.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None, None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        problems.fail(key, f"expected a number or a string, got {json_type(value)}")
        return None, None
    try:
        return parse_price(value)
    except ValueError as exc:
        (problems.fail if fatal else problems.warn)(key, str(exc))
        return None, None


def _read_prices(
    problems: _Problems, data: Mapping[str, object]
) -> tuple[float | None, str | None, float | None]:
    currency = _read_currency(problems, data)
    price, price_currency = _read_money(problems, data, "price", fatal=True)
    if price_currency is not None:
        if currency is not None and price_currency != currency:
            problems.fail("price", f"currency {price_currency} in price differs from {currency}")
        currency = currency or price_currency
    sale, sale_currency = _read_money(problems, data, "sale_price", fatal=False)
    if sale is None:
        return price, currency, None
    if sale_currency is not None and currency is not None and sale_currency != currency:
        problems.warn("sale_price", f"currency {sale_currency} differs from {currency}")
        return price, currency, None
    if price is not None and sale > price:
        problems.warn("sale_price", f"sale price {sale:g} is above the price {price:g}")
        return price, currency, None
    return price, currency or sale_currency, sale


def _read_availability(problems: _Problems, data: Mapping[str, object]) -> Availability:
    raw = _optional_string(problems, data, "availability")
    if raw is None or not raw.strip():
        return Availability.IN_STOCK
    availability = parse_availability(raw)
    if availability is None:
        valid = ", ".join(a.value for a in Availability)
        problems.fail("availability", f"unknown value {raw!r}; expected one of {valid}")
        return Availability.IN_STOCK
    return availability


def _read_images(problems: _Problems, data: Mapping[str, object], base_dir: str) -> tuple[str, ...]:
    value = data.get("images")
    if value is None:
        return ()
    locations = _string_list(value)
    if locations is None:
        problems.fail("images", f"expected a string or a list of strings, got {json_type(value)}")
        return ()
    images: list[str] = []
    for location in locations:
        location = location.strip()
        if not location:
            continue
        resolved = resolve_image(location, base_dir)
        if resolved is None:
            problems.warn(
                "images", f"unsupported image location {location!r}; use http(s) or a path"
            )
        elif resolved not in images:
            images.append(resolved)
    return tuple(images)


def _read_gtin(problems: _Problems, data: Mapping[str, object]) -> str | None:
    value = data.get("gtin")
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        text = str(value)
    elif isinstance(value, str):
        text = value.strip().replace(" ", "").replace("-", "")
        if not text:
            return None
    else:
        problems.fail("gtin", f"expected a string or an integer, got {json_type(value)}")
        return None
    if not (text.isascii() and text.isdigit() and 8 <= len(text) <= 14):
        problems.warn("gtin", f"{value!r} is not a GTIN (8 to 14 digits)")
        return None
    return text


def _read_lang(problems: _Problems, data: Mapping[str, object]) -> str | None:
    raw = _optional_string(problems, data, "lang")
    if raw is None:
        return None
    lang = raw.strip().lower().replace("_", "-")
    if not lang:
        return None
    if not _LANG.match(lang):
        problems.warn("lang", f"{raw!r} is not a language code such as 'en' or 'pl'")
        return None
    return lang


def _optional_text(
    problems: _Problems, data: Mapping[str, object], key: str, *, html_text: bool = False
) -> str | None:
    raw = _optional_string(problems, data, key)
    if raw is None:
        return None
    text = clean_html(raw) if html_text else normalize_text(raw)
    return text or None


def _oversize(value: object, field: str, limits: FieldLimits, depth: int = 0) -> str | None:
    """Why ``value`` is over the limits, or None. Only sizes are looked at (no copy, no
    normalisation), so an oversized row costs nothing more than having been read."""
    if isinstance(value, str):
        limit = limits.chars_for(field) if depth == 0 else limits.text_chars
        if len(value) > limit:
            return f"{len(value):,} characters; the limit is {limit:,}"
        return None
    if isinstance(value, (list, tuple, Mapping)):
        if len(value) > limits.list_items:
            return f"{len(value):,} items; the limit is {limits.list_items:,}"
        if depth >= 2:
            return None  # deeper nesting is refused by the type checks of build_product
        items: Iterable[object] = value
        if isinstance(value, Mapping):
            items = [*value.keys(), *value.values()]
        for item in items:
            reason = _oversize(item, field, limits, depth + 1)
            if reason is not None:
                return reason
    return None


def check_sizes(row: int, data: Mapping[str, object], limits: FieldLimits) -> list[RowError]:
    """Check every field of a raw row against the size limits.

    Args:
        row: The row's 1-based number, for the errors.
        data: Field name -> raw value (see :class:`RawRow`).
        limits: The limits.

    Returns:
        One error per field over a limit (empty when the row fits); each names the field, its
        size and the limit.
    """
    if len(data) > limits.list_items:
        reason = f"{len(data):,} fields; the limit is {limits.list_items:,}"
        return [RowError(row, "*", reason, None)]
    product_id = data.get("id")
    readable_id = (
        str(product_id)
        if isinstance(product_id, (str, int)) and len(str(product_id)) <= limits.id_chars
        else None
    )
    errors: list[RowError] = []
    for key, value in data.items():
        field = str(key)
        if len(field) > limits.text_chars:
            errors.append(RowError(row, field[:64] + "...", "field name too long", readable_id))
            continue
        problem = _oversize(value, field, limits)
        if problem is not None:
            errors.append(RowError(row, field, f"too large: {problem}", readable_id))
    return errors


def build_product(
    row: int,
    data: Mapping[str, object],
    base_dir: str,
    limits: FieldLimits = DEFAULT_LIMITS,
) -> BuildOutcome:
    """Validate one raw row into a :class:`Product`.

    Every problem is collected, not only the first. Problems that make the row untrustworthy
    drop it (missing or empty id or title, a value of the wrong type, an unparsable or negative
    price, an unknown currency or availability); problems confined to an optional value leave
    that value out and are reported with the ``ignored:`` prefix (see ``docs/catalogue.md``).

    A row with a value over ``limits`` is dropped at once with one error per such field
    (:func:`check_sizes`), before any text is normalised.

    Args:
        row: The row's 1-based number, for the errors.
        data: Field name -> raw value (see :class:`RawRow`).
        base_dir: Absolute folder that relative image paths resolve against.
        limits: Size limits of the row's values.

    Returns:
        The product (None when dropped), the row's id when readable, and the errors.
    """
    oversized = check_sizes(row, data, limits)
    if oversized:
        return BuildOutcome(None, oversized[0].product_id, tuple(oversized))
    problems = _Problems(row)
    product_id = _read_id(problems, data)
    problems.product_id = product_id
    title = _read_title(problems, data)
    description = _optional_text(problems, data, "description", html_text=True) or ""
    brand = _optional_text(problems, data, "brand")
    categories = _read_categories(problems, data)
    attributes = _read_attributes(problems, data)
    colours = _read_colours(problems, data)
    price, currency, sale_price = _read_prices(problems, data)
    availability = _read_availability(problems, data)
    images = _read_images(problems, data, base_dir)
    url_raw = _optional_string(problems, data, "url")
    url = url_raw.strip() or None if url_raw is not None else None
    gtin = _read_gtin(problems, data)
    lang = _read_lang(problems, data)
    if problems.fatal or product_id is None:
        return BuildOutcome(None, product_id, tuple(problems.errors))
    product = Product(
        id=product_id,
        title=title,
        description=description,
        brand=brand,
        categories=categories,
        attributes=attributes,
        colours=colours,
        price=price,
        currency=currency,
        sale_price=sale_price,
        availability=availability,
        images=images,
        url=url,
        gtin=gtin,
        lang=lang,
    )
    return BuildOutcome(product, product_id, tuple(problems.errors))
