"""Retrievers: lexical (BM25F), fuzzy (typo corrections), phonetic (sound-alikes) and semantic."""

from __future__ import annotations

import mmap
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from search.index.colours import MATCH_GRADE, ColourIndex
from search.index.lexical import GroupScores, LexicalIndex
from search.types import Hit
from search.understand import AnalyzedQuery

# Up to this many rows (re-ranking candidates, small filters) are read with one pread each;
# larger exact searches go through the memory map.
_PREAD_ROWS = 4096


def top_k(scores: npt.NDArray[np.float32], k: int, source: str) -> list[Hit]:
    """The ``k`` best positive scores as hits, best first (ties by document number)."""
    candidates = np.flatnonzero(scores > 0)
    if len(candidates) == 0 or k <= 0:
        return []
    if len(candidates) > k:
        part = np.argpartition(-scores[candidates], k - 1)[:k]
        candidates = candidates[part]
    order = candidates[np.lexsort((candidates, -scores[candidates]))]
    return [Hit(d, s, source) for d, s in zip(order.tolist(), scores[order].tolist(), strict=True)]


def coverage_scores(result: GroupScores, exponent: float) -> npt.NDArray[np.float32]:
    """BM25F scores multiplied by (matched groups / groups) ** exponent.

    Short product titles reward documents that cover every query word more than plain BM25's
    sum does: "white toilet seat" should rank a white toilet seat above a white toilet.
    """
    if result.n_groups == 0:
        return result.scores
    coverage = result.matched.astype(np.float32) / result.n_groups
    return (result.scores * coverage**exponent).astype(np.float32)


@dataclass(frozen=True, slots=True)
class TermRetriever:
    """BM25F over the query's term groups: each word's exact terms, completions, corrections,
    sound-alikes, compound parts and synonyms, weighted as query understanding set them.

    Attributes:
        name: Retriever name in runs and explanations.
        index: The lexical index.
        coverage_exponent: See :func:`coverage_scores`.
    """

    name: str
    index: LexicalIndex
    coverage_exponent: float = 1.0
    colours: ColourIndex | None = None
    colour_weight: float = 1.0

    def groups(self, query: AnalyzedQuery) -> list[list[tuple[int, float]]]:
        """The query's term groups as ``(term_id, weight)`` lists."""
        return [[(a.term_id, a.weight) for a in word.alternatives] for word in query.words]

    def scores(self, query: AnalyzedQuery, colour_weight: float | None = None) -> GroupScores:
        """Raw group scores of every document.

        When the query asks for colours and the snapshot knows product colours, the colour
        words form one group scored by each product's colour closeness (from text and photos)
        times ``colour_weight`` times a typical score of one of the other words; a product
        counts as matching that group when its colour is close (see
        :data:`search.index.colours.MATCH_GRADE`). So "navy shirt" finds dark blue shirts whose
        text never says navy, shirts of other colours still match "shirt", and a rare colour
        word cannot outweigh the product type the way its BM25 idf would.

        A colour asked only by the ``colour`` parameter is a filter, not a word: the products
        are already narrowed to it, so it adds no group (a navy sofa must not match "shirt"
        for being navy), and every group counts as the query's other words (the colour
        re-ranking then lifts close shades only among products matching all of them).

        ``colour_weight`` is the request's (its tuning's); None takes this retriever's.
        """
        if colour_weight is None:
            colour_weight = self.colour_weight
        if not query.text_colours or self.colours is None or colour_weight <= 0:
            plain = self.index.score_groups(self.groups(query))
            if not query.colours:
                return plain
            return replace(plain, other_matched=plain.matched, other_groups=plain.n_groups)
        rest = [[(a.term_id, a.weight) for a in w.alternatives] for w in query.other_words]
        colour_groups = [
            [(a.term_id, a.weight) for a in w.alternatives] for w in query.colour_words
        ]
        rest_scores = self.index.score_groups(rest)
        n_colour = max(len(colour_groups), 1)
        match = self.colours.match_all(query.text_colours)
        if colour_groups:
            # A product whose text has the colour words but whose colour index says otherwise
            # (an attribute naming another colour) still half-matches them.
            text_scores = self.index.score_groups(colour_groups)
            match = np.maximum(match, np.where(text_scores.matched >= n_colour, 0.5, 0.0))
        reference = _word_reference(rest_scores)
        colour_scores = (colour_weight * reference * n_colour) * match
        matched = rest_scores.matched + np.where(match >= MATCH_GRADE, n_colour, 0)
        return GroupScores(
            scores=(rest_scores.scores + colour_scores).astype(np.float32),
            matched=matched.astype(np.int16),
            n_groups=rest_scores.n_groups + n_colour,
            other_matched=rest_scores.matched,
            other_groups=rest_scores.n_groups,
        )

    def retrieve(
        self, query: AnalyzedQuery, k: int, allowed: npt.NDArray[np.bool_] | None = None
    ) -> list[Hit]:
        """Best ``k`` documents by coverage-weighted BM25F."""
        return self.retrieve_scored(query, k, allowed)[0]

    def retrieve_scored(
        self,
        query: AnalyzedQuery,
        k: int,
        allowed: npt.NDArray[np.bool_] | None = None,
        *,
        colour_weight: float | None = None,
    ) -> tuple[list[Hit], GroupScores | None]:
        """Like :meth:`retrieve`, also returning the raw scores of every document (the engine
        counts matches from them without scoring the query twice); ``colour_weight`` as in
        :meth:`scores`."""
        if query.is_empty:
            return [], None
        raw = self.scores(query, colour_weight)
        scores = coverage_scores(raw, self.coverage_exponent)
        if allowed is not None:
            scores = np.where(allowed, scores, 0.0).astype(np.float32)
        return top_k(scores, k, self.name), raw


def _word_reference(rest: GroupScores) -> float:
    """What one of the query's other words typically scores: the median per-word score of the
    products matching all of them (1 when the query has no other words)."""
    if not rest.n_groups:
        return 1.0
    full = rest.scores[(rest.matched >= rest.n_groups) & (rest.scores > 0)]
    if len(full) == 0:
        full = rest.scores[rest.scores > 0]
    return float(np.median(full)) / rest.n_groups if len(full) else 1.0


ANN_THRESHOLD = 20_000
"""From this many vectors a snapshot carries an HNSW graph; below it exact search is as fast."""

COMPRESSED_THRESHOLD = 200_000
"""From this many vectors ``auto`` picks a compressed index (``hnsw-sq8``) instead of HNSW over
float vectors: that graph holds the float vectors a second time (1M MiniLM vectors: 1.5 GB
plus the graph); HNSW-SQ8 holds one byte per dimension and the float vectors stay on disk,
memory-mapped, for re-ranking the candidates exactly."""

VectorIndexKind = Literal["auto", "flat", "hnsw", "hnsw-sq8", "ivf-sq8", "ivf-pq"]
"""How a snapshot indexes its vectors: ``auto`` chooses by size (:func:`choose_index_kind`);
``flat`` exact search only; ``hnsw`` a faiss HNSW graph over float vectors; ``hnsw-sq8`` the
same graph over 8-bit scalar-quantised codes; ``ivf-sq8`` an inverted file of such codes;
``ivf-pq`` an inverted file of product-quantised codes (one byte per 6-40 dimensions, for
wide photo vectors). On the 54,667 Home Depot MiniLM title vectors HNSW-SQ8 (after exact
re-ranking) reached recall@10 0.990 at ``efSearch`` 128 in 1.8 ms, where IVF-SQ8 gave 0.946
probing a fourteenth of its lists; on 1M vectors IVF-SQ8 reached 0.93 with 64 of 2,000 lists
probed (``benchmarks/scale.py``)."""

INDEX_KINDS: tuple[str, ...] = ("auto", "flat", "hnsw", "hnsw-sq8", "ivf-sq8", "ivf-pq")


def choose_index_kind(
    n: int,
    kind: str = "auto",
    ann_threshold: int = ANN_THRESHOLD,
    compressed_threshold: int = COMPRESSED_THRESHOLD,
) -> str:
    """The index kind to build for ``n`` vectors.

    Args:
        n: Number of vectors.
        kind: Requested kind (one of :data:`INDEX_KINDS`); anything but ``auto`` is kept,
            except that fewer than ``ann_threshold`` vectors are always searched exactly.
        ann_threshold: From this many vectors an ANN index is built.
        compressed_threshold: From this many vectors ``auto`` builds ``hnsw-sq8``, else ``hnsw``.

    Returns:
        ``flat``, ``hnsw``, ``hnsw-sq8``, ``ivf-sq8`` or ``ivf-pq``.

    Raises:
        ValueError: unknown kind.
    """
    if kind not in INDEX_KINDS:
        raise ValueError(f"unknown vector index kind {kind!r}; valid: {', '.join(INDEX_KINDS)}")
    if n < ann_threshold or kind == "flat":
        return "flat"
    if kind == "auto":
        return "hnsw-sq8" if n >= compressed_threshold else "hnsw"
    return kind


def build_ann(vectors: npt.NDArray[np.float32], m: int = 32, ef_construction: int = 80) -> Any:
    """An HNSW graph (faiss) over unit vectors, for inner-product search.

    On the 54,667 Home Depot title vectors (384-d): 5 s to build on 2 cores, 0.3 ms per query at
    ``efSearch`` 128 with recall@10 0.999 and recall@100 0.973 against exact search, where exact
    search takes 8 ms.
    """
    import faiss

    index = faiss.IndexHNSWFlat(int(vectors.shape[1]), m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = ef_construction
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


def build_hnsw_sq8(
    vectors: npt.NDArray[np.float32],
    m: int = 32,
    ef_construction: int = 80,
    *,
    train_size: int = 100_000,
    seed: int = 0,
    add_batch: int = 65_536,
) -> Any:
    """An HNSW graph (faiss ``IndexHNSWSQ``) over 8-bit scalar-quantised unit vectors, for
    inner-product search: ``dim`` bytes plus about ``8 * m`` bytes of links per vector.

    Args:
        vectors: Unit rows (a memory-mapped array is read in batches).
        m: Links per node.
        ef_construction: Build-time search breadth.
        train_size: Vectors sampled to fit the quantiser's per-dimension ranges.
        seed: Sampling seed.
        add_batch: Vectors added per batch.

    Returns:
        The filled faiss index.

    Raises:
        ValueError: no vectors.
    """
    import faiss

    n, dim = int(vectors.shape[0]), int(vectors.shape[1])
    if n == 0:
        raise ValueError("cannot build an HNSW-SQ8 index over no vectors")
    # faiss's type stubs name the wrong constructor overload; the call is the documented one.
    qtype: Any = faiss.ScalarQuantizer.QT_8bit
    index = faiss.IndexHNSWSQ(dim, qtype, m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = ef_construction
    sample = np.sort(np.random.default_rng(seed).choice(n, size=min(n, train_size), replace=False))
    index.train(np.ascontiguousarray(vectors[sample], dtype=np.float32))
    for start in range(0, n, add_batch):
        index.add(np.ascontiguousarray(vectors[start : start + add_batch], dtype=np.float32))
    return index


def _pq_subquantizers(dim: int, most: int = 64) -> int:
    """The largest divisor of ``dim`` up to ``most`` (faiss PQ needs ``dim % m == 0``)."""
    return max(m for m in range(1, min(dim, most) + 1) if dim % m == 0)


def build_ivf(
    vectors: npt.NDArray[np.float32],
    kind: str = "ivf-sq8",
    *,
    nlist: int | None = None,
    train_size: int = 100_000,
    seed: int = 0,
    add_batch: int = 65_536,
) -> Any:
    """A compressed inverted-file index (faiss) over unit vectors, for inner-product search.

    The coarse quantiser has ``nlist`` lists (default ``2 * sqrt(n)``, 64 to 4096), trained by
    k-means on a sample; codes are 8-bit scalar-quantised (``ivf-sq8``: ``dim`` bytes a vector)
    or product-quantised (``ivf-pq``: one byte per sub-vector, the largest divisor of ``dim`` up
    to 64). :class:`VectorIndex` re-ranks what it finds with the exact float vectors.

    Args:
        vectors: Unit rows (a memory-mapped array is read in batches).
        kind: ``ivf-sq8`` or ``ivf-pq``.
        nlist: Number of inverted lists, or None for the default.
        train_size: Vectors sampled for training.
        seed: Sampling seed (the same vectors give the same index).
        add_batch: Vectors added per batch (bounds the float copies held at once).

    Returns:
        The trained, filled faiss index.

    Raises:
        ValueError: unknown kind or no vectors.
    """
    import faiss

    if kind not in ("ivf-sq8", "ivf-pq"):
        raise ValueError(f"unknown compressed index kind {kind!r}; valid: ivf-sq8, ivf-pq")
    n, dim = int(vectors.shape[0]), int(vectors.shape[1])
    if n == 0:
        raise ValueError("cannot build an IVF index over no vectors")
    if nlist is None:
        nlist = int(min(4096, max(64, 2 * np.sqrt(n))))
    nlist = max(1, min(nlist, n))
    quantizer = faiss.IndexFlatIP(dim)
    index: Any
    if kind == "ivf-sq8":
        index = faiss.IndexIVFScalarQuantizer(
            quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
        )
    else:
        m = _pq_subquantizers(dim)
        index = faiss.IndexIVFPQ(quantizer, dim, nlist, m, 8, faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(n, size=min(n, max(train_size, nlist)), replace=False))
    index.train(np.ascontiguousarray(vectors[sample], dtype=np.float32))
    for start in range(0, n, add_batch):
        index.add(np.ascontiguousarray(vectors[start : start + add_batch], dtype=np.float32))
    return index


def build_vector_index(vectors: npt.NDArray[np.float32], kind: str) -> Any:
    """The faiss index of a kind :func:`choose_index_kind` returned, or None for ``flat``."""
    if kind == "flat":
        return None
    if kind == "hnsw":
        return build_ann(vectors)
    if kind == "hnsw-sq8":
        return build_hnsw_sq8(vectors)
    return build_ivf(vectors, kind)


def index_kind_of(index: Any) -> str:
    """The kind of a faiss index (``flat`` for None): ``hnsw``, ``hnsw-sq8``, ``ivf-sq8``,
    ``ivf-pq``.

    Raises:
        ValueError: an index type this service does not search.
    """
    if index is None:
        return "flat"
    import faiss

    if isinstance(index, faiss.IndexHNSWSQ):
        return "hnsw-sq8"
    if hasattr(index, "hnsw"):
        return "hnsw"
    if isinstance(index, faiss.IndexIVFScalarQuantizer):
        return "ivf-sq8"
    if isinstance(index, faiss.IndexIVFPQ):
        return "ivf-pq"
    raise ValueError(f"unsupported vector index type {type(index).__name__}")


def _flat_storage(ann: Any) -> npt.NDArray[np.float32] | None:
    """The float32 rows an HNSW index (kind ``hnsw``) stores, as a read-only numpy view (None
    when its storage is not flat)."""
    import faiss

    storage = faiss.downcast_index(ann.storage)
    if not isinstance(storage, faiss.IndexFlat) or int(storage.ntotal) == 0:
        return None
    rows = faiss.rev_swig_ptr(storage.get_xb(), int(storage.ntotal) * int(storage.d))
    view: npt.NDArray[np.float32] = rows.reshape(int(storage.ntotal), int(storage.d))
    view.flags.writeable = False
    return view


class VectorIndex:
    """Inner-product search over unit vectors.

    Exact (faiss flat) when there is no ANN index. With an HNSW graph (see :func:`build_ann`)
    unfiltered queries use the graph, and filtered ones search the allowed products exactly,
    which keeps recall whatever the filter's selectivity. With a compressed index
    (:func:`build_hnsw_sq8`, :func:`build_ivf`) queries fetch ``rerank`` candidates and re-score
    them with the exact vectors, which may be a memory-mapped file: only the candidates' rows
    are read. Under a filter the compressed index applies it inside faiss and searches wider
    in proportion to the products it excludes (HNSW breadth up to 8 times, IVF lists up to all
    of them); a filter allowing at most ``exact_limit`` products is searched exactly.

    Args:
        vectors: Unit rows, one per document (an ``np.memmap`` is not copied when an ANN index
            is given).
        ann: A faiss HNSW, HNSW-SQ8 or IVF index over the same vectors, or None for exact
            search.
        ef_search: HNSW search breadth (higher: better recall, slower).
        nprobe: IVF lists probed per query (higher: better recall, slower).
        rerank: IVF candidates re-scored exactly per query (at least ``k``).
        exact_limit: With an IVF index, filters allowing at most this many products are
            searched exactly.
    """

    def __init__(
        self,
        vectors: npt.NDArray[np.float32],
        ann: Any = None,
        ef_search: int = 128,
        *,
        nprobe: int = 32,
        rerank: int = 100,
        exact_limit: int = 20_000,
    ) -> None:
        self.dim = int(vectors.shape[1])
        self.vectors = (
            vectors
            if vectors.dtype == np.float32 and vectors.flags.c_contiguous
            else np.ascontiguousarray(vectors, dtype=np.float32)
        )
        self.ann = ann
        self.kind = index_kind_of(ann)
        self.nprobe = nprobe
        self.rerank = rerank
        self.exact_limit = exact_limit
        if ann is not None:
            if int(ann.ntotal) != len(vectors) or int(ann.d) != self.dim:
                raise ValueError(
                    f"ANN index holds {ann.ntotal} vectors of {ann.d} dimensions, "
                    f"expected {len(vectors)} of {self.dim}"
                )
            if self.kind in ("hnsw", "hnsw-sq8"):
                ann.hnsw.efSearch = ef_search
            else:
                ann.nprobe = nprobe
        self.ef_search = ef_search
        # An HNSW graph over flat storage holds every vector in memory already: rows are read
        # from there (a numpy view, no copy), 25 times faster than a pread per row.
        self._stored: npt.NDArray[np.float32] | None = (
            _flat_storage(ann) if self.kind == "hnsw" else None
        )
        # Rows of a memory-mapped file are read with pread for re-ranking: pages touched through
        # the map stay in RSS, so 1,000 queries over 1M vectors grew it by 1.5 GB.
        self._fd: int | None = None
        self._row_base = 0
        if self._stored is None and isinstance(self.vectors, np.memmap) and self.vectors.filename:
            self._fd = os.open(self.vectors.filename, os.O_RDONLY)
            self._row_base = int(self.vectors.offset)
        self._flat: Any = None
        if ann is None:
            import faiss

            self._flat = faiss.IndexFlatIP(self.dim)
            if len(vectors):
                self._flat.add(self.vectors)

    def __len__(self) -> int:
        return len(self.vectors)

    def __del__(self) -> None:
        fd = getattr(self, "_fd", None)
        if fd is not None:
            os.close(fd)

    def __getitem__(self, docs: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        """The vectors of ``docs`` (a feature extractor's view: reads, not the memory map)."""
        return self._rows(np.asarray(docs, dtype=np.int64))

    def _rows(self, docs: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        """The vectors of ``docs``, read with explicit reads when few rows of a mapped file."""
        if self._stored is not None:
            return self._stored[docs]
        if self._fd is None:
            return self.vectors[docs]
        if len(docs) > _PREAD_ROWS:
            # Too many rows for one read each: gather through the map, then drop the mapped
            # pages again (they stay in the page cache) so RSS does not keep them.
            rows = np.asarray(self.vectors[docs])
            mapped = getattr(self.vectors, "_mmap", None)
            if mapped is not None and hasattr(mapped, "madvise"):
                mapped.madvise(mmap.MADV_DONTNEED)
            return rows
        row_bytes = self.dim * 4
        out = np.empty((len(docs), self.dim), dtype=np.float32)
        for i, doc in enumerate(docs.tolist()):
            data = os.pread(self._fd, row_bytes, self._row_base + doc * row_bytes)
            out[i] = np.frombuffer(data, dtype=np.float32)
        return out

    def search(
        self, vector: npt.NDArray[np.float32], k: int, allowed: npt.NDArray[np.bool_] | None = None
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """Top ``k`` (similarities, documents) for one query vector; ``allowed`` filters documents."""
        query = np.ascontiguousarray(vector.reshape(1, -1), dtype=np.float32)
        k = min(k, len(self))
        if k <= 0:
            return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)
        if allowed is not None:
            n_allowed = int(np.count_nonzero(allowed))
            if n_allowed == 0:
                return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)
            if self.kind in ("flat", "hnsw") or n_allowed <= self.exact_limit:
                return self._exact(query[0], np.flatnonzero(allowed), k)
            return self._compressed(query, k, allowed, n_allowed)
        if self.kind in ("ivf-sq8", "ivf-pq", "hnsw-sq8"):
            return self._compressed(query, k, None, len(self))
        index = self.ann if self.ann is not None else self._flat
        sims, found = index.search(query, k)
        keep = found[0] >= 0
        return sims[0][keep], found[0][keep]

    def _exact(
        self, query: npt.NDArray[np.float32], docs: npt.NDArray[np.int64], k: int
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        sims = self._rows(docs) @ query
        top = np.argsort(-sims, kind="stable")[:k]
        return sims[top].astype(np.float32), docs[top].astype(np.int64)

    def _compressed(
        self,
        query: npt.NDArray[np.float32],
        k: int,
        allowed: npt.NDArray[np.bool_] | None,
        n_allowed: int,
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        import faiss

        fetch = min(max(k, self.rerank), n_allowed)
        # A filter keeping a fraction f of the products leaves about f of each list (of each
        # neighbourhood): search 1/f times as wide to see as many allowed candidates.
        widen = len(self) / max(n_allowed, 1)
        selector = None
        bitmap = None
        if allowed is not None:
            bitmap = np.packbits(allowed, bitorder="little")
            selector = faiss.IDSelectorBitmap(len(allowed), faiss.swig_ptr(bitmap))
        params: Any
        if self.kind == "hnsw-sq8":
            params = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]
            params.efSearch = int(max(self.ef_search, fetch) * min(widen, 8.0))
        else:
            params = faiss.SearchParametersIVF()
            params.nprobe = min(int(self.ann.nlist), int(np.ceil(self.nprobe * widen)))
        if selector is not None:
            params.sel = selector
        _, found = self.ann.search(query, fetch, params=params)
        docs = found[0][found[0] >= 0]
        if len(docs) == 0:
            return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)
        # Sorted row order reads a memory-mapped file front to back.
        return self._exact(query[0], np.sort(docs), k)


@dataclass(frozen=True, slots=True)
class SemanticRetriever:
    """Nearest products to the embedded (corrected) query text.

    Attributes:
        name: Retriever name.
        embed_query: Function text -> unit vector (a TextEmbedder's ``embed_queries``).
        index: The product text vectors.
        min_similarity: Hits below this cosine similarity are dropped.
        margin: Hits more than this below the best hit's similarity are dropped: sentence
            embeddings place unrelated products only a little lower than related ones, so a
            cut relative to the best match separates them better than any fixed threshold.
    """

    name: str
    embed_query: Callable[[Sequence[str]], npt.NDArray[np.float32]]
    index: VectorIndex
    min_similarity: float = 0.0
    margin: float = 1.0

    def retrieve(
        self, query: AnalyzedQuery, k: int, allowed: npt.NDArray[np.bool_] | None = None
    ) -> list[Hit]:
        """Best ``k`` products by cosine similarity."""
        if query.is_empty or not query.semantic_text.strip():
            return []
        vector = (
            query.vector if query.vector is not None else self.embed_query([query.semantic_text])[0]
        )
        sims, docs = self.index.search(vector, k, allowed)
        if len(sims) == 0:
            return []
        # Compared in float32, the similarities' precision.
        floor = float(np.float32(max(self.min_similarity, float(sims[0]) - self.margin)))
        return [
            Hit(d, s, self.name)
            for s, d in zip(np.asarray(sims).tolist(), np.asarray(docs).tolist(), strict=True)
            if s >= floor
        ]
