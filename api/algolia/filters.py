"""Algolia's filter parameters as one :data:`search.types.Condition`.

Three parameters filter, and all of them must hold:

* ``facetFilters``: ``["brand:Nordhem", ["colour:red", "colour:blue"]]``: the outer list ANDs,
  an inner list ORs; ``attr:-value`` negates (``attr:\\-value`` is a value starting with ``-``).
* ``numericFilters``: ``["price>=10", "price<=100"]`` or ``["price:10 TO 100"]``, nested the
  same way; operators ``< <= = != >= >``.
* ``filters``: an expression: ``attr:value``, ``attr:"quoted value"``, ``attr:lo TO hi``,
  ``attr <op> number``, combined with ``AND``, ``OR``, ``NOT`` and parentheses (upper-case
  keywords; ``AND`` binds tighter than ``OR``). Any nesting of them is allowed up to
  :data:`MAX_DEPTH` (a superset of Algolia's, which refuses ``(a AND b) OR c``).

Attributes are those of the record mapping (``docs/instantsearch.md``): ``brand``,
``categories.lvl0`` .. ``categories.lvl9`` (a full path at that depth, ``"Home > Lamps"``),
``category`` (a path or any of its prefixes), ``colour`` or ``color`` (a colour family, a colour
name in English or Polish, or ``#rrggbb``), ``availability``, ``price`` (numbers, compared in
the shop's base currency) and ``attributes.<name>``. Anything else is a 400 naming the parameter
and the attribute. A product without a price fails every price comparison (``NOT`` of one
keeps it).

The parser is a hand-written tokenizer and recursive descent over a bounded input
(:data:`~api.algolia.params.MAX_FILTER_CHARS`, :data:`~api.algolia.params.MAX_FILTER_ENTRIES`
terms, :data:`MAX_DEPTH` levels): linear time, no regular expression that can backtrack, no
recursion deeper than the bound.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from api.algolia.errors import AlgoliaParamError
from api.algolia.params import MAX_FILTER_ENTRIES, FilterGroups, finite
from search.analysis import fold
from search.colour import parse_colour
from search.types import AllOf, AnyOf, Availability, ColourIs, Condition, Filters, Not

MAX_DEPTH = 16
"""Deepest nesting of parentheses and ``NOT`` in ``filters``."""
MAX_CATEGORY_LEVELS = 10
"""``categories.lvl0`` .. ``categories.lvl9``."""
LISTED_ATTRIBUTES = 30
"""Product attributes :meth:`Fields.names` lists (alphabetically): what ``facets=*`` counts
and error messages name, bounded for a catalogue with hundreds of attribute names."""

FieldKind = Literal[
    "brand", "category_level", "category", "colour", "availability", "price", "attribute"
]


@dataclass(frozen=True, slots=True)
class Field:
    """An attribute of the record mapping that filters and facets may name.

    Attributes:
        kind: Which of the product's fields it is.
        level: The depth of a ``categories.lvlN`` attribute (0 for the root).
        attribute: The product attribute's name for ``attributes.<name>``.
    """

    kind: FieldKind
    level: int = 0
    attribute: str = ""


@dataclass(frozen=True, slots=True)
class Fields:
    """What one catalogue offers to filter and facet on.

    Attributes:
        attributes: The product attribute names (as the store lists them, folded).
        category_depth: The deepest category path (``categories.lvl0`` .. ``lvl<depth-1>``).
    """

    attributes: frozenset[str]
    category_depth: int

    def names(self) -> list[str]:
        """The attribute names a filter or facet may use (``facets=*`` counts them): the
        record's own and the first :data:`LISTED_ATTRIBUTES` product attributes."""
        levels = [f"categories.lvl{n}" for n in range(max(self.category_depth, 1))]
        return [
            "brand",
            *levels,
            "category",
            "colour",
            "availability",
            "price",
            *(f"attributes.{name}" for name in sorted(self.attributes)[:LISTED_ATTRIBUTES]),
        ]

    def resolve(self, param: str, name: str) -> Field:
        """The field an attribute name means.

        Raises:
            AlgoliaParamError: an attribute the mapping does not have (field ``param``).
        """
        simple: dict[str, FieldKind] = {
            "brand": "brand",
            "category": "category",
            "colour": "colour",
            "color": "colour",
            "availability": "availability",
            "price": "price",
        }
        if name in simple:
            return Field(simple[name])
        if name.startswith("categories.lvl"):
            level = name.removeprefix("categories.lvl")
            if level.isdigit() and int(level) < MAX_CATEGORY_LEVELS:
                return Field("category_level", level=int(level))
        if name.startswith("attributes."):
            attribute = name.removeprefix("attributes.")
            if fold(attribute) in self.attributes:
                return Field("attribute", attribute=fold(attribute))
        raise AlgoliaParamError(
            param,
            f"unknown attribute {name[:100]!r}; valid: {', '.join(self.names())}",
        )


# --- building conditions ---------------------------------------------------------------------

_HAS_PRICE = Filters(price_min=-math.inf)
"""Products with a comparable price (NaN fails every comparison, -inf none of the others)."""


def facet_condition(param: str, field: Field, value: str) -> Condition:
    """The condition ``attr:value`` means.

    Raises:
        AlgoliaParamError: an empty value, a category path of the wrong depth, an unknown
            colour or stock state, or a price that is not a number.
    """
    text = value.strip()
    if not text:
        raise AlgoliaParamError(param, "a filter value must not be empty")
    if field.kind == "brand":
        return Filters(brands=(text,))
    if field.kind in ("category", "category_level"):
        path = tuple(part.strip() for part in text.split(">"))
        if not all(path):
            raise AlgoliaParamError(param, f"{text!r} has an empty category level")
        if field.kind == "category_level" and len(path) != field.level + 1:
            raise AlgoliaParamError(
                param,
                f"categories.lvl{field.level} takes a path of {field.level + 1} level(s) "
                f'written "A > B", got {text!r}',
            )
        return Filters(categories=(path,))
    if field.kind == "colour":
        try:
            parse_colour(text)
        except ValueError as exc:
            raise AlgoliaParamError(param, str(exc)) from None
        return ColourIs(text)
    if field.kind == "availability":
        try:
            return Filters(availability=(Availability(text),))
        except ValueError:
            raise AlgoliaParamError(
                param,
                f"unknown availability {text!r}; valid: {', '.join(a.value for a in Availability)}",
            ) from None
    if field.kind == "price":
        return numeric_condition(param, field, "=", finite(param, text))
    return Filters(attributes={field.attribute: (text,)})


def numeric_condition(param: str, field: Field, operator: str, number: float) -> Condition:
    """The condition ``attr <operator> number`` means (``price`` only).

    Raises:
        AlgoliaParamError: a numeric comparison on another attribute.
    """
    if field.kind != "price":
        raise AlgoliaParamError(
            param, "numeric comparisons apply to price only (other attributes are text)"
        )
    equal = Filters(price_min=number, price_max=number)
    if operator == ">=":
        return Filters(price_min=number)
    if operator == "<=":
        return Filters(price_max=number)
    if operator == "=":
        return equal
    if operator == ">":
        return AllOf((Filters(price_min=number), Not(equal)))
    if operator == "<":
        return AllOf((Filters(price_max=number), Not(equal)))
    if operator == "!=":
        return AllOf((_HAS_PRICE, Not(equal)))
    raise AlgoliaParamError(param, f"unknown operator {operator!r}; valid: < <= = != >= >")


def range_condition(param: str, field: Field, low: float, high: float) -> Condition:
    """The condition ``attr:low TO high`` means (both ends included; ``price`` only).

    Raises:
        AlgoliaParamError: another attribute, or ``low`` above ``high``.
    """
    if field.kind != "price":
        raise AlgoliaParamError(param, "ranges (lo TO hi) apply to price only")
    if low > high:
        raise AlgoliaParamError(param, f"range {low:g} TO {high:g} is empty (low above high)")
    return Filters(price_min=low, price_max=high)


def simplify(condition: Condition) -> Condition:
    """The same condition with single-child groups unwrapped and nested ``AllOf``/``AnyOf``
    of the same kind flattened (one level: the parsers build them one level at a time)."""
    if not isinstance(condition, AllOf | AnyOf):
        return condition
    every = isinstance(condition, AllOf)
    children: list[Condition] = []
    for child in condition.conditions:
        if isinstance(child, AllOf if every else AnyOf):
            assert isinstance(child, AllOf | AnyOf)
            children.extend(child.conditions)
        else:
            children.append(child)
    if len(children) == 1:
        return children[0]
    return AllOf(tuple(children)) if every else AnyOf(tuple(children))


# --- facetFilters and numericFilters ---------------------------------------------------------


def facet_filters_condition(groups: FilterGroups, fields: Fields) -> Condition | None:
    """``facetFilters`` as a condition (None when empty).

    Raises:
        AlgoliaParamError: a filter without ``:``, an unknown attribute, a bad value.
    """
    param = "facetFilters"
    ands: list[Condition] = []
    for group in groups:
        ors: list[Condition] = []
        for text in group:
            name, sep, value = text.partition(":")
            if not sep or not name.strip():
                raise AlgoliaParamError(param, f"{text[:100]!r} is not attribute:value")
            field = fields.resolve(param, name.strip())
            negate = value.startswith("-")
            if negate or value.startswith("\\-"):  # "\-x": a value starting with "-"
                value = value[1:]
            condition = facet_condition(param, field, value)
            ors.append(Not(condition) if negate else condition)
        ands.append(simplify(AnyOf(tuple(ors))))
    return simplify(AllOf(tuple(ands))) if ands else None


def numeric_filters_condition(groups: FilterGroups, fields: Fields) -> Condition | None:
    """``numericFilters`` as a condition (None when empty).

    Raises:
        AlgoliaParamError: a filter that is not ``attr <op> number`` or ``attr:lo TO hi``.
    """
    param = "numericFilters"
    ands: list[Condition] = []
    for group in groups:
        ors: list[Condition] = []
        for text in group:
            parser = _Parser(param, text, fields)
            condition = parser.comparison(numeric_only=True)
            parser.expect_end()
            ors.append(condition)
        ands.append(simplify(AnyOf(tuple(ors))))
    return simplify(AllOf(tuple(ands))) if ands else None


def filters_condition(text: str, fields: Fields) -> Condition | None:
    """The ``filters`` expression as a condition (None when blank).

    Raises:
        AlgoliaParamError: a syntax error (with its position), an unknown attribute, a bad
            value, nesting deeper than :data:`MAX_DEPTH` or more than
            :data:`~api.algolia.params.MAX_FILTER_ENTRIES` terms.
    """
    if not text.strip():
        return None
    parser = _Parser("filters", text, fields)
    condition = parser.expression(0)
    parser.expect_end()
    return condition


# --- the tokenizer and parser ----------------------------------------------------------------

TokenKind = Literal["(", ")", "AND", "OR", "NOT", "TO", "op", "word", "string"]
_OPERATORS = ("<=", ">=", "!=", ":", "<", ">", "=")
_SPECIAL = frozenset('()"<>=!:')
_KEYWORDS: dict[str, TokenKind] = {"AND": "AND", "OR": "OR", "NOT": "NOT", "TO": "TO"}


@dataclass(frozen=True, slots=True)
class Token:
    """One token of a filter expression, with its position (0-based character offset)."""

    kind: TokenKind
    text: str
    at: int


def tokenize(param: str, text: str) -> list[Token]:
    """Split a filter expression into tokens.

    Raises:
        AlgoliaParamError: an unterminated quoted string or a stray character.
    """
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch in "()":
            tokens.append(Token("(" if ch == "(" else ")", ch, i))
            i += 1
        elif ch == '"':
            start, i = i, i + 1
            chars: list[str] = []
            while i < n and text[i] != '"':
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                chars.append(text[i])
                i += 1
            if i >= n:
                raise AlgoliaParamError(param, f"unterminated quoted string at character {start}")
            tokens.append(Token("string", "".join(chars), start))
            i += 1
        elif ch in _SPECIAL:
            operator = next((op for op in _OPERATORS if text.startswith(op, i)), None)
            if operator is None:
                raise AlgoliaParamError(param, f"unexpected {ch!r} at character {i}")
            tokens.append(Token("op", operator, i))
            i += len(operator)
        else:
            start = i
            while i < n and not text[i].isspace() and text[i] not in _SPECIAL:
                i += 1
            word = text[start:i]
            tokens.append(Token(_KEYWORDS.get(word, "word"), word, start))
    return tokens


class _Parser:
    """Recursive descent over the tokens of one filter string (see the module docstring)."""

    def __init__(self, param: str, text: str, fields: Fields) -> None:
        self.param = param
        self.fields = fields
        self.tokens = tokenize(param, text)
        self.pos = 0
        self.terms = 0

    def peek(self, offset: int = 0) -> Token | None:
        index = self.pos + offset
        return self.tokens[index] if index < len(self.tokens) else None

    def take(self, *kinds: str, what: str) -> Token:
        token = self.peek()
        if token is None or token.kind not in kinds:
            found = "the end" if token is None else f"{token.text!r} at character {token.at}"
            raise AlgoliaParamError(self.param, f"expected {what}, found {found}")
        self.pos += 1
        return token

    def expect_end(self) -> None:
        token = self.peek()
        if token is not None:
            raise AlgoliaParamError(
                self.param,
                f"unexpected {token.text!r} at character {token.at} "
                "(join conditions with AND or OR)",
            )

    def expression(self, depth: int) -> Condition:
        """``and_expr (OR and_expr)*``."""
        alternatives = [self.conjunction(depth)]
        while (token := self.peek()) is not None and token.kind == "OR":
            self.pos += 1
            alternatives.append(self.conjunction(depth))
        return simplify(AnyOf(tuple(alternatives)))

    def conjunction(self, depth: int) -> Condition:
        """``unary (AND unary)*``."""
        parts = [self.unary(depth)]
        while (token := self.peek()) is not None and token.kind == "AND":
            self.pos += 1
            parts.append(self.unary(depth))
        return simplify(AllOf(tuple(parts)))

    def unary(self, depth: int) -> Condition:
        """``NOT unary | ( expression ) | comparison``."""
        if depth >= MAX_DEPTH:
            raise AlgoliaParamError(
                self.param, f"nests parentheses and NOT more than {MAX_DEPTH} deep"
            )
        token = self.peek()
        if token is not None and token.kind == "NOT":
            self.pos += 1
            return Not(self.unary(depth + 1))
        if token is not None and token.kind == "(":
            self.pos += 1
            inner = self.expression(depth + 1)
            self.take(")", what="')'")
            return inner
        return self.comparison(numeric_only=False)

    def number(self) -> float:
        token = self.take("word", "string", what="a number")
        return finite(self.param, token.text)

    def comparison(self, *, numeric_only: bool) -> Condition:
        """``attr:value``, ``attr:lo TO hi`` or ``attr <op> number``."""
        self.terms += 1
        if self.terms > MAX_FILTER_ENTRIES:
            raise AlgoliaParamError(self.param, f"has more than {MAX_FILTER_ENTRIES} conditions")
        name = self.take("word", "string", what="an attribute name")
        field = self.fields.resolve(self.param, name.text)
        operator = self.take("op", what=f"':' or a comparison after {name.text!r}")
        if operator.text != ":":
            return numeric_condition(self.param, field, operator.text, self.number())
        after = self.peek(1)
        if after is not None and after.kind == "TO":
            low = self.number()
            self.pos += 1  # TO
            return range_condition(self.param, field, low, self.number())
        if numeric_only:
            if field.kind != "price":
                raise AlgoliaParamError(
                    self.param, "numeric filters apply to price only (other attributes are text)"
                )
            return numeric_condition(self.param, field, "=", self.number())
        value = self.take("word", "string", "TO", "AND", "OR", "NOT", what="a value")
        return facet_condition(self.param, field, value.text)


def conditions(parts: Sequence[Condition | None]) -> Condition | None:
    """The conjunction of the conditions given (None when there are none)."""
    present = tuple(part for part in parts if part is not None)
    if not present:
        return None
    return simplify(AllOf(present))
