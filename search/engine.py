"""The query service's core: a loaded snapshot and the search pipeline over it.

understand -> retrieve (lexical, fuzzy, phonetic, semantic) -> fuse -> rerank -> page, facets,
explanations. The engine holds no per-request state; one instance serves all requests.
"""

from __future__ import annotations

import copy
import math
import re
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from search.analysis import Analyzer
from search.colour import parse_colour
from search.errors import InvalidRequestError, ProductNotFoundError, SnapshotError
from search.fusion import FUSERS
from search.index.colours import ColourIndex, family_swatch, text_colours
from search.index.lexical import Bm25Params, GroupScores, LexicalData, LexicalIndex
from search.index.snapshot import (
    COLOUR_REPORT,
    COLOURS,
    IMAGE_ADAPTER,
    IMPORT_REPORT,
    LEXICAL,
    PRODUCTS,
    SUGGESTIONS,
    TERMS,
    TEXT_ANN,
    TEXT_COMPRESSED,
    TEXT_VECTORS,
    VOCABULARY,
    Manifest,
    read_manifest,
)
from search.index.store import PriceColumn, ProductStore
from search.index.vocabulary import Vocabulary
from search.photos import ImageVectors, PhotoSearch, read_vector_index
from search.protocols import ImageEncoder, ModelLoader, Reranker, Retriever, TextEmbedder
from search.rank.colour import ColourReranker
from search.rank.context import Effect, RankingContext, Reranked
from search.rank.fallback import SemanticFallback
from search.rank.features import FeatureExtractor
from search.rank.learned import LearnedRanker, RelevanceScorer
from search.retrievers import (
    SemanticRetriever,
    TermRetriever,
    VectorIndex,
)
from search.rules import MatchedRules, RuleSet, explain_lines
from search.suggest import Suggester, load_suggestions
from search.tuning import Tuning
from search.types import (
    MAX_CONDITION_DEPTH,
    MAX_CONDITION_LEAVES,
    MAX_FACET_LIMIT,
    AllOf,
    AnyOf,
    ColourIs,
    Condition,
    Explanation,
    FacetValue,
    Hit,
    Not,
    Product,
    ResultHit,
    RetrieverTrace,
    SearchRequest,
    SearchResult,
    SortOrder,
    condition_size,
)
from search.understand import AnalyzedQuery, QueryUnderstander, UnderstandConfig
from search.weights import DEFAULT_WEIGHTS, RankingWeights, default_retriever_weights


def _adapted(path: Path, encoder: ImageEncoder, models: ModelLoader) -> ImageEncoder:
    """The query photo encoder through the snapshot's catalogue photo projection (the loader
    unwraps an encoder that went through another snapshot's projection: each build fits its
    own).

    Raises:
        SnapshotError: the projection cannot be read or does not fit the encoder.
    """
    try:
        return models.adapt_image_embedder(path / IMAGE_ADAPTER, encoder)
    except (OSError, ValueError, KeyError) as exc:
        raise SnapshotError(
            f"{path}: cannot use the photo projection {IMAGE_ADAPTER}: {exc}"
        ) from exc


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Query-time settings.

    Attributes:
        weights: Fusion weight per retriever name.
        fusion: ``"score"`` (weighted sum of scores normalised by each run's best) or ``"rrf"``
            (weighted reciprocal rank fusion). On the Home Depot dev queries score fusion with
            semantic weight 0.4 gave nDCG@10 0.422 against 0.410 lexical-only, while RRF at any
            semantic weight fell below lexical-only (0.406 at 0.3): BM25's score gaps carry
            information that ranks throw away.
        rrf_k: RRF smoothing constant.
        candidates: Candidates each retriever returns before fusion (at least a page's end).
        coverage_exponent: How strongly lexical scores favour covering every query word.
        semantic_min_similarity: Semantic hits below this cosine similarity are dropped; None
            takes the embedder's own ``min_similarity``.
        semantic_margin: Semantic hits more than this below the best one are dropped.
        bm25: BM25F parameters.
        understand: Query expansion settings.
        max_k: Largest page size accepted.
        ranker_depth: Fused candidates the learned ranker re-scores.
        colour_weight: Weight of the colour words' group in the lexical match, relative to a
            typical score of one of the query's other words (below 1 so that the product type
            outweighs the colour: "navy shirt" puts shirts of any colour before navy jackets).
        colour_rerank: Strength of the colour re-ranking after fusion and learned ranking:
            each hit's rank score (1 down to 1/n) gains this times its colour closeness when
            it matches the query's other words (0 turns it off).
        fallback_margin: When nothing matches a query, semantic hits down to this much below
            the usual similarity floor are shown instead of an empty page.
        image_weight: Fusion weight of photo similarity against the text's lexical match in
            a photo search with text.
        ann_ef_search: HNSW search breadth of the text vector index (HNSW or HNSW-SQ8); on
            1M vectors (HNSW-SQ8, exact re-ranking) recall@10 was 0.934 at 128, 0.970 at 256
            (2.9 ms) and 0.984 at 512 (4.8 ms) (``benchmarks/scale.py``).
        ann_nprobe: Inverted lists an IVF text vector index probes per query.
        ann_rerank: Candidates of a compressed vector index re-scored with the exact vectors.
        currency: The shop's base currency (ISO 4217): what price filters, the price sort and
            the price facet compare in when a request names none, and what
            ``currency_rates`` are quoted in. None: the currency most of the catalogue's
            prices are in.
        currency_rates: Currency -> how many units of ``currency`` one unit of it is worth
            (``{"EUR": 4.3}`` with ``currency="PLN"``: 1 EUR = 4.3 PLN). Prices in a currency
            with a rate are converted before they are compared; without one they are left out
            of price filters and sorted after the comparable prices, never compared as bare
            numbers.
    """

    weights: Mapping[str, float] = field(default_factory=default_retriever_weights)
    fusion: str = "score"
    rrf_k: float = 60.0
    candidates: int = 200
    coverage_exponent: float = 1.0
    semantic_min_similarity: float | None = None
    semantic_margin: float = 0.15
    bm25: Bm25Params = field(default_factory=Bm25Params)
    understand: UnderstandConfig = field(default_factory=UnderstandConfig)
    max_k: int = 250
    ranker_depth: int = 100
    colour_weight: float = DEFAULT_WEIGHTS.colour_weight
    colour_rerank: float = DEFAULT_WEIGHTS.colour_rerank
    image_weight: float = 1.0
    fallback_margin: float = 0.05
    ann_ef_search: int = 256
    ann_nprobe: int = 32
    ann_rerank: int = 100
    currency: str | None = None
    currency_rates: Mapping[str, float] = field(default_factory=dict)

    def ranking_weights(self) -> RankingWeights:
        """The weights an engine with this configuration ranks with when a request brings no
        tuning: these retriever weights, colour weight and colour re-ranking, and the default
        behaviour and personalisation strengths."""
        return replace(
            DEFAULT_WEIGHTS,
            retrievers=dict(self.weights),
            colour_weight=self.colour_weight,
            colour_rerank=self.colour_rerank,
        )


#: An ISO 4217 code as requests and settings write it.
_CURRENCY_CODE = re.compile(r"[A-Z]{3}")


def _check_currencies(config: EngineConfig) -> None:
    """Reject a malformed base currency or exchange rate.

    Raises:
        ValueError: A code is not three letters, or a rate is not a positive number.
    """
    codes = [config.currency] if config.currency is not None else []
    for code in [*codes, *config.currency_rates]:
        if not _CURRENCY_CODE.fullmatch(code):
            raise ValueError(f"currency {code!r} is not an upper-case ISO 4217 code like PLN")
    for code, rate in config.currency_rates.items():
        if not (isinstance(rate, int | float) and math.isfinite(rate) and rate > 0):
            raise ValueError(f"exchange rate of {code} must be a positive number, got {rate!r}")
    if config.currency_rates and config.currency is None:
        raise ValueError("exchange rates need the base currency they are quoted in (currency)")


class SearchEngine:
    """Search over one snapshot.

    Build with :meth:`open`; the constructor takes already-loaded parts (tests, benchmarks).

    Args:
        manifest: The snapshot's manifest.
        store: Products and their columns.
        lexical: The lexical index.
        vocabulary: The catalogue vocabulary.
        analyzer: The snapshot's analyser.
        vectors: Text vectors, or None.
        ann: An HNSW graph over ``vectors`` (faiss), or None for exact search.
        embedder: Query embedder matching the vectors.
        config: Query-time settings (its weights are the default tuning's).
        rerankers: The shop's re-rankers (behaviour, personalisation), applied in order after
            the built-in stages (learned ranking, colour, semantic fallback).
        scorer: A trained relevance model re-ranking the head of the fused list, or None.
        snapshot_dir: Where the snapshot was loaded from.
        colours: Product colours, or None to read them from the products' text.
        rules: Merchandising rules of the default tuning (what a request without a tuning of
            its own is ranked with), or None.
        images: Product photo vectors (with the products that have one), or None.
        image_embedder: Encodes shoppers' photos like the product photos were encoded.
    """

    def __init__(
        self,
        manifest: Manifest,
        store: ProductStore,
        lexical: LexicalIndex,
        vocabulary: Vocabulary,
        analyzer: Analyzer,
        *,
        vectors: npt.NDArray[np.float32] | None = None,
        ann: Any = None,
        embedder: TextEmbedder | None = None,
        config: EngineConfig | None = None,
        rerankers: Sequence[Reranker] = (),
        scorer: RelevanceScorer | None = None,
        snapshot_dir: Path | None = None,
        colours: ColourIndex | None = None,
        rules: RuleSet | None = None,
        images: ImageVectors | None = None,
        image_embedder: ImageEncoder | None = None,
    ) -> None:
        self.manifest = manifest
        self.images = images
        self.image_embedder = image_embedder
        self.store = store
        self.lexical = lexical
        self.vocabulary = vocabulary
        self.analyzer = analyzer
        self.embedder = embedder
        self.config = config or EngineConfig()
        self.snapshot_dir = snapshot_dir
        if self.config.fusion not in FUSERS:
            raise ValueError(f"unknown fusion {self.config.fusion!r}; valid: {', '.join(FUSERS)}")
        _check_currencies(self.config)
        #: What a request without a tuning of its own is ranked with.
        self.tuning = Tuning(self.config.ranking_weights(), rules)
        self.understander = QueryUnderstander(
            analyzer, vocabulary, lexical.term_ids, self.config.understand
        )
        # Typo corrections, sound-alikes, completions and compounds are alternatives inside the
        # lexical retriever's term groups, weighted below exact matches. Separate fuzzy and
        # phonetic runs fused by RRF were measured worse (Home Depot dev, typo set: 0.27 vs 0.38
        # nDCG@10): a run that lacks the corrected word ranks products matching only the rest.
        if colours is None:
            colours = ColourIndex([text_colours(p)[0] for p in store.products])
        if len(colours) != len(store):
            raise SnapshotError(
                f"colour index has {len(colours)} products but the store has {len(store)}"
            )
        self.colours = colours
        # One box shared by every engine derived from this one (with_config, with_rerankers):
        # same titles, vocabulary and analyser, so the suggester (seconds to build on a large
        # catalogue) is built once, never on the request path of a freshly swapped engine.
        self._suggester_box: list[Suggester] = []
        self._suggester_lock = threading.Lock()
        self._match_all = TermRetriever(
            "lexical",
            lexical,
            self.config.coverage_exponent,
            colours=colours,
            colour_weight=self.config.colour_weight,
        )
        self.retrievers: dict[str, Retriever] = {"lexical": self._match_all}
        self.vector_index: VectorIndex | None = None
        configured = self.config.semantic_min_similarity
        self.semantic_min_similarity = (
            configured if configured is not None else getattr(embedder, "min_similarity", 0.25)
        )
        fallback: SemanticFallback | None = None
        if vectors is not None and embedder is not None and len(vectors):
            self.vector_index = VectorIndex(
                vectors,
                ann,
                self.config.ann_ef_search,
                nprobe=self.config.ann_nprobe,
                rerank=self.config.ann_rerank,
            )
            self.retrievers["semantic"] = SemanticRetriever(
                "semantic",
                embedder.embed_queries,
                self.vector_index,
                self.semantic_min_similarity,
                self.config.semantic_margin,
            )
            fallback = SemanticFallback(
                embedder.embed_queries,
                self.vector_index,
                self.semantic_min_similarity - self.config.fallback_margin,
                self.config.semantic_margin,
            )
        self.scorer = scorer
        self.ranker: LearnedRanker | None = None
        if scorer is not None:
            scorer.warm_up()
            # Semantic features need the query's vector: a request whose weights turn the
            # semantic retriever off is not embedded, and the ranker sees lexical features only.
            extractor = FeatureExtractor(lexical, self.vector_index)
            self.ranker = LearnedRanker(extractor, scorer, self.config.ranker_depth)
        self.colour_stage = ColourReranker(colours, self.config.colour_rerank)
        # The built-in stages, in order; the shop's re-rankers follow (see :attr:`stages`).
        self._builtin: tuple[Reranker, ...] = tuple(
            stage for stage in (self.ranker, self.colour_stage, fallback) if stage is not None
        )
        self.rerankers = tuple(rerankers)
        self.photos: PhotoSearch | None = None
        if images is not None and image_embedder is not None:
            self.photos = PhotoSearch(
                self,
                images,
                image_embedder,
                depth=self.config.candidates,
                image_weight=self.config.image_weight,
            )

    @property
    def stages(self) -> tuple[Reranker, ...]:
        """Every re-ranking stage, in order: the learned ranker, colour re-ranking, the
        semantic fallback (each when the snapshot has what it needs), then the shop's re-rankers
        (behaviour, personalisation). A new stage is one class behind
        :class:`search.protocols.Reranker` and one line here or in the composition root."""
        return (*self._builtin, *self.rerankers)

    # --- loading ----------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        embedder: TextEmbedder | None = None,
        use_semantic: bool = True,
        config: EngineConfig | None = None,
        verify: bool = True,
        ranker: str | RelevanceScorer | None = "auto",
        use_images: bool = True,
        image_encoder: ImageEncoder | None = None,
        models: ModelLoader | None = None,
    ) -> SearchEngine:
        """Load and check a snapshot.

        Args:
            path: Snapshot folder.
            embedder: Query embedder; by default ``models`` loads the one the manifest names.
            use_semantic: Load text vectors and the embedder (False: lexical retrieval only).
            config: Query-time settings.
            verify: Check every file's SHA-256 against the manifest.
            ranker: Learned ranking model: ``"auto"`` (the packaged model matching the snapshot),
                ``"none"`` or None (fusion order), a model file path, or a scorer object.
            use_images: Load photo vectors and the image embedder the manifest names (photo
                search, similar products); False leaves photo search off.
            image_encoder: Encoder of query photos; by default the one the manifest names.
            models: Loads the models the manifest names (the query embedder, the photo
                encoder and its catalogue projection, the learned ranker by name); the
                composition root passes ``models.loader.PACKAGED_MODELS``. None loads no model:
                lexical retrieval, photo search off (unless ``image_encoder`` is given for a
                snapshot without a projection) and fusion order for ``"auto"``.

        Raises:
            SnapshotError: the snapshot is missing, corrupt or incompatible.
        """
        path = Path(path)
        manifest = read_manifest(path, verify=verify)
        try:
            store = ProductStore.open(path / PRODUCTS)
            terms = orjson.loads((path / TERMS).read_bytes())
            config = config or EngineConfig()
            lexical = LexicalIndex(LexicalData.load(path / LEXICAL, terms), config.bm25)
            vocabulary = Vocabulary.load(path / VOCABULARY)
            analyzer = Analyzer(manifest.languages)
            colours = ColourIndex.load(path / COLOURS) if COLOURS in manifest.files else None
            images = ImageVectors.load(path, manifest) if use_images else None
        except (ValueError, KeyError, TypeError, OSError, RuntimeError) as exc:
            raise SnapshotError(f"{path}: cannot load snapshot: {exc}") from exc
        if lexical.n_docs != len(store):
            raise SnapshotError(
                f"{path}: lexical index has {lexical.n_docs} documents but the store has {len(store)}"
            )
        vectors = None
        ann = None
        spec = manifest.models.get("text_embedder")
        if use_semantic and spec and TEXT_VECTORS in manifest.files:
            # Memory-mapped: an ANN index (HNSW graph or compressed IVF codes) answers queries
            # and only candidates' rows are read, so 1M vectors do not sit in memory twice.
            vectors = np.load(path / TEXT_VECTORS, mmap_mode="r", allow_pickle=False)
            if len(vectors) != len(store):
                raise SnapshotError(
                    f"{path}: {len(vectors)} text vectors for {len(store)} products"
                )
            try:
                ann = read_vector_index(path, manifest, (TEXT_ANN, TEXT_COMPRESSED))
            except RuntimeError as exc:
                raise SnapshotError(f"{path}: cannot read the text vector index: {exc}") from exc
            if embedder is None and models is not None:
                embedder = models.text_embedder(spec)
            if embedder is not None:
                embedder.warm_up()
                if embedder.dim != vectors.shape[1]:
                    raise SnapshotError(
                        f"{path}: query embedder {embedder.name!r} gives {embedder.dim}-d vectors, "
                        f"the snapshot holds {vectors.shape[1]}-d vectors"
                    )
        image_embedder = None
        if images is not None:
            if image_encoder is not None:
                image_embedder = image_encoder
            elif models is not None:
                image_embedder = models.image_embedder(manifest.models["image_embedder"])
            if image_embedder is not None:
                image_embedder.warm_up()
                if IMAGE_ADAPTER in manifest.files:
                    if models is None:
                        raise SnapshotError(
                            f"{path}: the photo projection {IMAGE_ADAPTER} needs a model "
                            "loader (models=...) to wrap the photo encoder"
                        )
                    image_embedder = _adapted(path, image_embedder, models)
                if image_embedder.dim != images.vectors.shape[1]:
                    raise SnapshotError(
                        f"{path}: image embedder {image_embedder.name!r} gives "
                        f"{image_embedder.dim}-d vectors, the snapshot holds "
                        f"{images.vectors.shape[1]}-d photo vectors"
                    )
        semantic = vectors is not None and embedder is not None
        scorer: RelevanceScorer | None
        if ranker is None or isinstance(ranker, str):
            spec = ranker or "none"
            if models is None:
                if spec not in ("auto", "none"):
                    raise SnapshotError(
                        f"cannot load ranking model {ranker!r}: no model loader given"
                    )
                scorer = None  # no loader: fusion order
            else:
                try:
                    scorer = models.ranker(spec, semantic=semantic)
                except (OSError, ValueError) as exc:
                    raise SnapshotError(f"cannot load ranking model {ranker!r}: {exc}") from exc
        else:
            scorer = ranker
        return cls(
            manifest,
            store,
            lexical,
            vocabulary,
            analyzer,
            vectors=vectors,
            ann=ann,
            embedder=embedder if vectors is not None else None,
            config=config,
            scorer=scorer,
            snapshot_dir=path,
            colours=colours,
            images=images if image_embedder is not None else None,
            image_embedder=image_embedder,
        )

    def __len__(self) -> int:
        return len(self.store)

    @property
    def suggester(self) -> Suggester:
        """As-you-type suggestions over this snapshot's titles (built on first use)."""
        with self._suggester_lock:
            if not self._suggester_box:
                self._suggester_box.append(self._open_suggester())
            return self._suggester_box[0]

    def _open_suggester(self) -> Suggester:
        """The snapshot's suggester: read from its ``suggestions.npz`` (built with it), or built
        from the titles for a snapshot written before it had one."""
        stored = self.snapshot_dir / SUGGESTIONS if self.snapshot_dir is not None else None
        if stored is not None and stored.is_file():
            try:
                arrays = load_suggestions(stored)
            except ValueError as exc:
                raise SnapshotError(str(exc)) from exc
            return Suggester.from_arrays(arrays, self.vocabulary, self.analyzer)
        return Suggester.from_products(self.store.products, self.vocabulary, self.analyzer)

    def adopt_suggester(self, suggester: Suggester) -> None:
        """Use a suggester built elsewhere for this snapshot's titles (a service builds it in a
        child process, off the GIL its searches need); no-op when one is already built."""
        with self._suggester_lock:
            if not self._suggester_box:
                self._suggester_box.append(suggester)

    def facet_names(self) -> list[str]:
        """Valid facet names for this snapshot."""
        return self.store.facet_names()

    def get_product(self, product_id: str) -> Product:
        """A product by id.

        Raises:
            ProductNotFoundError: no such product.
        """
        return self.store.get(product_id)

    def import_report(self) -> dict[str, object] | None:
        """The import report stored with the snapshot, if any."""
        return self._report(IMPORT_REPORT)

    def colour_report(self) -> dict[str, object] | None:
        """The colour report stored with the snapshot (text/photo conflicts, unreadable
        photos, unknown colour values), if any."""
        return self._report(COLOUR_REPORT)

    def _report(self, name: str) -> dict[str, object] | None:
        if self.snapshot_dir is None or not (self.snapshot_dir / name).is_file():
            return None
        data = orjson.loads((self.snapshot_dir / name).read_bytes())
        return data if isinstance(data, dict) else None

    def colour_filter(self, value: str) -> npt.NDArray[np.bool_]:
        """Products in the colour a ``colour`` parameter names: any shade of its family or a
        close colour (the closest rank first: the colour is also part of the query).

        Raises:
            InvalidRequestError: ``value`` is no colour name or hex code (field ``colour``).
        """
        try:
            colour = parse_colour(value)
        except ValueError as exc:
            raise InvalidRequestError("colour", str(exc)) from exc
        return self.colours.filter_mask(colour)

    def price_column(self, currency: str | None = None) -> PriceColumn:
        """Every product's price in the currency a request asks for (its ``currency``, else the
        shop's base currency, else the catalogue's main one), converted with the configured
        rates; prices no rate converts are left out (NaN), never compared as bare numbers.

        Raises:
            InvalidRequestError: ``currency`` is not an ISO 4217 code, or no product is priced
                in it and no rate converts to it (field ``currency``).
        """
        base = self.config.currency or self.store.main_currency
        if currency is None:
            return self.store.price_column(base, base, self.config.currency_rates)
        code = currency.strip().upper()
        if not _CURRENCY_CODE.fullmatch(code):
            raise InvalidRequestError(
                "currency", f"{currency!r} is not a three-letter ISO 4217 code such as PLN or EUR"
            )
        known = {*self.store.currencies, *self.config.currency_rates}
        if base is not None:
            known.add(base)
        if code not in known:
            raise InvalidRequestError(
                "currency",
                f"no product is priced in {code} and no exchange rate converts to it; "
                f"valid: {', '.join(sorted(known)) or 'none (the catalogue names no currency)'}",
            )
        return self.store.price_column(code, base, self.config.currency_rates)

    def with_rerankers(self, rerankers: Sequence[Reranker]) -> SearchEngine:
        """This engine with the shop's re-rankers (behaviour, personalisation) after the
        built-in stages: the composition root assembles the serving pipeline with it once per
        snapshot. Everything else is shared; what changes per request goes in a
        :class:`search.tuning.Tuning`."""
        engine = copy.copy(self)
        engine.rerankers = tuple(rerankers)
        return engine

    def with_config(self, config: EngineConfig) -> SearchEngine:
        """A new engine over the same loaded snapshot with other query-time settings (BM25
        parameters, candidate depths, currencies: what a service sets once at start-up; weights
        and rules that vary per request go in a :class:`search.tuning.Tuning` instead)."""
        lexical = self.lexical
        if config.bm25 != self.config.bm25:
            lexical = LexicalIndex(self.lexical.data, config.bm25)
        vectors = ann = None
        if self.vector_index is not None:
            vectors, ann = self.vector_index.vectors, self.vector_index.ann
        engine = SearchEngine(
            self.manifest,
            self.store,
            lexical,
            self.vocabulary,
            self.analyzer,
            vectors=vectors,
            ann=ann,
            embedder=self.embedder,
            config=config,
            rerankers=self.rerankers,
            scorer=self.scorer,
            snapshot_dir=self.snapshot_dir,
            colours=self.colours,
            rules=self.tuning.rules,
            images=self.images,
            image_embedder=self.image_embedder,
        )
        engine._suggester_box = self._suggester_box
        engine._suggester_lock = self._suggester_lock
        return engine

    # --- searching --------------------------------------------------------------------------

    def validate(self, request: SearchRequest) -> None:
        """Check a request's page size, page, price range and facet names.

        Raises:
            InvalidRequestError: the first bad parameter (the error names it).
        """
        if not 1 <= request.k <= self.config.max_k:
            raise InvalidRequestError("k", f"must be between 1 and {self.config.max_k}")
        if request.page < 1:
            raise InvalidRequestError("page", "must be 1 or more")
        f = request.filters
        if f.price_min is not None and f.price_max is not None and f.price_min > f.price_max:
            raise InvalidRequestError("price_min", "must not be greater than price_max")
        valid = self.facet_names()
        for name in request.facets:
            if name not in valid:
                raise InvalidRequestError(
                    "facets", f"unknown facet {name!r}; valid facets: {', '.join(valid)}"
                )
        if not 1 <= request.facet_limit <= MAX_FACET_LIMIT:
            raise InvalidRequestError("facet_limit", f"must be between 1 and {MAX_FACET_LIMIT}")
        if request.where is not None:
            depth, leaves = condition_size(request.where)
            if depth > MAX_CONDITION_DEPTH or leaves > MAX_CONDITION_LEAVES:
                raise InvalidRequestError(
                    "where",
                    f"nests {depth} deep with {leaves} conditions; at most "
                    f"{MAX_CONDITION_DEPTH} deep and {MAX_CONDITION_LEAVES} conditions",
                )

    def run_retrievers(
        self,
        query: AnalyzedQuery,
        k: int,
        allowed: npt.NDArray[np.bool_] | None,
        tuning: Tuning | None = None,
    ) -> dict[str, list[Hit]]:
        """Each retriever's hits for an analysed query (those the tuning's weights keep on)."""
        return self.retrieve(query, k, allowed, tuning or self.tuning)[0]

    def retrieve(
        self,
        query: AnalyzedQuery,
        k: int,
        allowed: npt.NDArray[np.bool_] | None,
        tuning: Tuning,
    ) -> tuple[dict[str, list[Hit]], GroupScores | None]:
        """Each retriever's hits (those the tuning's weights keep on, the lexical one with the
        tuning's colour weight) and the lexical retriever's raw scores of every document."""
        runs: dict[str, list[Hit]] = {}
        lexical_scores = None
        for name, retriever in self.retrievers.items():
            if tuning.retriever_weight(name) <= 0:
                continue
            if retriever is self._match_all:
                runs[name], lexical_scores = self._match_all.retrieve_scored(
                    query, k, allowed, colour_weight=tuning.weights.colour_weight
                )
            else:
                runs[name] = retriever.retrieve(query, k, allowed)
        return runs, lexical_scores

    def fusion_weights(self, tuning: Tuning | None = None) -> dict[str, float]:
        """Fusion weight per retriever: the configured ones with the tuning's over them."""
        return {**self.config.weights, **(tuning or self.tuning).weights.retrievers}

    def fuse(self, runs: Mapping[str, Sequence[Hit]], tuning: Tuning | None = None) -> list[Hit]:
        """Fuse runs with the configured method and the tuning's weights."""
        weights = self.fusion_weights(tuning)
        if self.config.fusion == "rrf":
            return FUSERS["rrf"](runs, weights, self.config.rrf_k)  # type: ignore[call-arg]
        return FUSERS["score"](runs, weights)

    def _matching_docs(
        self,
        found: SearchEngine.Candidates,
        allowed: npt.NDArray[np.bool_] | None,
        fused: Sequence[Hit],
    ) -> npt.NDArray[np.int64]:
        """Documents counted in ``total`` and facets: those covering the query well (every word
        of one or two, 60% of longer queries), plus the ranked candidates."""
        result = found.lexical_scores
        if result is None:
            result = self._match_all.scores(found.query)
        if result.n_groups:
            need = result.n_groups if result.n_groups <= 2 else int(np.ceil(result.n_groups * 0.6))
            mask = (result.matched >= need) & (result.scores > 0)
        else:
            mask = np.zeros(len(self.store), dtype=bool)
        if fused:
            mask[np.fromiter((h.doc for h in fused), dtype=np.int64)] = True
        if allowed is not None:
            mask &= allowed
        return np.flatnonzero(mask)

    @dataclass(frozen=True, slots=True)
    class Candidates:
        """What understanding, retrieval and fusion made of a query (before re-ranking)."""

        query: AnalyzedQuery
        runs: Mapping[str, list[Hit]]
        fused: list[Hit]
        lexical_scores: GroupScores | None = None

    def candidates(
        self,
        request: SearchRequest,
        allowed: npt.NDArray[np.bool_] | None = None,
        k: int | None = None,
        tuning: Tuning | None = None,
        synonyms: Mapping[str, Sequence[str]] | None = None,
    ) -> SearchEngine.Candidates:
        """Understand, embed, retrieve and fuse.

        Args:
            request: The request (its text is what counts here).
            allowed: Filter mask, or None.
            k: Candidates per retriever (default: the configured number).
            tuning: Weights of the retrievers and the colour match (default: the engine's).
            synonyms: Query synonyms of the matched rules, over the configured ones.
        """
        tuning = tuning or self.tuning
        query = self.understander.understand(request, synonyms)
        if query.is_empty:
            return SearchEngine.Candidates(query, {}, [])
        if (
            self.embedder is not None
            and "semantic" in self.retrievers
            and tuning.retriever_weight("semantic") > 0
            and query.semantic_text.strip()
        ):
            query = replace(query, vector=self.embedder.embed_queries([query.semantic_text])[0])
        runs, lexical_scores = self.retrieve(query, k or self.config.candidates, allowed, tuning)
        return SearchEngine.Candidates(query, runs, self.fuse(runs, tuning), lexical_scores)

    def rerank(
        self, query: AnalyzedQuery, hits: list[Hit], context: RankingContext
    ) -> tuple[Reranked, dict[str, Mapping[int, Effect]]]:
        """Run every stage (:attr:`stages`) over the fused hits, in order.

        Returns:
            The last stage's output (with the fallback that filled an empty list, if any) and
            each stage's effects by stage name.
        """
        effects: dict[str, Mapping[int, Effect]] = {}
        out = Reranked(hits)
        fallback = None
        for stage in self.stages:
            out = stage.rerank(query, out.hits, context)
            fallback = out.fallback or fallback
            if out.effects:
                effects[stage.name] = out.effects
        return replace(out, fallback=fallback), effects

    def search(self, request: SearchRequest, tuning: Tuning | None = None) -> SearchResult:
        """Run the pipeline for one request: understand -> retrieve -> fuse -> re-rank ->
        merchandise -> page.

        Args:
            request: What the shopper asked.
            tuning: Ranking weights and merchandising rules for this request (a saved
                version's, an A/B arm's); None ranks with the engine's own (:attr:`tuning`).

        Raises:
            InvalidRequestError: a bad parameter (the error names it).
        """
        started = time.perf_counter()
        tuning = tuning or self.tuning
        self.validate(request)
        rules = tuning.rules
        matched = rules.match(request.text, channel=request.channel) if rules else None
        prices = self.price_column(request.currency)
        allowed = self.allowed_mask(request, prices, rules, matched)
        window = request.page * request.k
        depth = max(self.config.candidates, window)
        synonyms = {**tuning.synonyms, **matched.synonyms} if matched else tuning.synonyms
        found = self.candidates(request, allowed, depth, tuning, synonyms)
        effects: dict[str, Mapping[int, Effect]] = {}
        if found.query.is_empty:  # a browse: every allowed product, sorted or a page's worth
            matching = self._browsable(found.query, allowed)
            shown = matching[:window] if request.sort is SortOrder.RELEVANCE else matching
            out = Reranked([Hit(int(d), 0.0, "browse") for d in shown])
        else:
            context = replace(
                RankingContext.from_request(request),
                weights=tuning.weights,
                runs=found.runs,
                lexical=found.lexical_scores,
                allowed=allowed,
                depth=depth,
            )
            out, effects = self.rerank(found.query, found.fused, context)
            matching = self._matching_docs(found, allowed, out.hits)
        ranked = out.hits
        if request.sort is not SortOrder.RELEVANCE and not found.query.is_empty:
            in_ranked = {h.doc for h in ranked}
            ranked = ranked + [
                Hit(int(d), 0.0, "match") for d in matching if int(d) not in in_ranked
            ]
        rule_effects: dict[int, list[str]] = {}
        if matched and rules is not None:
            ranked, rule_effects = rules.apply(
                ranked, self.store, matched, allowed=allowed, explain=request.explain, window=window
            )
        if request.sort is not SortOrder.RELEVANCE:
            ranked = self._sort_by_price(
                ranked, prices, descending=request.sort is SortOrder.PRICE_DESC
            )
        page = ranked[window - request.k : window]
        explain = (found, tuning, effects, rule_effects) if request.explain else None
        return replace(
            self._answer(request, page, matching, prices, started, explain),
            corrected_query=found.query.corrected_text,
            fallback=out.fallback,
            redirect=matched.redirect if matched is not None else None,
        )

    def _answer(
        self,
        request: SearchRequest,
        page: Sequence[Hit],
        matching: npt.NDArray[np.int64],
        prices: PriceColumn,
        started: float,
        explain: tuple[
            SearchEngine.Candidates,
            Tuning,
            Mapping[str, Mapping[int, Effect]],
            Mapping[int, Sequence[str]],
        ]
        | None,
    ) -> SearchResult:
        """The answer: the page's products (with explanations when asked), the total and the
        facets over every matching product, in the prices' currency."""
        hits = tuple(
            ResultHit(
                product=self.store.products[h.doc],
                score=h.score,
                explanation=self._explain(*explain, hit=h) if explain is not None else None,
                colours=self.colours.of(h.doc),
            )
            for h in page
        )
        return SearchResult(
            query=request.text,
            corrected_query=None,
            total=len(matching),
            hits=hits,
            facets=self.facets(
                matching.astype(np.int64), request.facets, prices, request.facet_limit
            ),
            took_ms=(time.perf_counter() - started) * 1000.0,
            currency=prices.currency,
            converted=prices.converted,
            facet_stats=(
                {"price": stats}
                if "price" in request.facets
                and (stats := self.store.price_stats(matching, prices)) is not None
                else {}
            ),
        )

    def allowed_mask(
        self,
        request: SearchRequest,
        prices: PriceColumn,
        rules: RuleSet | None,
        matched: MatchedRules | None,
    ) -> npt.NDArray[np.bool_] | None:
        """The products a request may show: its filters and ``where`` condition, minus what
        its rules hide (neither retrieved nor counted in ``total`` and facets), narrowed to its
        ``colour``."""
        allowed = self.store.mask(request.filters, prices)
        if request.where is not None:
            passing = self.condition_mask(request.where, prices)
            allowed = passing if allowed is None else allowed & passing
        if matched is not None and rules is not None:
            hidden = rules.hidden_mask(self.store, matched)
            if hidden is not None:
                allowed = ~hidden if allowed is None else allowed & ~hidden
        if request.colour is not None:
            in_colour = self.colour_filter(request.colour)
            allowed = in_colour if allowed is None else allowed & in_colour
        return allowed

    def condition_mask(
        self, condition: Condition, prices: PriceColumn | None = None
    ) -> npt.NDArray[np.bool_]:
        """The products that pass a boolean condition (``SearchRequest.where``).

        Leaves are :class:`~search.types.Filters` (as the store filters) and
        :class:`~search.types.ColourIs` (as :meth:`colour_filter`); a product without a
        comparable price fails a price leaf, so ``Not`` of one keeps it.

        Args:
            condition: The condition; its depth is bounded by :meth:`validate`.
            prices: The prices price leaves compare (None: the bare amounts).

        Raises:
            InvalidRequestError: a colour leaf that names no colour (field ``colour``).
        """
        if isinstance(condition, AllOf | AnyOf):
            every = isinstance(condition, AllOf)
            out = np.full(len(self.store), every, dtype=bool)
            for child in condition.conditions:
                if every:
                    out &= self.condition_mask(child, prices)
                else:
                    out |= self.condition_mask(child, prices)
            return out
        if isinstance(condition, Not):
            return ~self.condition_mask(condition.condition, prices)
        if isinstance(condition, ColourIs):
            return self.colour_filter(condition.value)
        mask = self.store.mask(condition, prices)
        return np.ones(len(self.store), dtype=bool) if mask is None else mask

    def _browsable(
        self, query: AnalyzedQuery, allowed: npt.NDArray[np.bool_] | None
    ) -> npt.NDArray[np.int64]:
        """A browse request's products (no words to match): every allowed one, closest to the
        query's colours first when it names some."""
        matching = np.arange(len(self.store)) if allowed is None else np.flatnonzero(allowed)
        if query.colours:
            closeness = self.colours.match_all(query.colours)[matching]
            matching = matching[np.argsort(-closeness, kind="stable")]
        return matching.astype(np.int64)

    def search_image(
        self, image: Any, request: SearchRequest, tuning: Tuning | None = None
    ) -> SearchResult:
        """Products that look like a shopper's photo, optionally narrowed by text
        (:meth:`search.photos.PhotoSearch.search_image`).

        Raises:
            InvalidRequestError: photo search is off for this snapshot (field ``image``), or a
                bad parameter.
        """
        if self.photos is None:
            raise InvalidRequestError(
                "image", "photo search is off: this snapshot was built without photo vectors"
            )
        return self.photos.search_image(image, request, tuning or self.tuning)

    def similar(
        self, product_id: str, request: SearchRequest, tuning: Tuning | None = None
    ) -> SearchResult:
        """Products whose photos look like this product's main photo
        (:meth:`search.photos.PhotoSearch.similar`).

        Raises:
            ProductNotFoundError: no such product.
            InvalidRequestError: photo search is off, or the product has no readable photo
                (field ``product_id``).
        """
        if product_id not in self.store.doc_of:
            raise ProductNotFoundError(product_id)
        if self.photos is None:
            raise InvalidRequestError(
                "product_id", "photo search is off: this snapshot was built without photo vectors"
            )
        return self.photos.similar(product_id, request, tuning or self.tuning)

    def facets(
        self,
        docs: npt.NDArray[np.int64],
        names: Sequence[str],
        prices: PriceColumn,
        limit: int = 20,
    ) -> dict[str, tuple[FacetValue, ...]]:
        """Facet counts, at most ``limit`` values per facet; the colour facet counts colour
        families (text and photo colours) and carries a swatch per value; the price facet
        buckets ``prices`` (in their currency)."""
        if not names:
            return {}
        out = self.store.facets(
            docs, [n for n in names if n != "colour"], limit=limit, prices=prices
        )
        if "colour" in names:
            counts = self.colours.family_counts(docs)
            ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
            out["colour"] = tuple(FacetValue(f, c, family_swatch(f)) for f, c in ranked)
        return {name: out[name] for name in names}

    def search_ids(self, text: str, k: int = 10, *, as_you_type: bool = False) -> list[str]:
        """Product ids for a query text (benchmarks and the CLI's fast path)."""
        result = self.search(SearchRequest(text=text, k=k, as_you_type=as_you_type))
        return [h.product.id for h in result.hits]

    def _sort_by_price(
        self, hits: list[Hit], column: PriceColumn, *, descending: bool
    ) -> list[Hit]:
        """Hits by their price in ``column``'s currency. Prices no rate converts come after
        the comparable ones (grouped by currency, each group in its own order), and products
        without a price last; the stable sort keeps relevance order among equal prices."""
        prices, amounts, currencies = column.prices, self.store.prices, self.store.currency_ids
        sign = -1.0 if descending else 1.0

        def key(h: Hit) -> tuple[int, int, float]:
            p = prices[h.doc]
            if np.isfinite(p):
                return (0, 0, sign * float(p))
            amount = amounts[h.doc]
            if np.isfinite(amount):
                return (1, int(currencies[h.doc]), sign * float(amount))
            return (2, 0, 0.0)

        return sorted(hits, key=key)

    def _explain(
        self,
        found: SearchEngine.Candidates,
        tuning: Tuning,
        effects: Mapping[str, Mapping[int, Effect]],
        rule_effects: Mapping[int, Sequence[str]],
        *,
        hit: Hit,
    ) -> Explanation:
        query = found.query
        weights = self.fusion_weights(tuning)
        traces = []
        for name, run in found.runs.items():
            for rank, other in enumerate(run, start=1):
                if other.doc == hit.doc:
                    traces.append(RetrieverTrace(name, rank, other.score, weights.get(name, 1.0)))
                    break
        matched: dict[str, tuple[str, ...]] = {}
        product_terms = self._doc_term_ids(hit.doc)
        for word in query.words:
            terms = tuple(
                dict.fromkeys(
                    f"{a.word} ({a.kind.value})"
                    for a in word.alternatives
                    if a.term_id in product_terms
                )
            )
            if terms:
                matched[word.text] = terms
        adjustments = []
        if query.corrected_text:
            adjustments.append(("understand", f"searched as {query.corrected_text!r}"))
        strength = tuning.weights.colour_rerank
        for colour in query.colours:
            best = self.colours.best_colour(hit.doc, colour)
            if best is None:
                adjustments.append(("colour", f"asked {colour.name}: product has no known colour"))
            else:
                pc, grade = best
                adjustments.append(
                    (
                        "colour",
                        f"asked {colour.name} ({colour.hex}): closest product colour {pc.name} "
                        f"({pc.hex}, {pc.source}, share {pc.share:.2f}) closeness {grade:.2f}, "
                        f"+{strength * grade / len(query.colours):.2f} to the rank score",
                    )
                )
        fused_score = next((h.score for h in found.fused if h.doc == hit.doc), hit.score)
        for stage, by_doc in effects.items():
            effect = by_doc.get(hit.doc)
            if effect is not None:
                adjustments.append((stage, effect.describe()))
        if rule_effects:
            adjustments.extend(explain_lines(rule_effects, hit.doc))
        return Explanation(
            retrievers=tuple(traces),
            fused_score=fused_score,
            adjustments=tuple(adjustments),
            matched_terms=matched,
        )

    def _doc_term_ids(self, doc: int) -> set[int]:
        return self.lexical.data.doc_terms(doc)


def replace_weights(config: EngineConfig, **weights: float) -> EngineConfig:
    """A copy of ``config`` with some retriever weights changed."""
    return replace(config, weights={**config.weights, **weights})
