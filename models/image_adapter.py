"""Catalogue-fitted projection of photo vectors: the shop's own categories and colours teach a
pretrained backbone which differences matter.

An ImageNet backbone (the offline default) tells a shirt from a shoe, but it was never taught
that a shop's "Casual Shoes" and "Sports Shoes" are different products, or that two photos in
the same shape but in navy and in red are not look-alikes. A shop's catalogue already says both:
each product has a category and, usually, a colour in its text. At build time the indexer fits
two linear discriminants (shrinkage LDA, :class:`sklearn.discriminant_analysis.LinearDiscriminantAnalysis`)
on the products that have a photo:

* **kind**: separates leaf categories, on the vector's shape parts (the embedder's colour parts
  off, :func:`shape_columns`);
* **colour**: separates the colour families the products' own text names (the first text colour).

An adapted vector is ``[raw x RAW_WEIGHT, kind x KIND_WEIGHT, colour x COLOUR_WEIGHT]`` with each
block unit-length, renormalised. The raw block keeps what the backbone sees beyond the
catalogue's labels (and lets :meth:`ImageAdapter.raw_part` give the raw vector back to a delta
build). Query photos are projected the same way (:class:`AdaptedImageEmbedder`), so nothing about
the shopper's photo is learned from labels. Each discriminant is fitted only when the catalogue
has enough labelled photos (:data:`MIN_CLASSES` classes with :data:`MIN_PHOTOS_PER_CLASS` photos
each, :data:`MIN_FIT_PHOTOS` in all); otherwise that block is left out, and with neither block
the vectors stay raw.

On the fashion photos (``benchmarks/fashion_image.py``, MODELS.md protocol: 500 query photos
against 4,461 indexed, fitted on the indexed photos' article types and their titles' colours):
same-type precision@10 0.682 -> 0.744, same type and colour 0.258 -> 0.349.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from models.image import ImageEmbedder
    from search.protocols import ImageEncoder

__all__ = [
    "ADAPTER_VERSION",
    "AdaptedImageEmbedder",
    "Discriminant",
    "ImageAdapter",
    "fit_image_adapter",
    "shape_columns",
]

FloatRows = npt.NDArray[np.float32]

#: Recorded in manifests; bump when the projection changes meaning.
ADAPTER_VERSION: Final = "catalogue-lda-1"

#: Block weights of an adapted vector (the fashion photos: raw 0-0.5 changed precision by
#: < 0.01; colour 0.4-0.6 trades same type against same type and colour).
RAW_WEIGHT: Final = 0.3
KIND_WEIGHT: Final = 1.0
COLOUR_WEIGHT: Final = 0.5

#: Shrinkage of the within-class covariance (0.1-0.7 within 0.01 of each other on the fashion
#: photos; shrinkage keeps the fit stable with fewer photos than dimensions).
SHRINKAGE: Final = 0.3

#: A class takes part in a fit from this many photos; a fit needs this many classes and photos.
MIN_PHOTOS_PER_CLASS: Final = 3
MIN_CLASSES: Final = 3
MIN_FIT_PHOTOS: Final = 60

#: Rows adapted at a time (bounds the temporaries of a catalogue-sized :meth:`ImageAdapter.apply`).
APPLY_BLOCK: Final = 65_536

#: At most this many photos (a seeded sample) are used for a fit: the covariance of a sample
#: this large is as good as the catalogue's, and the fit stays seconds at a million products.
MAX_FIT_PHOTOS: Final = 50_000


def _unit(rows: npt.NDArray[Any]) -> FloatRows:
    rows = np.asarray(rows, dtype=np.float32)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return (rows / np.maximum(norms, 1e-12)).astype(np.float32)


def shape_columns(embedder: ImageEmbedder) -> npt.NDArray[np.int64] | None:
    """Columns of an embedder's vectors that do not mostly encode colour: the parts of a
    combined embedder whose embedder does not set ``encodes_colour``; None when every column
    counts (a single backbone, or a combination whose parts all encode colour or none does)."""
    parts = getattr(embedder, "parts", None)
    if not parts:
        return None
    keep: list[int] = []
    start = 0
    for part, _ in parts:
        if not getattr(part, "encodes_colour", False):
            keep.extend(range(start, start + part.dim))
        start += part.dim
    if not keep or len(keep) == start:
        return None
    return np.asarray(keep, dtype=np.int64)


@dataclass(frozen=True, slots=True)
class Discriminant:
    """One fitted linear discriminant.

    Attributes:
        columns: Input columns it reads (all when None).
        scalings: ``(len(columns), k)`` projection.
        classes: The class labels it was fitted on.
        photos: Photos it was fitted on.
    """

    columns: npt.NDArray[np.int64] | None
    scalings: FloatRows
    classes: tuple[str, ...]
    photos: int

    @property
    def dim(self) -> int:
        """Output length."""
        return int(self.scalings.shape[1])

    def project(self, raw: FloatRows) -> FloatRows:
        """Unit rows of the projection of raw vectors (zeros stay zero)."""
        rows = raw if self.columns is None else raw[:, self.columns]
        return _unit(np.asarray(rows, dtype=np.float32) @ self.scalings)


@dataclass(frozen=True, slots=True)
class ImageAdapter:
    """The fitted projection (see the module docstring).

    Attributes:
        raw_dim: Length of the embedder's raw vectors.
        kind: Discriminant of leaf categories, or None.
        colour: Discriminant of text colour families, or None.
        shape: Raw columns that do not encode colour (None: all), for :meth:`colour_blind`.
    """

    raw_dim: int
    kind: Discriminant | None
    colour: Discriminant | None
    shape: npt.NDArray[np.int64] | None = None

    @property
    def dim(self) -> int:
        """Length of adapted vectors."""
        return (
            self.raw_dim
            + (self.kind.dim if self.kind else 0)
            + (self.colour.dim if self.colour else 0)
        )

    def describe(self) -> str:
        """One line for the manifest and the logs."""
        parts = []
        if self.kind is not None:
            parts.append(f"{len(self.kind.classes)} categories ({self.kind.photos} photos)")
        if self.colour is not None:
            parts.append(
                f"{len(self.colour.classes)} colour families ({self.colour.photos} photos)"
            )
        return f"{ADAPTER_VERSION}: " + ", ".join(parts)

    def apply(self, raw: npt.NDArray[Any]) -> FloatRows:
        """Adapted unit rows of raw embedder vectors (an all-zero row stays all zero).

        Raises:
            ValueError: rows of another length than ``raw_dim``.
        """
        if raw.ndim != 2 or raw.shape[1] != self.raw_dim:
            raise ValueError(f"expected rows of {self.raw_dim} floats, got shape {raw.shape}")
        out = np.empty((len(raw), self.dim), dtype=np.float32)
        for start in range(0, len(raw), APPLY_BLOCK):  # a million photos: blocks, not copies
            rows = np.asarray(raw[start : start + APPLY_BLOCK], dtype=np.float32)
            blocks = [_unit(rows) * RAW_WEIGHT]
            if self.kind is not None:
                blocks.append(self.kind.project(rows) * KIND_WEIGHT)
            if self.colour is not None:
                blocks.append(self.colour.project(rows) * COLOUR_WEIGHT)
            adapted = _unit(np.concatenate(blocks, axis=1))
            adapted[~np.any(rows != 0, axis=1)] = 0.0
            out[start : start + len(rows)] = adapted
        return out

    def raw_part(self, adapted: npt.NDArray[Any]) -> FloatRows:
        """The raw embedder vectors back from adapted rows (for re-fitting in a delta build)."""
        rows = np.asarray(adapted, dtype=np.float32)
        if rows.ndim != 2 or rows.shape[1] != self.dim:
            raise ValueError(f"expected rows of {self.dim} floats, got shape {rows.shape}")
        raw = _unit(rows[:, : self.raw_dim])
        raw[~np.any(rows != 0, axis=1)] = 0.0
        return raw

    def colour_blind(self, adapted: npt.NDArray[Any]) -> FloatRows:
        """Adapted rows compared by shape and kind only: the raw block's colour columns and the
        colour block set to zero, renormalised (a photo asked for "in black")."""
        rows = np.asarray(adapted, dtype=np.float32)
        if rows.ndim != 2 or rows.shape[1] != self.dim:
            raise ValueError(f"expected rows of {self.dim} floats, got shape {rows.shape}")
        raw = rows[:, : self.raw_dim]
        if self.shape is not None:
            keep = np.zeros(self.raw_dim, dtype=np.float32)
            keep[self.shape] = 1.0
            raw = raw * keep
        blocks = [_unit(raw) * RAW_WEIGHT]
        if self.kind is not None:
            start = self.raw_dim
            blocks.append(_unit(rows[:, start : start + self.kind.dim]) * KIND_WEIGHT)
        if self.colour is not None:
            blocks.append(np.zeros((len(rows), self.colour.dim), dtype=np.float32))
        return _unit(np.concatenate(blocks, axis=1))

    def save(self, path: Path) -> None:
        """Write the adapter as an ``.npz`` (no pickles)."""
        arrays: dict[str, Any] = {
            "version": np.array(ADAPTER_VERSION),
            "raw_dim": np.array(self.raw_dim),
        }
        if self.shape is not None:
            arrays["shape"] = self.shape
        for name, part in (("kind", self.kind), ("colour", self.colour)):
            if part is None:
                continue
            arrays[f"{name}_scalings"] = part.scalings
            arrays[f"{name}_classes"] = np.array(part.classes, dtype=str)
            arrays[f"{name}_photos"] = np.array(part.photos)
            if part.columns is not None:
                arrays[f"{name}_columns"] = part.columns
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        path.write_bytes(buffer.getvalue())

    @classmethod
    def load(cls, path: Path) -> ImageAdapter:
        """Read an adapter :meth:`save` wrote.

        Raises:
            ValueError: another adapter version, or a file that is not an adapter.
        """
        with np.load(path, allow_pickle=False) as data:
            version = str(data["version"]) if "version" in data.files else "?"
            if version != ADAPTER_VERSION:
                raise ValueError(
                    f"{path}: photo adapter {version!r}, this version reads {ADAPTER_VERSION!r}"
                )
            parts: dict[str, Discriminant | None] = {}
            for name in ("kind", "colour"):
                if f"{name}_scalings" not in data.files:
                    parts[name] = None
                    continue
                parts[name] = Discriminant(
                    columns=data[f"{name}_columns"].astype(np.int64)
                    if f"{name}_columns" in data.files
                    else None,
                    scalings=data[f"{name}_scalings"].astype(np.float32),
                    classes=tuple(str(c) for c in data[f"{name}_classes"]),
                    photos=int(data[f"{name}_photos"]),
                )
            return cls(
                raw_dim=int(data["raw_dim"]),
                kind=parts["kind"],
                colour=parts["colour"],
                shape=data["shape"].astype(np.int64) if "shape" in data.files else None,
            )


def _fit_discriminant(
    raw: FloatRows,
    labels: Sequence[str | None],
    columns: npt.NDArray[np.int64] | None,
    rng: np.random.Generator,
) -> Discriminant | None:
    """A shrinkage LDA of the labelled rows, or None when too few classes or photos."""
    counts = Counter(label for label in labels if label)
    kept = {label for label, n in counts.items() if n >= MIN_PHOTOS_PER_CLASS}
    rows = np.fromiter((i for i, label in enumerate(labels) if label in kept), dtype=np.int64)
    if len(kept) < MIN_CLASSES or len(rows) < MIN_FIT_PHOTOS:
        return None
    if len(rows) > MAX_FIT_PHOTOS:
        rows = np.sort(rng.choice(rows, MAX_FIT_PHOTOS, replace=False))
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    x = raw[rows] if columns is None else raw[rows][:, columns]
    y = np.array([labels[i] for i in rows], dtype=object)
    if len(set(y.tolist())) < MIN_CLASSES:
        return None
    lda = LinearDiscriminantAnalysis(solver="eigen", shrinkage=SHRINKAGE)
    lda.fit(np.asarray(x, dtype=np.float64), y)
    k = min(len(lda.classes_) - 1, x.shape[1])
    return Discriminant(
        columns=columns,
        scalings=np.ascontiguousarray(lda.scalings_[:, :k], dtype=np.float32),
        classes=tuple(str(c) for c in lda.classes_),
        photos=len(rows),
    )


def fit_image_adapter(
    raw: npt.NDArray[Any],
    has_vector: npt.NDArray[np.bool_],
    categories: Sequence[str | None],
    colour_families: Sequence[str | None],
    *,
    shape: npt.NDArray[np.int64] | None = None,
    seed: int = 0,
) -> ImageAdapter | None:
    """Fit the projection on a catalogue's photo vectors.

    Args:
        raw: ``(n_products, raw_dim)`` embedder vectors (zero rows without a photo).
        has_vector: Products with a photo vector.
        categories: Per product, its leaf category (None without one).
        colour_families: Per product, the family of the first colour its text names (None).
        shape: Raw columns that do not encode colour (:func:`shape_columns`), for the kind
            discriminant; None uses every column.
        seed: Seed of the sample when the catalogue has more than :data:`MAX_FIT_PHOTOS`.

    Returns:
        The adapter, or None when neither discriminant has enough labelled photos.

    Raises:
        ValueError: the label lists do not match the vectors.
    """
    vectors = np.asarray(raw, dtype=np.float32)
    n = len(vectors)
    if len(has_vector) != n or len(categories) != n or len(colour_families) != n:
        raise ValueError(
            f"{n} photo vectors but {len(has_vector)} flags, {len(categories)} categories and "
            f"{len(colour_families)} colour families"
        )
    rng = np.random.default_rng(seed)
    with_photo = [bool(h) for h in has_vector]
    kind = _fit_discriminant(
        vectors, [c if h else None for c, h in zip(categories, with_photo, strict=True)], shape, rng
    )
    colour = _fit_discriminant(
        vectors,
        [c if h else None for c, h in zip(colour_families, with_photo, strict=True)],
        None,
        rng,
    )
    if kind is None and colour is None:
        return None
    return ImageAdapter(raw_dim=int(vectors.shape[1]), kind=kind, colour=colour, shape=shape)


class AdaptedImageEmbedder:
    """An image embedder whose vectors go through a catalogue's :class:`ImageAdapter`: query
    photos land in the same space as the snapshot's adapted product vectors.

    Args:
        base: The embedder the snapshot's raw vectors came from.
        adapter: The snapshot's adapter.
    """

    def __init__(self, base: ImageEncoder, adapter: ImageAdapter) -> None:
        self.base = base
        self.adapter = adapter
        self.name = base.name
        self.version = f"{base.version} + {ADAPTER_VERSION}"
        self.dim = adapter.dim

    def warm_up(self) -> None:
        """Load the base embedder's weights.

        Raises:
            ValueError: the base embedder's vectors are not the adapter's raw length.
        """
        self.base.warm_up()
        if self.base.dim != self.adapter.raw_dim:
            raise ValueError(
                f"image embedder {self.base.name!r} gives {self.base.dim}-d vectors, the photo "
                f"adapter was fitted on {self.adapter.raw_dim}-d vectors"
            )

    def embed_images(
        self, images: Sequence[Any], batch_size: int = 32, show_progress: bool = False
    ) -> FloatRows:
        """Encode photos (PIL images) with the base embedder and adapt them: ``(len(images), dim)``."""
        raw = self.base.embed_images(images, batch_size=batch_size, show_progress=show_progress)
        if len(raw) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.adapter.apply(raw)

    def colour_blind(self, vectors: FloatRows) -> FloatRows:
        """See :meth:`ImageAdapter.colour_blind`."""
        return self.adapter.colour_blind(vectors)
