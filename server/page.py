"""The search page: `GET /` and its static files, plain HTML/CSS/JS shipped in the package.

No build step and nothing fetched from elsewhere: the page talks only to this server's own
`/search` and `/stats`. The page and its assets hold no data, so they are served without the
API key (`BearerAuth` leaves `PAGE_PATHS` and `STATIC_PREFIX` open); the page asks for the key
when an API call answers 401.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, HTMLResponse

STATIC_DIR = Path(__file__).parent / "static"
STATIC_PREFIX = "/static/"
PAGE_PATHS = frozenset({"/"})

# Only this server's own scripts, styles and API; no inline script, no framing. Inline
# `style` attributes are not allowed either: the page sets styles through the CSSOM.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # revalidate, so an upgrade never mixes old and new files
}


def build_page_router() -> APIRouter:
    """`GET /` (the page) and `GET /static/{name}` (its files, by exact name only)."""
    router = APIRouter()
    assets = {p.name: p for p in STATIC_DIR.iterdir() if p.is_file() and p.name != "index.html"}

    @router.get("/", response_class=HTMLResponse, tags=["page"])
    async def page():
        """The search page: query box, mode and filters, hits with highlights, how the hits
        follow one another (P(next)), and an overview of the index."""
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html",
                            headers=SECURITY_HEADERS)

    @router.get(STATIC_PREFIX + "{name}", include_in_schema=False)
    async def static_file(name: str):
        if name not in assets:
            raise HTTPException(404, f"No file '{name}' in the page's static files.")
        return FileResponse(assets[name], headers=SECURITY_HEADERS)

    return router
