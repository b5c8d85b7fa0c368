"""The composition root: everything that loads models, opens snapshots, wires the event
signals and merchandising into an engine, and swaps the serving engine.

``api/app.py`` only assembles the FastAPI application (middleware, routers, lifespan) and calls
into this module; routes and ``api/deps.py`` reach the serving engine through ``app.state`` and
call this module to change it, so nothing under ``api/`` imports ``api/app.py`` back.
"""

from __future__ import annotations

import gc
import logging
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI

from api.settings import Settings
from merchandising.store import ConfigStore, ConfigVersion
from models.loader import PACKAGED_MODELS
from models.runtime import release_free_memory
from search.engine import EngineConfig, SearchEngine
from search.errors import SnapshotError
from search.index.snapshot import last_good_path, record_last_good, same_snapshot
from search.protocols import Reranker
from search.tuning import Tuning
from search.types import SearchRequest
from search.weights import RankingWeights

if TYPE_CHECKING:
    from events.signals import SignalsRefresher

logger = logging.getLogger("productsearch.api")


#: Engines opened from the last good snapshot instead of the configured one -> the warning
#: the service shows (in logs and ``/health``) while it serves them.
_FALLBACKS: weakref.WeakKeyDictionary[SearchEngine, str] = weakref.WeakKeyDictionary()


def open_engine(settings: Settings, *, last_good: bool = True) -> SearchEngine:
    """Open the snapshot the settings name, as the service and the CLI serve it.

    A restart must not turn a bad rebuild (which ``/admin/snapshot/reload`` refuses) into an
    outage: when the configured snapshot fails its checks, the last snapshot this service
    verified and served (kept beside it by :func:`search.index.snapshot.record_last_good`) is opened
    instead, with an error in the logs, and the service reports ``"degraded": true`` and the
    reason in ``/health`` until a good snapshot is reloaded.

    Args:
        settings: Service settings; ``index_dir`` and ``text_embedder`` are used.
        last_good: Fall back to the last good snapshot (False: a reload, where the serving
            engine stays instead).

    Returns:
        A ready engine (over the configured snapshot, or over the last good one).

    Raises:
        SnapshotError: No snapshot is configured, or it is missing, corrupt or incompatible
            and no good one is kept (the message gives both reasons).
    """
    from models.runtime import limit_cpu_threads

    limit_cpu_threads(settings.model_threads)
    if settings.index_dir is None:
        raise SnapshotError(
            "no index snapshot configured: set PRODUCTSEARCH_INDEX_DIR (or pass --index)"
        )
    try:
        return _open(settings, settings.index_dir)
    except SnapshotError as exc:
        fallback = last_good_path(settings.index_dir)
        if not last_good or not fallback.is_dir():
            raise
        reason = str(exc)
    try:
        engine = _open(settings, fallback)
    except SnapshotError as exc:
        raise SnapshotError(
            f"{reason}; the last good snapshot {fallback} fails too: {exc}"
        ) from exc
    warning = (
        f"serving the last good snapshot {engine.manifest.snapshot_id} ({fallback}) because "
        f"{settings.index_dir} cannot be served: {reason}. Rebuild it and POST "
        "/admin/snapshot/reload"
    )
    logger.error("DEGRADED: %s", warning)
    _FALLBACKS[engine] = warning
    return engine


def engine_config(settings: Settings) -> EngineConfig:
    """The query-time settings every engine the service opens is given (start-up, reloads and
    catalogue changes alike)."""
    return EngineConfig(
        max_k=settings.max_k,
        currency=settings.currency,
        currency_rates=settings.currency_rates,
    )


def open_snapshot(path: Path, **options: Any) -> SearchEngine:
    """Open a snapshot with the installed model backends: the query embedder, the photo
    encoder with its catalogue projection and the learned ranker its manifest names.

    Args:
        path: Snapshot folder.
        **options: :meth:`search.engine.SearchEngine.open`'s other keyword arguments.

    Raises:
        SnapshotError: the snapshot is missing, corrupt or incompatible, or a model it names
            cannot load.
    """
    return SearchEngine.open(path, models=PACKAGED_MODELS, **options)


def _open(settings: Settings, path: Path) -> SearchEngine:
    return open_snapshot(
        path,
        use_semantic=settings.text_embedder != "none",
        config=engine_config(settings),
    )


@contextmanager
def loading_off_gc() -> Iterator[None]:
    """Load a new engine into a serving process without stopping the world for it.

    Loading a snapshot allocates hundreds of thousands of objects; with the cyclic garbage
    collector on, young collections scan them again and again and full collections walk the
    whole heap (the serving engine too), each holding the GIL: on 20,000 products opening took
    3.6-7.9 s with stalls of 280-440 ms for every request, against 2.0-2.7 s and stalls under
    100 ms with it paused. Afterwards the new objects are moved straight into the oldest
    generation (``gc.freeze`` then ``gc.unfreeze``: two list splices, no scan), so they do not
    count towards the next full collection either; garbage of the replaced engine is collected
    by the next regular full collection.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.unfreeze()
        if enabled:
            gc.enable()


def settle_heap() -> None:
    """Leave every object alive now (the snapshot, models, suggester, stemmer tables) out of
    the garbage collector's future passes (``gc.freeze``).

    A full collection walks every tracked object: 50-60 ms with the Home Depot snapshot open,
    with the GIL held, so a search that met one waited that long (tail latency). Frozen, they
    are skipped, and a collection walks only what requests made since. Called when the service
    is warm and, with several workers, in the parent right before it forks them (the Python
    documentation's advice: collections in the workers then never write to the pages they
    share with it). A later reload (:func:`loading_off_gc`) makes them collectable again, so a
    replaced engine is never kept; so does :func:`release_heap` when the application stops.
    Garbage made so far is collected first, so none is frozen.
    """
    gc.collect()
    gc.freeze()


def release_heap() -> None:
    """Undo :func:`settle_heap` when the application stops (an embedding process, a test
    that starts many applications: what a stopped one froze becomes collectable)."""
    gc.unfreeze()


def warm_up_engine(engine: SearchEngine) -> None:
    """Pay what a first request would: build the suggester and run one real query (query
    embedding, retrieval, the learned ranker, facets) and one suggestion.

    The first inference of a model allocates and compiles (a second or more with torch), and
    searches arriving meanwhile queue behind it until they time out (19 answered 503 right
    after a restart). ``/ready`` answers 200 only once this returned; a swapped-in snapshot is
    warmed before it serves.
    """
    # A stemmer that loads on first use (Polish: 4-7 s) would make a shopper wait.
    engine.analyzer.warm_up()
    suggester = engine.suggester
    products = engine.store.products
    text = products[0].title if len(products) else "warm up"
    engine.search(SearchRequest(text=text, k=10, facets=tuple(engine.facet_names()[:2])))
    engine.search(SearchRequest(text=" ".join(text.split()[:1]), k=10, as_you_type=True))
    suggester.suggest(text[:3])


def serving_weights(
    settings: Settings | None, version: ConfigVersion, engine: SearchEngine | None = None
) -> RankingWeights:
    """The ranking weights a configuration version serves with.

    Until a merchandiser saves weights (the version's are the defaults), the engine's own
    weights serve (its configuration's retriever and colour weights) with the behaviour and
    personalisation strengths of the settings (``PRODUCTSEARCH_BEHAVIOUR_WEIGHT``,
    ``PRODUCTSEARCH_PERSONALISATION_STRENGTH``); saved weights replace them all.
    """
    if version.weights != RankingWeights():
        return version.weights
    weights = engine.tuning.weights if engine is not None else version.weights
    if settings is None:
        return weights
    return replace(
        weights,
        behaviour=settings.behaviour_weight,
        personalisation=settings.personalisation_strength,
    )


def serve_engine(app: FastAPI, engine: SearchEngine) -> None:
    """Put ``engine`` into service: at start-up, and to swap to a new snapshot with no downtime.

    With events on, the behavioural signals and shopper profiles are (re)built for the engine's
    products, kept fresh in the background, and the behaviour and personalisation re-rankers
    are added to it. Everything is prepared before the one assignment that makes it serve, so
    requests in flight finish on the engine they started with and none sees a half-set-up one.
    ``events_db = none`` serves the engine as it is.
    """
    settings: Settings = app.state.settings
    app.state.snapshot_warning = _FALLBACKS.get(engine)
    if app.state.snapshot_warning is None:
        _keep_as_last_good(settings, engine)
    if isinstance(engine, SearchEngine):
        _ = engine.suggester  # built now (seconds on a large catalogue), not on a first keystroke
        # The passes over every title filled caches and freed much more than they kept: on a
        # million products this returns ~0.3 GB of RSS (benchmarks/scale.py service-probe).
        engine.analyzer.clear_cache()
        release_free_memory()
    if settings.events_db.strip().lower() in ("", "none"):
        app.state.base_engine = engine
        apply_merchandising(app)
        return
    from events.factory import open_event_store
    from events.profiles import ProfileAggregator
    from events.signals import BehaviourAggregator, BehaviourConfig
    from events.signals import SignalsRefresher as Refresher
    from search.rank.behaviour import BehaviourReranker
    from search.rank.personal import Catalogue, PersonalisationReranker

    store = getattr(app.state, "event_store", None)
    if store is None:
        store = open_event_store(settings.events_db, synchronous=settings.events_synchronous)
        app.state.event_store = store
    recorder = getattr(app.state, "impressions", None)
    if recorder is None or recorder.store is not store:
        from events.impressions import ImpressionRecorder

        # Every search answer is recorded (query_id, what it showed) in the background.
        recorder = ImpressionRecorder(store, flush_s=settings.impressions_flush_s)
        recorder.start()
        app.state.impressions = recorder
    behaviour = BehaviourAggregator(
        BehaviourConfig(
            half_life_days=settings.behaviour_half_life_days,
            min_shoppers=settings.behaviour_min_shoppers,
            demote_min_shoppers=settings.behaviour_demote_min_shoppers,
            max_choices_per_query=settings.behaviour_max_choices_per_query,
        )
    )
    catalogue = Catalogue.from_store(engine.store)
    profiles = ProfileAggregator(catalogue)
    refresher = Refresher(
        store,
        [behaviour, profiles],
        interval_s=settings.behaviour_refresh_s,
        retention_days=settings.events_retention_days,
    )
    refresher.refresh()
    # Both re-rankers are always built, at the settings' strengths; the merchandising weights
    # (apply_merchandising) set their strengths at run time and leave out those at 0.
    rerankers: list[Reranker] = list(engine.rerankers)
    rerankers.append(
        BehaviourReranker(behaviour, engine.store.ids, weight=settings.behaviour_weight)
    )
    rerankers.append(
        PersonalisationReranker(profiles, catalogue, strength=settings.personalisation_strength)
    )
    serving = engine.with_rerankers(rerankers)
    old: SignalsRefresher | None = getattr(app.state, "signals_refresher", None)
    refresher.start()
    app.state.signals_refresher = refresher
    app.state.behaviour = behaviour
    app.state.profiles = profiles
    app.state.base_engine = serving
    apply_merchandising(app)
    if old is not None:
        old.stop()
    logger.info("events in %s; behaviour and personalisation on", settings.events_db)


def warm_then_ready(app: FastAPI, engine: SearchEngine | None) -> None:
    """Warm ``engine`` up (:func:`warm_up_engine`), then mark the service ready for ``/ready``;
    a warm-up query that fails leaves it not ready."""
    try:
        if engine is not None:
            warm_up_engine(engine)
    except Exception:
        # A query that fails here fails for shoppers too: say so, and stay not ready.
        logger.exception("warm-up query failed; /ready stays 503")
        return
    settle_heap()
    app.state.ready = True
    logger.info("warm: first query answered, ready")


def _keep_as_last_good(settings: Settings, engine: SearchEngine) -> None:
    """Record the configured snapshot, now verified and served, as the last good one."""
    snapshot_dir = getattr(engine, "snapshot_dir", None)
    if settings.index_dir is None or snapshot_dir is None:
        return
    try:
        if Path(snapshot_dir).resolve() != Path(settings.index_dir).resolve():
            return
        if same_snapshot(snapshot_dir, last_good_path(snapshot_dir)):
            return
        record_last_good(snapshot_dir, engine.manifest)
    except OSError as exc:  # a read-only snapshot folder: serving matters more
        logger.warning("could not keep %s as the last good snapshot: %s", snapshot_dir, exc)


_MERCH_LOCK = threading.Lock()


def apply_merchandising(app: FastAPI) -> Tuning:
    """Resolve the current merchandising version into the tuning the service serves with: its
    ranking weights (:func:`serving_weights`) and its rules. Called at start-up, on a snapshot
    swap, and by the engine dependency when a newer version was saved (on this replica or
    another sharing the store). Nothing is built: the serving engine stays the same object
    and each search is handed the tuning (or its A/B arm's, :func:`api.deps.serve_variants`).

    Returns:
        The tuning now served.
    """
    with _MERCH_LOCK:
        base: SearchEngine = app.state.base_engine
        store: ConfigStore | None = getattr(app.state, "config_store", None)
        settings: Settings | None = getattr(app.state, "settings", None)
        version = ConfigVersion(0) if store is None else store.current()
        rules = version.rule_set() if version.rules else base.tuning.rules
        tuning = Tuning(serving_weights(settings, version, base), rules)
        # One assignment, so a request reads an engine, version and tuning that belong together.
        app.state.serving = (base, version, tuning)
        app.state.engine = base
        app.state.tuning = tuning
        app.state.config_version = version.version
        if version.version:
            logger.info("serving merchandising version %d", version.version)
        return tuning
