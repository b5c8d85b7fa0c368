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


def load_ranker(spec: str, *, semantic: bool) -> LightGBMScorer | None:
    """The ranking model a spec names.

    Args:
        spec: ``auto`` (the packaged model for a hybrid or a lexical-only snapshot), ``none``, or
            a path to a LightGBM text model.
        semantic: Whether the snapshot has text vectors (picks the packaged model).

    Raises:
        FileNotFoundError: a path that does not exist.
    """
    if spec == "none":
        return None
    if spec == "auto":
        path = PACKAGED_RANKERS["hybrid" if semantic else "lexical"]
        return LightGBMScorer(path) if path.is_file() else None
    return LightGBMScorer(Path(spec))
