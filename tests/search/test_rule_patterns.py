"""Merchandising rules an attacker (or a careless merchandiser) could abuse: ``pattern`` rules
with catastrophic backtracking, and redirects to another site.

``(x+x+)+y`` against 27 ``x`` took 14 s in Python's ``re`` and froze ``/health``; patterns now
run on RE2 (linear time) and a pattern RE2 cannot compile is refused on save with 422. Redirect
targets are absolute http(s) URLs with a host or paths starting with a single ``/``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import Settings
from merchandising.store import ConfigStore
from search.errors import InvalidRequestError
from search.rules import (
    Boost,
    Redirect,
    Rule,
    RuleSet,
    Selector,
    action_from_dict,
    redirect_url_problem,
    rule_from_dict,
)
from tests.api import build_snapshot

EVIL = "(x+x+)+y"
"""Exponential in a backtracking engine: every split of the x's is tried before failing."""


def pattern_rule(pattern: str, rule_id: str = "p") -> dict[str, Any]:
    return {
        "id": rule_id,
        "match": "pattern",
        "query": pattern,
        "actions": [{"type": "boost", "product_ids": ["SOFA-1"], "weight": 0.5}],
    }


class TestPatternMatching:
    @pytest.mark.parametrize("length", [27, 40, 5_000])
    def test_catastrophic_pattern_matches_in_milliseconds(self, length: int) -> None:
        rules = RuleSet([rule_from_dict(pattern_rule(EVIL))])
        started = time.perf_counter()
        matched = rules.match("x" * length)
        took = time.perf_counter() - started
        assert not matched
        # Backtracking takes 14 s at 27 characters and never ends at 40; RE2 takes under a
        # millisecond: a bound far above that keeps a busy CI machine from failing it.
        assert took < 1.0, f"{took:.3f} s for {length} characters"
        assert rules.match("x" * length + "y")  # it still matches what it should

    def test_patterns_are_case_insensitive_on_the_folded_query(self) -> None:
        rules = RuleSet([rule_from_dict(pattern_rule(r"^(grey|gray) (sofa|couch)s?$"))])
        assert rules.match("Grey Sofas!")
        assert rules.match("gray couch")
        assert not rules.match("grey sofa bed")

    @pytest.mark.parametrize(
        ("pattern", "reason"),
        [
            (r"(sofa) \1", "RE2"),  # backreference
            (r"sofa(?= bed)", "RE2"),  # look-ahead
            (r"(?<!bed )sofa", "RE2"),  # look-behind
            ("(unclosed", "RE2"),
            ("x" * 1_001, "at most 1000"),
            ("(a{1000}){1000}", "RE2"),  # more than RE2's memory bound
        ],
    )
    def test_unsupported_patterns_are_refused_naming_the_field(
        self, pattern: str, reason: str
    ) -> None:
        with pytest.raises(InvalidRequestError) as info:
            rule_from_dict(pattern_rule(pattern), "rules[2]")
        assert info.value.field == "rules[2].query"
        assert reason in info.value.message


class TestPatternsSavedBeforeRE2:
    def test_a_saved_look_ahead_is_left_out_loudly_and_the_rest_serve(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        store = ConfigStore(tmp_path / "merch.sqlite3")
        # Saved by the old service, which checked patterns with Python's re only.
        legacy = Rule("legacy", "pattern", "sofa(?= bed)", (Boost(Selector(("SOFA-1",)), 0.5),))
        store.put_rule(legacy, "old-admin")
        store.put_rule(rule_from_dict(pattern_rule("^grey", "grey")), "admin")
        version = ConfigStore(tmp_path / "merch.sqlite3").current()  # read back from disk
        assert {r.id for r in version.rules} == {"legacy", "grey"}
        with caplog.at_level(logging.ERROR, logger="productsearch.rules"):
            rules = version.rule_set()
        assert set(rules.broken) == {"legacy"}
        assert "RE2" in rules.broken["legacy"]
        assert any("legacy" in r.getMessage() for r in caplog.records)
        assert [r.id for r in rules.match("grey sofa bed").rules] == ["grey"]
        store.close()


class TestRedirectTargets:
    @pytest.mark.parametrize(
        "url",
        [
            "https://shop.example/sale",
            "http://shop.example",
            "HTTPS://shop.example/a?b=c#d",
            "/sale",
            "/",
            "/search?q=sofa%20bed",
        ],
    )
    def test_safe_targets_are_kept(self, url: str) -> None:
        action = action_from_dict({"type": "redirect", "url": url})
        assert action == Redirect(url)
        assert redirect_url_problem(url) is None

    @pytest.mark.parametrize(
        "url",
        [
            "//evil.example",
            "//evil.example/path",
            "/\\evil.example",
            "/\\/evil.example",
            "\\\\evil.example",
            "/\t/evil.example",
            "/%0a".replace("%0a", "\n") + "/evil.example",
            "/sale\x00",
            "https://",
            "https:///path",
            "https:evil.example",
            "javascript:alert(1)",
            "data:text/html,<script>alert(1)</script>",
            "ftp://shop.example/file",
            "evil.example",
            "https://shop.example/a b",
            "",
        ],
    )
    def test_other_sites_and_schemes_are_refused_naming_the_field(self, url: str) -> None:
        with pytest.raises(InvalidRequestError) as info:
            action_from_dict({"type": "redirect", "url": url}, "rules[0].actions[1]")
        assert info.value.field == "rules[0].actions[1].url"


@pytest.fixture()
def service(tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str]]]:
    app = create_app(
        Settings(
            index_dir=build_snapshot(tmp_path),
            text_embedder="none",
            events_db="none",
            keys_db=tmp_path / "keys.sqlite3",
            merch_db=tmp_path / "merch.sqlite3",
        )
    )
    with TestClient(app) as client:
        _, admin = app.state.security.keys.create("merchandiser", "admin")
        yield client, {"Authorization": f"Bearer {admin}"}


class TestThroughTheService:
    def test_bad_pattern_and_redirect_answer_422_naming_the_field(
        self, service: tuple[TestClient, dict[str, str]]
    ) -> None:
        client, admin = service
        response = client.post("/admin/rules", json=pattern_rule(r"(a)\1"), headers=admin)
        assert response.status_code == 422, response.text
        assert "rule.query" in response.text and "RE2" in response.text

        redirect = {
            "id": "r",
            "match": "exact",
            "query": "help",
            "actions": [{"type": "redirect", "url": "//evil.example"}],
        }
        response = client.post("/admin/rules", json=redirect, headers=admin)
        assert response.status_code == 422, response.text
        assert "rule.actions[0].url" in response.text

    def test_evil_pattern_neither_slows_search_nor_freezes_health(
        self, service: tuple[TestClient, dict[str, str]]
    ) -> None:
        client, admin = service
        saved = client.post("/admin/rules", json=pattern_rule(EVIL), headers=admin)
        assert saved.status_code == 201, saved.text
        health_ms: list[float] = []
        searching = threading.Event()

        def probe_health() -> None:
            searching.wait(5)
            for _ in range(5):
                started = time.perf_counter()
                assert client.get("/health").status_code == 200
                health_ms.append((time.perf_counter() - started) * 1000)

        prober = threading.Thread(target=probe_health)
        prober.start()
        started = time.perf_counter()
        searching.set()
        for _ in range(3):
            response = client.get("/search", params={"q": "x" * 30}, headers=admin)
            assert response.status_code == 200, response.text
        took = time.perf_counter() - started
        prober.join(30)
        assert took < 5.0, f"three searches took {took:.1f} s"  # backtracking: minutes
        assert max(health_ms) < 3000, health_ms  # the issue saw /health frozen for 14 s
