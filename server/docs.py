"""`/docs` (Swagger UI) and `/redoc` that work offline: their scripts and styles come from
the installed `fastapi-offline` package and are served by this app, instead of FastAPI's
default pages, which load them from a CDN (and ReDoc's fonts from Google). Swagger UI's
validator badge, which calls out to validator.swagger.io, is switched off, and ReDoc's
"API docs by Redocly" logo, fetched from cdn.redoc.ly, is replaced by an empty image.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, HTTPException
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import FileResponse, Response

DOCS_ASSETS = "/docs/assets/"
REDOC_JS = "redoc.standalone.js"
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"
EMPTY_SVG = "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg'/%3E"


def _assets() -> Path:
    import fastapi_offline

    return Path(fastapi_offline.__file__).parent / "static"


def install_offline_docs(app: FastAPI) -> None:
    """Serve `/docs`, `/docs/oauth2-redirect`, `/redoc` and their assets from this app."""
    files = {p.name: p for p in _assets().iterdir() if p.is_file()}
    patched: dict[str, bytes] = {}

    @app.get("/docs", include_in_schema=False)
    async def swagger():
        return get_swagger_ui_html(
            openapi_url=app.openapi_url, title=f"{app.title} - API docs",
            oauth2_redirect_url="/docs/oauth2-redirect",
            swagger_js_url=DOCS_ASSETS + "swagger-ui-bundle.js",
            swagger_css_url=DOCS_ASSETS + "swagger-ui.css",
            swagger_favicon_url=DOCS_ASSETS + "favicon.png",
            swagger_ui_parameters={"validatorUrl": None})

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    async def oauth2_redirect():
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc():
        return get_redoc_html(openapi_url=app.openapi_url, title=f"{app.title} - API docs",
                              redoc_js_url=DOCS_ASSETS + "redoc.standalone.js",
                              redoc_favicon_url=DOCS_ASSETS + "favicon.png",
                              with_google_fonts=False)

    @app.get(DOCS_ASSETS + "{name}", include_in_schema=False)
    async def asset(name: str):
        if name not in files:
            raise HTTPException(404, f"No docs asset '{name}'.")
        if name != REDOC_JS:
            return FileResponse(files[name])
        if not patched:
            text = files[name].read_text(encoding="utf-8")
            patched[name] = text.replace(REDOC_LOGO, EMPTY_SVG).encode()
        return Response(patched[name], media_type="text/javascript")
