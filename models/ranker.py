"""Learned ranking models behind :class:`search.rank.learned.RelevanceScorer`.

The packaged model (``models/rankers/*.txt``) is a LightGBM LambdaMART trained with
``python -m benchmarks.train_ranker`` on generic features (coverage, title position, word order,
scores and ranks) over the public Home Depot relevance judgements. A shop can retrain it on its
own judgements or click logs and point the service at the file.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

RANKER_DIR = Path(__file__).resolve().parent / "rankers"
PACKAGED_RANKERS = {"hybrid": RANKER_DIR / "hybrid.txt", "lexical": RANKER_DIR / "lexical.txt"}


class OnnxTreeScorer:
    """A LightGBM model converted to ONNX (``scripts/export_ranker_onnx.py``), scored by
    onnxruntime: what the packaged rankers serve with. No LightGBM import (73 MB of resident
    memory with scikit-learn), and 100 candidates in about 0.5 ms against LightGBM's 0.7 ms;
    scores match LightGBM's within 1e-5 (float32 sums).

    Args:
        path: The ``.onnx`` file (its metadata names the features).
        name: Name for manifests and explanations (defaults to the file name).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a ranking model this service can score (no feature names).
    """

    def __init__(self, path: Path, name: str | None = None) -> None:
        from models.runtime import onnx_session

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"ranking model {self.path} does not exist")
        self.name = name or self.path.stem
        # Opened here, not on first use: the feature names live in the file's metadata, and
        # the session is small (a 0.7 MB file).
        self._session = onnx_session(self.path, 1)
        names = self._session.get_modelmeta().custom_metadata_map.get("feature_names", "")
        if not names.split():
            raise ValueError(
                f"{self.path} names no features (write it with scripts/export_ranker_onnx.py)"
            )
        self.feature_names: tuple[str, ...] = tuple(names.split())
        self._input = self._session.get_inputs()[0].name

    def warm_up(self) -> None:
        """Nothing left to load (the session opens with the scorer)."""

    def score(self, features: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        """Relevance scores, one per feature row."""
        if len(features) == 0:
            return np.zeros(0, dtype=np.float64)
        rows = np.ascontiguousarray(features, dtype=np.float32)
        scores = self._session.run(None, {self._input: rows})[0]
        return np.asarray(scores, dtype=np.float64).reshape(-1)


class LightGBMScorer:
    """A LightGBM model file (text format) used for scoring.

    Args:
        path: The model file.
        name: Name for manifests and explanations (defaults to the file name).

    Raises:
        FileNotFoundError: no such file.
    """

    def __init__(self, path: Path, name: str | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"ranking model {self.path} does not exist")
        self.name = name or self.path.stem
        self._booster: Any = None
        self._lock = threading.Lock()
        self.feature_names: tuple[str, ...] = _feature_names(self.path)

    def warm_up(self) -> None:
        """Load the booster (once)."""
        with self._lock:
            if self._booster is None:
                try:
                    import lightgbm
                except ImportError as exc:
                    raise ImportError("install 'lightgbm' for learned ranking") from exc
                self._booster = lightgbm.Booster(model_file=str(self.path))

    def score(self, features: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        """Relevance scores, one per feature row."""
        self.warm_up()
        if len(features) == 0:
            return np.zeros(0, dtype=np.float64)
        return np.asarray(self._booster.predict(features, num_threads=1), dtype=np.float64)


def _feature_names(path: Path) -> tuple[str, ...]:
    """Read the ``feature_names=`` line of a LightGBM text model without loading LightGBM."""
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("feature_names="):
                return tuple(line.strip().split("=", 1)[1].split())
            if line.startswith("Tree="):
                break
    raise ValueError(f"{path} is not a LightGBM text model (no feature_names line)")


def load_ranker(spec: str, *, semantic: bool) -> LightGBMScorer | OnnxTreeScorer | None:
    """The ranking model a spec names.

    Args:
        spec: ``auto`` (the packaged model for a hybrid or a lexical-only snapshot, scored from
            its ONNX conversion), ``none``, or a path to a LightGBM text model or to an ONNX file
            written by ``scripts/export_ranker_onnx.py``.
        semantic: Whether the snapshot has text vectors (picks the packaged model).

    Raises:
        FileNotFoundError: a path that does not exist.
    """
    if spec == "none":
        return None
    if spec == "auto":
        path = PACKAGED_RANKERS["hybrid" if semantic else "lexical"]
        if path.with_suffix(".onnx").is_file():
            return OnnxTreeScorer(path.with_suffix(".onnx"))
        return LightGBMScorer(path) if path.is_file() else None
    if spec.endswith(".onnx"):
        return OnnxTreeScorer(Path(spec))
    return LightGBMScorer(Path(spec))
