"""The catalogue photo projection: fitted on labelled vectors it separates what the labels
separate, saves and loads exactly, gives raw vectors back, and turns colour off on request."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image, ImageDraw

from models.image import DescriptorImageEmbedder, packaged_lite0
from models.image_adapter import (
    MIN_FIT_PHOTOS,
    AdaptedImageEmbedder,
    ImageAdapter,
    fit_image_adapter,
    shape_columns,
)

DIM = 24
SHAPE_DIM = 16  # columns 16.. stand for an embedder's colour parts


def unit(rows: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def catalogue(
    n_kinds: int = 5, n_colours: int = 4, per_pair: int = 6, seed: int = 0
) -> tuple[npt.NDArray[np.float32], list[str], list[str]]:
    """Vectors whose kind lives in the shape columns and whose colour in the colour columns,
    under strong label-free variation along a few other directions (lighting, pose): plain
    cosine neighbours mostly follow that variation."""
    axes = np.random.default_rng(99)  # the same kinds, colours and nuisances for every seed
    kind_axes = axes.normal(size=(n_kinds, SHAPE_DIM))
    colour_axes = axes.normal(size=(n_colours, DIM - SHAPE_DIM))
    nuisance = axes.normal(size=(3, DIM))
    rng = np.random.default_rng(seed)
    rows, kinds, colours = [], [], []
    for k in range(n_kinds):
        for c in range(n_colours):
            for _ in range(per_pair):
                row = rng.normal(scale=0.4, size=DIM) + 2.0
                row += rng.normal(scale=2.5, size=3) @ nuisance
                row[:SHAPE_DIM] += 1.2 * kind_axes[k]
                row[SHAPE_DIM:] += 1.2 * colour_axes[c]
                rows.append(row)
                kinds.append(f"kind-{k}")
                colours.append(f"colour-{c}")
    return unit(np.array(rows)), kinds, colours


def precision_at_5(
    vectors: npt.NDArray[np.float32], labels: list[str], queries: npt.NDArray[np.int64]
) -> float:
    sims = vectors[queries] @ vectors.T
    sims[np.arange(len(queries)), queries] = -np.inf  # never the query itself
    top = np.argsort(-sims, axis=1)[:, :5]
    return float(
        np.mean(
            [[labels[j] == labels[q] for j in row] for q, row in zip(queries, top, strict=True)]
        )
    )


@pytest.fixture(scope="module")
def fitted() -> tuple[ImageAdapter, npt.NDArray[np.float32], list[str], list[str]]:
    vectors, kinds, colours = catalogue()
    has = np.ones(len(vectors), dtype=bool)
    adapter = fit_image_adapter(
        vectors, has, kinds, colours, shape=np.arange(SHAPE_DIM, dtype=np.int64)
    )
    assert adapter is not None
    return adapter, vectors, kinds, colours


class TestFit:
    def test_adapted_neighbours_share_kind_and_colour(self, fitted) -> None:  # type: ignore[no-untyped-def]
        adapter, vectors, kinds, colours = fitted
        # Fresh products drawn the same way (other noise): nothing about them was fitted on.
        fresh, fresh_kinds, fresh_colours = catalogue(seed=1)
        both = np.vstack([vectors, fresh])
        both_kinds, both_colours = kinds + fresh_kinds, colours + fresh_colours
        queries = np.arange(len(vectors), len(both), dtype=np.int64)
        adapted = adapter.apply(both)
        raw_kind = precision_at_5(both, both_kinds, queries)
        adapted_kind = precision_at_5(adapted, both_kinds, queries)
        pairs = [f"{k}/{c}" for k, c in zip(both_kinds, both_colours, strict=True)]
        assert adapted_kind > raw_kind + 0.25, (raw_kind, adapted_kind)
        assert precision_at_5(adapted, pairs, queries) > precision_at_5(both, pairs, queries) + 0.1
        assert adapted.shape == (len(both), adapter.dim)
        assert np.allclose(np.linalg.norm(adapted, axis=1), 1.0, atol=1e-5)

    def test_describe_names_the_labels(self, fitted) -> None:  # type: ignore[no-untyped-def]
        adapter = fitted[0]
        assert adapter.kind is not None and adapter.colour is not None
        assert "5 categories" in adapter.describe()
        assert "4 colour families" in adapter.describe()
        assert adapter.dim == DIM + 4 + 3  # classes - 1 per discriminant

    def test_too_few_labelled_photos_fit_nothing(self) -> None:
        vectors, kinds, colours = catalogue(n_kinds=2, n_colours=2, per_pair=6)
        has = np.ones(len(vectors), dtype=bool)
        assert len(vectors) < MIN_FIT_PHOTOS
        assert fit_image_adapter(vectors, has, kinds, colours) is None

    def test_unlabelled_and_photo_less_products_are_left_out(self) -> None:
        vectors, kinds, colours = catalogue()
        has = np.ones(len(vectors), dtype=bool)
        has[:] = False
        has[::3] = True  # two products in three have no photo: too few left for either fit
        vectors[~has] = 0.0
        assert fit_image_adapter(vectors, has, kinds, colours) is None
        no_colours = fit_image_adapter(
            vectors, np.ones(len(vectors), bool), kinds, [None] * len(kinds)
        )
        assert no_colours is not None and no_colours.colour is None and no_colours.kind is not None

    def test_mismatched_labels_are_refused(self) -> None:
        vectors, kinds, colours = catalogue()
        with pytest.raises(ValueError, match="categories"):
            fit_image_adapter(vectors, np.ones(len(vectors), bool), kinds[:-1], colours)


class TestUse:
    def test_save_and_load_give_the_same_projection(self, fitted, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
        adapter, vectors, _, _ = fitted
        adapter.save(tmp_path / "adapter.npz")
        loaded = ImageAdapter.load(tmp_path / "adapter.npz")
        assert loaded.describe() == adapter.describe()
        assert np.array_equal(loaded.apply(vectors), adapter.apply(vectors))

    def test_another_version_is_refused(self, tmp_path: Path) -> None:
        np.savez(tmp_path / "old.npz", version=np.array("catalogue-lda-0"), raw_dim=np.array(3))
        with pytest.raises(ValueError, match="catalogue-lda-0"):
            ImageAdapter.load(tmp_path / "old.npz")

    def test_raw_part_gives_the_raw_vectors_back(self, fitted) -> None:  # type: ignore[no-untyped-def]
        adapter, vectors, _, _ = fitted
        rows = np.vstack([vectors[:5], np.zeros((1, DIM), dtype=np.float32)])
        adapted = adapter.apply(rows)
        assert not adapted[-1].any()  # a product without a photo stays all zero
        assert np.allclose(adapter.raw_part(adapted), rows, atol=1e-6)
        with pytest.raises(ValueError, match="floats"):
            adapter.apply(rows[:, :-1])

    def test_colour_blind_ignores_colour(self, fitted) -> None:  # type: ignore[no-untyped-def]
        adapter, vectors, _, _ = fitted
        recoloured = vectors[:1].copy()
        recoloured[0, SHAPE_DIM:] = vectors[50, SHAPE_DIM:]  # same shape, another colour
        a, b = adapter.apply(vectors[:1]), adapter.apply(unit(recoloured.astype(np.float64)))
        blind_a, blind_b = adapter.colour_blind(a), adapter.colour_blind(b)
        assert float(a[0] @ b[0]) < 0.99
        assert float(blind_a[0] @ blind_b[0]) == pytest.approx(1.0, abs=1e-5)
        assert not blind_a[0, DIM + adapter.kind.dim :].any()  # type: ignore[union-attr]


def drawn(rgb: tuple[int, int, int], ellipse: bool) -> Image.Image:
    image = Image.new("RGB", (64, 64), (255, 255, 255))
    d = ImageDraw.Draw(image)
    (d.ellipse if ellipse else d.rectangle)((12, 12, 52, 52), fill=rgb)
    return image


class TestEmbedder:
    def test_adapted_descriptor_encodes_into_the_adapted_space(self) -> None:
        base = DescriptorImageEmbedder()
        base.warm_up()
        photos = [
            drawn((int(r), int(g), 40), ellipse)
            for ellipse in (True, False)
            for r in np.linspace(20, 230, 6)
            for g in np.linspace(20, 230, 6)
        ]
        raw = base.embed_images(photos)
        kinds = ["ellipse" if i < 36 else "square" for i in range(72)]
        kinds = [f"{k}-{i % 3}" for i, k in enumerate(kinds)]  # 6 categories of 12
        adapter = fit_image_adapter(raw, np.ones(72, bool), kinds, [None] * 72)
        assert adapter is not None
        embedder = AdaptedImageEmbedder(base, adapter)
        embedder.warm_up()
        assert embedder.dim == adapter.dim == base.dim + 5
        out = embedder.embed_images(photos[:3])
        assert np.allclose(out, adapter.apply(raw[:3]), atol=1e-6)
        assert embedder.embed_images([]).shape == (0, adapter.dim)

    def test_an_embedder_of_another_size_is_refused(self, fitted) -> None:  # type: ignore[no-untyped-def]
        embedder = AdaptedImageEmbedder(DescriptorImageEmbedder(), fitted[0])
        with pytest.raises(ValueError, match="fitted on 24-d"):
            embedder.warm_up()

    def test_shape_columns_leave_out_colour_parts(self) -> None:
        lite0 = packaged_lite0()  # constructing loads no weights
        columns = shape_columns(lite0)
        assert columns is not None
        assert columns.tolist() == list(range(1280))
        assert shape_columns(DescriptorImageEmbedder()) is None
