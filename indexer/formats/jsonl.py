"""JSON Lines reader: one JSON object per line, keys are the canonical field names."""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

import orjson

from indexer.formats.fields import RawRow, json_type
from search.errors import CatalogueError
from search.types import RowError

_BOM = b"\xef\xbb\xbf"


def read_jsonl(stream: BinaryIO) -> Iterator[RawRow]:
    """Split a JSON Lines stream into raw rows.

    Blank lines are skipped (they still count for line numbers). A line that is not valid
    JSON, or not a JSON object, becomes a row with an error.

    Args:
        stream: The catalogue's bytes (already decompressed).

    Yields:
        One :class:`RawRow` per non-blank line, numbered by line.

    Raises:
        CatalogueError: A line is not valid UTF-8 (the file is in another encoding).
    """
    for line_no, line in enumerate(stream, start=1):
        if line_no == 1 and line.startswith(_BOM):
            line = line[len(_BOM) :]
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
