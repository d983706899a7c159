"""`POST /coherence`: how plausibly passages follow one another (next-sentence prediction)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from indexer.coherence import read_hits

from .dependencies import ERRORS, ServicesDep
from .schemas import ChainOut, CoherenceRequest, CoherenceResponse, OrderOut
from .services import Services


def build_coherence_router() -> APIRouter:
    router = APIRouter(tags=["coherence"], responses=ERRORS)

    @router.post("/coherence", response_model=CoherenceResponse)
    async def coherence(body: CoherenceRequest, services: ServicesDep):
        """P(next) for each consecutive pair of passages (NSP), the chain's mean and weakest
        link, and the most plausible reading order."""
        chain, order = await read_coherence(services, passages=body.passages)
        return CoherenceResponse(coherence=chain, reading_order=order)

    return router


async def read_coherence(services: Services, *, passages: list[str] | None = None,
                         hits: list | None = None) -> tuple[ChainOut, OrderOut | None]:
    """The chain's scores and the reading order, from the server's coherence scorer: of
    plain passages, or of search hits (whose documents and positions order them before NSP
    does: `indexer.coherence.read_hits`)."""
    scorer = await run_in_threadpool(services.coherence)
    if hits is not None:
        chain, order = await run_in_threadpool(read_hits, scorer, hits)
    else:
        chain, order = await run_in_threadpool(scorer.read, passages)
    return ChainOut(**chain.to_dict()), order and OrderOut(**order.to_dict())
