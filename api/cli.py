"""The ``productsearch`` command line: build snapshots, serve them, query them."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from api import __version__
from api.settings import DEFAULT_KEYS_DB, Settings
from indexer.formats.fields import DEFAULT_LIMITS, FieldLimits
from search.errors import CatalogueError, InvalidRequestError, SnapshotError
from search.index.snapshot import MANIFEST
from search.types import SearchRequest

if TYPE_CHECKING:
    from indexer.build import BuildResult
    from search.types import Explanation


app = typer.Typer(
    name="productsearch",
    help="Smart product search: build index snapshots from a catalogue, serve and query them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

console = Console()
err_console = Console(stderr=True)

MAX_ERRORS_SHOWN = 20


class CatalogueFormat(StrEnum):
    """Catalogue formats ``index`` reads (detected from the file name when not given)."""

    JSONL = "jsonl"
    CSV = "csv"
    MERCHANT_TSV = "merchant-tsv"
    MERCHANT_XML = "merchant-xml"


class EmbedderName(StrEnum):
    """Text embedders a snapshot can be built with."""

    MINILM = "minilm"
    MINILM_TORCH = "minilm-torch"
    MINILM_FP32 = "minilm-fp32"
    E5 = "e5"
    NONE = "none"


class Executor(StrEnum):
    """Where ``index`` runs the per-product stages (embedding, photos, colours)."""

    LOCAL = "local"
    RAY = "ray"


class QueryEmbedder(StrEnum):
    """Query-time semantic retrieval: as the snapshot says, or off."""

    AUTO = "auto"
    NONE = "none"


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"productsearch {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version_callback, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """Smart product search: build index snapshots from a catalogue, serve and query them."""


def _fail(message: str, code: int = 1) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {escape(message)}")
    return typer.Exit(code)


def _is_non_empty_dir(path: Path) -> bool:
    return path.exists() and (not path.is_dir() or any(path.iterdir()))


@contextmanager
def _stage_progress() -> Iterator[_StageBars]:
    with Progress(
        TextColumn("[bold]{task.description:<8}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=False,
    ) as progress:
        yield _StageBars(progress)


class _StageBars:
    """A progress callback that keeps one bar per build stage."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._tasks: dict[str, TaskID] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        # total 0 means "not known yet" (the importer streams rows): show a count, no bar.
        known_total = total if total > 0 else None
        task = self._tasks.get(stage)
        if task is None:
            task = self._tasks[stage] = self._progress.add_task(stage, total=known_total)
        self._progress.update(task, completed=done, total=known_total)


def _build(
    catalogue: Path,
    out: Path,
    *,
    fmt: str | None,
    strict: bool,
    embedder: str,
    overwrite: bool,
    languages: tuple[str, ...] = ("en",),
    image_embedder: str = "auto",
    image_adapter: bool = True,
    executor: Executor = Executor.LOCAL,
    ray_address: str | None = None,
    ray_workers: int | None = None,
    limits: FieldLimits | None = None,
) -> BuildResult:
    """Build a snapshot with progress bars on stderr, here or on Ray.

    ``limits`` bounds the catalogue's rows and fields (default the library's).

    Raises:
        typer.Exit: The catalogue cannot be imported or the snapshot cannot be written (code 1).
    """
    from indexer.build import BuildConfig, build_from_catalogue

    config = BuildConfig(
        languages=languages,
        embedder=embedder,
        overwrite=overwrite,
        image_embedder=image_embedder,
        image_cache=Path("var/image-cache"),
        image_adapter=image_adapter,
        catalogue_limits=limits if limits is not None else DEFAULT_LIMITS,
    )
    try:
        with _stage_progress() as bars:
            if executor is Executor.RAY:
                from indexer.ray_build import RayOptions, build_from_catalogue_on_ray

                return build_from_catalogue_on_ray(
                    catalogue,
                    out,
                    fmt=fmt,
                    strict=strict,
                    config=config,
                    progress=bars,
                    options=RayOptions(address=ray_address, workers=ray_workers),
                )
            return build_from_catalogue(
                catalogue, out, fmt=fmt, strict=strict, config=config, progress=bars
            )
    except CatalogueError as exc:
        raise _fail(f"cannot import {catalogue}: {exc}") from exc
    except SnapshotError as exc:
        raise _fail(f"cannot write snapshot {out}: {exc}") from exc
    except (ValueError, ImportError) as exc:  # unknown language or embedder, missing extra
        raise _fail(f"cannot build snapshot {out}: {exc}") from exc


@app.command()
def index(
    catalogue: Annotated[
        Path,
        typer.Argument(
            exists=True, dir_okay=False, readable=True, help="Catalogue file to import."
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", file_okay=False, help="Snapshot folder to write.")
    ],
    fmt: Annotated[
        CatalogueFormat | None,
        typer.Option("--format", "-f", help="Catalogue format; detected from the name if unset."),
    ] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Fail on the first bad row instead of skipping it.")
    ] = False,
    embedder: Annotated[
        EmbedderName, typer.Option("--embedder", help="Text embedder for semantic search.")
    ] = EmbedderName.MINILM,
    force: Annotated[
        bool, typer.Option("--force", help="Replace OUT if it holds a snapshot already.")
    ] = False,
    lang: Annotated[
        str,
        typer.Option(
            "--lang",
            help="Analysis languages, comma-separated, the catalogue default first (e.g. en,pl).",
        ),
    ] = "en",
    image_embedder: Annotated[
        str,
        typer.Option(
            "--image-embedder",
            help="Photo vectors for photo search: auto (EfficientNet-Lite0 when installed, else "
            "a colour/layout descriptor), lite0, descriptor, open_clip:<model>:<weights>, none.",
        ),
    ] = "auto",
    image_adapter: Annotated[
        bool,
        typer.Option(
            "--image-adapter/--no-image-adapter",
            help="Fit the catalogue's photo projection on its categories and text colours "
            "(sharper look-alikes; needs enough categorised photos, else skipped).",
        ),
    ] = True,
    executor: Annotated[
        Executor,
        typer.Option(
            "--executor",
            help="local: build in this process; ray: embedding, photos and colours as Ray Data "
            "jobs (pip install 'productsearch[distributed]').",
        ),
    ] = Executor.LOCAL,
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address",
            help="With --executor ray: the cluster (auto, ray://head:10001); unset starts a "
            "local Ray instance.",
        ),
    ] = None,
    ray_workers: Annotated[
        int | None,
        typer.Option(
            "--ray-workers", min=1, help="With --executor ray: most model workers per stage."
        ),
    ] = None,
) -> None:
    """Build an index snapshot from a catalogue and print the import report.

    Rows over the size limits (``PRODUCTSEARCH_CATALOGUE_MAX_ROW_BYTES``, ``_TITLE_CHARS``,
    ``_DESCRIPTION_CHARS``, ``_TEXT_CHARS``: the service's settings) are bad rows of the report.
    """
    if executor is not Executor.RAY and (ray_address is not None or ray_workers is not None):
        raise _fail("--ray-address and --ray-workers need --executor ray", code=2)
    try:
        # The same limits as the live-catalogue API: one setting bounds both ways in.
        limits = Settings().catalogue_limits()
    except (ValueError, OSError) as exc:  # a bad value; PRODUCTSEARCH_CONFIG names no file
        raise _fail(f"invalid settings: {exc}", code=2) from exc
    if _is_non_empty_dir(out):
        if not force:
            raise _fail(f"{out} exists and is not empty; pass --force to replace it")
        if not (out / MANIFEST).is_file():
            # --force replaces snapshots, never a folder of someone's other files.
            raise _fail(f"{out} is not an index snapshot (no {MANIFEST}); refusing to replace it")
    result = _build(
        catalogue,
        out,
        fmt=fmt.value if fmt is not None else None,
        strict=strict,
        embedder=embedder.value,
        overwrite=True,  # an existing OUT is empty or --force was given
        languages=tuple(code.strip() for code in lang.split(",") if code.strip()),
        image_embedder=image_embedder,
        image_adapter=image_adapter,
        executor=executor,
        ray_address=ray_address,
        ray_workers=ray_workers,
        limits=limits,
    )
    _print_report(result)


def _print_report(result: BuildResult) -> None:
    from search.index.snapshot import COLOUR_REPORT, IMPORT_REPORT

    report = result.report
    errors = report.errors
    console.print(
        f"[bold green]snapshot[/] {escape(str(result.snapshot_dir))} "
        f"({escape(result.manifest.snapshot_id)})"
    )
    console.print(f"rows read:         {report.rows_read}")
    console.print(f"products indexed:  {report.products_ok}")
    console.print(f"rows dropped:      {report.rows_dropped}")
    console.print(f"errors:            {len(errors)} ({len(report.warnings)} fields ignored)")
    if errors:
        shown = errors[:MAX_ERRORS_SHOWN]
        table = Table(title=f"First {len(shown)} of {len(errors)} errors")
        table.add_column("row", justify="right")
        table.add_column("id")
        table.add_column("field")
        table.add_column("reason")
        for error in shown:
            table.add_row(
                str(error.row),
                escape(error.product_id or ""),
                escape(error.field),
                escape(error.reason),
            )
        console.print(table)
    console.print(f"full report: {escape(str(result.snapshot_dir / IMPORT_REPORT))}")
    counts = result.manifest.counts
    console.print(
        f"colours:           {counts.get('products_with_colour', 0)} products with a colour, "
        f"{counts.get('photos_read', 0)} photos read, "
        f"{counts.get('photo_errors', 0)} unreadable, "
        f"{counts.get('colour_conflicts', 0)} text/photo conflicts"
    )
    if counts.get("photo_errors", 0) or counts.get("colour_conflicts", 0):
        console.print(f"colour report: {escape(str(result.snapshot_dir / COLOUR_REPORT))}")


@app.command()
def search(
    index: Annotated[
        Path,
        typer.Option(
            "--index",
            "-i",
            file_okay=False,
            envvar="PRODUCTSEARCH_INDEX_DIR",
            help="Snapshot folder.",
        ),
    ],
    query: Annotated[str, typer.Argument(help="Query text; empty browses the catalogue.")] = "",
    k: Annotated[int, typer.Option("-k", "--k", min=1, help="Number of results.")] = 10,
    page: Annotated[int, typer.Option("--page", min=1, help="1-based page.")] = 1,
    explain: Annotated[bool, typer.Option("--explain", help="Say why each hit ranks.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON instead.")] = False,
    embedder: Annotated[
        QueryEmbedder,
        typer.Option("--embedder", help="auto: as the snapshot says; none: no semantic search."),
    ] = QueryEmbedder.AUTO,
) -> None:
    """Query a snapshot and print the ranked results."""
    from api.schemas import SearchResponse
    from api.service import open_engine

    try:
        engine = open_engine(Settings(index_dir=index, text_embedder=embedder.value))
    except SnapshotError as exc:
        raise _fail(f"cannot open snapshot {index}: {exc}") from exc
    text = query if query.strip() else ""
    try:
        result = engine.search(SearchRequest(text=text, k=k, page=page, explain=explain))
    except InvalidRequestError as exc:
        raise _fail(f"invalid {exc.field}: {exc.message}", code=2) from exc
    if as_json:
        typer.echo(SearchResponse.from_result(result, page=page, k=k).model_dump_json(indent=2))
        return

    if result.corrected_query is not None:
        console.print(f"showing results for [bold]{escape(result.corrected_query)}[/]")
    table = Table(
        title=f"{result.total} results for {escape(repr(query))} ({result.took_ms:.1f} ms)"
    )
    table.add_column("#", justify="right")
    table.add_column("id")
    table.add_column("score", justify="right")
    table.add_column("title")
    table.add_column("brand")
    table.add_column("price", justify="right")
    if explain:
        table.add_column("why")
    first_rank = (page - 1) * k + 1
    for rank, hit in enumerate(result.hits, start=first_rank):
        product = hit.product
        price = product.effective_price
        row = [
            str(rank),
            escape(product.id),
            f"{hit.score:.4f}",
            escape(product.title),
            escape(product.brand or ""),
            "" if price is None else f"{price:.2f} {product.currency or ''}".strip(),
        ]
        if explain:
            row.append(escape(_explain_line(hit.explanation)))
        table.add_row(*row)
    console.print(table)


def _explain_line(explanation: Explanation | None) -> str:
    if explanation is None:
        return ""
    parts = [f"{t.retriever}#{t.rank}" for t in explanation.retrievers]
    parts += [f"{stage}: {description}" for stage, description in explanation.adjustments]
    return ", ".join(parts)


@app.command()
def serve(
    index: Annotated[
        Path | None,
        typer.Option("--index", "-i", file_okay=False, help="Snapshot folder to serve."),
    ] = None,
    host: Annotated[str | None, typer.Option("--host", help="Interface to bind.")] = None,
    port: Annotated[int | None, typer.Option("--port", help="Port to listen on.")] = None,
    demo: Annotated[
        bool, typer.Option("--demo", help="Build and serve the bundled demo catalogue.")
    ] = False,
    data_dir: Annotated[
        Path, typer.Option("--data-dir", file_okay=False, help="Where --demo keeps its files.")
    ] = Path("var/demo"),
    embedder: Annotated[
        EmbedderName, typer.Option("--embedder", help="Text embedder for the --demo snapshot.")
    ] = EmbedderName.MINILM,
    log_level: Annotated[str | None, typer.Option("--log-level", help="Log level.")] = None,
    workers: Annotated[
        int | None,
        typer.Option("--workers", "-w", min=1, help="Worker processes (one per core)."),
    ] = None,
) -> None:
    """Serve a snapshot over HTTP (OpenAPI docs at /docs); PRODUCTSEARCH_WORKERS processes
    (one per core) share the snapshot opened once."""
    from api.service import open_engine

    overrides: dict[str, object] = {
        name: value
        for name, value in {
            "host": host,
            "port": port,
            "log_level": log_level,
            "workers": workers,
        }.items()
        if value is not None
    }
    if demo:
        if index is not None:
            raise _fail("pass either --index or --demo, not both", code=2)
        overrides["index_dir"] = prepare_demo(data_dir, embedder=embedder.value)
    elif index is not None:
        overrides["index_dir"] = index
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValueError as exc:
        raise _fail(f"invalid settings: {exc}", code=2) from exc
    if settings.index_dir is None:
        raise _fail("no snapshot: pass --index DIR or --demo (or set PRODUCTSEARCH_INDEX_DIR)", 2)
    # A served instance keeps its merchandising in a file unless told otherwise (the library
    # default, for tests and embedding, is in memory); the keys' file is a setting of its own
    # (PRODUCTSEARCH_KEYS_DB, default var/keys.sqlite3), shared with `productsearch keys`.
    if "merch_db" not in settings.model_fields_set:
        settings.merch_db = Path("var/merch.sqlite3")
    if demo and "open_mode" not in settings.model_fields_set:
        # The demo is for trying the service on one machine: its search answers without a
        # key unless PRODUCTSEARCH_OPEN_MODE says otherwise (admin routes stay closed).
        settings.open_mode = True

    from api.security import install_log_redaction, uvicorn_log_config

    level = settings.log_level.upper() if settings.log_level != "trace" else "DEBUG"
    if settings.log_format == "json":
        from api.metrics import configure_json_logging

        install_log_redaction(configure_json_logging(level))
    else:
        logging.basicConfig(level=level, format="%(levelname)-9s %(name)s: %(message)s")
        install_log_redaction(*logging.getLogger().handlers)
    try:
        engine = open_engine(settings)
    except SnapshotError as exc:
        raise _fail(f"refusing to serve {settings.index_dir}: {exc}") from exc
    console.print(
        f"serving {escape(str(settings.index_dir))} on http://{settings.host}:{settings.port} "
        f"(docs at /docs)"
    )
    from api.server import run

    # Both set-ups drop API keys (a WebSocket's ?api_key=) from uvicorn's log lines.
    run(settings, engine, uvicorn_log_config(text=settings.log_format != "json"))


def prepare_demo(data_dir: Path, *, embedder: str = "minilm") -> Path:
    """Write the demo catalogue into ``data_dir`` and build its snapshot unless it is current.

    Args:
        data_dir: Cache folder for the catalogue and the snapshot.
        embedder: Text embedder for a new snapshot.

    Returns:
        The snapshot folder.

    Raises:
        typer.Exit: The demo catalogue could not be built.
    """
    from indexer.demo import write_demo_catalogue
    from search.index.snapshot import read_manifest, sha256_file

    data_dir.mkdir(parents=True, exist_ok=True)
    catalogue = write_demo_catalogue(data_dir)
    snapshot = data_dir / "snapshot"
    # The pictures and the build's recorded image roots count too: a snapshot built by an older
    # release from the same catalogue may read other photo colours or serve no pictures.
    source = _demo_source_checksum(catalogue)
    stamp = data_dir / "snapshot.source"
    try:
        manifest = read_manifest(snapshot)
        current = (
            manifest.catalogue_checksum == sha256_file(catalogue)
            and bool(manifest.settings.get("image_roots"))
            and stamp.is_file()
            and stamp.read_text(encoding="utf-8").strip() == source
        )
    except SnapshotError:
        current = False  # absent or damaged: build afresh
    if current:
        err_console.print(f"reusing demo snapshot {escape(str(snapshot))}")
        return snapshot
    stamp.unlink(missing_ok=True)
    # Built in a child process: the build's peak (photo decoding, model batches: 1.2 GB) is
    # returned to the system when the child ends, instead of staying in the server's heap
    # (the demo server then holds about 250 MB less when ready).
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        failure, built, products = pool.submit(
            _build_demo_snapshot, catalogue, snapshot, embedder
        ).result()
    if failure is not None:
        raise _fail(f"could not build the demo snapshot: {failure}")
    stamp.write_text(source + "\n", encoding="utf-8")
    err_console.print(f"built demo snapshot {escape(built)}: {products} products")
    return snapshot


def _build_demo_snapshot(
    catalogue: Path, snapshot: Path, embedder: str
) -> tuple[str | None, str, int]:
    """The demo build, run in a child process by :func:`prepare_demo`: (failure or None,
    snapshot folder, products)."""
    try:
        result = _build(
            catalogue,
            snapshot,
            fmt="jsonl",
            strict=False,
            embedder=embedder,
            overwrite=True,
            languages=("en", "pl"),
        )
    except typer.Exit:
        return "the build failed (its errors are printed above)", "", 0
    return None, str(result.snapshot_dir), int(result.manifest.counts.get("products", 0))


def _demo_source_checksum(catalogue: Path) -> str:
    """SHA-256 over the demo catalogue and its pictures (names and bytes), in name order."""
    import hashlib

    digest = hashlib.sha256(catalogue.read_bytes())
    for picture in sorted((catalogue.parent / "images").glob("*.png")):
        digest.update(picture.name.encode("utf-8"))
        digest.update(hashlib.sha256(picture.read_bytes()).digest())
    return digest.hexdigest()


keys_app = typer.Typer(
    help="API keys: search keys for storefronts and apps, admin keys for merchandisers."
)
app.add_typer(keys_app, name="keys")


KeysDbOption = Annotated[
    Path | None,
    typer.Option(
        "--keys-db",
        help="The key database; default: PRODUCTSEARCH_KEYS_DB as the service reads it "
        f"(its settings: environment, PRODUCTSEARCH_CONFIG, .env), else {DEFAULT_KEYS_DB} "
        "under the working directory.",
    ),
]


def _keys_settings(keys_db: Path | None) -> tuple[Path, str | None]:
    """The key database (absolute) and server secret, read as the service reads them; warns
    on standard error while no server secret is set."""
    from api.security import SECRET_WARNING

    try:
        settings = Settings(keys_db=keys_db) if keys_db is not None else Settings()
    except ValueError as exc:
        raise _fail(f"invalid settings: {exc}", code=2) from exc
    if settings.keys_db is None:
        raise _fail(
            "PRODUCTSEARCH_KEYS_DB is 'none' (keys in memory): name a key database file "
            "(--keys-db or PRODUCTSEARCH_KEYS_DB) that the service uses too",
            code=2,
        )
    secret = settings.keys_secret.get_secret_value() if settings.keys_secret else None
    if not secret:
        err_console.print(f"[bold yellow]warning:[/] {escape(SECRET_WARNING)}")
    return settings.keys_db, secret


@keys_app.command("create")
def create_key(
    name: Annotated[str, typer.Option("--name", help="Who or what the key is for.")],
    scope: Annotated[
        str, typer.Option("--scope", help="search (storefronts, apps) or admin (merchandisers).")
    ] = "search",
    keys_db: KeysDbOption = None,
    filters: Annotated[
        str | None,
        typer.Option(
            "--filters",
            help='Fixed filters of a search key as JSON, e.g. \'{"attr": {"country": ["PL"]}}\'.',
        ),
    ] = None,
    rate_per_minute: Annotated[
        int | None, typer.Option("--rate", help="Requests per minute (default by scope).")
    ] = None,
) -> None:
    """Create an API key and print its token once (only a hash is stored)."""
    from api.security import create_key_cli

    path, secret = _keys_settings(keys_db)
    try:
        create_key_cli(
            path,
            name,
            scope=scope,
            filters_json=filters,
            rate_per_minute=rate_per_minute,
            secret=secret,
            echo=typer.echo,
        )
    except InvalidRequestError as exc:
        raise _fail(f"{exc} (key database {path})") from exc


@keys_app.command("list")
def list_keys(keys_db: KeysDbOption = None) -> None:
    """List the keys of the key database (ids, names, scopes; never tokens)."""
    from api.security import KeyStore

    path, secret = _keys_settings(keys_db)
    if not path.is_file():
        raise _fail(f"no key database at {path}: create a key first (productsearch keys create)")
    store = KeyStore(path, secret=secret)
    try:
        keys = store.list()
    finally:
        store.close()
    typer.echo(f"{len(keys)} key(s) in {path}")
    for key in keys:
        state = f"revoked {key.revoked_at:%Y-%m-%d}" if key.revoked_at else "active"
        filters = " filters" if key.filters is not None else ""
        typer.echo(f"{key.id}  {key.scope:<6}  {state:<18}  {key.name}{filters}")


@keys_app.command("revoke")
def revoke_key(
    key_id: Annotated[str, typer.Argument(help="The key's id (the token's middle part).")],
    keys_db: KeysDbOption = None,
) -> None:
    """Revoke a key: requests with it get 401 from then on (it stays listed, for the record)."""
    from api.security import KeyStore

    path, secret = _keys_settings(keys_db)
    if not path.is_file():
        raise _fail(f"no key database at {path}")
    store = KeyStore(path, secret=secret)
    try:
        key = store.revoke(key_id)
    finally:
        store.close()
    if key is None:
        raise _fail(f"no key {key_id!r} in {path}")
    typer.echo(f"revoked {key.scope} key {key.id} ({key.name}) in {path}")


#: Most upserts plus deletes sent to a service in one request (its limit, ``MAX_CHANGES``).
CHANGES_PER_REQUEST = 10_000


@dataclass(frozen=True, slots=True)
class _Changes:
    """Catalogue changes read from a file: raw upsert rows (with their line or item number),
    ids to delete, and rows that could not be read at all."""

    upserts: list[tuple[int, dict[str, Any]]]
    deletes: list[str]
    unreadable: list[tuple[int, str]]


def _read_changes(source: Path) -> _Changes:
    """Read changes as the ``POST /admin/catalogue/changes`` body (one JSON object with
    ``upserts`` and ``deletes``) or as JSON Lines (one product per line to upsert, or
    ``{"delete": "<id>"}`` to delete).

    Raises:
        typer.Exit: The file cannot be read or its body is malformed (code 2).
    """
    import sys

    import orjson

    try:
        data = sys.stdin.buffer.read() if str(source) == "-" else source.read_bytes()
    except OSError as exc:
        raise _fail(f"cannot read {source}: {exc.strerror or exc}", code=2) from exc
    data = data.removeprefix(b"\xef\xbb\xbf")
    try:
        whole = orjson.loads(data)
    except orjson.JSONDecodeError:
        whole = None
    if isinstance(whole, dict) and whole and set(whole) <= {"upserts", "deletes"}:
        upserts, deletes = whole.get("upserts", []), whole.get("deletes", [])
        if not isinstance(upserts, list) or not isinstance(deletes, list):
            raise _fail(f"{source}: 'upserts' and 'deletes' must be JSON arrays", code=2)
        if not all(isinstance(i, str) for i in deletes):
            raise _fail(f"{source}: 'deletes' must hold product ids (strings)", code=2)
        rows: list[tuple[int, dict[str, Any]]] = []
        unreadable: list[tuple[int, str]] = []
        for number, row in enumerate(upserts, start=1):
            if isinstance(row, dict):
                rows.append((number, row))
            else:
                unreadable.append((number, f"expected a JSON object, got {type(row).__name__}"))
        return _Changes(rows, list(deletes), unreadable)

    changes = _Changes([], [], [])
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            changes.unreadable.append((number, f"invalid JSON: {exc}"))
            continue
        if not isinstance(value, dict):
            changes.unreadable.append((number, "expected a JSON object"))
        elif set(value) == {"delete"}:
            if not isinstance(value["delete"], str) or not value["delete"].strip():
                changes.unreadable.append((number, "'delete' must be a product id (a string)"))
            else:
                changes.deletes.append(value["delete"])
        else:
            changes.upserts.append((number, value))
    return changes


@app.command(
    "apply-changes",
    help="Upsert and delete products in a snapshot without a full rebuild: offline on a "
    "snapshot folder (--index) or through a running service (--url, admin key).\n\n"
    "Only changed products are analysed, embedded and photo-read; an upsert replaces the "
    "product with the same id. Invalid products are listed and the valid ones applied "
    "(--strict: nothing is applied).\n\n"
    "Exit status: 0 applied; 1 nothing valid to apply, or the snapshot or service refused; "
    "2 bad usage or an unreadable CHANGES file.",
)
def apply_changes_command(
    changes_file: Annotated[
        Path,
        typer.Argument(
            metavar="CHANGES",
            dir_okay=False,
            help='Changes: JSON Lines (a product per line to upsert, {"delete": "<id>"} to '
            'delete) or the POST /admin/catalogue/changes body ({"upserts": [...], '
            '"deletes": [...]}); - reads stdin.',
        ),
    ],
    index: Annotated[
        Path | None,
        typer.Option(
            "--index",
            "-i",
            file_okay=False,
            help="Apply offline to this snapshot folder (replaced atomically; a service "
            "serving it picks it up on POST /admin/snapshot/reload).",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            file_okay=False,
            help="With --index: write the new snapshot here instead of replacing --index.",
        ),
    ] = None,
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            help="Apply to a running service instead (e.g. http://127.0.0.1:8000): it "
            "publishes the new snapshot and serves it within seconds.",
        ),
    ] = None,
    admin_key: Annotated[
        str | None,
        typer.Option(
            "--admin-key",
            envvar="PRODUCTSEARCH_ADMIN_KEY",
            help="With --url: an admin key (prefer the environment variable to the option).",
        ),
    ] = None,
    delete: Annotated[
        list[str] | None,
        typer.Option(
            "--delete", "-d", metavar="ID", help="Also delete this product id (repeatable)."
        ),
    ] = None,
    strict: Annotated[
        bool,
        typer.Option("--strict", help="Apply nothing when any product is invalid."),
    ] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", min=1, help="With --url: seconds to wait per request.")
    ] = 600.0,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the outcome as JSON (the API's shape).")
    ] = False,
) -> None:
    """Apply catalogue changes offline or through a service (see the command's help).

    Raises:
        typer.Exit: Code 1 when nothing was applied, 2 for bad usage (see the help).
    """
    if (index is None) == (url is None):
        raise _fail("pass either --index DIR (offline) or --url URL (a running service)", 2)
    if out is not None and index is None:
        raise _fail("--out goes with --index", code=2)
    changes = _read_changes(changes_file)
    changes.deletes.extend(delete or ())
    if strict and changes.unreadable:
        number, reason = changes.unreadable[0]
        raise _fail(f"{changes_file}: row {number}: {reason} (--strict: nothing applied)")
    if index is not None:
        outcome = _apply_offline(changes, changes_file, index, out or index, strict=strict)
    else:
        assert url is not None
        outcome = _apply_online(changes, url, admin_key, timeout=timeout, strict=strict)
    rejected = [
        {"row": number, "id": None, "errors": [{"field": "*", "reason": reason}]}
        for number, reason in changes.unreadable
    ] + outcome.pop("rejected_rows")
    outcome["rejected"] = sorted(rejected, key=lambda item: int(item["row"]))
    if as_json:
        typer.echo(json.dumps(outcome, indent=2))
        return
    _print_changes(outcome)


def _apply_offline(
    changes: _Changes, source: Path, index: Path, out: Path, *, strict: bool
) -> dict[str, Any]:
    """Validate the rows and apply them with :func:`indexer.delta.apply_changes`.

    Raises:
        typer.Exit: Nothing valid to apply, --strict and an invalid row, a bad snapshot (1).
    """
    import time

    from indexer.delta import apply_changes
    from indexer.formats.fields import build_product

    base_dir = "" if str(source) == "-" else str(source.resolve().parent)
    products = []
    rejected: list[dict[str, Any]] = []
    for number, row in changes.upserts:
        built = build_product(number, row, base_dir)
        if built.product is None:
            rejected.append(
                {
                    "row": number,
                    "id": built.product_id,
                    "errors": [{"field": e.field, "reason": e.reason} for e in built.errors],
                }
            )
        else:
            products.append(built.product)
    if strict and rejected:
        first = rejected[0]
        raise _fail(
            f"row {first['row']} ({first['id'] or 'no id'}): {first['errors'][0]['reason']} "
            "(--strict: nothing applied)"
        )
    if not products and not changes.deletes:
        raise _fail("no valid change to apply")
    started = time.perf_counter()
    try:
        with _stage_progress() as bars:
            result = apply_changes(
                index, out, upserts=products, deletes=changes.deletes, progress=bars
            )
    except SnapshotError as exc:
        raise _fail(f"cannot apply changes to {index}: {exc}") from exc
    except (ValueError, ImportError) as exc:  # repeated ids, an id both upserted and deleted
        raise _fail(f"cannot apply changes: {exc}") from exc
    return {
        "snapshot": str(result.snapshot_dir),
        "snapshot_id": result.manifest.snapshot_id,
        "base_snapshot_id": result.base_snapshot_id,
        "inserted": list(result.inserted),
        "replaced": list(result.replaced),
        "deleted": list(result.deleted),
        "unknown_deletes": list(result.unknown_deletes),
        "rejected_rows": rejected,
        "embedded": result.embedded,
        "took_ms": round((time.perf_counter() - started) * 1000.0, 1),
    }


def _apply_online(
    changes: _Changes, url: str, admin_key: str | None, *, timeout: float, strict: bool
) -> dict[str, Any]:
    """POST the changes to ``/admin/catalogue/changes`` in requests of at most
    :data:`CHANGES_PER_REQUEST` changes; the service validates each product.

    Raises:
        typer.Exit: No admin key (2); --strict and an invalid row, the service cannot be
            reached or refuses the changes (1).
    """
    import urllib.error
    import urllib.request

    if not admin_key:
        raise _fail("--url needs an admin key: --admin-key or PRODUCTSEARCH_ADMIN_KEY", code=2)
    if strict:
        from indexer.formats.fields import build_product

        for number, row in changes.upserts:
            built = build_product(number, row, "")
            if built.product is None:
                reason = built.errors[0].reason if built.errors else "invalid"
                raise _fail(f"row {number}: {reason} (--strict: nothing applied)")
    endpoint = url.rstrip("/") + "/admin/catalogue/changes"
    items: list[tuple[str, Any]] = [("upsert", r) for r in changes.upserts]
    items += [("delete", i) for i in changes.deletes]
    total: dict[str, Any] = {
        "url": url,
        "snapshot_id": None,
        "inserted": [],
        "replaced": [],
        "deleted": [],
        "unknown_deletes": [],
        "rejected_rows": [],
        "embedded": 0,
        "took_ms": 0.0,
    }
    for start in range(0, len(items), CHANGES_PER_REQUEST):
        chunk = items[start : start + CHANGES_PER_REQUEST]
        rows = [row for kind, row in chunk if kind == "upsert"]
        body = {
            "upserts": [data for _, data in rows],
            "deletes": [i for kind, i in chunk if kind == "delete"],
        }
        request = urllib.request.Request(
            endpoint,
            data=json.dumps(body).encode("utf-8"),
            method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {admin_key}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                answer = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise _fail(
                f"{endpoint} answered {exc.code}: {_http_detail(exc)}"
                + (f" ({start} changes were applied before)" if start else "")
            ) from exc
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            why = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            raise _fail(f"cannot reach {endpoint}: {why}") from exc
        total["snapshot_id"] = answer.get("snapshot_id")
        for name in ("inserted", "replaced", "deleted", "unknown_deletes"):
            total[name].extend(answer.get(name, []))
        for item in answer.get("rejected", []):
            number = rows[item["index"]][0]
            total["rejected_rows"].append(
                {"row": number, "id": item.get("id"), "errors": item.get("errors", [])}
            )
        total["embedded"] += int(answer.get("embedded", 0))
        total["took_ms"] = round(total["took_ms"] + float(answer.get("took_ms", 0.0)), 1)
    return total


def _http_detail(exc: Any) -> str:
    """The ``detail`` of a FastAPI error answer, else its first 300 characters."""
    try:
        text = exc.read().decode("utf-8", errors="replace")
    except OSError:
        return str(exc.reason)
    try:
        detail = json.loads(text).get("detail", text)
    except (ValueError, AttributeError):
        detail = text
    if isinstance(detail, dict) and "message" in detail:
        detail = detail["message"]
    return str(detail)[:300]


def _print_changes(outcome: dict[str, Any]) -> None:
    where = outcome.get("snapshot") or outcome.get("url")
    console.print(
        f"[bold green]snapshot[/] {escape(str(where))} ({escape(str(outcome['snapshot_id']))})"
    )
    for name in ("inserted", "replaced", "deleted"):
        console.print(f"{name + ':':<18} {len(outcome[name])}")
    if outcome["unknown_deletes"]:
        console.print(
            f"unknown deletes:   {len(outcome['unknown_deletes'])} "
            f"({escape(', '.join(outcome['unknown_deletes'][:MAX_ERRORS_SHOWN]))})"
        )
    console.print(f"embedded:          {outcome['embedded']}")
    console.print(f"took:              {outcome['took_ms'] / 1000.0:.1f} s")
    rejected = outcome["rejected"]
    console.print(f"rejected:          {len(rejected)}")
    if rejected:
        shown = rejected[:MAX_ERRORS_SHOWN]
        table = Table(title=f"First {len(shown)} of {len(rejected)} rejected")
        table.add_column("row", justify="right")
        table.add_column("id")
        table.add_column("field")
        table.add_column("reason")
        for item in shown:
            first = item["errors"][0] if item["errors"] else {"field": "*", "reason": ""}
            table.add_row(
                str(item["row"]),
                escape(item["id"] or ""),
                escape(str(first["field"])),
                escape(str(first["reason"])),
            )
        console.print(table)
