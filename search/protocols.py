"""One small protocol per role. Implementations live in ``search/`` and ``models/``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np
    import numpy.typing as npt

    from search.rank.context import RankingContext, Reranked
    from search.rank.learned import RelevanceScorer
    from search.types import Hit
    from search.understand import AnalyzedQuery


@runtime_checkable
class Retriever(Protocol):
    """Finds scored candidates for a query.

    ``allowed`` is a boolean mask over documents (True = may be returned) built from the
    request's filters, or None for no restriction.
    """

    @property
    def name(self) -> str:
        """Name used in runs, weights and explanations."""
        ...

    def retrieve(
        self, query: AnalyzedQuery, k: int, allowed: npt.NDArray[np.bool_] | None = None
    ) -> list[Hit]:
        """Return at most ``k`` hits, best first."""
        ...


@runtime_checkable
class Reranker(Protocol):
    """Adjusts a ranked list of hits (behaviour, personalisation, merchandising rules).

    ``context`` says who asks (user, session, channel, segment, time); the result carries the
    re-ordered hits and, per document it moved or re-scored, an effect for explanations.
    """

    @property
    def name(self) -> str:
        """Name used in explanations."""
        ...

    def rerank(self, query: AnalyzedQuery, hits: list[Hit], context: RankingContext) -> Reranked:
        """Return the hits re-scored and re-ordered, best first, with their effects."""
        ...


@runtime_checkable
class TextEmbedder(Protocol):
    """Turns texts into L2-normalised vectors; queries and documents may be encoded differently."""

    name: str
    version: str
    dim: int
    min_similarity: float
    """Cosine similarity below which a product is unrelated to a query (model-specific)."""

    def warm_up(self) -> None:
        """Load weights; idempotent. Called once before the first encode."""
        ...

    def embed_queries(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Encode search queries: shape ``(len(texts), dim)``, float32, unit rows."""
        ...

    def embed_documents(
        self, texts: Sequence[str], batch_size: int = 64, show_progress: bool = False
    ) -> npt.NDArray[np.float32]:
        """Encode product texts: shape ``(len(texts), dim)``, float32, unit rows."""
        ...


@runtime_checkable
class ImageEncoder(Protocol):
    """Turns photos into L2-normalised vectors (``models.image`` backends implement it)."""

    name: str
    version: str
    dim: int

    def warm_up(self) -> None:
        """Load weights; idempotent."""
        ...

    def embed_images(
        self, images: Sequence[Any], batch_size: int = 32, show_progress: bool = False
    ) -> npt.NDArray[np.float32]:
        """Encode decoded photos (PIL images): shape ``(len(images), dim)``, unit rows."""
        ...


class ModelLoader(Protocol):
    """Loads the models a snapshot's manifest names (``models.loader.PackagedModels``); given
    to ``SearchEngine.open`` by the composition root, so the pipeline never imports a model
    backend itself."""

    def text_embedder(self, spec: str) -> TextEmbedder | None:
        """The query embedder a ``text_embedder`` spec names, or None for none."""
        ...

    def image_embedder(self, spec: str) -> ImageEncoder | None:
        """The photo encoder an ``image_embedder`` spec names, or None for none."""
        ...

    def adapt_image_embedder(self, projection: Path, encoder: ImageEncoder) -> ImageEncoder:
        """``encoder`` through the catalogue photo projection stored at ``projection``."""
        ...

    def ranker(self, spec: str, *, semantic: bool) -> RelevanceScorer | None:
        """The learned ranking model ``spec`` names (``auto``, ``none`` or a file)."""
        ...
