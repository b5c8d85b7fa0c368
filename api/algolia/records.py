"""Products as Algolia-style records, and the parts of a hit Algolia clients read besides the
record: ``_highlightResult`` and ``_snippetResult``.

The mapping (also in ``docs/instantsearch.md``)::

    objectID      product id
    title, name   title (``name`` repeats it: templates written for either work)
    description   description
    brand         brand, or null
    categories    {"lvl0": ["Home"], "lvl1": ["Home > Lamps"], ...}: every category path of the
                  product at each depth, written with " > " (InstantSearch's hierarchicalMenu)
    price         what a shopper pays now (the sale price when set), in ``currency``
    regular_price the price before a sale, or null
    on_sale       whether a sale price is set
    currency      ISO 4217 code, or null
    availability  in_stock, out_of_stock, preorder or backorder
    colour        colour families the product is in (the ``colour`` facet's values)
    colours       [{"name", "family", "hex"}]: the product's colours, main first
    image         the first photo's URL (remote URLs as given; a local file is served under
                  /products/{id}/images/0, which needs the search key), or null
    images        every photo's URL
    url, gtin, lang
    attributes    {"material": ["oak"], ...}

Highlighting marks the words of a text attribute that match a query word: the same word with
diacritics folded (``łódź`` matches ``lodz``), the same stem in a catalogue language, the word
the spelling corrector read (when the answer has a ``corrected_query`` of as many words), the
other language's words of the Polish-English lexicon (``oak`` marks ``dębowa``), and, for the last
word of an as-you-type query, any word it starts. Words matched only by sound or by
meaning are not marked. Values are not HTML-escaped, as Algolia's are not: a client that puts
them into a page escapes them first (InstantSearch does, with its own tags).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from api.schemas import image_url
from search.analysis import Analyzer, fold, tokenize
from search.index.colours import FACET_STRENGTH
from search.index.store import category_label
from search.lexicon import default_lexicon
from search.types import Product, ProductColour

DEFAULT_HIGHLIGHTED = ("title", "name", "brand", "categories", "description")
"""Attributes highlighted when the request names none (the searched text fields)."""
TEXT_ATTRIBUTES = (*DEFAULT_HIGHLIGHTED, "colour", "attributes")
"""What ``attributesToHighlight=*`` highlights."""

_WORD = re.compile(r"\w+")

MatchLevel = Literal["none", "partial", "full"]


def product_record(product: Product, colours: Sequence[ProductColour]) -> dict[str, Any]:
    """A product as an Algolia-style record (the mapping of the module docstring).

    Args:
        product: The product.
        colours: Its colours from the snapshot's colour index, main first.

    Returns:
        The record, every attribute present (null when the product has no value).
    """
    levels: dict[str, dict[str, None]] = {}
    for path in product.categories:
        for depth in range(1, len(path) + 1):
            levels.setdefault(f"lvl{depth - 1}", {})[category_label(path[:depth])] = None
    families = dict.fromkeys(c.family for c in colours if c.strength >= FACET_STRENGTH)
    images = [image_url(product, i) for i in range(len(product.images))]
    return {
        "objectID": product.id,
        "title": product.title,
        "name": product.title,
        "description": product.description,
        "brand": product.brand,
        "categories": {level: list(values) for level, values in levels.items()},
        "price": product.effective_price,
        "regular_price": product.price,
        "on_sale": product.sale_price is not None,
        "currency": product.currency,
        "availability": product.availability.value,
        "colour": list(families),
        "colours": [{"name": c.name, "family": c.family, "hex": c.hex} for c in colours],
        "image": images[0] if images else None,
        "images": images,
        "url": product.url,
        "gtin": product.gtin,
        "lang": product.lang,
        "attributes": {name: list(values) for name, values in product.attributes.items()},
    }


def retrieve(record: Mapping[str, Any], names: Sequence[str]) -> dict[str, Any]:
    """The attributes of ``record`` that ``attributesToRetrieve`` asks for.

    ``*`` keeps every attribute, ``-name`` then leaves one out; ``a.b`` keeps one key of an
    object attribute (``categories.lvl0``, ``attributes.material``); names the record does not
    have are skipped, as Algolia skips them. ``objectID`` is always kept.

    Args:
        record: A full record (:func:`product_record`).
        names: The requested names.

    Returns:
        A new record with the kept attributes.
    """
    everything = "*" in names
    excluded = {n[1:] for n in names if n.startswith("-")}
    out: dict[str, Any] = {}
    if everything:
        out = {k: v for k, v in record.items() if k not in excluded}
    else:
        for name in names:
            head, _, rest = name.partition(".")
            if head not in record:
                continue
            if not rest:
                out[head] = record[head]
            elif isinstance(record[head], Mapping) and rest in record[head]:
                out.setdefault(head, {})[rest] = record[head][rest]
    out["objectID"] = record["objectID"]
    return out


@dataclass(frozen=True, slots=True)
class QueryWords:
    """What highlighting matches text against.

    Attributes:
        words: The query words as typed (lower-case), for ``matchedWords``.
        keys: Per word, the folded forms and stems that match it.
        prefix: The folded last word, matched as a prefix (as-you-type), or None.
        required: Indexes of the words a ``full`` match needs (stopwords left out when
            other words are there).
    """

    words: tuple[str, ...]
    keys: tuple[frozenset[str], ...]
    prefix: str | None
    required: frozenset[int]

    @classmethod
    def of(
        cls, query: str, corrected: str | None, analyzer: Analyzer, *, prefix_last: bool
    ) -> QueryWords:
        """The words of a query.

        Args:
            query: The query as received.
            corrected: The answer's ``corrected_query``, or None.
            analyzer: The snapshot's analyzer (its languages' stemmers and stopwords).
            prefix_last: Whether the last word is matched as a prefix.
        """
        tokens = [t for t in tokenize(query) if not t.derived]
        fixes = [t for t in tokenize(corrected) if not t.derived] if corrected else []
        words: list[str] = []
        keys: list[frozenset[str]] = []
        lexicon = default_lexicon()
        for i, token in enumerate(tokens):
            forms = {token.folded, *analyzer.terms_of_word(token.surface)}
            if len(fixes) == len(tokens):
                forms |= {fixes[i].folded, *analyzer.terms_of_word(fixes[i].surface)}
            # The other language's words, so a Polish title found for an English query shows
            # the word it was found by.
            forms |= lexicon.translations(token.folded)
            words.append(token.surface)
            keys.append(frozenset(forms))
        content = {i for i, t in enumerate(tokens) if not analyzer.is_stopword(t.folded)}
        prefix = None
        if prefix_last and tokens and query[-1:].isalnum():
            prefix = tokens[-1].folded
        return cls(tuple(words), tuple(keys), prefix, frozenset(content or range(len(tokens))))


@dataclass(frozen=True, slots=True)
class Tags:
    """How highlighted words and cut text are marked."""

    pre: str = "<em>"
    post: str = "</em>"
    ellipsis: str = "…"


def _level(found: set[int], words: QueryWords) -> MatchLevel:
    if not found:
        return "none"
    return "full" if words.required <= found else "partial"


class Highlighter:
    """Highlights and snippets the text of one answer's hits for one query.

    Args:
        words: The query's words.
        analyzer: The snapshot's analyzer (stems and stopwords of its languages).
        tags: How matches and cuts are marked.
    """

    def __init__(self, words: QueryWords, analyzer: Analyzer, tags: Tags) -> None:
        self.words = words
        self.analyzer = analyzer
        self.tags = tags
        # A page's hits repeat words (and a description is long): each word is analysed once.
        self._matches: dict[str, frozenset[int]] = {}

    def matches(self, word: str) -> frozenset[int]:
        """Indexes of the query words a word of the text matches."""
        hit = self._matches.get(word)
        if hit is None:
            hit = self._match(word)
            if len(self._matches) < 50_000:
                self._matches[word] = hit
        return hit

    def _match(self, word: str) -> frozenset[int]:
        words = self.words
        if not words.words:
            return frozenset()
        folded = fold(word)
        if self.analyzer.is_stopword(folded) and len(words.required) < len(words.words):
            return frozenset()  # "for" in a title is no match for "sofa for kids"
        forms = {folded, *self.analyzer.terms_of_word(word.lower())}
        hit = {i for i, keys in enumerate(words.keys) if keys & forms}
        if words.prefix and folded.startswith(words.prefix):
            hit.add(len(words.words) - 1)
        return frozenset(hit)

    def text(self, text: str) -> dict[str, Any]:
        """One string's highlight, in Algolia's shape.

        Returns:
            ``{"value", "matchLevel", "matchedWords", "fullyHighlighted"}`` (the last only
            when something matched).
        """
        text = unicodedata.normalize("NFC", text)
        out: list[str] = []
        found: set[int] = set()
        last = marked = 0
        spans = list(_WORD.finditer(text))
        for span in spans:
            hit = self.matches(span.group())
            if hit:
                found |= hit
                marked += 1
                out.append(text[last : span.start()])
                out.append(self.tags.pre + span.group() + self.tags.post)
                last = span.end()
        out.append(text[last:])
        answer: dict[str, Any] = {
            "value": "".join(out),
            "matchLevel": _level(found, self.words),
            "matchedWords": [self.words.words[i] for i in sorted(found)],
        }
        if found:
            answer["fullyHighlighted"] = marked == len(spans)
        return answer

    def snippet(self, text: str, size: int) -> dict[str, Any]:
        """``size`` words of a string around its first match, highlighted, in Algolia's shape.

        Returns:
            ``{"value", "matchLevel"}``; cut text is marked with the ellipsis tag.
        """
        text = unicodedata.normalize("NFC", text)
        spans = list(_WORD.finditer(text))
        if not spans:
            return {"value": text, "matchLevel": "none"}
        first = next((i for i, span in enumerate(spans) if self.matches(span.group())), 0)
        start = max(0, min(first - size // 3, len(spans) - size))
        end = min(len(spans), start + size)
        begin_at = 0 if start == 0 else spans[start].start()
        end_at = len(text) if end == len(spans) else spans[end - 1].end()
        inner = self.text(text[begin_at:end_at])
        value = (self.tags.ellipsis if start > 0 else "") + inner["value"]
        value += self.tags.ellipsis if end < len(spans) else ""
        return {"value": value, "matchLevel": inner["matchLevel"]}

    def highlight_result(
        self, record: Mapping[str, Any], names: Sequence[str] | None
    ) -> dict[str, Any]:
        """A hit's ``_highlightResult``: each named text attribute highlighted (arrays item by
        item, objects key by key).

        Args:
            record: The full record.
            names: ``attributesToHighlight``, or None for :data:`DEFAULT_HIGHLIGHTED`.
        """
        chosen = _wanted(record, DEFAULT_HIGHLIGHTED if names is None else names)
        return {name: _walk(value, self.text) for name, value in chosen.items()}

    def snippet_result(
        self, record: Mapping[str, Any], sizes: Sequence[tuple[str, int]]
    ) -> dict[str, Any]:
        """A hit's ``_snippetResult`` for ``attributesToSnippet`` (``(attribute, words)``)."""
        out: dict[str, Any] = {}
        for name, size in sizes:
            cut = functools.partial(self.snippet, size=size)
            for head, value in _wanted(record, [name]).items():
                snipped = _walk(value, cut)
                if isinstance(snipped, dict) and isinstance(out.get(head), dict):
                    out[head].update(snipped)
                else:
                    out[head] = snipped
        return out


def _walk(value: Any, mark: Callable[[str], dict[str, Any]]) -> Any:
    """Apply ``mark`` to every string inside ``value`` (lists and objects kept)."""
    if isinstance(value, str):
        return mark(value)
    if isinstance(value, list):
        return [_walk(v, mark) for v in value if isinstance(v, str | list | dict)]
    if isinstance(value, dict):
        return {k: _walk(v, mark) for k, v in value.items() if isinstance(v, str | list | dict)}
    return None


def _wanted(record: Mapping[str, Any], names: Iterable[str]) -> dict[str, Any]:
    """The text attributes of ``record`` that ``names`` name (``*``: all text attributes),
    nested names (``categories.lvl0``) kept nested; unknown names skipped."""
    chosen = list(TEXT_ATTRIBUTES) if "*" in names else list(names)
    out: dict[str, Any] = {}
    for name in chosen:
        head, _, rest = name.partition(".")
        value = record.get(head)
        if value is None or head in ("objectID", "colours", "images", "image", "url"):
            continue
        if rest:
            if isinstance(value, Mapping) and rest in value:
                out.setdefault(head, {})[rest] = value[rest]
        elif isinstance(value, str | list | dict):
            out[head] = value
    return out
