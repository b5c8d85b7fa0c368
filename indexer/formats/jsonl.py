"""JSON Lines reader: one JSON object per line, keys are the canonical field names."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import BinaryIO

import orjson

from indexer.formats.fields import DEFAULT_LIMITS, RawRow, json_type
from search.errors import CatalogueError
from search.types import RowError

_BOM = b"\xef\xbb\xbf"
#: Pieces an over-long line is skipped in: memory stays at one piece whatever the line's length.
_SKIP_CHUNK = 1 << 20
#: A JSON object key followed by its colon, to tell which field an over-long line was in.
_KEY = re.compile(rb'"((?:[^"\\]|\\.){1,200})"\s*:')
_ID = re.compile(rb'"id"\s*:\s*(?:"((?:[^"\\]|\\.){1,256})"|(-?\d{1,30}))')


def _skip_rest_of_line(stream: BinaryIO) -> int:
    """Read up to and including the next newline in bounded pieces; return the bytes skipped,
    the newline excluded."""
    skipped = 0
    while True:
        piece = stream.readline(_SKIP_CHUNK)
        if piece.endswith(b"\n"):
            return skipped + len(piece) - 1
        if not piece:
            return skipped
        skipped += len(piece)


def _long_line_error(line_no: int, head: bytes, length: int, limit: int) -> RowError:
    """The error of a line over the row limit, from its first ``limit`` bytes only: the field
    being read when the limit was reached (the last key seen) and the product id when it
    came before."""
    keys = _KEY.findall(head)
    field = keys[-1].decode("utf-8", errors="replace") if keys else "*"
    match = _ID.search(head)
    product_id = None
    if match is not None:
        product_id = (match.group(1) or match.group(2)).decode("utf-8", errors="replace")
    reason = f"too large: the row is {length:,} bytes, over the {limit:,}-byte row limit" + (
        f" ({field!r} was being read at the limit)" if keys else ""
    )
    return RowError(line_no, field, reason, product_id)


def read_jsonl(stream: BinaryIO, max_row_bytes: int = DEFAULT_LIMITS.row_bytes) -> Iterator[RawRow]:
    """Split a JSON Lines stream into raw rows.

    Blank lines are skipped (they still count for line numbers). A line that is not valid
    JSON, or not a JSON object, becomes a row with an error. Lines are read at most
    ``max_row_bytes`` at a time: a longer line becomes a row with an error naming the field
    it was in, and the rest of it is skipped in bounded pieces, never held whole in memory.

    Args:
        stream: The catalogue's bytes (already decompressed).
        max_row_bytes: The longest line accepted, newline excluded.

    Yields:
        One :class:`RawRow` per non-blank line, numbered by line.

    Raises:
        CatalogueError: A line is not valid UTF-8 (the file is in another encoding).
    """
    line_no = 0
    while True:
        line = stream.readline(max_row_bytes + 1)
        if not line:
            return
        line_no += 1
        cut = len(line) > max_row_bytes and not line.endswith(b"\n")
        if line_no == 1 and line.startswith(_BOM):
            line = line[len(_BOM) :]
        if cut:
            length = len(line) + _skip_rest_of_line(stream)
            yield RawRow(line_no, None, _long_line_error(line_no, line, length, max_row_bytes))
            continue
        if not line.strip():
            continue
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as decode_error:
                raise CatalogueError(
                    f"line {line_no} is not valid UTF-8 ({decode_error.reason}); "
                    "export the catalogue as UTF-8"
                ) from None
            yield RawRow(line_no, None, RowError(line_no, "*", f"invalid JSON: {exc}"))
            continue
        if isinstance(value, dict):
            yield RawRow(line_no, value)
        else:
            reason = f"expected a JSON object, got {json_type(value)}"
            yield RawRow(line_no, None, RowError(line_no, "*", reason))
