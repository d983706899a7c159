"""The FastAPI application: `create_app(settings)`.

No import-time state: everything is loaded by the lifespan into `app.state.services`.
Library errors become 4xx/503 responses with a JSON `detail` in one place
(`install_error_handlers`); request bodies over the size limit get 413 before they are read.
"""

from __future__ import annotations

import hmac
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from embedder.errors import (
    BertsearchError,
    EncoderMismatchError,
    InvalidInputError,
    ModelNotFoundError,
)
from indexer.errors import (
    IndexBusyError,
    IndexCorruptError,
    IndexMismatchError,
    IndexNotFoundError,
    IndexReadOnlyError,
)

from .batching import QueueFullError
from .page import PAGE_PATHS, STATIC_PREFIX, build_page_router
from .routes import build_router
from .services import DocumentNotFoundError, FeatureUnavailableError, Services
from .settings import ServerSettings


def create_app(settings: ServerSettings, *, encoder=None, index=None) -> FastAPI:
    """Build the app. `encoder` and `index` may be passed in already loaded (tests, embedding
    in another program); otherwise the lifespan loads them from `settings`."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        services = await run_in_threadpool(Services.load, settings, encoder, index)
        if services.index is not None:  # damage found now shows in /health at once
            await run_in_threadpool(services.index.store.quick_check)
        services.batcher.start()
        app.state.services = services
        try:
            yield
        finally:
            await services.batcher.stop()
            services.close()

    app = FastAPI(title="bertsearch", version=_version(), lifespan=lifespan,
                  description="Similarity search, embeddings and NSP coherence over HTTP.")
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    if settings.api_key:
        app.add_middleware(BearerAuth, api_key=settings.api_key)
    app.include_router(build_router(settings))
    app.include_router(build_page_router())
    return app


ERROR_STATUS = [  # most specific first
    (QueueFullError, 503),
    (FeatureUnavailableError, 501),
    (DocumentNotFoundError, 404),
    (IndexBusyError, 503),
    (IndexReadOnlyError, 409),
    (IndexNotFoundError, 503),
    (IndexCorruptError, 503),
    (IndexMismatchError, 409),
    (EncoderMismatchError, 409),
    (ModelNotFoundError, 422),
    (InvalidInputError, 422),
    (BertsearchError, 400),
]


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(BertsearchError)
    async def library_error(request: Request, exc: BertsearchError):
        status = next(code for kind, code in ERROR_STATUS if isinstance(exc, kind))
        busy = isinstance(exc, (QueueFullError, IndexBusyError))
        headers = {"Retry-After": "1"} if busy else None
        return JSONResponse({"detail": str(exc)}, status_code=status, headers=headers)


class BodySizeLimit:
    """Refuse request bodies over `max_bytes` with 413, by Content-Length or as they stream."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._refuse(scope, receive, send)
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise _BodyTooLarge()
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _BodyTooLarge:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope, receive, send):
        response = JSONResponse(
            {"detail": f"Request body is larger than {self.max_bytes} bytes; send fewer or "
                       f"shorter texts per request."}, status_code=413)
        await response(scope, receive, send)


class _BodyTooLarge(Exception):
    pass


class BearerAuth:
    """Every route but /health (and the API docs and the search page, which hold no data)
    needs `Authorization: Bearer <key>`."""

    OPEN_PATHS = {"/health", "/docs", "/openapi.json", "/redoc", "/docs/oauth2-redirect",
                  *PAGE_PATHS}
    OPEN_PREFIXES = (STATIC_PREFIX,)

    def __init__(self, app, api_key: str):
        self.app = app
        self.expected = f"Bearer {api_key}".encode()

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "")
        if (scope["type"] == "http" and path not in self.OPEN_PATHS
                and not path.startswith(self.OPEN_PREFIXES)):
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):  # constant-time
                response = JSONResponse(
                    {"detail": "Missing or wrong API key: send 'Authorization: Bearer <key>'."},
                    status_code=401, headers={"WWW-Authenticate": "Bearer"})
                return await response(scope, receive, send)
        return await self.app(scope, receive, send)


def _version() -> str:
    try:
        return version("bertsearch")
    except PackageNotFoundError:
        return "0+unknown"
