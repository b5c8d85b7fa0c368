"""Voice search: ``POST /search/voice`` (an uploaded recording) and a WebSocket stream.

The recogniser and the catalogue corrector are built once, on first use, and kept on
``app.state`` (tests may put a loaded recogniser in ``app.state.speech_recognizer`` first).
Recognisers are configured per language (``en=moonshine,pl=whisper``, a
:class:`~models.speech_router.SpeechRouter`): a request's ``lang`` picks one, and without it
the language is detected from the recording among the configured ones. The answer says which
language and recogniser were used, and whether the language was given or detected.

A voice answer is recorded as a ``GET /search`` answer is
(:func:`api.routes.search.record_answer`) and carries its ``query_id``. The recorded query is
the one searched (the transcript mapped onto catalogue terms), not the raw transcript: the hits
are the answer to it, so clicks are attributed to the query that ranked them, and analytics
count "leather sofa" rather than each way a recogniser misheard it. The stream's partial
answers are not recorded (keystrokes of a spoken query); its final answer is.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Annotated, Any, Literal

import anyio.to_thread
import numpy as np
from fastapi import (
    APIRouter,
    File,
    Form,
    HTTPException,
    Query,
    Request,
    UploadFile,
    WebSocket,
    WebSocketDisconnect,
)
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection
from starlette.types import Message

from api.audio import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_SECONDS,
    TARGET_RATE,
    check_size,
    decode_audio,
    pcm16_to_float,
)
from api.deps import EngineDep, SettingsDep, serve_variants
from api.errors import websocket_error
from api.routes.search import (
    ChannelForm,
    SessionIdForm,
    UserIdForm,
    parse_facets,
    parse_filters,
    record_answer,
)
from api.schemas import FacetValuePublic, SearchHitPublic
from api.security import SearchKeyDep, merge_filters
from models.speech import SpeechRecognizer, Transcript
from models.speech_router import SpeechRouter, UnsupportedLanguageError, load_speech_recognizer
from search.engine import SearchEngine
from search.errors import InvalidRequestError, SearchServiceError
from search.tuning import Tuning
from search.types import Availability, Filters, SearchRequest, SearchResult
from search.voice import Correction, VoiceOutcome, VoiceQueryCorrector, search_readings

router = APIRouter(tags=["voice"])

DEFAULT_SPEECH_RECOGNIZER = "en=moonshine,pl=whisper,prior=pl:4"
"""The recognisers used when nothing is configured: English by Moonshine, Polish by whisper
base, which also detects the language of requests without ``lang``, Polish weighed 4 to 1 (a
Polish-first shop; see :mod:`models.speech_router`)."""

HINT_LIMIT = 1_000
"""Catalogue words and phrases passed to recognisers as hints."""


def speech_recognizer_spec(settings: Any = None) -> str:
    """The configured recogniser spec.

    Args:
        settings: Service settings; their ``speech_recognizer`` field wins when present.

    Returns:
        ``settings.speech_recognizer`` (which the settings read from
        ``PRODUCTSEARCH_SPEECH_RECOGNIZER``), else :data:`DEFAULT_SPEECH_RECOGNIZER`.
    """
    configured = getattr(settings, "speech_recognizer", None)
    if configured:
        return str(configured)
    return DEFAULT_SPEECH_RECOGNIZER


@dataclass(frozen=True, slots=True)
class VoiceSearch:
    """What voice search needs besides the engine: the recognisers and the catalogue corrector.

    Attributes:
        recognizer: The loaded recognisers, one per language.
        corrector: Maps transcripts onto the serving catalogue.
        hints: Catalogue words and phrases passed to the recogniser.
    """

    recognizer: SpeechRouter
    corrector: VoiceQueryCorrector
    hints: tuple[str, ...]

    @classmethod
    def build(cls, engine: SearchEngine, recognizer: SpeechRecognizer) -> VoiceSearch:
        """Warm the recognisers and index the catalogue's words and title phrases.

        Args:
            engine: The serving engine.
            recognizer: A recogniser, or a :class:`SpeechRouter` of one per language (weights
                are loaded here; one that cannot load raises ImportError naming its extra).

        Returns:
            The ready voice search.
        """
        router = SpeechRouter.of(recognizer)
        router.warm_up()
        corrector = VoiceQueryCorrector.from_products(
            engine.vocabulary, engine.analyzer, engine.store.products
        )
        # The languages' own indexes are made now, not by the first shopper speaking one.
        corrector.prepare(router.languages)
        return cls(router, corrector, corrector.hints(HINT_LIMIT))


_build_lock = threading.Lock()


def _recognizer(app: Any, settings: Any) -> SpeechRecognizer:
    """The configured recogniser(s), built (not loaded) on first use."""
    recognizer: SpeechRecognizer | None = getattr(app.state, "speech_recognizer", None)
    if recognizer is not None:
        return recognizer
    with _build_lock:
        recognizer = getattr(app.state, "speech_recognizer", None)
        if recognizer is None:
            spec = speech_recognizer_spec(settings)
            try:
                recognizer = load_speech_recognizer(spec)
            except (ValueError, ImportError) as exc:
                raise HTTPException(503, f"voice search is not available: {exc}") from exc
            if recognizer is None:
                raise HTTPException(503, "voice search is turned off (speech recognizer 'none')")
            app.state.speech_recognizer = recognizer
    return recognizer


def checked_language(app: Any, settings: Any, lang: str | None) -> str | None:
    """The request's language as a base code (``pl-PL`` -> ``pl``), or None to detect it;
    checked against the configured languages before any audio is read or model loaded.

    Raises:
        HTTPException: 503 when voice search is off or misconfigured.
        InvalidRequestError: No recogniser speaks it (422 naming ``lang`` and listing the
            supported languages).
    """
    code = _language(lang)
    try:
        return SpeechRouter.of(_recognizer(app, settings)).check_language(code)
    except UnsupportedLanguageError as exc:
        raise InvalidRequestError("lang", str(exc)) from exc


def _voice_search(app: Any, engine: SearchEngine, settings: Any) -> VoiceSearch:
    voice: VoiceSearch | None = getattr(app.state, "voice_search", None)
    if voice is not None and getattr(app.state, "voice_search_engine", None) is engine:
        return voice
    recognizer = _recognizer(app, settings)
    with _build_lock:
        voice = getattr(app.state, "voice_search", None)
        if voice is not None and getattr(app.state, "voice_search_engine", None) is engine:
            return voice
        try:
            voice = VoiceSearch.build(engine, recognizer)
        except ImportError as exc:
            raise HTTPException(503, f"voice search is not available: {exc}") from exc
        app.state.voice_search = voice
        app.state.voice_search_engine = engine
        return voice


async def get_voice_search(
    request: Request, engine: EngineDep, settings: SettingsDep
) -> VoiceSearch:
    """The application's voice search, built on first use.

    Raises:
        HTTPException: 503 when no recogniser is configured or its package is missing.
    """
    return await run_in_threadpool(_voice_search, request.app, engine, settings)


# --- schemas ------------------------------------------------------------------------------------


class AlternativePublic(BaseModel):
    """One reading of the recording."""

    text: str
    confidence: float = Field(description="0..1; comparable within one response only.")


class ChangePublic(BaseModel):
    """Spoken words replaced by catalogue words."""

    heard: str
    catalogue: str
    similarity: float


class VoiceTimingsPublic(BaseModel):
    """Where the time went, in milliseconds."""

    decode_ms: float
    recognize_ms: float = Field(description="Recognition, language detection included.")
    detect_ms: float = Field(default=0.0, description="Language detection (0 when given).")
    search_ms: float


class VoiceSearchResponse(BaseModel):
    """A voice query: what was heard, what was searched, and the results."""

    transcript: str = Field(description='What the recogniser heard; "" when there was no speech.')
    alternatives: list[AlternativePublic] = Field(description="Readings, best first.")
    language: str | None = Field(description="The language the recording was heard in.")
    language_source: Literal["given", "detected", "default"] = Field(
        default="given",
        description="given: the request's lang; detected: from the recording, among the "
        "configured languages; default: the first configured language (a single language, "
        "or no speech to detect from).",
    )
    language_confidence: float | None = Field(
        default=None,
        description="For a detected language, its share of the configured languages' "
        "probability (0..1).",
    )
    query: str = Field(
        description="The query actually searched: the reading (transcript or an alternative) "
        "that best fits the catalogue, mapped onto catalogue terms."
    )
    changes: list[ChangePublic] = Field(description="Spoken words replaced by catalogue terms.")
    corrected_query: str | None = Field(
        description="The searched query after the engine's own spelling correction, or null."
    )
    message: str | None = Field(
        default=None, description='Set when nothing was searched ("no speech was heard").'
    )
    audio_seconds: float
    recognizer: str = Field(description="The recogniser that heard the recording.")
    total: int
    k: int
    hits: list[SearchHitPublic]
    facets: dict[str, list[FacetValuePublic]]
    timings: VoiceTimingsPublic
    took_ms: float
    variants: dict[str, str] = Field(
        default_factory=dict,
        description="The shopper's A/B test arms (experiment id to variant), as for GET /search; "
        "send them back on the shopper's events.",
    )
    query_id: str | None = Field(
        default=None,
        description="Id of this answer, as for GET /search: send it as the query_id of the "
        "click, add_to_cart and purchase events of its products (with the same user_id or "
        "session_id). The recorded query is `query`. null when nothing was searched (no "
        "speech) or with events off.",
    )


# --- the pipeline ------------------------------------------------------------------------------


NO_SPEECH = "no speech was heard; try again closer to the microphone"


def _readings(transcript: Transcript) -> list[tuple[str, float]]:
    if transcript.alternatives:
        return [(a.text, a.confidence) for a in transcript.alternatives]
    return [(transcript.text, 1.0)] if transcript.text else []


@dataclass(frozen=True, slots=True)
class _Tuned:
    """The serving engine with one shopper's tuning (the version's or their A/B arm's): what
    a voice search's readings are searched with."""

    engine: SearchEngine
    tuning: Tuning

    def search(self, request: SearchRequest) -> SearchResult:
        return self.engine.search(request, self.tuning)


def _search(engine: _Tuned, text: str, template: SearchRequest) -> SearchResult | None:
    # ``template`` carries everything but the text: k, filters (the key's fixed ones merged),
    # facets and the shopper (personalisation).
    if not text.strip():
        return None
    return engine.search(replace(template, text=text))


def _search_transcript(
    voice: VoiceSearch,
    engine: _Tuned,
    transcript: Transcript,
    template: SearchRequest,
) -> VoiceOutcome:
    # Every reading is corrected (in its language) and searched; the one whose words best fit
    # the catalogue (weighed with the recogniser's confidence) is answered.
    return search_readings(
        voice.corrector,
        _readings(transcript),
        lambda text: _search(engine, text, template),
        language=transcript.language,
    )


def _response(
    voice: VoiceSearch,
    transcript: Transcript,
    correction: Correction,
    result: SearchResult | None,
    *,
    k: int,
    decode_ms: float,
    search_ms: float,
    started: float,
    variants: Mapping[str, str] | None = None,
    lang: str | None = None,
) -> VoiceSearchResponse:
    detection = transcript.detection
    source: Literal["given", "detected", "default"] = (
        "given" if lang is not None else "detected" if detection is not None else "default"
    )
    return VoiceSearchResponse(
        transcript=transcript.text,
        alternatives=[
            AlternativePublic(text=a.text, confidence=round(a.confidence, 4))
            for a in transcript.alternatives
        ],
        language=transcript.language,
        language_source=source,
        language_confidence=round(detection.probability, 4) if detection else None,
        query=correction.text,
        changes=[
            ChangePublic(heard=c.heard, catalogue=c.catalogue, similarity=c.similarity)
            for c in correction.changes
        ],
        corrected_query=result.corrected_query if result is not None else None,
        message=NO_SPEECH if result is None else None,
        audio_seconds=round(transcript.duration_s, 3),
        recognizer=transcript.recognizer or voice.recognizer.name,
        total=result.total if result is not None else 0,
        k=k,
        hits=[SearchHitPublic.from_hit(hit) for hit in result.hits] if result else [],
        facets={
            name: [FacetValuePublic.from_facet_value(b) for b in buckets]
            for name, buckets in (result.facets.items() if result else ())
        },
        timings=VoiceTimingsPublic(
            decode_ms=round(decode_ms, 2),
            recognize_ms=round(transcript.took_s * 1000, 2),
            detect_ms=round(detection.took_s * 1000, 2) if detection else 0.0,
            search_ms=round(search_ms, 2),
        ),
        took_ms=round((time.perf_counter() - started) * 1000, 2),
        variants=dict(variants or {}),
    )


def _language(lang: str | None) -> str | None:
    # Browsers send BCP 47 tags ("en-US", "pl-PL"); recognisers know base languages.
    return lang.strip().replace("_", "-").split("-")[0].lower() or None if lang else None


def _recognise_and_search(
    voice: VoiceSearch,
    engine: _Tuned,
    samples: np.ndarray,
    lang: str | None,
    template: SearchRequest,
) -> tuple[Transcript, Correction, SearchResult | None, float]:
    transcript = voice.recognizer.transcribe(samples, voice.hints, lang)
    started = time.perf_counter()
    outcome = _search_transcript(voice, engine, transcript, template)
    return transcript, outcome.correction, outcome.result, (time.perf_counter() - started) * 1000


@router.post(
    "/search/voice",
    response_model=VoiceSearchResponse,
    summary="Search the catalogue by voice",
    responses={
        413: {"description": "The recording is too large or too long."},
        415: {"description": "The upload is not audio the service can decode."},
        422: {"description": "The recording is corrupt or empty, or a parameter is invalid."},
        503: {"description": "Voice search is not configured."},
    },
)
async def search_by_voice(
    request: Request,
    engine: EngineDep,
    settings: SettingsDep,
    key: SearchKeyDep,
    audio: Annotated[
        UploadFile,
        File(
            description="The recording: WAV, FLAC, OGG/Opus, WebM/Opus, M4A/AAC or MP3, "
            f"at most {DEFAULT_MAX_BYTES // (1024 * 1024)} MB and {DEFAULT_MAX_SECONDS:g} s."
        ),
    ],
    k: Annotated[int, Form(ge=1, description="Hits to return, at most the service's max_k.")] = 10,
    lang: Annotated[
        str | None,
        Form(
            max_length=8,
            description="Spoken language (en, pl; a BCP 47 tag such as pl-PL is read as its "
            "language). One the service is not configured for is a 422 listing those it is; "
            "absent, the language is detected from the recording.",
        ),
    ] = None,
    brand: Annotated[list[str], Form(description="Any of these brands.")] = [],  # noqa: B006
    category: Annotated[
        list[str], Form(description='Category path or prefix, "Furniture > Sofas".')
    ] = [],  # noqa: B006
    attr: Annotated[list[str], Form(description='Attribute filter "name:value".')] = [],  # noqa: B006
    price_min: Annotated[float | None, Form(ge=0, allow_inf_nan=False)] = None,
    price_max: Annotated[float | None, Form(ge=0, allow_inf_nan=False)] = None,
    availability: Annotated[list[Availability], Form()] = [],  # noqa: B006
    facets: Annotated[str, Form(description="Comma-separated facets to count.")] = "",
    user_id: UserIdForm = None,
    session_id: SessionIdForm = None,
    channel: ChannelForm = None,
) -> VoiceSearchResponse:
    """Transcribe a recorded query, map it onto catalogue terms and search.

    Silence or a recording without speech answers 200 with an empty transcript, no hits and a
    ``message``.

    Raises:
        AudioError: An unusable recording (answered 413, 415 or 422 by :mod:`api.errors`).
        InvalidRequestError: A parameter is malformed (answered 422 naming it).
    """
    started = time.perf_counter()
    if k > settings.max_k:
        raise InvalidRequestError("k", f"must be at most {settings.max_k}, got {k}")
    template = SearchRequest(
        k=k,
        filters=merge_filters(
            parse_filters(brand, category, attr, price_min, price_max, availability),
            key.filters if key is not None else None,
        ),
        facets=parse_facets(facets, engine.facet_names()),
        as_you_type=False,
        user_id=user_id,
        session_id=session_id,
        channel=channel,
    )
    # Checked before the upload is read or a model loaded: a bad lang costs nothing.
    lang = checked_language(request.app, settings, lang)
    if audio.size is not None:
        check_size(audio.size)
    data = await audio.read(DEFAULT_MAX_BYTES + 1)
    decoded = await run_in_threadpool(decode_audio, data)
    decode_ms = (time.perf_counter() - started) * 1000
    # The recogniser loads on first use, after the upload is known to be usable.
    voice = await get_voice_search(request, engine, settings)
    tuning, assignment = serve_variants(request, engine, user_id, session_id)
    served = _Tuned(engine, tuning)
    # In the voice pool, as streams are: recognition never takes the searches' threads.
    transcript, correction, result, search_ms = await anyio.to_thread.run_sync(
        _recognise_and_search,
        voice,
        served,
        decoded.samples,
        lang,
        template,
        limiter=transcribe_limiter(request.app),
    )
    response = _response(
        voice,
        transcript,
        correction,
        result,
        k=k,
        decode_ms=decode_ms,
        search_ms=search_ms,
        started=started,
        variants=assignment.variants,
        lang=lang,
    )
    response.query_id = _record(request, template, correction, result, assignment.variants)
    return response


def _record(
    http: HTTPConnection,
    template: SearchRequest,
    correction: Correction,
    result: SearchResult | None,
    variants: Mapping[str, str],
) -> str | None:
    """Record a voice answer under the query searched (:func:`record_answer`); None when
    nothing was searched."""
    if result is None:
        return None
    return record_answer(http, replace(template, text=correction.text), result, variants)


# --- streaming -----------------------------------------------------------------------------------


def _resample(samples: np.ndarray, rate: int) -> np.ndarray:
    if rate == TARGET_RATE:
        return samples
    from scipy.signal import resample_poly

    divisor = np.gcd(rate, TARGET_RATE)
    return resample_poly(samples, TARGET_RATE // divisor, rate // divisor).astype(np.float32)


class StreamSlots:
    """Counts the open voice streams, in all, per API key and per client, against the caps.

    Streams are long-lived: without caps, 50 idle sockets stayed open and 6 busy ones took
    search p99 from 75 ms to 7.8 s. Kept on ``app.state.voice_slots``.

    Args:
        total: Streams the service holds at most.
        per_key: Streams one API key holds at most.
        per_client: Streams one client (address) holds at most.
    """

    def __init__(self, total: int, per_key: int, per_client: int) -> None:
        self.total = total
        self.per_key = per_key
        self.per_client = per_client
        self.open = 0
        self._keys: dict[str, int] = {}
        self._clients: dict[str, int] = {}
        self._lock = threading.Lock()

    def acquire(self, key_id: str | None, client: str) -> tuple[int, str] | None:
        """Take a slot for a stream.

        Returns:
            None when the stream may open, else the close code and the reason: 1013 (try again
            later) when the service is full, 1008 (policy) when the key or client is at its cap.
        """
        with self._lock:
            if self.open >= self.total:
                return 1013, f"voice search is busy ({self.total} streams open): try again later"
            if key_id is not None and self._keys.get(key_id, 0) >= self.per_key:
                return 1008, f"this API key already has {self.per_key} voice streams open"
            if self._clients.get(client, 0) >= self.per_client:
                return 1008, f"this client already has {self.per_client} voice streams open"
            self.open += 1
            if key_id is not None:
                self._keys[key_id] = self._keys.get(key_id, 0) + 1
            self._clients[client] = self._clients.get(client, 0) + 1
            return None

    def release(self, key_id: str | None, client: str) -> None:
        """Give back the slot :meth:`acquire` took."""
        with self._lock:
            self.open -= 1
            for counts, name in ((self._keys, key_id), (self._clients, client)):
                if name is None:
                    continue
                left = counts.get(name, 0) - 1
                if left > 0:
                    counts[name] = left
                else:
                    counts.pop(name, None)


def voice_slots(app: Any) -> StreamSlots:
    """The application's :class:`StreamSlots`, made from its settings on first use."""
    slots: StreamSlots | None = getattr(app.state, "voice_slots", None)
    if slots is None:
        with _build_lock:
            slots = getattr(app.state, "voice_slots", None)
            if slots is None:
                settings = app.state.settings
                slots = StreamSlots(
                    settings.voice_streams_total,
                    settings.voice_streams_per_key,
                    settings.voice_streams_per_client,
                )
                app.state.voice_slots = slots
    return slots


def transcribe_limiter(app: Any) -> anyio.CapacityLimiter:
    """The pool voice work (recognition and the searches of partials) runs in: a few threads of
    its own, so voice never takes the request threads searches need, and a burst of streams
    waits its turn instead of taking every core."""
    limiter: anyio.CapacityLimiter | None = getattr(app.state, "voice_limiter", None)
    if limiter is None:
        with _build_lock:
            limiter = getattr(app.state, "voice_limiter", None)
            if limiter is None:
                workers = getattr(app.state.settings, "voice_transcribe_workers", 2)
                limiter = anyio.CapacityLimiter(workers)
                app.state.voice_limiter = limiter
    return limiter


class _StreamClosed(Exception):
    """Ends a stream with a close code and a reason (sent to the client)."""

    def __init__(self, code: int, status: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.status = status
        self.reason = reason


_END_TEXTS = ("end", '{"event": "end"}', '{"event":"end"}')
_END = object()


async def _close(websocket: WebSocket, code: int, status: int, reason: str) -> None:
    """Send the error as JSON, then close with ``code`` and the reason (cut to the 123 bytes a
    close frame allows)."""
    try:
        await websocket.send_json({"type": "error", "status": status, "detail": reason})
        await websocket.close(code=code, reason=reason.encode()[:123].decode("utf-8", "ignore"))
    except (WebSocketDisconnect, RuntimeError):
        pass  # the client went away first


@router.websocket("/search/voice/stream")
async def stream_voice_search(
    websocket: WebSocket,
    key: SearchKeyDep,
    k: Annotated[int, Query(ge=1, le=100)] = 10,
    lang: Annotated[
        str | None,
        Query(max_length=8, description="Spoken language; absent: detected from the audio."),
    ] = None,
    sample_rate: Annotated[int, Query(ge=8_000, le=96_000)] = TARGET_RATE,
    user_id: Annotated[str | None, Query(max_length=200)] = None,
    session_id: Annotated[str | None, Query(max_length=200)] = None,
    channel: Annotated[Literal["web", "app"] | None, Query()] = None,
) -> None:
    """Stream a spoken query and get partial transcripts and results as the shopper speaks.

    Protocol: send binary messages of raw mono 16-bit little-endian PCM at ``sample_rate``
    (default 16 kHz); send the text message ``end`` (or ``{"event": "end"}``) when the shopper
    stops. The server answers JSON messages ``{"type": "partial", "transcript", "query", "hits"}``
    while audio arrives and one ``{"type": "final", ...}`` (the ``POST /search/voice`` answer plus
    ``"type"``) before closing. Errors are ``{"type": "error", "status", "detail"}`` followed by
    a close whose reason repeats the detail; a ``lang`` no recogniser is configured for is
    status 422 (close 1008) listing the supported languages. Without ``lang`` the language is
    detected from the first 1.5 s of speech, and the stream goes on in that language.

    Limits (settings ``voice_*``): a key and a client hold a few streams at most (1008 beyond),
    the service a bounded number (1013 beyond); a stream with no audio for
    ``voice_idle_timeout_s`` is closed with 1008; one whose untranscribed audio exceeds
    ``voice_max_lag_s`` (sent faster than it can be transcribed) is closed with 1013.
    """
    await websocket.accept()
    app = websocket.app
    engine: SearchEngine | None = getattr(app.state, "engine", None)
    if engine is None:
        await _close(websocket, 1011, 503, "not started")
        return
    settings = app.state.settings
    security = getattr(app.state, "security", None)
    client_of = getattr(security, "client_of", None)
    client = (
        client_of(websocket) if client_of else (websocket.client.host if websocket.client else "")
    )
    key_id = key.id if key is not None else None
    slots = voice_slots(app)
    refused = slots.acquire(key_id, client)
    if refused is not None:
        await _close(websocket, refused[0], 429 if refused[0] == 1008 else 503, refused[1])
        return
    try:
        await _stream(
            websocket,
            app,
            engine,
            settings,
            key,
            k,
            lang,
            sample_rate,
            user_id,
            session_id,
            channel,
        )
    finally:
        slots.release(key_id, client)


async def _stream(
    websocket: WebSocket,
    app: Any,
    engine: SearchEngine,
    settings: Any,
    key: Any,
    k: int,
    lang: str | None,
    sample_rate: int,
    user_id: str | None,
    session_id: str | None,
    channel: str | None,
) -> None:
    limiter = transcribe_limiter(app)
    try:
        lang = checked_language(app, settings, lang)
        voice = await run_in_threadpool(_voice_search, app, engine, settings)
    except HTTPException as exc:
        await _close(websocket, 1011, exc.status_code, str(exc.detail))
        return
    except SearchServiceError as exc:
        await _close(websocket, *websocket_error(exc))
        return
    k = min(k, settings.max_k)
    # The key's fixed filters and the shopper's A/B arm apply as on POST /search/voice.
    template = SearchRequest(
        k=k,
        filters=merge_filters(Filters(), key.filters if key is not None else None),
        as_you_type=False,
        user_id=user_id,
        session_id=session_id,
        channel=channel,
    )
    tuning, assignment = serve_variants(websocket, engine, user_id, session_id)
    served = _Tuned(engine, tuning)
    stream = voice.recognizer.stream(voice.hints, lang)
    idle_s = float(settings.voice_idle_timeout_s)
    max_lag = int(settings.voice_max_lag_s * sample_rate)
    limit = int(DEFAULT_MAX_SECONDS * sample_rate)
    # Audio is read as it arrives and transcribed in turn: the queue holds what is waiting, so
    # a stream that falls behind is seen (and closed with its reason) instead of buffering on.
    queue: asyncio.Queue[Any] = asyncio.Queue()
    waiting = [0]  # samples queued and not yet transcribed

    async def read() -> None:
        received = 0
        last_audio = anyio.current_time()
        while True:
            # anyio's scope, not asyncio.wait_for: on Python 3.11 wait_for can swallow the
            # cancellation that ends the stream's task group, and the stream then outlives it.
            message: Message | None = None
            with anyio.move_on_after(max(0.0, last_audio + idle_s - anyio.current_time())):
                message = await websocket.receive()
            if message is None:
                raise _StreamClosed(
                    1008, 408, f"no audio for {idle_s:g} s: closing the idle stream"
                )
            if message["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(message.get("code", 1000))
            if message.get("bytes") is not None:
                # An odd byte count raises AudioError: the stream ends as api.errors says.
                samples = pcm16_to_float(message["bytes"])
                received += len(samples)
                if received > limit:
                    raise _StreamClosed(
                        1009, 413, f"audio is longer than {DEFAULT_MAX_SECONDS:g} s"
                    )
                last_audio = anyio.current_time()
                waiting[0] += len(samples)
                if waiting[0] > max_lag:
                    raise _StreamClosed(
                        1013,
                        503,
                        f"fell behind: {waiting[0] / sample_rate:.1f} s of audio waiting to be "
                        f"transcribed (limit {settings.voice_max_lag_s:g} s); the service is "
                        "busy, try again",
                    )
                queue.put_nowait(samples)
                continue
            if (message.get("text") or "").strip() in _END_TEXTS:
                queue.put_nowait(_END)
                return

    async def work() -> None:
        while True:
            samples = await queue.get()
            if samples is _END:
                return
            partial = await anyio.to_thread.run_sync(
                stream.accept, _resample(samples, sample_rate), limiter=limiter
            )
            waiting[0] -= len(samples)
            if partial is not None:
                payload = await anyio.to_thread.run_sync(
                    _partial, voice, served, partial, template, stream.language, limiter=limiter
                )
                await websocket.send_json(payload)

    try:
        # The first to fail ends the stream (the other is cancelled); the reader ends normally
        # on "end", the worker once it has transcribed everything before it.
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(read)
                group.start_soon(work)
        except BaseExceptionGroup as failed:
            raise _first_error(failed) from None
        final_started = time.perf_counter()
        transcript = await anyio.to_thread.run_sync(stream.finish, limiter=limiter)
        search_started = time.perf_counter()
        outcome = await anyio.to_thread.run_sync(
            _search_transcript, voice, served, transcript, template, limiter=limiter
        )
        search_ms = (time.perf_counter() - search_started) * 1000
        response = _response(
            voice,
            transcript,
            outcome.correction,
            outcome.result,
            k=k,
            decode_ms=0.0,
            search_ms=search_ms,
            started=final_started,
            variants=assignment.variants,
            lang=lang,
        )
        response.query_id = _record(
            websocket, template, outcome.correction, outcome.result, assignment.variants
        )
        await websocket.send_json({"type": "final", **response.model_dump(mode="json")})
        await websocket.close()
    except WebSocketDisconnect:
        return
    except _StreamClosed as exc:
        await _close(websocket, exc.code, exc.status, exc.reason)
    except SearchServiceError as exc:
        await _close(websocket, *websocket_error(exc))


def _first_error(group: BaseExceptionGroup) -> BaseException:
    """The exception that ended a stream's task group (the first that is not a cancellation
    of its sibling)."""
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return _first_error(exc)
        return exc
    return group


def _partial(
    voice: VoiceSearch, engine: _Tuned, text: str, template: SearchRequest, language: str | None
) -> dict[str, Any]:
    correction = voice.corrector.correct(text, language)
    result = _search(engine, correction.text, template)
    hits = (
        [SearchHitPublic.from_hit(hit).model_dump(mode="json") for hit in result.hits]
        if result
        else []
    )
    return {"type": "partial", "transcript": text, "query": correction.text, "hits": hits}
