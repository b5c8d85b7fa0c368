"""The ``productsearch`` command line: build snapshots, serve them, query them."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

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
from api.settings import Settings
from search.errors import CatalogueError, InvalidRequestError, SnapshotError
from search.snapshot import MANIFEST
from search.types import SearchRequest

if TYPE_CHECKING:
    from indexer.build import BuildResult
    from search.types import Explanation

DEFAULT_KEYS_DB = Path("var/keys.sqlite3")
"""Where ``serve`` and ``keys create`` keep API keys unless PRODUCTSEARCH_KEYS_DB says otherwise."""

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
    MINILM_FP32 = "minilm-fp32"
    E5 = "e5"
    NONE = "none"


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
) -> BuildResult:
    """Build a snapshot with progress bars on stderr.

    Raises:
        typer.Exit: The catalogue cannot be imported or the snapshot cannot be written (code 1).
    """
    from indexer.build import BuildConfig, build_from_catalogue

    try:
        with _stage_progress() as bars:
            return build_from_catalogue(
                catalogue,
                out,
                fmt=fmt,
                strict=strict,
                config=BuildConfig(
                    languages=languages,
                    embedder=embedder,
                    overwrite=overwrite,
                    image_embedder=image_embedder,
                    image_cache=Path("var/image-cache"),
                ),
                progress=bars,
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
) -> None:
    """Build an index snapshot from a catalogue and print the import report."""
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
    )
    _print_report(result)


def _print_report(result: BuildResult) -> None:
    from search.snapshot import COLOUR_REPORT, IMPORT_REPORT

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
    from api.app import open_engine
    from api.schemas import SearchResponse

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
) -> None:
    """Serve a snapshot over HTTP (OpenAPI docs at /docs)."""
    import uvicorn

    from api.app import create_app, open_engine

    overrides: dict[str, object] = {
        name: value
        for name, value in {"host": host, "port": port, "log_level": log_level}.items()
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
    # A served instance keeps its keys and merchandising in files unless told otherwise
    # (the library default, for tests and embedding, is in memory).
    if settings.keys_db is None:
        settings.keys_db = DEFAULT_KEYS_DB
    if settings.merch_db is None:
        settings.merch_db = Path("var/merch.sqlite3")
    for path in (settings.keys_db, settings.merch_db):
        path.parent.mkdir(parents=True, exist_ok=True)

    level = settings.log_level.upper() if settings.log_level != "trace" else "DEBUG"
    if settings.log_format == "json":
        from api.metrics import configure_json_logging

        configure_json_logging(level)
    else:
        logging.basicConfig(level=level, format="%(levelname)-9s %(name)s: %(message)s")
    try:
        engine = open_engine(settings)
    except SnapshotError as exc:
        raise _fail(f"refusing to serve {settings.index_dir}: {exc}") from exc
    console.print(
        f"serving {escape(str(settings.index_dir))} on http://{settings.host}:{settings.port} "
        f"(docs at /docs)"
    )
    uvicorn.run(
        create_app(settings, engine=engine),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=None if settings.log_format == "json" else uvicorn.config.LOGGING_CONFIG,
    )


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
    from search.snapshot import read_manifest, sha256_file

    data_dir.mkdir(parents=True, exist_ok=True)
    catalogue = write_demo_catalogue(data_dir)
    snapshot = data_dir / "snapshot"
    try:
        current = read_manifest(snapshot).catalogue_checksum == sha256_file(catalogue)
    except SnapshotError:
        current = False  # absent or damaged: build afresh
    if current:
        err_console.print(f"reusing demo snapshot {escape(str(snapshot))}")
        return snapshot
    result = _build(
        catalogue,
        snapshot,
        fmt="jsonl",
        strict=False,
        embedder=embedder,
        overwrite=True,
        languages=("en", "pl"),
    )
    err_console.print(
        f"built demo snapshot {escape(str(result.snapshot_dir))}: "
        f"{result.manifest.counts.get('products', 0)} products"
    )
    return snapshot


keys_app = typer.Typer(
    help="API keys: search keys for storefronts and apps, admin keys for merchandisers."
)
app.add_typer(keys_app, name="keys")


@keys_app.command("create")
def create_key(
    name: Annotated[str, typer.Option("--name", help="Who or what the key is for.")],
    scope: Annotated[
        str, typer.Option("--scope", help="search (storefronts, apps) or admin (merchandisers).")
    ] = "search",
    keys_db: Annotated[
        Path,
        typer.Option(
            "--keys-db", envvar="PRODUCTSEARCH_KEYS_DB", help="The service's key database."
        ),
    ] = DEFAULT_KEYS_DB,
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
    import os

    from api.security import create_key_cli
    from search.errors import InvalidRequestError

    keys_db.parent.mkdir(parents=True, exist_ok=True)
    try:
        create_key_cli(
            keys_db,
            name,
            scope=scope,
            filters_json=filters,
            rate_per_minute=rate_per_minute,
            secret=os.environ.get("PRODUCTSEARCH_KEYS_SECRET"),
            echo=typer.echo,
        )
    except InvalidRequestError as exc:
        raise _fail(str(exc)) from exc
