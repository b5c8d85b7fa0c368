"""The interactive API documentation, ``/docs`` (Swagger UI) and ``/redoc`` (ReDoc), served
entirely by the service.

FastAPI's own pages load Swagger UI and ReDoc from a CDN and start Swagger UI with an inline
script: offline, or under a Content-Security-Policy that allows only the service's own
scripts, they stay blank. Here the pages reference only same-origin files under
``/docs/assets/``: the Swagger UI and ReDoc bundles shipped in the ``fastapi-offline`` package
(installed with the service, nothing fetched at run time) and a small start-up script of our
own, so no inline script is needed.
"""

from __future__ import annotations

import html
from functools import cache
from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, Response

ASSETS_PATH = "/docs/assets"
"""Where the documentation pages' files are served."""

#: The policy of the documentation pages: scripts only from the service, as for the web pages
#: (``api/routes/pages.py``). Styles may be inline because ReDoc (styled-components) writes its
#: styles into <style> elements and Swagger UI sets style attributes; ReDoc's search runs in a
#: worker made from a blob: URL; both draw icons as data: images.
DOCS_CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "worker-src 'self' blob:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    )
)

_PAGE_HEADERS = {
    "Content-Security-Policy": DOCS_CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

_MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
}

#: Starts Swagger UI on the element of the page, with the schema URL the page gives it (the
#: same options as FastAPI's page, without its inline script).
SWAGGER_INIT_JS = """\
"use strict";
(function () {
  var element = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: element.getAttribute("data-openapi-url"),
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    persistAuthorization: false,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
  });
})();
"""
_INIT_NAME = "swagger-init.js"


@cache
def asset_files() -> dict[str, Path]:
    """The bundled files ``/docs/assets/{name}`` serves, by name.

    Returns:
        Name -> file, from the ``fastapi_offline`` package's ``static`` folder only (no
        sub-folders, so no request can climb out of it).

    Raises:
        ImportError: ``fastapi-offline`` is not installed (it is a core dependency).
    """
    folder = Path(str(files("fastapi_offline") / "static"))
    return {
        path.name: path
        for path in folder.iterdir()
        if path.is_file() and path.suffix in _MEDIA_TYPES
    }


def _page(title: str, head: str, body: str) -> HTMLResponse:
    document = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n{head}</head>\n<body>\n{body}</body>\n</html>\n"
    )
    return HTMLResponse(document, headers=_PAGE_HEADERS)


def swagger_page(title: str, openapi_url: str, assets: str) -> HTMLResponse:
    """The Swagger UI page.

    Args:
        title: The page title.
        openapi_url: URL of the schema, as the browser requests it.
        assets: URL prefix of the documentation files.

    Returns:
        A page that loads only ``assets`` files and runs no inline script.
    """
    a = html.escape(assets, quote=True)
    head = (
        f'<link rel="icon" type="image/png" href="{a}/favicon.png">\n'
        f'<link rel="stylesheet" href="{a}/swagger-ui.css">\n'
    )
    body = (
        f'<div id="swagger-ui" data-openapi-url="{html.escape(openapi_url, quote=True)}"></div>\n'
        f'<script src="{a}/swagger-ui-bundle.js"></script>\n'
        f'<script src="{a}/{_INIT_NAME}"></script>\n'
    )
    return _page(title, head, body)


def redoc_page(title: str, openapi_url: str, assets: str) -> HTMLResponse:
    """The ReDoc page (ReDoc reads the schema URL from its element: no inline script).

    Args:
        title: The page title.
        openapi_url: URL of the schema, as the browser requests it.
        assets: URL prefix of the documentation files.

    Returns:
        A page that loads only ``assets`` files and runs no inline script.
    """
    a = html.escape(assets, quote=True)
    head = f'<link rel="icon" type="image/png" href="{a}/favicon.png">\n'
    body = (
        f'<redoc spec-url="{html.escape(openapi_url, quote=True)}"></redoc>\n'
        f'<script src="{a}/redoc.standalone.js"></script>\n'
    )
    return _page(title, head, body)


def install_docs(app: FastAPI, docs_url: str = "/docs", redoc_url: str = "/redoc") -> None:
    """Add ``/docs``, ``/redoc`` and their files to an application built with
    ``docs_url=None, redoc_url=None`` (FastAPI's CDN pages off).

    Args:
        app: The application; its ``openapi_url`` and ``title`` are used.
        docs_url: Path of the Swagger UI page.
        redoc_url: Path of the ReDoc page.
    """
    openapi_path = app.openapi_url or "/openapi.json"

    def urls(request: Request) -> tuple[str, str]:
        root = str(request.scope.get("root_path", "")).rstrip("/")
        return root + openapi_path, root + ASSETS_PATH

    @app.get(docs_url, include_in_schema=False)
    def swagger_ui(request: Request) -> HTMLResponse:
        openapi_url, assets = urls(request)
        return swagger_page(f"{app.title} - Swagger UI", openapi_url, assets)

    @app.get(redoc_url, include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        openapi_url, assets = urls(request)
        return redoc_page(f"{app.title} - ReDoc", openapi_url, assets)

    @app.get(ASSETS_PATH + "/{name}", include_in_schema=False)
    def docs_asset(name: str) -> Response:
        headers = {"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"}
        if name == _INIT_NAME:
            return Response(SWAGGER_INIT_JS, media_type=_MEDIA_TYPES[".js"], headers=headers)
        path = asset_files().get(name)
        if path is None:
            raise HTTPException(404, f"no documentation file {name!r}")
        return FileResponse(path, media_type=_MEDIA_TYPES[path.suffix], headers=headers)
