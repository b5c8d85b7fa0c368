"""Ranking features of (query, candidate product) pairs, for the learned re-ranker.

Every feature is generic (no shop-specific vocabulary): how much of the query a product covers and
where (title or elsewhere, exactly or through a correction), whether the head word of the query — in
product queries usually the last word, the product type — is in the title, how the query's word order
appears in the title, numbers and units, and the retrievers' own scores and ranks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

from search.index.lexical import LexicalIndex
from search.types import Hit
from search.understand import AnalyzedQuery

FEATURE_NAMES: tuple[str, ...] = (
    "lexical_score",
    "lexical_score_rel",
    "lexical_rank",
    "coverage",
    "exact_coverage",
    "title_coverage",
    "idf_coverage",
    "head_in_title",
    "head_position",
    "first_in_title",
    "n_words",
    "title_length",
    "number_coverage",
    "ordered_pairs",
    "title_match_share",
    "semantic_similarity",
    "semantic_similarity_rel",
    "semantic_rank",
    "fused_score",
)


class RowSource(Protocol):
    """Vectors of documents, indexed by an array of document numbers."""

    def __getitem__(self, docs: npt.NDArray[np.int64], /) -> npt.NDArray[np.float32]: ...


def _ranks_of(lookup: npt.NDArray[np.int64], n: int, run: Sequence[Hit]) -> npt.NDArray[np.float64]:
    """Each candidate's 1-based rank in a retriever's run, 1000 where the run lacks it
    (``lookup`` maps a document to its candidate row, -1 for others)."""
    ranks = np.full(n, 1000.0)
    if run:
        rows = lookup[np.fromiter((h.doc for h in run), dtype=np.int64, count=len(run))]
        found = rows >= 0
        # Runs list a document once; were one listed twice, the later rank would be kept,
        # as the dictionary this replaced kept it.
        ranks[rows[found]] = np.arange(1, len(run) + 1, dtype=np.float64)[found]
    return ranks


class FeatureExtractor:
    """Computes :data:`FEATURE_NAMES` for a query's candidates.

    Args:
        lexical: The lexical index (term contributions, idf, title term sequences).
        vectors: Product text vectors (unit rows) or anything indexed by an array of document
            numbers like them (a :class:`search.retrievers.VectorIndex` reads the rows from its
            file rather than through a memory map), or None when the snapshot has none.
    """

    def __init__(self, lexical: LexicalIndex, vectors: RowSource | None = None) -> None:
        self.lexical = lexical
        self.vectors = vectors
        title = lexical.data.counts.get("title")
        self._title_csc = title.tocsc() if title is not None else None
        self._title_len = (
            np.asarray(title.sum(axis=1)).ravel().astype(np.float32)
            if title is not None
            else np.zeros(lexical.n_docs, dtype=np.float32)
        )

    def extract(
        self,
        query: AnalyzedQuery,
        candidates: Sequence[Hit],
        runs: Mapping[str, Sequence[Hit]],
        query_vector: npt.NDArray[np.float32] | None = None,
    ) -> npt.NDArray[np.float32]:
        """Feature matrix, one row per candidate in the given order.

        Args:
            query: The analysed query.
            candidates: Fused candidates (their score is the fused score).
            runs: Each retriever's hits (for ranks and scores).
            query_vector: The query's embedding, when semantic features are available.
        """
        n = len(candidates)
        out = np.zeros((n, len(FEATURE_NAMES)), dtype=np.float32)
        if n == 0:
            return out
        docs = np.fromiter((h.doc for h in candidates), dtype=np.int64, count=n)
        lookup = np.full(self.lexical.n_docs, -1, dtype=np.int64)
        lookup[docs] = np.arange(n)
        groups = [w for w in query.words if w.alternatives]
        n_groups = max(len(query.words), 1)
        best = np.zeros((len(query.words), n), dtype=np.float32)
        exact = np.zeros((len(query.words), n), dtype=bool)
        in_title = np.zeros((len(query.words), n), dtype=bool)
        title_terms: list[set[int]] = [set() for _ in query.words]
        group_idf = np.zeros(len(query.words), dtype=np.float32)
        is_number = np.zeros(len(query.words), dtype=bool)
        for g, word in enumerate(query.words):
            is_number[g] = word.is_number
            for alt in word.alternatives:
                group_idf[g] = max(group_idf[g], float(self.lexical.idf[alt.term_id]))
                title_terms[g].add(alt.term_id)
                pdocs, contrib = self.lexical.postings(alt.term_id)
                p = lookup[pdocs]
                hit = p >= 0
                if not hit.any():
                    continue
                rows = p[hit]
                values = alt.weight * contrib[hit]
                best[g, rows] = np.maximum(best[g, rows], values)
                if alt.weight >= 1.0:
                    exact[g, rows] = True
                if self._title_csc is not None:
                    start, end = (
                        self._title_csc.indptr[alt.term_id],
                        self._title_csc.indptr[alt.term_id + 1],
                    )
                    tp = lookup[self._title_csc.indices[start:end]]
                    in_title[g, tp[tp >= 0]] = True
        matched = best > 0
        lexical_raw = best.sum(axis=0)
        coverage = matched.sum(axis=0) / n_groups
        lexical_score = lexical_raw * coverage
        top = float(lexical_score.max()) or 1.0
        out[:, 0] = lexical_score
        out[:, 1] = lexical_score / top
        out[:, 2] = np.log1p(_ranks_of(lookup, n, runs.get("lexical", ())))
        out[:, 3] = coverage
        out[:, 4] = (matched & exact).sum(axis=0) / n_groups
        out[:, 5] = (matched & in_title).sum(axis=0) / n_groups
        idf_total = float(group_idf.sum()) or 1.0
        out[:, 6] = (matched * group_idf[:, None]).sum(axis=0) / idf_total
        if groups:
            head = (
                max(i for i, w in enumerate(query.words) if w.alternatives and not w.is_number)
                if any(w.alternatives and not w.is_number for w in query.words)
                else len(query.words) - 1
            )
            matches = self._title_matches(docs, title_terms)
            out[:, 7] = in_title[head]
            out[:, 9] = in_title[0]
            out[:, 8] = self._head_position(n, matches, head, self._title_len[docs])
            out[:, 13] = self._ordered_pairs(n, matches, len(query.words))
        out[:, 10] = len(query.words)
        out[:, 11] = self._title_len[docs]
        if is_number.any():
            out[:, 12] = matched[is_number].mean(axis=0)
        else:
            out[:, 12] = -1.0
        title_len = np.maximum(self._title_len[docs], 1.0)
        out[:, 14] = (matched & in_title).sum(axis=0) / title_len
        if self.vectors is not None and query_vector is not None:
            sims = self.vectors[docs] @ query_vector
            out[:, 15] = sims
            out[:, 16] = sims - float(sims.max())
        else:
            out[:, 15] = 0.0
            out[:, 16] = 0.0
        out[:, 17] = np.log1p(_ranks_of(lookup, n, runs.get("semantic", ())))
        out[:, 18] = np.fromiter((h.score for h in candidates), dtype=np.float64, count=n)
        return out

    def _title_matches(
        self, docs: npt.NDArray[np.int64], groups: list[set[int]]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Candidate titles as one sequence: (group bit mask per position, candidate index per
        position, position within its title)."""
        data = self.lexical.data
        starts, ends = data.title_ptr[docs], data.title_ptr[docs + 1]
        lengths = (ends - starts).astype(np.int64)
        if len(data.title_ids) == 0 or lengths.sum() == 0:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, empty
        owner = np.repeat(np.arange(len(docs), dtype=np.int64), lengths)
        offsets = np.cumsum(lengths) - lengths
        position = np.arange(int(lengths.sum()), dtype=np.int64) - np.repeat(offsets, lengths)
        ids = data.title_ids[np.repeat(starts.astype(np.int64), lengths) + position]
        term_mask: dict[int, int] = {}
        for g, terms in enumerate(groups[:62]):
            for t in terms:
                term_mask[t] = term_mask.get(t, 0) | (1 << g)
        masks = np.zeros(len(ids), dtype=np.int64)
        if term_mask:
            keys = np.fromiter(sorted(term_mask), dtype=np.int64, count=len(term_mask))
            bits = np.fromiter((term_mask[int(t)] for t in keys), dtype=np.int64, count=len(keys))
            hit = np.flatnonzero(np.isin(ids, keys))
            masks[hit] = bits[np.searchsorted(keys, ids[hit])]
        return masks, owner, position

    def _head_position(
        self,
        n: int,
        matches: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]],
        head: int,
        title_len: npt.NDArray[np.float32],
    ) -> npt.NDArray[np.float32]:
        """Relative position (0 = first word, 1 = last) of the query's head word in each title;
        -1 where it is absent."""
        masks, owner, position = matches
        out = np.full(n, -1.0, dtype=np.float32)
        if head >= 62 or len(masks) == 0:
            return out
        at = np.flatnonzero((masks >> head) & 1)
        if len(at):
            rel = position[at] / np.maximum(title_len[owner[at]] - 1, 1)
            np.maximum.at(out, owner[at], rel.astype(np.float32))
        return out

    def _ordered_pairs(
        self,
        n: int,
        matches: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]],
        n_groups: int,
    ) -> npt.NDArray[np.float32]:
        """Share of adjacent query-word pairs found next to each other, in order, in the title."""
        masks, owner, _ = matches
        pairs = min(n_groups - 1, 61)
        out = np.zeros(n, dtype=np.float32)
        if pairs <= 0 or len(masks) < 2:
            return out
        first, second = masks[:-1], masks[1:]
        same = owner[:-1] == owner[1:]
        found = np.zeros((n, pairs), dtype=bool)
        for g in range(pairs):
            ok = same & (((first >> g) & 1) == 1) & (((second >> (g + 1)) & 1) == 1)
            found[owner[:-1][ok], g] = True
        out[:] = found.sum(axis=1) / pairs
        return out
