"""The FastAPI application: `create_app(settings)`.

No import-time state: everything is loaded by the lifespan into `app.state.services`.
One router module per resource (search, documents, embeddings, coherence, classify, the
service's own routes, the page); errors become JSON responses in one place (`errors.py`);
every request passes `RequestGuard` (body limits, client departure, request id, access log,
metrics) and, with an API key, `BearerAuth` (`middleware.py`).
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from .classify import build_classify_router
from .coherence import build_coherence_router
from .docs import install_offline_docs
from .documents import build_documents_router
from .embeddings import build_embeddings_router
from .errors import install_error_handlers
from .metrics import Metrics
from .middleware import BearerAuth, RequestGuard
from .page import PAGE_PATHS, STATIC_PREFIX, build_page_router
from .search import build_search_router
from .service import build_service_router
from .services import Services
from .settings import ServerSettings

OPEN_PATHS = {"/health", "/docs", "/openapi.json", "/redoc", *PAGE_PATHS}
OPEN_PREFIXES = (STATIC_PREFIX, "/docs/")


def create_app(settings: ServerSettings, *, encoder=None, index=None) -> FastAPI:
    """Build the app. `encoder` and `index` may be passed in already loaded (tests, embedding
    in another program); otherwise the lifespan loads them from `settings`."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        services = await run_in_threadpool(Services.load, settings, encoder, index)
        if services.index is not None:  # damage found now shows in /health at once
            await run_in_threadpool(services.index.store.quick_check)
            services.warm_in_background()
        services.batcher.start()
        app.state.services = services
        try:
            yield
        finally:  # uvicorn has let in-flight requests finish; queued work is drained
            await services.batcher.stop()
            services.close()

    app = FastAPI(title="bertsearch", version=_version(), lifespan=lifespan,
                  docs_url=None, redoc_url=None,
                  description="Similarity search, embeddings and NSP coherence over HTTP.")
    app.state.metrics = Metrics()
    install_error_handlers(app)
    install_offline_docs(app)
    if settings.api_key:
        app.add_middleware(BearerAuth, api_key=settings.api_key, open_paths=OPEN_PATHS,
                           open_prefixes=OPEN_PREFIXES)
    app.add_middleware(RequestGuard, max_body_bytes=settings.max_body_bytes,
                       body_timeout=settings.body_timeout_s, metrics=app.state.metrics)
    for router in (build_search_router(), build_documents_router(),
                   build_embeddings_router(), build_coherence_router(),
                   build_classify_router(), build_service_router(), build_page_router()):
        app.include_router(router)
    return app


def _version() -> str:
    try:
        return version("bertsearch")
    except PackageNotFoundError:
        return "0+unknown"
