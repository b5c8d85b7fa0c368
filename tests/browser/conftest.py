"""The web pages end to end: the real service (uvicorn on a loopback port, in a thread) over a
small catalogue with drawn product photos, driven by Debian's Chromium through Playwright.

Nothing is mocked between the browser and the service: keys are required (the storefront is
served with a search key, the console signs in with an admin key), photos and recordings are
uploaded by the browser as multipart forms and decoded by the service. The one stand-in is the
speech recogniser of the fast tests (:class:`ScriptedRecognizer`), which says what it was given
so a test can check the recording really arrived; the ``slow`` test uses Moonshine.

Chromium and Playwright are optional: without them the tests skip, saying what to install.
Screenshots go to ``var/screenshots/browser/`` (or ``$PRODUCTSEARCH_SCREENSHOTS``); the run
prints where.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import threading
import time
import wave
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image, ImageDraw

from api.app import create_app
from api.security import KeyStore
from api.settings import Settings
from indexer.build import BuildConfig, build_snapshot
from models.speech import SAMPLE_RATE, Alternative, Transcript
from search.types import Availability, Product

if TYPE_CHECKING:
    from fastapi import FastAPI
    from playwright.sync_api import Browser, FilePayload, Page, Playwright

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("PRODUCTSEARCH_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(
    os.environ.get("PRODUCTSEARCH_SCREENSHOTS", REPO / "var" / "screenshots" / "browser")
)
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 30_000
"""Longest wait for anything on a page (the 2-core CI machine is shared)."""

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (200, 25, 30),
    "blue": (30, 60, 170),
    "black": (20, 20, 22),
}
KINDS = ("shirt", "lamp")
VOICE_TRANSCRIPT = "blue shirt"


def draw(kind: str, rgb: tuple[int, int, int], size: int = 96) -> Image.Image:
    """A product photo: a shirt or a lamp in one colour on white."""
    image = Image.new("RGB", (size, size), (255, 255, 255))
    d = ImageDraw.Draw(image)
    s = size / 96
    if kind == "shirt":
        points = [(20, 15), (76, 15), (90, 35), (74, 42), (74, 88), (22, 88), (22, 42), (6, 35)]
        d.polygon([(x * s, y * s) for x, y in points], fill=rgb)
    else:
        d.ellipse((30 * s, 10 * s, 66 * s, 46 * s), fill=rgb)
        d.rectangle((45 * s, 46 * s, 51 * s, 80 * s), fill=rgb)
        d.rectangle((30 * s, 80 * s, 66 * s, 88 * s), fill=rgb)
    return image


def png(image: Image.Image) -> bytes:
    """PNG bytes of an image."""
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def upload(name: str, mime_type: str, data: bytes) -> FilePayload:
    """A file for ``page.set_input_files``: what a shopper picks in the file dialog."""
    return {"name": name, "mimeType": mime_type, "buffer": data}


def wav(samples: npt.NDArray[np.float32], rate: int = SAMPLE_RATE) -> bytes:
    """16-bit mono WAV bytes of float samples in [-1, 1]."""
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return out.getvalue()


def hum(seconds: float) -> npt.NDArray[np.float32]:
    """Voice-like sound (a gliding tone with harmonics): not silence, no words."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    pitch = 140 + 40 * np.sin(2 * np.pi * 1.5 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / SAMPLE_RATE
    tone = sum(np.sin(k * phase) / k for k in range(1, 6))
    return (0.25 * tone / np.abs(tone).max()).astype(np.float32)


@dataclass
class ScriptedRecognizer:
    """A speech recogniser that hears :data:`VOICE_TRANSCRIPT` in any sound and nothing in
    silence, and keeps the length of every recording it was given (what the service decoded
    from the browser's upload).

    Attributes:
        name: Reported in the voice search answer.
        languages: Languages it claims.
        heard_seconds: Duration of each recording transcribed, oldest first.
    """

    name: str = "scripted"
    languages: tuple[str, ...] = ("en",)
    heard_seconds: list[float] = field(default_factory=list)

    def warm_up(self) -> None:
        """Nothing to load."""

    def transcribe(
        self, audio: npt.NDArray[np.float32], hints: Sequence[str] = (), language: str | None = None
    ) -> Transcript:
        """Hear the scripted words when the audio is not silent."""
        seconds = len(audio) / SAMPLE_RATE
        self.heard_seconds.append(seconds)
        if len(audio) == 0 or float(np.abs(audio).max()) < 0.02:
            return Transcript("", duration_s=seconds)
        return Transcript(
            VOICE_TRANSCRIPT,
            alternatives=(Alternative(VOICE_TRANSCRIPT, 0.9),),
            language="en",
            duration_s=seconds,
        )

    def stream(self, hints: Sequence[str] = (), language: str | None = None) -> Any:
        """Streaming is not scripted (the pages upload whole recordings)."""
        raise NotImplementedError


class BrowserSettings(Settings):
    """The service's settings plus the storefront's search key (read by ``api.routes.pages``
    from ``settings.storefront_key`` when the settings carry it)."""

    storefront_key: str | None = None


@dataclass
class Service:
    """The running service and what the tests need to talk to it."""

    app: FastAPI
    base_url: str
    admin_token: str
    search_token: str
    recognizer: ScriptedRecognizer
    work: Path

    def url(self, path: str) -> str:
        """An absolute URL on the service."""
        return self.base_url + path


def catalogue(work: Path) -> list[Product]:
    """Six drawn products (a shirt and a lamp in three colours) and a sofa without a photo."""
    products: list[Product] = []
    for kind in KINDS:
        for colour, rgb in COLOURS.items():
            path = work / f"{kind}-{colour}.png"
            draw(kind, rgb).save(path)
            clothing = kind == "shirt"
            products.append(
                Product(
                    id=f"{kind}-{colour}",
                    title=f"{colour.title()} cotton shirt"
                    if clothing
                    else f"{colour.title()} table lamp",
                    description="Soft cotton, regular fit." if clothing else "A small desk lamp.",
                    brand="Fjord" if clothing else "Lumo",
                    categories=(("Clothing", "Shirts"),) if clothing else (("Home", "Lamps"),),
                    colours=(colour,),
                    price=29.0 + len(products) if clothing else 49.0 + len(products),
                    currency="EUR",
                    images=(str(path),),
                    lang="en",
                )
            )
    products.append(
        Product(
            id="sofa-grey",
            title="Grey corner sofa",
            description="Deep seats.",
            brand="Nordhem",
            categories=(("Home", "Sofas"),),
            colours=("grey",),
            price=899.0,
            currency="EUR",
            availability=Availability.PREORDER,
            lang="en",
        )
    )
    return products


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@pytest.fixture(scope="session")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The service over :func:`catalogue`, keys required, served by uvicorn in a thread."""
    import uvicorn

    work = tmp_path_factory.mktemp("browser")
    build_snapshot(
        catalogue(work),
        work / "snapshot",
        # Products given in code name no catalogue file: their photos' folder is the root.
        config=BuildConfig(embedder="none", image_embedder="descriptor", image_roots=(str(work),)),
    )
    keys = KeyStore(work / "keys.sqlite3")
    # The whole module signs in and drives the console with this one key, faster than a
    # merchandiser would: the default admin burst (30) is not what these tests are about.
    _, admin_token = keys.create("merchandiser", "admin", rate_per_minute=6000, burst=600)
    _, search_token = keys.create("storefront", "search")
    keys.close()
    settings = BrowserSettings(
        index_dir=work / "snapshot",
        text_embedder="none",
        events_db=str(work / "events.sqlite3"),
        events_synchronous="NORMAL",
        keys_db=work / "keys.sqlite3",
        storefront_key=search_token,
        open_mode=False,  # keys required, whatever the test session's environment says
        log_level="warning",
    )
    app = create_app(settings)
    recognizer = ScriptedRecognizer()
    app.state.speech_recognizer = recognizer
    sock = _free_socket()
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the service did not start")
        time.sleep(0.02)
    try:
        yield Service(app, f"http://127.0.0.1:{port}", admin_token, search_token, recognizer, work)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def _playwright() -> Any:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install playwright; no `playwright install`)")
    if not Path(CHROMIUM).is_file() and shutil.which(CHROMIUM) is None:
        pytest.skip(
            f"no Chromium at {CHROMIUM} (apt-get install chromium chromium-driver, "
            "or set PRODUCTSEARCH_CHROMIUM)"
        )
    return sync_playwright


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    """Playwright, or a skip saying what is missing."""
    sync_playwright = _playwright()
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def launch(playwright: Playwright) -> Iterator[Callable[..., Browser]]:
    """Launch Debian's Chromium headless with extra arguments; every browser is closed at the
    end of the session."""
    browsers: list[Browser] = []

    def start(*extra: str) -> Browser:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=[*CHROMIUM_ARGS, *extra]
        )
        browsers.append(browser)
        return browser

    yield start
    for browser in browsers:
        browser.close()


@pytest.fixture(scope="session")
def browser(launch: Callable[..., Browser]) -> Browser:
    """The shared headless Chromium."""
    return launch()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh tab in its own context (its own sessionStorage); JavaScript errors fail the test."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    yield tab
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture(scope="session")
def screenshots() -> Path:
    """Where the tests save screenshots (emptied at the start of the session)."""
    if SCREENSHOTS.is_dir():
        for old in SCREENSHOTS.glob("*.png"):
            old.unlink()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


def shoot(page: Page, folder: Path, name: str) -> Path:
    """Save a full-page screenshot as ``<folder>/<name>.png``."""
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say where the screenshots are."""
    if SCREENSHOTS.is_dir() and any(SCREENSHOTS.glob("*.png")):
        terminalreporter.write_line(f"browser test screenshots: {SCREENSHOTS}")
