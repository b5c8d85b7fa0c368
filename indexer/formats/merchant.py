"""Google Merchant Center feeds: tab-separated (TSV) and XML (RSS 2.0 or Atom with ``g:``).

Both map Merchant attribute names to the canonical fields with :func:`merchant_row`; the field
table is in ``docs/catalogue.md``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import BinaryIO
from xml.etree import ElementTree as ET

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser, iterparse

from indexer.formats.delimited import ColumnKind, read_delimited
from indexer.formats.fields import DEFAULT_LIMITS, RawRow
from search.errors import CatalogueError
from search.types import RowError

#: The Google Merchant (formerly Google Base) XML namespace, written with the ``g:`` prefix.
G_NAMESPACE = "http://base.google.com/ns/1.0"
ATOM_NAMESPACE = "http://www.w3.org/2005/Atom"

# Merchant attribute -> canonical field, for the single-valued ones (the first value wins).
_SINGLE = {
    "id": "id",
    "title": "title",
    "description": "description",
    "brand": "brand",
    "price": "price",
    "sale_price": "sale_price",
    "availability": "availability",
    "gtin": "gtin",
    "link": "url",
    "content_language": "lang",
    # Atom entries may carry the description as <summary> or <content>.
    "summary": "description",
    "content": "description",
}
# Merchant groups (sub-attributes in XML, colon-joined in TSV) and feed bookkeeping: not
# product data a shopper searches for, so they are not imported.
_SKIPPED = frozenset(
    {
        "shipping",
        "tax",
        "installment",
        "subscription_cost",
        "loyalty_points",
        "loyalty_program",
        "certification",
        "guid",
        "pubdate",
        "updated",
        "published",
        "author",
    }
)
_TEXT_ELEMENTS = frozenset({"title", "description", "summary", "content"})
#: Set on an item whose text is over the limit: its length in characters, and the element
#: (local name) the limit was passed in. The namespace is ours: no feed attribute is taken
#: for them.
_OVERSIZED = "{urn:productsearch:reader}oversized"
_OVERSIZED_FIELD = "{urn:productsearch:reader}field"
_FEED_ROOTS = ("rss", "feed", "RDF")


def merchant_row(
    pairs: Iterable[tuple[str, str]], details: Iterable[tuple[str, str]] = ()
) -> dict[str, object]:
    """Map Merchant attributes to the canonical raw fields.

    Args:
        pairs: ``(attribute name, value)`` in feed order, names lower-case without ``g:``;
            an attribute may repeat (the first value of a single-valued one wins).
        details: ``(attribute name, value)`` pairs from ``product_detail``.

    Returns:
        Raw row data for :func:`~indexer.formats.fields.build_product`.
    """
    data: dict[str, object] = {}
    categories: list[str] = []
    colours: list[str] = []
    images: list[str] = []
    extra_images: list[str] = []
    attributes: dict[str, list[str]] = {}
    for name, raw in pairs:
        value = raw.strip()
        if not value or name in _SKIPPED:
            continue
        field = _SINGLE.get(name)
        if field is not None:
            data.setdefault(field, value)
        elif name == "product_type":
            categories.append(value)
        elif name == "color":
            colours.append(value)
        elif name == "image_link":
            images.append(value)
        elif name == "additional_image_link":
            # Merchant asks for commas inside URLs to be written %2C, so a comma separates.
            extra_images.extend(part for part in value.split(",") if part.strip())
        elif name == "material":
            attributes.setdefault(name, []).extend(value.split("/"))
        else:
            attributes.setdefault(name, []).append(value)
    for name, value in details:
        if name.strip() and value.strip():
            attributes.setdefault(name.strip(), []).append(value)
    if categories:
        data["categories"] = categories
    if colours:
        data["colours"] = colours
    if images or extra_images:
        data["images"] = images + extra_images
    if attributes:
        data["attributes"] = attributes
    return data


def _tsv_name(header: str) -> str:
    name = header.strip().lower().replace(" ", "_")
    return name[2:] if name.startswith("g:") else name


def _tsv_columns(header: Sequence[str]) -> list[tuple[ColumnKind, str]]:
    names = [_tsv_name(cell) for cell in header]
    missing = [name for name in ("id", "title") if name not in names]
    if missing:
        raise CatalogueError(
            f"the Merchant feed header has no {' or '.join(map(repr, missing))} column; "
            f"found: {', '.join(header)}"
        )
    return [("field", name) if name else ("skip", "") for name in names]


def _parse_detail(value: str) -> tuple[str, str] | None:
    # TSV writes product_detail as section_name:attribute_name:attribute_value.
    parts = value.split(":", 2)
    return (parts[1], parts[2]) if len(parts) == 3 else None


def _tsv_row(columns: Sequence[tuple[ColumnKind, str]], cells: Sequence[str]) -> dict[str, object]:
    pairs: list[tuple[str, str]] = []
    details: list[tuple[str, str]] = []
    for (kind, name), cell in zip(columns, cells, strict=True):
        if kind == "skip":
            continue
        if name == "product_detail":
            detail = _parse_detail(cell)
            if detail is not None:
                details.append(detail)
        else:
            pairs.append((name, cell))
    return merchant_row(pairs, details)


def read_merchant_tsv(
    stream: BinaryIO, max_line_chars: int = DEFAULT_LIMITS.row_bytes
) -> Iterator[RawRow]:
    """Split a Merchant Center TSV feed into raw rows.

    Args:
        stream: The feed's bytes (already decompressed).
        max_line_chars: The longest line: a longer one is a row with an error, skipped
            without being held whole.

    Yields:
        One :class:`RawRow` per non-blank record, numbered by the line it starts on.

    Raises:
        CatalogueError: Not UTF-8, malformed, or a header without ``id`` and ``title``.
    """
    yield from read_delimited(stream, "\t", _tsv_columns, _tsv_row, max_line_chars)


class _PrefixedReader:
    """A binary reader that returns ``head`` and then the rest of ``stream``."""

    def __init__(self, head: bytes, stream: BinaryIO) -> None:
        self._head = head
        self._stream = stream

    def read(self, size: int = -1) -> bytes:
        if self._head:
            if size < 0:
                data, self._head = self._head + self._stream.read(), b""
            else:
                data, self._head = self._head[:size], self._head[size:]
            return data
        return self._stream.read(size)


def _first_bytes(stream: BinaryIO) -> bytes:
    """The stream's bytes up to the first one that is not ASCII white space (all of them when
    there is none), so that an empty or blank feed is told from a document."""
    head = b""
    while True:
        chunk = stream.read(64 * 1024)
        head += chunk
        if not chunk or head.strip():
            return head
        head = head[-1:]  # keep memory flat over a long run of blanks


def _is_item(tag: str) -> bool:
    namespace, local = _split_tag(tag)
    return local in ("item", "entry") and namespace != G_NAMESPACE


class _BoundedItemBuilder(ET.TreeBuilder):
    """A tree builder that keeps at most ``limit`` characters of text per item (and per text
    outside items). Past the limit an item's text is counted, not stored, and elements opened
    inside it are not built; the item is marked with its length and the field it was in
    (:data:`_OVERSIZED`, :data:`_OVERSIZED_FIELD`). Memory stays bounded however long a text
    is or however many elements an item holds."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self._limit = limit
        self._tags: list[str] = []  # open elements that were built
        self._item: int | None = None  # index in _tags of the open item
        self._chars = 0  # text characters of the open item, or of the current text outside
        self._field: str | None = None  # the item's child the limit was passed in
        self._skipped = 0  # open elements not built (opened past the limit)

    def data(self, data: str, /) -> None:
        room = self._limit - self._chars
        self._chars += len(data)
        if room >= len(data):
            super().data(data)
            return
        if room > 0:
            super().data(data[:room])
        if self._item is not None and self._field is None:
            inner = self._tags[self._item + 1 : self._item + 2]
            self._field = _split_tag(inner[0])[1].lower() if inner else "*"

    def start(self, tag: str, attrs: dict[str, str], /) -> ET.Element:
        if self._field is not None:
            self._skipped += 1
            return ET.Element(tag)
        if self._item is None:
            self._chars = 0
            if _is_item(tag):
                self._item = len(self._tags)
        self._tags.append(tag)
        return super().start(tag, attrs)

    def end(self, tag: str, /) -> ET.Element:
        if self._skipped:
            self._skipped -= 1
            return ET.Element(tag)
        self._tags.pop()
        element = super().end(tag)
        if self._item is None:
            self._chars = 0
        elif len(self._tags) == self._item:  # the item itself ends
            if self._field is not None:
                element.set(_OVERSIZED, str(self._chars))
                element.set(_OVERSIZED_FIELD, self._field)
            self._item, self._field, self._chars = None, None, 0
        return element


def _oversized_error(item: int, element: ET.Element, limit: int) -> RowError | None:
    """The error of an item whose text is over ``limit`` characters, or None."""
    length = element.get(_OVERSIZED)
    if length is None:
        return None
    name = element.get(_OVERSIZED_FIELD, "*")
    field = _SINGLE.get(name, name)
    # The g:id first, as the row's id is read (an Atom entry also has an <id> of its own).
    ids = [
        c.text
        for c in sorted(element, key=lambda c: _split_tag(c.tag)[0] != G_NAMESPACE)
        if _split_tag(c.tag)[1].lower() == "id" and c.text
    ]
    product_id = ids[0].strip()[:256] or None if ids else None
    reason = (
        f"too large: the item holds {int(length):,} characters of text, over the "
        f"{limit:,}-character row limit"
    )
    return RowError(item, field, reason, product_id)


def _split_tag(tag: str) -> tuple[str, str]:
    if tag.startswith("{"):
        namespace, _, local = tag[1:].partition("}")
        return namespace, local
    return "", tag


def _item_row(item: ET.Element) -> dict[str, object]:
    g_pairs: list[tuple[str, str]] = []
    other_pairs: list[tuple[str, str]] = []
    details: list[tuple[str, str]] = []
    for child in item:
        namespace, local = _split_tag(child.tag)
        name = local.lower()
        if len(child):
            if name == "product_detail":
                parts = {_split_tag(c.tag)[1].lower(): c.text or "" for c in child}
                details.append((parts.get("attribute_name", ""), parts.get("attribute_value", "")))
                continue
            if name not in _TEXT_ELEMENTS:
                continue  # a Merchant group such as shipping or tax
            text = "".join(child.itertext())
        elif name == "link" and "href" in child.attrib:
            if child.get("rel", "alternate") != "alternate":
                continue
            text = child.get("href", "")
        else:
            text = child.text or ""
        (g_pairs if namespace == G_NAMESPACE else other_pairs).append((name, text))
    # g: attributes win over the plain RSS or Atom elements of the same name.
    return merchant_row(g_pairs + other_pairs, details)


def read_merchant_xml(
    stream: BinaryIO, max_text_chars: int = DEFAULT_LIMITS.row_bytes
) -> Iterator[RawRow]:
    """Stream the items of a Merchant Center XML feed (RSS 2.0 ``<item>``, Atom ``<entry>``).

    Parsed with ``defusedxml``'s ``iterparse``: a document type declaration is refused
    outright, and so are entity declarations and external references (billion laughs, XXE),
    in whatever encoding the document is written: the check runs on what the parser reads,
    not on the raw bytes (a byte-level scan was bypassed by UTF-16 without a byte order
    mark). Each item is cleared once read, so memory stays flat however long the feed, and
    at most ``max_text_chars`` characters of text are kept per item: an item with more is a
    row with an error naming the field the limit was passed in.

    Args:
        stream: The feed's bytes (already decompressed).
        max_text_chars: The most characters of text one item may hold.

    Yields:
        One :class:`RawRow` per item, numbered by item (1-based).

    Raises:
        CatalogueError: The document declares a DOCTYPE or an entity, is not well-formed XML
            (at any point: a broken document cannot be resynchronised; also an encoding the
            parser does not read, such as UTF-32), or is not an RSS or Atom feed.
    """
    head = _first_bytes(stream)
    if not head.strip():
        return
    items = 0
    stack: list[ET.Element] = []
    parser = DefusedXMLParser(
        target=_BoundedItemBuilder(max_text_chars),
        forbid_dtd=True,
        forbid_entities=True,
        forbid_external=True,
    )
    events = iterparse(_PrefixedReader(head, stream), events=("start", "end"), parser=parser)
    try:
        for event, element in events:
            if event == "start":
                if not stack:
                    root = _split_tag(element.tag)[1]
                    if root not in _FEED_ROOTS:
                        raise CatalogueError(
                            f"the root element is <{root}>; expected an RSS 2.0 <rss> or "
                            "Atom <feed> Merchant feed"
                        )
                stack.append(element)
                continue
            stack.pop()
            namespace, local = _split_tag(element.tag)
            if local in ("item", "entry") and namespace != G_NAMESPACE:
                items += 1
                error = _oversized_error(items, element, max_text_chars)
                if error is not None:
                    yield RawRow(items, None, error)
                else:
                    yield RawRow(items, _item_row(element))
                element.clear()
                if stack:
                    stack[-1].remove(element)
    except DefusedXmlException as exc:
        raise CatalogueError(
            f"the XML document declares a DOCTYPE or entities ({exc}); document type and "
            "entity declarations are refused (XML entity attacks)"
        ) from None
    except ET.ParseError as exc:
        raise CatalogueError(f"not well-formed XML ({exc}) after {items} items") from None
