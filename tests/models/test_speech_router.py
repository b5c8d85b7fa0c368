"""A recogniser per language: configuration (fast), detection and routing on real models (slow).

Polish speech is made here with espeak-ng's Polish voice (Debian; ``.ci/run`` installs it), English
with piper's packaged voice (see :mod:`tests.models.test_speech`).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from models.speech import (
    SAMPLE_RATE,
    MoonshineRecognizer,
    SpeechRecognizer,
    WhisperRecognizer,
    packaged_whisper_base,
)
from models.speech_router import (
    DETECT_AFTER_S,
    SpeechRouter,
    UnsupportedLanguageError,
    load_speech_recognizer,
)
from tests.models.test_speech import espeak, silence, speak, stream_in_chunks, words


def router(spec: str) -> SpeechRouter:
    built = load_speech_recognizer(spec)
    assert isinstance(built, SpeechRouter)
    return built


class TestConfiguration:
    def test_default_pairs(self) -> None:
        routed = router("en=moonshine,pl=whisper")

        assert routed.languages == ("en", "pl")
        assert routed.default_language == "en"
        assert isinstance(routed.recognizer_for("en"), MoonshineRecognizer)
        whisper = routed.recognizer_for("pl")
        assert isinstance(whisper, WhisperRecognizer)
        assert whisper.languages == ("pl",)
        assert routed.detector is whisper  # whisper detects the language
        assert isinstance(routed, SpeechRecognizer)
        assert whisper._model is None  # nothing is loaded until warm_up()

    def test_one_spec_for_several_languages_is_one_recogniser(self) -> None:
        routed = router("pl=whisper, en=whisper")

        assert routed.recognizer_for("pl") is routed.recognizer_for("en")
        assert routed.recognizer_for("pl").languages == ("pl", "en")
        assert routed.default_language == "pl"

    def test_prior(self) -> None:
        assert router("en=moonshine,pl=whisper,prior=pl:4").prior == {"pl": 4.0}
        assert router("en=moonshine,pl=whisper").prior == {}

    def test_detect_none_and_explicit_detector(self) -> None:
        assert router("en=moonshine,pl=whisper,detect=none").detector is None
        routed = router("en=moonshine,pl=whisper:/tmp,detect=whisper")
        assert isinstance(routed.detector, WhisperRecognizer)
        assert routed.detector is not routed.recognizer_for("pl")  # another spec, own instance

    @pytest.mark.parametrize(
        ("spec", "message"),
        [
            ("pl=moonshine", "moonshine understands en, not 'pl'"),
            ("en=moonshine,en=whisper", "given twice"),
            ("en=moonshine,pl", "is not <lang>=<recognizer>"),
            ("english=moonshine", "must be 2-3 letters"),
            ("en=moonshine,pl=pocketsphinx", "pocketsphinx understands en, not 'pl'"),
            ("en=moonshine,pl=bogus", "unknown speech recognizer 'bogus'"),
            ("en=moonshine,de=vosk-ko", "understands ko, not 'de'"),
            ("en=moonshine,pl=whisper,detect=moonshine", "cannot detect languages"),
            ("en=moonshine,ko=vosk-ko", "need a language detector"),
            ("en=moonshine,pl=whisper,prior=de:2", "for one of en, pl"),
            ("en=moonshine,pl=whisper,prior=pl:0", "above 0"),
            ("en=moonshine,pl=whisper,prior=pl", "is not <lang>:<weight>"),
        ],
    )
    def test_bad_configuration_is_named(self, spec: str, message: str) -> None:
        with pytest.raises(ValueError, match=message):
            load_speech_recognizer(spec)

    def test_single_spec_is_routed_to_its_languages(self) -> None:
        moonshine = MoonshineRecognizer()
        routed = SpeechRouter.of(moonshine)

        assert routed.languages == ("en",)
        assert routed.detector is None
        assert routed.name == "moonshine"
        assert SpeechRouter.of(routed) is routed

    def test_languages_are_checked_and_listed(self) -> None:
        routed = router("en=moonshine,pl=whisper")

        assert routed.check_language("pl") == "pl"
        assert routed.check_language(None) is None
        with pytest.raises(
            UnsupportedLanguageError, match="'de' is not supported; supported: en, pl"
        ):
            routed.check_language("de")
        with pytest.raises(UnsupportedLanguageError):
            routed.stream(language="de")

    def test_a_backend_that_cannot_load_names_its_extra(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setitem(sys.modules, "faster_whisper", None)  # not installed
        routed = router("en=moonshine,pl=whisper")

        with pytest.raises(ImportError, match=r"pip install 'productsearch\[voice\]'"):
            routed.warm_up()


# --- real models ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def polish_audio(tmp_path_factory: pytest.TempPathFactory) -> npt.NDArray[np.float32]:
    """A Polish shopper's query spoken by espeak-ng's Polish voice."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    return espeak("lampa stojąca do salonu", "pl", tmp_path_factory.mktemp("pl"))


@pytest.fixture(scope="module")
def routed(tmp_path_factory: pytest.TempPathFactory) -> SpeechRouter:
    """The service default, en=moonshine,pl=whisper, with whisper joined into a test folder."""
    folder: Path = packaged_whisper_base(tmp_path_factory.mktemp("cache"))
    whisper = WhisperRecognizer(folder, languages=("pl",))
    built = SpeechRouter({"en": MoonshineRecognizer(), "pl": whisper}, detector=whisper)
    built.warm_up()
    return built


HINTS = ("lampa", "stojąca", "salonu", "krzesło", "ogrodowe", "żółte", "wiertarka", "sofa")


@pytest.mark.slow
class TestRouting:
    def test_whisper_detects_polish_and_english(
        self, routed: SpeechRouter, polish_audio: npt.NDArray[np.float32]
    ) -> None:
        polish = routed.detect(polish_audio)
        english = routed.detect(speak("cordless drill with a battery"))

        assert polish is not None and polish.language == "pl"
        assert english is not None and english.language == "en"
        assert 0.5 < polish.probability <= 1 and 0.5 < english.probability <= 1
        assert routed.detect(silence()) is None  # nothing to detect from

    def test_prior_weighs_the_detection(self, routed: SpeechRouter) -> None:
        english = speak("cordless drill with a battery")
        plain = routed.detect(english)
        weighed = SpeechRouter(
            routed.recognizers, detector=routed.detector, prior={"pl": 1e9}
        ).detect(english)

        assert plain is not None and weighed is not None
        assert plain.language == "en"
        assert weighed.language == "pl"  # an overwhelming prior wins
        assert [code for code, _ in weighed.shares] == ["pl", "en"]
        assert sum(p for _, p in weighed.shares) == pytest.approx(1.0)

    def test_polish_without_lang_goes_to_whisper(
        self, routed: SpeechRouter, polish_audio: npt.NDArray[np.float32]
    ) -> None:
        transcript = routed.transcribe(polish_audio, HINTS)

        assert transcript.language == "pl"
        assert transcript.recognizer.startswith("whisper")
        assert transcript.detection is not None and transcript.detection.language == "pl"
        assert words(transcript)[:2] == ["lampa", "stojąca"]
        assert transcript.took_s >= transcript.detection.took_s

    def test_english_without_lang_goes_to_moonshine(self, routed: SpeechRouter) -> None:
        transcript = routed.transcribe(speak("cordless drill"), HINTS)

        assert transcript.language == "en"
        assert transcript.recognizer == "moonshine"
        assert words(transcript) == ["cordless", "drill"]

    def test_given_language_is_not_detected(
        self, routed: SpeechRouter, polish_audio: npt.NDArray[np.float32]
    ) -> None:
        transcript = routed.transcribe(polish_audio, HINTS, "pl")

        assert transcript.detection is None
        assert transcript.language == "pl"
        assert "lampa" in words(transcript)

    def test_stream_detects_from_its_first_seconds(
        self, routed: SpeechRouter, polish_audio: npt.NDArray[np.float32]
    ) -> None:
        audio = np.concatenate([silence(0.3), polish_audio, silence(0.5)])
        assert len(audio) > DETECT_AFTER_S * SAMPLE_RATE
        stream = routed.stream(HINTS)

        partials = stream_in_chunks(stream, audio)
        final = stream.finish()

        assert stream.language == "pl"
        assert partials
        assert final.language == "pl" and final.recognizer.startswith("whisper")
        assert final.detection is not None
        assert "lampa" in words(final)

    def test_silent_stream_is_heard_in_the_default_language(self, routed: SpeechRouter) -> None:
        stream = routed.stream()
        stream_in_chunks(stream, silence(2.0))

        final = stream.finish()

        assert final.is_empty
        assert final.language == "en"

    def test_a_detected_language_that_hears_nothing_yields_to_the_runner_up(
        self, routed: SpeechRouter, polish_audio: npt.NDArray[np.float32]
    ) -> None:
        # Korean weighed far above Polish: detection says Korean, whose vosk grammar of Polish
        # catalogue words (none in its lexicon) hears nothing; whisper then hears it as Polish.
        korean = load_speech_recognizer("vosk-ko")
        assert korean is not None
        assert korean.transcribe(polish_audio, HINTS, "ko").is_empty
        both = SpeechRouter(
            {"ko": korean, "pl": routed.recognizer_for("pl")},
            detector=routed.detector,
            prior={"ko": 1e9},
        )

        transcript = both.transcribe(polish_audio, HINTS)
        stream = both.stream(HINTS)
        stream_in_chunks(stream, np.concatenate([polish_audio, silence(0.5)]))
        streamed = stream.finish()

        for heard in (transcript, streamed):
            assert heard.language == "pl"
            assert heard.recognizer.startswith("whisper")
            assert heard.detection is not None
            assert heard.detection.language == "pl"
            assert heard.detection.shares[0][0] == "ko"  # what detection said first
            assert "lampa" in words(heard)
        assert stream.language == "ko"  # the stream was heard in Korean until its end
