"""The product store: products by document number plus columns for filters, facets and sorting."""

from __future__ import annotations

import functools
import operator
import os
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, SupportsIndex, TypeVar, overload

import numpy as np
import numpy.typing as npt
import orjson
from scipy import sparse

from search.analysis import fold
from search.errors import InvalidRequestError, ProductNotFoundError
from search.types import Availability, FacetStats, FacetValue, Filters, Product

CATEGORY_SEPARATOR = " > "
_AVAILABILITY = tuple(Availability)
BASE_FACETS = ("brand", "category", "availability", "price", "colour")
# Hot products (result pages, suggestions) decode once; at ~2 KB each this stays a few MB.
T = TypeVar("T")

PRODUCT_CACHE_SIZE = 4096
_SCAN_CHUNK = 1 << 24


@dataclass(frozen=True, slots=True, eq=False)  # an array: compared by identity
class PriceColumn:
    """Every product's effective price in one currency, for price filters, sorting and the
    price facet.

    Attributes:
        currency: The currency the prices are in (ISO 4217), or None when the catalogue names
            none and the shop configured none.
        prices: Per document its price in ``currency``; NaN without a price, or when it is
            in another currency that no configured rate converts (such a product is never
            compared as if its number were in ``currency``).
        converted: Some products' prices were converted from another currency with the
            configured rates.
        not_compared: Catalogue currencies that no rate converts into ``currency``.
        edges: Price facet bucket edges over the comparable prices.
    """

    currency: str | None
    prices: npt.NDArray[np.float64]
    converted: bool
    not_compared: tuple[str, ...]
    edges: list[float]


def category_label(path: Sequence[str]) -> str:
    """Display form of a category path (``"Furniture > Sofas"``)."""
    return CATEGORY_SEPARATOR.join(path)


def parse_category(text: str) -> tuple[str, ...]:
    """Parse ``"Furniture > Sofas"`` (also ``/`` or ``|`` separated) into a path."""
    for sep in (">", "|", "/"):
        if sep in text:
            return tuple(part.strip() for part in text.split(sep) if part.strip())
    return (text.strip(),) if text.strip() else ()


def item_or_slice(
    index: SupportsIndex | slice, length: int, get: Callable[[int], T], what: str = "document"
) -> T | tuple[T, ...]:
    """``sequence[index]`` for a sequence of ``length`` whose items ``get`` reads: a slice
    gives a tuple, a negative index counts from the end, anything outside is an IndexError."""
    if isinstance(index, slice):
        return tuple(get(i) for i in range(*index.indices(length)))
    i = operator.index(index)
    if i < 0:
        i += length
    if not 0 <= i < length:
        raise IndexError(f"{what} {index} out of range (0..{length - 1})")
    return get(i)


class LazyProducts(Sequence[Product]):
    """Products of a JSON Lines file, decoded on access instead of held in memory.

    Only the byte offsets of the lines stay in memory; a product is read with ``os.pread`` (safe
    from several threads at once) and decoded when asked for, with a small LRU cache for hot ones.
    Iteration streams the file from the start. The file must not change while this is open.

    Args:
        path: A file written by :meth:`ProductStore.save`.
        cache_size: Decoded products kept.
    """

    def __init__(self, path: Path, cache_size: int = PRODUCT_CACHE_SIZE) -> None:
        self.path = Path(path)
        self._file = self.path.open("rb")
        self.starts, self.ends = _line_offsets(self._file.fileno())
        self._cached = functools.lru_cache(maxsize=cache_size)(self._read)

    def __len__(self) -> int:
        return len(self.starts)

    @overload
    def __getitem__(self, index: SupportsIndex) -> Product: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Product]: ...

    def __getitem__(self, index: SupportsIndex | slice) -> Product | Sequence[Product]:
        return item_or_slice(index, len(self), self._cached, "product")

    def __iter__(self) -> Iterator[Product]:
        # A full pass (start-up indexes over every title) reads big blocks and skips the cache.
        # It reads the open file, not the path, which a newer snapshot may have taken over.
        starts, ends, fd = self.starts, self.ends, self._file.fileno()
        i = 0
        while i < len(starts):
            j = max(int(np.searchsorted(ends, starts[i] + _SCAN_CHUNK, side="right")), i + 1)
            base = int(starts[i])
            block = memoryview(os.pread(fd, int(ends[j - 1]) - base, base))
            for start, end in zip(starts[i:j].tolist(), ends[i:j].tolist(), strict=True):
                yield Product.from_dict(orjson.loads(block[start - base : end - base]))
            i = j

    def _read(self, doc: int) -> Product:
        start, end = int(self.starts[doc]), int(self.ends[doc])
        data = os.pread(self._file.fileno(), end - start, start)
        return Product.from_dict(orjson.loads(data))

    def close(self) -> None:
        """Close the file; later lookups fail."""
        self._file.close()

    def __del__(self) -> None:
        file = getattr(self, "_file", None)
        if file is not None:
            file.close()


def _line_offsets(fd: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Start and end byte offsets of the non-blank lines of a file."""
    newlines: list[npt.NDArray[np.int64]] = []
    offset = 0
    while chunk := os.pread(fd, _SCAN_CHUNK, offset):
        found = np.flatnonzero(np.frombuffer(chunk, dtype=np.uint8) == ord("\n"))
        newlines.append(found.astype(np.int64) + offset)
        offset += len(chunk)
    ends = np.concatenate([*newlines, np.zeros(0, dtype=np.int64)])
    if offset and (len(ends) == 0 or ends[-1] != offset - 1):
        ends = np.append(ends, offset)  # a last line without a newline
    starts = np.concatenate([np.zeros(1, dtype=np.int64), ends[:-1] + 1])[: len(ends)]
    keep = ends - starts > 0
    if keep.all():
        return starts, ends
    # Rare whitespace-only lines: check their bytes like the eager loader does.
    for i in np.flatnonzero(keep):
        if (
            ends[i] - starts[i] < 8
            and not os.pread(fd, int(ends[i] - starts[i]), int(starts[i])).strip()
        ):
            keep[i] = False
    return starts[keep], ends[keep]


class IdIndex(Mapping[str, int]):
    """Product id -> document number, compact: the ids as one UTF-8 blob with offsets, and
    their hashes sorted beside the documents (a dict of a million ids takes ~130 MB; this takes
    ~35). Lookups hash the id, binary-search the hashes and compare the stored ids.

    Args:
        ids: Product ids in document order (unique).
    """

    def __init__(self, ids: Sequence[str]) -> None:
        encoded = [i.encode("utf-8") for i in ids]
        self._blob = b"".join(encoded)
        self._offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        if encoded:
            np.cumsum(
                np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)),
                out=self._offsets[1:],
            )
        # crc32, not hash(): the same in every process (an index may be pickled to a worker).
        hashes = np.fromiter(map(zlib.crc32, encoded), dtype=np.int64, count=len(encoded))
        self._order = np.argsort(hashes, kind="stable").astype(np.int32)
        self._hashes = hashes[self._order]

    def id_at(self, doc: int) -> str:
        """The id of a document."""
        return self._blob[self._offsets[doc] : self._offsets[doc + 1]].decode("utf-8")

    def get(self, key: object, default: Any = None) -> Any:
        """The document of a product id, or ``default``."""
        if not isinstance(key, str):
            return default
        h = zlib.crc32(key.encode("utf-8"))
        lo = int(np.searchsorted(self._hashes, h, side="left"))
        while lo < len(self._hashes) and self._hashes[lo] == h:
            doc = int(self._order[lo])
            if self.id_at(doc) == key:
                return doc
            lo += 1
        return default

    def __getitem__(self, key: str) -> int:
        doc = self.get(key)
        if doc is None:
            raise KeyError(key)
        return int(doc)

    def __contains__(self, key: object) -> bool:
        return self.get(key) is not None

    def __iter__(self) -> Iterator[str]:
        return (self.id_at(doc) for doc in range(len(self)))

    def __len__(self) -> int:
        return len(self._offsets) - 1


class ProductIds(Sequence[str]):
    """Product ids in document order, read from an :class:`IdIndex` (no list of strings)."""

    def __init__(self, index: IdIndex) -> None:
        self._index = index

    def __len__(self) -> int:
        return len(self._index)

    @overload
    def __getitem__(self, index: SupportsIndex) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[str]: ...

    def __getitem__(self, index: SupportsIndex | slice) -> str | Sequence[str]:
        return item_or_slice(index, len(self), self._index.id_at)


class ProductStore:
    """Products in document order with columnar data for filtering, faceting and sorting.

    Args:
        products: The snapshot's products; position is the document number. A
            :class:`LazyProducts` is kept as it is (products decoded on access); anything else
            is copied into a tuple.
    """

    def __init__(self, products: Sequence[Product]) -> None:
        self.products: LazyProducts | tuple[Product, ...] = (
            products if isinstance(products, LazyProducts) else tuple(products)
        )
        # One pass over the products: with a LazyProducts each pass decodes the whole file.
        ids: list[str] = []
        n = len(self.products)
        self.prices = np.full(n, np.nan, dtype=np.float64)
        # Each product's currency as an index into ``currencies`` (-1: none named).
        self.currency_ids = np.full(n, -1, dtype=np.int16)
        currency_index: dict[str, int] = {}
        self.availability = np.zeros(n, dtype=np.int8)
        brand_display: dict[str, Counter[str]] = defaultdict(Counter)
        brand_ids = np.full(n, -1, dtype=np.int32)
        brand_index: dict[str, int] = {}
        # Facet matrix columns: (facet name, folded value) -> column; display labels kept apart.
        columns: dict[tuple[str, str], int] = {}
        labels: list[tuple[str, str]] = []
        rows: list[int] = []
        cols: list[int] = []

        def column(facet: str, value: str) -> int:
            key = (facet, fold(value))
            col = columns.get(key)
            if col is None:
                col = columns[key] = len(labels)
                labels.append((facet, value))
            return col

        for doc, product in enumerate(self.products):
            ids.append(product.id)
            if product.effective_price is not None:
                self.prices[doc] = product.effective_price
                if product.currency:
                    code = product.currency.strip().upper()
                    self.currency_ids[doc] = currency_index.setdefault(code, len(currency_index))
            self.availability[doc] = _AVAILABILITY.index(product.availability)
            if product.brand:
                key = fold(product.brand)
                brand_display[key][product.brand] += 1
                brand_ids[doc] = brand_index.setdefault(key, len(brand_index))
            doc_cols: set[int] = set()
            for path in product.categories:
                for depth in range(1, len(path) + 1):
                    doc_cols.add(column("category", category_label(path[:depth])))
            for name, values in product.attributes.items():
                for value in values:
                    doc_cols.add(column("attr:" + fold(name), value))
            for colour in product.colours:
                doc_cols.add(column("colour", colour))
            rows.extend([doc] * len(doc_cols))
            cols.extend(doc_cols)
        self.doc_of = IdIndex(ids)
        del ids
        self.ids = ProductIds(self.doc_of)
        self.brand_ids = brand_ids
        self.brand_keys = list(brand_index)
        self.brand_names = [brand_display[k].most_common(1)[0][0] for k in self.brand_keys]
        self._brand_index = brand_index
        self._columns = columns
        self.labels = labels
        matrix = sparse.csr_matrix(
            (
                np.ones(len(rows), dtype=np.int8),
                (np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)),
            ),
            shape=(n, len(labels)),
        )
        self._facets_csr = matrix
        self._facets_csc = matrix.tocsc()
        self.attribute_names = sorted({f[5:] for f, _ in labels if f.startswith("attr:")})
        self._facet_columns: dict[str, npt.NDArray[np.int64]] = {}
        by_facet: dict[str, list[int]] = defaultdict(list)
        for col, (facet, _) in enumerate(labels):
            by_facet[facet].append(col)
        self._facet_columns = {f: np.asarray(c, dtype=np.int64) for f, c in by_facet.items()}
        finite = self.prices[np.isfinite(self.prices)]
        self.price_edges = _price_edges(finite)
        #: The currencies the catalogue's prices are in, in order of first appearance.
        self.currencies: tuple[str, ...] = tuple(currency_index)
        counts = np.bincount(
            self.currency_ids[self.currency_ids >= 0], minlength=len(self.currencies)
        )
        #: The currency most priced products are in, or None when none names one.
        self.main_currency: str | None = (
            self.currencies[int(np.argmax(counts))] if len(self.currencies) else None
        )
        # Price columns by (currency, base, rates); only dict operations that are atomic under
        # the GIL touch it, so threads share it without a lock (and the store stays picklable).
        self._price_columns: dict[tuple[object, ...], PriceColumn] = {}

    def __len__(self) -> int:
        return len(self.products)

    def get(self, product_id: str) -> Product:
        """The product with this id.

        Raises:
            ProductNotFoundError: no such product.
        """
        doc = self.doc_of.get(product_id)
        if doc is None:
            raise ProductNotFoundError(product_id)
        return self.products[doc]

    def facet_names(self) -> list[str]:
        """Facet names valid for this catalogue."""
        return [*BASE_FACETS, *(f"attr:{name}" for name in self.attribute_names)]

    # --- prices -----------------------------------------------------------------------------

    def price_column(
        self, currency: str | None, base: str | None, rates: Mapping[str, float]
    ) -> PriceColumn:
        """Every product's price in ``currency`` (computed once per currency and rates).

        A price in ``currency`` is taken as it is; one in another currency is converted when
        ``rates`` knows both (``base`` counts as rate 1), and is otherwise left out (NaN) rather
        than compared as a bare number. A price whose product names no currency is taken to be
        in ``base``.

        Args:
            currency: The currency to compare prices in (upper-case ISO 4217), or None when
                neither the request, the shop nor the catalogue names one (prices are then
                compared as they are).
            base: The shop's base currency: the one ``rates`` are quoted in.
            rates: Currency -> how many units of ``base`` one unit of it is worth.

        Returns:
            The prices in ``currency``, whether any were converted, and the currencies left out.
        """
        key = (currency, base, tuple(sorted(rates.items())))
        column = self._price_columns.get(key)
        if column is None:
            column = self._price_column(currency, base, rates)
            if len(self._price_columns) >= 16:  # a shop has a handful of currencies
                self._price_columns.clear()
            self._price_columns[key] = column
        return column

    def _price_column(
        self, currency: str | None, base: str | None, rates: Mapping[str, float]
    ) -> PriceColumn:
        if currency is None:
            column = PriceColumn(None, self.prices, False, (), self.price_edges)
        else:
            worth = {code.upper(): float(rate) for code, rate in rates.items()}
            if base is not None:
                worth[base] = 1.0
            factors = np.full(len(self.currencies) + 1, np.nan, dtype=np.float64)
            via_rate = np.zeros(len(factors), dtype=bool)
            not_compared: list[str] = []
            for i, code in enumerate((*self.currencies, base)):
                if code == currency:
                    factors[i] = 1.0
                elif code is not None and code in worth and currency in worth:
                    factors[i] = worth[code] / worth[currency]
                    via_rate[i] = True
                elif code is not None and i < len(self.currencies):
                    not_compared.append(code)
            # -1 (no currency named) reads the last slot: the base currency's factor.
            prices = self.prices * factors[self.currency_ids]
            converted = bool((via_rate[self.currency_ids] & np.isfinite(self.prices)).any())
            finite = prices[np.isfinite(prices)]
            column = PriceColumn(
                currency, prices, converted, tuple(not_compared), _price_edges(finite)
            )
        return column

    # --- filters ----------------------------------------------------------------------------

    def _docs_with(self, facet: str, value: str) -> npt.NDArray[np.int32]:
        col = self._columns.get((facet, fold(value)))
        if col is None:
            return np.zeros(0, dtype=np.int32)
        start, end = self._facets_csc.indptr[col], self._facets_csc.indptr[col + 1]
        return self._facets_csc.indices[start:end]

    def mask(
        self, filters: Filters, prices: PriceColumn | None = None
    ) -> npt.NDArray[np.bool_] | None:
        """Boolean mask of products passing the filters, or None when no filter is set.

        Args:
            filters: The filters.
            prices: The prices ``price_min`` and ``price_max`` are compared with (a product
                with no comparable price never passes them); None: the bare amounts.
        """
        if filters.is_empty:
            return None
        n = len(self.products)
        allowed = np.ones(n, dtype=bool)
        if filters.brands:
            ids = [
                self._brand_index[k]
                for k in (fold(b) for b in filters.brands)
                if k in self._brand_index
            ]
            allowed &= np.isin(self.brand_ids, np.asarray(ids, dtype=np.int32))
        if filters.categories:
            allowed &= self._any_of("category", [category_label(p) for p in filters.categories])
        for name, values in filters.attributes.items():
            allowed &= self._any_of("attr:" + fold(name), values)
        amounts = self.prices if prices is None else prices.prices
        if filters.price_min is not None:
            allowed &= amounts >= filters.price_min
        if filters.price_max is not None:
            allowed &= amounts <= filters.price_max
        if filters.availability:
            codes = [_AVAILABILITY.index(a) for a in filters.availability]
            allowed &= np.isin(self.availability, np.asarray(codes, dtype=np.int8))
        return allowed

    def _any_of(self, facet: str, values: Iterable[str]) -> npt.NDArray[np.bool_]:
        out = np.zeros(len(self.products), dtype=bool)
        for value in values:
            out[self._docs_with(facet, value)] = True
        return out

    # --- facets -----------------------------------------------------------------------------

    def facets(
        self,
        docs: npt.NDArray[np.int64],
        names: Sequence[str],
        limit: int = 20,
        prices: PriceColumn | None = None,
    ) -> dict[str, tuple[FacetValue, ...]]:
        """Count facet values over a set of documents.

        Args:
            docs: The matching documents.
            names: Facet names (see :meth:`facet_names`).
            limit: Buckets kept per facet, most frequent first (price buckets keep their order).
            prices: The prices the price facet buckets (each bucket carries its currency);
                None: the bare amounts.

        Raises:
            InvalidRequestError: an unknown facet name (field ``facets``).
        """
        valid = self.facet_names()
        out: dict[str, tuple[FacetValue, ...]] = {}
        for name in names:
            if name not in valid:
                raise InvalidRequestError(
                    "facets", f"unknown facet {name!r}; valid facets: {', '.join(valid)}"
                )
            if name == "brand":
                ids = self.brand_ids[docs]
                counts = np.bincount(ids[ids >= 0], minlength=len(self.brand_names))
                out[name] = _top(
                    ((self.brand_names[i], int(c)) for i, c in enumerate(counts) if c), limit
                )
            elif name == "availability":
                counts = np.bincount(self.availability[docs], minlength=len(_AVAILABILITY))
                out[name] = _top(
                    ((a.value, int(c)) for a, c in zip(_AVAILABILITY, counts, strict=True) if c),
                    limit,
                )
            elif name == "price":
                out[name] = self._price_facet(docs, prices)
            else:
                cols = self._facet_columns.get(name, np.zeros(0, dtype=np.int64))
                if len(cols) == 0:
                    out[name] = ()
                    continue
                sub = self._facets_csr[docs][:, cols]
                counts = np.asarray(sub.sum(axis=0)).ravel()
                out[name] = _top(
                    ((self.labels[c][1], int(n)) for c, n in zip(cols, counts, strict=True) if n),
                    limit,
                )
        return out

    def price_stats(
        self, docs: npt.NDArray[np.int64], column: PriceColumn | None = None
    ) -> FacetStats | None:
        """Lowest, highest, mean and total price of ``docs`` in ``column``'s currency (the
        bare amounts when None); products without a comparable price are left out.

        Returns:
            The statistics, or None when no product of ``docs`` has a comparable price.
        """
        amounts = self.prices if column is None else column.prices
        prices = amounts[docs]
        prices = prices[np.isfinite(prices)]
        if len(prices) == 0:
            return None
        total = float(prices.sum())
        return FacetStats(
            min=float(prices.min()),
            max=float(prices.max()),
            avg=total / len(prices),
            sum=total,
            count=len(prices),
        )

    def _price_facet(
        self, docs: npt.NDArray[np.int64], column: PriceColumn | None
    ) -> tuple[FacetValue, ...]:
        amounts, edges = (
            (self.prices, self.price_edges) if column is None else (column.prices, column.edges)
        )
        currency = column.currency if column is not None else None
        prices = amounts[docs]
        prices = prices[np.isfinite(prices)]
        if len(edges) < 2 or len(prices) == 0:
            return ()
        counts, _ = np.histogram(prices, bins=edges)
        return tuple(
            FacetValue(f"{_fmt(edges[i])}-{_fmt(edges[i + 1])}", int(c), currency=currency)
            for i, c in enumerate(counts)
            if c
        )

    # --- persistence ------------------------------------------------------------------------

    def save(self, path: Path) -> None:
        """Write products as JSON Lines."""
        with path.open("wb") as fh:
            for product in self.products:
                fh.write(orjson.dumps(product.to_dict()))
                fh.write(b"\n")

    @classmethod
    def load(cls, path: Path) -> ProductStore:
        """Read a store written by :meth:`save`."""
        with path.open("rb") as fh:
            return cls([Product.from_dict(orjson.loads(line)) for line in fh if line.strip()])

    @classmethod
    def open(cls, path: Path, cache_size: int = PRODUCT_CACHE_SIZE) -> ProductStore:
        """Open a store written by :meth:`save` without holding its products in memory.

        Columns, filters and facets are built as by :meth:`load`; products are decoded from the
        file on access (see :class:`LazyProducts`), so the file must stay in place unchanged.

        Args:
            path: The JSON Lines file.
            cache_size: Decoded products kept in an LRU cache.

        Raises:
            OSError: the file cannot be read.
            ValueError: a line is not a valid product.
        """
        return cls(LazyProducts(path, cache_size))


def _top(pairs: Iterable[tuple[str, int]], limit: int) -> tuple[FacetValue, ...]:
    ranked = sorted(pairs, key=lambda p: (-p[1], p[0]))
    return tuple(FacetValue(v, c) for v, c in ranked[:limit])


def _price_edges(prices: npt.NDArray[np.float64], buckets: int = 5) -> list[float]:
    """Rounded bucket edges at price quantiles, so each bucket holds a fair share of products."""
    if len(prices) == 0:
        return []
    qs = np.quantile(prices, np.linspace(0, 1, buckets + 1))
    edges: list[float] = []
    for q in qs:
        rounded = float(_nice(q))
        if not edges or rounded > edges[-1]:
            edges.append(rounded)
    # Rounding may cut off the extremes: stretch the outer edges over every price.
    edges[0] = min(edges[0], float(np.floor(prices.min())))
    if edges[-1] < prices.max():
        edges[-1] = float(np.ceil(prices.max()))
    return edges


def _nice(value: float) -> float:
    if value <= 0:
        return 0.0
    magnitude = 10 ** np.floor(np.log10(value))
    return float(np.round(value / magnitude * 2) / 2 * magnitude)


def _fmt(value: float) -> str:
    return f"{value:.0f}" if value == int(value) else f"{value:.2f}"
