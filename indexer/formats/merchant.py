"""Google Merchant Center feeds: tab-separated (TSV) and XML (RSS 2.0 or Atom with ``g:``).

Both map Merchant attribute names to the canonical fields with :func:`merchant_row`; the field
table is in ``docs/catalogue.md``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from typing import BinaryIO
from xml.etree import ElementTree as ET

from indexer.formats.delimited import ColumnKind, read_delimited
from indexer.formats.fields import RawRow
from search.errors import CatalogueError

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
_FEED_ROOTS = ("rss", "feed", "RDF")
_PROLOG_ITEM = re.compile(rb"\s+|<\?.*?\?>|<!--.*?-->", re.DOTALL)
_MAX_PROLOG = 1 << 20


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


def read_merchant_tsv(stream: BinaryIO) -> Iterator[RawRow]:
    """Split a Merchant Center TSV feed into raw rows.

    Args:
        stream: The feed's bytes (already decompressed).

    Yields:
        One :class:`RawRow` per non-blank record, numbered by the line it starts on.

    Raises:
        CatalogueError: Not UTF-8, malformed, or a header without ``id`` and ``title``.
    """
    yield from read_delimited(stream, "\t", _tsv_columns, _tsv_row)


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


def read_prolog(stream: BinaryIO) -> bytes:
    """Read an XML document up to its root element and refuse any document type declaration.

    Entity declarations, the means of entity expansion ("billion laughs") and external entity
    attacks, can only appear inside ``<!DOCTYPE``, which must come before the root element;
    Merchant feeds never need one. The standard library parser is used directly (the project
    does not depend on ``defusedxml``), so this check is what makes parsing safe.

    Args:
        stream: The document's bytes.

    Returns:
        The bytes read so far, to be parsed before the rest of the stream.

    Raises:
        CatalogueError: The prolog holds ``<!DOCTYPE`` (or another ``<!`` declaration), or is
            longer than 1 MiB.
    """
    head = b""
    while True:
        chunk = stream.read(64 * 1024)
        head += chunk
        scan = head
        if scan.startswith((b"\xff\xfe", b"\xfe\xff")):
            scan = head.decode("utf-16", errors="ignore").encode("utf-8")
        elif scan.startswith(b"\xef\xbb\xbf"):
            scan = scan[3:]
        position = 0
        while match := _PROLOG_ITEM.match(scan, position):
            position = match.end()
        rest = scan[position:]
        # An unfinished comment or processing instruction, or too few bytes to tell a
        # declaration from the root element: read on, unless the file has ended.
        undecided = rest.startswith((b"<!--", b"<?")) or len(rest) < len(b"<!DOCTYPE")
        if undecided and chunk:
            pass
        elif rest.startswith(b"<!") and not rest.startswith(b"<!--"):
            raise CatalogueError(
                "the XML document declares a DOCTYPE; document type and entity "
                "declarations are refused (XML entity attacks)"
            )
        else:
            return head
        if len(head) > _MAX_PROLOG:
            raise CatalogueError("the XML prolog (before the root element) is over 1 MiB")


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


def read_merchant_xml(stream: BinaryIO) -> Iterator[RawRow]:
    """Stream the items of a Merchant Center XML feed (RSS 2.0 ``<item>``, Atom ``<entry>``).

    Parsed with ``xml.etree.ElementTree.iterparse``; each item is cleared once read, so memory
    stays flat however long the feed.

    Args:
        stream: The feed's bytes (already decompressed).

    Yields:
        One :class:`RawRow` per item, numbered by item (1-based).

    Raises:
        CatalogueError: The document declares a DOCTYPE, is not well-formed XML (at any point:
            a broken document cannot be resynchronised), or is not an RSS or Atom feed.
    """
    head = read_prolog(stream)
    if not head.strip():
        return
    items = 0
    stack: list[ET.Element] = []
    try:
        for event, element in ET.iterparse(_PrefixedReader(head, stream), events=("start", "end")):
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
                yield RawRow(items, _item_row(element))
                element.clear()
                if stack:
                    stack[-1].remove(element)
    except ET.ParseError as exc:
        raise CatalogueError(f"not well-formed XML ({exc}) after {items} items") from None
