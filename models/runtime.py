"""Process-wide settings of the model runtimes."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def limit_cpu_threads(threads: int) -> None:
    """Cap the CPU threads torch and faiss use for one inference.

    A search service answers many small requests at once: on a 2-core machine two OpenMP
    threads per request spin against each other and against the HTTP workers. Measured here
    (EfficientNet-Lite0, one photo, loaded machine): 2,000 ms with torch's default of 2 threads,
    35-60 ms with 1; MiniLM query p99 over HTTP 30 ms -> 25 ms.

    Args:
        threads: Threads per inference (>= 1).

    Raises:
        ValueError: ``threads`` < 1.
    """
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    else:
        # Importing torch costs ~0.5 GB of RSS, wasted by a lexical-only service: leave it to the
        # encoders, and let their import pick the cap up from OpenMP's variable instead.
        os.environ["OMP_NUM_THREADS"] = str(threads)
    try:
        import faiss

        faiss.omp_set_num_threads(threads)
    except ImportError:
        pass
    logger.debug("model runtimes limited to %d CPU thread(s)", threads)


def release_free_memory(*, collect: bool = True) -> bool:
    """Hand memory that start-up work freed back to the operating system.

    Building a serving engine (reading a million products, collecting suggestion phrases)
    frees far more than it keeps, but the C allocator holds freed blocks for reuse, so the
    process's RSS stays at its start-up peak. On glibc ``malloc_trim(0)`` returns free pages
    (0.08-0.1 GB at a million products); elsewhere nothing happens.

    Args:
        collect: Run Python's garbage collector first; False for a hot path that freed its
            memory itself (a decoded photo upload), where a full collection would stall every
            other request on the GIL.

    Returns:
        Whether the allocator was asked to release memory.
    """
    import gc

    if collect:
        gc.collect()
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (e.g. musl)
        return False
    trim(0)
    return True


def onnx_session(path: Path, threads: int) -> Any:
    """An onnxruntime CPU session for a model file, as every packaged model runs.

    ``threads`` intra-op threads, one inter-op thread, sequential execution, and pool threads
    that do not spin once an inference is done (spinning ones take a core from the HTTP workers
    of a small machine for a while after each call).

    Raises:
        ImportError: onnxruntime is not installed (a core dependency).
        ValueError: the file is not a readable ONNX model.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's errors derive from Exception only
        raise ValueError(f"{path} is not a readable ONNX model: {exc}") from exc
