"""Photo search: products that look like a shopper's photo, or like one product's own photo,
optionally with text ("like this, in black", "sofa").

The photo side of a snapshot (its photo vectors and the encoder of query photos) lives here; the
text side (filters, query understanding, lexical retrieval, colours, facets) is the text
pipeline's, reached through the small :class:`TextSide` protocol so this module needs nothing
of the engine's own.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from search.errors import InvalidRequestError, ProductNotFoundError
from search.fusion import FUSERS
from search.index.colours import MATCH_GRADE, ColourIndex
from search.index.lexical import GroupScores
from search.index.snapshot import IMAGE_ANN, IMAGE_COMPRESSED, IMAGE_HAS, IMAGE_VECTORS, Manifest
from search.index.store import PriceColumn, ProductStore
from search.protocols import ImageEncoder
from search.rank.colour import ColourReranker
from search.rank.context import RankingContext
from search.retrievers import VectorIndex
from search.rules import MatchedRules, RuleSet
from search.tuning import Tuning
from search.types import (
    Explanation,
    FacetValue,
    Hit,
    ResultHit,
    RetrieverTrace,
    SearchRequest,
    SearchResult,
)
from search.understand import AnalyzedQuery, QueryUnderstander

#: Colour match from which a product is clearly in the asked colour (a colour stated in its text,
#: or its photo's main colour, close to the asked one): a photo search with a colour word looks
#: among these first.
STRONG_MATCH_GRADE = 0.6

#: Photo + colour word ("this, in black"): nearest products whose leaf categories vote for
#: what the photo shows, and the weights of that vote and of colour closeness against the
#: photo similarity rank (1 down to 1/n). On the fashion catalogue (241 queries of
#: ``benchmarks/fashion_photo_search.py``) type-and-colour P@10 went from 0.43 to about 0.70
#: with any of 10..40 neighbours and weights 0.5..2; 20 and 1 are the middle of that range.
CATEGORY_NEIGHBOURS = 20
PHOTO_CATEGORY_WEIGHT = 1.0
PHOTO_COLOUR_WEIGHT = 0.3


def read_vector_index(path: Path, manifest: Manifest, names: Sequence[str]) -> Any:
    """The first of ``names`` the snapshot holds, read as a faiss index, or None.

    Raises:
        RuntimeError: faiss cannot read the file.
    """
    for name in names:
        if name in manifest.files:
            import faiss

            return faiss.read_index(str(path / name))
    return None


@dataclass(frozen=True, slots=True)
class ImageVectors:
    """Product photo vectors: one row per product (zeros without a readable photo).

    Attributes:
        vectors: ``(n_products, dim)`` unit rows.
        has_vector: Products with a photo vector.
        index: Inner-product search over the vectors (HNSW or compressed IVF above the ANN
            threshold).
    """

    vectors: npt.NDArray[np.float32]
    has_vector: npt.NDArray[np.bool_]
    index: VectorIndex

    @classmethod
    def load(cls, path: Path, manifest: Manifest) -> ImageVectors | None:
        """The snapshot's photo vectors, or None when it has none."""
        if IMAGE_VECTORS not in manifest.files or "image_embedder" not in manifest.models:
            return None
        # Memory-mapped: with an ANN index only the rows of candidates are read.
        vectors = np.load(path / IMAGE_VECTORS, mmap_mode="r", allow_pickle=False)
        has_vector = np.load(path / IMAGE_HAS, allow_pickle=False).astype(bool)
        if len(vectors) != len(has_vector):
            raise ValueError(f"{len(vectors)} photo vectors but {len(has_vector)} flags")
        ann = read_vector_index(path, manifest, (IMAGE_ANN, IMAGE_COMPRESSED))
        return cls(vectors, has_vector, VectorIndex(vectors, ann))


class TextSide(Protocol):
    """What photo search uses of the text pipeline over the same snapshot
    (:class:`search.engine.SearchEngine` is one)."""

    store: ProductStore
    colours: ColourIndex
    colour_stage: ColourReranker
    understander: QueryUnderstander

    def validate(self, request: SearchRequest) -> None:
        """Check the request's parameters."""
        ...

    def price_column(self, currency: str | None = None) -> PriceColumn:
        """Prices in the request's currency."""
        ...

    def allowed_mask(
        self,
        request: SearchRequest,
        prices: PriceColumn,
        rules: RuleSet | None,
        matched: MatchedRules | None,
    ) -> npt.NDArray[np.bool_] | None:
        """The products the request's filters and colour allow."""
        ...

    def retrieve(
        self,
        query: AnalyzedQuery,
        k: int,
        allowed: npt.NDArray[np.bool_] | None,
        tuning: Tuning,
    ) -> tuple[dict[str, list[Hit]], GroupScores | None]:
        """Each text retriever's hits and the lexical scores."""
        ...

    def facets(
        self,
        docs: npt.NDArray[np.int64],
        names: Sequence[str],
        prices: PriceColumn,
        limit: int = 20,
    ) -> dict[str, tuple[FacetValue, ...]]:
        """Facet counts over ``docs``, at most ``limit`` values per facet."""
        ...


class PhotoSearch:
    """Photo search over one snapshot.

    Args:
        text: The text pipeline over the same snapshot.
        images: The products' photo vectors.
        embedder: Encodes shoppers' photos like the product photos were encoded.
        depth: Candidates retrieved (at least a page's end).
        image_weight: Fusion weight of photo similarity against the text's lexical match.
    """

    def __init__(
        self,
        text: TextSide,
        images: ImageVectors,
        embedder: ImageEncoder,
        *,
        depth: int,
        image_weight: float,
    ) -> None:
        self.text = text
        self.images = images
        self.embedder = embedder
        self.depth = depth
        self.image_weight = image_weight
        self._leaf_category_ids: npt.NDArray[np.int64] | None = None

    def search_image(self, image: Any, request: SearchRequest, tuning: Tuning) -> SearchResult:
        """Products that look like a shopper's photo, optionally narrowed by text.

        The photo is encoded like the product photos and matched against them (cosine, over the
        products allowed by the filters). With text ("like this but in red", "sofa") the text's
        lexical and colour retrieval is fused with the photo similarity (weight
        ``image_weight`` for the photo), so the colour words re-rank the look-alikes. A text of
        colour words only ("in black") searches the products in that colour by the photo's
        shape (the embedder's colour parts off), ranked by similarity and by the leaf
        categories of the photo's nearest products (see :data:`CATEGORY_NEIGHBOURS`).

        Args:
            image: A decoded photo (PIL image).
            request: Filters, paging, facets and optional text.
            tuning: The request's weights (colour match and re-ranking of the text).

        Raises:
            InvalidRequestError: a bad parameter.
        """
        vector = self.embedder.embed_images([image])[0]
        return self._search_by_vector(vector, request, tuning, exclude=None)

    def similar(self, product_id: str, request: SearchRequest, tuning: Tuning) -> SearchResult:
        """Products whose photos look like this product's main photo.

        Raises:
            ProductNotFoundError: no such product.
            InvalidRequestError: the product has no readable photo (field ``product_id``).
        """
        doc = self.text.store.doc_of.get(product_id)
        if doc is None:
            raise ProductNotFoundError(product_id)
        if not self.images.has_vector[doc]:
            raise InvalidRequestError(
                "product_id", f"product {product_id!r} has no readable photo to compare"
            )
        return self._search_by_vector(self.images.vectors[doc], request, tuning, exclude=doc)

    def _search_by_vector(
        self,
        vector: npt.NDArray[np.float32],
        request: SearchRequest,
        tuning: Tuning,
        exclude: int | None,
    ) -> SearchResult:
        text = self.text
        started = time.perf_counter()
        text.validate(request)
        prices = text.price_column(request.currency)
        allowed = text.allowed_mask(request, prices, None, None)
        with_photo = self.images.has_vector.copy()
        if exclude is not None:
            with_photo[exclude] = False
        allowed = with_photo if allowed is None else allowed & with_photo
        window = request.page * request.k
        depth = max(self.depth, window)
        query = text.understander.understand(request)
        category_votes: npt.NDArray[np.float64] | None = None
        if query.colours:
            # "This, in black": the asked colour replaces the photo's own, so the photo is
            # compared by shape alone (its colour parts off) and, before the search is narrowed
            # to the colour, its nearest products vote for the categories it looks like.
            vector = self._colour_blind(vector)
            near_sims, near_docs = self.images.index.search(vector, CATEGORY_NEIGHBOURS, allowed)
            category_votes = self._category_votes(near_sims, near_docs)
            # Look-alikes among the products clearly in that colour (stated in the text or the
            # photo's main colour), else among its shades.
            match = text.colours.match_all(query.colours)
            for floor in (STRONG_MATCH_GRADE, MATCH_GRADE):
                in_colour = allowed & (match >= floor)
                if int(in_colour.sum()) >= window:
                    allowed = in_colour
                    break
        sims, docs = self.images.index.search(vector, depth, allowed)
        runs: dict[str, list[Hit]] = {
            "image": [Hit(int(d), float(s), "image") for s, d in zip(sims, docs, strict=True)]
        }
        weights = {"image": self.image_weight, "lexical": 1.0}
        if query.colours and not query.other_words:
            # Only colour words: the colour narrowed the search and re-ranks below; their
            # lexical match (titles that say "black") would only outvote the look-alikes.
            ranked = self._photo_colour_rank(query, runs["image"], category_votes)
        else:
            lexical_scores = None
            if not query.is_empty:
                text_runs, lexical_scores = text.retrieve(query, depth, allowed, tuning)
                runs["lexical"] = text_runs.get("lexical", [])
            fused = FUSERS["score"](runs, weights)
            context = RankingContext(weights=tuning.weights, lexical=lexical_scores)
            ranked = text.colour_stage.rerank(query, fused, context).hits
        page = ranked[window - request.k : window]
        matching = np.fromiter((h.doc for h in ranked), dtype=np.int64, count=len(ranked))
        hits = tuple(
            ResultHit(
                product=text.store.products[h.doc],
                score=h.score,
                explanation=(
                    Explanation(
                        retrievers=tuple(
                            RetrieverTrace(name, rank, other.score, weights.get(name, 1.0))
                            for name, run in runs.items()
                            for rank, other in enumerate(run, start=1)
                            if other.doc == h.doc
                        ),
                        fused_score=h.score,
                    )
                    if request.explain
                    else None
                ),
                colours=text.colours.of(h.doc),
            )
            for h in page
        )
        return SearchResult(
            query=request.text,
            corrected_query=query.corrected_text,
            total=len(ranked),
            hits=hits,
            facets=text.facets(matching, request.facets, prices, request.facet_limit),
            took_ms=(time.perf_counter() - started) * 1000.0,
            currency=prices.currency,
            converted=prices.converted,
        )

    def _colour_blind(self, vector: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """The photo vector with the embedder's colour parts off (unchanged when it has none)."""
        blind = getattr(self.embedder, "colour_blind", None)
        if blind is None:
            return vector
        return np.asarray(blind(vector[None, :])[0], dtype=np.float32)

    def _category_votes(
        self, sims: npt.NDArray[np.float32], docs: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.float64]:
        """Per product, the similarity-weighted share of the photo's nearest products
        (``docs``, best first, at most :data:`CATEGORY_NEIGHBOURS` of them counted) in its leaf
        category: what kind of product the photo shows, read from the catalogue's own
        categories."""
        leaf = self._leaf_categories()
        totals: dict[int, float] = {}
        for s, d in zip(sims[:CATEGORY_NEIGHBOURS], docs[:CATEGORY_NEIGHBOURS], strict=True):
            category = int(leaf[int(d)])
            if category >= 0:
                totals[category] = totals.get(category, 0.0) + max(float(s), 0.0)
        votes = np.zeros(int(leaf.max(initial=-1)) + 2, dtype=np.float64)
        weight = sum(totals.values())
        for category, total in totals.items():
            votes[category] = total / weight if weight > 0 else 0.0
        return votes[leaf]  # a product without a category reads the last slot: 0

    def _leaf_categories(self) -> npt.NDArray[np.int64]:
        """Each product's leaf category as a number (-1 without one), computed once."""
        if self._leaf_category_ids is None:
            store = self.text.store
            ids: dict[str, int] = {}
            self._leaf_category_ids = np.fromiter(
                (
                    ids.setdefault(p.categories[0][-1], len(ids))
                    if p.categories and p.categories[0]
                    else -1
                    for p in store.products
                ),
                dtype=np.int64,
                count=len(store),
            )
        return self._leaf_category_ids

    def _photo_colour_rank(
        self,
        query: AnalyzedQuery,
        hits: list[Hit],
        category_votes: npt.NDArray[np.float64] | None,
    ) -> list[Hit]:
        """Order look-alikes in an asked colour: products in the colour (closeness at least
        :data:`search.index.colours.MATCH_GRADE`) first, each group by photo similarity rank (1
        down to 1/n) plus :data:`PHOTO_CATEGORY_WEIGHT` times the product's category vote and
        :data:`PHOTO_COLOUR_WEIGHT` times its colour closeness (candidates are usually all in
        the colour already, so closeness mostly breaks near-ties)."""
        if len(hits) < 2:
            return hits
        norm = 1.0 - np.arange(len(hits), dtype=np.float64) / len(hits)
        docs = np.fromiter((h.doc for h in hits), dtype=np.int64, count=len(hits))
        closeness = self.text.colours.match_all(query.colours)[docs].astype(np.float64)
        final = norm + PHOTO_COLOUR_WEIGHT * closeness
        if category_votes is not None:
            final = final + PHOTO_CATEGORY_WEIGHT * category_votes[docs]
        # A small catalogue may hold too few products in the colour to narrow the search to
        # them: they still come before look-alikes in other colours.
        order = np.lexsort((-final, closeness < MATCH_GRADE))
        return [Hit(hits[i].doc, float(final[i]), "colour") for i in order]
