"""The service's own routes: `GET /health`, `GET /stats` and `GET /metrics`."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool

from .dependencies import ERRORS, ServicesDep
from .schemas import HealthResponse, StatsResponse


def build_service_router() -> APIRouter:
    router = APIRouter(tags=["service"], responses=ERRORS)

    @router.get("/health", response_model=HealthResponse,
                responses={503: {"model": HealthResponse, "description": "Loading or "
                                 "degraded: no index yet, or the index is damaged"}})
    async def health(request: Request):
        """200 when the model (and the index, if one was configured) answer; 503 while
        loading, before the index exists, or when the index is damaged."""
        services = getattr(request.app.state, "services", None)
        if services is None:
            return JSONResponse({"status": "loading", "model": False, "index": False,
                                 "detail": "Still loading."}, status_code=503)
        problem = await run_in_threadpool(services.index_status)
        if problem:
            return JSONResponse({"status": "degraded", "model": True, "index": False,
                                 "detail": problem}, status_code=503)
        return HealthResponse(status="ok", model=True, index=services.index is not None)

    @router.get("/stats", response_model=StatsResponse)
    async def stats(services: ServicesDep):
        """The model, its dimension, and the index's documents, passages, settings and
        last syncs."""
        encoder = services.encoder
        index_stats = None
        if not await run_in_threadpool(services.index_status) and services.index is not None:
            index_stats = await run_in_threadpool(services.index.stats)
        return StatsResponse(model=encoder.name, dimension=encoder.dimension,
                             pooling=encoder.pooling, max_seq_length=encoder.max_seq_length,
                             index=index_stats, batches=services.batcher.batches)

    @router.get("/metrics", response_class=PlainTextResponse)
    async def metrics(request: Request, services: ServicesDep):
        """Prometheus text format: requests by route and status, latency histograms, batch
        sizes, queue depth, encoder busy time, index size."""
        counts = None
        if services.index is not None and not services.index.store.health():
            counts = await run_in_threadpool(services.index.store.counts)
        return PlainTextResponse(
            request.app.state.metrics.render(services.batcher, counts),
            media_type="text/plain; version=0.0.4; charset=utf-8")

    return router
