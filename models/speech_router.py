"""Building the configured recognisers: one per language, and the language detected when a
request does not name it (:func:`load_speech_recognizer` is the one factory of recognisers).

Configured as ``<lang>=<spec>`` pairs (``en=moonshine,pl=whisper``): each language is heard by the
recogniser its spec names (one instance per distinct spec, so ``en=whisper,pl=whisper`` loads
whisper once). A request that names no language is detected first by a
:class:`~models.speech.LanguageDetector` among the configured languages: by default the first
configured recogniser that can detect (whisper), or the one ``detect=<spec>`` names;
``detect=none`` hears every request without a language in the first language listed.

``prior=<lang>:<weight>`` weighs a language's detected probability before the choice (Bayes'
rule with the shop's own mix of languages): whisper was trained mostly on English and hears
robotic or noisy Polish as English often; a Polish-first shop says ``prior=pl:4`` (chosen on the
benchmark's tune split: Polish clips heard as English 31% -> 13%, English clips heard as Polish
3% -> 5%).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

import numpy as np

from models.speech import (
    SAMPLE_RATE,
    Audio,
    LanguageDetector,
    LanguageGuess,
    MoonshineRecognizer,
    PocketsphinxRecognizer,
    RecognitionStream,
    SpeechRecognizer,
    Transcript,
    VoskRecognizer,
    WhisperRecognizer,
    packaged_vosk_korean,
    speech_bounds,
)

SPEECH_BACKENDS = (
    "moonshine",
    "whisper",
    "whisper:<ctranslate2-model-folder>",
    "vosk:<model-folder>",
    "vosk-ko",
    "pocketsphinx",
    "none",
    "<lang>=<spec>,...[,detect=<spec>|none][,prior=<lang>:<weight>]",
)
"""Valid spec strings of :func:`load_speech_recognizer`."""

_LANGUAGE_CODE = re.compile(r"^[a-z]{2,3}$")

DETECT_AFTER_S = 1.5
"""Seconds of a stream's audio its language is detected from (once; the rest follows)."""

KEPT_S = 30.0
"""Seconds of a detected stream's audio kept for the runner-up language (the upload limit)."""


class UnsupportedLanguageError(ValueError):
    """A language no configured recogniser speaks.

    Attributes:
        language: The language asked for.
        supported: The configured languages.
    """

    def __init__(self, language: str, supported: Sequence[str]) -> None:
        self.language = language
        self.supported = tuple(supported)
        super().__init__(
            f"language {language!r} is not supported; supported: {', '.join(self.supported)}"
        )


class SpeechRouter:
    """Routes each utterance to the recogniser of its language (a :class:`SpeechRecognizer`).

    Args:
        recognizers: Language code -> recogniser, the default language first.
        detector: Detects the language of requests that do not give it; None hears them in the
            default language. Unused with a single language.
        name: Its name; by default the ``<lang>=<name>`` pairs.
        prior: Language code -> weight of its detected probability (1 when not given).

    Raises:
        ValueError: No recogniser, a malformed language code, a recogniser configured for a
            language it does not understand, or a prior for another language or not above 0.
    """

    def __init__(
        self,
        recognizers: Mapping[str, SpeechRecognizer],
        *,
        detector: LanguageDetector | None = None,
        name: str | None = None,
        prior: Mapping[str, float] | None = None,
    ) -> None:
        if not recognizers:
            raise ValueError("a speech router needs at least one language's recogniser")
        for language, recognizer in recognizers.items():
            if not _LANGUAGE_CODE.match(language):
                raise ValueError(f"language code {language!r} must be 2-3 letters a-z (en, pl)")
            if recognizer.languages and language not in recognizer.languages:
                raise ValueError(
                    f"{recognizer.name} understands {', '.join(recognizer.languages)}, "
                    f"not {language!r}"
                )
        for language, weight in (prior or {}).items():
            if language not in recognizers or not weight > 0:
                raise ValueError(
                    f"prior {language}:{weight}: the weight must be above 0, for one of "
                    f"{', '.join(recognizers)}"
                )
        self.prior: dict[str, float] = dict(prior or {})
        self.recognizers: dict[str, SpeechRecognizer] = dict(recognizers)
        self.languages: tuple[str, ...] = tuple(self.recognizers)
        self.default_language = self.languages[0]
        self.detector = detector if len(self.languages) > 1 else None
        self.name = name or ",".join(f"{lang}={r.name}" for lang, r in self.recognizers.items())

    @classmethod
    def of(cls, recognizer: SpeechRecognizer) -> SpeechRouter:
        """A router for one recogniser: each of its languages goes to it, and it detects the
        language itself when it can and speaks several.

        A recogniser that names no language (a vosk folder without one in its name) is
        routed every request, whatever language it names.
        """
        if isinstance(recognizer, SpeechRouter):
            return recognizer
        languages = recognizer.languages or ("",)
        router = cls.__new__(cls)
        router.recognizers = dict.fromkeys(languages, recognizer)
        router.languages = tuple(recognizer.languages)
        router.default_language = languages[0]
        router.detector = (
            recognizer
            if isinstance(recognizer, LanguageDetector) and len(router.languages) > 1
            else None
        )
        router.name = recognizer.name
        router.prior = {}
        return router

    def warm_up(self) -> None:
        """Load every configured recogniser (an error names the extra a backend needs)."""
        seen: set[int] = set()
        for recognizer in [*self.recognizers.values(), self.detector]:
            if recognizer is not None and id(recognizer) not in seen:
                seen.add(id(recognizer))
                warm = getattr(recognizer, "warm_up", None)
                if warm is not None:
                    warm()

    def check_language(self, language: str | None) -> str | None:
        """``language`` when a recogniser speaks it (None stays None: detect it).

        Raises:
            UnsupportedLanguageError: No configured recogniser speaks it; the message lists
                the supported languages.
        """
        if language is None or not self.languages or language in self.recognizers:
            return language
        raise UnsupportedLanguageError(language, self.languages)

    def recognizer_for(self, language: str | None) -> SpeechRecognizer:
        """The recogniser of a language (the default language's for None or, with a recogniser
        that names no language, any)."""
        if language in self.recognizers:
            return self.recognizers[language]
        return self.recognizers[self.default_language]

    def detect(self, audio: Audio) -> LanguageGuess | None:
        """The language of ``audio`` among the configured ones; None when there is nothing to
        detect (one language, no detector, or no speech): the default language is used."""
        if self.detector is None:
            return None
        guess = self.detector.detect_language(audio, self.languages)
        if guess is None or not self.prior or not guess.shares:
            return guess
        weighed = {code: p * self.prior.get(code, 1.0) for code, p in guess.shares}
        total = sum(weighed.values()) or 1.0
        shares = sorted(((c, p / total) for c, p in weighed.items()), key=lambda pair: -pair[1])
        return LanguageGuess(shares[0][0], shares[0][1], guess.took_s, tuple(shares))

    def _language(self, language: str | None, audio: Audio) -> tuple[str, LanguageGuess | None]:
        checked = self.check_language(language)
        if checked is not None:
            return checked, None
        guess = self.detect(audio)
        return (guess.language if guess is not None else self.default_language), guess

    def transcribe(
        self, audio: Audio, hints: Sequence[str] = (), language: str | None = None
    ) -> Transcript:
        """Recognise one utterance with its language's recogniser, detecting the language
        first when it is not given.

        When the language was detected and its recogniser hears nothing, the runner-up
        language's recogniser is asked too (a clip taken for English that Moonshine cannot read is
        often Polish): that costs a second recognition only when the first heard nothing.

        Returns:
            The transcript, with ``recognizer`` (the one that heard it), ``language`` and, when
            the language was detected, ``detection`` (for the language used); ``took_s``
            includes the detection and every recognition.

        Raises:
            UnsupportedLanguageError: ``language`` is not configured.
        """
        lang, guess = self._language(language, audio)
        recognizer = self.recognizer_for(lang)
        transcript = recognizer.transcribe(audio, hints, lang or None)
        return self._settle(audio, hints, transcript, recognizer, lang, guess)

    def _settle(
        self,
        audio: Audio,
        hints: Sequence[str],
        transcript: Transcript,
        recognizer: SpeechRecognizer,
        language: str,
        guess: LanguageGuess | None,
    ) -> Transcript:
        """The routed transcript; for a detected language that heard nothing, the runner-up
        language's, when it hears something."""
        if guess is not None and transcript.is_empty and len(guess.shares) > 1:
            second, share = guess.shares[1]
            other = self.recognizer_for(second)
            retry = other.transcribe(audio, hints, second)
            if not retry.is_empty:
                retry = replace(retry, took_s=retry.took_s + transcript.took_s)
                guess = replace(guess, language=second, probability=share)
                return _routed(retry, other, second, guess)
        return _routed(transcript, recognizer, language, guess)

    def stream(self, hints: Sequence[str] = (), language: str | None = None) -> RoutedStream:
        """Start a streamed utterance; without a language, it is detected from the first
        :data:`DETECT_AFTER_S` seconds of speech (or from all of it at the end).

        Raises:
            UnsupportedLanguageError: ``language`` is not configured.
        """
        return RoutedStream(self, hints, self.check_language(language))


def _routed(
    transcript: Transcript, recognizer: SpeechRecognizer, language: str, guess: LanguageGuess | None
) -> Transcript:
    return replace(
        transcript,
        language=transcript.language or language or None,
        recognizer=transcript.recognizer or recognizer.name,
        detection=guess,
        took_s=transcript.took_s + (guess.took_s if guess is not None else 0.0),
    )


class RoutedStream:
    """A streamed utterance whose recogniser is chosen once its language is known.

    A stream whose language is detected keeps its audio (at most :data:`KEPT_S` seconds) so
    that, when the detected language's recogniser hears nothing, the runner-up's can be asked
    at the end, as :meth:`SpeechRouter.transcribe` does.

    Args:
        router: The router.
        hints: Passed to the recogniser.
        language: The language, or None to detect it from the audio.
    """

    def __init__(self, router: SpeechRouter, hints: Sequence[str], language: str | None) -> None:
        self._router = router
        self._hints = tuple(hints)
        self.language = language
        self.detection: LanguageGuess | None = None
        self._recognizer: SpeechRecognizer | None = None
        self._inner: RecognitionStream | None = None
        self._pending: list[Audio] = []
        self._pending_size = 0
        self._kept: list[Audio] = []
        self._kept_size = 0
        if language is not None or router.detector is None:
            self._start(language or router.default_language)

    def _start(self, language: str) -> None:
        self.language = language
        self._recognizer = self._router.recognizer_for(language)
        self._inner = self._recognizer.stream(self._hints, language or None)

    def _decide(self, audio: Audio) -> None:
        self.detection = self._router.detect(audio)
        self._start(
            self.detection.language if self.detection is not None else self._router.default_language
        )

    def _keep(self, samples: Audio) -> None:
        if self._kept_size + len(samples) <= KEPT_S * SAMPLE_RATE:
            self._kept.append(np.asarray(samples, dtype=np.float32))
            self._kept_size += len(samples)

    def accept(self, samples: Audio) -> str | None:
        """Add samples; return a new partial transcript when there is one."""
        if self.detection is not None:
            self._keep(samples)
        if self._inner is not None:
            return self._inner.accept(samples)
        self._keep(samples)
        self._pending.append(np.asarray(samples, dtype=np.float32))
        self._pending_size += len(samples)
        if self._pending_size < DETECT_AFTER_S * SAMPLE_RATE:
            return None
        audio = np.concatenate(self._pending)
        if speech_bounds(audio) is None:
            return None  # silence so far: wait for speech to detect from
        self._decide(audio)
        self._pending = []
        assert self._inner is not None
        return self._inner.accept(audio)

    def finish(self) -> Transcript:
        """End the utterance: the transcript of its language's recogniser."""
        if self._inner is None:
            audio = np.concatenate(self._pending) if self._pending else np.zeros(0, np.float32)
            self._pending = []
            if len(audio):
                self._decide(audio)
                assert self._inner is not None
                self._inner.accept(audio)
            else:
                self._start(self._router.default_language)
        assert self._inner is not None and self._recognizer is not None
        transcript = self._inner.finish()
        audio = np.concatenate(self._kept) if self._kept else np.zeros(0, np.float32)
        return self._router._settle(
            audio, self._hints, transcript, self._recognizer, self.language or "", self.detection
        )


def load_speech_router(
    spec: str, load: Callable[[str, tuple[str, ...] | None], SpeechRecognizer]
) -> SpeechRouter:
    """Build a router from ``<lang>=<spec>`` pairs (``en=moonshine,pl=whisper``).

    Args:
        spec: Comma-separated ``<lang>=<recogniser spec>`` pairs, the default language first,
            optionally ``detect=<recogniser spec>`` or ``detect=none``, and
            ``prior=<lang>:<weight>`` (once per language).
        load: Builds one recogniser from its spec and the languages it serves
            (:func:`load_speech_recognizer`'s helper).

    Raises:
        ValueError: A malformed pair, a language given twice, a recogniser that does not speak
            its language, a detector that cannot detect, or several languages with no
            detector and no ``detect=none``.
    """
    pairs: list[tuple[str, str]] = []
    detect: str | None = None
    prior: dict[str, float] = {}
    for part in (p.strip() for p in spec.split(",")):
        key, sep, value = part.partition("=")
        key, value = key.strip().lower(), value.strip()
        if not sep or not key or not value:
            raise ValueError(
                f"speech recognizer {spec!r}: {part!r} is not <lang>=<recognizer> "
                "(e.g. en=moonshine,pl=whisper)"
            )
        if key == "detect":
            detect = value
        elif key == "prior":
            code, _, weight = value.partition(":")
            try:
                prior[code.strip().lower()] = float(weight)
            except ValueError:
                raise ValueError(
                    f"speech recognizer {spec!r}: prior={value} is not <lang>:<weight> "
                    "(e.g. prior=pl:4)"
                ) from None
        elif any(key == k for k, _ in pairs):
            raise ValueError(f"speech recognizer {spec!r}: language {key!r} is given twice")
        else:
            pairs.append((key, value))
    if not pairs:
        raise ValueError(f"speech recognizer {spec!r} names no language")
    serves: dict[str, list[str]] = {}
    for language, recognizer_spec in pairs:
        serves.setdefault(recognizer_spec, []).append(language)
    built: dict[str, SpeechRecognizer] = {s: load(s, tuple(langs)) for s, langs in serves.items()}
    recognizers = {language: built[s] for language, s in pairs}
    # Built first: a recogniser configured for a language it does not speak is named first.
    router = SpeechRouter(recognizers, name=spec.replace(" ", ""), prior=prior)
    detector: LanguageDetector | None = None
    if detect is not None and detect.lower() != "none":
        candidate = built.get(detect) or load(detect, None)
        if not isinstance(candidate, LanguageDetector):
            raise ValueError(f"speech recognizer {spec!r}: {detect} cannot detect languages")
        detector = candidate
    elif detect is None and len(recognizers) > 1:
        detector = next((r for r in built.values() if isinstance(r, LanguageDetector)), None)
        if detector is None:
            raise ValueError(
                f"speech recognizer {spec!r}: several languages need a language detector for "
                "requests without lang: add detect=whisper, or detect=none to hear them in "
                f"{pairs[0][0]!r}"
            )
    router.detector = detector if len(router.languages) > 1 else None
    return router


# --- factory -----------------------------------------------------------------------------------


def load_speech_recognizer(spec: str) -> SpeechRecognizer | None:
    """Create (without loading weights) the recogniser a spec names.

    Args:
        spec: One of :data:`SPEECH_BACKENDS`: ``moonshine``, ``whisper``, ``whisper:<folder>``,
            ``vosk:<model-folder>``, ``vosk-ko``, ``pocketsphinx`` or ``none``; or a recogniser
            per language, ``<lang>=<spec>,...`` (``en=moonshine,pl=whisper``, optionally with
            ``detect=<spec>`` or ``detect=none`` and ``prior=<lang>:<weight>``), built as a
            :class:`SpeechRouter`.

    Returns:
        The recogniser, or None for ``none``.

    Raises:
        ValueError: An unknown spec (the message lists the valid ones), a missing folder, or a
            recogniser configured for a language it does not understand.
    """
    spec = spec.strip()
    if "=" in spec:
        return load_speech_router(spec, _load_one)
    if spec.lower() == "none":
        return None
    return _load_one(spec, None)


def _load_one(spec: str, languages: tuple[str, ...] | None) -> SpeechRecognizer:
    """One recogniser from its spec; ``languages`` are those it is configured for (whisper
    is offered for exactly those)."""
    name, _, arg = spec.strip().partition(":")
    name = name.lower()
    if name == "moonshine":
        return MoonshineRecognizer(arg or None)
    if name == "whisper":
        return WhisperRecognizer(arg or None, languages=languages or ("en", "pl"))
    if name == "vosk" and arg:
        return VoskRecognizer(arg, language=languages[0] if languages else None)
    if name == "vosk-ko" and not arg:
        recognizer = VoskRecognizer(packaged_vosk_korean(), language="ko")
        recognizer.name = "vosk-ko"
        return recognizer
    if name == "pocketsphinx" and not arg:
        return PocketsphinxRecognizer()
    raise ValueError(f"unknown speech recognizer {spec!r}; valid: {', '.join(SPEECH_BACKENDS)}")
