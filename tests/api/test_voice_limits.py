"""The voice WebSocket cannot be used to hold the service: idle streams are closed, a key and a
client hold a few streams at most, the service a bounded number, transcription runs in a small
pool of its own, and a stream that falls behind is closed with a code and a reason.

Before: 50 idle sockets stayed open, 6 streams took search p99 from 75 ms to 7.8 s, and a stream
~40 s behind was closed with 1011 and no reason.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from api.app import create_app
from api.settings import Settings
from models.speech import SAMPLE_RATE, Alternative, Transcript
from tests.api import build_snapshot

CHUNK = (np.zeros(SAMPLE_RATE // 2, dtype="<i2")).tobytes()
"""Half a second of 16 kHz PCM."""


class SlowStream:
    """A recogniser stream whose every chunk takes ``delay_s`` to transcribe."""

    def __init__(self, recognizer: PacedRecognizer) -> None:
        self.recognizer = recognizer
        self.samples = 0

    def accept(self, samples: npt.NDArray[np.float32]) -> str | None:
        with self.recognizer.lock:
            self.recognizer.running += 1
            self.recognizer.peak = max(self.recognizer.peak, self.recognizer.running)
        try:
            time.sleep(self.recognizer.delay_s)
        finally:
            with self.recognizer.lock:
                self.recognizer.running -= 1
        self.samples += len(samples)
        return "sofa"

    def finish(self) -> Transcript:
        return self.recognizer.transcribe(np.zeros(self.samples, dtype=np.float32))


class PacedRecognizer:
    """A recogniser (no model: the API path only) that hears "sofa" and takes its time."""

    name = "paced"
    languages: tuple[str, ...] = ("en",)

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.lock = threading.Lock()
        self.running = 0
        self.peak = 0

    def warm_up(self) -> None:
        pass

    def transcribe(
        self, audio: npt.NDArray[np.float32], hints: Any = (), language: str | None = None
    ) -> Transcript:
        return Transcript("sofa", (Alternative("sofa", 0.9),), "en", (), len(audio) / SAMPLE_RATE)

    def stream(self, hints: Any = (), language: str | None = None) -> SlowStream:
        return SlowStream(self)


@pytest.fixture(scope="module")
def snapshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_snapshot(tmp_path_factory.mktemp("voice-limits"))


class Service:
    def __init__(self, client: TestClient, app: Any, recognizer: PacedRecognizer) -> None:
        self.client = client
        self.app = app
        self.recognizer = recognizer
        keys = app.state.security.keys
        self.admin = keys.create("ops", "admin")[1]
        self.shop_a = keys.create("shop-a", "search")[1]
        self.shop_b = keys.create("shop-b", "search")[1]

    def url(self, token: str) -> str:
        return f"/search/voice/stream?api_key={token}"


@contextmanager
def service(snapshot_dir: Path, delay_s: float = 0.0, **limits: Any) -> Iterator[Service]:
    settings = Settings(index_dir=snapshot_dir, text_embedder="none", events_db="none", **limits)
    app = create_app(settings)
    recognizer = PacedRecognizer(delay_s)
    app.state.speech_recognizer = recognizer
    with TestClient(app) as client:
        yield Service(client, app, recognizer)


def closed(ws: Any) -> tuple[dict[str, Any], WebSocketDisconnect]:
    """The error message the server sent, then how it closed."""
    message = ws.receive_json()
    with pytest.raises(WebSocketDisconnect) as info:
        ws.receive_json()
    return message, info.value


def finish(ws: Any) -> dict[str, Any]:
    """Send "end" and read up to the final answer."""
    ws.send_text("end")
    while True:
        message = ws.receive_json()
        assert message["type"] != "error", message
        if message["type"] == "final":
            return message


class TestIdleTimeout:
    def test_a_stream_without_audio_is_closed_with_a_reason(self, snapshot_dir: Path) -> None:
        with service(snapshot_dir, voice_idle_timeout_s=0.3) as shop:
            started = time.monotonic()
            with shop.client.websocket_connect(shop.url(shop.shop_a)) as ws:
                message, close = closed(ws)
            assert time.monotonic() - started < 5
        assert message == {
            "type": "error",
            "status": 408,
            "detail": "no audio for 0.3 s: closing the idle stream",
        }
        assert close.code == 1008
        assert "no audio for 0.3 s" in close.reason

    def test_audio_keeps_it_open_and_silence_after_it_closes_it(self, snapshot_dir: Path) -> None:
        with (
            service(snapshot_dir, voice_idle_timeout_s=0.5) as shop,
            shop.client.websocket_connect(shop.url(shop.shop_a)) as ws,
        ):
            for _ in range(4):  # 0.8 s of a stream that keeps talking
                ws.send_bytes(CHUNK)
                time.sleep(0.2)
            messages = [ws.receive_json() for _ in range(4)]
            assert {m["type"] for m in messages} == {"partial"}
            message, close = closed(ws)
        assert message["status"] == 408 and close.code == 1008


class TestStreamCaps:
    def test_per_key_cap_closes_with_1008_and_a_reason(self, snapshot_dir: Path) -> None:
        limits = {"voice_streams_per_key": 2, "voice_streams_per_client": 10}
        with service(snapshot_dir, **limits) as shop:
            with ExitStack() as held:
                for _ in range(2):
                    held.enter_context(shop.client.websocket_connect(shop.url(shop.shop_a)))
                with shop.client.websocket_connect(shop.url(shop.shop_a)) as third:
                    message, close = closed(third)
                # Another key is not affected by shop A's streams.
                with shop.client.websocket_connect(shop.url(shop.shop_b)) as other:
                    other.send_bytes(CHUNK)
                    assert finish(other)["transcript"] == "sofa"
            # Closing one gives its slot back.
            with shop.client.websocket_connect(shop.url(shop.shop_a)) as again:
                again.send_bytes(CHUNK)
                assert finish(again)["transcript"] == "sofa"
        assert close.code == 1008
        assert close.reason == "this API key already has 2 voice streams open"
        assert message["status"] == 429

    def test_per_client_cap_under_a_shared_key(self, snapshot_dir: Path) -> None:
        limits = {"voice_streams_per_key": 10, "voice_streams_per_client": 1}
        with (
            service(snapshot_dir, **limits) as shop,
            shop.client.websocket_connect(shop.url(shop.shop_a)),
            shop.client.websocket_connect(shop.url(shop.shop_b)) as second,
        ):
            _, close = closed(second)
        assert close.code == 1008
        assert close.reason == "this client already has 1 voice streams open"

    def test_total_cap_closes_with_1013(self, snapshot_dir: Path) -> None:
        limits = {"voice_streams_total": 3, "voice_streams_per_client": 10}
        with service(snapshot_dir, **limits) as shop:
            with ExitStack() as held:
                for token in (shop.shop_a, shop.shop_b, shop.admin):
                    held.enter_context(shop.client.websocket_connect(shop.url(token)))
                with shop.client.websocket_connect(shop.url(shop.shop_a)) as fourth:
                    message, close = closed(fourth)
            assert shop.app.state.voice_slots.open == 0  # every slot given back
        assert close.code == 1013
        assert "busy (3 streams open)" in close.reason
        assert message["status"] == 503


class TestTranscriptionPool:
    def test_concurrent_streams_share_a_small_pool_and_searches_stay_fast(
        self, snapshot_dir: Path
    ) -> None:
        limits = {"voice_transcribe_workers": 1, "voice_streams_per_client": 10}
        with service(snapshot_dir, delay_s=0.1, **limits) as shop:
            auth = {"Authorization": f"Bearer {shop.admin}"}

            def talk(token: str, shop: Service = shop) -> str:
                with shop.client.websocket_connect(shop.url(token)) as ws:
                    for _ in range(3):
                        ws.send_bytes(CHUNK)
                    return str(finish(ws)["transcript"])

            search_ms: list[float] = []
            with ThreadPoolExecutor(4) as pool:
                talking = [pool.submit(talk, t) for t in (shop.shop_a, shop.shop_b, shop.admin)]
                time.sleep(0.1)
                for _ in range(10):
                    started = time.perf_counter()
                    response = shop.client.get("/search", params={"q": "sofa"}, headers=auth)
                    search_ms.append((time.perf_counter() - started) * 1000)
                    assert response.status_code == 200
                transcripts = [f.result(timeout=60) for f in talking]
            assert transcripts == ["sofa"] * 3
            assert shop.recognizer.peak == 1  # never two transcriptions at once
            # Searches do not queue behind the recogniser (each chunk holds it for 100 ms).
            assert sorted(search_ms)[len(search_ms) // 2] < 100, search_ms


class TestFallingBehind:
    def test_a_stream_that_falls_behind_is_closed_with_1013_and_a_reason(
        self, snapshot_dir: Path
    ) -> None:
        # Each half-second chunk takes 0.4 s to transcribe with one worker; the client sends
        # 20 chunks at once, far faster than real time.
        limits = {"voice_transcribe_workers": 1, "voice_max_lag_s": 2.0}
        with (
            service(snapshot_dir, delay_s=0.4, **limits) as shop,
            shop.client.websocket_connect(shop.url(shop.shop_a)) as ws,
        ):
            for _ in range(20):
                ws.send_bytes(CHUNK)
            message: dict[str, Any] = {"type": "partial"}
            while message["type"] == "partial":
                message = ws.receive_json()
            with pytest.raises(WebSocketDisconnect) as info:
                ws.receive_json()
        assert message["type"] == "error" and message["status"] == 503
        assert "fell behind" in message["detail"]
        assert info.value.code == 1013
        assert info.value.reason.startswith("fell behind: 2.5 s of audio waiting")
