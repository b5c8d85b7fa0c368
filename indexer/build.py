"""Build an index snapshot from products: analyse, count, embed, write, swap into place."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import numpy.typing as npt
import orjson

from indexer.formats.fields import DEFAULT_LIMITS, FieldLimits
from search.analysis import Analyzer
from search.index.colours import ColourIndex
from search.index.lexical import FIELD_NAMES, LexicalData, LexicalDataBuilder
from search.index.snapshot import (
    COLOUR_REPORT,
    COLOURS,
    IMAGE_ADAPTER,
    IMAGE_ANN,
    IMAGE_COMPRESSED,
    IMAGE_HAS,
    IMAGE_REPORT,
    IMAGE_VECTORS,
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
    SnapshotWriter,
)
from search.index.store import ProductStore
from search.index.vocabulary import Vocabulary, VocabularyBuilder
from search.protocols import TextEmbedder
from search.retrievers import (
    ANN_THRESHOLD,
    COMPRESSED_THRESHOLD,
    build_vector_index,
    choose_index_kind,
    index_kind_of,
)
from search.suggest import Suggester, save_suggestions
from search.types import Product, ProductColour

if TYPE_CHECKING:
    from indexer.catalogue import CatalogueFormat, ImportReport, ImportResult
    from indexer.images import ImageEmbeddings
    from models.image import ImageEmbedder
    from models.image_adapter import ImageAdapter

Progress = Callable[[str, int, int], None]
"""Progress callback: ``(stage, done, total)``; stages are import, analyse, colours, images, embed, write."""


@dataclass(frozen=True, slots=True)
class BuildConfig:
    """How to build a snapshot.

    Attributes:
        languages: Analysis languages, the catalogue default first (``("en", "pl")``).
        embedder: Text embedder spec (``minilm``, ``e5-small``, ``st:<path>``, ``none``).
        embed_batch_size: Products per embedding batch.
        overwrite: Replace an existing snapshot folder.
        ann_threshold: From this many products (photos) the text (photo) vectors also get an
            ANN index.
        vector_index: Which ANN index: ``auto`` (HNSW below ``compressed_threshold`` vectors,
            HNSW-SQ8 from there, IVF-PQ for photo vectors), ``hnsw``, ``hnsw-sq8``,
            ``ivf-sq8``, ``ivf-pq`` or ``flat``
            (exact search only). The manifest records the kind in ``settings["text_index"]``
            and ``settings["image_index"]``.
        compressed_threshold: From this many vectors ``auto`` builds the compressed HNSW-SQ8
            index (1 byte per dimension plus links; float vectors memory-mapped for
            re-ranking).
        photo_colours: Read colours from each product's main photo as well as its text.
        image_embedder: Image embedder spec for photo search (``auto``, ``lite0``,
            ``descriptor``, ``open_clip:...``) or ``none`` (the library default: no photo
            vectors; the CLI builds them with ``auto``).
        image_cache: Folder where photos fetched over http(s) are cached, or None.
        image_adapter: Fit the catalogue's photo projection (:mod:`models.image_adapter`) on
            its products' leaf categories and text colours when there are enough of them.
        image_roots: Absolute folders the service may serve the products' local photos from,
            recorded in the manifest (``settings["image_roots"]``);
            :func:`build_from_catalogue` defaults it to the catalogue file's folder. Empty:
            none recorded (the service then serves only its configured roots).
        fetch_private_images: Let the build fetch photo URLs on loopback, private and other
            non-global addresses; None reads ``PRODUCTSEARCH_IMAGE_FETCH_ALLOW_PRIVATE``.
        catalogue_limits: Size limits per catalogue row and field for
            :func:`build_from_catalogue`: a row over one is a bad row of the import report
            (the CLI reads them from ``PRODUCTSEARCH_CATALOGUE_MAX_*``, see
            :meth:`api.settings.Settings.catalogue_limits`).
    """

    languages: tuple[str, ...] = ("en",)
    embedder: str = "minilm"
    embed_batch_size: int = 64
    overwrite: bool = False
    ann_threshold: int = ANN_THRESHOLD
    vector_index: str = "auto"
    compressed_threshold: int = COMPRESSED_THRESHOLD
    photo_colours: bool = True
    image_embedder: str = "none"
    image_cache: Path | None = None
    image_adapter: bool = True
    image_roots: tuple[str, ...] = ()
    fetch_private_images: bool | None = None
    catalogue_limits: FieldLimits = DEFAULT_LIMITS


def product_fields(product: Product) -> dict[str, str]:
    """The texts of a product's searchable fields."""
    attribute_text = " ".join(v for values in product.attributes.values() for v in values)
    return {
        "title": product.title,
        "brand": product.brand or "",
        "category": " ".join(part for path in product.categories for part in path),
        "attributes": " ".join([attribute_text, *product.colours]),
        "description": product.description,
    }


def embedding_text(product: Product) -> str:
    """The text a product is embedded from: title, brand when not in it, and leaf categories."""
    parts = [product.title]
    if product.brand and product.brand.lower() not in product.title.lower():
        parts.append(product.brand)
    leaves = {path[-1] for path in product.categories if path}
    parts.extend(sorted(leaves))
    return ". ".join(parts)


def embedding_batches(texts: Sequence[str], batch_size: int) -> list[list[int]]:
    """The batches products are embedded in: their indices in order of text length.

    Batching by length pads each batch to similar lengths (2-3x faster than catalogue order on
    short titles). A quantised model's vectors depend slightly on their batch companions, so
    every build (local or distributed) embeds the same batches to get the same vectors.

    Args:
        texts: Per product its :func:`embedding_text`.
        batch_size: Products per batch (at least 1 is used).

    Returns:
        Batches of product indices; the vectors go back to document order by these indices.
    """
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    step = max(batch_size, 1)
    return [order[start : start + step] for start in range(0, len(order), step)]


@dataclass(frozen=True, slots=True)
class PhotoVectors:
    """Photo vectors of a snapshot's products, as the snapshot stores them.

    Attributes:
        name: The image embedder's name (manifest ``image_embedder``).
        version: Its version.
        vectors: ``(n_products, dim)``: unit rows where ``has_vector``, zeros elsewhere.
        has_vector: Per product, whether a photo was read and encoded.
        problems: ``{"product_id", "image", "reason"}`` per photo that could not be used.
    """

    name: str
    version: str
    vectors: npt.NDArray[np.float32]
    has_vector: npt.NDArray[np.bool_]
    problems: list[dict[str, Any]]


def _analyse(
    products: Sequence[Product], analyzer: Analyzer, report: Progress
) -> tuple[LexicalData, Vocabulary]:
    """Term counts and vocabulary of products, as a full build makes them."""
    lexical, vocabulary = _analysers(products, analyzer, report)
    vocab = vocabulary.build(lexical.term_id)
    return lexical.build(), vocab


def _analysers(
    products: Sequence[Product], analyzer: Analyzer, report: Progress
) -> tuple[LexicalDataBuilder, VocabularyBuilder]:
    lexical = LexicalDataBuilder(FIELD_NAMES)
    vocabulary = VocabularyBuilder(analyzer)
    total = len(products)
    for i, product in enumerate(products):
        fields = product_fields(product)
        lexical.add(
            {name: analyzer.document_terms(text, product.lang) for name, text in fields.items()}
        )
        vocabulary.add(fields.values())
        if i % 1000 == 0:
            report("analyse", i, total)
    report("analyse", total, total)
    return lexical, vocabulary


def build_snapshot(
    products: Sequence[Product],
    out_dir: Path,
    *,
    config: BuildConfig | None = None,
    embedder: TextEmbedder | None = None,
    catalogue_checksum: str = "",
    import_report: dict[str, object] | None = None,
    progress: Progress | None = None,
) -> Manifest:
    """Build and atomically publish a snapshot.

    Args:
        products: Validated products (ids unique).
        out_dir: The snapshot folder to create (or replace with ``config.overwrite``).
        config: Build settings.
        embedder: Text embedder to use; when None, ``config.embedder`` names one (``none``
            builds without text vectors).
        catalogue_checksum: SHA-256 of the source catalogue.
        import_report: The import report, stored beside the index.
        progress: Progress callback.

    Returns:
        The manifest of the published snapshot.

    Raises:
        ValueError: duplicate product ids or an unknown language / embedder.
        SnapshotError: ``out_dir`` exists and overwrite is off.
    """
    config = config or BuildConfig()
    ids = [p.id for p in products]
    if len(set(ids)) != len(ids):
        raise ValueError("product ids must be unique (the importer reports duplicates)")
    if embedder is None and config.embedder != "none":
        from models.text import load_text_embedder

        embedder = load_text_embedder(config.embedder)
    report = progress or (lambda stage, done, total: None)
    total = len(products)
    data, vocab = _analyse(products, Analyzer(config.languages), report)

    from indexer.product_colours import index_colours

    images = _embed_images(products, config, report)
    extractor = None
    if config.photo_colours:
        from indexer.colours import PhotoColourExtractor

        extractor = PhotoColourExtractor()
    colours, colour_report = index_colours(
        products, extractor=extractor, progress=report, features=_colour_features(images)
    )

    vectors = None
    if embedder is not None:
        embedder.warm_up()
        texts = [embedding_text(p) for p in products]
        vectors = np.zeros((total, embedder.dim), dtype=np.float32)
        step = max(config.embed_batch_size, 1)
        done = 0
        for batch in embedding_batches(texts, step):
            vectors[batch] = embedder.embed_documents([texts[i] for i in batch], batch_size=step)
            done += len(batch)
            report("embed", done, total)

    models = {"colour_extractor": "lab-kmeans" if extractor is not None else "text-only"}
    if embedder is not None:
        models |= {
            "text_embedder": embedder.name,
            "text_embedder_version": embedder.version,
            "text_embedder_dim": str(embedder.dim),
        }
    photo_vectors = None
    if images is not None:
        image_embedder, found = images
        photo_vectors = PhotoVectors(
            name=image_embedder.name,
            version=image_embedder.version,
            vectors=found.vectors,
            has_vector=found.has_vector,
            problems=[
                {"product_id": products[p.product].id, "image": p.location, "reason": p.message}
                for p in found.problems
            ],
        )
    return write_snapshot(
        products,
        out_dir,
        config=config,
        vectors=vectors,
        lexical=(data, vocab, total),
        images=photo_vectors,
        colours=colours,
        colour_report=colour_report.to_dict(),
        models=models,
        catalogue_checksum=catalogue_checksum,
        import_report=import_report,
        progress=progress,
    )


def _embed_images(
    products: Sequence[Product], config: BuildConfig, report: Progress
) -> tuple[ImageEmbedder, ImageEmbeddings] | None:
    """Photo vectors of every product with a photo (None when image search is off or no
    product has a photo). Unreadable photos are reported per product; the build goes on."""
    if config.image_embedder == "none" or not any(p.images for p in products):
        return None
    from indexer.images import ImageLoader, embed_product_images
    from models.image import load_image_embedder

    embedder = load_image_embedder(config.image_embedder)
    if embedder is None:
        return None
    total = len(products)
    with ImageLoader(
        cache_dir=config.image_cache, allow_private=config.fetch_private_images
    ) as loader:
        found = embed_product_images(
            [p.images for p in products],
            embedder,
            loader=loader,
            progress=lambda done, _total: report("images", done, total),
        )
    return embedder, found


def _colour_features(
    images: tuple[ImageEmbedder, ImageEmbeddings] | None,
) -> list[np.ndarray | None] | None:
    """EfficientNet-Lite0 features of each product's photo for the photo-colour model (it names
    colours better with them: held-out family accuracy 0.639 -> 0.686), when the photo vectors
    are Lite0's: the ``lite0`` vector starts with the unit Lite0 features, scaled."""
    if images is None or images[0].name not in (
        "lite0",
        "lite0-raw",
        "lite0-torch",
        "lite0-raw-torch",
    ):
        return None
    found = images[1]
    width = 1280
    out: list[np.ndarray | None] = []
    for row, has in zip(found.vectors, found.has_vector, strict=True):
        part = row[:width]
        norm = float(np.linalg.norm(part))
        out.append(part / norm if has and norm > 0 else None)
    return out


def _image_adapter(
    products: Sequence[Product],
    colours: Sequence[Sequence[ProductColour]],
    images: PhotoVectors,
) -> ImageAdapter | None:
    """The catalogue's photo projection, fitted on each product's leaf category and the family
    of the first colour its text names (None when too few photos are labelled)."""
    from models.image import load_image_embedder
    from models.image_adapter import fit_image_adapter, shape_columns

    shape = None
    try:  # constructing an embedder loads no weights: only which columns encode colour
        embedder = load_image_embedder(images.name)
    except (ImportError, ValueError):
        embedder = None
    if embedder is not None:
        shape = shape_columns(embedder)
        if shape is not None and int(shape.max()) >= images.vectors.shape[1]:
            shape = None
    categories = [
        p.categories[0][-1] if p.categories and p.categories[0] else None for p in products
    ]
    families = [next((str(c.family) for c in cs if c.source == "text"), None) for cs in colours]
    return fit_image_adapter(images.vectors, images.has_vector, categories, families, shape=shape)


@dataclass(frozen=True, slots=True)
class BuildResult:
    """Outcome of :func:`build_from_catalogue`."""

    manifest: Manifest
    report: ImportReport
    snapshot_dir: Path
    warnings: tuple[str, ...] = field(default=())


def import_catalogue(
    path: Path,
    *,
    fmt: str | None = None,
    strict: bool = False,
    progress: Progress | None = None,
    limits: FieldLimits = DEFAULT_LIMITS,
) -> ImportResult:
    """Read and validate a catalogue file as a build does (stage ``import``).

    Args:
        path: Catalogue file (JSON Lines, CSV, Google Merchant TSV or XML; ``.gz`` too).
        fmt: Format name, or None to detect it from the extension.
        strict: Fail on the first bad rows instead of reporting and skipping them.
        progress: Progress callback.
        limits: Size limits per row and field; a row over one is a bad row (row, field and
            reason in the report), read in bounded pieces, never held whole.

    Returns:
        The valid products, the import report (bad rows) and the file's checksum.

    Raises:
        CatalogueError: the catalogue cannot be read, or has bad rows under ``strict``.
    """
    from indexer.catalogue import read_catalogue

    report_cb = progress or (lambda stage, done, total: None)
    result = read_catalogue(
        Path(path),
        cast("CatalogueFormat | None", fmt),
        strict=strict,
        progress=lambda rows: report_cb("import", rows, 0),
        limits=limits,
    )
    rows = result.report.rows_read
    report_cb("import", rows, rows)
    return result


def build_from_catalogue(
    path: Path,
    out_dir: Path,
    *,
    fmt: str | None = None,
    strict: bool = False,
    config: BuildConfig | None = None,
    progress: Progress | None = None,
) -> BuildResult:
    """Import a catalogue file and build its snapshot.

    Args:
        path: Catalogue file (JSON Lines, CSV, Google Merchant TSV or XML; ``.gz`` too).
        out_dir: Snapshot folder.
        fmt: Format name, or None to detect it from the extension.
        strict: Fail on the first bad rows instead of reporting and skipping them.
        config: Build settings (``catalogue_limits`` bounds the rows imported).
        progress: Progress callback.

    Returns:
        The manifest, the import report and the snapshot folder.

    Raises:
        CatalogueError: the catalogue cannot be read, or has bad rows under ``strict``.
        SnapshotError: ``out_dir`` exists and overwrite is off.
    """
    config = with_catalogue_roots(config or BuildConfig(), Path(path))
    result = import_catalogue(
        path, fmt=fmt, strict=strict, progress=progress, limits=config.catalogue_limits
    )
    manifest = build_snapshot(
        result.products,
        Path(out_dir),
        config=config,
        catalogue_checksum=result.checksum,
        import_report=result.report.to_dict(),
        progress=progress,
    )
    return BuildResult(manifest=manifest, report=result.report, snapshot_dir=Path(out_dir))


def with_catalogue_roots(config: BuildConfig, catalogue: Path) -> BuildConfig:
    """``config`` with the catalogue file's folder as its image root unless it names roots.

    Relative photo paths in a catalogue are relative to its folder, so that folder is where a
    shop keeps its photos; the service serves local photos from under it only.

    Args:
        config: Build settings.
        catalogue: The catalogue file.

    Returns:
        The settings to build with.
    """
    if config.image_roots:
        return config
    return replace(config, image_roots=(str(catalogue.resolve().parent),))


def write_snapshot(
    products: Sequence[Product],
    out_dir: Path,
    *,
    config: BuildConfig,
    vectors: npt.NDArray[np.float32] | None,
    ann: Any = None,
    lexical: tuple[LexicalData, Vocabulary, int] | None = None,
    images: PhotoVectors | None = None,
    colours: Sequence[Sequence[ProductColour]],
    colour_report: dict[str, Any],
    models: dict[str, str],
    catalogue_checksum: str = "",
    import_report: dict[str, Any] | None = None,
    progress: Progress | None = None,
) -> Manifest:
    """Analyse products and publish a snapshot with precomputed vectors and colours.

    The same files and manifest as :func:`indexer.build.build_snapshot`, which computes the
    vectors and colours itself.

    Args:
        products: The products in document order (ids unique).
        out_dir: The snapshot folder to publish.
        config: Languages, ANN thresholds and kind, and ``overwrite``.
        vectors: One text vector per product, or None for a lexical-only snapshot.
        ann: A faiss ANN index over ``vectors`` (HNSW or IVF); None builds the kind
            ``config.vector_index`` chooses (none below ``config.ann_threshold`` vectors).
        lexical: The term counts and vocabulary of ``products`` (and how many products were
            analysed for them); None analyses every product.
        images: Photo vectors for image search, or None for none.
        colours: Per product its colours, main first.
        colour_report: Content of ``colour_report.json``.
        models: Model role -> spec for the manifest.
        catalogue_checksum: SHA-256 of the source catalogue ("" when the products come from
            several sources, as after a delta).
        import_report: Content of ``import_report.json``, or None for none.
        progress: Progress callback.

    Returns:
        The manifest of the published snapshot.

    Raises:
        ValueError: duplicate ids, or vectors / colours not one per product.
        SnapshotError: ``out_dir`` exists and overwrite is off.
    """
    report = progress or (lambda stage, done, total: None)
    total = len(products)
    if len({p.id for p in products}) != total:
        raise ValueError("product ids must be unique")
    if vectors is not None and len(vectors) != total:
        raise ValueError(f"{len(vectors)} text vectors for {total} products")
    if ann is not None and (vectors is None or int(ann.ntotal) != total):
        raise ValueError(f"the ANN index holds {ann.ntotal} vectors for {total} products")
    if len(colours) != total:
        raise ValueError(f"colours for {len(colours)} products, expected {total}")
    analyzer = Analyzer(config.languages)
    if lexical is None:
        data, vocab = _analyse(products, analyzer, report)
    else:
        data, vocab, _ = lexical
        if data.n_docs != total:
            raise ValueError(f"term counts for {data.n_docs} products, expected {total}")

    with SnapshotWriter(out_dir, overwrite=config.overwrite) as writer:
        report("write", 0, 4)
        ProductStore(products).save(writer.path(PRODUCTS))
        report("write", 1, 4)
        data.save(writer.path(LEXICAL))
        writer.path(TERMS).write_bytes(orjson.dumps(list(data.terms)))
        report("write", 2, 4)
        vocab.save(writer.path(VOCABULARY))
        # The suggester is built here, once, not by every service at start-up (seconds of
        # Python for tens of thousands of titles).
        report("suggestions", 0, 1)
        save_suggestions(
            Suggester.from_products(products, vocab, analyzer).arrays, writer.path(SUGGESTIONS)
        )
        report("suggestions", 1, 1)
        ColourIndex(colours).save(writer.path(COLOURS))
        writer.path(COLOUR_REPORT).write_bytes(
            orjson.dumps(colour_report, option=orjson.OPT_INDENT_2)
        )
        settings: dict[str, Any] = {}
        if config.image_roots:
            settings["image_roots"] = [str(Path(root).resolve()) for root in config.image_roots]
        if vectors is not None:
            with writer.path(TEXT_VECTORS).open("wb") as fh:
                np.save(fh, vectors.astype(np.float32, copy=False), allow_pickle=False)
            kind = (
                index_kind_of(ann)
                if ann is not None
                else choose_index_kind(
                    len(vectors),
                    config.vector_index,
                    config.ann_threshold,
                    config.compressed_threshold,
                )
            )
            settings["text_index"] = kind
            if kind != "flat":
                import faiss

                report("index vectors", 0, 1)
                index = ann if ann is not None else build_vector_index(vectors, kind)
                name = TEXT_ANN if kind == "hnsw" else TEXT_COMPRESSED
                faiss.write_index(index, str(writer.path(name)))
                del index
                report("index vectors", 1, 1)
        image_models: dict[str, str] = {}
        if images is not None:
            adapter = _image_adapter(products, colours, images) if config.image_adapter else None
            settings["image_adapter"] = "on" if config.image_adapter else "off"
            photo_vectors = images.vectors if adapter is None else adapter.apply(images.vectors)
            image_models = {
                "image_embedder": images.name,
                "image_embedder_version": images.version,
                "image_embedder_dim": str(photo_vectors.shape[1]),
            }
            if adapter is not None:
                adapter.save(writer.path(IMAGE_ADAPTER))
                image_models["image_adapter"] = adapter.describe()
            with writer.path(IMAGE_VECTORS).open("wb") as fh:
                np.save(fh, photo_vectors.astype(np.float32, copy=False), allow_pickle=False)
            with writer.path(IMAGE_HAS).open("wb") as fh:
                np.save(fh, images.has_vector, allow_pickle=False)
            kind = choose_index_kind(
                int(images.has_vector.sum()),
                config.vector_index,
                config.ann_threshold,
                config.compressed_threshold,
            )
            if kind == "hnsw-sq8" and config.vector_index == "auto":
                # Photo vectors are wide (2,173-d lite0): one byte per dimension is still 2 KB a
                # photo, product-quantised codes are 53 bytes (recall@10 0.99 with exact
                # re-ranking on image-sized vectors, benchmarks/scale.py).
                kind = "ivf-pq"
            settings["image_index"] = kind
            if kind != "flat":
                import faiss

                name = IMAGE_ANN if kind == "hnsw" else IMAGE_COMPRESSED
                index = build_vector_index(photo_vectors, kind)
                faiss.write_index(index, str(writer.path(name)))
                del index
            writer.path(IMAGE_REPORT).write_bytes(
                orjson.dumps({"problems": images.problems}, option=orjson.OPT_INDENT_2)
            )
        report("write", 3, 4)
        if import_report is not None:
            writer.path(IMPORT_REPORT).write_bytes(
                orjson.dumps(import_report, option=orjson.OPT_INDENT_2)
            )
        errors = import_report.get("errors", []) if import_report else []
        manifest = writer.commit(
            catalogue_checksum=catalogue_checksum,
            languages=tuple(config.languages),
            counts={
                "products": total,
                "terms": len(data.terms),
                "words": len(vocab),
                "text_vectors": 0 if vectors is None else len(vectors),
                "import_errors": len(errors) if isinstance(errors, list) else 0,
                "products_with_colour": int(colour_report.get("products_with_colour", 0)),
                "photos_read": int(colour_report.get("photos_read", 0)),
                "photo_errors": len(colour_report.get("photo_errors", [])),
                "colour_conflicts": len(colour_report.get("conflicts", [])),
                "image_vectors": int(images.has_vector.sum()) if images else 0,
                "image_errors": len(images.problems) if images else 0,
            },
            models=models | image_models,
            settings=settings,
        )
        report("write", 4, 4)
    return manifest
