"""Catalogue import: a PIM export or Merchant feed -> validated :class:`Product` rows + a report.

Formats (``docs/catalogue.md`` has the field mapping of each):

* ``jsonl``: JSON Lines with the canonical field names (``.jsonl``, ``.ndjson``);
* ``csv``: a header row, ``,`` or ``;`` separated (``.csv``);
* ``merchant-tsv``: a Google Merchant Center tab-separated feed (``.tsv``, ``.txt``);
* ``merchant-xml``: a Google Merchant Center RSS 2.0 or Atom feed (``.xml``, ``.rss``).

Each may be gzip-compressed (``.gz`` appended; compressed files are recognised by content too).
A bad row never stops an import: it becomes a :class:`RowError` in the :class:`ImportReport` and
the good rows are kept, unless ``strict=True`` asks for the import to fail instead. A row or
field over its size limit (:class:`FieldLimits`: 1 MiB a row, 64 KiB a description, 1 KiB a
title by default) is such a bad row, found without the row being read whole.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal, get_args

from indexer.formats.delimited import read_csv
from indexer.formats.fields import (
    DEFAULT_LIMITS,
    IGNORED,
    FieldLimits,
    RawRow,
    build_product,
)
from indexer.formats.jsonl import read_jsonl
from indexer.formats.merchant import read_merchant_tsv, read_merchant_xml
from search.errors import CatalogueError
from search.types import Product, RowError

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

__all__ = [
    "DEFAULT_LIMITS",
    "FORMAT_EXTENSIONS",
    "PROGRESS_EVERY",
    "CatalogueFormat",
    "FieldLimits",
    "ImportReport",
    "ImportResult",
    "detect_format",
    "parse_format",
    "read_catalogue",
]

CatalogueFormat = Literal["jsonl", "csv", "merchant-tsv", "merchant-xml"]

#: File name extension -> format (a ``.gz`` after any of them is read through gzip).
FORMAT_EXTENSIONS: dict[str, CatalogueFormat] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".tsv": "merchant-tsv",
    ".txt": "merchant-tsv",
    ".xml": "merchant-xml",
    ".rss": "merchant-xml",
}

#: ``progress`` is called after every this many rows.
PROGRESS_EVERY = 1000

#: How many row errors the ``strict`` failure message quotes.
_STRICT_QUOTED = 5

_FORMATS: tuple[CatalogueFormat, ...] = get_args(CatalogueFormat)
_READERS: dict[CatalogueFormat, Callable[[BinaryIO], Iterator[RawRow]]] = {
    "jsonl": read_jsonl,
    "csv": read_csv,
    "merchant-tsv": read_merchant_tsv,
    "merchant-xml": read_merchant_xml,
}
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What an import read, kept and rejected.

    Attributes:
        rows_read: Data rows seen (JSON lines, CSV/TSV records or XML items; blank lines and
            the header are not rows).
        products_ok: Rows that became products.
        errors: Every problem, in file order. A row missing from the products has at least one
            error without the ``ignored:`` prefix; an ``ignored:`` error means the row was kept
            without the named field.
    """

    rows_read: int
    products_ok: int
    errors: tuple[RowError, ...]

    @property
    def rows_dropped(self) -> int:
        """Rows that did not become products."""
        return self.rows_read - self.products_ok

    @property
    def ok(self) -> bool:
        """True when every row read became a product (``ignored:`` warnings allowed)."""
        return self.rows_dropped == 0

    @property
    def has_errors(self) -> bool:
        """True when there is any error, ``ignored:`` warnings included."""
        return bool(self.errors)

    @property
    def warnings(self) -> tuple[RowError, ...]:
        """The errors that did not drop their row (reason starts with ``ignored:``)."""
        return tuple(error for error in self.errors if error.reason.startswith(IGNORED))

    def to_dict(self) -> dict[str, Any]:
        """Serialise for JSON (the ``import-report.json`` shape in ``docs/catalogue.md``).

        Returns:
            ``rows_read``, ``products_ok``, ``rows_dropped``, ``ok`` and ``errors`` (a list
            of objects with ``row``, ``field``, ``reason``, ``product_id``).
        """
        return {
            "rows_read": self.rows_read,
            "products_ok": self.products_ok,
            "rows_dropped": self.rows_dropped,
            "ok": self.ok,
            "errors": [
                {
                    "row": error.row,
                    "field": error.field,
                    "reason": error.reason,
                    "product_id": error.product_id,
                }
                for error in self.errors
            ],
        }


@dataclass(frozen=True, slots=True)
class ImportResult:
    """The products of a catalogue and how the import went.

    Attributes:
        products: The valid products, in file order, ids unique.
        report: Counts and row errors.
        checksum: SHA-256 (hex) of the file's bytes as stored (compressed, for a ``.gz``).
        format: The format the file was read as.
    """

    products: tuple[Product, ...]
    report: ImportReport
    checksum: str
    format: CatalogueFormat


def detect_format(path: Path) -> CatalogueFormat:
    """Tell a catalogue's format from its file name.

    ``.jsonl``/``.ndjson`` -> ``jsonl``, ``.csv`` -> ``csv``, ``.tsv``/``.txt`` ->
    ``merchant-tsv``, ``.xml``/``.rss`` -> ``merchant-xml``, each also with ``.gz`` appended.
    Case does not matter.

    Args:
        path: The catalogue file (it need not exist).

    Returns:
        The format.

    Raises:
        CatalogueError: The extension is not one of those; the message lists them.
    """
    suffixes = [suffix.lower() for suffix in Path(path).suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    fmt = FORMAT_EXTENSIONS.get(suffixes[-1]) if suffixes else None
    if fmt is None:
        known = ", ".join(f"{ext} ({name})" for ext, name in FORMAT_EXTENSIONS.items())
        raise CatalogueError(
            f"cannot tell the catalogue format of {path}: expected one of the extensions "
            f"{known}, optionally followed by .gz; or pass the format, one of "
            f"{', '.join(_FORMATS)}"
        )
    return fmt


def parse_format(name: str) -> CatalogueFormat:
    """Check a format name given as text (a CLI option, a setting).

    Args:
        name: ``"jsonl"``, ``"csv"``, ``"merchant-tsv"`` or ``"merchant-xml"``.

    Returns:
        The name, typed as a :data:`CatalogueFormat`.

    Raises:
        CatalogueError: The name is not a format; the message lists the valid ones.
    """
    for fmt in _FORMATS:
        if name == fmt:
            return fmt
    raise CatalogueError(
        f"unknown catalogue format {name!r}; expected one of {', '.join(_FORMATS)}"
    )


class _HashingReader(io.RawIOBase):
    """Raw binary reader that hashes every byte read from the underlying file."""

    def __init__(self, raw: io.FileIO) -> None:
        super().__init__()
        self._raw = raw
        self.digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        count = self._raw.readinto(buffer) or 0
        self.digest.update(memoryview(buffer)[:count])
        return count


def _collect(
    rows: Iterable[RawRow],
    base_dir: str,
    progress: Callable[[int], None] | None,
    limits: FieldLimits,
) -> tuple[list[Product], list[RowError], int]:
    products: list[Product] = []
    errors: list[RowError] = []
    first_row: dict[str, int] = {}
    count = 0
    for raw in rows:
        count += 1
        if progress is not None and count % PROGRESS_EVERY == 0:
            progress(count)
        if raw.data is None:
            if raw.error is not None:
                errors.append(raw.error)
            continue
        outcome = build_product(raw.row, raw.data, base_dir, limits)
        product_id = outcome.product_id
        if product_id is not None:
            first = first_row.setdefault(product_id, raw.row)
            if first != raw.row:
                reason = f"duplicate id; first seen on row {first}"
                errors.append(RowError(raw.row, "id", reason, product_id))
                continue
        errors.extend(outcome.errors)
        if outcome.product is not None:
            products.append(outcome.product)
    if progress is not None and (count == 0 or count % PROGRESS_EVERY != 0):
        progress(count)
    return products, errors, count


def _strict_failure(report: ImportReport) -> CatalogueError:
    quoted = "; ".join(f"row {e.row} {e.field}: {e.reason}" for e in report.errors[:_STRICT_QUOTED])
    more = len(report.errors) - _STRICT_QUOTED
    tail = f"; and {more} more" if more > 0 else ""
    return CatalogueError(
        f"{len(report.errors)} row errors ({report.rows_dropped} of {report.rows_read} rows "
        f"dropped) and strict mode is on: {quoted}{tail}"
    )


def read_catalogue(
    path: Path,
    fmt: CatalogueFormat | None = None,
    *,
    strict: bool = False,
    progress: Callable[[int], None] | None = None,
    limits: FieldLimits = DEFAULT_LIMITS,
) -> ImportResult:
    """Import a catalogue file: read, validate, de-duplicate.

    The file is read once, streaming, so memory holds the products but not the file. Rows
    are numbered as the errors report them: by line for JSON Lines, by the line a record
    starts on for CSV and TSV (the header is line 1), by item for XML. The first row with an
    id keeps it; later rows with the same id are reported and dropped. An empty file gives
    an empty result, not an error.

    Args:
        path: The catalogue file; gzip-compressed content is recognised and decompressed.
        fmt: The format, or None to detect it from the file name (:func:`detect_format`).
        strict: Raise instead of returning when any row has an error, ``ignored:``
            warnings included.
        progress: Called with the number of rows read so far every
            :data:`PROGRESS_EVERY` rows and once at the end.
        limits: Size limits per row and field: a row over one is a row error (see
            :class:`~indexer.formats.fields.FieldLimits`); a JSON, CSV or TSV line, or an XML
            text, over the row limit is skipped in bounded pieces, never held whole.

    Returns:
        The products, the import report, the file's checksum and its format.

    Raises:
        CatalogueError: ``fmt`` is not a known format; the format cannot be detected; the file
            is missing or unreadable, not valid gzip, not UTF-8, not well-formed XML, has a
            CSV/TSV header without ``id`` and ``title``, or declares an XML DOCTYPE or
            entities (in any encoding); or
            ``strict`` is set and a row has an error (the message quotes the first few and
            gives the count).
    """
    path = Path(path)
    fmt = detect_format(path) if fmt is None else parse_format(fmt)
    base_dir = str(path.resolve().parent)
    try:
        raw = path.open("rb", buffering=0)
    except FileNotFoundError:
        raise CatalogueError(f"catalogue file not found: {path}") from None
    except OSError as exc:
        raise CatalogueError(f"cannot open catalogue {path}: {exc.strerror or exc}") from None
    with raw:
        hashing = _HashingReader(raw)
        buffered = io.BufferedReader(hashing, buffer_size=1 << 20)
        try:
            stream: BinaryIO = buffered
            if buffered.peek(2)[:2] == _GZIP_MAGIC:
                stream = gzip.GzipFile(fileobj=buffered, mode="rb")  # type: ignore[assignment]
            reader = _READERS[fmt]
            if fmt == "jsonl":
                reader = partial(read_jsonl, max_row_bytes=limits.row_bytes)
            elif fmt in ("csv", "merchant-tsv"):
                delimited = read_csv if fmt == "csv" else read_merchant_tsv
                reader = partial(delimited, max_line_chars=limits.row_bytes)
            elif fmt == "merchant-xml":
                reader = partial(read_merchant_xml, max_text_chars=limits.row_bytes)
            products, errors, count = _collect(reader(stream), base_dir, progress, limits)
            while buffered.read(1 << 20):
                pass  # the checksum covers the whole file, also bytes after the data
        except CatalogueError as exc:
            raise CatalogueError(f"{path}: {exc}") from None
        except (OSError, EOFError, zlib.error) as exc:
            raise CatalogueError(f"cannot read catalogue {path}: {exc}") from None
        except UnicodeDecodeError as exc:
            raise CatalogueError(f"{path} is not valid UTF-8: {exc}") from None
    report = ImportReport(rows_read=count, products_ok=len(products), errors=tuple(errors))
    if strict and report.errors:
        raise _strict_failure(report)
    return ImportResult(
        products=tuple(products),
        report=report,
        checksum=hashing.digest.hexdigest(),
        format=fmt,
    )
