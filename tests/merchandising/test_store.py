"""Versioned rules and weights: versions, audit log, rollback, conflicts and side-by-side rows."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from merchandising.experiments import Experiment, Variant
from merchandising.store import ConfigStore, compare_rankings
from search.errors import ConfigConflictError, ConfigNotFoundError
from search.rules import Pin, Redirect, Rule
from search.weights import RankingWeights

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def pin_rule(rule_id: str, product: str = "A", position: int = 1) -> Rule:
    return Rule(id=rule_id, match="exact", query="sofa", actions=(Pin(product, position),))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ConfigStore]:
    s = ConfigStore(tmp_path / "config" / "merch.sqlite", clock=lambda: T0)
    yield s
    s.close()


class TestConfigStore:
    def test_fresh_store_is_version_zero(self, store: ConfigStore) -> None:
        current = store.current()
        assert current.version == 0
        assert current.rules == ()
        assert current.weights == RankingWeights()
        assert store.versions() == []
        assert store.audit() == []

    def test_every_change_is_a_version_with_an_audit_entry(self, store: ConfigStore) -> None:
        store.put_rule(pin_rule("r1"), "alice", "launch")
        store.put_rule(pin_rule("r1", position=2), "bob")
        store.set_weights(RankingWeights(colour_rerank=1.0), "carol")
        v4 = store.delete_rule("r1", "dave")

        assert v4.version == 4
        assert store.current().rules == ()
        assert [v.version for v in store.versions()] == [4, 3, 2, 1]
        entries = store.audit()
        assert [(e.action, e.actor, e.target, e.version) for e in entries] == [
            ("rule.delete", "dave", "r1", 4),
            ("weights.update", "carol", "weights", 3),
            ("rule.update", "bob", "r1", 2),
            ("rule.create", "alice", "r1", 1),
        ]
        update = entries[2]
        assert update.before["actions"] == [{"type": "pin", "product_id": "A", "position": 1}]
        assert update.after["actions"] == [{"type": "pin", "product_id": "A", "position": 2}]
        assert entries[3].before is None
        assert entries[0].after is None
        assert entries[1].after["colour_rerank"] == 1.0
        assert entries[0].at == T0
        assert store.audit(target="weights")[0].action == "weights.update"

    def test_rollback_restores_an_earlier_version_as_a_new_one(self, store: ConfigStore) -> None:
        store.put_rule(pin_rule("r1"), "alice")
        store.set_weights(RankingWeights(retrievers={"lexical": 1.0, "semantic": 0.9}), "alice")
        store.put_rule(pin_rule("r2"), "alice")

        restored = store.rollback(1, "bob")

        assert restored.version == 4
        assert [r.id for r in restored.rules] == ["r1"]
        assert restored.weights == RankingWeights()
        assert store.current() == restored
        entry = store.audit(limit=1)[0]
        assert (entry.action, entry.target) == ("rollback", "version:1")
        assert [r["id"] for r in entry.before["rules"]] == ["r1", "r2"]
        # A rollback can itself be undone.
        assert [r.id for r in store.rollback(3, "bob").rules] == ["r1", "r2"]

    def test_rollback_to_zero_empties(self, store: ConfigStore) -> None:
        store.put_rule(pin_rule("r1"), "alice")
        assert store.rollback(0, "bob").rules == ()

    def test_unknown_version_and_rule(self, store: ConfigStore) -> None:
        with pytest.raises(ConfigNotFoundError):
            store.rollback(7, "bob")
        with pytest.raises(ConfigNotFoundError):
            store.delete_rule("nope", "bob")
        assert store.current().version == 0

    def test_expected_version_refuses_stale_edits(self, store: ConfigStore) -> None:
        store.put_rule(pin_rule("r1"), "alice", expected_version=0)
        with pytest.raises(ConfigConflictError) as err:
            store.put_rule(pin_rule("r2"), "bob", expected_version=0)
        assert err.value.current == 1
        assert [r.id for r in store.current().rules] == ["r1"]

    def test_survives_reopen_and_keeps_rule_order(self, tmp_path: Path) -> None:
        path = tmp_path / "m.sqlite"
        first = ConfigStore(path)
        first.put_rule(pin_rule("b"), "alice")
        first.put_rule(pin_rule("a"), "alice")
        first.put_rule(pin_rule("b", position=3), "alice")
        first.put_experiment(
            Experiment("exp", (Variant("control", 0.5), Variant("b", 0.5, RankingWeights()))),
            "alice",
        )
        first.close()
        second = ConfigStore(path)
        current = second.current()
        assert [r.id for r in current.rules] == ["b", "a"]
        assert current.rules[0].actions == (Pin("A", 3),)
        assert current.experiments[0].variants[1].weights == RankingWeights()
        assert second.version(2).rules == (pin_rule("b"), pin_rule("a"))
        second.close()

    def test_concurrent_writers_get_distinct_versions(self, tmp_path: Path) -> None:
        path = tmp_path / "m.sqlite"
        stores = [ConfigStore(path) for _ in range(4)]

        def write(i: int) -> None:
            for j in range(5):
                stores[i].put_rule(
                    Rule(id=f"r{i}-{j}", match="global", actions=(Redirect("/x"),)), f"w{i}"
                )

        threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        final = stores[0].current()
        assert final.version == 20
        assert len(final.rules) == 20
        assert len(stores[0].audit(limit=100)) == 20
        for s in stores:
            s.close()

    def test_record_audits_changes_outside_versions(self, store: ConfigStore) -> None:
        entry = store.record("alice", "key.create", "key:abc", None, {"scope": "search"})
        assert entry.version == 0
        assert store.audit()[0].after == {"scope": "search"}
        with pytest.raises(ValueError, match="unknown audit action"):
            store.record("alice", "key.steal", "key:abc", None, None)

    def test_actor_required(self, store: ConfigStore) -> None:
        with pytest.raises(ValueError, match="actor"):
            store.put_rule(pin_rule("r1"), " ")


class TestCompareRankings:
    def test_moves_new_and_dropped(self) -> None:
        rows = compare_rankings(["A", "B", "C"], ["C", "A", "D"])
        assert rows == [
            {"position": 1, "before": "A", "after": "C", "before_position": 3,
             "after_position": 2, "move": 2, "change": "up"},
            {"position": 2, "before": "B", "after": "A", "before_position": 1,
             "after_position": None, "move": -1, "change": "down"},
            {"position": 3, "before": "C", "after": "D", "before_position": None,
             "after_position": 1, "move": None, "change": "new"},
        ]  # fmt: skip

    @pytest.mark.parametrize(
        ("before", "after", "changes"),
        [
            ([], [], []),
            (["A"], ["A"], ["same"]),
            (["A", "B"], ["A"], ["same", None]),
            ([], ["A"], ["new"]),
        ],
    )
    def test_lengths(self, before: list[str], after: list[str], changes: list[str | None]) -> None:
        assert [r["change"] for r in compare_rankings(before, after)] == changes
