"""A/B tests of ranking configurations: stable assignment and a per-variant report.

A shopper is assigned to a variant by a hash of the experiment's id (its salt) and the shopper's
*unit* id, so the same shopper sees the same variant on every replica and after restarts, and
adding an experiment does not reshuffle another one. The experiment's ``unit`` says which id:
``"user"`` (the default) hashes the user id, or the session id while the shopper is anonymous;
``"session"`` always hashes the session id (every visit is a fresh draw).

**Several experiments at once.** Every enabled experiment assigns the shopper independently
(each hashes with its own salt), in configuration order. At most one set of ranking weights can
be served, so the first experiment whose assigned variant carries weights decides them
(:func:`assign`); the shopper is *reported* only in the experiments whose arm they really got:
the deciding one, and those whose variant would have served the same weights (an arm without
weights counts only when no experiment's weights were served). Whether a shopper is left out of
an experiment depends only on the *other* experiments' hashes, which are independent of its
own, so each experiment's arms stay randomised and comparable; an experiment just loses the
traffic another experiment's weighted arm took.

The report counts units (the experiment's unit: users, or sessions when anonymous; or sessions)
that were exposed to a variant, i.e. sent at least one event carrying it (clients send the
``variants`` of the search answer back on their search, click, add-to-cart and purchase
events): a unit converts to a click when it clicked at least once, to a purchase when it bought
at least once. Units are independent draws, so each rate is a binomial proportion with a Wilson
95% interval, and each variant is compared with the control by a two-proportion z-test (pooled
standard error, two-sided p-value).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from search.errors import InvalidRequestError
from search.weights import RankingWeights

Unit = Literal["user", "session"]
"""Whose id an experiment hashes: the user's (the session's while anonymous), or the session's."""
UNITS: tuple[Unit, ...] = get_args(Unit)
ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,100}")
"""Experiment ids and variant names: 1-100 letters, digits or ``._:-``."""

#: z for a two-sided 95% interval.
Z95 = 1.959963984540054


@dataclass(frozen=True, slots=True)
class Variant:
    """One arm of an experiment.

    Attributes:
        name: Variant name (``"control"``, ``"b"``), carried by events.
        share: Share of traffic, 0..1; shares of an experiment add up to 1.
        weights: Ranking weights of this arm, or None for the serving weights.
    """

    name: str
    share: float
    weights: RankingWeights | None = None


@dataclass(frozen=True, slots=True)
class Experiment:
    """A split of traffic between ranking configurations.

    Attributes:
        id: Experiment id; also the hash salt, so ids must not be reused.
        variants: The arms; the first is the control in reports.
        enabled: A disabled experiment assigns nobody (everyone gets the serving config).
        description: Free text.
        unit: Whose id is hashed and counted: ``"user"`` (the session's while anonymous) or
            ``"session"``.
    """

    id: str
    variants: tuple[Variant, ...]
    enabled: bool = True
    description: str = ""
    unit: Unit = "user"

    @property
    def control(self) -> Variant:
        """The first variant."""
        return self.variants[0]

    def to_dict(self) -> dict[str, Any]:
        """JSON form (read back by :func:`experiment_from_dict`)."""
        return {
            "id": self.id,
            "enabled": self.enabled,
            "description": self.description,
            "unit": self.unit,
            "variants": [
                {
                    "name": v.name,
                    "share": v.share,
                    "weights": v.weights.to_dict() if v.weights is not None else None,
                }
                for v in self.variants
            ],
        }


def experiment_from_dict(data: Any, name: str = "experiment") -> Experiment:
    """Validate an experiment written as JSON.

    Form: ``{"id": "ranking-2026-11", "unit": "user", "variants": [{"name": "control",
    "share": 0.5}, {"name": "b", "share": 0.5, "weights": {"retrievers": {"semantic": 0.6}}}]}``
    (``unit``, ``enabled`` and ``description`` are optional).

    Raises:
        InvalidRequestError: a malformed field (naming it), fewer than two variants, repeated
            names, or shares that do not add up to 1.
    """
    if not isinstance(data, Mapping):
        raise InvalidRequestError(name, "must be an object")
    valid = ("id", "variants", "enabled", "description", "unit")
    for key in data:
        if key not in valid:
            raise InvalidRequestError(f"{name}.{key}", f"unknown field; valid: {', '.join(valid)}")
    exp_id = data.get("id")
    if not isinstance(exp_id, str) or not ID_PATTERN.fullmatch(exp_id):
        raise InvalidRequestError(f"{name}.id", "must be 1-100 letters, digits or ._:-")
    raw = data.get("variants")
    if not isinstance(raw, list | tuple) or len(raw) < 2:
        raise InvalidRequestError(f"{name}.variants", "must list at least two variants")
    variants: list[Variant] = []
    for i, item in enumerate(raw):
        field = f"{name}.variants[{i}]"
        if not isinstance(item, Mapping):
            raise InvalidRequestError(field, "must be an object")
        vname = item.get("name")
        if not isinstance(vname, str) or not ID_PATTERN.fullmatch(vname):
            raise InvalidRequestError(f"{field}.name", "must be 1-100 letters, digits or ._:-")
        share = item.get("share")
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 < share <= 1:
            raise InvalidRequestError(f"{field}.share", "must be a number above 0 and at most 1")
        weights = item.get("weights")
        variants.append(
            Variant(
                vname,
                float(share),
                RankingWeights.from_dict(weights, f"{field}.weights") if weights else None,
            )
        )
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise InvalidRequestError(f"{name}.variants", "variant names must differ")
    total = sum(v.share for v in variants)
    if abs(total - 1.0) > 1e-6:
        raise InvalidRequestError(f"{name}.variants", f"shares must add up to 1, got {total:g}")
    enabled = data.get("enabled", True)
    if not isinstance(enabled, bool):
        raise InvalidRequestError(f"{name}.enabled", "must be true or false")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise InvalidRequestError(f"{name}.description", "must be a string")
    unit = data.get("unit", "user")
    if unit not in UNITS:
        raise InvalidRequestError(f"{name}.unit", f"must be one of: {', '.join(UNITS)}")
    return Experiment(exp_id, tuple(variants), enabled, description, unit)


def bucket(experiment_id: str, unit_id: str) -> float:
    """A stable number in [0, 1) for a unit in an experiment (SHA-256 of ``id:unit``).

    Args:
        experiment_id: The experiment (its salt).
        unit_id: A user or session id.

    Returns:
        The unit's bucket, the same on every machine and in every process.
    """
    digest = hashlib.sha256(f"{experiment_id}:{unit_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def variant_for(experiment: Experiment, unit_id: str) -> Variant | None:
    """The variant a user or session is in.

    Args:
        experiment: The experiment.
        unit_id: The user id when known, else the session id.

    Returns:
        The variant, or None when the experiment is disabled or ``unit_id`` is empty.
    """
    if not experiment.enabled or not unit_id:
        return None
    point = bucket(experiment.id, unit_id)
    edge = 0.0
    for variant in experiment.variants:
        edge += variant.share
        if point < edge:
            return variant
    return experiment.variants[-1]  # rounding of shares that add up to just under 1


def unit_id(experiment: Experiment, user_id: str | None, session_id: str | None) -> str | None:
    """The id a shopper is hashed (and counted) by in an experiment.

    Args:
        experiment: The experiment (its ``unit``).
        user_id: The signed-in shopper, or None.
        session_id: The shopper's session, or None.

    Returns:
        The user id (else the session id) for ``unit="user"``, the session id for
        ``unit="session"``; None when the shopper has no such id.
    """
    if experiment.unit == "session":
        return session_id or None
    return user_id or session_id or None


@dataclass(frozen=True, slots=True)
class Assignment:
    """What one shopper is served under the running experiments.

    Attributes:
        weights: The ranking weights to serve, or None for the serving configuration.
        decided_by: The experiment whose variant's weights are served, or None.
        variants: Experiment id -> variant name, for every experiment whose arm the shopper
            really got (see the module docstring); empty for a shopper without ids.
    """

    weights: RankingWeights | None = None
    decided_by: str | None = None
    variants: Mapping[str, str] = field(default_factory=dict)


NO_ASSIGNMENT = Assignment()
"""A shopper in no experiment: the serving configuration."""


def assign(
    experiments: Sequence[Experiment],
    user_id: str | None,
    session_id: str | None,
    serving: RankingWeights | None = None,
) -> Assignment:
    """Assign a shopper to the running experiments and decide the ranking weights to serve.

    Args:
        experiments: The experiments, in configuration order (disabled ones assign nobody).
        user_id: The signed-in shopper, or None.
        session_id: The shopper's session, or None.
        serving: The serving weights, so that an arm whose weights equal them counts as served
            when no experiment changes the weights (and the other way round); None: unknown.

    Returns:
        The weights of the first experiment whose variant carries weights (None when none
        does), and the experiments whose arm the shopper got.
    """
    if not experiments or not (user_id or session_id):
        return NO_ASSIGNMENT
    picks: list[tuple[Experiment, Variant]] = []
    for experiment in experiments:
        unit = unit_id(experiment, user_id, session_id)
        variant = variant_for(experiment, unit) if unit else None
        if variant is not None:
            picks.append((experiment, variant))
    if not picks:
        return NO_ASSIGNMENT
    decided = next(((e, v) for e, v in picks if v.weights is not None), None)
    weights = decided[1].weights if decided is not None else None
    served = weights if weights is not None else serving
    variants = {
        e.id: v.name
        for e, v in picks
        if (v.weights if v.weights is not None else serving) == served
    }
    return Assignment(weights, decided[0].id if decided is not None else None, variants)


# --------------------------------------------------------------------------------------------
# Report


@dataclass(frozen=True, slots=True)
class VariantCounts:
    """Outcomes of one variant.

    Attributes:
        units: Units (users or sessions, per the experiment's unit) exposed to the variant.
        clicked: Units with at least one click carrying the variant.
        converted: Units with at least one purchase carrying the variant.
    """

    units: int
    clicked: int
    converted: int


def tally(events: Iterable[tuple[str, str, str]]) -> dict[str, VariantCounts]:
    """Count units per variant from ``(variant, unit id, event type)`` triples.

    The reference for what the event stores count in SQL
    (:func:`events.store.experiment_counts`).

    Args:
        events: Events carrying the experiment's variant, as triples; event types are
            :class:`events.store.EventType` values (``"search"``, ``"click"``,
            ``"purchase"``...). Any event exposes its unit to the variant; clicks and purchases
            also count as conversions.

    Returns:
        Variant name -> counts, variants in order of first appearance.
    """
    exposed: dict[str, set[str]] = defaultdict(set)
    clicked: dict[str, set[str]] = defaultdict(set)
    bought: dict[str, set[str]] = defaultdict(set)
    for variant, unit, kind in events:
        exposed[variant].add(unit)
        if kind == "click":
            clicked[variant].add(unit)
        elif kind == "purchase":
            bought[variant].add(unit)
    return {
        v: VariantCounts(len(units), len(clicked[v]), len(bought[v]))
        for v, units in exposed.items()
    }


def wilson_interval(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion.

    Args:
        successes: Successes, 0..trials.
        trials: Trials.
        z: Normal quantile (1.96 for 95%).

    Returns:
        ``(low, high)``; ``(0, 1)`` without trials.

    Raises:
        ValueError: ``successes`` outside 0..trials.
    """
    if not 0 <= successes <= max(trials, 0):
        raise ValueError(f"successes must be in 0..{trials}, got {successes}")
    if trials <= 0:
        return (0.0, 1.0)
    p = successes / trials
    z2 = z * z
    centre = (p + z2 / (2 * trials)) / (1 + z2 / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / (1 + z2 / trials)
    return (max(0.0, centre - half), min(1.0, centre + half))


def two_proportion_z(s1: int, n1: int, s2: int, n2: int) -> tuple[float, float]:
    """Two-sided two-proportion z-test with a pooled standard error.

    Args:
        s1: Successes of the first group.
        n1: Trials of the first group.
        s2: Successes of the second group.
        n2: Trials of the second group.

    Returns:
        ``(z, p_value)``: z positive when the second rate is higher; ``(0, 1)`` when a group
        is empty or the pooled rate is 0 or 1.
    """
    if n1 <= 0 or n2 <= 0:
        return (0.0, 1.0)
    pooled = (s1 + s2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return (0.0, 1.0)
    z = (s2 / n2 - s1 / n1) / se
    return (z, math.erfc(abs(z) / math.sqrt(2)))


@dataclass(frozen=True, slots=True)
class RateReport:
    """One rate of one variant.

    Attributes:
        rate: Successes / units.
        low: Wilson 95% lower bound.
        high: Wilson 95% upper bound.
        lift: Relative change against the control's rate (None for the control or when the
            control's rate is 0).
        z: z statistic against the control (None for the control).
        p_value: Two-sided p-value against the control (None for the control).
    """

    rate: float
    low: float
    high: float
    lift: float | None = None
    z: float | None = None
    p_value: float | None = None


@dataclass(frozen=True, slots=True)
class VariantReport:
    """Click-through and conversion of one variant."""

    name: str
    counts: VariantCounts
    ctr: RateReport
    conversion: RateReport


def _rate(successes: int, units: int, control: tuple[int, int] | None) -> RateReport:
    low, high = wilson_interval(successes, units)
    rate = successes / units if units else 0.0
    if control is None:
        return RateReport(rate, low, high)
    cs, cn = control
    z, p = two_proportion_z(cs, cn, successes, units)
    base = cs / cn if cn else 0.0
    return RateReport(rate, low, high, (rate - base) / base if base else None, z, p)


def report(
    counts: Mapping[str, VariantCounts], control: str | None = None
) -> tuple[VariantReport, ...]:
    """Per-variant click-through and conversion with intervals and tests against the control.

    Args:
        counts: Variant -> counts (e.g. from :func:`tally`).
        control: The control's name (default: the first key).

    Returns:
        One report per variant, the control first.

    Raises:
        ValueError: ``control`` is not among the variants.
    """
    if not counts:
        return ()
    control = control if control is not None else next(iter(counts))
    if control not in counts:
        raise ValueError(f"unknown control {control!r}; variants: {', '.join(counts)}")
    base = counts[control]
    out = [
        VariantReport(
            control,
            base,
            _rate(base.clicked, base.units, None),
            _rate(base.converted, base.units, None),
        )
    ]
    for name, c in counts.items():
        if name == control:
            continue
        out.append(
            VariantReport(
                name,
                c,
                _rate(c.clicked, c.units, (base.clicked, base.units)),
                _rate(c.converted, c.units, (base.converted, base.units)),
            )
        )
    return tuple(out)
