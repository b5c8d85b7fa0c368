"""A/B tests: stable assignment, validation, Wilson intervals, z-tests and the report."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import pytest

from merchandising.experiments import (
    NO_ASSIGNMENT,
    Experiment,
    Variant,
    VariantCounts,
    assign,
    bucket,
    experiment_from_dict,
    report,
    tally,
    two_proportion_z,
    unit_id,
    variant_for,
    wilson_interval,
)
from search.errors import InvalidRequestError
from search.weights import RankingWeights

EXP = Experiment("ranking-1", (Variant("control", 0.5), Variant("b", 0.3), Variant("c", 0.2)))


class TestAssignment:
    def test_stable_across_calls_and_known_value(self) -> None:
        first = [variant_for(EXP, f"user-{i}") for i in range(100)]
        assert first == [variant_for(EXP, f"user-{i}") for i in range(100)]
        # SHA-256 based: the same on every machine and Python process (no PYTHONHASHSEED).
        assert bucket("ranking-1", "user-1") == pytest.approx(
            int.from_bytes(__import__("hashlib").sha256(b"ranking-1:user-1").digest()[:8], "big")
            / 2**64
        )

    def test_splits_follow_shares(self) -> None:
        counts = Counter(variant_for(EXP, f"session-{i}").name for i in range(20_000))  # type: ignore[union-attr]
        assert counts["control"] / 20_000 == pytest.approx(0.5, abs=0.015)
        assert counts["b"] / 20_000 == pytest.approx(0.3, abs=0.015)
        assert counts["c"] / 20_000 == pytest.approx(0.2, abs=0.015)

    def test_experiments_are_independent(self) -> None:
        other = Experiment("ranking-2", EXP.variants)
        same = sum(variant_for(EXP, f"u{i}") == variant_for(other, f"u{i}") for i in range(5000))
        # Independent splits agree with probability 0.5^2 + 0.3^2 + 0.2^2 = 0.38.
        assert same / 5000 == pytest.approx(0.38, abs=0.03)

    @pytest.mark.parametrize("unit", ["", None])
    def test_no_unit_or_disabled_means_no_variant(self, unit: Any) -> None:
        assert variant_for(EXP, unit) is None
        off = Experiment("x", EXP.variants, enabled=False)
        assert variant_for(off, "user-1") is None


class TestValidation:
    def test_round_trip(self) -> None:
        data = {
            "id": "exp-1",
            "variants": [
                {"name": "control", "share": 0.5},
                {"name": "semantic", "share": 0.5, "weights": {"retrievers": {"semantic": 0.8}}},
            ],
        }
        exp = experiment_from_dict(data)
        assert exp.variants[1].weights == RankingWeights(
            retrievers={"lexical": 1.0, "semantic": 0.8}
        )
        assert experiment_from_dict(exp.to_dict()) == exp
        assert exp.unit == "user"
        by_session = experiment_from_dict({**data, "unit": "session"})
        assert by_session.unit == "session"
        assert by_session.to_dict()["unit"] == "session"
        assert experiment_from_dict(by_session.to_dict()) == by_session

    @pytest.mark.parametrize(
        ("patch", "field"),
        [
            ({"id": ""}, "experiment.id"),
            ({"variants": [{"name": "a", "share": 1.0}]}, "experiment.variants"),
            ({"variants": [{"name": "a", "share": 0.5}, {"name": "b", "share": 0.4}]}, "experiment.variants"),
            ({"variants": [{"name": "a", "share": 0.5}, {"name": "a", "share": 0.5}]}, "experiment.variants"),
            ({"variants": [{"name": "a", "share": 0}, {"name": "b", "share": 1}]}, "experiment.variants[0].share"),
            ({"variants": [{"name": "a b", "share": 0.5}, {"name": "b", "share": 0.5}]}, "experiment.variants[0].name"),
            ({"variants": [{"name": "a", "share": 0.5, "weights": {"x": 1}}, {"name": "b", "share": 0.5}]}, "experiment.variants[0].weights.x"),
            ({"unit": "visitor"}, "experiment.unit"),
            ({"unit": None}, "experiment.unit"),
        ],
    )  # fmt: skip
    def test_bad_field_is_named(self, patch: dict[str, Any], field: str) -> None:
        data: dict[str, Any] = {
            "id": "e",
            "variants": [{"name": "a", "share": 0.5}, {"name": "b", "share": 0.5}],
        }
        data.update(patch)
        with pytest.raises(InvalidRequestError) as err:
            experiment_from_dict(data)
        assert err.value.field == field


class TestStatistics:
    def test_wilson_known_values(self) -> None:
        # Reference values (Wilson 1927; e.g. statsmodels proportion_confint method="wilson").
        low, high = wilson_interval(81, 263)
        assert (low, high) == (pytest.approx(0.2553, abs=1e-4), pytest.approx(0.3662, abs=1e-4))
        assert wilson_interval(0, 10)[0] == 0.0
        assert wilson_interval(0, 10)[1] == pytest.approx(0.2775, abs=1e-4)
        assert wilson_interval(10, 10)[1] == pytest.approx(1.0)
        assert wilson_interval(0, 0) == (0.0, 1.0)
        with pytest.raises(ValueError):
            wilson_interval(5, 3)

    def test_two_proportion_z(self) -> None:
        z, p = two_proportion_z(200, 1000, 250, 1000)
        # pooled 0.225, se = sqrt(.225 * .775 * 2/1000) = 0.018675
        assert z == pytest.approx(0.05 / math.sqrt(0.225 * 0.775 * 0.002), rel=1e-9)
        assert p == pytest.approx(0.00739, abs=1e-4)
        assert two_proportion_z(0, 0, 1, 10) == (0.0, 1.0)
        assert two_proportion_z(0, 10, 0, 10) == (0.0, 1.0)

    def test_tally_counts_units_once(self) -> None:
        events = [
            ("control", "s1", "search"), ("control", "s1", "click"), ("control", "s1", "click"),
            ("control", "s2", "search"), ("control", "s2", "purchase"),
            ("b", "s3", "search"), ("b", "s3", "view"),
            ("b", "s4", "click"),  # no search event, but a click with the variant: exposed
        ]  # fmt: skip
        assert tally(events) == {
            "control": VariantCounts(units=2, clicked=1, converted=1),
            "b": VariantCounts(units=2, clicked=1, converted=0),
        }
        assert tally([]) == {}

    def test_report(self) -> None:
        counts = {
            "control": VariantCounts(1000, 200, 30),
            "b": VariantCounts(1000, 250, 30),
        }
        control, b = report(counts)
        assert control.name == "control"
        assert control.ctr.rate == 0.2
        assert control.ctr.z is None and control.ctr.lift is None
        assert b.ctr.lift == pytest.approx(0.25)
        assert b.ctr.p_value == pytest.approx(0.00739, abs=1e-4)
        assert b.ctr.low < 0.25 < b.ctr.high
        assert b.conversion.z == 0.0
        assert b.conversion.p_value == pytest.approx(1.0)
        assert report({}) == ()
        with pytest.raises(ValueError, match="unknown control"):
            report(counts, control="z")


W_LOW = RankingWeights(colour_rerank=0.0)
W_HIGH = RankingWeights(colour_rerank=50.0)


def weighted(exp_id: str, weights: RankingWeights, unit: Any = "user") -> Experiment:
    return Experiment(exp_id, (Variant("control", 0.5), Variant("t", 0.5, weights)), unit=unit)


def unit_in(*wanted: tuple[Experiment, str], prefix: str = "u") -> str:
    """A unit id each experiment puts in the given variant."""
    for i in range(10_000):
        unit = f"{prefix}{i}"
        if all(getattr(variant_for(e, unit), "name", None) == v for e, v in wanted):
            return unit
    raise AssertionError("no such unit")


class TestAssign:
    def test_unit_ids(self) -> None:
        by_user = weighted("e", W_LOW)
        by_session = weighted("e", W_LOW, unit="session")
        assert unit_id(by_user, "u1", "s1") == "u1"
        assert unit_id(by_user, None, "s1") == "s1"
        assert unit_id(by_user, "", "") is None
        assert unit_id(by_session, "u1", "s1") == "s1"
        assert unit_id(by_session, "u1", None) is None

    @pytest.mark.parametrize(("user", "session"), [(None, None), ("", ""), (None, "")])
    def test_no_ids_no_assignment(self, user: Any, session: Any) -> None:
        assert assign([EXP], user, session) is NO_ASSIGNMENT

    def test_no_experiments_or_disabled(self) -> None:
        assert assign([], "u1", "s1") is NO_ASSIGNMENT
        off = Experiment("x", EXP.variants, enabled=False)
        assert assign([off], "u1", "s1") is NO_ASSIGNMENT

    def test_one_experiment(self) -> None:
        exp = weighted("e", W_LOW)
        treated = unit_in((exp, "t"))
        control = unit_in((exp, "control"))
        got = assign([exp], treated, None)
        assert (got.weights, got.decided_by, dict(got.variants)) == (W_LOW, "e", {"e": "t"})
        got = assign([exp], None, control)
        assert (got.weights, got.decided_by, dict(got.variants)) == (None, None, {"e": "control"})

    def test_the_first_weighted_arm_decides_and_overridden_arms_are_not_reported(self) -> None:
        first, second = weighted("e1", W_LOW), weighted("e2", W_HIGH)
        both = unit_in((first, "t"), (second, "t"))
        got = assign([first, second], both, None)
        assert (got.weights, got.decided_by, dict(got.variants)) == (W_LOW, "e1", {"e1": "t"})
        # e1's control arm means "serving weights": e2's weights were served instead.
        second_only = unit_in((first, "control"), (second, "t"))
        got = assign([first, second], second_only, None)
        assert (got.weights, got.decided_by, dict(got.variants)) == (W_HIGH, "e2", {"e2": "t"})
        neither = unit_in((first, "control"), (second, "control"))
        got = assign([first, second], neither, None)
        assert got.weights is None
        assert dict(got.variants) == {"e1": "control", "e2": "control"}

    def test_arms_with_the_served_weights_are_reported(self) -> None:
        first, same = weighted("e1", W_LOW), weighted("e2", W_LOW)
        both = unit_in((first, "t"), (same, "t"))
        assert dict(assign([first, same], both, None).variants) == {"e1": "t", "e2": "t"}
        # A control arm counts when the served weights equal the serving ones.
        unit = unit_in((first, "t"), (same, "control"))
        assert dict(assign([first, same], unit, None, serving=W_LOW).variants) == {
            "e1": "t",
            "e2": "control",
        }
        assert dict(assign([first, same], unit, None, serving=W_HIGH).variants) == {"e1": "t"}

    def test_each_experiment_stays_balanced_beside_another(self) -> None:
        first, second = weighted("e1", W_LOW), weighted("e2", W_HIGH)
        counts: Counter[str] = Counter()
        for i in range(20_000):
            counts.update(
                f"{k}={v}" for k, v in assign([first, second], None, f"s{i}").variants.items()
            )
        # e1's arm t serves its weights whatever e2 says; e1's control arm (serving weights)
        # is served only to shoppers in e2's control arm too: a random half of it.
        assert counts["e1=t"] / 20_000 == pytest.approx(0.5, abs=0.015)
        assert counts["e1=control"] / 20_000 == pytest.approx(0.25, abs=0.015)
        # e2 only gets the shoppers e1's weights did not take, still split evenly.
        assert counts["e2=t"] / 20_000 == pytest.approx(0.25, abs=0.015)
        assert counts["e2=control"] / 20_000 == pytest.approx(0.25, abs=0.015)
        # Which e1 shoppers are kept depends on e2's hash only: both e1 arms are random
        # samples of the same shoppers, so comparing them stays fair.

    def test_user_id_wins_over_session_id(self) -> None:
        exp = weighted("e", W_LOW)
        first = assign([exp], "alice", "s1").variants
        assert all(assign([exp], "alice", f"s{i}").variants == first for i in range(50))
