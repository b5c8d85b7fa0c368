"""Dominant product colours from a photo (numpy + Pillow only).

The extractor finds the product in a catalogue photo and names its main colours with the shop's
colour vocabulary (:mod:`search.colour`):

1. EXIF orientation is applied, the photo is shrunk so its longer side is at most ``size`` pixels
   (JPEGs are decoded at reduced scale) and transparency is flattened onto white.
2. The backdrop is estimated from the border: the colour most of the border agrees on (in Lab),
   whatever it is (studio white, grey, a coloured sheet). Pixels close to it *and connected to
   the border* are background, so a light print inside a dark T-shirt stays product; enclosed
   pixels count as backdrop only when almost exactly its colour (seen through a bag's handle).
   When no backdrop can be told apart (the product fills the frame, or is the backdrop's colour),
   every pixel counts, weighted towards the centre.
3. Product pixels are weighted towards the centre of the frame (a model's hair and trousers sit
   near the edges), skin-like pixels are down-weighted unless they are nearly all of the product
   (a model wearing a red top, but a nude bra keeps its colour), and a few near-white specular
   highlights are dropped unless the product itself is white.
4. Weighted k-means in Lab (k-means++ seeding from ``seed``) over a binned colour histogram;
   clusters closer than a CIEDE2000 threshold merge. A soft lightness/chroma/hue histogram of
   the product's pixels is kept beside the clusters (:func:`measure`).
5. A :class:`ColourModel` names the clusters: screen swatches are poor guides to photographed
   fabric (navy photographs near black, light blue near white), so each name has a *photo
   swatch* (a Gaussian over the measured Lab of that colour in photos), and a linear classifier
   over the whole histogram gives the photo's prior over names (it weighs context: skin,
   trousers, highlights). Clusters named alike merge; colours are ranked by share. The shipped
   model (``indexer/colour_model.json``) is fitted on all the labelled fashion photos in
   shared/data (``python -m benchmarks.fashion_colour --fit``); the same recipe fitted on 70%
   of them is what the benchmark scores on the other 30%.
6. Optionally, ImageNet CNN features of the photo (the 1280-d EfficientNet-Lite0 vector of
   :class:`models.image.EfficientNetLite0Embedder`) sharpen the photo-level prior: a
   :class:`FeatureColourModel` (a softmax over the histogram and the CNN vector) knows what kind
   of product it sees, and so which part of it the catalogue's colour describes (the metal of an
   earring, the strap of a watch). With features, the main colour is the best-ranked colour of
   the family that model predicts (the largest cluster is renamed within it when no reported
   colour has it). Pass the vector a snapshot build already computed
   (``extract(image, features=v)``) or let the extractor compute it (``feature_embedder=``).
   Its recipe raises held-out family accuracy on the fashion photos from 0.64 to about 0.69
   (see ``benchmarks/fashion_colour.py``); the shipped head
   (``indexer/colour_model_lite0.json``) is fitted on all of them.
   Flat-colour artwork (a drawing or a rendered swatch: most of the product's pixels in a few
   exact sRGB values, which no camera produces) is named without the CNN vector: the
   ImageNet features of a drawing say little about it, and on the demo catalogue's drawings
   the head's family renamed a flat navy sofa's 97% navy cluster white (the CNN saw a white
   frame). On photos the head's family stays: where it changed the main family of 1,500
   fashion photos it was right 178 times against 34 for the statistics, and more often at any
   cluster share or Lab distance of the rename, so no colour test could tell a misreading.
7. The reported Lab is the cluster's calibrated measurement (:func:`_calibrate`: studio photos
   compress the tonal range and wash out chroma), moved towards the named swatch only as far as
   needed for its nearest vocabulary colour to be of the name's family, so search compares the
   product's own shade without contradicting its name.

Typical use::

    extractor = PhotoColourExtractor()
    photo = extractor.extract_path(Path("photos/15970.jpg"))
    photo.colours[0].name, photo.colours[0].family  # ("navy", "blue")

    # With the Lite0 vector the snapshot build computed for the same photo:
    photo = extractor.extract_path(Path("photos/15970.jpg"), features=lite0_vector)
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageOps, UnidentifiedImageError

from search.colour import Colour, Family, ciede2000_many, nearest, vocabulary
from search.errors import ColourExtractionError

__all__ = [
    "FEATURE_MODEL_PATH",
    "MODEL_PATH",
    "ColourExtractionError",
    "ColourModel",
    "FeatureColourModel",
    "HistogramLayout",
    "Measurement",
    "PhotoColour",
    "PhotoColourExtractor",
    "PhotoColours",
    "PhotoFeatureEmbedder",
    "default_feature_model",
    "default_model",
    "lch_histogram",
    "measure",
]

FloatArray = NDArray[np.float32]
BoolArray = NDArray[np.bool_]

# --- tuning (fitted on the fashion photos in shared/data; see benchmarks/fashion_colour.py) ---
#: Border band width as a share of the shorter side (at least one pixel).
_BORDER_SHARE: Final = 0.03
#: Border pixels within this Lab distance of a candidate count as agreeing with it.
_BORDER_AGREE_DE: Final = 8.0
#: Least share of the border that must agree on one colour for it to be a backdrop.
_MIN_BACKDROP_BORDER: Final = 0.3
#: Lab distance to the backdrop under which a border-connected pixel is background.
_BACKGROUND_DE: Final = (6.0, 14.0)
#: Lab distance to the backdrop under which a pixel enclosed by the product is backdrop too.
_HOLE_DE: Final = 3.0
#: Less product than this share of the frame means the product could not be told from the backdrop.
_MIN_PRODUCT: Final = 0.015
#: A chromatic "backdrop" leaving less product than this is more likely the product itself.
_MIN_PRODUCT_ON_COLOUR: Final = 0.12
#: Centre weighting: Gaussian sigma in half-frame units (x, y) for separated products, and the
#: tighter one used when no backdrop was found.
_CENTRE_SIGMA: Final = (0.75, 0.6)
_FALLBACK_SIGMA: Final = (0.5, 0.5)
#: Skin-like pixels are down-weighted to this when other colours make at least ``_SKIN_MIN_OTHER``
#: of the product (a model wearing the garment), and left alone otherwise (a nude or beige product).
_SKIN_WEIGHT: Final = 0.2
_SKIN_MIN_OTHER: Final = 0.2
#: Near-white highlights (L* above, chroma below) are dropped when they are a smaller share than this.
_SPECULAR_L: Final = 93.0
_SPECULAR_C: Final = 6.0
_SPECULAR_MAX_SHARE: Final = 0.05
#: k-means: clusters, iterations, and the CIEDE2000 distance under which two clusters merge.
_KMEANS_K: Final = 6
_KMEANS_ITERATIONS: Final = 12
_MERGE_DE: Final = 10.0
#: Bits kept per RGB channel when pixels are binned before clustering.
_HISTOGRAM_BITS: Final = 5
#: Calibration of a cluster's Lab before naming: studio photos compress the tonal range (black
#: fabric photographs at L* 15..25, white at 85..92) and small JPEGs lose chroma.
_BLACK_POINTS: Final = (22.0, 4.0)
_CHROMATIC_AT: Final = 15.0
_WHITE_POINT: Final = 86.0
_CHROMA_GAIN_KNOTS: Final = (15.0, 50.0, 85.0)
_CHROMA_GAINS: Final = (3.5, 2.0, 1.4)
_CHROMA_FLOOR: Final = 3.0
#: Confidence: share at which the share term saturates.
_CONFIDENT_SHARE: Final = 0.5
#: Steps from the calibrated measurement towards the named colour's swatch, tried in turn until
#: the reported Lab is nearest a colour of the name's family (see :func:`_reported_lab`).
_TOWARDS_SWATCH: Final = (1.0, 0.75, 0.5, 0.25, 0.0)

#: Photo swatches with at least this mean chroma are chromatic (their chroma is capped, see
#: :class:`ColourModel`).
_CHROMATIC_SWATCH: Final = 6.0

#: Flat-colour artwork: at least this share of the product's pixels in its ``_FLAT_COLOURS``
#: most frequent exact sRGB values. Such a picture is named without CNN features (the
#: CNN-aware prior is fitted on photos). The demo catalogue's drawings measure 0.66 or more;
#: of 1,500 fashion photos (JPEG) the median is 0.02 and the highest 0.50 (black wallets,
#: socks), but for one blown-out white frame (0.97) where no backdrop is found, which the
#: photo recipe keeps (only a product separated from a backdrop can be artwork).
_FLAT_SHARE: Final = 0.6
_FLAT_COLOURS: Final = 4

_VOCABULARY: Final[dict[str, Colour]] = {c.name: c for c in vocabulary()}


@dataclass(frozen=True, slots=True)
class PhotoColour:
    """One dominant colour of a product photo.

    Attributes:
        lab: CIELAB (D65) of the colour in vocabulary terms: the measurement calibrated for
            studio photography, whose nearest vocabulary colour is of ``family`` (compare it
            with vocabulary coordinates, not with raw pixel values).
        share: Weighted share of the product's pixels in this colour (0..1); the weights favour
            the centre of the frame and discount a model's skin.
        name: The vocabulary colour's canonical name (``"navy"``), as the model names it; one of
            the model's names (metallic ones included, ``multi`` never).
        family: That colour's family, a :class:`search.colour.Family` value (``"blue"``).
        hex: That vocabulary colour's ``#rrggbb``.
        confidence: 0..1: ``sqrt(min(1, share / 0.5))`` times the model's probability of the
            name for its clusters (share-weighted; for a colour renamed to the family a
            :class:`FeatureColourModel` predicts, that model's probability of the name); high for
            a large, unambiguous colour.
    """

    lab: tuple[float, float, float]
    share: float
    name: str
    family: str
    hex: str
    confidence: float


@dataclass(frozen=True, slots=True)
class PhotoColours:
    """The colours of one product photo.

    Attributes:
        colours: Dominant colours, main first (at most ``max_colours``, each at least ``min_share``
            unless it is the only one).
        product_pixels: Share of the image taken by the product (1.0 when no background could be
            separated and the whole frame was used).
    """

    colours: tuple[PhotoColour, ...]
    product_pixels: float

    @property
    def main(self) -> PhotoColour | None:
        """The main colour, or None for an empty result.

        Returns:
            ``colours[0]`` or None.
        """
        return self.colours[0] if self.colours else None


class PhotoColourExtractor:
    """Finds the dominant colours of the product in a photo.

    Args:
        max_colours: Most colours returned (>= 1).
        min_share: Least weighted share of the product for a secondary colour (0 <= x < 1); the
            main colour is always returned.
        size: Longer side, in pixels, the photo is shrunk to before analysis (>= 16).
        seed: Seed of the k-means initialisation; equal seeds give equal results.
        model: The naming model; None reads the shipped one (:func:`default_model`) on the
            first extraction.
        feature_model: The CNN-aware prior used when a photo's features are known; None reads
            the shipped one (:func:`default_feature_model`) on the first extraction with
            features. Its names must be ``model``'s.
        feature_embedder: Computes a photo's features when :meth:`extract` is given none (an
            :class:`models.image.EfficientNetLite0Embedder` for the shipped feature model;
            loaded on first use). None: photos without given features are named from colour
            statistics alone.

    Raises:
        ValueError: When an argument is out of range, or ``model`` and ``feature_model`` name
            different colours.
    """

    def __init__(
        self,
        *,
        max_colours: int = 3,
        min_share: float = 0.08,
        size: int = 96,
        seed: int = 0,
        model: ColourModel | None = None,
        feature_model: FeatureColourModel | None = None,
        feature_embedder: PhotoFeatureEmbedder | None = None,
    ) -> None:
        if max_colours < 1:
            raise ValueError(f"max_colours must be >= 1, got {max_colours}")
        if not 0.0 <= min_share < 1.0:
            raise ValueError(f"min_share must be in [0, 1), got {min_share}")
        if size < 16:
            raise ValueError(f"size must be >= 16, got {size}")
        self.max_colours = max_colours
        self.min_share = min_share
        self.size = size
        self.seed = seed
        self._model = model
        self._feature_model = feature_model
        self.feature_embedder = feature_embedder
        if model is not None and feature_model is not None:
            _check_same_names(model, feature_model)

    @property
    def model(self) -> ColourModel:
        """The naming model (the shipped one unless another was given).

        Returns:
            The model.
        """
        if self._model is None:
            self._model = default_model()
        return self._model

    @property
    def feature_model(self) -> FeatureColourModel:
        """The CNN-aware prior (the shipped one unless another was given).

        Returns:
            The model.

        Raises:
            ValueError: When its names differ from :attr:`model`'s.
        """
        if self._feature_model is None:
            feature_model = default_feature_model()
            _check_same_names(self.model, feature_model)
            self._feature_model = feature_model
        return self._feature_model

    # -- public ------------------------------------------------------------------------------

    def extract_path(
        self, path: Path, features: NDArray[np.floating] | None = None
    ) -> PhotoColours:
        """Read a photo file and extract its colours.

        Args:
            path: An image file Pillow can read (JPEG, PNG, WebP, ...).
            features: The photo's CNN features, as :meth:`extract` takes them.

        Returns:
            The product's colours.

        Raises:
            ColourExtractionError: When the file is missing, unreadable, truncated or not an image.
            ValueError: When ``features`` has the wrong length or is not finite.
        """
        # A JPEG is decoded at reduced scale for colour statistics only; a CNN sees it whole.
        reduced = features is not None or self.feature_embedder is None
        return self.extract(self._open(Path(path), reduced=reduced), features)

    def measure_path(self, path: Path) -> Measurement:
        """Read a photo file and measure it without naming colours (for fitting a model).

        Args:
            path: An image file Pillow can read.

        Returns:
            The measurement.

        Raises:
            ColourExtractionError: When the file is missing, unreadable, truncated or not an image.
        """
        return measure(self._open(Path(path)), size=self.size, seed=self.seed)

    def extract(
        self, image: Image.Image, features: NDArray[np.floating] | None = None
    ) -> PhotoColours:
        """Extract the dominant colours of the product in an image.

        Args:
            image: Any Pillow image (any mode; EXIF orientation is honoured).
            features: The photo's CNN features: the exact vector the feature model was fitted
                on (for the shipped one, what ``EfficientNetLite0Embedder().embed_images`` returns
                for this photo, 1280 floats). None: computed with ``feature_embedder`` when the
                extractor has one, else the photo is named from colour statistics alone.
                Flat-colour artwork is always named from colour statistics alone (its
                features are still checked).

        Returns:
            The product's colours, main first, and the share of the frame the product takes.

        Raises:
            ColourExtractionError: When the image has no pixels.
            ValueError: When ``features`` has the wrong length or is not finite.
        """
        measured = measure(image, size=self.size, seed=self.seed)
        if features is None and self.feature_embedder is not None and not measured.flat:
            features = self._embed(image)
        return self.name(measured, features)

    def name(
        self, measured: Measurement, features: NDArray[np.floating] | None = None
    ) -> PhotoColours:
        """Name the colours of a measured photo with the model.

        Args:
            measured: From :func:`measure`.
            features: The photo's CNN features (see :meth:`extract`), or None to name from
                colour statistics alone.

        Returns:
            The product's colours, main first.

        Raises:
            ValueError: When ``features`` has the wrong length or is not finite.
        """
        model = self.model
        family: str | None = None
        if features is not None and measured.flat:
            # Checked like any features, then left out: a CNN fitted on photos misreads
            # drawings (see :data:`_FLAT_SHARE`).
            self.feature_model.posterior(measured.histogram, features)
            features = None
        if features is None:
            posterior = model.posterior(measured.histogram)
            prior_weight = model.prior_weight
        else:
            feature_model = self.feature_model
            posterior = feature_model.posterior(measured.histogram, features)
            prior_weight = feature_model.prior_weight
            family = feature_model.family(posterior)
        index, probability = model.name_clusters(
            measured.centres, posterior, prior_weight=prior_weight
        )
        # Per name: total share, share-weighted Lab sum and share-weighted probability.
        groups: dict[int, tuple[float, NDArray[np.float64], float]] = {}
        for i, share, centre, p in zip(
            index, measured.shares, measured.centres, probability, strict=True
        ):
            total, lab_sum, p_sum = groups.get(int(i), (0.0, np.zeros(3), 0.0))
            weight = float(share)
            groups[int(i)] = (total + weight, lab_sum + centre * weight, p_sum + float(p) * weight)
        ranked = sorted(groups.items(), key=lambda item: -item[1][0])
        if family is not None:
            ranked = self._lead_with_family(ranked, family, posterior)
        out: list[PhotoColour] = []
        for i, (share, lab_sum, p_sum) in ranked:
            if out and (share < self.min_share or len(out) >= self.max_colours):
                break
            colour = _VOCABULARY[model.names[i]]
            share_term = min(1.0, share / _CONFIDENT_SHARE) ** 0.5
            out.append(
                PhotoColour(
                    lab=_reported_lab(lab_sum / max(share, 1e-12), colour),
                    share=round(share, 4),
                    name=colour.name,
                    family=str(colour.family),
                    hex=colour.hex,
                    confidence=round(share_term * p_sum / max(share, 1e-12), 4),
                )
            )
        return PhotoColours(colours=tuple(out), product_pixels=round(measured.product_share, 4))

    def _lead_with_family(
        self,
        ranked: list[tuple[int, tuple[float, NDArray[np.float64], float]]],
        family: str,
        posterior: NDArray[np.float64],
    ) -> list[tuple[int, tuple[float, NDArray[np.float64], float]]]:
        """Put a colour of ``family`` first: the feature model's family beats cluster shares.

        The largest colour of that family among those that would be reported moves to the
        front; when there is none, the largest colour is renamed to the family's most probable
        name (a patterned shirt labelled by its print, an earring by its metal), absorbing any
        small colour already so named.
        """
        names = self.model.names
        for position, (i, (share, _, _)) in enumerate(ranked):
            # The same cut as the reported colours: ``position`` colours are already reported.
            if position and (share < self.min_share or position >= self.max_colours):
                break
            if str(_VOCABULARY[names[i]].family) == family:
                return [ranked[position], *ranked[:position], *ranked[position + 1 :]]
        in_family = np.array([str(_VOCABULARY[n].family) == family for n in names])
        best = int(np.argmax(np.where(in_family, posterior, -1.0)))
        share, lab_sum, _ = ranked[0][1]
        rest = []
        for i, group in ranked[1:]:
            if i == best:  # merged into the renamed colour
                share, lab_sum = share + group[0], lab_sum + group[1]
            else:
                rest.append((i, group))
        renamed = (best, (share, lab_sum, float(posterior[best]) * share))
        return [renamed, *sorted(rest, key=lambda item: -item[1][0])]

    # -- reading -----------------------------------------------------------------------------

    def _embed(self, image: Image.Image) -> NDArray[np.float32]:
        """The photo's features from :attr:`feature_embedder`, upright as a snapshot build sees it."""
        assert self.feature_embedder is not None
        if image.width == 0 or image.height == 0:
            raise ColourExtractionError("image has no pixels")
        upright = ImageOps.exif_transpose(image)
        vectors = self.feature_embedder.embed_images([upright], batch_size=1)
        return np.asarray(vectors, dtype=np.float32)[0]

    def _open(self, path: Path, *, reduced: bool = True) -> Image.Image:
        """Open and decode a photo, every failure as :class:`ColourExtractionError`."""
        try:
            with Image.open(path) as opened:
                if reduced and opened.format == "JPEG":
                    # DCT scaling: decode a large JPEG at 1/2..1/8 scale, far faster than a
                    # full decode followed by a resize.
                    opened.draft("RGB", (self.size * 2, self.size * 2))
                opened.load()
                return opened  # pixels and EXIF stay usable once loaded and closed
        except FileNotFoundError as exc:
            raise ColourExtractionError(f"{path}: no such file", path) from exc
        except IsADirectoryError as exc:
            raise ColourExtractionError(f"{path}: is a directory, not an image", path) from exc
        except PermissionError as exc:
            raise ColourExtractionError(f"{path}: permission denied", path) from exc
        except UnidentifiedImageError as exc:
            raise ColourExtractionError(
                f"{path}: not an image in a format Pillow reads (JPEG, PNG, WebP, ...)", path
            ) from exc
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            # Pillow reports truncated and corrupt data as OSError ("image file is truncated").
            raise ColourExtractionError(
                f"{path}: unreadable or truncated image ({exc})", path
            ) from exc


def _reported_lab(measured: NDArray[np.floating], colour: Colour) -> tuple[float, float, float]:
    """The Lab reported for a named cluster: its calibrated measurement, kept consistent.

    The calibrated measurement (:func:`_calibrate`) keeps the product's own shade, which search
    compares with what a shopper asked for (``#1f2a44``, "navy"); but it must not contradict the
    name's family (a navy measured as near-black), so it is moved towards the named swatch in
    steps until its nearest vocabulary colour is of the name's family (at the last step it is
    the swatch itself).
    """
    calibrated = np.asarray(_calibrate(measured), dtype=np.float64)
    swatch = np.asarray(colour.lab, dtype=np.float64)
    metallic = colour.family is Family.METALLIC
    for step in _TOWARDS_SWATCH:
        lab = swatch + step * (calibrated - swatch)
        if nearest(lab, include_metallic=metallic)[0].family is colour.family:
            return _lab_tuple(lab)
    return _lab_tuple(swatch)


# --------------------------------------------------------------------------------------------
# Pipeline


@dataclass(frozen=True, slots=True)
class Measurement:
    """What a photo shows before any colour is named: the input of a :class:`ColourModel`.

    Attributes:
        histogram: LCh histogram features of the product's pixels (see :func:`lch_histogram`),
            one block per centre-weighting power of the model's histogram layout.
        centres: Measured (uncalibrated) Lab of the colour clusters, ``(k, 3)``.
        shares: The clusters' weighted shares, largest first, summing to 1, ``(k,)``.
        product_share: Share of the frame taken by the product (1.0 when no backdrop was found).
        flat: The product is flat-colour artwork, not a photo (see :data:`_FLAT_SHARE`): it
            is named without CNN features.
    """

    histogram: FloatArray
    centres: FloatArray
    shares: NDArray[np.float64]
    product_share: float
    flat: bool = False


@dataclass(frozen=True, slots=True)
class HistogramLayout:
    """Bins of the soft LCh histogram a :class:`ColourModel` reads.

    Attributes:
        lightness: Centres of the L* bins, increasing.
        chroma: Centres of the chroma bins, increasing, the first 0 (the hue-less neutral bin).
        hues: Number of hue bins around the circle.
        powers: Centre-weighting powers: one histogram per power, the pixel weights raised to it
            (a higher power looks closer to the centre of the frame).
    """

    lightness: tuple[float, ...] = (8.0, 20.0, 32.0, 44.0, 56.0, 68.0, 80.0, 90.0, 97.0)
    chroma: tuple[float, ...] = (0.0, 5.0, 10.0, 18.0, 30.0, 50.0)
    hues: int = 12
    powers: tuple[float, ...] = (1.0, 4.0)

    @property
    def size(self) -> int:
        """Length of the feature vector.

        Returns:
            ``len(powers) * (len(lightness) * (1 + (len(chroma) - 1) * hues))``.
        """
        per_power = len(self.lightness) * (1 + (len(self.chroma) - 1) * self.hues)
        return len(self.powers) * per_power


def measure(image: Image.Image, *, size: int = 96, seed: int = 0) -> Measurement:
    """Separate the product from its backdrop and measure its colours (nothing named yet).

    Args:
        image: Any Pillow image.
        size: Longer side the photo is shrunk to.
        seed: k-means seed.

    Returns:
        The measurement: histogram features, measured clusters and the product's share.

    Raises:
        ColourExtractionError: When the image has no pixels.
    """
    rgb = _prepare(image, size)
    lab = _rgb_to_lab(rgb)
    h, w = lab.shape[:2]
    background = _background_mask(lab)
    product = ~background
    product_share = float(product.mean())
    separated = product_share >= _MIN_PRODUCT
    if separated:
        sigma = _CENTRE_SIGMA
    else:
        product = np.ones((h, w), dtype=bool)
        product_share = 1.0
        sigma = _FALLBACK_SIGMA
    centre = _centre_weights(h, w, sigma)[product]
    pixels = lab[product]
    histogram = lch_histogram(pixels, centre, _LAYOUT)
    weights = centre * _specular_weights(pixels) if separated else centre
    weights = weights * _skin_weights(pixels)
    if float(weights.sum()) <= 0.0:
        weights = np.ones(len(pixels), dtype=np.float32)
    bins, bin_weights = _histogram(rgb[product], pixels, weights)
    centres, shares = _dominant(bins, bin_weights, seed)
    # Artwork is a drawing on a backdrop; a frame with no backdrop found (a close-up, a blown-out
    # white photo of a small earring) is left to the photo recipe.
    flat = separated and _is_flat(rgb[product])
    return Measurement(histogram, centres, shares, product_share, flat)


def _is_flat(rgb: NDArray[np.uint8]) -> bool:
    """Whether pixels are flat-colour artwork: most of them in a few exact sRGB values.

    Camera noise and JPEG compression leave almost no two neighbouring pixels of a photo the
    same; a drawing's fills (the shrink to ``size`` averages only their edges) stay exact.
    """
    if len(rgb) == 0:
        return False
    codes = (rgb[:, 0].astype(np.int32) << 16) | (rgb[:, 1].astype(np.int32) << 8) | rgb[:, 2]
    counts = np.unique(codes, return_counts=True)[1]
    top = np.sort(counts)[::-1][:_FLAT_COLOURS]
    return float(top.sum()) >= _FLAT_SHARE * len(codes)


# --------------------------------------------------------------------------------------------
# Image preparation and colour conversion


def _prepare(image: Image.Image, size: int) -> NDArray[np.uint8]:
    """Orient, shrink to ``size`` on the longer side, flatten transparency onto white, to RGB.

    Raises:
        ColourExtractionError: When the image has no pixels or a mode Pillow cannot convert.
    """
    if image.width == 0 or image.height == 0:
        raise ColourExtractionError("image has no pixels")
    try:
        image = ImageOps.exif_transpose(image)
        image = _to_8bit(image)
        if image.mode in ("RGBa", "La", "PA") or (
            image.mode == "P" and "transparency" in image.info
        ):
            image = image.convert("RGBA")
        elif image.mode not in ("RGB", "RGBA", "LA", "L"):
            image = image.convert("RGB")
        if max(image.size) > size:
            scale = size / max(image.size)
            target = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
            # BOX averages each source block once: fast, and exact enough for colour statistics.
            image = image.resize(target, Image.Resampling.BOX, reducing_gap=2.0)
        if image.mode in ("RGBA", "LA"):
            rgba = image.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            image = Image.alpha_composite(white, rgba)
        image = image.convert("RGB")
    except ValueError as exc:
        raise ColourExtractionError(f"cannot convert a {image.mode!r} image to RGB: {exc}") from exc
    return np.asarray(image, dtype=np.uint8)


def _to_8bit(image: Image.Image) -> Image.Image:
    """Scale 16-bit and float greyscale images to 8 bits (Pillow's own conversion clips them)."""
    if image.mode not in ("I", "F") and not image.mode.startswith("I;16"):
        return image
    values = np.asarray(image, dtype=np.float64)
    top = 65535.0 if image.mode.startswith("I;16") else max(255.0, float(values.max(initial=0)))
    scaled = np.clip(values / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return Image.fromarray(scaled, mode="L")


def _srgb_linear_table() -> FloatArray:
    """sRGB 8-bit value -> linear light, as a 256-entry table."""
    c = np.arange(256, dtype=np.float64) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return linear.astype(np.float32)


_LINEAR: Final = _srgb_linear_table()
#: sRGB (D65) -> XYZ, rows pre-divided by the D65 white point so white maps to (1, 1, 1).
_RGB_TO_XYZ: Final = (
    np.array(
        [
            [0.4124564, 0.3575761, 0.1804375],
            [0.2126729, 0.7151522, 0.0721750],
            [0.0193339, 0.1191920, 0.9503041],
        ],
        dtype=np.float64,
    )
    / np.array([[0.95047], [1.0], [1.08883]])
).astype(np.float32)


def _rgb_to_lab(rgb: NDArray[np.uint8]) -> FloatArray:
    """Vectorised sRGB (uint8, ``(..., 3)``) -> CIE L*a*b* (D65), float32.

    The same formulae as :func:`search.colour.srgb_to_lab`, over whole arrays.
    """
    xyz = _LINEAR[rgb] @ _RGB_TO_XYZ.T
    eps = np.float32(216 / 24389)
    kappa = np.float32(24389 / 27)
    f = np.where(xyz > eps, np.cbrt(xyz), (kappa * xyz + 16) / 116).astype(np.float32)
    lab = np.empty_like(f)
    lab[..., 0] = 116 * f[..., 1] - 16
    lab[..., 1] = 500 * (f[..., 0] - f[..., 1])
    lab[..., 2] = 200 * (f[..., 1] - f[..., 2])
    return lab


def _calibrate(lab: NDArray[np.floating]) -> tuple[float, float, float]:
    """A cluster's measured Lab -> the Lab the product's colour is named from.

    Stretches L* from the photographic black and white points to 0..100 and multiplies chroma
    (hue kept): catalogue photos render black fabric as dark grey, white as light grey, and small
    JPEGs lose saturation. Dark *neutral* clusters are stretched hardest (a black T-shirt at L* 20
    is black); a dark cluster with some chroma keeps more of its lightness, so dark brown leather
    and navy denim stay brown and navy rather than black.
    """
    chroma = math.hypot(float(lab[1]), float(lab[2]))
    neutral_black, chromatic_black = _BLACK_POINTS
    tint = min(1.0, max(0.0, (chroma - _CHROMA_FLOOR) / (_CHROMATIC_AT - _CHROMA_FLOOR)))
    black = neutral_black + (chromatic_black - neutral_black) * tint
    lightness = (float(lab[0]) - black) / (_WHITE_POINT - black) * 100.0
    lightness = min(100.0, max(0.0, lightness))
    gain = float(np.interp(float(lab[0]), _CHROMA_GAIN_KNOTS, _CHROMA_GAINS))
    scale = gain * max(0.0, chroma - _CHROMA_FLOOR) / chroma if chroma > 0 else 0.0
    return _lab_tuple(np.array([lightness, lab[1] * scale, lab[2] * scale]))


def _lab_tuple(lab: NDArray[np.floating]) -> tuple[float, float, float]:
    """A Lab array of three -> a rounded plain tuple."""
    return (round(float(lab[0]), 2), round(float(lab[1]), 2), round(float(lab[2]), 2))


# --------------------------------------------------------------------------------------------
# Background


def _border_mask(h: int, w: int) -> BoolArray:
    """The outer band of the frame."""
    band = max(1, round(_BORDER_SHARE * min(h, w)))
    mask = np.zeros((h, w), dtype=bool)
    mask[:band], mask[-band:], mask[:, :band], mask[:, -band:] = True, True, True, True
    return mask


def _backdrop(border: FloatArray) -> tuple[FloatArray, float, float] | None:
    """The colour most of the border agrees on.

    Args:
        border: Lab of the border pixels, ``(n, 3)``.

    Returns:
        ``(lab, agreement, spread)``: the backdrop's mean Lab, the share of the border within
        :data:`_BORDER_AGREE_DE` of it, and the 95th percentile distance of those pixels; None when
        no colour has :data:`_MIN_BACKDROP_BORDER` of the border.
    """
    step = max(1, len(border) // 48)
    candidates = border[::step]
    dist_sq = (
        (candidates**2).sum(axis=1)[:, None]
        - 2.0 * (candidates @ border.T)
        + (border**2).sum(axis=1)[None, :]
    )
    agree = dist_sq < _BORDER_AGREE_DE**2
    counts = agree.sum(axis=1)
    best = int(np.argmax(counts))
    share = float(counts[best]) / len(border)
    if share < _MIN_BACKDROP_BORDER:
        return None
    members = border[agree[best]]
    centre = members.mean(axis=0)
    spread = float(np.percentile(np.linalg.norm(members - centre, axis=1), 95))
    return centre.astype(np.float32), share, spread


def _run_labels(mask: BoolArray) -> NDArray[np.intp]:
    """Label each horizontal run of True pixels (0 for False pixels)."""
    starts = mask.copy()
    starts[:, 1:] &= ~mask[:, :-1]
    labels = np.cumsum(starts.ravel()).reshape(mask.shape)
    return np.where(mask, labels, 0)


def _flood_from_border(candidate: BoolArray) -> BoolArray:
    """Candidate pixels 4-connected to the frame's edge through candidate pixels.

    Alternates whole-run propagation along rows and columns, so it needs about as many passes as
    the path to the edge has turns, not as many as it has pixels.
    """
    reached = candidate.copy()
    reached[1:-1, 1:-1] = False
    rows = _run_labels(candidate)
    cols = _run_labels(candidate.T).T
    count = int(reached.sum())
    while True:
        for labels in (rows, cols):
            hit = np.zeros(int(labels.max()) + 1, dtype=bool)
            hit[labels[reached]] = True
            hit[0] = False
            reached = hit[labels]
        new_count = int(reached.sum())
        if new_count == count:
            return reached
        count = new_count


def _background_mask(lab: FloatArray) -> BoolArray:
    """Backdrop pixels connected to the border; all False when there is no backdrop."""
    h, w = lab.shape[:2]
    border = _border_mask(h, w)
    found = _backdrop(lab[border])
    if found is None:
        return np.zeros((h, w), dtype=bool)
    colour, _, spread = found
    low, high = _BACKGROUND_DE
    threshold = min(high, max(low, 1.5 * spread + 3.0))
    distance = np.linalg.norm(lab - colour, axis=2)
    background = _flood_from_border(distance < threshold)
    # Backdrop seen through a hole (a bag's handle, between a pair of earrings) is not connected
    # to the border; only pixels almost exactly the backdrop's colour count, so a print of a
    # similar colour (with fabric texture and shading) stays product.
    background |= distance < min(threshold, _HOLE_DE)
    chroma = math.hypot(float(colour[1]), float(colour[2]))
    if chroma > 10.0 and 1.0 - background.mean() < _MIN_PRODUCT_ON_COLOUR:
        # A saturated "backdrop" covering nearly everything is more likely a product filling the
        # frame (a close-up of a red fabric with a small print): keep every pixel.
        return np.zeros((h, w), dtype=bool)
    return background


# --------------------------------------------------------------------------------------------
# Pixel weights


def _centre_weights(h: int, w: int, sigma: tuple[float, float]) -> FloatArray:
    """Gaussian weights around the frame's centre; sigma in half-frame units (x, y)."""
    ys = (np.arange(h, dtype=np.float32) + 0.5) / h * 2 - 1
    xs = (np.arange(w, dtype=np.float32) + 0.5) / w * 2 - 1
    gy = np.exp(-0.5 * (ys / sigma[1]) ** 2)
    gx = np.exp(-0.5 * (xs / sigma[0]) ** 2)
    return (gy[:, None] * gx[None, :]).astype(np.float32)


def _skin_like(pixels: FloatArray) -> BoolArray:
    """Pixels whose Lab falls in the range of human skin under studio light."""
    lightness, a, b = pixels[:, 0], pixels[:, 1], pixels[:, 2]
    chroma = np.hypot(a, b)
    hue = np.degrees(np.arctan2(b, a))
    return (
        (lightness > 35.0)
        & (lightness < 85.0)
        & (chroma > 10.0)
        & (chroma < 45.0)
        & (hue > 30.0)
        & (hue < 75.0)
    )


def _skin_weights(pixels: FloatArray) -> FloatArray:
    """Down-weight skin unless it is nearly all of the product (a model, not a nude product)."""
    weights = np.ones(len(pixels), dtype=np.float32)
    skin = _skin_like(pixels)
    share = float(skin.mean()) if len(pixels) else 0.0
    if 0.0 < share <= 1.0 - _SKIN_MIN_OTHER:
        weights[skin] = _SKIN_WEIGHT
    return weights


def _specular_weights(pixels: FloatArray) -> FloatArray:
    """Drop small near-white highlights, unless the product is (largely) white."""
    weights = np.ones(len(pixels), dtype=np.float32)
    chroma = np.hypot(pixels[:, 1], pixels[:, 2])
    bright = (pixels[:, 0] > _SPECULAR_L) & (chroma < _SPECULAR_C)
    share = float(bright.mean()) if len(pixels) else 0.0
    if 0.0 < share < _SPECULAR_MAX_SHARE:
        weights[bright] = 0.0
    return weights


# --------------------------------------------------------------------------------------------
# Histogram features


def _hat_weights(
    values: FloatArray, centres: tuple[float, ...]
) -> tuple[NDArray[np.intp], FloatArray]:
    """Linear interpolation of each value between its two neighbouring bin centres.

    Returns:
        The lower bin's index and the upper bin's weight (the lower one gets ``1 - weight``);
        values outside the centres are clamped to the end bins.
    """
    grid = np.asarray(centres, dtype=np.float32)
    clamped = np.clip(values, grid[0], grid[-1])
    low = np.clip(np.searchsorted(grid, clamped, side="right") - 1, 0, len(grid) - 2)
    upper = (clamped - grid[low]) / (grid[low + 1] - grid[low])
    return low.astype(np.intp), upper.astype(np.float32)


def lch_histogram(pixels: FloatArray, weights: FloatArray, layout: HistogramLayout) -> FloatArray:
    """Soft histogram of pixels over lightness, chroma and hue, square-rooted.

    Each pixel spreads its weight linearly over its two nearest lightness bins, two chroma bins
    and two hue bins; weight falling in the chroma-0 bin goes to a hue-less neutral bin. One
    histogram per centre-weighting power, each normalised to sum 1, then square-rooted (the
    Hellinger map: a linear model on it compares distributions better than on raw shares).

    Args:
        pixels: Lab of the product's pixels, ``(n, 3)``.
        weights: Their centre weights, ``(n,)``, non-negative.
        layout: The bins.

    Returns:
        ``(layout.size,)`` features; zeros for no pixels or no weight.
    """
    n_l, n_c, n_h = len(layout.lightness), len(layout.chroma) - 1, layout.hues
    per_power = n_l * (1 + n_c * n_h)
    out = np.zeros(len(layout.powers) * per_power, dtype=np.float32)
    if len(pixels) == 0:
        return out
    chroma = np.hypot(pixels[:, 1], pixels[:, 2])
    hue = (np.degrees(np.arctan2(pixels[:, 2], pixels[:, 1])) % 360.0) / 360.0 * n_h
    l_low, l_up = _hat_weights(pixels[:, 0], layout.lightness)
    c_low, c_up = _hat_weights(chroma, layout.chroma)
    h_low = np.floor(hue).astype(np.intp) % n_h
    h_up = (hue - np.floor(hue)).astype(np.float32)
    entries: list[tuple[NDArray[np.intp], FloatArray]] = []
    for l_bin, l_w in ((l_low, 1.0 - l_up), (l_low + 1, l_up)):
        for c_bin, c_w in ((c_low, 1.0 - c_up), (c_low + 1, c_up)):
            for h_bin, h_w in ((h_low, 1.0 - h_up), ((h_low + 1) % n_h, h_up)):
                # Chroma bin 0 is neutral: one bin per lightness, whatever the hue.
                index = np.where(c_bin == 0, l_bin, n_l + (l_bin * n_c + c_bin - 1) * n_h + h_bin)
                weight = l_w * c_w * np.where(c_bin == 0, 0.5, h_w)
                entries.append((index, weight))
    for p, power in enumerate(layout.powers):
        w = weights.astype(np.float32) ** np.float32(power)
        block = np.zeros(per_power, dtype=np.float64)
        for index, weight in entries:
            block += np.bincount(index, weights=weight * w, minlength=per_power)
        total = block.sum()
        if total > 0:
            out[p * per_power : (p + 1) * per_power] = np.sqrt(block / total)
    return out


_LAYOUT: Final = HistogramLayout()


# --------------------------------------------------------------------------------------------
# Naming model


@dataclass(frozen=True, slots=True, eq=False)  # arrays: compared by identity
class ColourModel:
    """Names a photo's colours: a photo-level classifier and per-name photo swatches.

    Catalogue photos do not show a colour as its swatch: navy fabric photographs close to black,
    light blue close to white, brown leather close to black. The model holds, per vocabulary
    name, what that name looks like *in photos* (a Gaussian over measured cluster Lab, the
    "photo swatch"), and a linear softmax over the whole product's LCh histogram, which weighs
    context a single cluster cannot (a model's skin and trousers, highlights on metal). A
    cluster is named by ``argmax_name log N(centre | photo swatch) + prior_weight * log p(name |
    photo)``. Fitted by ``python -m benchmarks.fashion_colour --fit`` on the labelled fashion
    photos (all of them for the shipped model, a 70% split to score it).

    Attributes:
        names: Vocabulary names the model can give, ``(m,)``.
        weights: Softmax weights, ``(layout.size, m)``.
        bias: Softmax bias, ``(m,)``.
        means: Photo swatches: mean measured Lab per name, ``(m, 3)``.
        precisions: Inverse covariances, ``(m, 3, 3)``.
        log_dets: Log-determinants of the covariances, ``(m,)``.
        prior_weight: Weight of the photo-level classifier when naming a cluster.
        layout: The histogram the classifier reads.
        about: Where the model comes from (data, split, held-out accuracy).
        chroma_caps: Derived, per name: the chroma a cluster is capped to before it is compared
            with that photo swatch (infinite for neutral swatches); see ``__post_init__``.

    Raises:
        ValueError: When an array has the wrong shape or a name is not in the vocabulary.
    """

    names: tuple[str, ...]
    weights: FloatArray
    bias: FloatArray
    means: FloatArray
    precisions: FloatArray
    log_dets: FloatArray
    prior_weight: float = 1.0
    layout: HistogramLayout = _LAYOUT
    about: str = ""
    chroma_caps: FloatArray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        m = len(self.names)
        shapes = {
            "weights": (self.weights.shape, (self.layout.size, m)),
            "bias": (self.bias.shape, (m,)),
            "means": (self.means.shape, (m, 3)),
            "precisions": (self.precisions.shape, (m, 3, 3)),
            "log_dets": (self.log_dets.shape, (m,)),
        }
        for what, (got, want) in shapes.items():
            if got != want:
                raise ValueError(f"colour model: {what} has shape {got}, expected {want}")
        unknown = [name for name in self.names if name not in _VOCABULARY]
        if unknown:
            raise ValueError(f"colour model names colours not in the vocabulary: {unknown}")
        # Photos wash chroma out, so a chromatic photo swatch says how saturated a name
        # usually looks in photos, not how saturated it may be: a drawn or screen-like colour
        # more saturated than that must not fall to whichever swatch is broadest. Chroma above
        # a chromatic swatch's mean plus two deviations (along a*b*) is capped before it is
        # compared with it; neutral swatches (black, grey, white) keep the full chroma.
        ab_spread = np.linalg.eigvalsh(np.linalg.inv(self.precisions[:, 1:, 1:].astype(np.float64)))
        mean_chroma = np.hypot(self.means[:, 1], self.means[:, 2]).astype(np.float64)
        caps = np.where(
            mean_chroma >= _CHROMATIC_SWATCH, mean_chroma + 2.0 * np.sqrt(ab_spread[:, -1]), np.inf
        )
        object.__setattr__(self, "chroma_caps", caps.astype(np.float32))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ColourModel:
        """Build a model from its JSON form (see :meth:`to_dict`).

        Args:
            data: The parsed JSON.

        Returns:
            The model.

        Raises:
            ValueError: When a field is missing, has the wrong shape or names an unknown colour.
        """
        try:
            layout = HistogramLayout(
                lightness=tuple(float(v) for v in data["layout"]["lightness"]),
                chroma=tuple(float(v) for v in data["layout"]["chroma"]),
                hues=int(data["layout"]["hues"]),
                powers=tuple(float(v) for v in data["layout"]["powers"]),
            )
            names = tuple(str(n) for n in data["names"])
            covariances = np.asarray(data["covariances"], dtype=np.float64)
            return cls(
                names=names,
                weights=np.asarray(data["weights"], dtype=np.float32).T,
                bias=np.asarray(data["bias"], dtype=np.float32),
                means=np.asarray(data["means"], dtype=np.float32),
                precisions=np.linalg.inv(covariances).astype(np.float32),
                log_dets=np.linalg.slogdet(covariances)[1].astype(np.float32),
                prior_weight=float(data["prior_weight"]),
                layout=layout,
                about=str(data.get("about", "")),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"colour model: missing or malformed field ({exc})") from exc

    def to_dict(self, covariances: NDArray[np.floating]) -> dict[str, Any]:
        """The JSON form (weights stored per name, rounded to 5 decimals).

        Args:
            covariances: The swatches' covariances ``(m, 3, 3)`` (stored instead of the
                precisions, so the file reads as Lab spreads).

        Returns:
            A JSON-ready dict.
        """
        return {
            "about": self.about,
            "layout": {
                "lightness": list(self.layout.lightness),
                "chroma": list(self.layout.chroma),
                "hues": self.layout.hues,
                "powers": list(self.layout.powers),
            },
            "prior_weight": self.prior_weight,
            "names": list(self.names),
            "means": np.round(self.means.astype(np.float64), 3).tolist(),
            "covariances": np.round(np.asarray(covariances, dtype=np.float64), 3).tolist(),
            "bias": np.round(self.bias.astype(np.float64), 5).tolist(),
            "weights": np.round(self.weights.T.astype(np.float64), 5).tolist(),
        }

    @classmethod
    def load(cls, path: Path) -> ColourModel:
        """Read a model from a JSON file.

        Args:
            path: The file.

        Returns:
            The model.

        Raises:
            ValueError: When the file is not a valid model.
            OSError: When it cannot be read.
        """
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    def posterior(self, histogram: FloatArray) -> NDArray[np.float64]:
        """``p(name | photo)`` from the histogram features.

        Args:
            histogram: :attr:`Measurement.histogram`.

        Returns:
            Probabilities over :attr:`names`, summing to 1.
        """
        logits = histogram.astype(np.float64) @ self.weights + self.bias
        logits -= logits.max()
        p = np.exp(logits)
        return np.asarray(p / p.sum(), dtype=np.float64)

    def name_clusters(
        self,
        centres: FloatArray,
        posterior: NDArray[np.float64],
        *,
        prior_weight: float | None = None,
    ) -> tuple[NDArray[np.intp], NDArray[np.float64]]:
        """Name each measured cluster.

        Args:
            centres: Measured Lab of the clusters, ``(k, 3)``.
            posterior: :meth:`posterior` of the photo (or another ``p(name | photo)`` over
                :attr:`names`, such as :meth:`FeatureColourModel.posterior`).
            prior_weight: Weight of ``posterior``; None: :attr:`prior_weight`.

        Returns:
            Each cluster's name index and the probability of that name for it (0..1).
        """
        points = np.repeat(centres.astype(np.float64)[:, None, :], len(self.names), axis=1)
        chroma = np.hypot(points[..., 1], points[..., 2])
        scale = np.minimum(1.0, self.chroma_caps[None, :] / np.maximum(chroma, 1e-9))
        points[..., 1:] *= scale[..., None]
        dx = points - self.means[None, :, :]
        mahalanobis = np.einsum("kmi,mij,kmj->km", dx, self.precisions.astype(np.float64), dx)
        scores = -0.5 * mahalanobis - 0.5 * self.log_dets[None, :]
        weight = self.prior_weight if prior_weight is None else prior_weight
        scores = scores + weight * np.log(posterior + 1e-9)[None, :]
        scores -= scores.max(axis=1, keepdims=True)
        p = np.exp(scores)
        p /= p.sum(axis=1, keepdims=True)
        best = p.argmax(axis=1)
        return best, p[np.arange(len(best)), best]


#: The model shipped with the package (fitted on all the labelled fashion photos).
MODEL_PATH: Final = Path(__file__).with_name("colour_model.json")


@functools.cache
def default_model() -> ColourModel:
    """The shipped model, read once.

    Returns:
        The model in :data:`MODEL_PATH`.

    Raises:
        ValueError: When the shipped file is not a valid model.
        OSError: When it cannot be read.
    """
    return ColourModel.load(MODEL_PATH)


# --------------------------------------------------------------------------------------------
# CNN-aware prior


class PhotoFeatureEmbedder(Protocol):
    """What computes a photo's CNN features (:class:`models.image.EfficientNetLite0Embedder`)."""

    def warm_up(self) -> None:
        """Load weights; idempotent."""
        ...

    def embed_images(
        self, images: Sequence[Image.Image], batch_size: int = 32, show_progress: bool = False
    ) -> NDArray[np.float32]:
        """Encode photos: ``(len(images), dim)`` float32 rows."""
        ...


def _encode_array(array: NDArray[np.floating]) -> dict[str, Any]:
    """A float32 array as JSON: shape and base64 of its little-endian bytes (exact, compact)."""
    data = np.ascontiguousarray(array, dtype="<f4")
    return {"shape": list(data.shape), "float32_le": base64.b64encode(data.tobytes()).decode()}


def _decode_array(data: Mapping[str, Any]) -> FloatArray:
    """Inverse of :func:`_encode_array`.

    Raises:
        ValueError: When the bytes do not fill the shape.
    """
    shape = tuple(int(n) for n in data["shape"])
    raw = base64.b64decode(str(data["float32_le"]), validate=True)
    if len(raw) != 4 * math.prod(shape):
        raise ValueError(f"colour feature model: {len(raw)} bytes of floats for shape {shape}")
    return np.frombuffer(raw, dtype="<f4").reshape(shape).astype(np.float32)


@dataclass(frozen=True, slots=True, eq=False)  # arrays: compared by identity
class FeatureColourModel:
    """``p(name | photo)`` from a photo's LCh histogram and its CNN features.

    A linear softmax over the standardised concatenation ``[histogram, features]``. The CNN
    features say what the product is (a shirt with a print, an earring, a bottle of perfume),
    which the colour statistics cannot, and so which of its colours the catalogue names. It
    replaces :meth:`ColourModel.posterior` when a photo's features are known; its most probable
    family leads the extracted colours. Fitted by ``python -m benchmarks.fashion_colour --fit
    ... --features lite0`` on the labelled fashion photos (all of them for the shipped model).

    Attributes:
        names: The names of the :class:`ColourModel` it serves, ``(m,)``.
        feature_dim: Length of the CNN feature vector.
        mean: Training mean of ``[histogram, features]``, ``(layout.size + feature_dim,)``.
        scale: Training standard deviation (plus a floor), same shape.
        weights: Softmax weights over the standardised input, ``(layout.size + feature_dim, m)``.
        bias: Softmax bias, ``(m,)``.
        prior_weight: Weight of this posterior when the :class:`ColourModel` names a cluster.
        layout: The histogram it reads (the colour model's).
        embedder: What the features must come from (the embedder's name and version).
        about: Where the model comes from (data, split, held-out accuracy).
        families: Derived: each name's family, ``(m,)``.

    Raises:
        ValueError: When an array has the wrong shape or a name is not in the vocabulary.
    """

    names: tuple[str, ...]
    feature_dim: int
    mean: FloatArray
    scale: FloatArray
    weights: FloatArray
    bias: FloatArray
    prior_weight: float = 2.0
    layout: HistogramLayout = _LAYOUT
    embedder: str = ""
    about: str = ""
    families: tuple[str, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        m = len(self.names)
        width = self.layout.size + self.feature_dim
        shapes = {
            "mean": (self.mean.shape, (width,)),
            "scale": (self.scale.shape, (width,)),
            "weights": (self.weights.shape, (width, m)),
            "bias": (self.bias.shape, (m,)),
        }
        for what, (got, want) in shapes.items():
            if got != want:
                raise ValueError(f"colour feature model: {what} has shape {got}, expected {want}")
        unknown = [name for name in self.names if name not in _VOCABULARY]
        if unknown:
            raise ValueError(f"colour feature model names colours not in the vocabulary: {unknown}")
        if not np.all(self.scale > 0):
            raise ValueError("colour feature model: scale must be positive")
        families = tuple(str(_VOCABULARY[name].family) for name in self.names)
        object.__setattr__(self, "families", families)

    def posterior(
        self, histogram: FloatArray, features: NDArray[np.floating]
    ) -> NDArray[np.float64]:
        """``p(name | photo)`` from the histogram and the CNN features.

        Args:
            histogram: :attr:`Measurement.histogram`.
            features: The photo's CNN features, ``(feature_dim,)``.

        Returns:
            Probabilities over :attr:`names`, summing to 1.

        Raises:
            ValueError: When ``features`` has the wrong length or is not finite.
        """
        vector = np.asarray(features, dtype=np.float64).reshape(-1)
        if vector.shape != (self.feature_dim,):
            raise ValueError(
                f"features must be {self.feature_dim} floats ({self.embedder or 'the model'}'s "
                f"vector of the photo), got shape {np.shape(features)}"
            )
        if not np.all(np.isfinite(vector)):
            raise ValueError("features must be finite")
        x = np.concatenate([histogram.astype(np.float64), vector])
        z = (x - self.mean) / self.scale
        logits = z @ self.weights.astype(np.float64) + self.bias
        logits -= logits.max()
        p = np.exp(logits)
        return np.asarray(p / p.sum(), dtype=np.float64)

    def family(self, posterior: NDArray[np.float64]) -> str:
        """The most probable family: the name probabilities summed per family.

        Args:
            posterior: From :meth:`posterior`.

        Returns:
            A :class:`search.colour.Family` value (``"blue"``).
        """
        totals: dict[str, float] = {}
        for fam, p in zip(self.families, posterior, strict=True):
            totals[fam] = totals.get(fam, 0.0) + float(p)
        return max(totals, key=lambda fam: totals[fam])

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureColourModel:
        """Build a model from its JSON form (see :meth:`to_dict`).

        Args:
            data: The parsed JSON.

        Returns:
            The model.

        Raises:
            ValueError: When a field is missing, has the wrong shape or names an unknown colour.
        """
        try:
            layout = HistogramLayout(
                lightness=tuple(float(v) for v in data["layout"]["lightness"]),
                chroma=tuple(float(v) for v in data["layout"]["chroma"]),
                hues=int(data["layout"]["hues"]),
                powers=tuple(float(v) for v in data["layout"]["powers"]),
            )
            return cls(
                names=tuple(str(n) for n in data["names"]),
                feature_dim=int(data["feature_dim"]),
                mean=_decode_array(data["mean"]),
                scale=_decode_array(data["scale"]),
                weights=_decode_array(data["weights"]),
                bias=_decode_array(data["bias"]),
                prior_weight=float(data["prior_weight"]),
                layout=layout,
                embedder=str(data.get("embedder", "")),
                about=str(data.get("about", "")),
            )
        except (KeyError, TypeError, binascii.Error) as exc:
            raise ValueError(f"colour feature model: missing or malformed field ({exc})") from exc

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (arrays as base64 float32, so the file stays small and exact).

        Returns:
            A JSON-ready dict.
        """
        return {
            "about": self.about,
            "embedder": self.embedder,
            "layout": {
                "lightness": list(self.layout.lightness),
                "chroma": list(self.layout.chroma),
                "hues": self.layout.hues,
                "powers": list(self.layout.powers),
            },
            "prior_weight": self.prior_weight,
            "names": list(self.names),
            "feature_dim": self.feature_dim,
            "mean": _encode_array(self.mean),
            "scale": _encode_array(self.scale),
            "weights": _encode_array(self.weights),
            "bias": _encode_array(self.bias),
        }

    @classmethod
    def load(cls, path: Path) -> FeatureColourModel:
        """Read a model from a JSON file.

        Args:
            path: The file.

        Returns:
            The model.

        Raises:
            ValueError: When the file is not a valid model.
            OSError: When it cannot be read.
        """
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


#: The CNN-aware prior shipped with the package (EfficientNet-Lite0 features; fitted on all
#: the labelled fashion photos).
FEATURE_MODEL_PATH: Final = Path(__file__).with_name("colour_model_lite0.json")


@functools.cache
def default_feature_model() -> FeatureColourModel:
    """The shipped CNN-aware prior, read once.

    Returns:
        The model in :data:`FEATURE_MODEL_PATH`.

    Raises:
        ValueError: When the shipped file is not a valid model.
        OSError: When it cannot be read.
    """
    return FeatureColourModel.load(FEATURE_MODEL_PATH)


def _check_same_names(model: ColourModel, feature_model: FeatureColourModel) -> None:
    """The feature model's posterior is over the colour model's names, in the same order."""
    if model.names != feature_model.names:
        raise ValueError(
            "the feature model must name the colour model's colours in the same order: "
            f"{list(model.names)} != {list(feature_model.names)}"
        )


# --------------------------------------------------------------------------------------------
# Clustering


def _histogram(
    rgb: NDArray[np.uint8], lab: FloatArray, weights: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Bin pixels by quantised RGB: clustering a few hundred bins is far cheaper than every pixel.

    Args:
        rgb: The pixels' sRGB, ``(n, 3)``.
        lab: Their Lab, ``(n, 3)``.
        weights: Their weights, ``(n,)``.

    Returns:
        Each occupied bin's weighted mean Lab ``(m, 3)`` and total weight ``(m,)``.
    """
    shift = 8 - _HISTOGRAM_BITS
    q = (rgb >> shift).astype(np.int32)
    keys = (q[:, 0] << (2 * _HISTOGRAM_BITS)) | (q[:, 1] << _HISTOGRAM_BITS) | q[:, 2]
    unique, inverse = np.unique(keys, return_inverse=True)
    w = weights.astype(np.float64)
    totals = np.bincount(inverse, weights=w, minlength=len(unique))
    means = np.empty((len(unique), 3), dtype=np.float32)
    safe = np.maximum(totals, 1e-12)
    for c in range(3):
        means[:, c] = np.bincount(inverse, weights=w * lab[:, c], minlength=len(unique)) / safe
    keep = totals > 0
    return means[keep], totals[keep].astype(np.float32)


def _weighted_pick(scores: NDArray[np.float64], rng: np.random.Generator) -> int:
    """Index drawn with probability proportional to ``scores`` (non-negative, positive sum)."""
    cumulative = np.cumsum(scores)
    index = int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))
    return min(index, len(scores) - 1)


def _kmeans(
    pixels: FloatArray, weights: FloatArray, k: int, seed: int
) -> tuple[FloatArray, NDArray[np.float64]]:
    """Weighted k-means in Lab with k-means++ seeding.

    Returns:
        Centres ``(k', 3)`` and their weight totals (``k' <= k``; empty clusters are dropped).
    """
    rng = np.random.default_rng(seed)
    n = len(pixels)
    k = min(k, n)
    centres = np.empty((k, 3), dtype=np.float32)
    centres[0] = pixels[_weighted_pick(weights.astype(np.float64), rng)]
    nearest_sq = ((pixels - centres[0]) ** 2).sum(axis=1)
    chosen = 1
    for i in range(1, k):
        score = weights.astype(np.float64) * nearest_sq
        if float(score.sum()) <= 1e-9:
            break  # every pixel coincides with a centre: fewer distinct colours than k
        centres[i] = pixels[_weighted_pick(score, rng)]
        nearest_sq = np.minimum(nearest_sq, ((pixels - centres[i]) ** 2).sum(axis=1))
        chosen += 1
    centres = centres[:chosen]
    assign = np.full(n, -1, dtype=np.intp)
    for _ in range(_KMEANS_ITERATIONS):
        # |x - c|^2 = |x|^2 - 2 x.c + |c|^2; |x|^2 does not change the argmin.
        dist = (centres**2).sum(axis=1)[None, :] - 2.0 * (pixels @ centres.T)
        new_assign = dist.argmin(axis=1)
        converged = np.array_equal(new_assign, assign)
        assign = new_assign
        if converged:
            break
        totals = np.bincount(assign, weights=weights, minlength=len(centres))
        for c in range(3):
            sums = np.bincount(assign, weights=weights * pixels[:, c], minlength=len(centres))
            centres[:, c] = np.where(totals > 0, sums / np.maximum(totals, 1e-12), centres[:, c])
    mass = np.bincount(assign, weights=weights, minlength=len(centres)).astype(np.float64)
    keep = mass > 0
    return centres[keep], mass[keep]


def _dominant(
    pixels: FloatArray, weights: FloatArray, seed: int
) -> tuple[FloatArray, NDArray[np.float64]]:
    """Cluster, then merge clusters closer than :data:`_MERGE_DE` (CIEDE2000), largest first.

    Returns:
        Centres and shares (summing to 1), sorted by share, largest first.
    """
    centres, totals = _kmeans(pixels, weights, _KMEANS_K, seed)
    cs = [c.astype(np.float64) for c in centres]
    ts = [float(t) for t in totals]
    n = len(cs)
    dist = ciede2000_many(centres[:, None, :], centres[None, :, :])
    dist[np.tril_indices(n)] = np.inf  # each pair once, (i < j)
    alive = list(range(n))
    while len(alive) > 1:
        sub = dist[np.ix_(alive, alive)]
        flat = int(np.argmin(sub))
        a, b = alive[flat // len(alive)], alive[flat % len(alive)]
        if not sub.flat[flat] < _MERGE_DE:
            break
        total = ts[a] + ts[b]
        cs[a] = (cs[a] * ts[a] + cs[b] * ts[b]) / total
        ts[a] = total
        alive.remove(b)
        others = [o for o in alive if o != a]
        if others:
            row = ciede2000_many(cs[a], np.asarray([cs[o] for o in others]))
            for other, d in zip(others, row, strict=True):
                dist[min(a, other), max(a, other)] = d
    cs = [cs[i] for i in alive]
    ts = [ts[i] for i in alive]
    order = np.argsort(-np.asarray(ts), kind="stable")
    shares = np.asarray(ts, dtype=np.float64)[order]
    return np.asarray(cs, dtype=np.float32)[order], shares / shares.sum()
