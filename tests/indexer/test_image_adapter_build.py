"""The catalogue photo projection through a build, the engine and a delta: fitted on the
catalogue's categories and title colours, recorded in the manifest, applied to shoppers' photos,
and re-fitted on the raw vectors when a delta changes the catalogue."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from api.service import open_snapshot
from indexer.build import BuildConfig, build_snapshot
from indexer.delta import apply_changes
from models.image_adapter import AdaptedImageEmbedder, ImageAdapter
from search.index.snapshot import IMAGE_ADAPTER, IMAGE_VECTORS, read_manifest
from search.types import Product, SearchRequest

KINDS = ("lamp", "vase", "cushion")
COLOURS = {
    "red": (200, 30, 35),
    "blue": (35, 60, 180),
    "green": (40, 150, 60),
    "black": (25, 25, 28),
}
CONFIG = BuildConfig(embedder="none", photo_colours=False, image_embedder="descriptor")


def draw(kind: str, rgb: tuple[int, int, int], size: int) -> Image.Image:
    image = Image.new("RGB", (96, 96), (255, 255, 255))
    d = ImageDraw.Draw(image)
    lo, hi = 48 - size, 48 + size
    if kind == "lamp":
        d.polygon([(48, lo), (hi, hi), (lo, hi)], fill=rgb)
    elif kind == "vase":
        d.ellipse((lo + 8, lo, hi - 8, hi), fill=rgb)
    else:
        d.rectangle((lo, lo + 10, hi, hi - 10), fill=rgb)
    return image


def products(folder: Path) -> list[Product]:
    out = []
    for kind in KINDS:
        for colour, rgb in COLOURS.items():
            for size in range(20, 44, 4):
                path = folder / f"{kind}-{colour}-{size}.png"
                draw(kind, rgb, size).save(path)
                out.append(
                    Product(
                        f"{kind}-{colour}-{size}",
                        f"{colour.title()} {kind} {size} cm",
                        categories=(("Home", kind.title()),),
                        images=(str(path),),
                    )
                )
    return out


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Product]]:
    folder = tmp_path_factory.mktemp("adapter")
    items = products(folder)
    build_snapshot(items, folder / "snap", config=CONFIG)
    return folder, items


def test_build_fits_and_records_the_projection(catalogue: tuple[Path, list[Product]]) -> None:
    folder, _ = catalogue
    manifest = read_manifest(folder / "snap")
    assert IMAGE_ADAPTER in manifest.files
    assert manifest.settings["image_adapter"] == "on"
    assert "3 categories (72 photos)" in manifest.models["image_adapter"]
    assert "4 colour families (72 photos)" in manifest.models["image_adapter"]
    adapter = ImageAdapter.load(folder / "snap" / IMAGE_ADAPTER)
    vectors = np.load(folder / "snap" / IMAGE_VECTORS)
    assert vectors.shape == (72, adapter.dim)
    assert int(manifest.models["image_embedder_dim"]) == adapter.dim == adapter.raw_dim + 2 + 3


def test_a_shoppers_photo_is_projected_like_the_catalogue(
    catalogue: tuple[Path, list[Product]],
) -> None:
    folder, _ = catalogue
    engine = open_snapshot(folder / "snap", use_semantic=False, ranker="none")
    assert isinstance(engine.image_embedder, AdaptedImageEmbedder)
    photo = draw("vase", (40, 70, 190), 26)  # a size and shade the catalogue does not have
    result = engine.search_image(photo, SearchRequest(k=5, as_you_type=False))
    assert [h.product.id.rsplit("-", 1)[0] for h in result.hits[:3]] == ["vase-blue"] * 3
    # "this, in red": the photo's shape and kind, in the asked colour.
    result = engine.search_image(photo, SearchRequest(text="in red", k=3, as_you_type=False))
    assert all(h.product.id.startswith("vase-red") for h in result.hits)


def test_the_projection_can_be_turned_off(
    catalogue: tuple[Path, list[Product]], tmp_path: Path
) -> None:
    _, items = catalogue
    off = BuildConfig(
        embedder="none", photo_colours=False, image_embedder="descriptor", image_adapter=False
    )
    manifest = build_snapshot(items, tmp_path / "raw", config=off)
    assert IMAGE_ADAPTER not in manifest.files
    assert manifest.settings["image_adapter"] == "off"
    engine = open_snapshot(tmp_path / "raw", use_semantic=False, ranker="none")
    assert not isinstance(engine.image_embedder, AdaptedImageEmbedder)


def test_too_few_categorised_photos_keep_raw_vectors(tmp_path: Path) -> None:
    items = [
        Product(f"p{i}", f"{c} thing", images=(str(tmp_path / f"p{i}.png"),))
        for i, c in enumerate(COLOURS)
    ]
    for i, rgb in enumerate(COLOURS.values()):
        draw("vase", rgb, 30).save(tmp_path / f"p{i}.png")
    manifest = build_snapshot(items, tmp_path / "snap", config=CONFIG)
    assert IMAGE_ADAPTER not in manifest.files
    assert "image_adapter" not in manifest.models


def test_a_delta_refits_on_the_raw_vectors(
    catalogue: tuple[Path, list[Product]], tmp_path: Path
) -> None:
    folder, items = catalogue
    draw("lamp", (250, 200, 0), 30).save(tmp_path / "new.png")
    new = Product(
        "lamp-yellow-30",
        "Yellow lamp 30 cm",
        categories=(("Home", "Lamp"),),
        images=(str(tmp_path / "new.png"),),
    )
    result = apply_changes(
        folder / "snap", tmp_path / "delta", upserts=[new], deletes=[items[0].id]
    )
    assert result.images_embedded == 1
    assert IMAGE_ADAPTER in result.manifest.files
    full = tmp_path / "full"
    build_snapshot([p for p in items[1:]] + [new], full, config=CONFIG)
    engine = open_snapshot(result.snapshot_dir, use_semantic=False, ranker="none")
    order = {p.id: i for i, p in enumerate(engine.store.products)}
    full_engine = open_snapshot(full, use_semantic=False, ranker="none")
    full_order = [order[p.id] for p in full_engine.store.products]
    delta_vectors = np.load(result.snapshot_dir / IMAGE_VECTORS)[full_order]
    assert np.allclose(delta_vectors, np.load(full / IMAGE_VECTORS), atol=1e-4)
    found = engine.search_image(draw("lamp", (250, 200, 0), 30), SearchRequest(k=1))
    assert found.hits[0].product.id == "lamp-yellow-30"


def test_an_engine_after_a_delta_projects_with_the_new_fit(
    catalogue: tuple[Path, list[Product]], tmp_path: Path
) -> None:
    """The service opens a delta's snapshot with the serving engine's photo encoder: the
    encoder must take the delta's projection, not keep the old one."""
    folder, items = catalogue
    serving = open_snapshot(folder / "snap", use_semantic=False, ranker="none")
    old = ImageAdapter.load(folder / "snap" / IMAGE_ADAPTER)
    result = apply_changes(folder / "snap", tmp_path / "delta", deletes=[p.id for p in items[:12]])
    fresh = open_snapshot(
        result.snapshot_dir,
        use_semantic=False,
        ranker="none",
        image_encoder=serving.image_embedder,
    )
    assert isinstance(serving.image_embedder, AdaptedImageEmbedder)
    assert isinstance(fresh.image_embedder, AdaptedImageEmbedder)
    assert fresh.image_embedder.base is serving.image_embedder.base
    new = ImageAdapter.load(result.snapshot_dir / IMAGE_ADAPTER)
    assert new.kind is not None and old.kind is not None
    assert not np.allclose(new.kind.scalings, old.kind.scalings)
    photo = draw("vase", (40, 70, 190), 26)
    raw = serving.image_embedder.base.embed_images([photo])
    assert np.allclose(fresh.image_embedder.embed_images([photo]), new.apply(raw), atol=1e-6)
