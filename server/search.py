"""`POST /search`: passages by meaning, keywords or both, filtered, with highlights and,
on request, how the hits follow one another."""

from __future__ import annotations

import time

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from indexer.filters import parse_filter
from indexer.index import check_group, check_mode

from .coherence import read_coherence
from .dependencies import ERRORS, ServicesDep
from .schemas import HitOut, SearchRequest, SearchResponse


def build_search_router() -> APIRouter:
    router = APIRouter(tags=["search"], responses=ERRORS)

    @router.post("/search", response_model=SearchResponse)
    async def search(body: SearchRequest, services: ServicesDep):
        """The indexed passages that best answer `query`, best first: by meaning (dense), by
        keywords (BM25) or both fused (hybrid), optionally narrowed by a metadata filter."""
        started = time.perf_counter()
        index = services.require_index()
        mode, group = check_mode(body.mode), check_group(body.group)
        parse_filter(body.filter)  # a bad filter is a 422 before any work
        vector = None
        if mode != "keyword":
            vector = (await services.batcher.embed([body.query])).embeddings
        hits = await run_in_threadpool(lambda: index.search(
            body.query, body.k, filter=body.filter, mode=mode, group=group, vector=vector))
        response = SearchResponse(query=body.query, mode=mode, group=group, took_ms=0.0,
                                  hits=[_hit_out(h, body.include_text) for h in hits])
        if body.coherence and len(hits) >= 2:
            chain, order = await read_coherence(services, hits=hits)
            response.coherence, response.reading_order = chain, order
        response.took_ms = (time.perf_counter() - started) * 1000
        return response

    return router


def _hit_out(hit, include_text: bool) -> HitOut:
    data = hit.to_dict()
    if not include_text:
        data["text"] = None
        for context in data["context"]:
            context["text"] = None
    return HitOut(**data)
