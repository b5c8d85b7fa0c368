"""``GET /products/{product_id}``: one product by id, and its local photos."""

from __future__ import annotations

import io
import os
import stat
import warnings
from pathlib import Path
from typing import Any, Final

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response

from api.deps import EngineDep, SettingsDep, visible_product
from api.schemas import ProductPublic
from api.security import SearchKeyDep
from api.settings import Settings
from search.engine import SearchEngine

router = APIRouter(prefix="/products", tags=["products"])

_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {
        "description": "No product with that id in the serving snapshot.",
        "content": {"application/json": {"example": {"detail": "no product with id 'X1'"}}},
    }
}

#: Largest photo file the service serves (a shop's product photo is far smaller).
MAX_SERVED_IMAGE_BYTES: Final = 20 * 1024 * 1024
#: Most pixels a served photo may declare (checked from its header, nothing is decoded).
MAX_SERVED_IMAGE_PIXELS: Final = 100_000_000
#: Raster formats served, by their magic bytes: nothing that a browser could run as a document
#: (SVG, HTML, XML, PDF) ever leaves this route, whatever the file is called.
_MAGIC: Final = (
    (b"\x89PNG\r\n\x1a\n", "PNG", "image/png"),
    (b"\xff\xd8\xff", "JPEG", "image/jpeg"),
    (b"GIF87a", "GIF", "image/gif"),
    (b"GIF89a", "GIF", "image/gif"),
)
#: Headers on every served photo: the browser must not sniff another type, and the answer is a
#: sandboxed document with no right to run or load anything should it ever be opened as one.
IMAGE_HEADERS: Final = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "Cache-Control": "public, max-age=3600",
}
#: Folder inside a snapshot for the build's own photo copies (always an image root).
SNAPSHOT_IMAGES: Final = "images"


@router.get("/{product_id}", response_model=ProductPublic, responses=_NOT_FOUND)
def read_product(product_id: str, engine: EngineDep, key: SearchKeyDep) -> ProductPublic:
    """Return every field of one product.

    A product outside the key's fixed filters is answered as an unknown id.

    Raises:
        ProductNotFoundError: The id is unknown, or the key's filters leave it out (404).
    """
    product = visible_product(engine, key, product_id)
    return ProductPublic.from_product(product, engine.colours.of(engine.store.doc_of[product.id]))


@router.get(
    "/{product_id}/images/{index}",
    response_class=Response,
    responses={
        200: {
            "description": "The photo: a PNG, JPEG, GIF or WebP checked by its content.",
            "content": {"image/png": {}, "image/jpeg": {}, "image/gif": {}, "image/webp": {}},
        },
        **_NOT_FOUND,
    },
)
def read_product_image(
    product_id: str, index: int, engine: EngineDep, settings: SettingsDep, key: SearchKeyDep
) -> Response:
    """Serve one of a product's local photos (remote photos are linked directly).

    Only a file whose real path (symbolic links resolved) lies under one of the image roots is
    served (``PRODUCTSEARCH_IMAGE_ROOTS``; by default the catalogue's folder the snapshot was
    built from and the snapshot's own ``images`` folder), and only when its content is a PNG,
    JPEG, GIF or WebP image that Pillow verifies: a catalogue naming ``/etc/passwd``, the keys
    database, ``../../x`` or an SVG/HTML file gets 404.

    Raises:
        ProductNotFoundError: The id is unknown, or the key's filters leave it out (404).
        HTTPException: No image with that index, or it is not a servable local photo (404).
    """
    product = visible_product(engine, key, product_id)
    if not 0 <= index < len(product.images):
        raise HTTPException(404, f"product {product_id!r} has no image {index}")
    location = product.images[index]
    where = f"image {index} of product {product_id!r}"
    if location.startswith(("http://", "https://")) or not os.path.isabs(location):
        raise HTTPException(404, f"{where} is not a local file")
    real = os.path.realpath(location)
    if not any(_inside(real, root) for root in image_roots(engine, settings)):
        # The same answer whether or not the file exists: no oracle for the server's files.
        raise HTTPException(404, f"{where} is not under the catalogue's image folders")
    data = _read_regular_file(real)
    if data is None:
        raise HTTPException(404, f"{where} is not a local file")
    media_type = raster_media_type(data)
    if media_type is None:
        raise HTTPException(404, f"{where} is not a PNG, JPEG, GIF or WebP image")
    return Response(content=data, media_type=media_type, headers=IMAGE_HEADERS)


def image_roots(engine: SearchEngine, settings: Settings) -> tuple[str, ...]:
    """The real paths of the folders local photos may be served from.

    Args:
        engine: The serving engine (its manifest records the catalogue's folder).
        settings: The service settings (``image_roots`` replaces the recorded folders).

    Returns:
        Absolute real paths (symbolic links resolved).
    """
    configured = list(settings.image_roots)
    if not configured:
        recorded = engine.manifest.settings.get("image_roots") or ()
        configured = [Path(p) for p in recorded if isinstance(p, str) and os.path.isabs(p)]
    if engine.snapshot_dir is not None:
        configured.append(engine.snapshot_dir / SNAPSHOT_IMAGES)
    return tuple(os.path.realpath(p) for p in configured)


def _inside(real: str, root: str) -> bool:
    return real.startswith(root.rstrip(os.sep) + os.sep)


def _read_regular_file(real: str) -> bytes | None:
    """A regular file's bytes (None for a missing, special, unreadable or too large one).

    Opened without following a final symbolic link and checked on the open descriptor, so a
    file swapped for a link or a FIFO after the path check is never read.
    """
    try:
        fd = os.open(
            real, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        )
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_SERVED_IMAGE_BYTES:
            return None
        with os.fdopen(fd, "rb", closefd=False) as fh:
            return fh.read(MAX_SERVED_IMAGE_BYTES + 1)[:MAX_SERVED_IMAGE_BYTES]
    except OSError:
        return None
    finally:
        os.close(fd)


def raster_media_type(data: bytes) -> str | None:
    """The MIME type of a PNG, JPEG, GIF or WebP image checked by its content, else None.

    The magic bytes pick the format, then Pillow reads the header and verifies the file (the
    format must agree and the pixel count stay under :data:`MAX_SERVED_IMAGE_PIXELS`); no
    pixel is decoded.

    Args:
        data: The file's bytes.

    Returns:
        ``image/png``, ``image/jpeg``, ``image/gif`` or ``image/webp``, or None.
    """
    found = next(((fmt, mime) for magic, fmt, mime in _MAGIC if data.startswith(magic)), None)
    if found is None and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        found = ("WEBP", "image/webp")
    if found is None:
        return None
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=[found[0]]) as image:
                width, height = image.size
                if width <= 0 or height <= 0 or width * height > MAX_SERVED_IMAGE_PIXELS:
                    return None
                image.verify()
    except Exception:  # any failure to parse means "not an image we serve"
        return None
    return found[1]
