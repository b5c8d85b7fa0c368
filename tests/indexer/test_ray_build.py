"""Tests of :mod:`indexer.ray_build`: a Ray build makes the same snapshot as a local build.

One local Ray instance (2 CPUs) serves the whole module: starting Ray takes 10-20 s on a busy
2-core machine, each build a few seconds more.
"""

from __future__ import annotations

import importlib.util
import sys
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import pytest

from api.service import open_snapshot
from indexer.build import (
    BuildConfig,
    BuildResult,
    build_snapshot,
    import_catalogue,
    with_catalogue_roots,
)
from indexer.ray_build import (
    RAY_INSTALL_HINT,
    RayOptions,
    _merge_colour_reports,
    build_from_catalogue_on_ray,
    build_snapshot_on_ray,
)
from search.errors import CatalogueError
from search.index.snapshot import (
    IMAGE_HAS,
    IMAGE_VECTORS,
    IMPORT_REPORT,
    MANIFEST,
    TEXT_VECTORS,
    read_manifest,
)
from search.types import Product, SearchRequest
from tests.conftest import CORE_PRODUCTS

HAS_RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(
    not HAS_RAY, reason="ray is not installed: pip install 'productsearch[distributed]'"
)

#: Files whose bytes hold float vectors: compared within tolerance, every other file byte-for-byte.
VECTOR_FILES = (TEXT_VECTORS, IMAGE_VECTORS)


class HashingEmbedder:
    """A deterministic toy text model: a bag of hashed words (no weights, instant).

    The class is its own factory: each Ray worker calls ``HashingEmbedder()`` once.
    """

    name = "hashing"
    version = "hashing 1"
    min_similarity = 0.2

    def __init__(self, dim: int = 32) -> None:
        self.dim = dim

    def warm_up(self) -> None:
        """Nothing to load."""

    def _embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().replace(".", " ").split():
                out[row, zlib.crc32(word.encode()) % (self.dim - 1)] += 1.0
            out[row, -1] = 0.1
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    def embed_queries(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        return self._embed(texts)

    def embed_documents(
        self, texts: Sequence[str], batch_size: int = 64, show_progress: bool = False
    ) -> npt.NDArray[np.float32]:
        return self._embed(texts)


def photo(path: Path, colour: tuple[int, int, int]) -> str:
    """A product photo: a coloured square on white."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (64, 64), (255, 255, 255))
    ImageDraw.Draw(image).rectangle((12, 12, 52, 52), fill=colour)
    image.save(path)
    return str(path)


def write_catalogue(folder: Path) -> Path:
    """The core catalogue as JSON Lines: photos on some products (one missing), one bad row."""
    colours = [(200, 30, 30), (30, 30, 200), (30, 160, 30), (20, 20, 20)]
    products: list[Product] = []
    for i, product in enumerate(CORE_PRODUCTS):
        if i < 4:
            product = replace(product, images=(photo(folder / f"{i}.png", colours[i]),))
        elif i == 4:
            product = replace(product, images=(str(folder / "missing.png"),))
        products.append(product)
    rows = [orjson.dumps(p.to_dict()) for p in products]
    rows.insert(3, orjson.dumps({"id": "BAD-1", "price": 3}))  # no title: reported, skipped
    path = folder / "catalogue.jsonl"
    path.write_bytes(b"\n".join(rows) + b"\n")
    return path


@dataclass(frozen=True)
class Builds:
    """A local and a Ray build of the same catalogue."""

    local: Path
    ray: BuildResult
    stages: frozenset[str]


@pytest.fixture(scope="module")
def ray_instance() -> Iterator[Any]:
    """A local Ray instance for the module (the builds join it and leave it running)."""
    if not HAS_RAY:
        pytest.skip("ray is not installed: pip install 'productsearch[distributed]'")
    import ray

    ray.init(
        num_cpus=2,
        include_dashboard=False,
        configure_logging=False,
        log_to_driver=False,
    )
    yield ray
    ray.shutdown()


def local_build(catalogue: Path, out: Path, config: BuildConfig, embedder: Any) -> None:
    """What ``build_from_catalogue`` does, with an embedder object."""
    result = import_catalogue(catalogue)
    build_snapshot(
        result.products,
        out,
        config=with_catalogue_roots(config, catalogue),
        embedder=embedder,
        catalogue_checksum=result.checksum,
        import_report=result.report.to_dict(),
    )


CONFIG = BuildConfig(languages=("en", "pl"), embedder="none", image_embedder="descriptor")


@pytest.fixture(scope="module")
def builds(ray_instance: Any, tmp_path_factory: pytest.TempPathFactory) -> Builds:
    """The catalogue built locally and on Ray with the hashing embedder, photo vectors and
    photo colours."""
    folder = tmp_path_factory.mktemp("ray_build")
    catalogue = write_catalogue(folder)
    local_build(catalogue, folder / "local", CONFIG, HashingEmbedder())
    stages: set[str] = set()
    result = build_from_catalogue_on_ray(
        catalogue,
        folder / "ray",
        config=CONFIG,
        embedder_factory=HashingEmbedder,
        options=RayOptions(workers=2, products_per_block=4),
        progress=lambda stage, done, total: stages.add(stage),
    )
    return Builds(local=folder / "local", ray=result, stages=frozenset(stages))


def assert_same_snapshot(local: Path, ray: Path, atol: float = 1e-6) -> None:
    """Same manifest (ids and times aside), the same files; vectors equal within ``atol``."""
    a, b = read_manifest(local), read_manifest(ray)
    assert a.snapshot_id != b.snapshot_id
    for key in ("format_version", "catalogue_checksum", "languages", "counts", "models"):
        assert getattr(a, key) == getattr(b, key), key
    assert a.settings == b.settings
    assert set(a.files) == set(b.files)
    for name in a.files:
        if name in VECTOR_FILES:
            left, right = np.load(local / name), np.load(ray / name)
            assert left.shape == right.shape and left.dtype == right.dtype, name
            np.testing.assert_allclose(left, right, atol=atol, err_msg=name)
        else:
            assert (local / name).read_bytes() == (ray / name).read_bytes(), name
            assert a.files[name] == b.files[name], name


@needs_ray
class TestRayBuild:
    """A Ray build against a local build of the same catalogue."""

    def test_same_snapshot(self, builds: Builds) -> None:
        assert_same_snapshot(builds.local, builds.ray.snapshot_dir)
        manifest = read_manifest(builds.ray.snapshot_dir)
        assert manifest.counts["products"] == len(CORE_PRODUCTS)
        assert manifest.counts["text_vectors"] == len(CORE_PRODUCTS)
        assert manifest.models["text_embedder"] == "hashing"
        assert manifest.models["image_embedder"] == "descriptor"
        assert manifest.counts["image_vectors"] == 4
        assert manifest.counts["image_errors"] == 1
        assert manifest.counts["photos_read"] == 4

    def test_vectors_in_product_order(self, builds: Builds) -> None:
        vectors = np.load(builds.ray.snapshot_dir / TEXT_VECTORS)
        engine = open_snapshot(builds.ray.snapshot_dir, use_semantic=False, ranker="none")
        from indexer.build import embedding_text

        texts = [embedding_text(p) for p in engine.store.products]
        assert np.allclose(vectors, HashingEmbedder().embed_documents(texts))
        has = np.load(builds.ray.snapshot_dir / IMAGE_HAS)
        assert has.tolist() == [True] * 4 + [False] * (len(CORE_PRODUCTS) - 4)

    def test_bad_row_reported(self, builds: Builds) -> None:
        (error,) = builds.ray.report.errors
        assert (error.row, error.field, error.reason, error.product_id) == (
            4,
            "title",
            "missing",
            "BAD-1",
        )
        stored = orjson.loads((builds.ray.snapshot_dir / IMPORT_REPORT).read_bytes())
        assert [e["product_id"] for e in stored["errors"]] == ["BAD-1"]
        assert read_manifest(builds.ray.snapshot_dir).counts["import_errors"] == 1

    def test_progress_stages(self, builds: Builds) -> None:
        assert {"import", "analyse", "images", "colours", "embed", "write"} <= builds.stages

    def test_service_loads_it(self, builds: Builds) -> None:
        engine = open_snapshot(builds.ray.snapshot_dir, embedder=HashingEmbedder(), ranker="none")
        result = engine.search(SearchRequest(text="oak dining chair", k=3))
        assert result.hits[0].product.id == "CHAIR-1"
        assert "semantic" in engine.retrievers

    def test_lexical_only(self, ray_instance: Any, tmp_path: Path) -> None:
        config = BuildConfig(languages=("en", "pl"), embedder="none", photo_colours=False)
        build_snapshot(CORE_PRODUCTS, tmp_path / "local", config=config)
        build_snapshot_on_ray(CORE_PRODUCTS, tmp_path / "ray", config=config)
        assert_same_snapshot(tmp_path / "local", tmp_path / "ray")
        assert not (tmp_path / "ray" / TEXT_VECTORS).exists()


class TestCli:
    """``productsearch index --executor ray`` (``ray_instance`` skips without ray)."""

    def test_index_on_ray(self, ray_instance: Any, tmp_path: Path) -> None:
        from typer.testing import CliRunner

        from api.cli import app

        catalogue = write_catalogue(tmp_path)
        args = ["--embedder", "none", "--image-embedder", "none", "--lang", "en,pl"]
        ray_args = ["--executor", "ray", "--ray-workers", "2"]
        runner = CliRunner()
        result = runner.invoke(
            app,
            ["index", str(catalogue), "--out", str(tmp_path / "ray"), *args, *ray_args],
            env={"COLUMNS": "200"},
        )
        assert result.exit_code == 0, result.output
        assert "products indexed:  12" in result.stdout
        assert "BAD-1" in result.stdout
        local = runner.invoke(
            app, ["index", str(catalogue), "--out", str(tmp_path / "local"), *args]
        )
        assert local.exit_code == 0, local.output
        assert_same_snapshot(tmp_path / "local", tmp_path / "ray")

    def test_ray_options_need_ray_executor(self, tmp_path: Path) -> None:
        from typer.testing import CliRunner

        from api.cli import app

        catalogue = write_catalogue(tmp_path)
        result = CliRunner().invoke(
            app,
            ["index", str(catalogue), "--out", str(tmp_path / "out"), "--ray-address", "auto"],
        )
        assert result.exit_code == 2
        assert "--executor ray" in result.output


@needs_ray
class TestRayBuildErrors:
    """Failures that happen before any Ray job runs."""

    def test_strict_fails_on_bad_row(self, tmp_path: Path) -> None:
        catalogue = tmp_path / "c.jsonl"
        catalogue.write_bytes(b'{"id": "BAD-1"}\n')
        with pytest.raises(CatalogueError):
            build_from_catalogue_on_ray(catalogue, tmp_path / "out", strict=True)
        assert not (tmp_path / "out").exists()

    def test_duplicate_ids(self, tmp_path: Path) -> None:
        products = (CORE_PRODUCTS[0], CORE_PRODUCTS[0])
        with pytest.raises(ValueError, match="unique"):
            build_snapshot_on_ray(products, tmp_path / "out")

    def test_unknown_embedder(self, tmp_path: Path) -> None:
        with pytest.raises(ValueError, match="valid: minilm"):
            build_snapshot_on_ray(
                CORE_PRODUCTS, tmp_path / "out", config=BuildConfig(embedder="bogus")
            )


class TestWithoutRay:
    """Parts that need no Ray instance."""

    def test_missing_ray_names_the_extra(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setitem(sys.modules, "ray", None)
        with pytest.raises(ImportError, match=r"productsearch\[distributed\]"):
            build_from_catalogue_on_ray(tmp_path / "c.jsonl", tmp_path / "out")
        assert "productsearch[distributed]" in RAY_INSTALL_HINT

    def test_hint_names_a_real_extra(self) -> None:
        import tomllib

        pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
        extras = tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"]
        assert any(dep.startswith("ray[data]") for dep in extras["distributed"])
        assert "distributed" in extras["all"][0]

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"workers": 0}, "workers"),
            ({"cpus_per_worker": 0}, "cpus_per_worker"),
            ({"products_per_block": 0}, "products_per_block"),
        ],
    )
    def test_options_checked(self, kwargs: dict[str, Any], message: str) -> None:
        with pytest.raises(ValueError, match=message):
            RayOptions(**kwargs)

    def test_merge_colour_reports(self) -> None:
        from indexer.product_colours import index_colours

        products = [replace(p, colours=("chartreuse-ish",)) for p in CORE_PRODUCTS[:3]]
        _, whole = index_colours(products)
        parts = [orjson.dumps(index_colours([p])[1].to_dict()) for p in products]
        assert _merge_colour_reports(parts) == whole.to_dict()
        assert _merge_colour_reports([]) == index_colours([])[1].to_dict()


@needs_ray
@pytest.mark.slow
def test_minilm_same_vectors(ray_instance: Any, tmp_path: Path) -> None:
    """The real quantised MiniLM: Ray embeds the local build's batches, so vectors match."""
    config = BuildConfig(languages=("en", "pl"), embedder="minilm", embed_batch_size=4)
    build_snapshot(CORE_PRODUCTS, tmp_path / "local", config=config)
    build_snapshot_on_ray(
        CORE_PRODUCTS, tmp_path / "ray", config=config, options=RayOptions(workers=2)
    )
    assert_same_snapshot(tmp_path / "local", tmp_path / "ray", atol=1e-4)
    assert read_manifest(tmp_path / "ray").models["text_embedder_dim"] == "384"
    assert (tmp_path / "ray" / MANIFEST).is_file()
