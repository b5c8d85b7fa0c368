"""Service configuration: the one settings object, read from the environment and a file.

Sources, strongest first: arguments passed to :class:`Settings`, ``PRODUCTSEARCH_*`` environment
variables, the file named by ``PRODUCTSEARCH_CONFIG`` (TOML or JSON with bare field names, or a
dotenv file with ``PRODUCTSEARCH_*`` keys), then ``./.env``.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    JsonConfigSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from indexer.formats.fields import DEFAULT_LIMITS, FieldLimits
from search.weights import DEFAULT_WEIGHTS

CONFIG_ENV_VAR = "PRODUCTSEARCH_CONFIG"
"""Environment variable naming an optional configuration file."""

DEFAULT_KEYS_DB = Path("var/keys.sqlite3")
"""The key database when ``PRODUCTSEARCH_KEYS_DB`` is not set (resolved against the working
directory when the settings are read; every keys message names the absolute path)."""

IN_MEMORY = ("none", ":memory:")
"""``keys_db`` values that keep the keys in memory (lost at exit: tests, embedding)."""

LogLevel = Literal["critical", "error", "warning", "info", "debug", "trace"]
TextEmbedderChoice = Literal["auto", "none"]


class Settings(BaseSettings):
    """Configuration of the HTTP service and the CLI.

    Attributes:
        index_dir: The index snapshot folder to serve; required to start the service.
        text_embedder: ``"auto"`` encodes queries with the text embedder the snapshot's manifest
            names; ``"none"`` turns semantic retrieval off at query time (lexical, fuzzy and
            phonetic retrieval still run).
        max_k: The largest page size a caller may ask for.
        host: Interface ``serve`` binds to.
        port: Port ``serve`` listens on.
        log_level: Log level of the service and uvicorn.
        cors_origins: Origins allowed to call the API from a browser; empty disables CORS.
            From the environment: a JSON list or comma-separated origins.
        events_db: Where shopper events are stored: a SQLite file path, a
            ``postgresql://`` URL (several replicas sharing one store), or ``none`` to turn
            events, behavioural ranking and personalisation off.
        events_synchronous: SQLite durability: ``FULL`` (an acknowledged event survives a power
            cut, one fsync per batch) or ``NORMAL`` (survives a crash of the process).
        events_retention_days: Events older than this are deleted; None keeps them.
        behaviour_refresh_s: Seconds between background refreshes of behavioural signals and
            shopper profiles from new events.
        behaviour_half_life_days: Half-life of the time decay of behavioural signals.
        behaviour_weight: Strength of the behavioural re-ranker (0 turns it off).
        behaviour_min_shoppers: Distinct shoppers (users, else sessions) needed before shared
            signals act: a product lifted for a query, a product popular, a query suggested.
        behaviour_demote_min_shoppers: Distinct shoppers who must have been shown a product for
            a query before their skips can move it down.
        behaviour_max_choices_per_query: Products of one query a shopper's clicks, carts and
            purchases count for in the shared signals.
        events_max_batch: Most events one ``POST /events`` request may carry (413 beyond).
        impressions_flush_s: Seconds between background writes of the server's search records
            (each answer's ``query_id``, query and results) to the event store.
        personalisation_strength: Bound of the personalisation re-ranker: each relevant hit's
            score moves by at most this factor (0 turns it off, at most 0.9).
        keys_db: SQLite file of the API keys (stored hashed), the one setting that both the
            service and ``productsearch keys`` read; made absolute when the settings are read
            (default ``var/keys.sqlite3`` under the working directory). ``none`` (None) keeps
            the keys in memory (lost at exit).
        keys_secret: Server secret the key hashes are keyed with (HMAC-SHA256); the service
            and the ``keys`` commands warn while it is unset.
        open_mode: Let the search routes (search, suggest, photo, voice, products, events)
            answer requests without a key. Off by default: then a request without a key gets
            401. Admin routes, shopper data (erasure) and analytics always need an admin key.
        storefront_key: Search-scoped API key the storefront demo page (``/storefront``) is served
            with (``PRODUCTSEARCH_STOREFRONT_KEY``), so shoppers need none; an admin or unknown
            key is never put in the page.
        algolia_index: The index name the Algolia-compatible routes (``/1/...``,
            ``docs/instantsearch.md``) answer for; ``<name>_price_asc`` and
            ``<name>_price_desc`` are its replicas sorted by price.
        client_rate_per_minute: Requests per minute one client (address) may make under a
            search key or in open mode, on top of the key's own limit: a storefront's whole
            audience shares its key. 0 turns the per-client limit off.
        client_burst: Requests one client may make at once under a search key or in open mode.
        trusted_proxies: Addresses or networks (CIDR) of the reverse proxies in front of the
            service; only from these is ``X-Forwarded-For`` read to find the client. From the
            environment: a JSON list or comma-separated values.
        merch_db: SQLite file of the merchandising rules, ranking weights, experiments, their
            versions and audit log; None (``none``) keeps them in memory. ``serve`` uses
            ``var/merch.sqlite3`` when it is not set at all.
        speech_recognizer: Speech recognisers for voice search, one per language:
            ``<lang>=<spec>,...`` with the default language first (default
            ``en=moonshine,pl=whisper,prior=pl:4``; ``detect=<spec>`` or ``detect=none`` says
            what detects the language of requests without ``lang``, by default whisper when
            configured; ``prior=<lang>:<weight>`` weighs a language in that detection).
            A spec is ``moonshine`` (English), ``whisper`` (packaged whisper base),
            ``whisper:<ctranslate2-folder>``, ``vosk:<model-folder>`` (official vosk models,
            e.g. small English or Polish), ``vosk-ko`` or ``pocketsphinx``; a single spec alone
            serves the languages it knows; ``none`` turns voice search off.
        request_threads: Threads of each worker process that run the synchronous request
            handlers (searches, events). Searches hold the GIL most of their time, so threads
            beyond two only interleave them: on the Home Depot titles under 32 connections one
            worker served 186 lexical searches a second with 2 threads, 159 with 4 and 117 with 8
            (its CPU per search grew from 6.3 to 10.3 ms); the hybrid pipeline 135 with 2 and 112
            with 8. Add cores with ``workers``, not threads.
        model_threads: CPU threads per model inference (torch, faiss) in the service; 1 keeps
            concurrent requests from fighting over the cores (see ``models.runtime``).
        workers: Worker processes serving requests (``productsearch serve``). One Python
            process runs searches on one core at a time (the GIL): run one worker per core. With
            more than one, the snapshot is opened once and the workers are forked from that
            process (gunicorn with uvicorn workers, ``--preload``), so its arrays and vector
            graph are shared pages, not copies; each worker follows snapshot changes another
            made (see ``snapshot_poll_s``); rate limits are per worker (each allows the key's
            rate divided by ``workers``).
        metrics_dir: Where worker processes keep their metric values for ``GET /metrics`` to
            add up (set by ``serve`` with several workers, see
            :func:`share_metrics_between_processes`); None: one process, metrics in memory.
        snapshot_poll_s: With several workers, how often each checks the snapshot folder's
            manifest and swaps to a snapshot another worker (or the indexer) published there
            (:mod:`api.follow`); 0 turns this off.
        log_format: ``json`` (one JSON object per line with the request id: what log
            pipelines read) or ``text``.
        max_body_bytes: Largest request body (photo and voice uploads must fit); 413 beyond.
        max_query_bytes: Longest query string; 414 beyond.
        search_timeout_s: A search, suggestion or upload search not answering within this
            gets 503 with ``Retry-After``.
        ready_wait_s: How long start-up waits for the warm-up (the first real query) before
            the server listens; a longer warm-up goes on with ``/health`` answering and
            ``/ready`` saying 503 until it is done.
        catalogue_max_row_bytes: Longest catalogue row (a JSON line); longer ones are
            reported bad rows without being read whole.
        catalogue_max_title_chars: Longest product title; a longer one is a bad row (also for
            ``POST /admin/catalogue/changes``, checked before the catalogue lock).
        catalogue_max_description_chars: Longest product description (before HTML removal).
        catalogue_max_text_chars: Longest other text value (brand, URL, attribute value...).
        voice_idle_timeout_s: A voice stream that sends no audio for this long is closed
            (code 1008 with the reason).
        voice_streams_per_key: Concurrent voice streams one API key (or, without keys, one
            client) may hold; more are refused with code 1013.
        voice_streams_per_client: Concurrent voice streams one client address may hold under a
            shared key (a storefront's key serves every shopper); more are refused with 1013.
        voice_streams_total: Concurrent voice streams the service holds; more are refused with
            1013 ("try again later"), so searches keep their share of the CPU.
        voice_transcribe_workers: Voice chunks transcribed at the same time across all streams
            (the rest wait their turn); the other request threads stay free for searches.
        voice_max_lag_s: A stream whose unprocessed audio exceeds this many seconds (the
            client sends faster than it can be transcribed) is closed with 1013 and the reason.
        image_roots: Folders ``GET /products/{id}/images/{n}`` may serve local photos from
            (real paths, symbolic links resolved; a JSON list or comma-separated folders from the
            environment). Empty (the default): the catalogue's folder the snapshot was built
            from, as its manifest records it. The snapshot's own ``images`` folder always counts.
        image_fetch_allow_private: Let a snapshot build fetch photo URLs on loopback, private,
            link-local and other non-global addresses (``PRODUCTSEARCH_IMAGE_FETCH_ALLOW_PRIVATE``,
            read by the indexer itself); off by default, so a catalogue cannot make the build
            probe the internal network.
        upload_max_pixels: Most pixels an uploaded photo may declare in its header (413 beyond).
        upload_max_decoded_pixels: Most pixels decoded for one upload: JPEGs are decoded at a
            reduced scale (1/2 to 1/8) to fit, other formats over it get 413 before a pixel is
            decoded (a 7000x7000 PNG of zeros is 190 KB and 200 MB decoded).
        upload_decode_concurrency: Photo uploads decoded at the same time; the rest wait.
        currency: The shop's base currency (ISO 4217, e.g. ``PLN``): what price filters, the
            price sort and the price facet compare in when a search names no ``currency``, and
            what ``currency_rates`` are quoted in. Unset: the currency most products are in.
        currency_rates: Exchange rates as JSON, currency -> units of ``currency`` per unit
            (``{"EUR": 4.3, "USD": 4.0}``: 1 EUR = 4.3 PLN). Prices in a currency without a
            rate are left out of price filters and sorted last, never compared as bare numbers.
    """

    model_config = SettingsConfigDict(
        env_prefix="PRODUCTSEARCH_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    index_dir: Path | None = None
    text_embedder: TextEmbedderChoice = "auto"
    max_k: int = Field(default=250, ge=1, le=10_000)
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65_535)
    log_level: LogLevel = "info"
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    events_db: str = "var/events.sqlite3"
    events_synchronous: Literal["NORMAL", "FULL"] = "FULL"
    events_retention_days: float | None = Field(default=None, gt=0)
    behaviour_refresh_s: float = Field(default=2.0, gt=0)
    behaviour_half_life_days: float = Field(default=14.0, gt=0)
    behaviour_weight: float = Field(default=DEFAULT_WEIGHTS.behaviour, ge=0)
    behaviour_min_shoppers: int = Field(default=3, ge=1, le=1000)
    behaviour_demote_min_shoppers: int = Field(default=10, ge=1, le=100_000)
    behaviour_max_choices_per_query: int = Field(default=5, ge=1, le=250)
    events_max_batch: int = Field(default=100, ge=1, le=1000)
    impressions_flush_s: float = Field(default=0.5, gt=0, le=60)
    personalisation_strength: float = Field(default=DEFAULT_WEIGHTS.personalisation, ge=0, le=0.9)
    keys_db: Path | None = Field(default_factory=lambda: DEFAULT_KEYS_DB.resolve())
    keys_secret: SecretStr | None = None
    open_mode: bool = False
    storefront_key: SecretStr | None = None
    algolia_index: str = Field(default="products", pattern=r"^[A-Za-z0-9_.-]{1,100}$")
    client_rate_per_minute: int = Field(default=120, ge=0, le=1_000_000)
    client_burst: int = Field(default=40, ge=1, le=100_000)
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    merch_db: Path | None = None
    speech_recognizer: str = "en=moonshine,pl=whisper,prior=pl:4"
    model_threads: int = Field(default=1, ge=1, le=64)
    request_threads: int = Field(default=2, ge=1, le=256)
    workers: int = Field(default=1, ge=1, le=64)
    metrics_dir: Path | None = None
    snapshot_poll_s: float = Field(default=2.0, ge=0)
    log_format: Literal["json", "text"] = "json"
    max_body_bytes: int = Field(default=12 * 1024 * 1024, ge=1)
    max_query_bytes: int = Field(default=8192, ge=1)
    search_timeout_s: float = Field(default=10.0, gt=0)
    ready_wait_s: float = Field(default=60.0, ge=0)
    catalogue_max_row_bytes: int = Field(default=DEFAULT_LIMITS.row_bytes, ge=1)
    catalogue_max_title_chars: int = Field(default=DEFAULT_LIMITS.title_chars, ge=1)
    catalogue_max_description_chars: int = Field(default=DEFAULT_LIMITS.description_chars, ge=1)
    catalogue_max_text_chars: int = Field(default=DEFAULT_LIMITS.text_chars, ge=1)

    def catalogue_limits(self) -> FieldLimits:
        """The size limits of catalogue rows these settings give (``catalogue_max_*``)."""
        return replace(
            DEFAULT_LIMITS,
            row_bytes=self.catalogue_max_row_bytes,
            title_chars=self.catalogue_max_title_chars,
            description_chars=self.catalogue_max_description_chars,
            text_chars=self.catalogue_max_text_chars,
        )

    voice_idle_timeout_s: float = Field(default=10.0, gt=0)
    voice_streams_per_key: int = Field(default=8, ge=1)
    voice_streams_per_client: int = Field(default=2, ge=1)
    voice_streams_total: int = Field(default=16, ge=1)
    voice_transcribe_workers: int = Field(default=2, ge=1)
    voice_max_lag_s: float = Field(default=5.0, gt=0)
    image_roots: Annotated[list[Path], NoDecode] = Field(default_factory=list)
    image_fetch_allow_private: bool = False
    upload_max_pixels: int = Field(default=50_000_000, ge=1)
    upload_max_decoded_pixels: int = Field(default=25_000_000, ge=1)
    upload_decode_concurrency: int = Field(default=2, ge=1, le=64)
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")
    currency_rates: dict[str, Annotated[float, Field(gt=0, allow_inf_nan=False)]] = Field(
        default_factory=dict
    )

    @field_validator("text_embedder", "log_level", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("currency", mode="before")
    @classmethod
    def _upper_currency(cls, value: Any) -> Any:
        if isinstance(value, str):
            return value.strip().upper() or None
        return value

    @field_validator("currency_rates", mode="after")
    @classmethod
    def _rate_codes(cls, value: dict[str, float]) -> dict[str, float]:
        rates = {code.strip().upper(): rate for code, rate in value.items()}
        bad = [code for code in rates if not re.fullmatch(r"[A-Z]{3}", code)]
        if bad:
            raise ValueError(f"currency_rates: {bad} are not ISO 4217 codes such as EUR")
        return rates

    @model_validator(mode="after")
    def _rates_need_a_base(self) -> Settings:
        if self.currency_rates and self.currency is None:
            raise ValueError(
                "currency_rates need the base currency they are quoted in: set "
                "PRODUCTSEARCH_CURRENCY (e.g. PLN)"
            )
        return self

    @field_validator("keys_db", "merch_db", mode="before")
    @classmethod
    def _keys_location(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() in IN_MEMORY:
            return None
        return value

    @field_validator("keys_db", mode="after")
    @classmethod
    def _absolute_keys_db(cls, value: Path | None) -> Path | None:
        # Absolute now, so the CLI and the service name (and use) the same file.
        return value.expanduser().resolve() if value is not None else None

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: Any) -> Any:
        return _split_list(value)

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        return _split_list(value)

    @field_validator("image_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: Any) -> Any:
        return _split_list(value)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Insert the ``PRODUCTSEARCH_CONFIG`` file between the environment and ``./.env``.

        Raises:
            FileNotFoundError: ``PRODUCTSEARCH_CONFIG`` names a file that does not exist.
        """
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config = os.environ.get(CONFIG_ENV_VAR, "").strip()
        if config:
            sources.append(_config_file_source(settings_cls, Path(config)))
        sources += [dotenv_settings, file_secret_settings]
        return tuple(sources)


#: The variable prometheus_client reads for its multiprocess mode.
PROMETHEUS_MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def share_metrics_between_processes(settings: Settings, folder: Path) -> None:
    """Have the processes about to be forked keep their metric values in ``folder``.

    prometheus_client takes the folder from its own environment variable, so this (the one
    home of configuration) sets it as well as ``settings.metrics_dir``.
    """
    settings.metrics_dir = folder
    os.environ[PROMETHEUS_MULTIPROC_ENV] = str(folder)


def _split_list(value: Any) -> Any:
    # Accept both '["https://a", "https://b"]' and 'https://a,https://b' from env vars.
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [item.strip() for item in text.split(",") if item.strip()]
    return value


def _config_file_source(settings_cls: type[BaseSettings], path: Path) -> PydanticBaseSettingsSource:
    if not path.is_file():
        raise FileNotFoundError(f"{CONFIG_ENV_VAR} names {str(path)!r}, which is not a file")
    suffix = path.suffix.lower()
    if suffix == ".toml":
        return TomlConfigSettingsSource(settings_cls, toml_file=path)
    if suffix == ".json":
        return JsonConfigSettingsSource(settings_cls, json_file=path)
    return DotEnvSettingsSource(settings_cls, env_file=path)
