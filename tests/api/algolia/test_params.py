"""Reading an Algolia request's parameters: the ``params`` string, JSON fields, types, ranges
and the parameters that are refused by name."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest

from api.algolia.errors import AlgoliaParamError
from api.algolia.params import (
    MAX_FILTER_ENTRIES,
    MAX_PARAMS_CHARS,
    NO_OP_VALUES,
    QueryParams,
    decode_params_string,
    merged_fields,
    parse_query_params,
)


def parse(**fields: Any) -> QueryParams:
    return parse_query_params(fields)


def refused(fields: dict[str, Any]) -> AlgoliaParamError:
    with pytest.raises(AlgoliaParamError) as caught:
        parse_query_params(fields)
    return caught.value


class TestParamsString:
    def test_the_lite_clients_string(self) -> None:
        text = (
            "query=navy%20sofa&hitsPerPage=5&page=2&facets=%5B%22brand%22%2C%22colour%22%5D"
            "&facetFilters=%5B%5B%22brand%3AX%22%2C%22brand%3AY%22%5D%2C%22colour%3Ared%22%5D"
            "&numericFilters=%5B%22price%3E%3D10%22%5D&clickAnalytics=true&userToken=anon-1"
        )
        params = parse_query_params(merged_fields({"params": text}, ignore=frozenset()))
        assert params.query == "navy sofa"
        assert (params.hits_per_page, params.page) == (5, 2)
        assert params.facets == ("brand", "colour")
        assert params.facet_filters == (("brand:X", "brand:Y"), ("colour:red",))
        assert params.numeric_filters == (("price>=10",),)
        assert params.click_analytics is True
        assert params.user_token == "anon-1"
        assert "query=navy+sofa" in params.echo

    def test_json_fields_win_over_the_string(self) -> None:
        fields = merged_fields(
            {"indexName": "products", "params": "query=a&page=1", "query": "b"},
            ignore=frozenset({"indexName"}),
        )
        params = parse_query_params(fields)
        assert (params.query, params.page) == ("b", 1)

    def test_comma_separated_lists(self) -> None:
        params = parse_query_params(
            decode_params_string("facets=brand,colour&attributesToRetrieve=title")
        )
        assert params.facets == ("brand", "colour")
        assert params.attributes_to_retrieve == ("title",)

    @pytest.mark.parametrize("value", [12, None, ["query=x"]])
    def test_params_must_be_a_string(self, value: Any) -> None:
        if value is None:
            assert merged_fields({"params": None}, ignore=frozenset()) == {}
            return
        with pytest.raises(AlgoliaParamError, match="params"):
            merged_fields({"params": value}, ignore=frozenset())

    def test_a_huge_params_string_is_refused(self) -> None:
        with pytest.raises(AlgoliaParamError, match="longer than"):
            decode_params_string("query=" + "a" * MAX_PARAMS_CHARS)

    def test_too_many_fields(self) -> None:
        with pytest.raises(AlgoliaParamError, match="params"):
            decode_params_string("&".join(f"f{i}=1" for i in range(300)))

    def test_a_bad_json_array(self) -> None:
        error = refused(decode_params_string("facets=" + quote('["brand"')))
        assert error.field == "facets"


class TestTypes:
    def test_defaults(self) -> None:
        params = parse()
        assert params == QueryParams(echo="")
        assert (params.hits_per_page, params.page, params.analytics) == (20, 0, True)

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("hitsPerPage", "ten"),
            ("hitsPerPage", -1),
            ("hitsPerPage", 1001),
            ("hitsPerPage", True),
            ("hitsPerPage", 2.5),
            ("page", "-3"),
            ("maxValuesPerFacet", 0),
            ("analytics", "maybe"),
            ("clickAnalytics", 2),
            ("query", 5),
            ("query", "a" * 1001),
            ("query", "sofa\x00"),
            ("highlightPreTag", "<" * 101),
            ("facets", {"brand": True}),
            ("facets", [""]),
            ("facets", ["x"] * 101),
        ],
    )
    def test_a_bad_value_names_its_parameter(self, field: str, value: Any) -> None:
        assert refused({field: value}).field == field

    @pytest.mark.parametrize(("value", "expected"), [("true", True), ("0", False), (1, True)])
    def test_booleans(self, value: Any, expected: bool) -> None:
        assert parse(analytics=value).analytics is expected

    @pytest.mark.parametrize("value", ["20", 20, 20.0])
    def test_whole_numbers(self, value: Any) -> None:
        assert parse(hitsPerPage=value).hits_per_page == 20

    def test_query_type(self) -> None:
        assert parse(queryType="prefixNone").prefix_last is False
        assert parse(queryType="prefixLast").prefix_last is True
        assert "prefixAll" in refused({"queryType": "prefixAll"}).message

    @pytest.mark.parametrize("token", ["anonymous-1f2e", "user@shop.pl", "a" * 129, 42])
    def test_user_tokens(self, token: Any) -> None:
        assert parse(userToken=token).user_token == str(token)

    @pytest.mark.parametrize("token", ["", "a b", "a" * 130, "x\ny", "<script>", ["u"]])
    def test_bad_user_tokens(self, token: Any) -> None:
        assert refused({"userToken": token}).field == "userToken"

    def test_snippets(self) -> None:
        params = parse(attributesToSnippet=["description:20", "title"])
        assert params.attributes_to_snippet == (("description", 20), ("title", 10))
        assert refused({"attributesToSnippet": ["description:x"]}).field == "attributesToSnippet"
        assert refused({"attributesToSnippet": ["description:500"]}).field == "attributesToSnippet"

    def test_paging_stops_at_the_pagination_limit(self) -> None:
        assert parse(page=49, hitsPerPage=20).page == 49
        error = refused({"page": 50, "hitsPerPage": 20})
        assert error.field == "page" and "1000" in error.message


class TestFilterArrays:
    def test_a_string_is_one_filter(self) -> None:
        assert parse(facetFilters="brand:X").facet_filters == (("brand:X",),)
        assert parse(facetFilters="").facet_filters == ()

    def test_and_of_ors(self) -> None:
        params = parse(facetFilters=["brand:X", ["colour:red", "colour:blue"], []])
        assert params.facet_filters == (("brand:X",), ("colour:red", "colour:blue"))

    def test_three_levels_are_refused(self) -> None:
        error = refused({"facetFilters": [[["brand:X"]]]})
        assert error.field == "facetFilters" and "two deep" in error.message

    def test_deep_json_in_the_string_is_refused(self) -> None:
        error = refused({"numericFilters": "[" * 5000 + "]" * 5000})
        assert error.field == "numericFilters"

    def test_too_many_filters(self) -> None:
        error = refused({"facetFilters": [["brand:X"] * (MAX_FILTER_ENTRIES + 1)]})
        assert "more than" in error.message

    @pytest.mark.parametrize("value", [[1], [None], {"brand": "X"}, [["brand:X", 3]]])
    def test_non_strings_are_refused(self, value: Any) -> None:
        assert refused({"facetFilters": value}).field == "facetFilters"


class TestUnsupported:
    @pytest.mark.parametrize(
        "field", ["aroundLatLng", "optionalWords", "length", "offset", "getRankingInfo2", "x"]
    )
    def test_an_unknown_parameter_is_refused_by_name(self, field: str) -> None:
        error = refused({field: "1"})
        assert error.field == field
        assert "not supported" in error.message and "hitsPerPage" in error.message

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("tagFilters", ""),
            ("tagFilters", []),
            ("tagFilters", "[]"),
            ("enableRules", True),
            ("enableRules", "true"),
            ("getRankingInfo", False),
            ("distinct", 0),
            ("sortFacetValuesBy", "count"),
            ("responseFields", ["*"]),
            ("facetingAfterDistinct", True),
        ],
    )
    def test_values_that_ask_for_what_the_service_does_pass(self, field: str, value: Any) -> None:
        parse(**{field: value})

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("tagFilters", ["sale"]),
            ("enableRules", False),
            ("enablePersonalization", "false"),
            ("getRankingInfo", True),
            ("distinct", 1),
            ("sortFacetValuesBy", "alpha"),
            ("optionalFilters", ["brand:X"]),
        ],
    )
    def test_other_values_are_refused(self, field: str, value: Any) -> None:
        error = refused({field: value})
        assert error.field == field and "supported only as" in error.message

    def test_every_no_op_names_its_accepted_value(self) -> None:
        assert all(expected for expected, _ in NO_OP_VALUES.values())
