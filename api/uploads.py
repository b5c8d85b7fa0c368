"""Photo uploads for image search: size limits, formats, EXIF orientation, decompression bombs.

:func:`decode_image_upload` turns the bytes of an uploaded photo into a Pillow image or raises
:class:`UploadError`, whose ``status_code`` the route returns:

* 413: the upload is larger than ``max_bytes``, or declares more than ``max_pixels`` pixels
  (a decompression bomb: a few kilobytes that would decode to gigabytes);
* 415: not an image, or a format outside JPEG, PNG, WebP and HEIC/HEIF (HEIC needs
  ``pillow-heif``, installed with ``productsearch[image]``);
* 422: an image of an accepted format whose data is truncated or damaged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Final, Literal

from indexer.images import decode_image
from search.errors import ImageLoadError, SearchServiceError

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "ACCEPTED_FORMATS",
    "DEFAULT_UPLOAD_MAX_BYTES",
    "DEFAULT_UPLOAD_MAX_PIXELS",
    "UploadError",
    "decode_image_upload",
]

#: Pillow format names accepted for uploads (pillow-heif registers HEIC as ``HEIF``).
ACCEPTED_FORMATS: Final = ("JPEG", "PNG", "WEBP", "HEIF")
#: Default largest upload: a 12 MP phone photo is 2-6 MB.
DEFAULT_UPLOAD_MAX_BYTES: Final = 10 * 1024 * 1024
#: Default most pixels: 48 MP phone cameras pass.
DEFAULT_UPLOAD_MAX_PIXELS: Final = 50_000_000
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
) -> Image.Image:
    """Decode an uploaded photo.

    The byte size is checked first, then the header's pixel count (before decoding a pixel),
    then the format; the image is decoded, EXIF orientation applied (phone photos are stored
    sideways with an orientation tag) and shrunk to at most 1024 px on its longer side.

    Args:
        data: The uploaded file's bytes.
        max_bytes: Largest upload accepted (>= 1).
        max_pixels: Most pixels (width x height) accepted (>= 1).
        formats: Pillow format names accepted.

    Returns:
        The photo, upright.

    Raises:
        UploadError: 413, 415 or 422 with a message (see the module docstring).
        ValueError: When ``max_bytes`` or ``max_pixels`` < 1.
    """
    if max_bytes < 1 or max_pixels < 1:
        raise ValueError(f"max_bytes and max_pixels must be >= 1, got {max_bytes}, {max_pixels}")
    if len(data) > max_bytes:
        raise UploadError(
            413,
            f"the photo is {len(data):,} bytes; the limit is {max_bytes:,} bytes "
            f"({max_bytes / 1024 / 1024:g} MiB)",
        )
    if not data:
        raise UploadError(422, "the upload is empty: send a JPEG, PNG, WebP or HEIC photo")
    try:
        return decode_image(data, max_pixels=max_pixels, max_side=UPLOAD_MAX_SIDE, formats=formats)
    except ImageLoadError as exc:
        status = _STATUS_BY_KIND[exc.kind]
        message = exc.message
        if status == 415:
            message += "; send a JPEG, PNG, WebP or HEIC photo"
        raise UploadError(status, message) from exc
