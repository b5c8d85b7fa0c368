"""Service configuration: the one settings object, read from the environment and a file.

Sources, strongest first: arguments passed to :class:`Settings`, ``PRODUCTSEARCH_*`` environment
variables, the file named by ``PRODUCTSEARCH_CONFIG`` (TOML or JSON with bare field names, or a
dotenv file with ``PRODUCTSEARCH_*`` keys), then ``./.env``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    JsonConfigSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

CONFIG_ENV_VAR = "PRODUCTSEARCH_CONFIG"
"""Environment variable naming an optional configuration file."""

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
        personalisation_strength: Bound of the personalisation re-ranker: each relevant hit's
            score moves by at most this factor (0 turns it off, at most 0.9).
        keys_db: SQLite file of the API keys (stored hashed); None keeps them in memory
            (they are lost at restart). While no key exists search is open and admin closed.
        keys_secret: Server secret the key hashes are keyed with (HMAC-SHA256).
        storefront_key: Search-scoped API key the storefront demo page (``/storefront``) is served
            with, so shoppers need none; an admin or unknown key is never put in the page.
        merch_db: SQLite file of the merchandising rules, ranking weights, experiments, their
            versions and audit log; None keeps them in memory.
        speech_recognizer: Speech recogniser for voice search: ``moonshine`` (English, default),
            ``whisper`` (packaged whisper base, also Polish), ``whisper:<ctranslate2-folder>``,
            ``vosk:<model-folder>`` (official vosk models, e.g. small English or Polish),
            ``vosk-ko``, ``pocketsphinx`` or ``none`` (voice search off).
        request_threads: Worker threads that run the synchronous request handlers (searches,
            events); anyio's default of 40 makes dozens of searches fight over the GIL on a small
            machine, which lowers throughput and raises every request's latency under load.
        model_threads: CPU threads per model inference (torch, faiss) in the service; 1 keeps
            concurrent requests from fighting over the cores (see ``models.runtime``).
        log_format: ``json`` (one JSON object per line with the request id: what log
            pipelines read) or ``text``.
        max_body_bytes: Largest request body (photo and voice uploads must fit); 413 beyond.
        max_query_bytes: Longest query string; 414 beyond.
        search_timeout_s: A search, suggestion or upload search not answering within this
            gets 503 with ``Retry-After``.
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
    behaviour_weight: float = Field(default=0.5, ge=0)
    personalisation_strength: float = Field(default=0.3, ge=0, le=0.9)
    keys_db: Path | None = None
    keys_secret: SecretStr | None = None
    storefront_key: SecretStr | None = None
    merch_db: Path | None = None
    speech_recognizer: str = "moonshine"
    model_threads: int = Field(default=1, ge=1, le=64)
    request_threads: int = Field(default=8, ge=1, le=256)
    log_format: Literal["json", "text"] = "json"
    max_body_bytes: int = Field(default=12 * 1024 * 1024, ge=1)
    max_query_bytes: int = Field(default=8192, ge=1)
    search_timeout_s: float = Field(default=10.0, gt=0)

    @field_validator("text_embedder", "log_level", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        # Accept both '["https://a", "https://b"]' and 'https://a,https://b' from env vars.
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [origin.strip() for origin in text.split(",") if origin.strip()]
        return value

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


def _config_file_source(settings_cls: type[BaseSettings], path: Path) -> PydanticBaseSettingsSource:
    if not path.is_file():
        raise FileNotFoundError(f"{CONFIG_ENV_VAR} names {str(path)!r}, which is not a file")
    suffix = path.suffix.lower()
    if suffix == ".toml":
        return TomlConfigSettingsSource(settings_cls, toml_file=path)
    if suffix == ".json":
        return JsonConfigSettingsSource(settings_cls, json_file=path)
    return DotEnvSettingsSource(settings_cls, env_file=path)
