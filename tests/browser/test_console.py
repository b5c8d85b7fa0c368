"""The merchandiser console in Chromium: signing in with an admin key, a pin rule previewed
before and after and then saved, ranking weights, explain, an A/B report and the analytics
charts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from merchandising.experiments import VariantCounts
from tests.browser.conftest import Service, shoot

if TYPE_CHECKING:
    from playwright.sync_api import Page


def sign_in(page: Page, service: Service, token: str | None = None) -> None:
    page.goto(service.url("/console"))
    page.wait_for_selector("body[data-ready=true]")
    page.fill("#admin-key", token or service.admin_token)
    page.click("#login-form button[type=submit]")


def signed_in(page: Page, service: Service) -> None:
    sign_in(page, service)
    page.wait_for_selector("body[data-signed-in=true]")


def search_ids(service: Service, q: str) -> list[str]:
    response = httpx.get(
        service.url("/search"),
        params={"q": q, "k": 10},
        headers={"Authorization": f"Bearer {service.search_token}"},
    )
    response.raise_for_status()
    return [h["id"] for h in response.json()["hits"]]


def admin(service: Service) -> dict[str, str]:
    return {"Authorization": f"Bearer {service.admin_token}"}


@pytest.fixture
def clean_rules(service: Service) -> Iterator[None]:
    """Leave no rule behind for the other tests."""
    yield
    rules = httpx.get(service.url("/admin/rules"), headers=admin(service)).json()["rules"]
    for rule in rules:
        httpx.delete(service.url(f"/admin/rules/{rule['id']}"), headers=admin(service))


class TestSignIn:
    def test_a_search_key_is_refused_and_an_admin_key_signs_in(
        self, page: Page, service: Service, screenshots: Path
    ) -> None:
        sign_in(page, service, service.search_token)
        page.wait_for_selector("#login-error:has-text('cannot reach admin routes')")
        assert page.is_hidden("#app")

        sign_in(page, service)
        page.wait_for_selector("body[data-signed-in=true]")
        assert page.is_visible("#tab-rules")
        assert page.evaluate("sessionStorage.getItem('productsearch.adminKey')") == (
            service.admin_token
        )
        shoot(page, screenshots, "console-rules")

        # The key lives in the tab's session, never in the page: a reload signs in again...
        page.reload()
        page.wait_for_selector("body[data-signed-in=true]")
        assert service.admin_token not in page.content()
        # ...and signing out forgets it.
        page.click("#logout")
        assert page.evaluate("sessionStorage.getItem('productsearch.adminKey')") is None
        assert page.is_visible("#login")


class TestRules:
    def test_a_pin_rule_is_previewed_side_by_side_then_saved_and_deleted(
        self, page: Page, service: Service, screenshots: Path, clean_rules: None
    ) -> None:
        before = search_ids(service, "shirt")
        target = before[-1]  # the last shirt goes to the top
        signed_in(page, service)

        page.fill("#rule-id", "pin-last-shirt")
        page.select_option("#rule-match", "exact")
        page.fill("#rule-query", "shirt")
        page.select_option("#rule-action", "pin")
        assert page.is_hidden("#rule-words")  # fields of other actions are hidden
        page.fill("#rule-product", target)
        page.fill("#rule-position", "1")
        page.click("#rule-preview")

        page.wait_for_selector("#rule-preview-result .preview-after tr[data-position='1']")
        now = page.get_attribute(".preview-before tr[data-position='1']", "data-id")
        after = page.locator(".preview-after tr[data-position='1']")
        assert now == before[0]
        assert after.get_attribute("data-id") == target
        assert after.get_attribute("data-change") == "up"
        assert search_ids(service, "shirt") == before  # a preview saves nothing
        shoot(page, screenshots, "console-pin-preview")

        page.click("#rule-save")
        page.wait_for_selector("#rules-body tr[data-id='pin-last-shirt']")
        assert f"pin {target} at 1" in page.inner_text("#rules-body tr[data-id='pin-last-shirt']")
        assert search_ids(service, "shirt")[0] == target  # serving without a restart

        page.once("dialog", lambda dialog: dialog.accept())
        page.click("#rules-body tr[data-id='pin-last-shirt'] .delete-rule")
        page.wait_for_selector("#rules-body tr[data-id='pin-last-shirt']", state="detached")
        assert search_ids(service, "shirt") == before

    def test_a_malformed_rule_shows_the_services_reason(
        self, page: Page, service: Service, clean_rules: None
    ) -> None:
        signed_in(page, service)
        page.fill("#rule-id", "no-query")
        page.select_option("#rule-match", "exact")
        page.fill("#rule-query", "")
        page.fill("#rule-product", "shirt-red")
        page.click("#rule-save")

        page.wait_for_selector("#message.error:has-text('rule.query')")


class TestWeights:
    def test_weights_are_shown_previewed_and_saved(self, page: Page, service: Service) -> None:
        signed_in(page, service)
        page.click("nav.tabs button[data-tab='weights']")
        page.wait_for_selector("#weight-retrievers-lexical")
        assert page.input_value("#weight-retrievers-lexical") == "1"

        page.fill("#weights-preview-q", "red shirt")
        page.fill("#weight-colour_rerank", "6")
        page.click("#weights-preview")
        page.wait_for_selector("#weights-preview-result .preview-after tr[data-position='1']")

        page.click("#weights-save")
        page.wait_for_selector("#message:has-text('Saved weights')")
        saved = httpx.get(service.url("/admin/weights"), headers=admin(service)).json()
        assert saved["weights"]["colour_rerank"] == 6
        httpx.put(service.url("/admin/weights"), json={}, headers=admin(service))


class TestExplain:
    def test_explain_shows_each_hits_path_through_the_pipeline(
        self, page: Page, service: Service, screenshots: Path
    ) -> None:
        signed_in(page, service)
        page.click("nav.tabs button[data-tab='explain']")
        page.fill("#explain-q", "red shirt")
        page.click("#explain-form button[type=submit]")

        page.wait_for_selector("#explain-table tbody tr")
        first = page.locator("#explain-table tbody tr").first
        assert first.get_attribute("data-id") == "shirt-red"
        assert "lexical #1" in first.inner_text()
        assert "red" in first.inner_text()  # a matched term
        shoot(page, screenshots, "console-explain")


class TestExperiments:
    def test_an_experiment_is_created_and_its_report_charted(
        self, page: Page, service: Service, screenshots: Path
    ) -> None:
        counts = {
            "control": VariantCounts(1000, 300, 40),
            "semantic-up": VariantCounts(1000, 360, 52),
        }
        previous = getattr(service.app.state, "experiment_counts", None)
        service.app.state.experiment_counts = lambda experiment_id: counts
        try:
            signed_in(page, service)
            page.click("nav.tabs button[data-tab='experiments']")
            page.fill("#experiment-id", "ranking-test")
            page.click("#experiment-save")
            page.wait_for_selector("#experiments-body tr[data-id='ranking-test']")

            page.click("#experiments-body tr[data-id='ranking-test'] .report")

            page.wait_for_selector("#report-table tr[data-variant='semantic-up']")
            row = page.inner_text("#report-table tr[data-variant='semantic-up']")
            assert "36.0%" in row  # click-through
            assert page.locator("#experiment-report svg .chart-row").count() == 2
            shoot(page, screenshots, "console-experiment-report")
        finally:
            service.app.state.experiment_counts = previous
            httpx.delete(service.url("/admin/experiments/ranking-test"), headers=admin(service))


class TestAnalytics:
    def test_top_and_zero_result_queries_are_charted(
        self, page: Page, service: Service, screenshots: Path
    ) -> None:
        def search(query: str, results: list[str], session: str) -> dict[str, Any]:
            return {"type": "search", "session_id": session, "query": query, "results": results}

        # Queries no other test of the module types: the service also counts the searches it
        # answered, and this module's service is shared.
        events = [
            *(search("reading lamp", ["lamp-red"], f"a{i}") for i in range(5)),
            *(search("linen shirt", ["shirt-red"], f"b{i}") for i in range(3)),
            *(search("velvet armchair", [], f"c{i}") for i in range(2)),
            {
                "type": "click",
                "session_id": "a0",
                "query": "reading lamp",
                "product_id": "lamp-red",
            },
        ]
        response = httpx.post(
            service.url("/events"),
            json={"events": events},
            headers={"Authorization": f"Bearer {service.search_token}"},
        )
        assert response.json()["accepted"] == len(events)
        signed_in(page, service)

        page.click("nav.tabs button[data-tab='analytics']")

        page.wait_for_selector("#chart-top svg .chart-row[data-label='reading lamp']")
        top = dict(
            page.eval_on_selector_all(
                "#chart-top .chart-row", "rows => rows.map(r => [r.dataset.label, r.dataset.value])"
            )
        )
        assert top["reading lamp"] == "5"
        assert top["linen shirt"] == "3"
        zero = page.eval_on_selector_all(
            "#chart-zero .chart-row", "rows => rows.map(r => r.dataset.label)"
        )
        assert "velvet armchair" in zero
        assert "reading lamp" not in zero
        assert "20.0%" in page.inner_text("#analytics-body tr[data-query='reading lamp']")  # CTR
        shoot(page, screenshots, "console-analytics")


class TestHistory:
    def test_versions_are_listed_with_who_and_why(self, page: Page, service: Service) -> None:
        httpx.put(
            service.url("/admin/weights"),
            params={"comment": "from the history test"},
            json={},
            headers=admin(service),
        ).raise_for_status()
        signed_in(page, service)

        from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

        # The tab loads the list when clicked; on a busy machine a click can land while the
        # console's own post-sign-in loading is still re-rendering, so click again if needed.
        row = "#versions-body tr:has-text('from the history test')"
        for _ in range(3):
            page.click("nav.tabs button[data-tab='history']")
            try:
                page.wait_for_selector(row, timeout=10_000)
                break
            except PlaywrightTimeoutError:
                continue
        page.wait_for_selector(row, timeout=1_000)
        assert "merchandiser" in page.inner_text("#versions-body tr:first-child")
