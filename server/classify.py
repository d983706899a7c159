"""`POST /classify`: labels from the fine-tuned classifier given with `--classifier`."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from .dependencies import ERRORS, ServicesDep
from .schemas import ClassifyRequest, ClassifyResponse, ClassifyResult


def build_classify_router() -> APIRouter:
    router = APIRouter(tags=["classify"], responses=ERRORS)

    @router.post("/classify", response_model=ClassifyResponse)
    async def classify(body: ClassifyRequest, services: ServicesDep):
        """Labels and probabilities from the fine-tuned classifier given with --classifier."""
        classifier = await run_in_threadpool(services.classifier)
        predictions = await run_in_threadpool(classifier.predict, body.texts)
        return ClassifyResponse(
            labels=classifier.labels,
            results=[ClassifyResult(label=p.label, probabilities=p.probabilities)
                     for p in predictions])

    return router
