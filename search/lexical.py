"""BM25F over product fields, stored as sparse matrices and scored by term groups.

A query is a list of *term groups*: one group per query word, holding the index terms that word
may mean (its stem in each language, spelling corrections, sound-alikes, prefix completions),
each with a weight. A document's score is the sum over groups of the best weighted BM25F
contribution among the group's terms, so a typo correction can never count twice and a word
that matches exactly always beats its corrections.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
from scipy import sparse

FIELD_NAMES: tuple[str, ...] = ("title", "brand", "category", "attributes", "description")


@dataclass(frozen=True, slots=True)
class FieldParams:
    """BM25F parameters of one field: its weight and length normalisation ``b``."""

    weight: float
    b: float


def default_field_params() -> dict[str, FieldParams]:
    """Field weights tuned on the Home Depot dev queries (titles) and product-search practice."""
    return {
        "title": FieldParams(1.0, 0.4),
        "brand": FieldParams(0.8, 0.0),
        "category": FieldParams(0.6, 0.3),
        "attributes": FieldParams(0.4, 0.3),
        "description": FieldParams(0.15, 0.6),
    }


@dataclass(frozen=True, slots=True)
class Bm25Params:
    """BM25F parameters: saturation ``k1`` and per-field weights and ``b``."""

    k1: float = 0.9
    fields: Mapping[str, FieldParams] = field(default_factory=default_field_params)


@dataclass(frozen=True, slots=True)
class LexicalData:
    """The stored part of the lexical index: per-field term counts (documents x terms)."""

    terms: tuple[str, ...]
    counts: Mapping[str, sparse.csr_matrix]
    title_ids: npt.NDArray[np.int32] = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    title_ptr: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(1, dtype=np.int64))

    def title_sequence(self, doc: int) -> npt.NDArray[np.int32]:
        """The term ids of a document's title in reading order (empty when not stored)."""
        if doc + 1 >= len(self.title_ptr):
            return np.zeros(0, dtype=np.int32)
        return self.title_ids[self.title_ptr[doc] : self.title_ptr[doc + 1]]

    @property
    def n_docs(self) -> int:
        """Number of documents."""
        return int(next(iter(self.counts.values())).shape[0]) if self.counts else 0

    def save(self, path: Path) -> None:
        """Write the counts to one ``.npz`` file (terms are stored by the vocabulary)."""
        arrays: dict[str, npt.NDArray[np.generic]] = {}
        for name, matrix in self.counts.items():
            csr = matrix.tocsr()
            arrays[f"{name}.data"] = csr.data.astype(np.float32)
            arrays[f"{name}.indices"] = csr.indices.astype(np.int32)
            arrays[f"{name}.indptr"] = csr.indptr.astype(np.int64)
            arrays[f"{name}.shape"] = np.asarray(csr.shape, dtype=np.int64)
        arrays["_title_sequence.ids"] = self.title_ids.astype(np.int32)
        arrays["_title_sequence.ptr"] = self.title_ptr.astype(np.int64)
        with path.open("wb") as fh:
            np.savez(fh, **arrays)  # type: ignore[arg-type]

    @classmethod
    def load(cls, path: Path, terms: Sequence[str]) -> LexicalData:
        """Read counts written by :meth:`save`.

        Raises:
            ValueError: the file's shapes do not match ``terms``.
        """
        with np.load(path, allow_pickle=False) as npz:
            names = sorted({key.split(".")[0] for key in npz.files if not key.startswith("_")})
            counts = {}
            for name in names:
                shape = tuple(int(x) for x in npz[f"{name}.shape"])
                if shape[1] != len(terms):
                    raise ValueError(
                        f"field {name!r} has {shape[1]} term columns but the vocabulary has {len(terms)}"
                    )
                counts[name] = sparse.csr_matrix(
                    (npz[f"{name}.data"], npz[f"{name}.indices"], npz[f"{name}.indptr"]),
                    shape=shape,
                )
            if "_title_sequence.ids" in npz.files:
                ids, ptr = npz["_title_sequence.ids"], npz["_title_sequence.ptr"]
            else:
                ids, ptr = np.zeros(0, dtype=np.int32), np.zeros(1, dtype=np.int64)
        return cls(terms=tuple(terms), counts=counts, title_ids=ids, title_ptr=ptr)


class LexicalDataBuilder:
    """Accumulates analysed documents into :class:`LexicalData`."""

    def __init__(self, fields: Sequence[str] = FIELD_NAMES) -> None:
        self._fields = tuple(fields)
        self._term_ids: dict[str, int] = {}
        self._rows: dict[str, list[int]] = {f: [] for f in self._fields}
        self._cols: dict[str, list[int]] = {f: [] for f in self._fields}
        self._n_docs = 0
        self._title_ptr: list[int] = [0]

    def add(self, field_terms: Mapping[str, Sequence[str]]) -> int:
        """Add one document (field -> its index terms); returns its document number.

        Raises:
            ValueError: an unknown field name.
        """
        doc = self._n_docs
        for name, terms in field_terms.items():
            if name not in self._rows:
                raise ValueError(f"unknown field {name!r}; valid fields: {', '.join(self._fields)}")
            rows, cols = self._rows[name], self._cols[name]
            for term in terms:
                tid = self._term_ids.setdefault(term, len(self._term_ids))
                rows.append(doc)
                cols.append(tid)
        self._title_ptr.append(len(self._cols.get("title", ())))
        self._n_docs += 1
        return doc

    def term_id(self, term: str) -> int:
        """Id of a term, adding it to the dictionary when new (vocabulary entries with no postings)."""
        return self._term_ids.setdefault(term, len(self._term_ids))

    def build(self) -> LexicalData:
        """Freeze into sparse count matrices (duplicates summed into term frequencies)."""
        shape = (self._n_docs, len(self._term_ids))
        counts = {}
        for name in self._fields:
            rows = np.asarray(self._rows[name], dtype=np.int32)
            cols = np.asarray(self._cols[name], dtype=np.int32)
            data = np.ones(len(rows), dtype=np.float32)
            matrix = sparse.csr_matrix((data, (rows, cols)), shape=shape)
            matrix.sum_duplicates()
            counts[name] = matrix
        terms = [""] * len(self._term_ids)
        for term, tid in self._term_ids.items():
            terms[tid] = term
        title_ids = np.asarray(self._cols.get("title", []), dtype=np.int32)
        return LexicalData(
            terms=tuple(terms),
            counts=counts,
            title_ids=title_ids,
            title_ptr=np.asarray(self._title_ptr, dtype=np.int64),
        )


@dataclass(frozen=True, slots=True)
class GroupScores:
    """Scores of a term-group query over all documents.

    Attributes:
        scores: Sum over groups of each group's best weighted contribution.
        matched: Number of groups each document matched.
        n_groups: Number of groups in the query.
        other_matched: For a query asking for a colour, the groups of its other words each
            document matched (None otherwise).
        other_groups: Number of those other groups.
    """

    scores: npt.NDArray[np.float32]
    matched: npt.NDArray[np.int16]
    n_groups: int
    other_matched: npt.NDArray[np.int16] | None = None
    other_groups: int = 0


class LexicalIndex:
    """Query-time BM25F: contributions precomputed per (term, document) in a CSC matrix.

    Args:
        data: The stored counts.
        params: BM25F parameters (fields missing from ``params`` are ignored).
    """

    def __init__(self, data: LexicalData, params: Bm25Params | None = None) -> None:
        self.data = data
        self.params = params or Bm25Params()
        self.n_docs = data.n_docs
        self.term_ids = {term: i for i, term in enumerate(data.terms)}
        self._compile()

    def _compile(self) -> None:
        n_docs, n_terms = self.n_docs, len(self.data.terms)
        pseudo_tf = sparse.csr_matrix((n_docs, n_terms), dtype=np.float32)
        present = sparse.csr_matrix((n_docs, n_terms), dtype=np.float32)
        for name, counts in self.data.counts.items():
            fp = self.params.fields.get(name)
            if fp is None or fp.weight <= 0 or counts.nnz == 0:
                continue
            lengths = np.asarray(counts.sum(axis=1)).ravel()
            avg = float(lengths.mean()) or 1.0
            norm = (1.0 - fp.b) + fp.b * lengths / avg
            scale = sparse.diags((fp.weight / np.maximum(norm, 1e-6)).astype(np.float32))
            pseudo_tf = pseudo_tf + scale @ counts
            present = present + (counts > 0).astype(np.float32)
        df = np.asarray((present > 0).sum(axis=0)).ravel().astype(np.float64)
        self.df = df
        self.idf = np.log1p((n_docs - df + 0.5) / (df + 0.5)).astype(np.float32)
        csc = pseudo_tf.tocsc()
        csc.sort_indices()
        tf = csc.data
        k1 = self.params.k1
        cols = np.repeat(np.arange(n_terms), np.diff(csc.indptr))
        csc.data = (self.idf[cols] * tf * (k1 + 1.0) / (tf + k1)).astype(np.float32)
        self._contrib = csc

    def postings(self, term_id: int) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]:
        """Documents containing a term and the term's BM25F contribution in each."""
        start, end = self._contrib.indptr[term_id], self._contrib.indptr[term_id + 1]
        return self._contrib.indices[start:end], self._contrib.data[start:end]

    def doc_freq(self, term: str) -> int:
        """Number of documents containing a term in any indexed field (0 when unknown)."""
        tid = self.term_ids.get(term)
        return 0 if tid is None else int(self.df[tid])

    def score_groups(self, groups: Sequence[Sequence[tuple[int, float]]]) -> GroupScores:
        """Score every document against term groups.

        Args:
            groups: One sequence per query word of ``(term_id, weight)`` alternatives.

        Returns:
            Dense scores and per-document counts of matched groups.
        """
        scores = np.zeros(self.n_docs, dtype=np.float32)
        matched = np.zeros(self.n_docs, dtype=np.int16)
        best = np.zeros(self.n_docs, dtype=np.float32)
        n_groups = 0
        for group in groups:
            if not group:
                n_groups += 1
                continue
            n_groups += 1
            if len(group) == 1:
                tid, weight = group[0]
                docs, contrib = self.postings(tid)
                scores[docs] += weight * contrib
                matched[docs] += 1
                continue
            touched: list[npt.NDArray[np.int32]] = []
            for tid, weight in group:
                docs, contrib = self.postings(tid)
                if len(docs) == 0:
                    continue
                best[docs] = np.maximum(best[docs], weight * contrib)
                touched.append(docs)
            if not touched:
                continue
            docs = np.unique(np.concatenate(touched)) if len(touched) > 1 else touched[0]
            scores[docs] += best[docs]
            matched[docs] += 1
            best[docs] = 0.0
        return GroupScores(scores=scores, matched=matched, n_groups=n_groups)
