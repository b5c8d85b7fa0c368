"""The storefront demo in Chromium: as-you-type results and suggestions, colour swatches,
photo search, voice search (uploaded recording and the microphone through MediaRecorder), and
shopper events reaching the event store."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from events.store import EventType
from tests.browser.conftest import (
    COLOURS,
    TIMEOUT_MS,
    VOICE_TRANSCRIPT,
    Service,
    draw,
    hum,
    png,
    shoot,
    upload,
    wav,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page


def open_storefront(page: Page, service: Service) -> None:
    page.goto(service.url("/storefront"))
    page.wait_for_selector("body[data-ready=true]")
    # The catalogue's first page arrives before anything is typed.
    page.wait_for_selector("#results li.card")


def card_ids(page: Page) -> list[str]:
    return page.eval_on_selector_all("#results li.card", "cards => cards.map(c => c.dataset.id)")


def wait_for_ids(page: Page, predicate: str) -> None:
    """Wait until the result cards' ids satisfy a JavaScript predicate over ``ids``."""
    page.wait_for_function(
        "() => { const ids = [...document.querySelectorAll('#results li.card')]"
        f".map(c => c.dataset.id); return {predicate}; }}"
    )


def events_of(service: Service, session_id: str) -> list[Any]:
    store = service.app.state.event_store
    return [e for e in store.scan() if e.session_id == session_id]


class TestServing:
    def test_root_redirects_to_the_storefront_served_with_its_search_key(
        self, page: Page, service: Service
    ) -> None:
        response = page.goto(service.url("/"))

        assert response is not None
        assert page.url == service.url("/storefront")
        served = page.get_attribute('meta[name="productsearch-search-key"]', "content")
        assert served == service.search_token
        assert service.admin_token not in page.content()
        assert "script-src 'self'" in response.headers["content-security-policy"]

    def test_without_a_served_key_the_page_asks_for_one(self, page: Page, service: Service) -> None:
        settings = service.app.state.settings
        settings.storefront_key = None
        try:
            page.goto(service.url("/storefront"))
            page.wait_for_selector("#key-panel:not(.hidden)")  # the service answered 401
            assert page.locator("#results li.card").count() == 0

            page.fill("#search-key", service.search_token)
            page.click("#key-form button[type=submit]")

            page.wait_for_selector("#results li.card")
            assert page.is_hidden("#key-panel")
            stored = page.evaluate("sessionStorage.getItem('productsearch.searchKey')")
            assert stored == service.search_token
        finally:
            settings.storefront_key = service.search_token


class TestTyping:
    def test_typing_shows_results_and_suggestions(
        self, page: Page, service: Service, screenshots: Path
    ) -> None:
        open_storefront(page, service)

        page.click("#q")
        page.keyboard.type("shi", delay=60)

        page.wait_for_selector("#suggestions li[data-text='shirt']")
        wait_for_ids(page, "ids.length === 3 && ids.every(id => id.startsWith('shirt-'))")
        assert page.is_visible("#suggestions")
        assert "3 results" in page.inner_text("#status")
        # Titles, prices and colour dots are drawn; the photos are fetched with the key.
        card = page.locator("#results li.card").first
        assert "cotton shirt" in card.locator(".title").inner_text()
        assert "€" in card.locator(".price").inner_text()
        page.wait_for_function(
            "() => [...document.querySelectorAll('#results img.thumb')]"
            ".every(i => i.complete && i.naturalWidth > 0)"
        )
        shoot(page, screenshots, "storefront-typing")

        page.click("#suggestions li[data-text='shirt']")
        page.wait_for_selector("#suggestions", state="hidden")
        assert page.input_value("#q") == "shirt"

    def test_a_typo_is_corrected_and_keyboard_picks_a_suggestion(
        self, page: Page, service: Service
    ) -> None:
        open_storefront(page, service)

        page.click("#q")
        page.keyboard.type("lamo", delay=40)
        page.wait_for_selector("#suggestions li")
        page.keyboard.press("ArrowDown")
        page.keyboard.press("Enter")

        wait_for_ids(page, "ids.length > 0 && ids.every(id => id.startsWith('lamp-'))")
        assert "lamp" in page.input_value("#q")


class TestFacets:
    def test_clicking_a_colour_swatch_filters_and_the_chip_removes_it(
        self, page: Page, service: Service, screenshots: Path
    ) -> None:
        open_storefront(page, service)
        page.fill("#q", "shirt")
        wait_for_ids(page, "ids.length === 3")
        swatches = page.eval_on_selector_all(
            "#facets .swatch",
            "s => s.map(b => [b.dataset.value, getComputedStyle(b).backgroundColor])",
        )
        assert {value for value, _ in swatches} == set(COLOURS)
        assert all(colour.startswith("rgb(") for _, colour in swatches)  # drawn from the hex

        page.click("#facets .swatch[data-value='red']")

        wait_for_ids(page, "ids[0] === 'shirt-red' && ids.every(id => id.endsWith('-red'))")
        assert page.get_attribute("#facets .swatch[data-value='red']", "aria-pressed") == "true"
        assert "Colour: red" in page.inner_text("#active-filters")
        shoot(page, screenshots, "storefront-colour-filter")

        page.click("#active-filters .chip[data-value='red'] button")
        wait_for_ids(page, "ids.length === 3")

    def test_a_brand_facet_filters_a_browse(self, page: Page, service: Service) -> None:
        open_storefront(page, service)

        page.click("#facets [data-facet='brand'] button[data-value='Lumo']")

        wait_for_ids(page, "ids.length === 3 && ids.every(id => id.startsWith('lamp-'))")


class TestPhotoSearch:
    def test_uploading_a_photo_shows_look_alikes(
        self, page: Page, service: Service, screenshots: Path
    ) -> None:
        open_storefront(page, service)
        photo = png(draw("lamp", (35, 65, 180), size=160))  # not a catalogue photo

        page.set_input_files("#photo", files=[upload("my-lamp.png", "image/png", photo)])

        wait_for_ids(page, "ids[0] === 'lamp-blue'")
        assert "look like your photo" in page.inner_text("#status")
        assert "my-lamp.png" in page.inner_text("#photo-result")
        shoot(page, screenshots, "storefront-photo")

        # Facets narrow the photo search too.
        page.click("#facets .swatch[data-value='red']")
        wait_for_ids(page, "ids.length >= 1 && ids.every(id => id.endsWith('-red'))")


class TestVoiceSearch:
    def test_an_uploaded_recording_is_transcribed_and_searched(
        self, page: Page, service: Service, screenshots: Path
    ) -> None:
        open_storefront(page, service)
        heard = len(service.recognizer.heard_seconds)

        page.set_input_files(
            "#voice-file",
            files=[upload("query.wav", "audio/wav", wav(hum(1.5)))],
        )

        page.wait_for_selector(f"#transcript:has-text('{VOICE_TRANSCRIPT}')")
        wait_for_ids(page, "ids[0] === 'shirt-blue'")
        assert page.input_value("#q") == VOICE_TRANSCRIPT
        # The service decoded the browser's upload: 1.5 s of sound reached the recogniser.
        assert service.recognizer.heard_seconds[heard:] == [pytest.approx(1.5, abs=0.05)]
        shoot(page, screenshots, "storefront-voice-upload")

    def test_silence_says_nothing_was_heard(self, page: Page, service: Service) -> None:
        open_storefront(page, service)

        page.set_input_files(
            "#voice-file",
            files=[upload("quiet.wav", "audio/wav", wav(np.zeros(16_000, dtype=np.float32)))],
        )

        page.wait_for_selector("#voice-result:has-text('no speech was heard')")


@pytest.fixture(scope="module")
def microphone_browser(
    launch: Callable[..., Browser], tmp_path_factory: pytest.TempPathFactory
) -> Browser:
    """Chromium whose fake microphone plays a recording (and is allowed without asking)."""
    recording = tmp_path_factory.mktemp("microphone") / "speech.wav"
    recording.write_bytes(wav(hum(3.0)))
    return launch(
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={recording}",
    )


class TestMicrophone:
    def test_the_microphone_button_records_with_media_recorder_and_searches(
        self, microphone_browser: Browser, service: Service, screenshots: Path
    ) -> None:
        context = microphone_browser.new_context(permissions=["microphone"])
        context.set_default_timeout(TIMEOUT_MS)
        page = context.new_page()
        try:
            open_storefront(page, service)
            assert page.is_enabled("#mic")
            heard = len(service.recognizer.heard_seconds)
            uploads: list[str] = []
            page.on(
                "request",
                lambda r: (
                    uploads.append(r.headers.get("content-type", ""))
                    if r.url.endswith("/search/voice")
                    else None
                ),
            )

            page.click("#mic")
            page.wait_for_selector("#mic.recording")
            page.wait_for_timeout(1500)
            page.click("#mic")

            page.wait_for_selector(f"#transcript:has-text('{VOICE_TRANSCRIPT}')")
            wait_for_ids(page, "ids[0] === 'shirt-blue'")
            assert uploads and uploads[0].startswith("multipart/form-data")
            # MediaRecorder's WebM/Opus was decoded by the service: about 1.5 s of sound.
            (seconds,) = service.recognizer.heard_seconds[heard:]
            assert 0.8 < seconds < 3.5
            shoot(page, screenshots, "storefront-microphone")
        finally:
            context.close()


class TestEvents:
    def test_search_click_view_and_add_to_cart_are_recorded(
        self, page: Page, service: Service
    ) -> None:
        open_storefront(page, service)
        session = page.evaluate("sessionStorage.getItem('productsearch.sessionId')")

        page.fill("#q", "lamp")
        page.press("#q", "Enter")
        wait_for_ids(page, "ids.length === 3 && ids.every(id => id.startsWith('lamp-'))")
        first = card_ids(page)[0]
        page.click(f"#results li.card[data-id='{first}'] .title")
        page.wait_for_selector(f"#detail[data-id='{first}']")
        page.click("#detail button.primary")  # add to cart from the product panel
        page.wait_for_function("() => document.querySelector('#cart').textContent === 'Cart: 1'")
        page.wait_for_function("() => Number(document.body.dataset.eventsSent || 0) >= 3")

        # The service records its own answers (written in the background): the page does not
        # report searches, and its clicks cite the answer's query_id.
        deadline = time.monotonic() + 10
        events = events_of(service, session)
        while EventType.SEARCH not in [e.type for e in events] and time.monotonic() < deadline:
            time.sleep(0.1)
            events = events_of(service, session)
        search = next(e for e in events if e.type is EventType.SEARCH)
        assert search.query == "lamp"
        assert search.results is not None and search.results[0] == first
        for kind in (EventType.CLICK, EventType.VIEW, EventType.ADD_TO_CART):
            event = next(e for e in events if e.type is kind)
            assert (event.product_id, event.query, event.position, event.channel) == (
                first,
                "lamp",
                1,
                "web",
            )

    def test_a_reported_variant_is_carried_or_dropped_when_events_refuse_it(
        self, page: Page, service: Service
    ) -> None:
        """Search answers may report A/B variants; events carry them, and a service whose
        events do not know the field still records the event (sent again without it)."""

        def with_variant(route: Any) -> None:
            response = route.fetch()
            body = response.json()
            body["variants"] = {"ranking-test": "b"}
            route.fulfill(response=response, body=json.dumps(body))

        page.route(re.compile(r".*/search\?.*"), with_variant)
        posted: list[dict[str, Any]] = []
        page.on(
            "request",
            lambda r: (
                posted.append(json.loads(r.post_data or "{}"))
                if r.url.endswith("/events")
                else None
            ),
        )
        open_storefront(page, service)
        session = page.evaluate("sessionStorage.getItem('productsearch.sessionId')")

        page.fill("#q", "sofa")
        page.press("#q", "Enter")
        wait_for_ids(page, "ids[0] === 'sofa-grey'")
        page.click("#results li.card[data-id='sofa-grey'] .title")
        page.wait_for_function("() => Number(document.body.dataset.eventsSent || 0) >= 2")

        assert posted[0]["events"][0]["variants"] == {"ranking-test": "b"}
        clicks = [e for e in events_of(service, session) if e.type is EventType.CLICK]
        assert [(e.product_id, e.query) for e in clicks] == [("sofa-grey", "sofa")]
        if hasattr(clicks[0], "variants"):  # an event store that keeps variants
            assert dict(clicks[0].variants or {}) == {"ranking-test": "b"}


@pytest.mark.slow
class TestRealSpeech:
    def test_spoken_words_through_the_microphone_are_recognised_by_moonshine(
        self,
        launch: Callable[..., Browser],
        service: Service,
        screenshots: Path,
        tmp_path: Path,
    ) -> None:
        """The whole path for real: piper speaks into Chromium's fake microphone, MediaRecorder
        records WebM/Opus, the service decodes it and Moonshine transcribes it."""
        from models.speech import MoonshineRecognizer
        from tests.models.test_speech import silence, speak

        speech = np.concatenate([silence(0.4), speak("blue shirt"), silence(1.5)])
        recording = tmp_path / "blue-shirt.wav"
        recording.write_bytes(wav(speech))
        browser = launch(
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={recording}%noloop",
        )
        state = service.app.state
        scripted = state.speech_recognizer
        state.speech_recognizer = MoonshineRecognizer()
        state.voice_search = None
        context = browser.new_context(permissions=["microphone"])
        context.set_default_timeout(30_000)
        try:
            page = context.new_page()
            open_storefront(page, service)
            page.click("#mic")
            page.wait_for_selector("#mic.recording")
            page.wait_for_timeout(int(len(speech) / 16_000 * 1000))
            page.click("#mic")

            page.wait_for_selector("#transcript")
            page.wait_for_function(
                "() => /shirt/i.test(document.querySelector('#transcript').textContent)"
            )
            # What Moonshine hears is mapped onto catalogue words before searching.
            wait_for_ids(page, "ids.length > 0 && ids[0].startsWith('shirt-')")
            shoot(page, screenshots, "storefront-microphone-moonshine")
        finally:
            context.close()
            state.speech_recognizer = scripted
            state.voice_search = None
