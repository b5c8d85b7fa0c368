"""Dependencies injected into route handlers (swap them in tests with ``dependency_overrides``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from api.settings import Settings
from search.engine import SearchEngine


def get_engine(request: Request) -> SearchEngine:
    """The search engine the lifespan opened.

    Args:
        request: The current request.

    Returns:
        The engine over the serving snapshot.

    Raises:
        RuntimeError: The application was not started (no engine on ``app.state``).
    """
    engine: SearchEngine | None = getattr(request.app.state, "engine", None)
    if engine is None:
        raise RuntimeError("no search engine on app.state: was the app started via its lifespan?")
    state = request.app.state
    store = getattr(state, "config_store", None)
    serving_version = getattr(state, "config_version", None)
    if (
        store is not None
        and serving_version is not None
        and getattr(state, "base_engine", None) is not None
        and store.current().version != serving_version
    ):
        # A merchandiser saved rules or weights (here or on another replica): serve them now.
        from api.app import apply_merchandising

        engine = apply_merchandising(request.app)
    return engine


def get_settings(request: Request) -> Settings:
    """The settings the application was created with.

    Args:
        request: The current request.

    Returns:
        The service settings.
    """
    settings: Settings = request.app.state.settings
    return settings


EngineDep = Annotated[SearchEngine, Depends(get_engine)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
