"""Product photos: reading them (local files, http(s) URLs) and turning them into vectors.

Reading is forgiving per photo and strict per byte: a photo that is missing, corrupt, not an
image, too large or behind a failing URL becomes an :class:`ImageProblem` for its product and
the build goes on; nothing is decoded past the size and pixel limits (decompression bombs).

* Local photos: absolute paths, ``file://`` URLs, or paths relative to ``base_dir``.
* Remote photos: ``http(s)://`` URLs fetched with httpx: a timeout per request and a deadline
  per photo, retries with exponential backoff on connection errors, timeouts, 429 and 5xx
  answers, a size cap while streaming, at most ``max_redirects`` redirects, and an on-disk
  cache (one file per URL, named by its SHA-256) so that a rebuild downloads nothing it already
  has. Several URLs are fetched at once (``workers``). The host is resolved once and the
  connection made to the address that was checked (no DNS rebinding); loopback, private,
  link-local, multicast, reserved and other non-global addresses are refused, for every
  redirect too, unless ``allow_private`` (``PRODUCTSEARCH_IMAGE_FETCH_ALLOW_PRIVATE=1``).
* HEIC/HEIF photos are read when ``pillow-heif`` is installed; EXIF orientation is applied.

Typical use::

    loader = ImageLoader(cache_dir=Path("var/image-cache"))
    result = embed_product_images([p.images for p in products], embedder, loader=loader)
    result.vectors[result.has_vector]  # one unit vector per product with a readable photo
"""

from __future__ import annotations

import hashlib
import io
import ipaddress
import os
import socket
import ssl
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NamedTuple
from urllib.parse import unquote, urljoin, urlparse

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageOps, UnidentifiedImageError

from search.errors import ImageLoadError

if TYPE_CHECKING:
    from models.image import ImageEmbedder

__all__ = [
    "ALLOW_PRIVATE_ENV",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_DECODED_PIXELS",
    "DEFAULT_MAX_PIXELS",
    "ImageEmbeddings",
    "ImageLoadError",
    "ImageLoader",
    "ImageProblem",
    "blocked_address_reason",
    "decode_image",
    "embed_product_images",
]

#: Largest photo file read or downloaded (bytes).
DEFAULT_MAX_BYTES: Final = 20 * 1024 * 1024
#: Most pixels decoded (a 50 MP photo passes; a decompression bomb does not).
DEFAULT_MAX_PIXELS: Final = 50_000_000
#: Most pixels really decoded per photo (after JPEG's reduced decoding): ~100 MB of pixels, so
#: ``workers`` photos decoded at once stay bounded; PNG/WebP/HEIC photos over it are reported.
DEFAULT_MAX_DECODED_PIXELS: Final = 25_000_000
#: Longer side photos are shrunk to after decoding: every embedder works on far smaller inputs,
#: and a batch of full-size phone photos would hold gigabytes.
DEFAULT_MAX_SIDE: Final = 1024
#: Environment variable that lets builds fetch photos from non-global addresses (a shop's own
#: intranet image server, a test server on 127.0.0.1); read when ``allow_private`` is None.
ALLOW_PRIVATE_ENV: Final = "PRODUCTSEARCH_IMAGE_FETCH_ALLOW_PRIVATE"
_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})


class ImageProblem(NamedTuple):
    """A photo that could not be used, reported for its product.

    Attributes:
        product: The product's position in the input.
        location: The photo's path or URL.
        message: What went wrong, starting with the problem's kind (``missing: ...``).
    """

    product: int
    location: str
    message: str


# --------------------------------------------------------------------------------------------
# Decoding

_HEIF_BRANDS: Final = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1")
_heif_lock = threading.Lock()
_heif_state: dict[str, bool] = {}


def _heif_available() -> bool:
    """Register pillow-heif's opener with Pillow once; False when it is not installed."""
    with _heif_lock:
        if "ok" not in _heif_state:
            try:
                from pillow_heif import register_heif_opener
            except ImportError:
                _heif_state["ok"] = False
            else:
                register_heif_opener()
                _heif_state["ok"] = True
        return _heif_state["ok"]


def looks_like_heif(data: bytes) -> bool:
    """Whether the bytes start like a HEIF/HEIC file (an ISO-BMFF ``ftyp`` box of a HEIF brand).

    Args:
        data: The file's first bytes (12 are enough).

    Returns:
        True for HEIC/HEIF.
    """
    return len(data) >= 12 and data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS


def decode_image(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_side: int | None = DEFAULT_MAX_SIDE,
    formats: Sequence[str] | None = None,
    location: str = "",
    max_decoded_pixels: int | None = None,
) -> Image.Image:
    """Decode an image file's bytes: EXIF orientation applied, pixel limits enforced.

    The header is read first and the pixel count checked before any pixel is decoded, so a
    decompression bomb (a small file declaring a huge image) costs nothing. Large JPEGs are
    decoded at reduced scale when ``max_side`` allows it (DCT scaling, 1/2 to 1/8), and the
    pixels that will really be decoded are checked against ``max_decoded_pixels``: a format
    that cannot be decoded reduced (PNG, WebP, HEIC) must fit it whole.

    Args:
        data: The file's bytes.
        max_pixels: Most pixels (width x height) the header may declare.
        max_side: Longer side the result is shrunk to (aspect kept), or None to keep the size.
        formats: Pillow format names accepted (``"JPEG"``, ``"PNG"``, ``"WEBP"``, ``"HEIF"``...);
            None accepts any format Pillow can read.
        location: The photo's path or URL, for messages.
        max_decoded_pixels: Most pixels decoded (after JPEG's reduced decoding), which bounds
            the memory one decode takes (about 4 bytes a pixel); None: ``max_pixels``.

    Returns:
        The decoded image (mode as stored; the first frame of an animation).

    Raises:
        ImageLoadError: ``unsupported`` (not an image, a format outside ``formats``, HEIC without
            pillow-heif), ``corrupt`` (truncated or damaged) or ``too-large`` (past
            ``max_pixels`` or ``max_decoded_pixels``).
    """
    where = f" ({location})" if location else ""
    if not data:
        raise ImageLoadError("corrupt", f"empty file{where}", location)
    heif = looks_like_heif(data)
    if heif and not _heif_available():
        raise ImageLoadError(
            "unsupported", f"HEIC/HEIF photos need pillow-heif installed{where}", location
        )
    try:
        with warnings.catch_warnings():
            # Pillow warns (and past twice its limit, raises) about huge images; the explicit
            # check below is the one that decides, with a clearer message.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(
            "too-large",
            f"image is more than the {max_pixels / 1e6:g} megapixel limit ({exc}){where}",
            location,
        ) from exc
    except UnidentifiedImageError as exc:
        raise ImageLoadError(
            "unsupported", f"not an image, or an image format that cannot be read{where}", location
        ) from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageLoadError("corrupt", f"damaged image header: {exc}{where}", location) from exc
    fmt = (image.format or "").upper()
    if formats is not None and fmt not in {f.upper() for f in formats}:
        raise ImageLoadError(
            "unsupported",
            f"{fmt or 'unknown'} images are not accepted; accepted: {', '.join(formats)}{where}",
            location,
        )
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageLoadError("corrupt", f"image has no pixels{where}", location)
    if width * height > max_pixels:
        raise ImageLoadError(
            "too-large",
            f"image is {width}x{height} = {width * height / 1e6:.1f} megapixels, more than the "
            f"{max_pixels / 1e6:g} megapixel limit{where}",
            location,
        )
    if max_side is not None and fmt == "JPEG":
        # Lazy: only tells the decoder to scale the DCT down; ``size`` becomes what will be
        # decoded (at least max_side on the shorter request, at most 1/8 reduction).
        image.draft("RGB", (max_side, max_side))
    decoded_width, decoded_height = image.size
    decoded_limit = max_pixels if max_decoded_pixels is None else max_decoded_pixels
    if decoded_width * decoded_height > decoded_limit:
        reducible = " (only JPEGs are decoded at a reduced size)" if fmt != "JPEG" else ""
        raise ImageLoadError(
            "too-large",
            f"image is {width}x{height}: decoding it takes {decoded_width}x{decoded_height} = "
            f"{decoded_width * decoded_height / 1e6:.1f} megapixels, more than the "
            f"{decoded_limit / 1e6:g} megapixel decoding limit{reducible}{where}",
            location,
        )
    try:
        image.load()
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(
            "too-large",
            f"image is more than the {max_pixels / 1e6:g} megapixel limit ({exc}){where}",
            location,
        ) from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageLoadError(
            "corrupt", f"image data is truncated or damaged ({exc}){where}", location
        ) from exc
    if max_side is not None and max(image.size) > max_side:
        # Shrink in place before turning upright: the full-size pixels are freed here, and the
        # rotation (or copy) below touches the small image only.
        image.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
    try:
        upright: Image.Image = ImageOps.exif_transpose(image)
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageLoadError("corrupt", f"damaged EXIF data: {exc}{where}", location) from exc
    return upright


# --------------------------------------------------------------------------------------------
# Addresses


def blocked_address_reason(address: str) -> str | None:
    """Why a build must not fetch from an IP address, or None when it is a global one.

    Refused: loopback, private (RFC 1918, IPv6 unique local), link-local (cloud metadata at
    169.254.169.254), shared (carrier-grade NAT), multicast, reserved, unspecified
    (``0.0.0.0``, ``::``) and every other address that is not globally routable; an IPv6
    address that embeds an IPv4 one (IPv4-mapped ``::ffff:127.0.0.1``, 6to4, Teredo) is judged
    by the IPv4 address.

    Args:
        address: An IPv4 or IPv6 address (no brackets; a zone ``%eth0`` is ignored).

    Returns:
        A short reason (``"a loopback address"``), or None.
    """
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return "not an IP address"
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None:
            reason = blocked_address_reason(str(embedded))
            return None if reason is None else f"{reason} ({embedded} inside {ip})"
    checks = (
        (ip.is_unspecified, "an unspecified address"),
        (ip.is_loopback, "a loopback address"),
        (ip.is_link_local, "a link-local address"),
        (ip.is_multicast, "a multicast address"),
        (ip.is_private, "a private address"),
        (ip.is_reserved, "a reserved address"),
        (not ip.is_global, "not a globally routable address"),
    )
    return next((reason for hit, reason in checks if hit), None)


def _pinned_address(host: str, port: int, allow_private: bool, url: str) -> str:
    """Resolve ``host`` once and return the address to connect to (the first one allowed).

    Raises:
        ImageLoadError: ``http`` when the host does not resolve or only to refused addresses.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise ImageLoadError("http", f"cannot resolve {host!r}: {exc} ({url})", url) from exc
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise ImageLoadError("http", f"{host!r} resolves to no address ({url})", url)
    if allow_private:
        return addresses[0]
    reasons = {a: blocked_address_reason(a) for a in addresses}
    allowed = [a for a, reason in reasons.items() if reason is None]
    if not allowed:
        first = addresses[0]
        raise ImageLoadError(
            "http",
            f"refused to fetch {url}: {host} is {first}, {reasons[first]}; photos are fetched "
            f"from public addresses only (set {ALLOW_PRIVATE_ENV}=1 to allow private ones)",
            url,
        )
    return allowed[0]


# --------------------------------------------------------------------------------------------
# Loading


class ImageLoader:
    """Reads product photos from local paths and http(s) URLs.

    Args:
        base_dir: Folder that relative paths are resolved against (None: the working folder).
        cache_dir: Folder for downloaded photos (created on demand), or None for no cache.
        timeout: Seconds per HTTP request (connect, read and write each).
        retries: Extra attempts after a failed download (connection error, timeout, 429, 5xx).
        backoff: Seconds before the first retry; doubled for each later one.
        max_bytes: Largest file read or downloaded.
        max_pixels: Most pixels a photo's header may declare.
        max_decoded_pixels: Most pixels decoded per photo (JPEGs decode reduced to fit).
        max_side: Longer side photos are shrunk to, or None to keep their size.
        workers: Photos read at the same time (downloads overlap; decoding holds the GIL less
            than it seems, Pillow releases it).
        user_agent: HTTP ``User-Agent`` header.
        allow_private: Fetch from loopback, private, link-local and other non-global
            addresses too; None reads ``PRODUCTSEARCH_IMAGE_FETCH_ALLOW_PRIVATE`` (off unless
            ``1``, ``true``, ``yes`` or ``on``).
        max_redirects: Redirects followed per download (each target checked like the first).
        deadline: Seconds one download may take in all (redirects and a slow body included),
            so a server that drips a byte just inside ``timeout`` cannot hold a worker.
        verify: TLS certificate check: True (the system's and certifi's CAs), a CA bundle
            path or an ``ssl.SSLContext`` (a shop's own CA). Certificates are checked against
            the URL's host name although the connection goes to the checked address.

    Raises:
        ValueError: When an argument is out of range.
    """

    def __init__(
        self,
        *,
        base_dir: Path | None = None,
        cache_dir: Path | None = None,
        timeout: float = 10.0,
        retries: int = 2,
        backoff: float = 0.5,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        max_side: int | None = DEFAULT_MAX_SIDE,
        workers: int = 8,
        max_decoded_pixels: int = DEFAULT_MAX_DECODED_PIXELS,
        user_agent: str = "productsearch-indexer/1.0",
        allow_private: bool | None = None,
        max_redirects: int = 5,
        deadline: float = 60.0,
        verify: ssl.SSLContext | str | bool = True,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0, got {timeout}")
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        if backoff < 0:
            raise ValueError(f"backoff must be >= 0, got {backoff}")
        if max_bytes < 1 or max_pixels < 1:
            raise ValueError(
                f"max_bytes and max_pixels must be >= 1, got {max_bytes}, {max_pixels}"
            )
        if max_side is not None and max_side < 16:
            raise ValueError(f"max_side must be >= 16 or None, got {max_side}")
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if max_decoded_pixels < 1:
            raise ValueError(f"max_decoded_pixels must be >= 1, got {max_decoded_pixels}")
        if max_redirects < 0:
            raise ValueError(f"max_redirects must be >= 0, got {max_redirects}")
        if deadline <= 0:
            raise ValueError(f"deadline must be > 0, got {deadline}")
        if allow_private is None:
            flag = os.environ.get(ALLOW_PRIVATE_ENV, "").strip().lower()
            allow_private = flag in ("1", "true", "yes", "on")
        self.base_dir = base_dir
        self.cache_dir = cache_dir
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_bytes = max_bytes
        self.max_pixels = max_pixels
        self.max_side = max_side
        self.max_decoded_pixels = max_decoded_pixels
        self.workers = workers
        self.user_agent = user_agent
        self.allow_private = allow_private
        self.max_redirects = max_redirects
        self.deadline = deadline
        self.verify = verify
        self._client: Any = None
        self._client_lock = threading.Lock()

    # -- public ------------------------------------------------------------------------------

    def load(self, location: str) -> Image.Image:
        """Read and decode one photo.

        Args:
            location: A path (absolute, or relative to ``base_dir``), a ``file://`` URL or an
                ``http(s)://`` URL.

        Returns:
            The decoded photo, EXIF orientation applied, shrunk to ``max_side``.

        Raises:
            ImageLoadError: With the problem's kind (see :class:`ImageLoadError`).
        """
        data = self.read_bytes(location)
        return decode_image(
            data,
            max_pixels=self.max_pixels,
            max_side=self.max_side,
            location=location,
            max_decoded_pixels=self.max_decoded_pixels,
        )

    def read_bytes(self, location: str) -> bytes:
        """The photo file's bytes, from disk, the cache or the network.

        Args:
            location: See :meth:`load`.

        Returns:
            The bytes.

        Raises:
            ImageLoadError: ``missing``, ``too-large``, ``http`` or ``unsupported`` (a URL
                scheme other than file, http and https).
        """
        location = location.strip()
        if not location:
            raise ImageLoadError("missing", "empty photo location", location)
        scheme = urlparse(location).scheme.lower()
        if scheme in ("http", "https"):
            return self._fetch(location)
        if scheme == "file":
            return self._read_file(Path(unquote(urlparse(location).path)), location)
        if len(scheme) > 1:  # one letter is a Windows drive ("C:\\photos\\a.jpg")
            raise ImageLoadError(
                "unsupported",
                f"unsupported photo location scheme {scheme!r}; use a path, file://, http:// "
                f"or https:// ({location})",
                location,
            )
        path = Path(location)
        if not path.is_absolute() and self.base_dir is not None:
            path = self.base_dir / path
        return self._read_file(path, location)

    def load_many(self, locations: Sequence[str]) -> list[Image.Image | ImageLoadError]:
        """Read several photos at once (``workers`` at a time), keeping their order.

        Args:
            locations: Paths or URLs.

        Returns:
            Per location, the photo or the error that stopped it.
        """

        def one(location: str) -> Image.Image | ImageLoadError:
            try:
                return self.load(location)
            except ImageLoadError as exc:
                return exc

        if self.workers == 1 or len(locations) <= 1:
            return [one(loc) for loc in locations]
        with ThreadPoolExecutor(max_workers=min(self.workers, len(locations))) as pool:
            return list(pool.map(one, locations))

    def close(self) -> None:
        """Close the HTTP connection pool (a later download opens a new one)."""
        with self._client_lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def __enter__(self) -> ImageLoader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- files -------------------------------------------------------------------------------

    def _read_file(self, path: Path, location: str) -> bytes:
        try:
            size = path.stat().st_size
            if size > self.max_bytes:
                raise ImageLoadError(
                    "too-large",
                    f"file is {size} bytes, more than the {self.max_bytes} byte limit ({location})",
                    location,
                )
            return path.read_bytes()
        except FileNotFoundError as exc:
            raise ImageLoadError("missing", f"no such file: {path}", location) from exc
        except IsADirectoryError as exc:
            raise ImageLoadError("missing", f"a folder, not a file: {path}", location) from exc
        except OSError as exc:
            raise ImageLoadError("missing", f"cannot read {path}: {exc}", location) from exc

    # -- http --------------------------------------------------------------------------------

    def _cache_path(self, url: str) -> Path | None:
        if self.cache_dir is None:
            return None
        digest = hashlib.sha256(url.encode("utf-8")).hexdigest()
        return self.cache_dir / digest[:2] / digest

    def _http(self) -> Any:
        with self._client_lock:
            if self._client is None:
                import httpx

                self._client = httpx.Client(
                    timeout=self.timeout,
                    # Redirects are followed by hand, each target checked; proxies from the
                    # environment would connect elsewhere than the checked address.
                    follow_redirects=False,
                    trust_env=False,
                    verify=self.verify,
                    headers={"User-Agent": self.user_agent},
                )
            return self._client

    def _fetch(self, url: str) -> bytes:
        cached = self._cache_path(url)
        if cached is not None and cached.is_file():
            try:
                return cached.read_bytes()
            except OSError:
                pass  # unreadable cache entry: download again
        data = self._download(url)
        if cached is not None:
            try:
                cached.parent.mkdir(parents=True, exist_ok=True)
                # Write then rename, so a concurrent reader never sees half a file.
                partial = cached.with_name(f"{cached.name}.{os.getpid()}.{threading.get_ident()}")
                partial.write_bytes(data)
                partial.replace(cached)
            except OSError:
                pass  # a cache that cannot be written only costs a later download
        return data

    def _download(self, url: str) -> bytes:
        import httpx

        client = self._http()
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                data = self._get(client, url, time.monotonic() + self.deadline)
            except httpx.TimeoutException:
                last = f"timed out after {self.timeout:g} s"
                continue
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}"
                continue
            except httpx.HTTPError as exc:  # invalid URL and the like: retrying will not help
                raise ImageLoadError("http", f"{exc} ({url})", url) from exc
            if isinstance(data, bytes):
                return data
            last = data
        raise ImageLoadError(
            "http", f"download failed after {self.retries + 1} attempts: {last} ({url})", url
        )

    def _get(self, client: Any, url: str, deadline: float) -> bytes | str:
        """One attempt: follow redirects by hand, connecting to checked addresses only.

        Returns:
            The body, or why a retry may help (``"HTTP 503"``).

        Raises:
            ImageLoadError: a refused address, a 4xx, too many redirects, past the size limit or
                the deadline.
        """
        import httpx

        current = url
        for hop in range(self.max_redirects + 1):
            if time.monotonic() > deadline:
                raise ImageLoadError(
                    "http", f"download took more than {self.deadline:g} s ({url})", url
                )
            target = httpx.URL(current)
            if target.scheme not in ("http", "https") or not target.host:
                raise ImageLoadError(
                    "http", f"redirected to {current!r}, not an http(s) URL ({url})", url
                )
            port = target.port or (443 if target.scheme == "https" else 80)
            address = _pinned_address(target.host, port, self.allow_private, current)
            # Connect to the address just checked (a second lookup could answer another one),
            # while the Host header and TLS (SNI, certificate) still name the host.
            request = client.build_request(
                "GET",
                target.copy_with(host=address),
                headers={"Host": target.netloc.decode("ascii")},
                extensions={"sni_hostname": target.host} if target.scheme == "https" else {},
            )
            response = client.send(request, stream=True)
            try:
                status = response.status_code
                if status in _REDIRECTS and "location" in response.headers:
                    if hop == self.max_redirects:
                        raise ImageLoadError(
                            "http", f"more than {self.max_redirects} redirects ({url})", url
                        )
                    current = urljoin(current, response.headers["location"])
                    continue
                if status == 429 or status >= 500:
                    return f"HTTP {status}"
                if status >= 400:
                    raise ImageLoadError("http", f"HTTP {status} for {current}", url)
                return self._body(response, url, deadline)
            finally:
                response.close()
        raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover

    def _body(self, response: Any, url: str, deadline: float) -> bytes:
        """Read a streamed body, aborting past ``max_bytes`` or the deadline."""
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise ImageLoadError(
                "too-large",
                f"download is {declared} bytes, more than the {self.max_bytes} byte limit ({url})",
                url,
            )
        chunks: list[bytes] = []
        received = 0
        for chunk in response.iter_bytes():
            received += len(chunk)
            if received > self.max_bytes:
                raise ImageLoadError(
                    "too-large",
                    f"download is more than the {self.max_bytes} byte limit ({url})",
                    url,
                )
            if time.monotonic() > deadline:
                raise ImageLoadError(
                    "http", f"download took more than {self.deadline:g} s ({url})", url
                )
            chunks.append(chunk)
        return b"".join(chunks)


# --------------------------------------------------------------------------------------------
# Embedding


@dataclass(frozen=True, slots=True)
class ImageEmbeddings:
    """Photo vectors of a catalogue.

    Attributes:
        vectors: ``(n_products, dim)`` float32; unit rows where ``has_vector``, zeros elsewhere.
        has_vector: ``(n_products,)``: True where at least one photo was read and encoded.
        problems: Every photo that could not be used, in product order.
    """

    vectors: npt.NDArray[np.float32]
    has_vector: npt.NDArray[np.bool_]
    problems: list[ImageProblem]

    def __iter__(self) -> Any:
        """Unpack as ``vectors, has_vector, problems``."""
        return iter((self.vectors, self.has_vector, self.problems))


ProgressCallback = Callable[[int, int], None]


def embed_product_images(
    image_refs: Sequence[Sequence[str]],
    embedder: ImageEmbedder,
    *,
    batch_size: int = 32,
    loader: ImageLoader | None = None,
    photos_per_product: int = 1,
    progress: ProgressCallback | bool = False,
) -> ImageEmbeddings:
    """Encode each product's photo(s) into one vector.

    Per product the photos are tried in order (main first): the first ``photos_per_product``
    that can be read are encoded and their vectors averaged (then renormalised); a photo that
    cannot be read is reported and the next one tried, so a broken main photo falls back to the
    second. A product none of whose photos can be read gets no vector. Photos are read and
    encoded ``batch_size`` products at a time, so memory stays bounded.

    Args:
        image_refs: Per product its photo locations (paths or URLs), main first; may be empty.
        embedder: The image embedder (warmed up here if needed).
        batch_size: Products read and encoded per step (>= 1).
        loader: Reads the photos; a default :class:`ImageLoader` when None (closed afterwards).
        photos_per_product: Most photos averaged per product (>= 1; 1: the main photo only).
        progress: A ``callback(done_products, total_products)`` called after each batch, True
            for a tqdm bar, or False for silence.

    Returns:
        The vectors, the mask of products that have one, and the problems reported.

    Raises:
        ValueError: When ``batch_size`` or ``photos_per_product`` is < 1.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if photos_per_product < 1:
        raise ValueError(f"photos_per_product must be >= 1, got {photos_per_product}")
    own_loader = loader is None
    loader = loader or ImageLoader()
    total = len(image_refs)
    embedder.warm_up()
    dim = embedder.dim
    vectors = np.zeros((total, dim), dtype=np.float32)
    has_vector = np.zeros(total, dtype=bool)
    problems: list[ImageProblem] = []
    bar: Any = None
    if progress is True:
        from tqdm import tqdm

        bar = tqdm(total=total, desc="photos", unit="product")
    callback = progress if callable(progress) else None
    try:
        for start in range(0, total, batch_size):
            stop = min(start + batch_size, total)
            owners, images = _read_batch(
                image_refs, range(start, stop), loader, photos_per_product, problems
            )
            if images:
                encoded = embedder.embed_images(images, batch_size=batch_size)
                sums = np.zeros((stop - start, encoded.shape[1]), dtype=np.float32)
                np.add.at(sums, np.asarray(owners) - start, encoded)
                norms = np.linalg.norm(sums, axis=1)
                rows = np.flatnonzero(norms > 0)
                vectors[start + rows] = sums[rows] / norms[rows, None]
                has_vector[start + rows] = True
            if bar is not None:
                bar.update(stop - start)
            if callback is not None:
                callback(stop, total)
    finally:
        if bar is not None:
            bar.close()
        if own_loader:
            loader.close()
    return ImageEmbeddings(vectors=vectors, has_vector=has_vector, problems=problems)


def _read_batch(
    image_refs: Sequence[Sequence[str]],
    products: range,
    loader: ImageLoader,
    per_product: int,
    problems: list[ImageProblem],
) -> tuple[list[int], list[Image.Image]]:
    """Read the photos of a range of products; failed ones go to ``problems``.

    First the leading ``per_product`` photos of every product are read together (downloads
    overlap); products short of photos then try their next ones, round by round.

    Returns:
        The owning product of each image read, and the images.
    """
    owners: list[int] = []
    images: list[Image.Image] = []
    found: list[ImageProblem] = []
    remaining = {p: list(image_refs[p]) for p in products}
    wanted = dict.fromkeys(products, per_product)
    while True:
        jobs = [(p, loc) for p in products if wanted[p] > 0 for loc in remaining[p][: wanted[p]]]
        if not jobs:
            break
        for p in products:
            if wanted[p] > 0:
                del remaining[p][: wanted[p]]
        results = loader.load_many([loc for _, loc in jobs])
        for (p, loc), result in zip(jobs, results, strict=True):
            if isinstance(result, ImageLoadError):
                found.append(ImageProblem(p, loc, f"{result.kind}: {result.message}"))
                continue
            owners.append(p)
            images.append(result)
            wanted[p] -= 1
    problems.extend(sorted(found, key=lambda problem: problem.product))  # stable: photo order
    order = np.argsort(np.asarray(owners, dtype=np.int64), kind="stable")
    return [owners[i] for i in order], [images[i] for i in order]
