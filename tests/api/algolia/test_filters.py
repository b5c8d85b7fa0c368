"""``facetFilters``, ``numericFilters`` and the ``filters`` grammar as conditions, and hostile
filters (deep nesting, huge input, injection attempts) refused by name, never crashing."""

from __future__ import annotations

import math

import pytest

from api.algolia.errors import AlgoliaParamError
from api.algolia.filters import (
    MAX_DEPTH,
    Field,
    Fields,
    conditions,
    facet_filters_condition,
    filters_condition,
    numeric_filters_condition,
    tokenize,
)
from api.algolia.params import MAX_FILTER_ENTRIES
from search.types import AllOf, AnyOf, Availability, ColourIs, Condition, Filters, Not

FIELDS = Fields(attributes=frozenset({"material", "seats"}), category_depth=3)

BRAND_X = Filters(brands=("X",))
BRAND_Y = Filters(brands=("Y",))
RED = ColourIs("red")


def parse(text: str) -> Condition | None:
    return filters_condition(text, FIELDS)


def refused(text: str) -> AlgoliaParamError:
    with pytest.raises(AlgoliaParamError) as caught:
        parse(text)
    assert caught.value.field == "filters"
    return caught.value


class TestFields:
    @pytest.mark.parametrize(
        ("name", "field"),
        [
            ("brand", Field("brand")),
            ("categories.lvl0", Field("category_level", level=0)),
            ("categories.lvl9", Field("category_level", level=9)),
            ("category", Field("category")),
            ("colour", Field("colour")),
            ("color", Field("colour")),
            ("availability", Field("availability")),
            ("price", Field("price")),
            ("attributes.material", Field("attribute", attribute="material")),
            ("attributes.Material", Field("attribute", attribute="material")),
        ],
    )
    def test_known_attributes(self, name: str, field: Field) -> None:
        assert FIELDS.resolve("facets", name) == field

    @pytest.mark.parametrize(
        "name", ["title", "objectID", "attributes.size", "categories.lvl10", "categories.lvlx", ""]
    )
    def test_unknown_attributes_name_the_valid_ones(self, name: str) -> None:
        with pytest.raises(AlgoliaParamError) as caught:
            FIELDS.resolve("facets", name)
        assert caught.value.field == "facets"
        assert "valid: brand, categories.lvl0, categories.lvl1, categories.lvl2" in str(
            caught.value
        )
        assert "attributes.material" in str(caught.value)


class TestFacetFilters:
    def test_and_of_ors(self) -> None:
        condition = facet_filters_condition((("brand:X", "brand:Y"), ("colour:red",)), FIELDS)
        assert condition == AllOf((AnyOf((BRAND_X, BRAND_Y)), RED))

    def test_one_filter_is_itself(self) -> None:
        assert facet_filters_condition((("brand:X",),), FIELDS) == BRAND_X
        assert facet_filters_condition((), FIELDS) is None

    def test_negation_and_its_escape(self) -> None:
        assert facet_filters_condition((("brand:-X",),), FIELDS) == Not(BRAND_X)
        assert facet_filters_condition((("brand:\\-X",),), FIELDS) == Filters(brands=("-X",))

    def test_a_value_keeps_its_spaces_and_colons(self) -> None:
        condition = facet_filters_condition((("brand:Meble Łódź: Outlet",),), FIELDS)
        assert condition == Filters(brands=("Meble Łódź: Outlet",))

    def test_hierarchical_levels(self) -> None:
        lvl1 = facet_filters_condition((("categories.lvl1:Home > Lamps",),), FIELDS)
        assert lvl1 == Filters(categories=(("Home", "Lamps"),))
        with pytest.raises(AlgoliaParamError, match="2 level"):
            facet_filters_condition((("categories.lvl1:Home",),), FIELDS)
        with pytest.raises(AlgoliaParamError, match="empty category level"):
            facet_filters_condition((("category:Home > ",),), FIELDS)

    def test_stock_states_and_attributes(self) -> None:
        condition = facet_filters_condition(
            (("availability:in_stock",), ("attributes.material:oak",)), FIELDS
        )
        assert condition == AllOf(
            (
                Filters(availability=(Availability.IN_STOCK,)),
                Filters(attributes={"material": ("oak",)}),
            )
        )
        with pytest.raises(AlgoliaParamError, match="valid: in_stock"):
            facet_filters_condition((("availability:soon",),), FIELDS)

    def test_colours_are_checked(self) -> None:
        assert facet_filters_condition((("color:granatowy",),), FIELDS) == ColourIs("granatowy")
        with pytest.raises(AlgoliaParamError, match="unknown colour"):
            facet_filters_condition((("colour:blurple",),), FIELDS)

    @pytest.mark.parametrize("text", ["brand", ":X", "brand:", "brand:-", "nope:X"])
    def test_malformed(self, text: str) -> None:
        with pytest.raises(AlgoliaParamError) as caught:
            facet_filters_condition(((text,),), FIELDS)
        assert caught.value.field == "facetFilters"


class TestNumericFilters:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("price>=10", Filters(price_min=10.0)),
            ("price <= 10.5", Filters(price_max=10.5)),
            ("price=10", Filters(price_min=10.0, price_max=10.0)),
            (
                "price>10",
                AllOf((Filters(price_min=10.0), Not(Filters(price_min=10.0, price_max=10.0)))),
            ),
            (
                "price<10",
                AllOf((Filters(price_max=10.0), Not(Filters(price_min=10.0, price_max=10.0)))),
            ),
            (
                "price!=10",
                AllOf(
                    (
                        Filters(price_min=-math.inf),
                        Not(Filters(price_min=10.0, price_max=10.0)),
                    )
                ),
            ),
            ("price:10 TO 20", Filters(price_min=10.0, price_max=20.0)),
            ("price:-5 TO 1e3", Filters(price_min=-5.0, price_max=1000.0)),
        ],
    )
    def test_operators(self, text: str, expected: Condition) -> None:
        assert numeric_filters_condition(((text,),), FIELDS) == expected

    def test_or_groups(self) -> None:
        condition = numeric_filters_condition((("price<10", "price>=100"),), FIELDS)
        assert isinstance(condition, AnyOf) and len(condition.conditions) == 2

    @pytest.mark.parametrize(
        ("text", "why"),
        [
            ("attributes.seats>2", "price only"),
            ("brand:3", "price only"),
            ("price>=abc", "not a number"),
            ("price>=nan", "not a finite"),
            ("price>=inf", "not a finite"),
            ("price:20 TO 10", "empty"),
            ("price>=10 AND price<=20", "unexpected 'AND'"),
            ("price", "expected"),
            ("price>=", "expected a number"),
        ],
    )
    def test_refused(self, text: str, why: str) -> None:
        with pytest.raises(AlgoliaParamError, match=why) as caught:
            numeric_filters_condition(((text,),), FIELDS)
        assert caught.value.field == "numericFilters"


class TestFiltersGrammar:
    def test_blank(self) -> None:
        assert parse("") is None and parse("   ") is None

    def test_values_quoted_and_bare(self) -> None:
        assert parse("brand:X") == BRAND_X
        assert parse('brand:"Meble Łódź"') == Filters(brands=("Meble Łódź",))
        assert parse('categories.lvl1:"Home > Lamps"') == Filters(categories=(("Home", "Lamps"),))
        assert parse('"brand":X') == BRAND_X

    def test_and_binds_tighter_than_or(self) -> None:
        assert parse("brand:X OR brand:Y AND colour:red") == AnyOf((BRAND_X, AllOf((BRAND_Y, RED))))
        assert parse("(brand:X OR brand:Y) AND colour:red") == AllOf(
            (AnyOf((BRAND_X, BRAND_Y)), RED)
        )

    def test_not(self) -> None:
        assert parse("NOT brand:X") == Not(BRAND_X)
        assert parse("colour:red AND NOT (brand:X OR brand:Y)") == AllOf(
            (RED, Not(AnyOf((BRAND_X, BRAND_Y))))
        )

    def test_numbers_and_ranges(self) -> None:
        assert parse("price:10 TO 20 AND price != 15") == AllOf(
            (
                Filters(price_min=10.0, price_max=20.0),
                Filters(price_min=-math.inf),
                Not(Filters(price_min=15.0, price_max=15.0)),
            )
        )
        assert parse("price:99.5") == Filters(price_min=99.5, price_max=99.5)

    def test_keywords_are_upper_case(self) -> None:
        assert parse('brand:"and"') == Filters(brands=("and",))
        refused("brand:X and brand:Y")

    @pytest.mark.parametrize(
        ("text", "why"),
        [
            ("brand:X brand:Y", "unexpected 'brand' at character 8"),
            ("(brand:X", "expected ')'"),
            ("brand:X)", "unexpected ')'"),
            ('brand:"X', "unterminated quoted string at character 6"),
            ("brand:X OR", "expected an attribute name"),
            ("AND brand:X", "expected an attribute name"),
            ("brand X", "expected ':' or a comparison"),
            ("brand:X ! brand:Y", "unexpected '!'"),
            ("title:sofa", "unknown attribute 'title'"),
            ("_tags:sale", "unknown attribute '_tags'"),
        ],
    )
    def test_syntax_errors_say_where(self, text: str, why: str) -> None:
        assert why in refused(text).message

    def test_tokens(self) -> None:
        kinds = [t.kind for t in tokenize("filters", 'NOT (a:"b c" OR p>=1) AND x:1 TO 2')]
        assert kinds == [
            "NOT", "(", "word", "op", "string", "OR", "word", "op", "word", ")",
            "AND", "word", "op", "word", "TO", "word",
        ]  # fmt: skip


class TestHostileFilters:
    def test_deep_parentheses_are_refused_not_a_crash(self) -> None:
        error = refused("(" * 5000 + "brand:X" + ")" * 5000)
        assert f"more than {MAX_DEPTH} deep" in error.message

    def test_a_long_chain_of_not(self) -> None:
        assert "deep" in refused("NOT " * 5000 + "brand:X").message

    def test_just_under_the_depth_limit_parses(self) -> None:
        depth = MAX_DEPTH - 1
        assert parse("(" * depth + "brand:X" + ")" * depth) == BRAND_X

    def test_too_many_terms(self) -> None:
        text = " OR ".join(f"brand:b{i}" for i in range(MAX_FILTER_ENTRIES + 1))
        assert "more than" in refused(text).message

    @pytest.mark.parametrize(
        ("text", "value"),
        [
            ('brand:"X\\" OR brand:\\"Y"', 'X" OR brand:"Y'),
            ('brand:"x\'; DROP TABLE events; --"', "x'; DROP TABLE events; --"),
            ('brand:"<script>alert(1)</script>"', "<script>alert(1)</script>"),
            ('brand:"\\\\"', "\\"),
        ],
    )
    def test_injection_attempts_are_just_values(self, text: str, value: str) -> None:
        assert parse(text) == Filters(brands=(value,))

    def test_an_unquoted_injection_is_a_syntax_error(self) -> None:
        refused("brand:x; DROP TABLE events")

    def test_conditions_join_with_and(self) -> None:
        assert conditions([None, BRAND_X, None]) == BRAND_X
        assert conditions([BRAND_X, RED]) == AllOf((BRAND_X, RED))
        assert conditions([None]) is None
