"""Build index snapshots on Ray: the per-product stages run as Ray Data jobs.

The catalogue is read and validated on the driver exactly as :mod:`indexer.build` reads it (the
same import report and bad rows). The expensive per-product stages run as Ray Data jobs over
an actor pool, so each worker loads its model once:

* ``photos``: each product's colours (text, and its main photo when ``photo_colours`` is on)
  and, when an image embedder is configured and products have photos, its photo vector;
* ``embed``: text vectors with the configured text embedder, in the very batches a local build
  embeds (:func:`indexer.build.embedding_batches`), so a quantised model gives the same vectors.

The driver gathers the results in product order, analyses the texts (term ids are assigned in
document order, so that stays in one process) and writes the snapshot with
:func:`indexer.build.write_snapshot`: the same files as a local build with the same embedder.

The same code runs on a local Ray instance (``address=None``, what the tests use) and on a
cluster (``address="auto"`` on a cluster node, or ``ray://head:10001``). Cluster nodes need
``productsearch`` installed (or shipped with ``runtime_env``) and product photos at paths or
URLs every node can read.

Ray is an optional dependency: ``pip install 'productsearch[distributed]'``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import orjson

from indexer.build import (
    BuildConfig,
    BuildResult,
    PhotoVectors,
    Progress,
    _analyse,
    _colour_features,
    embedding_batches,
    embedding_text,
    import_catalogue,
    with_catalogue_roots,
    write_snapshot,
)
from search.analysis import Analyzer
from search.types import Product, ProductColour

if TYPE_CHECKING:
    from search.index.snapshot import Manifest
    from search.protocols import TextEmbedder

RAY_INSTALL_HINT = "install 'productsearch[distributed]' (ray[data]) to build on Ray"

EmbedderFactory = Callable[[], "TextEmbedder | None"]
"""A picklable zero-argument callable that creates a text embedder (each Ray worker calls it
once); ``functools.partial(load_text_embedder, spec)`` for a spec."""


@dataclass(frozen=True, slots=True)
class RayOptions:
    """Where and how wide a Ray build runs.

    Attributes:
        address: Ray cluster to connect to: None starts a local instance (or uses the one this
            process started already), ``"auto"`` joins the cluster of this node,
            ``"ray://host:10001"`` connects through Ray Client.
        workers: Most model actors per stage; None: as many as the cluster's CPUs allow.
        cpus_per_worker: CPUs each actor reserves (its torch threads).
        products_per_block: Products per Ray Data block (the unit a worker is handed).
        runtime_env: Ray runtime environment for the job (e.g. ``{"py_modules": [...]}`` when
            the cluster lacks ``productsearch``), or None.
        num_cpus: CPUs of a local instance started here (None: all of this machine's).
        ray_progress_bars: Show Ray Data's own progress bars as well as the build's.
    """

    address: str | None = None
    workers: int | None = None
    cpus_per_worker: float = 1.0
    products_per_block: int = 512
    runtime_env: Mapping[str, Any] | None = None
    num_cpus: int | None = None
    ray_progress_bars: bool = False

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"workers must be >= 1 or None, got {self.workers}")
        if self.cpus_per_worker <= 0:
            raise ValueError(f"cpus_per_worker must be > 0, got {self.cpus_per_worker}")
        if self.products_per_block < 1:
            raise ValueError(f"products_per_block must be >= 1, got {self.products_per_block}")


def _import_ray() -> Any:
    try:
        import ray
        import ray.data  # the extra may install ray without its data library
    except ImportError as exc:
        raise ImportError(RAY_INSTALL_HINT) from exc
    return ray


@contextmanager
def ray_session(options: RayOptions | None = None) -> Iterator[Any]:
    """Connect to Ray for a build, and disconnect afterwards if this call connected.

    Args:
        options: The address and local-instance settings.

    Yields:
        The ``ray`` module, initialised.

    Raises:
        ImportError: ray[data] is not installed.
    """
    options = options or RayOptions()
    ray = _import_ray()
    if ray.is_initialized():
        yield ray
        return
    kwargs: dict[str, Any] = {"address": options.address, "log_to_driver": True}
    if options.runtime_env is not None:
        kwargs["runtime_env"] = dict(options.runtime_env)
    if options.address is None:
        kwargs |= {"num_cpus": options.num_cpus, "include_dashboard": False}
    ray.init(**kwargs)
    try:
        yield ray
    finally:
        ray.shutdown()


# --------------------------------------------------------------------------------------------
# Workers (created on Ray nodes: module-level classes, constructed from plain arguments)


class TextEmbedWorker:
    """Ray Data actor: embeds whole embedding batches with a model it loads once.

    Args:
        factory: Creates the text embedder.
        batch_size: The local build's embedding batch size (passed to ``embed_documents``).
    """

    def __init__(self, factory: EmbedderFactory, batch_size: int) -> None:
        embedder = factory()
        if embedder is None:
            raise ValueError("the embedder factory returned None on a Ray worker")
        embedder.warm_up()
        self.embedder = embedder
        self.batch_size = batch_size

    def __call__(self, batch: Mapping[str, npt.NDArray[Any]]) -> dict[str, npt.NDArray[Any]]:
        """Embed each row's texts as one batch; one output row per product."""
        rows: list[npt.NDArray[np.int64]] = []
        vectors: list[npt.NDArray[np.float32]] = []
        for ids, texts in zip(batch["rows"], batch["texts"], strict=True):
            rows.append(np.asarray(ids, dtype=np.int64))
            vectors.append(
                self.embedder.embed_documents(
                    [str(t) for t in texts], batch_size=self.batch_size
                ).astype(np.float32)
            )
        return {"row": np.concatenate(rows), "vector": np.vstack(vectors)}


class ProductWorker:
    """Ray Data actor: each product's colours and, optionally, photo vector.

    Args:
        image_embedder: Image embedder spec (as resolved on the driver), or None for none.
        photo_colours: Read colours from main photos too.
        image_cache: Folder for photos fetched over http(s), or None.
    """

    def __init__(
        self, image_embedder: str | None, photo_colours: bool, image_cache: str | None
    ) -> None:
        self.image_embedder: Any = None
        self.loader: Any = None
        if image_embedder is not None:
            from indexer.images import ImageLoader
            from models.image import load_image_embedder

            self.image_embedder = load_image_embedder(image_embedder)
            if self.image_embedder is None:
                raise ValueError(f"image embedder {image_embedder!r} resolved to none")
            self.image_embedder.warm_up()
            self.loader = ImageLoader(cache_dir=Path(image_cache) if image_cache else None)
        self.extractor: Any = None
        if photo_colours:
            from indexer.colours import PhotoColourExtractor

            self.extractor = PhotoColourExtractor()

    def __call__(self, batch: Mapping[str, npt.NDArray[Any]]) -> dict[str, npt.NDArray[Any]]:
        """Colours (and photo vectors) of a batch of products, one output row per product."""
        from indexer.product_colours import index_colours

        products = [Product.from_dict(orjson.loads(raw)) for raw in batch["product"]]
        out: dict[str, Any] = {"row": np.asarray(batch["row"], dtype=np.int64)}
        features: Sequence[Any] | None = None
        if self.image_embedder is not None:
            from indexer.images import embed_product_images

            found = embed_product_images(
                [p.images for p in products], self.image_embedder, loader=self.loader
            )
            features = _colour_features((self.image_embedder, found))
            problems: list[list[dict[str, str]]] = [[] for _ in products]
            for problem in found.problems:
                problems[problem.product].append(
                    {"image": problem.location, "reason": problem.message}
                )
            out |= {
                "image_vector": found.vectors.astype(np.float32),
                "has_image": found.has_vector.astype(bool),
                "image_problems": np.array([orjson.dumps(p) for p in problems], dtype=object),
            }
        colours, reports = [], []
        for i, product in enumerate(products):
            # One product at a time: its own slice of the colour report, merged in product
            # order on the driver into what one index_colours call over all would report.
            found_colours, report = index_colours(
                [product],
                extractor=self.extractor,
                features=[features[i]] if features is not None else None,
            )
            colours.append(orjson.dumps([c.to_dict() for c in found_colours[0]]))
            reports.append(orjson.dumps(report.to_dict()))
        out["colours"] = np.array(colours, dtype=object)
        out["colour_report"] = np.array(reports, dtype=object)
        return out


@functools.lru_cache(maxsize=4)
def _product_worker(
    image_embedder: str | None, photo_colours: bool, image_cache: str | None
) -> ProductWorker:
    return ProductWorker(image_embedder, photo_colours, image_cache)


def _colours_batch(
    batch: Mapping[str, npt.NDArray[Any]],
    *,
    image_embedder: str | None,
    photo_colours: bool,
    image_cache: str | None,
) -> dict[str, npt.NDArray[Any]]:
    """Ray Data task: :class:`ProductWorker`'s work with one worker per process, kept."""
    return _product_worker(image_embedder, photo_colours, image_cache)(batch)


# --------------------------------------------------------------------------------------------
# Driver


@dataclass(frozen=True, slots=True)
class _Photos:
    colours: list[list[ProductColour]]
    colour_report: dict[str, Any]
    images: PhotoVectors | None


def _workers(ray: Any, options: RayOptions) -> int:
    if options.workers is not None:
        return options.workers
    cpus = float(ray.cluster_resources().get("CPU", 1.0))
    return max(1, int(cpus // options.cpus_per_worker))


def _pool(ray: Any, options: RayOptions, blocks: int) -> Any:
    size = max(1, min(_workers(ray, options), blocks))
    return ray.data.ActorPoolStrategy(min_size=1, max_size=size)


def _chunks(total: int, size: int) -> list[range]:
    return [range(start, min(start + size, total)) for start in range(0, total, size)]


def _run_photos(
    ray: Any,
    products: Sequence[Product],
    config: BuildConfig,
    image_embedder: Any,
    options: RayOptions,
    report: Progress,
) -> _Photos:
    import pyarrow as pa

    total = len(products)
    # Workers load the backend the driver resolved ("auto" could resolve differently there).
    image_spec = image_embedder.name if image_embedder is not None else None
    tables = [
        pa.table(
            {
                "row": pa.array(list(chunk), type=pa.int64()),
                "product": pa.array(
                    [orjson.dumps(products[i].to_dict()) for i in chunk], type=pa.binary()
                ),
            }
        )
        for chunk in _chunks(total, options.products_per_block)
    ]
    settings = {
        "image_embedder": image_spec,
        "photo_colours": config.photo_colours,
        "image_cache": str(config.image_cache) if config.image_cache else None,
    }
    inputs = ray.data.from_arrow(tables)
    if image_spec is None:
        # No model to hold: tasks on Ray's pooled worker processes start faster than actors,
        # and each process keeps its colour extractor between batches.
        dataset = inputs.map_batches(
            _colours_batch,
            fn_kwargs=settings,
            batch_size=256,
            batch_format="numpy",
            num_cpus=options.cpus_per_worker,
        )
    else:
        dataset = inputs.map_batches(
            ProductWorker,
            fn_constructor_kwargs=settings,
            batch_size=32,  # as the local build reads and encodes photos
            batch_format="numpy",
            compute=_pool(ray, options, len(tables)),
            num_cpus=options.cpus_per_worker,
        )
    colour_json: list[bytes] = [b"[]"] * total
    report_json: list[bytes] = [b"{}"] * total
    problems_json: list[bytes] = [b"[]"] * total
    vectors: npt.NDArray[np.float32] | None = None
    has_vector = np.zeros(total, dtype=bool)
    done = 0
    for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
        rows = batch["row"]
        for row, colours, part in zip(rows, batch["colours"], batch["colour_report"], strict=True):
            colour_json[row], report_json[row] = colours, part
        if image_spec is not None:
            if vectors is None:
                vectors = np.zeros((total, batch["image_vector"].shape[1]), dtype=np.float32)
            vectors[rows] = batch["image_vector"]
            has_vector[rows] = batch["has_image"]
            for row, problems in zip(rows, batch["image_problems"], strict=True):
                problems_json[row] = problems
        done += len(rows)
        if image_spec is not None:
            report("images", done, total)
        report("colours", done, total)
    colours = [[ProductColour.from_dict(c) for c in orjson.loads(raw)] for raw in colour_json]
    images = None
    if image_embedder is not None and vectors is not None:
        images = PhotoVectors(
            name=image_embedder.name,
            version=image_embedder.version,
            vectors=vectors,
            has_vector=has_vector,
            problems=[
                {"product_id": products[row].id, **problem}
                for row, raw in enumerate(problems_json)
                for problem in orjson.loads(raw)
            ],
        )
    return _Photos(colours, _merge_colour_reports(report_json), images)


def _merge_colour_reports(parts: Sequence[bytes]) -> dict[str, Any]:
    """One colour report from per-product ones, as one pass over all products makes it: counts
    summed, lists concatenated in product order."""
    from indexer.product_colours import ColourReport

    merged: dict[str, Any] = ColourReport().to_dict()
    for raw in parts:
        for key, value in orjson.loads(raw).items():
            if isinstance(value, list):
                merged[key].extend(value)
            else:
                merged[key] += value
    return merged


def _run_embed(
    ray: Any,
    products: Sequence[Product],
    factory: EmbedderFactory,
    config: BuildConfig,
    options: RayOptions,
    report: Progress,
) -> npt.NDArray[np.float32]:
    import pyarrow as pa

    total = len(products)
    texts = [embedding_text(p) for p in products]
    step = max(config.embed_batch_size, 1)
    batches = embedding_batches(texts, step)
    per_block = max(1, options.products_per_block // step)
    tables = [
        pa.table(
            {
                "rows": pa.array([batches[b] for b in chunk], type=pa.list_(pa.int64())),
                "texts": pa.array(
                    [[texts[i] for i in batches[b]] for b in chunk], type=pa.list_(pa.string())
                ),
            }
        )
        for chunk in _chunks(len(batches), per_block)
    ]
    dataset = ray.data.from_arrow(tables).map_batches(
        TextEmbedWorker,
        fn_constructor_kwargs={"factory": factory, "batch_size": step},
        batch_size=1,  # one embedding batch per call: the same batches as a local build
        batch_format="numpy",
        compute=_pool(ray, options, len(tables)),
        num_cpus=options.cpus_per_worker,
    )
    vectors: npt.NDArray[np.float32] | None = None
    done = 0
    for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
        rows = batch["row"]
        if vectors is None:
            vectors = np.zeros((total, batch["vector"].shape[1]), dtype=np.float32)
        vectors[rows] = batch["vector"]
        done += len(rows)
        report("embed", done, total)
    if vectors is None:
        raise RuntimeError("the Ray embedding job returned no vectors")
    return vectors


def build_snapshot_on_ray(
    products: Sequence[Product],
    out_dir: Path,
    *,
    config: BuildConfig | None = None,
    embedder_factory: EmbedderFactory | None = None,
    catalogue_checksum: str = "",
    import_report: dict[str, object] | None = None,
    progress: Progress | None = None,
    options: RayOptions | None = None,
) -> Manifest:
    """Build and atomically publish a snapshot, the per-product stages as Ray Data jobs.

    The result has the same files as :func:`indexer.build.build_snapshot` with the same
    settings (vectors equal within float tolerance). Connects to Ray with ``options.address``
    unless this process is connected already.

    Args:
        products: Validated products (ids unique).
        out_dir: The snapshot folder to create (or replace with ``config.overwrite``).
        config: Build settings.
        embedder_factory: Creates the text embedder on each worker (picklable); None:
            ``config.embedder`` names it (``none`` builds without text vectors).
        catalogue_checksum: SHA-256 of the source catalogue.
        import_report: The import report, stored beside the index.
        progress: Progress callback (stages analyse, images, colours, embed, write).
        options: Ray address and pool sizes.

    Returns:
        The manifest of the published snapshot.

    Raises:
        ImportError: ray[data] is not installed.
        ValueError: duplicate product ids or an unknown language / embedder.
        SnapshotError: ``out_dir`` exists and overwrite is off.
    """
    config = config or BuildConfig()
    options = options or RayOptions()
    ids = [p.id for p in products]
    if len(set(ids)) != len(ids):
        raise ValueError("product ids must be unique (the importer reports duplicates)")
    if embedder_factory is None and config.embedder != "none":
        from models.text import load_text_embedder

        embedder_factory = functools.partial(load_text_embedder, config.embedder)
    # Constructors are cheap: this checks the spec before any work and names the models.
    embedder = embedder_factory() if embedder_factory is not None else None
    image_embedder = None
    if config.image_embedder != "none" and any(p.images for p in products):
        from models.image import load_image_embedder

        image_embedder = load_image_embedder(config.image_embedder)
    report = progress or (lambda stage, done, total: None)
    total = len(products)
    data, vocab = _analyse(products, Analyzer(config.languages), report)

    vectors = None
    with ray_session(options) as ray:
        context = ray.data.DataContext.get_current()
        # The build reports its own progress; Ray Data's bars and plans only on request.
        saved = context.enable_progress_bars, context.print_on_execution_start
        context.enable_progress_bars = options.ray_progress_bars
        context.print_on_execution_start = options.ray_progress_bars
        try:
            if total:
                photos = _run_photos(ray, products, config, image_embedder, options, report)
            else:
                photos = _Photos([], _merge_colour_reports([]), None)
            if embedder is not None and embedder_factory is not None:
                if total:
                    vectors = _run_embed(ray, products, embedder_factory, config, options, report)
                else:
                    embedder.warm_up()
                    vectors = np.zeros((0, embedder.dim), dtype=np.float32)
        finally:
            context.enable_progress_bars, context.print_on_execution_start = saved

    models = {"colour_extractor": "lab-kmeans" if config.photo_colours else "text-only"}
    if embedder is not None and vectors is not None:
        models |= {
            "text_embedder": embedder.name,
            "text_embedder_version": embedder.version,
            "text_embedder_dim": str(vectors.shape[1]),
        }
    return write_snapshot(
        products,
        out_dir,
        config=config,
        vectors=vectors,
        lexical=(data, vocab, total),
        images=photos.images,
        colours=photos.colours,
        colour_report=photos.colour_report,
        models=models,
        catalogue_checksum=catalogue_checksum,
        import_report=import_report,
        progress=progress,
    )


def build_from_catalogue_on_ray(
    path: Path,
    out_dir: Path,
    *,
    fmt: str | None = None,
    strict: bool = False,
    config: BuildConfig | None = None,
    progress: Progress | None = None,
    options: RayOptions | None = None,
    embedder_factory: EmbedderFactory | None = None,
) -> BuildResult:
    """Import a catalogue file (on the driver, as a local build does) and build its snapshot on
    Ray.

    Args:
        path: Catalogue file (JSON Lines, CSV, Google Merchant TSV or XML; ``.gz`` too).
        out_dir: Snapshot folder.
        fmt: Format name, or None to detect it from the extension.
        strict: Fail on the first bad rows instead of reporting and skipping them.
        config: Build settings.
        progress: Progress callback.
        options: Ray address and pool sizes.
        embedder_factory: See :func:`build_snapshot_on_ray`.

    Returns:
        The manifest, the import report and the snapshot folder.

    Raises:
        ImportError: ray[data] is not installed.
        CatalogueError: the catalogue cannot be read, or has bad rows under ``strict``.
        SnapshotError: ``out_dir`` exists and overwrite is off.
    """
    _import_ray()  # fail before reading a large catalogue
    result = import_catalogue(
        path,
        fmt=fmt,
        strict=strict,
        progress=progress,
        limits=(config or BuildConfig()).catalogue_limits,
    )
    manifest = build_snapshot_on_ray(
        result.products,
        Path(out_dir),
        config=with_catalogue_roots(config or BuildConfig(), Path(path)),
        embedder_factory=embedder_factory,
        catalogue_checksum=result.checksum,
        import_report=result.report.to_dict(),
        progress=progress,
        options=options,
    )
    return BuildResult(manifest=manifest, report=result.report, snapshot_dir=Path(out_dir))
