"""Merchandising rules: validation, matching, conflict resolution and application."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from search.analysis import normalise_query
from search.errors import InvalidRequestError
from search.index.store import ProductStore
from search.rules import (
    Boost,
    Bury,
    Hide,
    MatchedRules,
    Pin,
    Redirect,
    Rule,
    RuleSet,
    Selector,
    Synonyms,
    filters_from_dict,
    filters_to_dict,
    rule_from_dict,
    rule_to_dict,
    rules_from_list,
)
from search.types import Filters, Hit, Product
from search.weights import RankingWeights

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)

PRODUCTS = (
    Product(id="A", title="Oslo sofa", brand="Nordhem", attributes={"country": ("PL",)}),
    Product(id="B", title="Bergen sofa", brand="Nordhem", attributes={"country": ("DE",)}),
    Product(id="C", title="Oak chair", brand="Woodly", attributes={"country": ("PL",)}),
    Product(id="D", title="Walnut chair", brand="Woodly", attributes={"country": ("DE",)}),
    Product(id="E", title="Lamp", brand="Lumo", attributes={"country": ("PL",)}),
    Product(id="F", title="Rug", brand="Lumo", attributes={"country": ("DE",)}),
)


@pytest.fixture(scope="module")
def store() -> ProductStore:
    return ProductStore(PRODUCTS)


def hits(*ids: str) -> list[Hit]:
    return [Hit("ABCDEF".index(pid), float(10 - i), "fused") for i, pid in enumerate(ids)]


def ids(result: list[Hit]) -> list[str]:
    return [PRODUCTS[h.doc].id for h in result]


def rule(rule_id: str, *actions: Any, match: str = "global", query: str = "", **kw: Any) -> Rule:
    return Rule(id=rule_id, match=match, query=query, actions=tuple(actions), **kw)  # type: ignore[arg-type]


def apply(
    rules: list[Rule], ranked: list[Hit], store: ProductStore, **kw: Any
) -> tuple[list[str], dict[int, list[str]]]:
    rs = RuleSet(rules)
    out, effects = rs.apply(ranked, store, rs.match("anything", now=NOW), **kw)
    return ids(out), effects


class TestNormalise:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("", ""),
            ("  Sofa,  GREY! ", "sofa grey"),
            ("Żółta Łódź", "zolta lodz"),
            ("2x4 in", "2x4 in"),
        ],
    )
    def test_folds_and_drops_punctuation(self, text: str, expected: str) -> None:
        assert normalise_query(text) == expected


class TestValidation:
    def test_round_trip(self) -> None:
        data = {
            "id": "sofa-week",
            "match": "contains",
            "query": "Leather  SOFA",
            "actions": [
                {"type": "pin", "product_id": "A", "position": 1},
                {"type": "boost", "filter": {"brands": ["Nordhem"]}, "weight": 0.5},
                {"type": "bury", "product_ids": ["D"], "weight": 0.2},
                {"type": "hide", "filter": {"attr": {"country": ["DE"]}}},
                {"type": "synonyms", "words": ["Couch", "sofa"], "one_way": True},
                {"type": "redirect", "url": "https://shop.example/sofas"},
            ],
            "channels": ["web"],
            "segments": ["premium_buyer"],
            "active_from": "2026-11-01T00:00:00Z",
            "active_to": "2026-12-01T00:00:00",
            "priority": 5,
        }
        parsed = rule_from_dict(data)

        assert parsed.query == "leather sofa"
        assert parsed.actions[0] == Pin("A", 1)
        assert isinstance(parsed.actions[3], Hide)
        assert parsed.actions[3].selector.filters == Filters(attributes={"country": ("DE",)})
        assert parsed.actions[4] == Synonyms(("couch", "sofa"), one_way=True)
        assert parsed.active_to == datetime(2026, 12, 1, tzinfo=UTC)
        assert rule_from_dict(rule_to_dict(parsed)) == parsed

    @pytest.mark.parametrize(
        ("patch", "field"),
        [
            ({"id": "has space"}, "rule.id"),
            ({"match": "fuzzy"}, "rule.match"),
            ({"query": ""}, "rule.query"),
            ({"match": "pattern", "query": "sofa("}, "rule.query"),
            ({"match": "global", "query": "sofa"}, "rule.query"),
            ({"actions": []}, "rule.actions"),
            ({"actions": [{"type": "teleport"}]}, "rule.actions[0].type"),
            (
                {"actions": [{"type": "pin", "product_id": "A", "position": 0}]},
                "rule.actions[0].position",
            ),
            (
                {"actions": [{"type": "pin", "product_id": "A", "position": True}]},
                "rule.actions[0].position",
            ),
            ({"actions": [{"type": "pin", "position": 1}]}, "rule.actions[0].product_id"),
            ({"actions": [{"type": "boost", "product_ids": ["A"]}]}, "rule.actions[0].weight"),
            (
                {"actions": [{"type": "boost", "product_ids": ["A"], "weight": -1}]},
                "rule.actions[0].weight",
            ),
            ({"actions": [{"type": "hide"}]}, "rule.actions[0]"),
            (
                {"actions": [{"type": "hide", "filter": {"colour": ["red"]}}]},
                "rule.actions[0].filter.colour",
            ),
            (
                {"actions": [{"type": "hide", "filter": {"availability": ["sold"]}}]},
                "rule.actions[0].filter.availability",
            ),
            ({"actions": [{"type": "synonyms", "words": ["tv"]}]}, "rule.actions[0].words"),
            (
                {"actions": [{"type": "synonyms", "words": ["tv", "flat screen"]}]},
                "rule.actions[0].words",
            ),
            (
                {"actions": [{"type": "redirect", "url": "javascript:alert(1)"}]},
                "rule.actions[0].url",
            ),
            ({"active_from": "yesterday"}, "rule.active_from"),
            ({"active_from": "2026-12-01", "active_to": "2026-11-01"}, "rule.active_to"),
            ({"priority": 1.5}, "rule.priority"),
            ({"colour": "red"}, "rule.colour"),
        ],
    )
    def test_bad_field_is_named(self, patch: dict[str, Any], field: str) -> None:
        data = {
            "id": "r1",
            "match": "exact",
            "query": "sofa",
            "actions": [{"type": "redirect", "url": "/sale"}],
        }
        data.update(patch)
        with pytest.raises(InvalidRequestError) as err:
            rule_from_dict(data)
        assert err.value.field == field

    def test_duplicate_ids_rejected(self) -> None:
        one = {"id": "r1", "match": "global", "actions": [{"type": "redirect", "url": "/a"}]}
        with pytest.raises(InvalidRequestError) as err:
            rules_from_list([one, one])
        assert err.value.field == "rules[1].id"
        with pytest.raises(InvalidRequestError):
            RuleSet([rule_from_dict(one), rule_from_dict(one)])

    def test_filters_round_trip(self) -> None:
        f = filters_from_dict(
            {"brands": ["Nordhem"], "categories": ["Furniture > Sofas"], "attr": {"country": ["PL"]},
             "price_min": 10, "price_max": 20, "availability": ["in_stock"]}
        )  # fmt: skip
        assert f.categories == (("Furniture", "Sofas"),)
        assert filters_from_dict(filters_to_dict(f)) == f

    def test_weights_validation(self) -> None:
        w = RankingWeights.from_dict({"retrievers": {"semantic": 0.7}, "personalisation": 0.5})
        assert w.retrievers == {"lexical": 1.0, "semantic": 0.7}
        assert RankingWeights.from_dict(w.to_dict()) == w
        for bad, field in [
            ({"personalisation": 0.95}, "weights.personalisation"),
            ({"retrievers": {"lexical": -1}}, "weights.retrievers.lexical"),
            ({"speed": 1}, "weights.speed"),
        ]:
            with pytest.raises(InvalidRequestError) as err:
                RankingWeights.from_dict(bad)
            assert err.value.field == field


@pytest.fixture(scope="module")
def condition_rules() -> RuleSet:
    red = Redirect("/x")
    return RuleSet(
        [
            rule("exact", red, match="exact", query="Sofa"),
            rule("contains-1", red, match="contains", query="chair"),
            rule("contains-2", red, match="contains", query="oak chair"),
            rule("pattern", red, match="pattern", query=r"^\d+ ?cm\b"),
            rule("global", red),
            rule("app-only", red, channels=("app",)),
            rule("premium", red, segments=("premium_buyer",)),
            rule("window", red, active_from=NOW - timedelta(days=1), active_to=NOW),
            rule("off", red, enabled=False),
        ]
    )


class TestMatching:
    @pytest.mark.parametrize(
        ("query", "kw", "expected"),
        [
            ("sofa", {}, {"exact", "global"}),
            ("SOFA!", {}, {"exact", "global"}),
            ("sofa bed", {}, {"global"}),
            ("oak chair", {}, {"contains-1", "contains-2", "global"}),
            ("big oak chair set", {}, {"contains-1", "contains-2", "global"}),
            ("chair oak", {}, {"contains-1", "global"}),
            ("armchair", {}, {"global"}),
            ("60 cm table", {}, {"pattern", "global"}),
            ("table 60 cm", {}, {"global"}),
            ("", {}, {"global"}),
            ("lamp", {"channel": "app"}, {"global", "app-only"}),
            ("lamp", {"segment": "premium_buyer"}, {"global", "premium"}),
            ("lamp", {"now": NOW - timedelta(hours=1)}, {"global", "window"}),
        ],
    )
    def test_conditions(
        self, condition_rules: RuleSet, query: str, kw: dict[str, Any], expected: set[str]
    ) -> None:
        matched = condition_rules.match(query, **{"now": NOW, **kw})
        assert {r.id for r in matched.rules} == expected

    def test_window_end_is_exclusive_and_naive_now_is_utc(self, condition_rules: RuleSet) -> None:
        ids_ = {r.id for r in condition_rules.match("lamp", now=NOW.replace(tzinfo=None)).rules}
        assert "window" not in ids_

    def test_resolution_order(self) -> None:
        red = Redirect("/x")
        rs = RuleSet(
            [
                rule("g-high", red, priority=5),
                rule("c", red, match="contains", query="sofa"),
                rule("e", red, match="exact", query="sofa"),
                rule("p", red, match="pattern", query="so"),
                rule("g", red),
            ]
        )
        assert [r.id for r in rs.match("sofa", now=NOW).rules] == ["g-high", "e", "p", "c", "g"]

    def test_any_of_several_segments(self) -> None:
        rs = RuleSet([rule("r", Redirect("/x"), segments=("new", "premium_buyer"))])
        assert rs.match("x", segment=("bargain_hunter", "premium_buyer"), now=NOW)
        assert not rs.match("x", segment=("bargain_hunter",), now=NOW)
        assert not rs.match("x", segment=(), now=NOW)

    def test_naive_window_is_utc(self) -> None:
        r = rule("r", Redirect("/x"), active_to=datetime(2026, 11, 24, 13, 0))
        assert r.active_to == datetime(2026, 11, 24, 13, 0, tzinfo=UTC)
        assert RuleSet([r]).match("x", now=NOW).redirect == "/x"

    def test_empty_set(self) -> None:
        assert not RuleSet().match("sofa")
        assert RuleSet().match("sofa").redirect is None

    def test_redirect_earliest_wins_and_synonyms_merge(self) -> None:
        rs = RuleSet(
            [
                rule("low", Redirect("/low"), Synonyms(("tv", "telly")), priority=1),
                rule(
                    "high",
                    Redirect("/high"),
                    Synonyms(("tv", "television"), one_way=True),
                    priority=9,
                ),
                rule("multi", Synonyms(("sofa", "couch", "settee"))),
            ]
        )
        matched = rs.match("tv", now=NOW)
        assert matched.redirect == "/high"
        syn = matched.synonyms
        assert syn["tv"] == ("television", "telly")
        assert syn["telly"] == ("tv",)
        assert "television" not in syn  # one-way
        assert syn["couch"] == ("sofa", "settee")

    def test_thousand_rules_match_fast(self) -> None:
        red = Redirect("/x")
        many = [rule(f"e{i}", red, match="exact", query=f"query {i}") for i in range(700)]
        many += [rule(f"c{i}", red, match="contains", query=f"word{i}") for i in range(250)]
        many += [rule(f"p{i}", red, match="pattern", query=f"^pat{i}\\b") for i in range(40)]
        many += [rule(f"g{i}", red, channels=("app",)) for i in range(10)]
        rs = RuleSet(many)
        assert {r.id for r in rs.match("query 7", now=NOW).rules} == {"e7"}
        started = time.perf_counter()
        for i in range(1000):
            rs.match(f"some word{i % 300} query", channel="web", now=NOW)
        mean_ms = time.perf_counter() - started  # 1000 calls: seconds == ms per call
        assert mean_ms < 1.0


class TestApply:
    def test_no_rules_keeps_hits(self, store: ProductStore) -> None:
        ranked = hits("A", "B", "C")
        out, effects = RuleSet().apply(ranked, store, MatchedRules())
        assert out == ranked
        assert effects == {}

    def test_empty_hits(self, store: ProductStore) -> None:
        assert apply([rule("b", Boost(Selector(("A",)), 1.0))], [], store) == ([], {})

    def test_pin_moves_and_inserts(self, store: ProductStore) -> None:
        out, effects = apply([rule("r", Pin("C", 1), Pin("F", 3))], hits("A", "B", "C", "D"), store)
        assert out == ["C", "A", "F", "B", "D"]
        assert effects[2] == ["pinned at 1 by rule 'r'"]
        assert "inserted" in effects[5][0]

    def test_pin_past_the_end_goes_last(self, store: ProductStore) -> None:
        out, _ = apply([rule("r", Pin("A", 50))], hits("A", "B", "C"), store)
        assert out == ["B", "C", "A"]

    def test_pin_of_unretrieved_product_outside_filters_is_skipped(
        self, store: ProductStore
    ) -> None:
        allowed = store.mask(Filters(attributes={"country": ("PL",)}))
        out, effects = apply(
            [rule("r", Pin("F", 1), Pin("E", 2))], hits("A", "C"), store, allowed=allowed
        )
        assert out == ["A", "E", "C"]
        assert "outside the filters" in effects[5][0]

    def test_two_pins_same_position_higher_priority_wins(self, store: ProductStore) -> None:
        rules = [rule("low", Pin("D", 1), priority=1), rule("high", Pin("C", 1), priority=2)]
        out, effects = apply(rules, hits("A", "B", "C", "D"), store)
        assert out == ["C", "D", "A", "B"]
        assert "shifted to 2" in effects[3][0]

    def test_same_product_pinned_twice_takes_earliest_rule(self, store: ProductStore) -> None:
        rules = [rule("low", Pin("D", 1), priority=1), rule("high", Pin("D", 3), priority=2)]
        out, _ = apply(rules, hits("A", "B", "C", "D"), store)
        assert out == ["A", "B", "D", "C"]

    def test_hide_beats_pin_whatever_the_priority(self, store: ProductStore) -> None:
        rules = [rule("pin", Pin("B", 1), priority=100), rule("hide", Hide(Selector(("B",))))]
        out, effects = apply(rules, hits("A", "B", "C"), store)
        assert out == ["A", "C"]
        assert effects[1] == ["hidden by rule 'hide'", "pin by rule 'pin' overridden: hidden"]

    def test_hide_by_filter(self, store: ProductStore) -> None:
        germany = Filters(attributes={"country": ("DE",)})
        out, _ = apply(
            [rule("pl-only", Hide(Selector(filters=germany)))], hits("A", "B", "C", "D", "E"), store
        )
        assert out == ["A", "C", "E"]

    def test_boost_and_bury_by_filter(self, store: ProductStore) -> None:
        lumo = Filters(brands=("lumo",))
        nordhem = Filters(brands=("Nordhem",))
        rules = [
            rule("up", Boost(Selector(filters=lumo), 1.0)),
            rule("down", Bury(Selector(filters=nordhem), 1.0)),
        ]
        out, effects = apply(rules, hits("A", "B", "C", "D", "E", "F"), store)
        assert out == ["E", "F", "C", "D", "A", "B"]
        assert effects[4] == ["boosted 1.00 by rule 'up'"]
        assert effects[0] == ["buried 1.00 by rule 'down'"]

    def test_small_boost_moves_a_share_of_the_list(self, store: ProductStore) -> None:
        # Rank scores step by 1/6: a boost of 0.2 passes one hit, not two.
        out, _ = apply(
            [rule("r", Boost(Selector(("D",)), 0.2))], hits("A", "B", "C", "D", "E", "F"), store
        )
        assert out == ["A", "B", "D", "C", "E", "F"]

    def test_boosts_add_up(self, store: ProductStore) -> None:
        rules = [rule("r1", Boost(Selector(("F",)), 0.5)), rule("r2", Boost(Selector(("F",)), 0.5))]
        out, effects = apply(rules, hits("A", "B", "C", "D", "E", "F"), store)
        assert out[0] == "F"
        assert len(effects[5]) == 2

    def test_bury_never_moves_a_pinned_product(self, store: ProductStore) -> None:
        rules = [
            rule("pin", Pin("A", 1)),
            rule("bury", Bury(Selector(filters=Filters(brands=("Nordhem",))), 5.0)),
        ]
        out, _ = apply(rules, hits("A", "B", "C", "D"), store)
        assert out == ["A", "C", "D", "B"]

    def test_unknown_product_ids_are_skipped_and_reported(self, store: ProductStore) -> None:
        rules = [rule("r", Pin("NOPE", 1), Hide(Selector(("GONE",))))]
        out, _ = apply(rules, hits("A", "B"), store)
        assert out == ["A", "B"]
        assert RuleSet(rules).unknown_products(store) == ["r: NOPE", "r: GONE"]

    def test_sources_and_scores(self, store: ProductStore) -> None:
        pin = RuleSet([rule("r", Pin("B", 1))])
        out_hits, _ = pin.apply(hits("A", "B"), store, pin.match("", now=NOW))
        assert [(h.doc, h.source) for h in out_hits] == [(1, "rules"), (0, "fused")]
        boost = RuleSet([rule("r", Boost(Selector(("C",)), 1.0))])
        ranked = hits("A", "B", "C", "D")
        full, _ = boost.apply(ranked, store, boost.match("", now=NOW))
        assert [h.score for h in full] == [1.5, 1.0, 0.75, 0.25]
        assert {h.source for h in full} == {"rules"}
        head, _ = boost.apply(ranked, store, boost.match("", now=NOW), window=2)
        assert [h.doc for h in head] == [h.doc for h in full]
        assert [h.source for h in head] == ["rules", "rules", "fused", "fused"]
        assert head[2] is ranked[1]

    def test_large_selections_match_the_store_mask(self) -> None:
        # 300 products: a brand filter picks 150 (a bitset), a list of ids picks 3 (numbers).
        big = ProductStore(
            [
                Product(id=f"P{i}", title="x", brand="even" if i % 2 == 0 else "odd")
                for i in range(300)
            ]
        )
        rs = RuleSet(
            [
                rule("odd-down", Bury(Selector(filters=Filters(brands=("odd",))), 2.0)),
                rule("odd-down-too", Bury(Selector(filters=Filters(brands=("odd",))), 0.5)),
                rule("hide", Hide(Selector(("P0", "P2", "P4")))),
            ]
        )
        ranked = [Hit(d, 1.0, "fused") for d in range(299, -1, -1)]
        out, effects = rs.apply(ranked, big, rs.match("", now=NOW))
        docs = [h.doc for h in out]
        assert docs[:147] == list(range(298, 5, -2))
        assert docs[147:] == list(range(299, 0, -2))
        assert effects[299] == [
            "buried 2.00 by rule 'odd-down'",
            "buried 0.50 by rule 'odd-down-too'",
        ]
        assert len(rs._masks) == 2  # the shared brand filter is selected once

    def test_hidden_mask(self, store: ProductStore) -> None:
        germany = Selector(filters=Filters(attributes={"country": ("DE",)}))
        rs = RuleSet([rule("de", Hide(germany)), rule("lamp", Hide(Selector(("E",))))])
        mask = rs.hidden_mask(store, rs.match("", now=NOW))
        assert mask is not None
        assert [p.id for p, hidden in zip(PRODUCTS, mask, strict=True) if hidden] == [
            "B",
            "D",
            "E",
            "F",
        ]
        assert RuleSet().hidden_mask(store, MatchedRules()) is None

    def test_hidden_mask_of_a_large_selection(self) -> None:
        big = ProductStore(
            [Product(id=f"P{i}", title="x", brand="b" if i % 3 else "a") for i in range(301)]
        )
        rs = RuleSet([rule("r", Hide(Selector(filters=Filters(brands=("a",)))))])
        mask = rs.hidden_mask(big, rs.match("", now=NOW))
        assert mask is not None
        assert np.flatnonzero(mask).tolist() == list(range(0, 301, 3))

    def test_explain_false_collects_nothing(self, store: ProductStore) -> None:
        rs = RuleSet([rule("r", Pin("C", 1), Hide(Selector(("A",))), Bury(Selector(("B",)), 1.0))])
        out, effects = rs.apply(
            hits("A", "B", "C", "D"), store, rs.match("", now=NOW), explain=False
        )
        assert ids(out) == ["C", "D", "B"]
        assert effects == {}
