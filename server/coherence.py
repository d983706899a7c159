"""`POST /coherence`: how plausibly passages follow one another (next-sentence prediction)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from .dependencies import ERRORS, ServicesDep
from .schemas import ChainOut, CoherenceRequest, CoherenceResponse, OrderOut
from .services import Services


def build_coherence_router() -> APIRouter:
    router = APIRouter(tags=["coherence"], responses=ERRORS)

    @router.post("/coherence", response_model=CoherenceResponse)
    async def coherence(body: CoherenceRequest, services: ServicesDep):
        """P(next) for each consecutive pair of passages (NSP), the chain's mean and weakest
        link, and the most plausible reading order."""
        chain, order = await read_coherence(services, body.passages)
        return CoherenceResponse(chain=chain, reading_order=order)

    return router


async def read_coherence(services: Services, passages: list[str],
                         ) -> tuple[ChainOut, OrderOut | None]:
    """The chain's scores and the reading order, from the server's coherence scorer."""
    scorer = await run_in_threadpool(services.coherence)
    chain, order = await run_in_threadpool(scorer.read, passages)
    return (ChainOut(pair_scores=chain.pair_scores, mean=chain.mean,
                     weakest_link=chain.weakest_link, weakest_score=chain.weakest_score),
            order and OrderOut(order=order.order, pair_scores=order.pair_scores,
                               mean=order.mean))
