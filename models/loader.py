"""The packaged model backends, handed to the query pipeline as one :class:`ModelLoader`.

``search/`` never imports ``models/``: ``SearchEngine.open`` asks the loader it is given for the
query embedder, the photo encoder (through the snapshot's catalogue projection) and the learned
ranker the snapshot's manifest names. The composition root (``api/service.py``) gives it
:class:`PackagedModels`; a caller that gives none gets lexical retrieval in fusion order.
"""

from __future__ import annotations

from pathlib import Path

from search.protocols import ImageEncoder, TextEmbedder
from search.rank.learned import RelevanceScorer


class PackagedModels:
    """Loads the backends a spec names from the installed packages (weights load in
    ``warm_up``). Each method imports its backend module on first use, so a process that
    never embeds a photo never imports the photo stack."""

    def text_embedder(self, spec: str) -> TextEmbedder | None:
        """The query embedder a manifest's ``text_embedder`` spec names."""
        from models.text import CachedQueryEmbedder, load_text_embedder

        embedder = load_text_embedder(spec)
        # Repeated queries (a shop's head) skip the model: see CachedQueryEmbedder.
        return CachedQueryEmbedder(embedder) if embedder is not None else None

    def image_embedder(self, spec: str) -> ImageEncoder | None:
        """The photo encoder a manifest's ``image_embedder`` spec names."""
        from models.image import load_image_embedder

        return load_image_embedder(spec)

    def adapt_image_embedder(self, projection: Path, encoder: ImageEncoder) -> ImageEncoder:
        """``encoder`` through the catalogue photo projection stored at ``projection``; an
        encoder already wrapped by another snapshot's projection is unwrapped first.

        Raises:
            OSError, ValueError, KeyError: the projection cannot be read or does not fit.
        """
        from models.image_adapter import AdaptedImageEmbedder, ImageAdapter

        if isinstance(encoder, AdaptedImageEmbedder):
            encoder = encoder.base
        adapted = AdaptedImageEmbedder(encoder, ImageAdapter.load(projection))
        adapted.warm_up()
        return adapted

    def ranker(self, spec: str, *, semantic: bool) -> RelevanceScorer | None:
        """The learned ranking model ``spec`` names (``auto``, ``none`` or a file).

        Raises:
            OSError, ValueError: the model cannot be read.
        """
        from models.ranker import load_ranker

        return load_ranker(spec, semantic=semantic)


PACKAGED_MODELS = PackagedModels()
"""The loader of the installed backends (stateless: one is enough)."""
