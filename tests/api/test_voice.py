"""Voice search over HTTP: every container format, bad uploads, silence, and the WebSocket stream.

Recordings are made here: piper speaks (see :mod:`tests.models.test_speech`) and PyAV encodes WAV,
FLAC, OGG/Opus, WebM/Opus and M4A/AAC the way phones and browsers send them.
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.audio import AudioError, DecodedAudio, check_size, decode_audio, pcm16_to_float
from api.routes.voice import (
    DEFAULT_SPEECH_RECOGNIZER,
    speech_recognizer_spec,
)
from api.settings import Settings
from indexer.build import BuildConfig
from indexer.build import build_snapshot as build_products
from models.speech import (
    SAMPLE_RATE,
    Alternative,
    BufferedStream,
    MoonshineRecognizer,
    Transcript,
)
from search.rules import filters_from_dict
from tests.api import build_snapshot
from tests.models.test_speech import silence, speak
from tests.models.test_speech_router import polish_audio, routed  # noqa: F401 (fixtures)
from tests.search.test_voice import POLISH_PRODUCTS

MAX_K = 20

FORMATS: dict[str, tuple[str, str, int, str]] = {
    # name: (container, codec, sample rate, file name)
    "wav": ("wav", "pcm_s16le", 16_000, "query.wav"),
    "flac": ("flac", "flac", 44_100, "query.flac"),
    "ogg-opus": ("ogg", "libopus", 48_000, "query.ogg"),
    "webm-opus": ("webm", "libopus", 48_000, "query.webm"),
    "m4a-aac": ("ipod", "aac", 44_100, "query.m4a"),
}
"""What browsers (MediaRecorder: WebM/Opus, OGG/Opus), Android and iOS (M4A/AAC) upload."""


def encode(samples: npt.NDArray[np.float32], fmt: str) -> bytes:
    """Encode 16 kHz mono float samples into a container with PyAV."""
    import av

    container_format, codec, rate, _ = FORMATS[fmt]
    out = io.BytesIO()
    with av.open(out, mode="w", format=container_format) as container:
        stream = container.add_stream(codec, rate=rate, layout="mono")
        assert isinstance(stream, av.AudioStream)
        sample_format = stream.codec_context.format
        assert sample_format is not None
        source = av.AudioFrame.from_ndarray(
            (np.clip(samples, -1, 1) * 32767).astype(np.int16).reshape(1, -1),
            format="s16",
            layout="mono",
        )
        source.sample_rate = SAMPLE_RATE
        resampler = av.AudioResampler(format=sample_format.name, layout="mono", rate=rate)
        frame_size = stream.codec_context.frame_size or 1024
        fifo = av.AudioFifo()
        for frame in [*resampler.resample(source), *resampler.resample(None)]:
            fifo.write(frame)
        while fifo.samples:
            chunk = fifo.read(min(frame_size, fifo.samples))
            if chunk is None:
                break
            for packet in stream.encode(chunk):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue()


@pytest.fixture(scope="module")
def query_audio() -> npt.NDArray[np.float32]:
    return np.concatenate([silence(0.3), speak("leather sofa"), silence(0.3)])


class TestDecodeAudio:
    @pytest.mark.parametrize("fmt", list(FORMATS))
    def test_every_format_decodes_to_16_khz_mono(
        self, query_audio: npt.NDArray[np.float32], fmt: str
    ) -> None:
        decoded = decode_audio(encode(query_audio, fmt))

        assert isinstance(decoded, DecodedAudio)
        assert decoded.sample_rate == SAMPLE_RATE
        assert decoded.samples.dtype == np.float32
        assert decoded.samples.ndim == 1
        # Codec priming and padding add at most a few tens of milliseconds.
        assert decoded.duration_s == pytest.approx(len(query_audio) / SAMPLE_RATE, abs=0.08)
        assert np.abs(decoded.samples).max() > 0.1  # the speech survived
        assert decoded.source_rate == FORMATS[fmt][2]
        assert decoded.to_int16().dtype == np.int16

    @pytest.mark.parametrize(
        ("data", "status", "message"),
        [
            (b"", 422, "empty"),
            (b"this is not audio at all" * 10, 415, "not in a format"),
            (b"RIFF\x24\x00\x00\x00WAVEfmt ", 422, "WAV audio is corrupt or truncated"),
        ],
    )
    def test_unusable_data(self, data: bytes, status: int, message: str) -> None:
        with pytest.raises(AudioError, match=message) as info:
            decode_audio(data)

        assert info.value.status_code == status

    @pytest.mark.parametrize("fmt", ["wav", "flac", "webm-opus"])
    def test_truncated_recording_keeps_what_arrived(
        self, query_audio: npt.NDArray[np.float32], fmt: str
    ) -> None:
        data = encode(query_audio, fmt)

        decoded = decode_audio(data[: len(data) // 2])

        assert 0 < decoded.duration_s < len(query_audio) / SAMPLE_RATE

    def test_truncated_m4a_is_corrupt_not_unsupported(
        self, query_audio: npt.NDArray[np.float32]
    ) -> None:
        data = encode(query_audio, "m4a-aac")  # its index (moov) comes last

        with pytest.raises(AudioError, match="MP4/M4A audio is corrupt or truncated") as info:
            decode_audio(data[: len(data) // 2])

        assert info.value.status_code == 422

    def test_limits(self, query_audio: npt.NDArray[np.float32]) -> None:
        data = encode(query_audio, "wav")

        with pytest.raises(AudioError, match="at most 100 bytes") as size:
            decode_audio(data, max_bytes=100)
        with pytest.raises(AudioError, match=r"longer than 0\.5 s") as length:
            decode_audio(data, max_seconds=0.5)

        assert size.value.status_code == 413
        assert length.value.status_code == 413
        check_size(10, 10)

    def test_pcm_chunks(self) -> None:
        samples = pcm16_to_float(np.array([0, 16384, -32768], dtype="<i2").tobytes())

        assert samples.tolist() == [0.0, 0.5, -1.0]
        with pytest.raises(AudioError, match="even"):
            pcm16_to_float(b"\x00")

    def test_audio_error_status_is_checked(self) -> None:
        with pytest.raises(ValueError, match="413, 415 or 422"):
            AudioError(500, "no")


class TestRecognizerSetting:
    def test_settings_then_default(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The settings read PRODUCTSEARCH_SPEECH_RECOGNIZER; the route reads only them."""
        assert DEFAULT_SPEECH_RECOGNIZER == "en=moonshine,pl=whisper,prior=pl:4"
        assert speech_recognizer_spec() == DEFAULT_SPEECH_RECOGNIZER
        assert Settings().speech_recognizer == DEFAULT_SPEECH_RECOGNIZER
        monkeypatch.setenv("PRODUCTSEARCH_SPEECH_RECOGNIZER", "whisper")
        assert speech_recognizer_spec(Settings()) == "whisper"
        # No settings: the environment is not read.
        assert speech_recognizer_spec() == DEFAULT_SPEECH_RECOGNIZER


# --- the HTTP API -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def snapshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_snapshot(tmp_path_factory.mktemp("voice-api"))


def make_client(snapshot_dir: Path, recognizer: Any = None) -> Iterator[TestClient]:
    settings = Settings(index_dir=snapshot_dir, text_embedder="none", max_k=MAX_K)
    app = create_app(settings)
    if recognizer is not None:
        app.state.speech_recognizer = recognizer
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def bare_client(snapshot_dir: Path) -> Iterator[TestClient]:
    """A client whose recogniser is never loaded (uploads refused before recognition)."""
    yield from make_client(snapshot_dir, recognizer=MoonshineRecognizer())


@pytest.fixture(scope="module")
def moonshine() -> MoonshineRecognizer:
    recognizer = MoonshineRecognizer()
    recognizer.warm_up()
    return recognizer


@pytest.fixture(scope="module")
def client(snapshot_dir: Path, moonshine: MoonshineRecognizer) -> Iterator[TestClient]:
    yield from make_client(snapshot_dir, recognizer=moonshine)


def post(
    client: TestClient, data: bytes, name: str = "query.wav", **form: Any
) -> tuple[int, dict[str, Any]]:
    response = client.post(
        "/search/voice",
        files={"audio": (name, data, "application/octet-stream")},
        data={key: str(value) for key, value in form.items()},
    )
    return response.status_code, response.json()


class TestBadUploads:
    @pytest.mark.parametrize(
        ("data", "status", "message"),
        [
            (b"", 422, "empty"),
            (b"\x00\x01garbage" * 50, 415, "not in a format"),
        ],
    )
    def test_corrupt(self, bare_client: TestClient, data: bytes, status: int, message: str) -> None:
        code, body = post(bare_client, data)

        assert code == status
        assert message in body["detail"]

    def test_oversized(self, bare_client: TestClient) -> None:
        code, body = post(bare_client, b"\x00" * (5 * 1024 * 1024 + 1))

        assert code == 413
        assert "at most 5,242,880 bytes" in body["detail"]

    def test_too_long(self, bare_client: TestClient) -> None:
        code, body = post(bare_client, encode(silence(31.0), "ogg-opus"), "long.ogg")

        assert code == 413
        assert "longer than 30 s" in body["detail"]

    def test_missing_audio_field(self, bare_client: TestClient) -> None:
        response = bare_client.post("/search/voice", data={"k": "3"})

        assert response.status_code == 422

    def test_k_above_max(self, bare_client: TestClient) -> None:
        code, body = post(bare_client, b"x", k=MAX_K + 1)

        assert code == 422
        assert body["detail"][0]["loc"] == ["query", "k"]

    @pytest.mark.parametrize("lang", ["de", "pl-PL", "xx_YY", "123"])
    def test_unknown_language_before_any_decoding(self, bare_client: TestClient, lang: str) -> None:
        # The moonshine-only client speaks English: the language is refused before the
        # (undecodable) upload is read or any model loaded.
        code, body = post(bare_client, b"x", lang=lang)

        assert code == 422
        assert body["detail"][0]["loc"] == ["query", "lang"]
        assert "is not supported; supported: en" in body["detail"][0]["msg"]

    def test_bad_filter(self, bare_client: TestClient) -> None:
        code, body = post(bare_client, b"x", attr="nocolon")

        assert code == 422
        assert body["detail"][0]["loc"] == ["query", "attr"]


@pytest.mark.slow
class TestVoiceSearch:
    @pytest.mark.parametrize("fmt", list(FORMATS))
    def test_every_format_is_searched(
        self, client: TestClient, query_audio: npt.NDArray[np.float32], fmt: str
    ) -> None:
        code, body = post(client, encode(query_audio, fmt), FORMATS[fmt][3], k=3)

        assert code == 200, body
        assert "sofa" in body["transcript"].lower()
        assert body["query"] == "leather sofa"
        assert body["hits"][0]["id"] == "SOFA-2"  # Bergen leather sofa
        assert len(body["hits"]) <= 3
        assert body["alternatives"][0]["text"] == body["transcript"]
        assert body["language"] == "en"
        assert body["recognizer"] == "moonshine"
        assert body["audio_seconds"] == pytest.approx(len(query_audio) / SAMPLE_RATE, abs=0.1)
        assert body["message"] is None
        assert body["timings"]["recognize_ms"] > 0

    def test_filters_and_facets(
        self, client: TestClient, query_audio: npt.NDArray[np.float32]
    ) -> None:
        code, body = post(
            client, encode(query_audio, "wav"), brand="Casa", facets="brand", price_max=600
        )

        assert code == 200, body
        assert [hit["id"] for hit in body["hits"]] == ["SOFA-3"]
        assert body["facets"]["brand"][0]["value"] == "Casa"

    def test_silence_is_an_empty_answer(self, client: TestClient) -> None:
        code, body = post(client, encode(silence(2.0), "webm-opus"), "silence.webm")

        assert code == 200
        assert body["transcript"] == ""
        assert body["query"] == ""
        assert body["hits"] == []
        assert body["total"] == 0
        assert "no speech" in body["message"]

    def test_unsupported_language(
        self, client: TestClient, query_audio: npt.NDArray[np.float32]
    ) -> None:
        code, body = post(client, encode(query_audio, "wav"), lang="pl")

        assert code == 422
        assert body["detail"][0]["loc"] == ["query", "lang"]
        assert "'pl' is not supported; supported: en" in body["detail"][0]["msg"]

    def test_catalogue_correction_is_reported(self, client: TestClient) -> None:
        # "walnut" said as two words sounds like "wall nut": the catalogue has "walnut".
        audio = np.concatenate([silence(0.3), speak("wall nut dining chair"), silence(0.3)])

        code, body = post(client, encode(audio, "wav"))

        assert code == 200, body
        assert "walnut" in body["query"]
        assert body["hits"][0]["id"] == "CHAIR-2"


@pytest.mark.slow
class TestVoiceStream:
    def stream(
        self, client: TestClient, audio: npt.NDArray[np.float32], **params: Any
    ) -> list[dict[str, Any]]:
        query = "&".join(f"{k}={v}" for k, v in params.items())
        messages = []
        with client.websocket_connect(f"/search/voice/stream?{query}") as ws:
            pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
            chunk = SAMPLE_RATE // 4 * 2  # 250 ms of 16-bit samples
            for start in range(0, len(pcm), chunk):
                ws.send_bytes(pcm[start : start + chunk])
            ws.send_text("end")
            while True:
                message = ws.receive_json()
                messages.append(message)
                if message["type"] in ("final", "error"):
                    break
        return messages

    def test_partials_then_final(self, client: TestClient) -> None:
        audio = np.concatenate([silence(0.3), speak("oak dining table", 1.3), silence(0.5)])

        messages = self.stream(client, audio, k=3)

        partials = [m for m in messages if m["type"] == "partial"]
        final = messages[-1]
        assert partials, messages
        assert all(set(m) == {"type", "transcript", "query", "hits"} for m in partials)
        assert final["type"] == "final"
        assert "table" in final["transcript"].lower()
        assert final["hits"][0]["id"] == "TABLE-1"
        assert len(final["hits"]) <= 3

    def test_other_sample_rates_are_resampled(self, client: TestClient) -> None:
        from scipy.signal import resample_poly

        audio = np.concatenate([silence(0.3), speak("leather sofa"), silence(0.3)])
        at_48k = resample_poly(audio, 3, 1).astype(np.float32)

        final = self.stream(client, at_48k, sample_rate=48_000)[-1]

        assert final["type"] == "final"
        assert final["hits"][0]["id"] == "SOFA-2"

    def test_silence(self, client: TestClient) -> None:
        final = self.stream(client, silence(1.0))[-1]

        assert final["type"] == "final"
        assert final["transcript"] == ""
        assert final["hits"] == []

    def test_odd_chunk_is_an_error(self, client: TestClient) -> None:
        with client.websocket_connect("/search/voice/stream") as ws:
            ws.send_bytes(b"\x00\x01\x02")
            message = ws.receive_json()

        assert message["type"] == "error"
        assert message["status"] == 422
        assert json.dumps(message)


class ScriptedRecognizer:
    """A recogniser that hears a fixed list of readings (no model: the API path only)."""

    name = "scripted"
    languages: tuple[str, ...] = ("en",)

    def __init__(self, readings: list[tuple[str, float]]) -> None:
        self.readings = readings

    def warm_up(self) -> None:
        pass

    def transcribe(
        self, audio: npt.NDArray[np.float32], hints: Any = (), language: str | None = None
    ) -> Transcript:
        alternatives = tuple(Alternative(text, conf) for text, conf in self.readings)
        return Transcript(alternatives[0].text, alternatives, "en", (), len(audio) / SAMPLE_RATE)

    def stream(self, hints: Any = (), language: str | None = None) -> BufferedStream:
        return BufferedStream(self, hints, language)


class TestReadingChoice:
    def test_the_reading_that_fits_the_catalogue_is_searched(self, snapshot_dir: Path) -> None:
        # The recogniser slightly prefers a reading with a word the catalogue lacks.
        recognizer = ScriptedRecognizer([("oak dining chore", 0.81), ("oak dining chair", 0.80)])
        for client in make_client(snapshot_dir, recognizer=recognizer):
            code, body = post(client, encode(tone(), "wav"))

        assert code == 200
        assert body["transcript"] == "oak dining chore"
        assert [a["text"] for a in body["alternatives"]] == ["oak dining chore", "oak dining chair"]
        assert body["query"] == "oak dining chair"
        assert body["hits"][0]["title"] == "Oak dining chair"


def tone(seconds: float = 1.0) -> npt.NDArray[np.float32]:
    """A tone the scripted recogniser 'hears' (any audio will do)."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


class TestVoiceKeysAndExperiments:
    """Voice search obeys a search key's fixed filters and the shopper's A/B arm, as GET /search
    does, on the upload and on the stream."""

    @pytest.fixture()
    def shop(self, snapshot_dir: Path, tmp_path: Path) -> Iterator[tuple[TestClient, str, str]]:
        settings = Settings(
            index_dir=snapshot_dir,
            text_embedder="none",
            max_k=MAX_K,
            merch_db=tmp_path / "merch.sqlite3",
        )
        app = create_app(settings)
        app.state.speech_recognizer = ScriptedRecognizer([("sofa", 0.9)])
        with TestClient(app) as test_client:
            keys = app.state.security.keys
            _, admin = keys.create("merch", "admin")
            _, nordhem = keys.create(
                "nordhem", "search", filters=filters_from_dict({"brands": ["Nordhem"]})
            )
            experiment = {
                "variants": [
                    {"name": "control", "share": 0.5},
                    {"name": "b", "share": 0.5, "weights": {"retrievers": {"lexical": 1.0}}},
                ]
            }
            put = test_client.put(
                "/admin/experiments/voice-exp",
                json=experiment,
                headers={"Authorization": f"Bearer {admin}"},
            )
            assert put.status_code == 200, put.text
            yield test_client, admin, nordhem

    def test_upload_keeps_the_keys_filters_and_reports_the_arm(
        self, shop: tuple[TestClient, str, str]
    ) -> None:
        client, _, nordhem = shop
        auth = {"Authorization": f"Bearer {nordhem}"}
        response = client.post(
            "/search/voice",
            files={"audio": ("q.wav", encode(tone(), "wav"), "audio/wav")},
            data={"user_id": "shopper-7"},
            headers=auth,
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["hits"] and {h["brand"] for h in body["hits"]} == {"Nordhem"}
        typed = client.get("/search", params={"q": "sofa", "user_id": "shopper-7"}, headers=auth)
        assert body["variants"] == typed.json()["variants"]
        assert set(body["variants"]) == {"voice-exp"}

    def test_stream_keeps_the_keys_filters_and_reports_the_arm(
        self, shop: tuple[TestClient, str, str]
    ) -> None:
        client, _, nordhem = shop
        samples = (tone() * 32767).astype("<i2").tobytes()
        url = f"/search/voice/stream?api_key={nordhem}&session_id=s-9"
        with client.websocket_connect(url) as ws:
            ws.send_bytes(samples)
            ws.send_text("end")
            final = None
            while final is None:
                message = ws.receive_json()
                assert message["type"] != "error", message
                if message["type"] == "final":
                    final = message
        assert final["hits"] and {h["brand"] for h in final["hits"]} == {"Nordhem"}
        assert set(final["variants"]) == {"voice-exp"}


# --- Polish ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def polish_client(
    tmp_path_factory: pytest.TempPathFactory,
    routed: Any,  # noqa: F811 (the fixture imported above)
) -> Iterator[TestClient]:
    """A Polish shop served with the default recognisers (en=moonshine, pl=whisper)."""
    folder = tmp_path_factory.mktemp("voice-pl") / "snapshot"
    build_products(
        POLISH_PRODUCTS, folder, config=BuildConfig(languages=("pl", "en"), embedder="none")
    )
    yield from make_client(folder, recognizer=routed)


@pytest.mark.slow
class TestPolishVoice:
    def test_polish_without_lang_is_detected_and_found(
        self,
        polish_client: TestClient,
        polish_audio: npt.NDArray[np.float32],  # noqa: F811
    ) -> None:
        code, body = post(polish_client, encode(polish_audio, "ogg-opus"), "query.ogg", k=3)

        assert code == 200, body
        assert body["language"] == "pl"
        assert body["language_source"] == "detected"
        assert 0.5 < body["language_confidence"] <= 1
        assert body["recognizer"].startswith("whisper")
        assert body["timings"]["detect_ms"] > 0
        assert body["query"].startswith("lampa stojąca")
        assert body["hits"][0]["id"] == "LAM-1"

    def test_polish_given(
        self,
        polish_client: TestClient,
        polish_audio: npt.NDArray[np.float32],  # noqa: F811
    ) -> None:
        code, body = post(polish_client, encode(polish_audio, "wav"), lang="pl-PL")

        assert code == 200, body
        assert body["language"] == "pl"
        assert body["language_source"] == "given"
        assert body["language_confidence"] is None
        assert body["timings"]["detect_ms"] == 0
        assert body["hits"][0]["id"] == "LAM-1"

    def test_english_without_lang_goes_to_moonshine(self, polish_client: TestClient) -> None:
        audio = np.concatenate([silence(0.3), speak("cordless drill"), silence(0.3)])

        code, body = post(polish_client, encode(audio, "wav"))

        assert code == 200, body
        assert body["language"] == "en"
        assert body["recognizer"] == "moonshine"
        assert body["hits"][0]["id"] == "DRL-1"

    def test_unsupported_language_lists_the_configured_ones(
        self,
        polish_client: TestClient,
        polish_audio: npt.NDArray[np.float32],  # noqa: F811
    ) -> None:
        code, body = post(polish_client, encode(polish_audio, "wav"), lang="de")

        assert code == 422
        assert body["detail"][0]["msg"].endswith("'de' is not supported; supported: en, pl")

    def test_stream_detects_polish(
        self,
        polish_client: TestClient,
        polish_audio: npt.NDArray[np.float32],  # noqa: F811
    ) -> None:
        audio = np.concatenate([silence(0.3), polish_audio, silence(0.5)])

        final = TestVoiceStream().stream(polish_client, audio, k=3)[-1]

        assert final["type"] == "final"
        assert final["language"] == "pl"
        assert final["language_source"] == "detected"
        assert final["hits"][0]["id"] == "LAM-1"

    def test_stream_refuses_an_unsupported_language(self, polish_client: TestClient) -> None:
        with polish_client.websocket_connect("/search/voice/stream?lang=de") as ws:
            message = ws.receive_json()

        assert message["type"] == "error"
        assert message["status"] == 422
        assert "supported: en, pl" in message["detail"]


@pytest.mark.slow
class TestRecognizerThatCannotLoad:
    def test_answers_503_naming_the_extra(
        self, snapshot_dir: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # The default configuration (en=moonshine, pl=whisper) with faster-whisper missing:
        # voice search is refused with the extra to install, never served by Moonshine alone.
        monkeypatch.setitem(sys.modules, "faster_whisper", None)
        settings = Settings(index_dir=snapshot_dir, text_embedder="none", max_k=MAX_K)
        with TestClient(create_app(settings)) as client:
            code, body = post(client, encode(tone(), "wav"), lang="en")

        assert code == 503
        assert "whisper needs faster-whisper" in body["detail"]
        assert "pip install 'productsearch[voice]'" in body["detail"]
