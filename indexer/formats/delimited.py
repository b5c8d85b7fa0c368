"""CSV reader (``,`` or ``;``), and the record splitter it shares with the Merchant TSV reader."""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import TYPE_CHECKING, BinaryIO, Literal

from indexer.formats.fields import CANONICAL_FIELDS, DEFAULT_LIMITS, RawRow, split_image_list
from search.errors import CatalogueError
from search.types import RowError

if TYPE_CHECKING:
    from _csv import Reader

_ATTRIBUTE_PREFIXES = ("attr:", "attribute.")
# CSV column (lower-cased) -> canonical field; the list fields may come from several columns.
_CSV_COLUMNS = {name: name for name in CANONICAL_FIELDS - {"attributes"}} | {
    "category": "categories",
    "colour": "colours",
    "colors": "colours",
    "color": "colours",
}
_LIST_FIELDS = frozenset({"categories", "colours", "images"})

ColumnKind = Literal["field", "list", "attr", "skip"]

#: What an over-long line is replaced with for the CSV parser: one cell, so the record keeps
#: its line number and is then reported (see :func:`read_delimited`).
_OVERSIZED_LINE = "\x00oversized\x00\n"
#: Characters an over-long line is skipped in.
_SKIP_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class Records:
    """A delimited file's header and its records.

    Attributes:
        header: The header cells, stripped.
        records: ``(start line, cells)`` for every non-blank record after the header.
        release: Lets go of the stream without closing it, for when ``records`` will not be
            iterated (iterating to the end releases it too).
        oversized: Line number -> length in characters of each line over the row limit seen
            so far (filled while ``records`` is iterated); such a line is skipped unread and
            its record is a single placeholder cell.
    """

    header: tuple[str, ...]
    records: Iterator[tuple[int, list[str]]]
    release: Callable[[], object]
    oversized: dict[int, int] = dataclass_field(default_factory=dict)


def _bounded_lines(
    text: io.TextIOWrapper, first_line: int, max_chars: int, oversized: dict[int, int]
) -> Iterator[str]:
    """The lines of ``text``, each read at most ``max_chars`` characters and its line break at a
    time: a longer line is skipped to its end in bounded pieces (never held whole), recorded in
    ``oversized`` and replaced with :data:`_OVERSIZED_LINE`."""
    line_no = first_line
    while True:
        line = text.readline(max_chars + 2)  # room for "\r\n"
        if not line:
            return
        line_no += 1
        if len(line.rstrip("\r\n")) > max_chars:
            length = len(line.rstrip("\r\n"))
            while not line.endswith(("\n", "\r")):
                piece = text.readline(_SKIP_CHUNK)
                if not piece:
                    break
                length += len(piece.rstrip("\r\n"))
                line = piece
            oversized[line_no] = length
            yield _OVERSIZED_LINE
        else:
            yield line


def _sniff_delimiter(header: str, delimiters: str) -> str:
    try:
        return csv.Sniffer().sniff(header, delimiters=delimiters).delimiter
    except csv.Error:
        # A one-column header gives the sniffer nothing to go on: the most frequent wins.
        return max(delimiters, key=header.count)


def read_records(
    stream: BinaryIO, delimiters: str, max_line_chars: int = DEFAULT_LIMITS.row_bytes
) -> Records | None:
    """Open a delimited UTF-8 file (BOM allowed) and read its header.

    Args:
        stream: The file's bytes (already decompressed).
        delimiters: The one delimiter to use, or several to choose from with ``csv.Sniffer``
            on the header line.
        max_line_chars: The longest line read: a longer one is skipped in bounded pieces
            and reported through :attr:`Records.oversized`. Fields may be as long (the csv
            module's own field limit is raised to it when lower).

    Returns:
        The header and a lazy iterator over the records, or None for a file with no header
        (empty or blank).

    Raises:
        CatalogueError: The file is not UTF-8 or is not valid CSV (also raised later, while
            iterating the records).
    """
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
    line_no = 0
    try:
        header_line = ""
        while line := text.readline(max_line_chars + 1):
            line_no += 1
            if len(line) > max_line_chars and not line.endswith(("\n", "\r")):
                text.detach()
                raise CatalogueError(f"the header line is over {max_line_chars:,} characters")
            if line.strip():
                header_line = line
                break
    except UnicodeDecodeError as exc:
        text.detach()
        raise CatalogueError(f"line {line_no + 1} is not valid UTF-8 ({exc.reason})") from None
    if not header_line:
        text.detach()
        return None
    delimiter = delimiters if len(delimiters) == 1 else _sniff_delimiter(header_line, delimiters)
    # The csv module refuses fields over 128 KiB (a process-wide setting) and stops the whole
    # file there; the row limit is what decides instead, so the setting is raised to it.
    if csv.field_size_limit() < max_line_chars:
        csv.field_size_limit(max_line_chars)
    oversized: dict[int, int] = {}
    lines = _bounded_lines(text, line_no, max_line_chars, oversized)
    reader = csv.reader(itertools.chain([header_line], lines), delimiter=delimiter)
    offset = line_no - 1
    try:
        header = tuple(cell.strip() for cell in next(reader))
    except csv.Error as exc:
        text.detach()
        raise CatalogueError(f"malformed header on line {line_no}: {exc}") from None
    return Records(header, _iter_records(text, reader, offset), text.detach, oversized)


def _iter_records(
    text: io.TextIOWrapper, reader: Reader, offset: int
) -> Iterator[tuple[int, list[str]]]:
    previous = offset + reader.line_num
    try:
        for cells in reader:
            start = previous + 1
            previous = offset + reader.line_num
            if cells:
                yield start, cells
    except UnicodeDecodeError as exc:
        raise CatalogueError(f"near line {previous + 1}: not valid UTF-8 ({exc.reason})") from None
    except csv.Error as exc:
        raise CatalogueError(f"malformed CSV near line {previous + 1}: {exc}") from None
    finally:
        # Leave the underlying stream open: the caller drains it to finish the checksum.
        text.detach()


def column_count_error(
    row: int, cells: Sequence[str], expected: int, id_column: int | None
) -> RowError:
    """The error for a record whose number of cells differs from the header's.

    Args:
        row: The record's line.
        cells: The record.
        expected: Number of header columns.
        id_column: Index of the id column, to name the product when the record reaches it.

    Returns:
        A whole-row (``"*"``) error.
    """
    product_id = None
    if id_column is not None and id_column < len(cells):
        product_id = cells[id_column].strip() or None
    reason = f"expected {expected} columns, found {len(cells)}"
    return RowError(row, "*", reason, product_id)


def _column_kind(name: str) -> tuple[ColumnKind, str]:
    key = name.lower()
    if not name:
        return "skip", ""
    for prefix in _ATTRIBUTE_PREFIXES:
        if key.startswith(prefix):
            attribute = name[len(prefix) :].strip()
            return ("attr", attribute) if attribute else ("skip", "")
    field = _CSV_COLUMNS.get(key)
    if field is None:
        return "attr", name
    return ("list" if field in _LIST_FIELDS else "field"), field


def csv_columns(header: Sequence[str]) -> list[tuple[ColumnKind, str]]:
    """Decide what each CSV column holds.

    Args:
        header: The header cells, stripped.

    Returns:
        For each column, its kind and the canonical field or attribute name.

    Raises:
        CatalogueError: The header lacks ``id`` or ``title``, or names a single-valued field
            twice.
    """
    columns = [_column_kind(name) for name in header]
    seen: set[str] = set()
    for kind, field in columns:
        if kind == "field":
            if field in seen:
                raise CatalogueError(f"the header has two {field!r} columns")
            seen.add(field)
    missing = [name for name in ("id", "title") if name not in seen]
    if missing:
        raise CatalogueError(
            f"the header has no {' or '.join(map(repr, missing))} column; "
            f"found: {', '.join(header)}"
        )
    return columns


def _csv_row(columns: Sequence[tuple[ColumnKind, str]], cells: Sequence[str]) -> dict[str, object]:
    data: dict[str, object] = {}
    lists: dict[str, list[str]] = {}
    attributes: dict[str, list[str]] = {}
    for (kind, name), cell in zip(columns, cells, strict=True):
        if kind == "skip" or not cell.strip():
            continue
        if kind == "field":
            data[name] = cell
        elif kind == "attr":
            attributes.setdefault(name, []).extend(cell.split("|"))
        elif name == "categories":
            lists.setdefault(name, []).extend(cell.split("|"))
        elif name == "images":
            lists.setdefault(name, []).extend(split_image_list(cell))
        else:
            lists.setdefault(name, []).append(cell)
    data.update(lists)
    if attributes:
        data["attributes"] = attributes
    return data


def read_delimited(
    stream: BinaryIO,
    delimiters: str,
    plan: Callable[[Sequence[str]], list[tuple[ColumnKind, str]]],
    to_row: Callable[[Sequence[tuple[ColumnKind, str]], Sequence[str]], dict[str, object]],
    max_line_chars: int = DEFAULT_LIMITS.row_bytes,
) -> Iterator[RawRow]:
    """Read a delimited file with a column plan (shared by CSV and Merchant TSV).

    Args:
        stream: The file's bytes (already decompressed).
        delimiters: The delimiter, or candidates for ``csv.Sniffer``.
        plan: Header -> what each column holds; raises :class:`CatalogueError` for a bad header.
        to_row: Column plan and one record's cells -> the raw row's data.
        max_line_chars: The longest line: a longer one is a row with an error, skipped in
            bounded pieces without being held whole.

    Yields:
        One :class:`RawRow` per non-blank record; a record with the wrong number of cells
        or an over-long line becomes a row with an error.

    Raises:
        CatalogueError: Not UTF-8, malformed CSV, or a bad header.
    """
    records = read_records(stream, delimiters, max_line_chars)
    if records is None:
        return
    try:
        columns = plan(records.header)
    except CatalogueError:
        records.release()
        raise
    id_column = next((i for i, (_, name) in enumerate(columns) if name == "id"), None)
    for row, cells in records.records:
        if row in records.oversized:
            length = records.oversized[row]
            reason = (
                f"too large: the line is {length:,} characters, over the "
                f"{max_line_chars:,}-character row limit"
            )
            yield RawRow(row, None, RowError(row, "*", reason))
        elif len(cells) != len(columns):
            yield RawRow(row, None, column_count_error(row, cells, len(columns), id_column))
        else:
            yield RawRow(row, to_row(columns, cells))


def read_csv(stream: BinaryIO, max_line_chars: int = DEFAULT_LIMITS.row_bytes) -> Iterator[RawRow]:
    """Split a CSV catalogue into raw rows (mapping in ``docs/catalogue.md``).

    The delimiter (``,`` or ``;``) is sniffed from the header line.

    Args:
        stream: The file's bytes (already decompressed).
        max_line_chars: The longest line (see :func:`read_delimited`).

    Yields:
        One :class:`RawRow` per non-blank record, numbered by the line it starts on.

    Raises:
        CatalogueError: Not UTF-8, malformed CSV, or a header without ``id`` and ``title``.
    """
    yield from read_delimited(stream, ",;", csv_columns, _csv_row, max_line_chars)
