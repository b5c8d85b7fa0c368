"""Versioned merchandising configuration (rules, ranking weights, experiments) with an audit log.

Every change writes a new immutable *version*: the whole configuration as JSON, numbered 1, 2,
3... (version 0 is the empty configuration of a fresh store). Rolling back to version ``n``
writes a new version equal to ``n``, so history is never rewritten and a rollback can itself be
rolled back. Each change also appends an audit entry: who, when, what (``rule.create``,
``rule.update``, ``rule.delete``, ``rules.replace``, ``weights.update``, ``experiment.put``,
``experiment.delete``, ``rollback``), and the JSON before and after.

Storage is SQLite (stdlib ``sqlite3``) in WAL mode. Writes run in ``BEGIN IMMEDIATE``
transactions, so two processes sharing the file (replicas) cannot both write the same version;
``expected_version`` lets an editor refuse to overwrite a change it has not seen.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from merchandising.experiments import Experiment, experiment_from_dict
from search.errors import ConfigConflictError, ConfigNotFoundError
from search.private_files import prepare_private_db
from search.rules import Rule, RuleSet, rule_from_dict, rule_to_dict
from search.weights import RankingWeights

T = TypeVar("T")

AUDIT_ACTIONS = (
    "rule.create",
    "rule.update",
    "rule.delete",
    "rules.replace",
    "weights.update",
    "experiment.put",
    "experiment.delete",
    "rollback",
    "key.create",
    "key.revoke",
)


@dataclass(frozen=True, slots=True)
class ConfigVersion:
    """One saved configuration.

    Attributes:
        version: Version number (0: the empty configuration).
        rules: Merchandising rules.
        weights: Ranking weights.
        experiments: A/B tests.
        created_at: When it was saved (UTC).
        actor: Who saved it.
        comment: Why, as the actor wrote it.
    """

    version: int
    rules: tuple[Rule, ...] = ()
    weights: RankingWeights = field(default_factory=RankingWeights)
    experiments: tuple[Experiment, ...] = ()
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    actor: str = "system"
    comment: str = ""

    def rule_set(self) -> RuleSet:
        """The rules compiled for matching."""
        return RuleSet(self.rules)

    def content(self) -> dict[str, Any]:
        """The configuration as JSON (without version metadata)."""
        return {
            "rules": [rule_to_dict(r) for r in self.rules],
            "weights": self.weights.to_dict(),
            "experiments": [e.to_dict() for e in self.experiments],
        }


@dataclass(frozen=True, slots=True)
class VersionInfo:
    """A version without its content, for listings."""

    version: int
    created_at: datetime
    actor: str
    comment: str
    rules: int


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One change.

    Attributes:
        id: Entry number.
        at: When (UTC).
        actor: Who (a key's name or a user).
        action: One of :data:`AUDIT_ACTIONS`.
        target: What changed (rule id, experiment id, ``"weights"``, ``"rules"``, a version).
        before: JSON before the change (None when created).
        after: JSON after the change (None when deleted).
        version: The version the change produced.
    """

    id: int
    at: datetime
    actor: str
    action: str
    target: str
    before: Any
    after: Any
    version: int


def compare_rankings(before: Sequence[str], after: Sequence[str]) -> list[dict[str, Any]]:
    """Two rankings side by side, row per position, with each product's move.

    Args:
        before: Product ids in the current order.
        after: Product ids in the proposed order.

    Returns:
        One row per position (1-based) up to the longer list: ``position``, ``before`` (id or
        None), ``after`` (id or None), ``before_position`` (where the ``after`` product was
        before, or None when new), ``after_position`` (where the ``before`` product went, or
        None when it dropped out), ``move`` (positions the ``after`` product rose; negative for
        a fall, None when new) and ``change`` (``"same"``, ``"up"``, ``"down"``, ``"new"``).
    """
    pos_before = {pid: i for i, pid in enumerate(before, start=1)}
    pos_after = {pid: i for i, pid in enumerate(after, start=1)}
    rows: list[dict[str, Any]] = []
    for position in range(1, max(len(before), len(after)) + 1):
        b = before[position - 1] if position <= len(before) else None
        a = after[position - 1] if position <= len(after) else None
        was = pos_before.get(a) if a is not None else None
        move = None if was is None else was - position
        if a is None:
            change = None
        elif was is None:
            change = "new"
        else:
            change = "same" if move == 0 else ("up" if move and move > 0 else "down")
        rows.append(
            {
                "position": position,
                "before": b,
                "after": a,
                "before_position": was,
                "after_position": pos_after.get(b) if b is not None else None,
                "move": move,
                "change": change,
            }
        )
    return rows


_SCHEMA = """
CREATE TABLE IF NOT EXISTS config_versions (
    version INTEGER PRIMARY KEY,
    created_at TEXT NOT NULL,
    actor TEXT NOT NULL,
    comment TEXT NOT NULL,
    content TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS config_audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    before TEXT,
    after TEXT,
    version INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS config_audit_target ON config_audit (target);
"""


def _upsert(items: tuple[T, ...], item: T, same: Callable[[T], bool]) -> tuple[T, ...]:
    """Replace the item ``same`` picks in place, or append ``item``."""
    if any(same(i) for i in items):
        return tuple(item if same(i) else i for i in items)
    return (*items, item)


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, ensure_ascii=False)


def _parse(version: int, created_at: str, actor: str, comment: str, content: str) -> ConfigVersion:
    data = json.loads(content)
    return ConfigVersion(
        version=version,
        rules=tuple(rule_from_dict(r, check_pattern=False) for r in data.get("rules", ())),
        weights=RankingWeights.from_dict(data.get("weights", {})),
        experiments=tuple(experiment_from_dict(e) for e in data.get("experiments", ())),
        created_at=datetime.fromisoformat(created_at),
        actor=actor,
        comment=comment,
    )


class ConfigStore:
    """Versions of the merchandising configuration in one SQLite file.

    Args:
        path: Database file (created with its folder), or ``":memory:"`` for tests.
        clock: Current time, UTC (tests pass a fixed clock).

    Thread-safe: one connection guarded by a lock (changes are rare and small).
    """

    def __init__(
        self, path: Path | str, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        prepare_private_db(path)  # the folder too; mode 0600 (rules and audit log are private)
        self._clock = clock
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)
        self._cache: ConfigVersion | None = None

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    # --- reading ----------------------------------------------------------------------------

    def current(self) -> ConfigVersion:
        """The latest version (version 0, empty, in a fresh store)."""
        with self._lock:
            return self._current()

    def _current(self) -> ConfigVersion:
        row = self._db.execute(
            "SELECT version, created_at, actor, comment, content FROM config_versions "
            "ORDER BY version DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return ConfigVersion(0, created_at=datetime.fromtimestamp(0, UTC))
        if self._cache is not None and self._cache.version == row[0]:
            return self._cache
        self._cache = _parse(*row)
        return self._cache

    def version(self, number: int) -> ConfigVersion:
        """One saved version.

        Raises:
            ConfigNotFoundError: no such version.
        """
        if number == 0:
            return ConfigVersion(0, created_at=datetime.fromtimestamp(0, UTC))
        with self._lock:
            row = self._db.execute(
                "SELECT version, created_at, actor, comment, content FROM config_versions "
                "WHERE version = ?",
                (number,),
            ).fetchone()
        if row is None:
            raise ConfigNotFoundError("version", number)
        return _parse(*row)

    def versions(self, limit: int = 50, offset: int = 0) -> list[VersionInfo]:
        """Saved versions, newest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT version, created_at, actor, comment, content FROM config_versions "
                "ORDER BY version DESC LIMIT ? OFFSET ?",
                (limit, offset),
            ).fetchall()
        return [
            VersionInfo(v, datetime.fromisoformat(at), actor, comment, len(json.loads(c)["rules"]))
            for v, at, actor, comment, c in rows
        ]

    def audit(
        self, limit: int = 100, offset: int = 0, target: str | None = None
    ) -> list[AuditEntry]:
        """Audit entries, newest first.

        Args:
            limit: Entries to return.
            offset: Entries to skip.
            target: Only changes of this rule, experiment, ``"weights"``...
        """
        sql = "SELECT id, at, actor, action, target, before, after, version FROM config_audit"
        params: list[Any] = []
        if target is not None:
            sql += " WHERE target = ?"
            params.append(target)
        sql += " ORDER BY id DESC LIMIT ? OFFSET ?"
        params += [limit, offset]
        with self._lock:
            rows = self._db.execute(sql, params).fetchall()
        return [
            AuditEntry(
                i,
                datetime.fromisoformat(at),
                actor,
                action,
                tgt,
                json.loads(b) if b is not None else None,
                json.loads(a) if a is not None else None,
                v,
            )
            for i, at, actor, action, tgt, b, a, v in rows
        ]

    # --- writing ----------------------------------------------------------------------------

    def _write(
        self,
        actor: str,
        comment: str,
        expected_version: int | None,
        change: Callable[[ConfigVersion], tuple[ConfigVersion, list[tuple[str, str, Any, Any]]]],
    ) -> ConfigVersion:
        """Apply ``change`` to the current version in one transaction: a new version row and
        its audit entries ``(action, target, before, after)``."""
        if not actor.strip():
            raise ValueError("actor must name who makes the change")
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._cache = None  # another process may have written since
                current = self._current()
                if expected_version is not None and expected_version != current.version:
                    raise ConfigConflictError(expected_version, current.version)
                now = self._clock()
                new, entries = change(current)
                new = replace(
                    new, version=current.version + 1, created_at=now, actor=actor, comment=comment
                )
                self._db.execute(
                    "INSERT INTO config_versions VALUES (?, ?, ?, ?, ?)",
                    (new.version, now.isoformat(), actor, comment, _dumps(new.content())),
                )
                self._db.executemany(
                    "INSERT INTO config_audit (at, actor, action, target, before, after, version) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [
                        (now.isoformat(), actor, a, t, _dumps(b), _dumps(af), new.version)
                        for a, t, b, af in entries
                    ],
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._cache = new
            return new

    def record(self, actor: str, action: str, target: str, before: Any, after: Any) -> AuditEntry:
        """Append an audit entry for a change kept outside the versioned configuration (API
        keys); it carries the current version number.

        Raises:
            ValueError: an unknown action or an empty actor.
        """
        if action not in AUDIT_ACTIONS:
            raise ValueError(f"unknown audit action {action!r}; valid: {', '.join(AUDIT_ACTIONS)}")
        if not actor.strip():
            raise ValueError("actor must name who makes the change")
        with self._lock:
            now = self._clock()
            version = self._current().version
            cur = self._db.execute(
                "INSERT INTO config_audit (at, actor, action, target, before, after, version) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (now.isoformat(), actor, action, target, _dumps(before), _dumps(after), version),
            )
            return AuditEntry(
                int(cur.lastrowid or 0), now, actor, action, target, before, after, version
            )

    def put_rule(
        self, rule: Rule, actor: str, comment: str = "", expected_version: int | None = None
    ) -> ConfigVersion:
        """Create a rule, or replace the rule with its id.

        Args:
            rule: The rule.
            actor: Who makes the change.
            comment: Why.
            expected_version: Refuse unless the current version is this one.

        Returns:
            The new version.

        Raises:
            ConfigConflictError: the current version is not ``expected_version``.
        """

        def change(cur: ConfigVersion) -> tuple[ConfigVersion, list[tuple[str, str, Any, Any]]]:
            old = next((r for r in cur.rules if r.id == rule.id), None)
            rules = _upsert(cur.rules, rule, lambda r: r.id == rule.id)
            action = "rule.update" if old is not None else "rule.create"
            before = rule_to_dict(old) if old is not None else None
            return replace(cur, rules=rules), [(action, rule.id, before, rule_to_dict(rule))]

        return self._write(actor, comment, expected_version, change)

    def delete_rule(
        self, rule_id: str, actor: str, comment: str = "", expected_version: int | None = None
    ) -> ConfigVersion:
        """Delete a rule.

        Raises:
            ConfigNotFoundError: no rule with that id.
            ConfigConflictError: the current version is not ``expected_version``.
        """

        def change(cur: ConfigVersion) -> tuple[ConfigVersion, list[tuple[str, str, Any, Any]]]:
            old = next((r for r in cur.rules if r.id == rule_id), None)
            if old is None:
                raise ConfigNotFoundError("rule", rule_id)
            rules = tuple(r for r in cur.rules if r.id != rule_id)
            return replace(cur, rules=rules), [("rule.delete", rule_id, rule_to_dict(old), None)]

        return self._write(actor, comment, expected_version, change)

    def replace_rules(
        self,
        rules: Sequence[Rule],
        actor: str,
        comment: str = "",
        expected_version: int | None = None,
    ) -> ConfigVersion:
        """Replace the whole rule set (an import).

        Raises:
            ConfigConflictError: the current version is not ``expected_version``.
        """
        RuleSet(rules)  # checks unique ids and patterns

        def change(cur: ConfigVersion) -> tuple[ConfigVersion, list[tuple[str, str, Any, Any]]]:
            before = [rule_to_dict(r) for r in cur.rules]
            after = [rule_to_dict(r) for r in rules]
            return replace(cur, rules=tuple(rules)), [("rules.replace", "rules", before, after)]

        return self._write(actor, comment, expected_version, change)

    def set_weights(
        self,
        weights: RankingWeights,
        actor: str,
        comment: str = "",
        expected_version: int | None = None,
    ) -> ConfigVersion:
        """Change the ranking weights.

        Raises:
            ConfigConflictError: the current version is not ``expected_version``.
        """

        def change(cur: ConfigVersion) -> tuple[ConfigVersion, list[tuple[str, str, Any, Any]]]:
            entry = ("weights.update", "weights", cur.weights.to_dict(), weights.to_dict())
            return replace(cur, weights=weights), [entry]

        return self._write(actor, comment, expected_version, change)

    def put_experiment(
        self,
        experiment: Experiment,
        actor: str,
        comment: str = "",
        expected_version: int | None = None,
    ) -> ConfigVersion:
        """Create or replace an experiment.

        Raises:
            ConfigConflictError: the current version is not ``expected_version``.
        """

        def change(cur: ConfigVersion) -> tuple[ConfigVersion, list[tuple[str, str, Any, Any]]]:
            old = next((e for e in cur.experiments if e.id == experiment.id), None)
            exps = _upsert(cur.experiments, experiment, lambda e: e.id == experiment.id)
            before = old.to_dict() if old is not None else None
            entry = ("experiment.put", experiment.id, before, experiment.to_dict())
            return replace(cur, experiments=exps), [entry]

        return self._write(actor, comment, expected_version, change)

    def delete_experiment(
        self, experiment_id: str, actor: str, comment: str = "", expected_version: int | None = None
    ) -> ConfigVersion:
        """Delete an experiment.

        Raises:
            ConfigNotFoundError: no experiment with that id.
            ConfigConflictError: the current version is not ``expected_version``.
        """

        def change(cur: ConfigVersion) -> tuple[ConfigVersion, list[tuple[str, str, Any, Any]]]:
            old = next((e for e in cur.experiments if e.id == experiment_id), None)
            if old is None:
                raise ConfigNotFoundError("experiment", experiment_id)
            exps = tuple(e for e in cur.experiments if e.id != experiment_id)
            entry = ("experiment.delete", experiment_id, old.to_dict(), None)
            return replace(cur, experiments=exps), [entry]

        return self._write(actor, comment, expected_version, change)

    def rollback(self, version: int, actor: str, comment: str = "") -> ConfigVersion:
        """Make an earlier version current again (as a new version; history is kept).

        Raises:
            ConfigNotFoundError: no such version.
        """
        target = self.version(version)

        def change(cur: ConfigVersion) -> tuple[ConfigVersion, list[tuple[str, str, Any, Any]]]:
            entry = ("rollback", f"version:{version}", cur.content(), target.content())
            return replace(target), [entry]

        return self._write(actor, comment or f"rollback to version {version}", None, change)
