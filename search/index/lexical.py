"""BM25F over product fields, stored as sparse matrices and scored by term groups.

A query is a list of *term groups*: one group per query word, holding the index terms that word
may mean (its stem in each language, spelling corrections, sound-alikes, prefix completions),
each with a weight. A document's score is the sum over groups of the best weighted BM25F
contribution among the group's terms, so a typo correction can never count twice and a word
that matches exactly always beats its corrections.
"""

from __future__ import annotations

import mmap
import os
import struct
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

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
class _Member:
    """Where a 1-D array of an uncompressed ``.npz`` lies in the file."""

    offset: int
    dtype: np.dtype[np.generic]
    count: int


def _stored_members(fh: BinaryIO) -> dict[str, _Member] | None:
    """The arrays of an ``.npz`` (by name, without ``.npy``) and where their data lies, or None
    when one of them cannot be read in place (compressed, not 1-D, objects): the caller then
    reads the file with :func:`numpy.load`."""
    out: dict[str, _Member] = {}
    with zipfile.ZipFile(fh) as archive:
        for info in archive.infolist():
            if info.compress_type != zipfile.ZIP_STORED or not info.filename.endswith(".npy"):
                return None
            fh.seek(info.header_offset)
            local = fh.read(30)
            if len(local) != 30 or local[:4] != b"PK\x03\x04":
                return None
            name_length, extra_length = struct.unpack("<HH", local[26:30])
            fh.seek(info.header_offset + 30 + name_length + extra_length)
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
            else:
                return None
            if len(shape) != 1 or fortran or dtype.hasobject:
                return None
            out[info.filename[: -len(".npy")]] = _Member(fh.tell(), dtype, int(shape[0]))
    return out


#: Reads from this size on get an anonymous memory map of their own (see :func:`_read_array`).
_OWN_MAP_BYTES = 1 << 20
# Private (copied on fork, like any memory), not mmap's default of shared; None off Unix.
_PRIVATE_ANONYMOUS = (
    mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS if hasattr(mmap, "MAP_ANONYMOUS") else None
)


def _read_array(
    fh: BinaryIO, member: _Member, start: int = 0, stop: int | None = None
) -> npt.NDArray[np.generic]:
    """Elements ``start:stop`` of an array of an ``.npz``, read with ``os.preadv`` (safe from
    several threads at once: no shared file position)."""
    stop = member.count if stop is None else min(stop, member.count)
    count = max(stop - start, 0)
    nbytes = count * member.dtype.itemsize
    if nbytes >= _OWN_MAP_BYTES and _PRIVATE_ANONYMOUS is not None:
        # Big reads (whole count arrays, to compile) get pages of their own that go back to
        # the system when the array is dropped; from malloc they could stay in the process.
        pages = mmap.mmap(-1, nbytes, flags=_PRIVATE_ANONYMOUS)
        out = np.frombuffer(pages, dtype=member.dtype, count=count)
    else:
        out = np.empty(count, dtype=member.dtype)
    buffer = out.data.cast("B")
    offset = member.offset + start * member.dtype.itemsize
    done = 0
    while done < len(buffer):
        n = os.preadv(fh.fileno(), [buffer[done:]], offset + done)
        if n <= 0:
            raise OSError(f"{fh.name}: ends inside an array")
        done += n
    return out


class StoredCounts(Mapping[str, sparse.csr_matrix]):
    """Per-field count matrices of an uncompressed ``.npz``, read from the file when asked
    rather than held in memory.

    Queries score with the compiled BM25F contributions; the counts are read in full only to
    compile (at load) and, a document's row at a time, to explain a hit. Held in memory they
    took some 400 MB at a million products. Only the row pointers (4 bytes a document and
    field) stay in memory. Reads use ``os.pread`` on the file opened at load, so the snapshot
    may be renamed or removed while this serves; a file rewritten in place is refused with an
    error (a memory map would crash the process on a truncated file).

    Args:
        fh: The open ``.npz`` file (kept).
        members: Its arrays, from :func:`_stored_members`.
        shapes: Field -> matrix shape.

    Raises:
        OSError: the file cannot be read.
    """

    def __init__(
        self, fh: BinaryIO, members: Mapping[str, _Member], shapes: Mapping[str, tuple[int, int]]
    ) -> None:
        self._file = fh
        self._members = dict(members)
        self._shapes = dict(shapes)
        stat = os.fstat(fh.fileno())
        self._identity = (stat.st_size, stat.st_mtime_ns)
        self._indptr: dict[str, npt.NDArray[np.integer]] = {}
        for name in self._shapes:
            indptr = self.read(f"{name}.indptr")
            fits = len(indptr) == 0 or int(indptr[-1]) <= np.iinfo(np.int32).max
            self._indptr[name] = indptr.astype(np.int32 if fits else np.int64)

    @property
    def n_docs(self) -> int:
        """Number of documents (rows)."""
        return next(iter(self._shapes.values()))[0] if self._shapes else 0

    def read(self, key: str, start: int = 0, stop: int | None = None) -> npt.NDArray[np.generic]:
        """Elements ``start:stop`` of one of the file's arrays (``"title.data"``), read now.

        Raises:
            KeyError: no such array.
            OSError: the file was rewritten since it was opened, or cannot be read.
        """
        stat = os.fstat(self._file.fileno())
        if (stat.st_size, stat.st_mtime_ns) != self._identity:
            raise OSError(f"{self._file.name}: rewritten since it was loaded")
        return _read_array(self._file, self._members[key], start, stop)

    def row(self, name: str, doc: int) -> npt.NDArray[np.int32]:
        """The term ids of one document in one field (its row's columns).

        Raises:
            KeyError: an unknown field.
        """
        indptr = self._indptr[name]
        return self.read(f"{name}.indices", int(indptr[doc]), int(indptr[doc + 1])).astype(
            np.int32, copy=False
        )

    def __getitem__(self, name: str) -> sparse.csr_matrix:
        return sparse.csr_matrix(
            (self.read(f"{name}.data"), self.read(f"{name}.indices"), self._indptr[name]),
            shape=self._shapes[name],
        )

    def __iter__(self) -> Iterator[str]:
        return iter(self._shapes)

    def __len__(self) -> int:
        return len(self._shapes)

    def close(self) -> None:
        """Close the file; matrices already read stay valid, later reads fail."""
        self._file.close()


@dataclass(frozen=True, slots=True)
class LexicalData:
    """The stored part of the lexical index: per-field term counts (documents x terms).

    Loaded from an uncompressed ``.npz`` (as :meth:`save` writes) the counts are a
    :class:`StoredCounts`, read from the file when asked.
    """

    terms: tuple[str, ...]
    counts: Mapping[str, sparse.csr_matrix]
    title_ids: npt.NDArray[np.int32] = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    title_ptr: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(1, dtype=np.int64))

    def title_sequence(self, doc: int) -> npt.NDArray[np.int32]:
        """The term ids of a document's title in reading order (empty when not stored)."""
        if doc + 1 >= len(self.title_ptr):
            return np.zeros(0, dtype=np.int32)
        return self.title_ids[self.title_ptr[doc] : self.title_ptr[doc + 1]]

    def doc_terms(self, doc: int) -> set[int]:
        """The ids of the terms a document holds in any field (explanations).

        Raises:
            IndexError: ``doc`` is out of range.
        """
        if not 0 <= doc < self.n_docs:
            raise IndexError(f"document {doc} out of range (0..{self.n_docs - 1})")
        terms: set[int] = set()
        counts = self.counts
        for name in counts:
            if isinstance(counts, StoredCounts):
                row = counts.row(name, doc)
            else:
                matrix = counts[name]
                row = matrix.indices[matrix.indptr[doc] : matrix.indptr[doc + 1]]
            terms.update(row.tolist())
        return terms

    @property
    def n_docs(self) -> int:
        """Number of documents."""
        if isinstance(self.counts, StoredCounts):
            return self.counts.n_docs
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
        """Read counts written by :meth:`save`; the count matrices stay in the file (see
        :class:`StoredCounts`) unless it is compressed.

        Raises:
            ValueError: the file's shapes do not match ``terms``.
            OSError: the file cannot be read.
        """
        fh = Path(path).open("rb")  # noqa: SIM115 (kept open by the counts)
        try:
            members = _stored_members(fh)
            if members is None:
                fh.close()
                return cls._read(path, terms)
            shapes = {
                key[: -len(".shape")]: _shape(_read_array(fh, member))
                for key, member in sorted(members.items())
                if key.endswith(".shape") and not key.startswith("_")
            }
            _check_terms(shapes, terms)
            counts = StoredCounts(fh, members, shapes)
            ids: npt.NDArray[np.generic] = np.zeros(0, dtype=np.int32)
            ptr: npt.NDArray[np.generic] = np.zeros(1, dtype=np.int64)
            if "_title_sequence.ids" in members:
                # Read on every query for the candidates' titles: kept in memory.
                ids = _read_array(fh, members["_title_sequence.ids"])
                ptr = _read_array(fh, members["_title_sequence.ptr"])
        except BaseException:
            fh.close()
            raise
        return cls(
            terms=tuple(terms),
            counts=counts,
            title_ids=ids.astype(np.int32, copy=False),
            title_ptr=ptr.astype(np.int64, copy=False),
        )

    @classmethod
    def _read(cls, path: Path, terms: Sequence[str]) -> LexicalData:
        """:meth:`load` for files whose arrays cannot be read in place (compressed): all in
        memory."""
        with np.load(path, allow_pickle=False) as npz:
            names = sorted({key.split(".")[0] for key in npz.files if not key.startswith("_")})
            shapes = {name: _shape(npz[f"{name}.shape"]) for name in names}
            _check_terms(shapes, terms)
            counts = {
                name: sparse.csr_matrix(
                    (npz[f"{name}.data"], npz[f"{name}.indices"], npz[f"{name}.indptr"]),
                    shape=shape,
                )
                for name, shape in shapes.items()
            }
            if "_title_sequence.ids" in npz.files:
                ids, ptr = npz["_title_sequence.ids"], npz["_title_sequence.ptr"]
            else:
                ids, ptr = np.zeros(0, dtype=np.int32), np.zeros(1, dtype=np.int64)
        return cls(terms=tuple(terms), counts=counts, title_ids=ids, title_ptr=ptr)


def _shape(values: npt.NDArray[np.generic]) -> tuple[int, int]:
    rows, cols = (int(x) for x in values)
    return rows, cols


def _check_terms(shapes: Mapping[str, tuple[int, int]], terms: Sequence[str]) -> None:
    for name, (_, columns) in shapes.items():
        if columns != len(terms):
            raise ValueError(
                f"field {name!r} has {columns} term columns but the vocabulary has {len(terms)}"
            )


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
