"""Decoding voice-search uploads: any container a phone or browser sends, to 16 kHz mono.

PyAV (ffmpeg in its wheel) reads WAV, FLAC, OGG/Opus, WebM/Opus (Android, browsers'
MediaRecorder), M4A/AAC (iOS), MP3 and more, and resamples to what the recognisers take.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from search.errors import SearchServiceError

TARGET_RATE = 16_000
"""Samples per second of decoded audio (what every recogniser takes)."""

DEFAULT_MAX_BYTES = 5 * 1024 * 1024
"""Largest upload accepted by default (a minute of 48 kHz Opus is well under 1 MB)."""

DEFAULT_MAX_SECONDS = 30.0
"""Longest utterance accepted by default: a search query, not a dictation."""


class AudioError(SearchServiceError):
    """An upload cannot be used as a voice query.

    Attributes:
        status_code: The HTTP status the API answers with: 413 (too large or too long), 415 (not
            audio, or a format the decoder does not know) or 422 (corrupt or empty audio).
        message: What is wrong, in words a client developer can act on.
    """

    def __init__(self, status_code: int, message: str) -> None:
        if status_code not in (413, 415, 422):
            raise ValueError(f"status_code must be 413, 415 or 422, got {status_code}")
        super().__init__(message)
        self.status_code = status_code
        self.message = message


@dataclass(frozen=True, slots=True)
class DecodedAudio:
    """An upload decoded to 16 kHz mono.

    Attributes:
        samples: float32 samples in [-1, 1].
        sample_rate: Always :data:`TARGET_RATE`.
        source_format: The container ffmpeg recognised (``"wav"``, ``"ogg"``, ``"matroska,webm"``,
            ``"mov,mp4,m4a,3gp,3g2,mj2"``...).
        source_codec: The audio codec (``"pcm_s16le"``, ``"opus"``, ``"aac"``, ``"flac"``...).
        source_rate: The upload's own sample rate.
    """

    samples: npt.NDArray[np.float32]
    sample_rate: int
    source_format: str
    source_codec: str
    source_rate: int

    @property
    def duration_s(self) -> float:
        """Length in seconds."""
        return len(self.samples) / self.sample_rate

    def to_int16(self) -> npt.NDArray[np.int16]:
        """The samples as 16-bit PCM (what vosk and many tools take)."""
        return (np.clip(self.samples, -1.0, 1.0) * 32767).astype(np.int16)


def check_size(size: int, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
    """Refuse an upload larger than ``max_bytes`` before reading it whole.

    Raises:
        AudioError: 413 when it is too large.
    """
    if size > max_bytes:
        raise AudioError(
            413, f"audio upload is {size:,} bytes; at most {max_bytes:,} bytes are accepted"
        )


def decode_audio(
    data: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_seconds: float = DEFAULT_MAX_SECONDS,
) -> DecodedAudio:
    """Decode an uploaded recording to 16 kHz mono float32.

    Args:
        data: The file's bytes, in any container and codec ffmpeg reads.
        max_bytes: Larger uploads are refused.
        max_seconds: Longer recordings are refused (decoding stops as soon as it is passed).

    Returns:
        The decoded audio.

    Raises:
        AudioError: 413 for too many bytes or seconds; 415 when the data is not a recording
            ffmpeg knows (or has no audio stream); 422 when it is corrupt or holds no samples.
    """
    import av

    check_size(len(data), max_bytes)
    if not data:
        raise AudioError(422, "audio upload is empty")
    try:
        container = av.open(io.BytesIO(data), mode="r")
    except (av.error.FFmpegError, ValueError, OSError) as exc:
        known = sniff_container(data)
        if known is not None:
            raise AudioError(
                422, f"{known} audio is corrupt or truncated and cannot be decoded: {exc}"
            ) from exc
        raise AudioError(
            415,
            "audio is not in a format the service can decode (send WAV, FLAC, OGG/Opus, "
            f"WebM/Opus, M4A/AAC or MP3): {exc}",
        ) from exc
    with container:
        if not container.streams.audio:
            raise AudioError(415, "the upload has no audio stream")
        stream = container.streams.audio[0]
        source_format = str(container.format.name)
        source_codec = str(stream.codec_context.name)
        source_rate = int(stream.codec_context.sample_rate or stream.rate or 0)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=TARGET_RATE)
        limit = int(max_seconds * TARGET_RATE)
        chunks: list[npt.NDArray[np.float32]] = []
        total = 0
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunk = out.to_ndarray().reshape(-1).astype(np.float32, copy=False)
                    chunks.append(chunk)
                    total += len(chunk)
                if total > limit:
                    raise AudioError(
                        413,
                        f"audio is longer than {max_seconds:g} s; send one spoken query "
                        f"of at most {max_seconds:g} s",
                    )
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1).astype(np.float32, copy=False))
        except av.error.FFmpegError as exc:
            if not chunks:
                raise AudioError(422, f"audio data is corrupt: {exc}") from exc
            # A truncated upload (a recording cut short) still gives the audio before the cut.
    samples = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    if len(samples) == 0:
        raise AudioError(422, "audio holds no samples")
    if len(samples) > limit:
        raise AudioError(
            413,
            f"audio is {len(samples) / TARGET_RATE:.1f} s long; at most {max_seconds:g} s",
        )
    samples = np.nan_to_num(np.clip(samples, -1.0, 1.0)).astype(np.float32)
    return DecodedAudio(samples, TARGET_RATE, source_format, source_codec, source_rate)


def sniff_container(data: bytes) -> str | None:
    """Name the container by its magic bytes, or None when they are not a known one.

    Tells a damaged file of a supported format (422) from an unsupported upload (415).
    """
    head = data[:16]
    if head.startswith(b"RIFF") and head[8:12] == b"WAVE":
        return "WAV"
    if head.startswith(b"fLaC"):
        return "FLAC"
    if head.startswith(b"OggS"):
        return "OGG"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "WebM/Matroska"
    if head[4:8] == b"ftyp":
        return "MP4/M4A"
    if head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "MP3"
    return None


def pcm16_to_float(data: bytes) -> npt.NDArray[np.float32]:
    """Raw 16-bit little-endian mono PCM (a streamed chunk) to float32 in [-1, 1].

    Raises:
        AudioError: 422 when the byte count is odd (not 16-bit samples).
    """
    if len(data) % 2:
        raise AudioError(422, f"PCM chunk has {len(data)} bytes; 16-bit samples need an even count")
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
