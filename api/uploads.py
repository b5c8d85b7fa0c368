"""Photo uploads for image search: size limits, formats, EXIF orientation, decompression bombs.

:func:`decode_image_upload` turns the bytes of an uploaded photo into a Pillow image or raises
:class:`UploadError`, whose ``status_code`` the route returns:

* 413: the upload is larger than ``max_bytes``, declares more than ``max_pixels`` pixels, or
  would decode more than ``max_decoded_pixels`` (a decompression bomb: a few kilobytes that
  would decode to gigabytes; JPEGs are decoded at a reduced scale to fit, other formats are
  refused before a pixel is decoded);
* 415: not an image, or a format outside JPEG, PNG, WebP and HEIC/HEIF (HEIC needs
  ``pillow-heif``, installed with ``productsearch[image]``);
* 422: an image of an accepted format whose data is truncated or damaged.

:func:`decode_upload` is what the routes await: it bounds how many uploads are decoded at once
(the rest wait their turn) and hands the memory of a large decode back to the operating system
(glibc keeps freed blocks otherwise: eight concurrent 7000x7000 PNGs once left 5 GB resident).
"""

from __future__ import annotations

import asyncio
import io
import sys
import threading
import warnings
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final, Literal

from starlette.concurrency import run_in_threadpool

from indexer.images import decode_image
from search.errors import ImageLoadError, SearchServiceError

if TYPE_CHECKING:
    from PIL import Image

    from api.settings import Settings

__all__ = [
    "ACCEPTED_FORMATS",
    "DEFAULT_UPLOAD_MAX_BYTES",
    "DEFAULT_UPLOAD_MAX_DECODED_PIXELS",
    "DEFAULT_UPLOAD_MAX_PIXELS",
    "UploadError",
    "decode_image_upload",
    "decode_upload",
]

#: Pillow format names accepted for uploads (pillow-heif registers HEIC as ``HEIF``).
ACCEPTED_FORMATS: Final = ("JPEG", "PNG", "WEBP", "HEIF")
#: Default largest upload: a 12 MP phone photo is 2-6 MB.
DEFAULT_UPLOAD_MAX_BYTES: Final = 10 * 1024 * 1024
#: Default most pixels declared: 48 MP phone cameras pass.
DEFAULT_UPLOAD_MAX_PIXELS: Final = 50_000_000
#: Default most pixels decoded (about 100 MB at Pillow's 4 bytes a pixel): a 24 MP HEIC from a
#: phone passes whole, a 48 MP JPEG passes decoded at 1/2 to 1/8 scale, and a 7000x7000 PNG of
#: zeros (190 KB, 49 MP) is refused before decoding.
DEFAULT_UPLOAD_MAX_DECODED_PIXELS: Final = 25_000_000
#: Decodes of at least this many pixels hand their freed memory back to the system afterwards.
_TRIM_AFTER_PIXELS: Final = 2_000_000
#: Longer side an upload is shrunk to after decoding (every embedder works on less).
UPLOAD_MAX_SIDE: Final = 1024

UploadStatus = Literal[413, 415, 422]


class UploadError(SearchServiceError, ValueError):
    """An uploaded photo is rejected.

    Attributes:
        status_code: The HTTP status the API answers with: 413 (too large in bytes or pixels),
            415 (not an image, or an unaccepted format) or 422 (truncated or damaged image).
        message: Why, in words a shop's developer can act on.
    """

    def __init__(self, status_code: UploadStatus, message: str) -> None:
        super().__init__(message)
        self.status_code: UploadStatus = status_code
        self.message = message


_STATUS_BY_KIND: Final[dict[str, UploadStatus]] = {
    "too-large": 413,
    "unsupported": 415,
    "corrupt": 422,
    "missing": 422,
    "http": 422,
}


def decode_image_upload(
    data: bytes,
    *,
    max_bytes: int = DEFAULT_UPLOAD_MAX_BYTES,
    max_pixels: int = DEFAULT_UPLOAD_MAX_PIXELS,
    formats: Sequence[str] = ACCEPTED_FORMATS,
    max_decoded_pixels: int = DEFAULT_UPLOAD_MAX_DECODED_PIXELS,
) -> Image.Image:
    """Decode an uploaded photo.

    The byte size is checked first, then the header's pixel count and the pixels that decoding
    would produce (JPEGs decode at a reduced scale; before decoding a pixel), then the format;
    the image is decoded, shrunk to at most 1024 px on its longer side and EXIF orientation
    applied (phone photos are stored sideways with an orientation tag).

    Args:
        data: The uploaded file's bytes.
        max_bytes: Largest upload accepted (>= 1).
        max_pixels: Most pixels (width x height) the header may declare (>= 1).
        formats: Pillow format names accepted.
        max_decoded_pixels: Most pixels decoded (>= 1), which bounds one decode's memory.

    Returns:
        The photo, upright.

    Raises:
        UploadError: 413, 415 or 422 with a message (see the module docstring).
        ValueError: When ``max_bytes`` or ``max_pixels`` < 1.
    """
    if max_bytes < 1 or max_pixels < 1:
        raise ValueError(f"max_bytes and max_pixels must be >= 1, got {max_bytes}, {max_pixels}")
    if max_decoded_pixels < 1:
        raise ValueError(f"max_decoded_pixels must be >= 1, got {max_decoded_pixels}")
    if len(data) > max_bytes:
        raise UploadError(
            413,
            f"the photo is {len(data):,} bytes; the limit is {max_bytes:,} bytes "
            f"({max_bytes / 1024 / 1024:g} MiB)",
        )
    if not data:
        raise UploadError(422, "the upload is empty: send a JPEG, PNG, WebP or HEIC photo")
    try:
        return decode_image(
            data,
            max_pixels=max_pixels,
            max_side=UPLOAD_MAX_SIDE,
            formats=formats,
            max_decoded_pixels=max_decoded_pixels,
        )
    except ImageLoadError as exc:
        status = _STATUS_BY_KIND[exc.kind]
        message = exc.message
        if status == 415:
            message += "; send a JPEG, PNG, WebP or HEIC photo"
        raise UploadError(status, message) from exc


# One gate per event loop (asyncio semaphores belong to the loop they first wait on), per size.
_gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, asyncio.Semaphore]] = (
    weakref.WeakKeyDictionary()
)


def _gate(size: int) -> asyncio.Semaphore:
    per_size = _gates.setdefault(asyncio.get_running_loop(), {})
    if size not in per_size:
        per_size[size] = asyncio.Semaphore(size)
    return per_size[size]


#: Allocations from this size are served by ``mmap`` and unmapped when freed (see below).
_MMAP_THRESHOLD: Final = 4 * 1024 * 1024
_allocator_lock = threading.Lock()
_allocator_state: dict[str, bool] = {}


def _map_large_allocations() -> None:
    """Make glibc hand big blocks (Pillow's 16 MB pixel blocks) straight back when freed.

    glibc raises its ``mmap`` threshold each time a mapped block is freed (up to 32 MB), so
    after the first large photo the next ones' pixels come from the heap and stay resident
    after they are freed; ``malloc_trim`` gets most but not all of them back. A fixed
    threshold keeps every allocation of 4 MB and more mapped: freeing it unmaps it. Smaller
    allocations (query vectors, score arrays of most catalogues) keep the heap. Done once, on
    the first upload; nothing happens off glibc.
    """
    with _allocator_lock:
        if "done" in _allocator_state:
            return
        _allocator_state["done"] = True
        if not sys.platform.startswith("linux"):
            return
        import ctypes

        try:
            mallopt = ctypes.CDLL("libc.so.6").mallopt
        except (OSError, AttributeError):  # not glibc (e.g. musl)
            return
        m_mmap_threshold = -3  # from malloc.h
        mallopt(m_mmap_threshold, _MMAP_THRESHOLD)


async def decode_upload(data: bytes, settings: Settings) -> Image.Image:
    """Decode an uploaded photo with the service's limits, a few at a time.

    At most ``settings.upload_decode_concurrency`` uploads are decoded at once (the others
    wait without holding a request thread), each within ``upload_max_pixels`` declared and
    ``upload_max_decoded_pixels`` decoded; after a large decode the freed memory is returned
    to the operating system (``malloc_trim``), so a burst of big photos does not leave the
    service holding gigabytes.

    Args:
        data: The uploaded file's bytes (read up to ``max_body_bytes``).
        settings: The service settings.

    Returns:
        The photo, upright, at most 1024 px on its longer side.

    Raises:
        UploadError: 413, 415 or 422 with a message (see the module docstring).
    """
    _map_large_allocations()
    async with _gate(settings.upload_decode_concurrency):
        return await run_in_threadpool(
            _decode_and_trim,
            data,
            min(settings.max_body_bytes, DEFAULT_UPLOAD_MAX_BYTES),
            settings.upload_max_pixels,
            settings.upload_max_decoded_pixels,
        )


def _decode_and_trim(
    data: bytes, max_bytes: int, max_pixels: int, max_decoded_pixels: int
) -> Image.Image:
    try:
        return decode_image_upload(
            data,
            max_bytes=max_bytes,
            max_pixels=max_pixels,
            max_decoded_pixels=max_decoded_pixels,
        )
    finally:
        if _declared_pixels(data) >= _TRIM_AFTER_PIXELS:
            from models.runtime import release_free_memory

            # The full-size pixels are freed by now (the result is the small copy); without
            # this glibc keeps them in the thread's arena for reuse, i.e. resident.
            release_free_memory(collect=False)


def _declared_pixels(data: bytes) -> int:
    """Width x height from the header (0 when unreadable); reads no pixel."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
    except Exception:  # not an image, or a bomb Pillow refuses outright: nothing was decoded
        return 0
    return width * height
