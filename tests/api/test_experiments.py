"""A/B tests end to end: ``GET /search`` assigns shoppers and ranks with their variant's weights,
events carry the variants back, and ``GET /admin/experiments/{id}/report`` counts them, over a
real snapshot and real SQLite stores (events, keys, merchandising)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import Settings
from events.store import SQLiteEventStore
from merchandising.experiments import experiment_from_dict, variant_for, wilson_interval
from tests.api import build_snapshot

#: Variant b weighs colour words heavily: "brown dining" puts the brown leather sofa first.
EXPERIMENT: dict[str, Any] = {
    "variants": [
        {"name": "control", "share": 0.5},
        {"name": "b", "share": 0.5, "weights": {"colour_weight": 10.0, "colour_rerank": 100.0}},
    ]
}
QUERY = "brown dining"


@pytest.fixture(scope="module")
def snapshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_snapshot(tmp_path_factory.mktemp("experiments-api"))


class Service:
    """The service with its stores in ``folder`` (a second Service on it is a restart)."""

    def __init__(self, snapshot_dir: Path, folder: Path, *, events: bool = True) -> None:
        settings = Settings(
            index_dir=snapshot_dir,
            text_embedder="none",
            events_db=str(folder / "events.sqlite3") if events else "none",
            keys_db=folder / "keys.sqlite3",
            merch_db=folder / "merch.sqlite3",
            # Behaviour and personalisation would move hits as events arrive: keep the order
            # to the weights under test.
            behaviour_weight=0,
            personalisation_strength=0,
        )
        self.app = create_app(settings)
        self.client = TestClient(self.app)
        self.client.__enter__()
        keys = self.app.state.security.keys
        if keys.count_active() == 0:
            _, admin = keys.create("ops", "admin", rate_per_minute=100_000, burst=10_000)
            _, search = keys.create("storefront", "search", rate_per_minute=100_000, burst=10_000)
            (folder / "tokens").write_text(f"{admin}\n{search}\n")
        self.admin, self.search = (folder / "tokens").read_text().split()

    def call(self, method: str, path: str, token: str, **kw: Any) -> Any:
        return self.client.request(method, path, headers={"X-API-Key": token}, **kw)

    def put_experiment(self, experiment_id: str, body: dict[str, Any]) -> None:
        response = self.call("PUT", f"/admin/experiments/{experiment_id}", self.admin, json=body)
        assert response.status_code == 200, response.text

    def search_as(self, **params: Any) -> dict[str, Any]:
        response = self.call("GET", "/search", self.search, params={"q": QUERY, **params})
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def post_events(self, events: list[dict[str, Any]]) -> Any:
        return self.call("POST", "/events", self.search, json={"events": events})

    def close(self) -> None:
        self.client.__exit__(None, None, None)


@pytest.fixture
def service(snapshot_dir: Path, tmp_path: Path) -> Iterator[Service]:
    s = Service(snapshot_dir, tmp_path)
    yield s
    s.close()


def ids(body: dict[str, Any]) -> list[str]:
    return [hit["id"] for hit in body["hits"]]


def shoppers_in(variant: str, count: int, prefix: str = "shopper") -> list[str]:
    """Unit ids the EXPERIMENT (as "e1") puts in ``variant``."""
    experiment = experiment_from_dict({"id": "e1", **EXPERIMENT})
    found: list[str] = []
    i = 0
    while len(found) < count:
        unit = f"{prefix}-{i}"
        v = variant_for(experiment, unit)
        if v is not None and v.name == variant:
            found.append(unit)
        i += 1
    return found


class TestTrafficSplit:
    def test_same_shopper_always_gets_the_same_variant(self, service: Service) -> None:
        service.put_experiment("e1", EXPERIMENT)
        for user in ("alice", "bob", "carol"):
            seen = {service.search_as(user_id=user)["variants"]["e1"] for _ in range(3)}
            # The user id decides, whichever session the shopper is in.
            seen |= {
                service.search_as(user_id=user, session_id=f"s-{i}")["variants"]["e1"]
                for i in range(3)
            }
            assert len(seen) == 1

    def test_anonymous_shoppers_are_split_by_session(self, service: Service) -> None:
        service.put_experiment("e1", EXPERIMENT)
        (b,) = shoppers_in("b", 1)
        (control,) = shoppers_in("control", 1)
        assert service.search_as(session_id=b)["variants"] == {"e1": "b"}
        assert service.search_as(session_id=control)["variants"] == {"e1": "control"}

    def test_traffic_splits_near_the_shares(self, service: Service) -> None:
        service.put_experiment("e1", EXPERIMENT)
        n = 400
        counts = Counter(service.search_as(session_id=f"s{i}")["variants"]["e1"] for i in range(n))
        assert set(counts) == {"control", "b"}
        # Binomial(400, 0.5): sd 10; 4 sd either side.
        assert abs(counts["b"] - n / 2) < 40

    def test_no_id_no_variant_and_the_serving_ranking(self, service: Service) -> None:
        service.put_experiment("e1", EXPERIMENT)
        body = service.search_as()
        assert body["variants"] == {}
        (control,) = shoppers_in("control", 1)
        assert ids(body) == ids(service.search_as(session_id=control))

    def test_no_experiment_or_disabled_means_no_variant(self, service: Service) -> None:
        assert service.search_as(user_id="alice")["variants"] == {}
        service.put_experiment("e1", {**EXPERIMENT, "enabled": False})
        assert service.search_as(user_id="alice")["variants"] == {}

    def test_session_unit_ignores_the_user_id(self, service: Service) -> None:
        service.put_experiment("e1", {**EXPERIMENT, "unit": "session"})
        (b,) = shoppers_in("b", 1)
        (control,) = shoppers_in("control", 1)
        assert service.search_as(user_id=control, session_id=b)["variants"] == {"e1": "b"}


class TestVariantWeights:
    def test_the_variant_weights_change_the_ranking(self, service: Service) -> None:
        serving = ids(service.search_as())
        assert serving[0] == "CHAIR-1"
        service.put_experiment("e1", EXPERIMENT)
        (b,) = shoppers_in("b", 1)
        (control,) = shoppers_in("control", 1)
        assert ids(service.search_as(session_id=control)) == serving
        ranked_b = ids(service.search_as(session_id=b))
        assert ranked_b[0] == "SOFA-2"  # the brown one
        assert sorted(ranked_b) == sorted(serving)

    def test_explain_names_the_arm(self, service: Service) -> None:
        service.put_experiment("e1", EXPERIMENT)
        (b,) = shoppers_in("b", 1)
        body = service.search_as(session_id=b, explain=True)
        for hit in body["hits"]:
            first = hit["explanation"]["adjustments"][0]
            assert first["stage"] == "experiment"
            assert first["description"] == "e1: variant b, ranked with its weights"
        (control,) = shoppers_in("control", 1)
        body = service.search_as(session_id=control, explain=True)
        first = body["hits"][0]["explanation"]["adjustments"][0]
        assert first["description"] == "e1: variant control, serving weights"

    def test_arms_are_tuning_values_not_engines(self, service: Service) -> None:
        service.put_experiment("e1", EXPERIMENT)
        (b1,) = shoppers_in("b", 1)
        (a1,) = shoppers_in("control", 1)
        engine = service.app.state.engine
        in_b = ids(service.search_as(session_id=b1))
        in_a = ids(service.search_as(session_id=a1))
        assert in_b != in_a  # the arms rank differently...
        assert service.app.state.engine is engine  # ...with one engine for both
        assert not hasattr(service.app.state, "variant_engines")
        # A new configuration version is served at once, with the same engine.
        service.put_experiment("e1", {**EXPERIMENT, "enabled": False})
        assert service.search_as(session_id=b1)["variants"] == {}
        assert ids(service.search_as(session_id=b1)) == in_a
        assert service.app.state.engine is engine

    def test_rules_still_apply_to_a_variant(self, service: Service) -> None:
        rule = {
            "id": "pin",
            "match": "exact",
            "query": QUERY,
            "actions": [{"type": "pin", "product_id": "CHAIR-2", "position": 1}],
        }
        response = service.call("PUT", "/admin/rules/pin", service.admin, json=rule)
        assert response.status_code == 200, response.text
        service.put_experiment("e1", EXPERIMENT)
        (b,) = shoppers_in("b", 1)
        ranked = ids(service.search_as(session_id=b))
        assert ranked[0] == "CHAIR-2"
        assert ranked[1] == "SOFA-2"  # the variant's order below the pin

    def test_concurrent_experiments_first_weighted_arm_decides(self, service: Service) -> None:
        service.put_experiment("e1", EXPERIMENT)
        other = {
            "variants": [
                {"name": "control", "share": 0.5},
                {"name": "z", "share": 0.5, "weights": {"colour_weight": 0.0}},
            ]
        }
        service.put_experiment("e2", other)
        e2 = experiment_from_dict({"id": "e2", **other})
        b_and_z = next(
            s
            for s in shoppers_in("b", 50)
            if variant_for(e2, s).name == "z"  # type: ignore[union-attr]
        )
        body = service.search_as(session_id=b_and_z)
        # e1's weights are served; e2's arm z was not, so the shopper is not in e2's report.
        assert body["variants"] == {"e1": "b"}
        assert ids(body)[0] == "SOFA-2"
        both_control = next(
            s
            for s in shoppers_in("control", 50)
            if variant_for(e2, s).name == "control"  # type: ignore[union-attr]
        )
        assert service.search_as(session_id=both_control)["variants"] == {
            "e1": "control",
            "e2": "control",
        }


class TestEventsCarryVariants:
    def test_stored_and_kept_across_a_restart(
        self, snapshot_dir: Path, tmp_path: Path, service: Service
    ) -> None:
        service.put_experiment("e1", EXPERIMENT)
        variants = service.search_as(session_id="s1")["variants"]
        posted = service.post_events(
            [
                {"type": "search", "session_id": "s1", "query": QUERY, "variants": variants},
                {
                    "type": "click",
                    "session_id": "s1",
                    "product_id": "CHAIR-1",
                    "variants": variants,
                },
            ]
        )
        assert posted.status_code == 200, posted.text
        assert posted.json()["accepted"] == 2
        service.close()
        # The service's own record of the search answer (query_id) carries them as well.
        again = Service(snapshot_dir, tmp_path)
        try:
            store = again.app.state.event_store
            assert [e.variants for e in store.scan()] == [variants, variants, variants]
        finally:
            again.close()
        reopened = SQLiteEventStore(tmp_path / "events.sqlite3")
        assert [e.variants for e in reopened.scan() if e.query_id is None] == [variants, variants]
        reopened.close()

    @pytest.mark.parametrize(
        ("variants", "field"),
        [
            ("b", "variants"),
            (["e1", "b"], "variants"),
            ({"e1": 5}, "variants.e1"),
            ({"e1": ""}, "variants.e1"),
            ({"e1": "b c"}, "variants.e1"),
            ({"bad id": "b"}, "variants"),
            ({f"e{i}": "b" for i in range(21)}, "variants"),
        ],
    )
    def test_bad_variants_are_422_naming_the_field(
        self, service: Service, variants: Any, field: str
    ) -> None:
        response = service.post_events(
            [{"type": "click", "session_id": "s1", "product_id": "CHAIR-1", "variants": variants}]
        )
        assert response.status_code == 422
        errors = response.json()["events"][0]["errors"]
        assert ["body", "events", 0, field] in [e["loc"] for e in errors]


class TestReport:
    def test_counts_and_intervals_from_searches_clicks_and_purchases(
        self, service: Service
    ) -> None:
        service.put_experiment("e1", EXPERIMENT)
        events: list[dict[str, Any]] = []
        expected: dict[str, list[set[str]]] = {
            "control": [set(), set(), set()],
            "b": [set(), set(), set()],
        }
        for i in range(40):
            session = f"s{i}"
            user = f"u{i}" if i % 4 == 0 else None  # some shoppers signed in
            params = {"session_id": session, **({"user_id": user} if user else {})}
            variants = service.search_as(**params)["variants"]
            arm = variants["e1"]
            unit = user or session
            shopper = {"session_id": session, "variants": variants}
            if user:
                shopper["user_id"] = user
            events.append({"type": "search", "query": QUERY, **shopper})
            expected[arm][0].add(unit)
            if i % 3 == 0 or (arm == "b" and i % 2 == 0):
                for _ in range(2):  # a second click of the same unit counts once
                    events.append({"type": "click", "product_id": "SOFA-2", **shopper})
                expected[arm][1].add(unit)
            if i % 5 == 0:
                events.append({"type": "add_to_cart", "product_id": "SOFA-2", **shopper})
                events.append({"type": "purchase", "product_id": "SOFA-2", **shopper})
                expected[arm][2].add(unit)
        # Events without the experiment's variant do not count.
        events.append({"type": "click", "session_id": "s0", "product_id": "SOFA-2"})
        events.append(
            {"type": "search", "session_id": "x", "query": "q", "variants": {"other": "b"}}
        )
        posted = service.post_events(events)
        assert posted.status_code == 200 and posted.json()["rejected"] == 0, posted.text

        response = service.call("GET", "/admin/experiments/e1/report", service.admin)
        assert response.status_code == 200, response.text
        report = response.json()
        assert report["control"] == "control"
        assert [v["name"] for v in report["variants"]] == ["control", "b"]
        for v in report["variants"]:
            units, clicked, converted = (len(s) for s in expected[v["name"]])
            assert v["counts"] == {"units": units, "clicked": clicked, "converted": converted}
            assert units > 0
            assert v["ctr"]["rate"] == pytest.approx(clicked / units)
            low, high = wilson_interval(clicked, units)
            assert (v["ctr"]["low"], v["ctr"]["high"]) == pytest.approx((low, high))
            low, high = wilson_interval(converted, units)
            assert (v["conversion"]["low"], v["conversion"]["high"]) == pytest.approx((low, high))
        b = report["variants"][1]
        assert b["ctr"]["z"] is not None and 0 <= b["ctr"]["p_value"] <= 1

    def test_a_search_key_cannot_reach_the_report(self, service: Service) -> None:
        service.put_experiment("e1", EXPERIMENT)
        for method in ("GET", "POST"):
            response = service.call(method, "/admin/experiments/e1/report", service.search)
            assert response.status_code in (401, 403)
        assert service.client.get("/admin/experiments/e1/report").status_code == 401

    def test_unknown_experiment_is_404(self, service: Service) -> None:
        response = service.call("GET", "/admin/experiments/nope/report", service.admin)
        assert response.status_code == 404

    def test_events_off_means_no_report_from_events(
        self, snapshot_dir: Path, tmp_path: Path
    ) -> None:
        s = Service(snapshot_dir, tmp_path, events=False)
        try:
            s.put_experiment("e1", EXPERIMENT)
            assert s.call("GET", "/admin/experiments/e1/report", s.admin).status_code == 503
        finally:
            s.close()
