"""Web pages served by the service: the storefront demo (``/storefront``, ``/`` redirects there)
and the merchandiser console (``/console``), with their scripts and styles under ``/web/``.

The pages are plain HTML, CSS and JavaScript in ``api/web/`` (no build step, nothing from a
CDN) and call the same HTTP API as any client.

**Keys.** The console asks the merchandiser for an admin key and keeps it in the tab's
``sessionStorage``; no admin key is ever written into a page. The storefront is served with a
search-scoped key when one is configured (``storefront_key`` in the settings, which reads the
``PRODUCTSEARCH_STOREFRONT_KEY`` environment variable): a search key is what a shop's own
storefront embeds anyway (it reaches search routes only, may carry fixed filters and is
rate-limited). A configured key that is unknown, revoked or admin-scoped is not embedded (an
admin key in a public page would hand the shop to anyone); the page then asks for a key when
the service answers 401. In open mode (``PRODUCTSEARCH_OPEN_MODE``, on for
``productsearch serve --demo``) search needs no key and the page simply works.

The pages are left out of the OpenAPI schema: they are not API.
"""

from __future__ import annotations

import html
import logging
from functools import cache
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from pydantic import SecretStr

from api.security import security_of

logger = logging.getLogger("productsearch.api.pages")

router = APIRouter(tags=["pages"], include_in_schema=False)

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
"""The folder holding the pages' files."""

STOREFRONT_KEY_ENV = "PRODUCTSEARCH_STOREFRONT_KEY"
"""Environment variable of ``Settings.storefront_key`` (read with the other settings)."""

KEY_PLACEHOLDER = "{{search_key}}"

_MEDIA_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}

# Scripts only from this service (no inline script: a product title can never become code);
# images also from the shop's own image hosts (remote product photos) and blob: (photos the
# shopper picks, images fetched with the key).
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob: https: http:",
        "media-src 'self' blob:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    )
)

_PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # The storefront page may carry a key; neither page should linger in shared caches.
    "Cache-Control": "no-store",
}


@cache
def _assets() -> dict[str, Path]:
    """The files ``/web/{name}`` serves: by name, from :data:`WEB_DIR` only (no sub-folders,
    so no path can climb out of it)."""
    return {
        path.name: path
        for path in WEB_DIR.iterdir()
        if path.is_file() and path.suffix in _MEDIA_TYPES
    }


@cache
def _template(name: str) -> str:
    return (WEB_DIR / name).read_text(encoding="utf-8")


def storefront_key(request: Request) -> str | None:
    """The search key the storefront page is served with, or None.

    Read from ``settings.storefront_key`` (``PRODUCTSEARCH_STOREFRONT_KEY``) only, so the page
    and the rest of the service agree on one configuration; used only when it is an active
    search-scoped key.

    Args:
        request: The page request (for the settings and the key store).

    Returns:
        The token to embed, or None (no key configured, or one that must not be embedded).
    """
    settings = getattr(request.app.state, "settings", None)
    configured: object = getattr(settings, "storefront_key", None)
    if isinstance(configured, SecretStr):
        configured = configured.get_secret_value()
    token = str(configured or "").strip()
    if not token:
        return None
    key = security_of(request).keys.authenticate(token)
    if key is None:
        logger.warning("the configured storefront key is unknown or revoked; not embedding it")
        return None
    if key.scope != "search":
        logger.error(
            "the configured storefront key %s has scope %r; refusing to put it in a public page "
            "(create a search key: productsearch keys create --scope search --name storefront)",
            key.id,
            key.scope,
        )
        return None
    return token


@router.get("/", summary="The storefront demo")
def home() -> RedirectResponse:
    """Send a visitor of the service's root to the storefront demo."""
    return RedirectResponse("/storefront", status_code=307)


@router.get("/storefront", response_class=HTMLResponse, summary="The storefront demo")
def storefront(request: Request) -> HTMLResponse:
    """The storefront demo page, with its search key when one is configured."""
    token = storefront_key(request) or ""
    page = _template("storefront.html").replace(KEY_PLACEHOLDER, html.escape(token, quote=True))
    return HTMLResponse(page, headers=_PAGE_HEADERS)


@router.get("/console", response_class=HTMLResponse, summary="The merchandiser console")
def console() -> HTMLResponse:
    """The merchandiser console page (it asks for an admin key itself)."""
    return HTMLResponse(_template("console.html"), headers=_PAGE_HEADERS)


@router.get("/web/{name}", summary="A script or style of the pages")
def asset(name: Annotated[str, PathParam(max_length=100)]) -> FileResponse:
    """One of the pages' scripts or styles.

    Raises:
        HTTPException: 404 for a name that is not one of the pages' files.
    """
    path = _assets().get(name)
    if path is None:
        raise HTTPException(404, f"no file {name!r}")
    return FileResponse(
        path,
        media_type=_MEDIA_TYPES[path.suffix],
        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"},
    )
