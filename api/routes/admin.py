"""``/admin/...``: merchandising rules, ranking weights, versions, audit, API keys, experiments
and preview. Every route needs an admin key (:func:`api.security.require_admin_key`).

The application provides, on ``app.state``:

* ``config_store``: a :class:`merchandising.store.ConfigStore`;
* ``security``: a :class:`api.security.Security`;
* ``engine``: the serving :class:`search.engine.SearchEngine` (preview only);
* ``experiment_counts`` (optional): ``Callable[[str], Mapping[str, VariantCounts]]`` giving an
  experiment's per-variant counts from the event store (``GET .../report``); ``create_app``
  sets it to :func:`api.routes.events.experiment_counts_source` (units exposed to a variant,
  and those that clicked or bought, counted from the events carrying the variant). Without it
  (events off) only ``POST .../report`` with counts in the body works.

Writes take an optional ``expected_version`` query parameter: the change is refused with 409 when
the configuration moved on since the caller read it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Query, Request, status
from pydantic import BaseModel, Field

from api.deps import EngineDep
from api.errors import body_fields
from api.schemas import (
    MAX_REQUEST_INT,
    ExperimentJSON,
    FiltersJSON,
    RuleJSON,
    RuleReplaceJSON,
    RulesJSON,
    WeightsJSON,
)
from api.security import AdminKeyDep, SecurityDep, require_admin_key
from api.service import serving_weights
from merchandising.experiments import VariantCounts, experiment_from_dict, report
from merchandising.store import ConfigStore, ConfigVersion, compare_rankings
from search.engine import SearchEngine
from search.errors import InvalidRequestError
from search.rules import (
    Rule,
    RuleSet,
    filters_from_dict,
    rule_from_dict,
    rule_to_dict,
    rules_from_list,
)
from search.tuning import Tuning
from search.types import Filters, Hit, SearchRequest
from search.weights import RankingWeights

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin_key)])

# Bodies arrive as plain JSON objects for the codecs in search/ to validate (the one validator);
# the models only document them in the OpenAPI schema (see api.schemas.documented_as).
RuleBody = Annotated[RuleJSON, Body()]
RuleReplaceBody = Annotated[RuleReplaceJSON, Body()]
RulesBody = Annotated[RulesJSON, Body()]
WeightsBody = Annotated[WeightsJSON, Body()]
ExperimentBody = Annotated[ExperimentJSON, Body()]
ExpectedVersion = Annotated[
    int | None,
    Query(
        ge=0,
        le=MAX_REQUEST_INT,
        description="Refuse the change (409) unless the configuration is at this version.",
    ),
]
VersionPath = Annotated[int, Path(ge=0, le=MAX_REQUEST_INT, description="A saved version.")]
Offset = Annotated[int, Query(ge=0, le=MAX_REQUEST_INT, description="Entries to skip.")]
Comment = Annotated[str, Query(max_length=500, description="Why, for the audit log.")]


def get_config_store(request: Request) -> ConfigStore:
    """The :class:`ConfigStore` on ``app.state.config_store``.

    Raises:
        RuntimeError: the application did not set one.
    """
    store: ConfigStore | None = getattr(request.app.state, "config_store", None)
    if store is None:
        raise RuntimeError("no ConfigStore on app.state.config_store: create one in create_app")
    return store


StoreDep = Annotated[ConfigStore, Depends(get_config_store)]


@contextmanager
def _http_errors() -> Iterator[None]:
    """The admin routes' malformed fields are fields of the JSON body (422, ``loc`` ``["body",
    field]``); :mod:`api.errors` answers them and every other domain error (404
    ConfigNotFoundError, 409 ConfigConflictError)."""
    with body_fields():
        yield


def _version_meta(v: ConfigVersion) -> dict[str, Any]:
    return {
        "version": v.version,
        "created_at": v.created_at.isoformat(),
        "actor": v.actor,
        "comment": v.comment,
    }


# --- rules ----------------------------------------------------------------------------------


@router.get("/rules", summary="Merchandising rules")
def list_rules(store: StoreDep) -> dict[str, Any]:
    """The current rules, in resolution order (highest priority first)."""
    current = store.current()
    return {
        "version": current.version,
        "rules": [rule_to_dict(r) for r in RuleSet(current.rules).rules],
    }


@router.get("/rules/{rule_id}", summary="One rule")
def get_rule(rule_id: str, store: StoreDep) -> dict[str, Any]:
    """One rule.

    Raises:
        HTTPException: 404 for an unknown id.
    """
    current = store.current()
    for rule in current.rules:
        if rule.id == rule_id:
            return {"version": current.version, "rule": rule_to_dict(rule)}
    raise HTTPException(status.HTTP_404_NOT_FOUND, f"no rule {rule_id!r}")


def _saved_rule(version: int, rule: Rule, engine: SearchEngine) -> dict[str, Any]:
    """The answer to a saved rule: the new version, the rule, and ids it names that the serving
    catalogue lacks (a warning, not an error: the product may arrive later)."""
    return {
        "version": version,
        "rule": rule_to_dict(rule),
        "warnings": RuleSet([rule]).unknown_products(engine.store),
    }


@router.post("/rules", status_code=status.HTTP_201_CREATED, summary="Create a rule")
def create_rule(
    body: RuleBody,
    store: StoreDep,
    key: AdminKeyDep,
    engine: EngineDep,
    expected_version: ExpectedVersion = None,
    comment: Comment = "",
) -> dict[str, Any]:
    """Create a rule (validated by :func:`search.rules.rule_from_dict`).

    Raises:
        HTTPException: 422 for a malformed rule, 409 when the id exists or the version moved.
    """
    with _http_errors():
        rule = rule_from_dict(body, "rule")
        if any(r.id == rule.id for r in store.current().rules):
            raise HTTPException(status.HTTP_409_CONFLICT, f"rule {rule.id!r} exists: use PUT")
        version = store.put_rule(rule, key.actor, comment, expected_version)
    return _saved_rule(version.version, rule, engine)


@router.put("/rules/{rule_id}", summary="Create or replace a rule")
def put_rule(
    rule_id: str,
    body: RuleReplaceBody,
    store: StoreDep,
    key: AdminKeyDep,
    engine: EngineDep,
    expected_version: ExpectedVersion = None,
    comment: Comment = "",
) -> dict[str, Any]:
    """Create or replace the rule with this id (the body's ``id`` may be left out).

    Raises:
        HTTPException: 422 for a malformed rule or an id differing from the path's, 409 when
            the version moved.
    """
    with _http_errors():
        if body.setdefault("id", rule_id) != rule_id:
            raise InvalidRequestError("rule.id", f"must match the path ({rule_id!r})")
        rule = rule_from_dict(body, "rule")
        version = store.put_rule(rule, key.actor, comment, expected_version)
    return _saved_rule(version.version, rule, engine)


@router.put("/rules", summary="Replace every rule")
def replace_rules(
    body: RulesBody,
    store: StoreDep,
    key: AdminKeyDep,
    expected_version: ExpectedVersion = None,
    comment: Comment = "",
) -> dict[str, Any]:
    """Replace the whole rule set with ``{"rules": [...]}`` (an import).

    Raises:
        HTTPException: 422 for a malformed rule or a repeated id, 409 when the version moved.
    """
    with _http_errors():
        rules = rules_from_list(body.get("rules"), "rules")
        version = store.replace_rules(rules, key.actor, comment, expected_version)
    return {"version": version.version, "rules": len(rules)}


@router.delete("/rules/{rule_id}", summary="Delete a rule")
def delete_rule(
    rule_id: str,
    store: StoreDep,
    key: AdminKeyDep,
    expected_version: ExpectedVersion = None,
    comment: Comment = "",
) -> dict[str, Any]:
    """Delete a rule.

    Raises:
        HTTPException: 404 for an unknown id, 409 when the version moved.
    """
    with _http_errors():
        version = store.delete_rule(rule_id, key.actor, comment, expected_version)
    return {"version": version.version, "deleted": rule_id}


# --- weights --------------------------------------------------------------------------------


@router.get("/weights", summary="Ranking weights")
def get_weights(store: StoreDep) -> dict[str, Any]:
    """The current ranking weights."""
    current = store.current()
    return {"version": current.version, "weights": current.weights.to_dict()}


@router.put("/weights", summary="Change ranking weights")
def put_weights(
    body: WeightsBody,
    store: StoreDep,
    key: AdminKeyDep,
    expected_version: ExpectedVersion = None,
    comment: Comment = "",
) -> dict[str, Any]:
    """Set the ranking weights; keys left out take their defaults.

    Raises:
        HTTPException: 422 for an unknown key or a value out of range, 409 when the version moved.
    """
    with _http_errors():
        weights = RankingWeights.from_dict(body, "weights")
        version = store.set_weights(weights, key.actor, comment, expected_version)
    return {"version": version.version, "weights": weights.to_dict()}


# --- versions and audit ---------------------------------------------------------------------


@router.get("/versions", summary="Saved configuration versions")
def list_versions(
    store: StoreDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Offset = 0,
) -> dict[str, Any]:
    """Versions, newest first, without their content."""
    return {
        "current": store.current().version,
        "versions": [
            {**asdict(v), "created_at": v.created_at.isoformat()}
            for v in store.versions(limit, offset)
        ],
    }


@router.get("/versions/{version}", summary="One configuration version")
def get_version(version: VersionPath, store: StoreDep) -> dict[str, Any]:
    """A version's whole content.

    Raises:
        HTTPException: 404 for an unknown version.
    """
    with _http_errors():
        v = store.version(version)
    return {**_version_meta(v), **v.content()}


@router.post("/rollback/{version}", summary="Roll back to a version")
def rollback(
    version: VersionPath, store: StoreDep, key: AdminKeyDep, comment: Comment = ""
) -> dict[str, Any]:
    """Make an earlier version current again; this writes a new version (history is kept).

    Raises:
        HTTPException: 404 for an unknown version.
    """
    with _http_errors():
        new = store.rollback(version, key.actor, comment)
    return {**_version_meta(new), "restored": version}


@router.get("/audit", summary="Audit log")
def audit(
    store: StoreDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Offset = 0,
    target: Annotated[str | None, Query(max_length=200)] = None,
) -> dict[str, Any]:
    """Changes, newest first: who, when, what, the JSON before and after, the version made."""
    return {
        "entries": [
            {**asdict(e), "at": e.at.isoformat()} for e in store.audit(limit, offset, target)
        ]
    }


# --- API keys -------------------------------------------------------------------------------


class KeyCreate(BaseModel):
    """Body of ``POST /admin/keys``."""

    name: str = Field(min_length=1, max_length=100)
    scope: str = Field(description='"search" or "admin".')
    filters: FiltersJSON | None = Field(
        default=None,
        description='Fixed filters of a search key, e.g. {"attr": {"country": ["PL"]}}.',
    )
    rate_per_minute: int | None = Field(default=None, ge=1, le=1_000_000)
    burst: int | None = Field(default=None, ge=1, le=100_000)


@router.get("/keys", summary="API keys")
def list_keys(security: SecurityDep) -> dict[str, Any]:
    """Every key, revoked ones included; never a token or hash."""
    return {"keys": [k.to_public() for k in security.keys.list()]}


@router.post("/keys", status_code=status.HTTP_201_CREATED, summary="Create an API key")
def create_key(
    body: KeyCreate, security: SecurityDep, store: StoreDep, key: AdminKeyDep
) -> dict[str, Any]:
    """Create a key; the answer holds its token, which is shown this once.

    Raises:
        HTTPException: 422 for a bad scope, limit or filter.
    """
    with _http_errors():
        filters = filters_from_dict(body.filters, "filters") if body.filters else None
        new, token = security.keys.create(
            body.name,
            body.scope,
            filters=filters,
            rate_per_minute=body.rate_per_minute,
            burst=body.burst,
        )
    store.record(key.actor, "key.create", f"key:{new.id}", None, new.to_public())
    return {"key": new.to_public(), "token": token}


@router.delete("/keys/{key_id}", summary="Revoke an API key")
def revoke_key(
    key_id: str, security: SecurityDep, store: StoreDep, key: AdminKeyDep
) -> dict[str, Any]:
    """Revoke a key at once.

    Raises:
        HTTPException: 404 for an unknown key, 409 for the last active admin key (that would
            lock every administrator out).
    """
    target = security.keys.get(key_id)
    if target is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no key {key_id!r}")
    if target.active and target.scope == "admin" and security.keys.count_active("admin") <= 1:
        raise HTTPException(status.HTTP_409_CONFLICT, "cannot revoke the last active admin key")
    revoked = security.keys.revoke(key_id)
    assert revoked is not None
    store.record(key.actor, "key.revoke", f"key:{key_id}", target.to_public(), revoked.to_public())
    return {"key": revoked.to_public()}


# --- experiments ----------------------------------------------------------------------------


@router.get("/experiments", summary="A/B tests")
def list_experiments(store: StoreDep) -> dict[str, Any]:
    """Every experiment of the current configuration."""
    current = store.current()
    return {"version": current.version, "experiments": [e.to_dict() for e in current.experiments]}


@router.put("/experiments/{experiment_id}", summary="Create or replace an experiment")
def put_experiment(
    experiment_id: str,
    body: ExperimentBody,
    store: StoreDep,
    key: AdminKeyDep,
    expected_version: ExpectedVersion = None,
    comment: Comment = "",
) -> dict[str, Any]:
    """Create or replace an experiment (validated by :func:`merchandising.experiments.experiment_from_dict`).

    Raises:
        HTTPException: 422 for a malformed experiment, 409 when the version moved.
    """
    with _http_errors():
        if body.setdefault("id", experiment_id) != experiment_id:
            raise InvalidRequestError("experiment.id", f"must match the path ({experiment_id!r})")
        experiment = experiment_from_dict(body)
        version = store.put_experiment(experiment, key.actor, comment, expected_version)
    return {"version": version.version, "experiment": experiment.to_dict()}


@router.delete("/experiments/{experiment_id}", summary="Delete an experiment")
def delete_experiment(
    experiment_id: str,
    store: StoreDep,
    key: AdminKeyDep,
    expected_version: ExpectedVersion = None,
    comment: Comment = "",
) -> dict[str, Any]:
    """Delete an experiment.

    Raises:
        HTTPException: 404 for an unknown experiment, 409 when the version moved.
    """
    with _http_errors():
        version = store.delete_experiment(experiment_id, key.actor, comment, expected_version)
    return {"version": version.version, "deleted": experiment_id}


def _report(
    store: ConfigStore, experiment_id: str, counts: Mapping[str, VariantCounts]
) -> dict[str, Any]:
    experiment = next((e for e in store.current().experiments if e.id == experiment_id), None)
    if experiment is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no experiment {experiment_id!r}")
    names = [v.name for v in experiment.variants]
    full = {n: counts.get(n, VariantCounts(0, 0, 0)) for n in names}
    unknown = sorted(set(counts) - set(names))
    return {
        "experiment": experiment_id,
        "control": names[0],
        "variants": [asdict(r) for r in report(full, names[0])],
        "ignored_variants": unknown,
    }


@router.get("/experiments/{experiment_id}/report", summary="A/B test report from events")
def experiment_report(experiment_id: str, request: Request, store: StoreDep) -> dict[str, Any]:
    """Click-through and conversion per variant (Wilson 95% intervals, z-tests against the
    control), counted from the event store.

    Raises:
        HTTPException: 404 for an unknown experiment, 503 when no event source is wired.
    """
    source: Callable[[str], Mapping[str, VariantCounts]] | None = getattr(
        request.app.state, "experiment_counts", None
    )
    if source is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "no event source for experiments; POST the counts to this route instead",
        )
    if not any(e.id == experiment_id for e in store.current().experiments):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no experiment {experiment_id!r}")
    return _report(store, experiment_id, source(experiment_id))


Count = Annotated[int, Field(ge=0, le=MAX_REQUEST_INT)]


class CountsBody(BaseModel):
    """Per-variant counts: ``{"counts": {"control": {"units": 1000, "clicked": 300,
    "converted": 40}, ...}}``."""

    counts: dict[str, dict[str, Count]]


@router.post("/experiments/{experiment_id}/report", summary="A/B test report from given counts")
def experiment_report_from_counts(
    experiment_id: str, body: CountsBody, store: StoreDep
) -> dict[str, Any]:
    """The report of :func:`experiment_report` from counts the caller supplies.

    Raises:
        HTTPException: 404 for an unknown experiment, 422 for inconsistent counts.
    """
    counts: dict[str, VariantCounts] = {}
    for name, c in body.counts.items():
        try:
            vc = VariantCounts(int(c["units"]), int(c["clicked"]), int(c["converted"]))
        except KeyError as exc:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                [
                    {
                        "loc": ["body", "counts", name, exc.args[0]],
                        "msg": "missing",
                        "type": "missing",
                    }
                ],
            ) from exc
        if not (0 <= vc.clicked <= vc.units and 0 <= vc.converted <= vc.units):
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                [
                    {
                        "loc": ["body", "counts", name],
                        "msg": "clicked and converted must be between 0 and units",
                        "type": "value_error",
                    }
                ],
            )
        counts[name] = vc
    return _report(store, experiment_id, counts)


# --- preview --------------------------------------------------------------------------------


class PreviewRequest(BaseModel):
    """Body of ``POST /admin/preview``: a query and the proposed change.

    ``rules`` replaces the whole rule set; ``rule`` adds one rule (or replaces the rule with its
    id) to the current set; neither keeps the current rules. ``weights`` replaces the ranking
    weights (keys left out take their defaults); None keeps the serving ones.
    """

    q: str = Field(default="", max_length=1000)
    k: int = Field(default=10, ge=1, le=100)
    channel: str | None = None
    segment: str | None = None
    filters: FiltersJSON | None = None
    rules: list[RuleJSON] | None = None
    rule: RuleJSON | None = None
    weights: WeightsJSON | None = None
    at: datetime | None = Field(default=None, description="Evaluate active windows at this time.")


@dataclass(frozen=True, slots=True)
class Ranking:
    """One side of a preview."""

    ids: list[str]
    hits: list[dict[str, Any]]
    redirect: str | None


def rank_with_rules(
    engine: SearchEngine,
    request: SearchRequest,
    rules: RuleSet,
    *,
    weights: RankingWeights | None,
    segment: str | None,
    now: datetime,
    depth: int,
) -> Ranking:
    """A request's ranking under a rule set and weights: the engine's ranking of the top
    ``depth`` hits, then the rules applied, cut to ``request.k``.

    This is the only place the admin routes drive the engine. The engine ranks with a tuning
    of ``weights`` and no rules (its query synonyms included, which only ``rules`` add), then
    ``rules`` apply, pulling pins from the whole filtered catalogue.

    Args:
        engine: The serving engine.
        request: The search request (page 1).
        rules: The rules to apply.
        weights: Ranking weights to rank with, or None for the engine's own.
        segment: The shopper segment for rule conditions.
        now: Time for the rules' active windows.
        depth: Hits taken from the engine before rules apply (pins may pull from deeper).

    Returns:
        The ranking with each hit's id, title, score and rule effects.
    """
    matched = rules.match(request.text, channel=request.channel, segment=segment, now=now)
    tuning = Tuning(
        weights if weights is not None else engine.tuning.weights, synonyms=matched.synonyms
    )
    result = engine.search(replace(request, k=depth, page=1, explain=False), tuning)
    store = engine.store
    hits = [Hit(store.doc_of[h.product.id], h.score, "engine") for h in result.hits]
    ranked, effects = rules.apply(hits, store, matched, allowed=store.mask(request.filters))
    page = ranked[: request.k]
    out = [
        {
            "id": store.products[h.doc].id,
            "title": store.products[h.doc].title,
            "score": round(h.score, 6),
            "rules": effects.get(h.doc, []),
        }
        for h in page
    ]
    return Ranking([store.products[h.doc].id for h in page], out, matched.redirect)


@router.post("/preview", summary="Ranking before and after a proposed change")
def preview(
    body: PreviewRequest, store: StoreDep, engine: EngineDep, http: Request
) -> dict[str, Any]:
    """Rank a query with the current configuration and with the proposed one, side by side,
    without saving anything.

    Raises:
        HTTPException: 422 for a malformed rule, weight or filter.
    """
    with _http_errors():
        current = store.current()
        proposed_rules = current.rules
        if body.rules is not None:
            proposed_rules = rules_from_list(body.rules, "rules")
        if body.rule is not None:
            one = rule_from_dict(body.rule, "rule")
            proposed_rules = (*(r for r in proposed_rules if r.id != one.id), one)
        weights = RankingWeights.from_dict(body.weights, "weights") if body.weights else None
        filters = filters_from_dict(body.filters, "filters") if body.filters else Filters()
        request = SearchRequest(
            text=body.q, k=body.k, filters=filters, channel=body.channel, as_you_type=False
        )
        now = body.at or datetime.now(UTC)
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        depth = min(engine.config.max_k, max(body.k, 100))
        # Both sides rank with the weights each would serve: exactly what the service ranks
        # with once the change is saved.
        current_weights = serving_weights(
            getattr(http.app.state, "settings", None), current, engine
        )
        before = rank_with_rules(
            engine,
            request,
            RuleSet(current.rules),
            weights=current_weights,
            segment=body.segment,
            now=now,
            depth=depth,
        )
        after = rank_with_rules(
            engine,
            request,
            RuleSet(proposed_rules),
            weights=weights or current_weights,
            segment=body.segment,
            now=now,
            depth=depth,
        )
    return {
        "query": body.q,
        "version": current.version,
        "before": {"hits": before.hits, "redirect": before.redirect},
        "after": {"hits": after.hits, "redirect": after.redirect},
        "rows": compare_rankings(before.ids, after.ids),
    }
