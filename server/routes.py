"""The HTTP routes. Each parses its request, calls the library and shapes the response."""


import base64
import time
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from embedder.errors import InvalidInputError
from indexer.coherence import read_hits
from indexer.filters import parse_filter
from indexer.index import check_mode

from .schemas import (
    ChainOut,
    ClassifyResponse,
    ClassifyResult,
    CoherenceResponse,
    DeleteResponse,
    DocumentOut,
    EmbeddingOut,
    EmbeddingsResponse,
    EmbedResponse,
    HealthResponse,
    HitOut,
    OrderOut,
    SearchResponse,
    StatsResponse,
    UpsertResponse,
    Usage,
    make_schemas,
)
from .services import DocumentNotFoundError, Services
from .settings import ServerSettings


async def get_services(request: Request) -> Services:
    # async: FastAPI would run a plain function on a worker thread, for every request
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


def build_router(settings: ServerSettings) -> APIRouter:
    """All routes, with request models carrying this server's limits."""
    schemas = make_schemas(settings)
    SearchRequest = schemas["SearchRequest"]
    EmbeddingsRequest = schemas["EmbeddingsRequest"]
    EmbedRequest = schemas["EmbedRequest"]
    CoherenceRequest = schemas["CoherenceRequest"]
    ClassifyRequest = schemas["ClassifyRequest"]
    DocumentRequest = schemas["DocumentRequest"]
    router = APIRouter()

    @router.post("/search", response_model=SearchResponse, tags=["search"])
    async def search(body: SearchRequest, services: ServicesDep):
        """The indexed passages that best answer `query`, best first: by meaning (dense), by
        keywords (BM25) or both fused (hybrid), optionally narrowed by a metadata filter."""
        started = time.perf_counter()
        index = services.require_index()
        mode = check_mode(body.mode)
        parse_filter(body.filter)  # a bad filter is a 422 before any work
        vector = None
        if mode != "keyword":
            vector = (await services.batcher.embed([body.query])).embeddings
        hits = await run_in_threadpool(lambda: index.search(
            body.query, body.k, filter=body.filter, mode=mode, vector=vector))
        response = SearchResponse(
            query=body.query, mode=mode, took_ms=0.0,
            hits=[HitOut(**{**h.to_dict(), "text": h.text if body.include_text else None})
                  for h in hits])
        if body.coherence and len(hits) >= 2:
            chain, order = await _coherence(services, hits=hits)
            response.coherence, response.reading_order = chain, order
        response.took_ms = (time.perf_counter() - started) * 1000
        return response

    @router.put("/documents/{doc_id:path}", response_model=UpsertResponse,
                tags=["documents"])
    async def put_document(doc_id: str, body: DocumentRequest, services: ServicesDep):
        """Add or replace a document: its text is chunked and embedded as a file's would be
        (the same text again embeds nothing; new metadata alone re-embeds nothing)."""
        index = await run_in_threadpool(services.writable_index)
        result = await services.batcher.run(index.upsert, doc_id, body.text, body.metadata)
        return JSONResponse(UpsertResponse(**result.__dict__).model_dump(),
                            status_code=201 if result.action == "created" else 200)

    @router.get("/documents/{doc_id:path}", response_model=DocumentOut, tags=["documents"])
    async def get_document(doc_id: str, services: ServicesDep):
        """A document's text, metadata and passage count."""
        index = services.require_index()
        document = await run_in_threadpool(index.get, doc_id)
        if document is None:
            raise DocumentNotFoundError(f"No document with id '{doc_id}' in the index.")
        return DocumentOut(**document.to_dict())

    @router.delete("/documents/{doc_id:path}", response_model=DeleteResponse,
                   tags=["documents"])
    async def delete_document(doc_id: str, services: ServicesDep):
        """Delete a document added through this API, with every trace of it."""
        index = services.require_index()
        if not await services.batcher.run(index.delete, doc_id):
            raise DocumentNotFoundError(f"No document with id '{doc_id}' in the index.")
        return DeleteResponse(id=doc_id, deleted=True)

    @router.post("/v1/embeddings", response_model=EmbeddingsResponse, tags=["embeddings"])
    async def openai_embeddings(body: EmbeddingsRequest, services: ServicesDep):
        """OpenAI-compatible embeddings: `input` a string or list, `encoding_format`
        float or base64 (little-endian float32)."""
        encoder = services.encoder
        if body.model not in (None, "", "default", encoder.name, encoder.source):
            raise InvalidInputError(
                f"This server serves the model '{encoder.name}'; send that as `model` "
                f"or leave it out (got '{body.model}').")
        if body.dimensions not in (None, encoder.dimension):
            raise InvalidInputError(
                f"This model's embeddings have {encoder.dimension} dimensions; it cannot "
                f"return {body.dimensions}. Leave `dimensions` out.")
        texts = [body.input] if isinstance(body.input, str) else body.input
        result = await services.batcher.embed(texts)
        tokens = sum(min(n, encoder.max_seq_length) for n in result.token_counts)
        return EmbeddingsResponse(
            data=[EmbeddingOut(embedding=_encode_vector(v, body.encoding_format), index=i)
                  for i, v in enumerate(result.embeddings)],
            model=encoder.name, usage=Usage(prompt_tokens=tokens, total_tokens=tokens))

    @router.post("/embed", response_model=EmbedResponse, tags=["embeddings"])
    async def embed(body: EmbedRequest, services: ServicesDep):
        """Embeddings with a choice of pooling and normalisation; reports truncation."""
        result = await services.batcher.embed(body.texts, body.pooling, body.normalize)
        encoder = services.encoder
        return EmbedResponse(
            embeddings=result.embeddings.tolist(), dimension=encoder.dimension,
            pooling=body.pooling or encoder.pooling, normalized=body.normalize,
            token_counts=result.token_counts, truncated=result.truncated,
            max_seq_length=encoder.max_seq_length)

    @router.post("/coherence", response_model=CoherenceResponse, tags=["coherence"])
    async def coherence(body: CoherenceRequest, services: ServicesDep):
        """P(next) for each consecutive pair of passages (NSP), the chain's mean and weakest
        link, and the most plausible reading order."""
        chain, order = await _coherence(services, passages=body.passages)
        return CoherenceResponse(chain=chain, reading_order=order)

    @router.post("/classify", response_model=ClassifyResponse, tags=["classify"])
    async def classify(body: ClassifyRequest, services: ServicesDep):
        """Labels and probabilities from the fine-tuned classifier given with --classifier."""
        classifier = await run_in_threadpool(services.classifier)
        predictions = await run_in_threadpool(classifier.predict, body.texts)
        return ClassifyResponse(
            labels=classifier.labels,
            results=[ClassifyResult(label=p.label, probabilities=p.probabilities)
                     for p in predictions])

    @router.get("/health", response_model=HealthResponse, tags=["service"])
    async def health(request: Request):
        """200 when the model (and the index, if one was configured) are loaded, else 503."""
        services = getattr(request.app.state, "services", None)
        if services is None:
            return JSONResponse({"status": "loading", "model": False, "index": False,
                                 "detail": "Still loading."}, status_code=503)
        index_ready = await run_in_threadpool(lambda: services.index_ready)
        if not index_ready:
            return JSONResponse(
                {"status": "degraded", "model": True, "index": False,
                 "detail": f"No index at '{services.settings.index_dir}' yet."},
                status_code=503)
        return HealthResponse(status="ok", model=True, index=services.index is not None)

    @router.get("/stats", response_model=StatsResponse, tags=["service"])
    async def stats(services: ServicesDep):
        """The model, its dimension, and the index's documents, passages and type."""
        encoder = services.encoder
        index_stats = None
        if services.index_ready and services.index is not None:
            index_stats = await run_in_threadpool(services.index.stats)
        return StatsResponse(model=encoder.name, dimension=encoder.dimension,
                             pooling=encoder.pooling, max_seq_length=encoder.max_seq_length,
                             index=index_stats, batches=services.batcher.batches)

    return router


async def _coherence(services: Services, *, passages: list[str] | None = None,
                     hits: list | None = None) -> tuple[ChainOut, OrderOut | None]:
    """The chain and reading order of plain passages, or of search hits (whose documents
    and positions order them before NSP does)."""
    scorer = await run_in_threadpool(services.coherence)
    if hits is not None:
        chain, order = await run_in_threadpool(read_hits, scorer, hits)
    else:
        chain, order = await run_in_threadpool(scorer.read, passages)
    return ChainOut(**chain.to_dict()), order and OrderOut(**order.to_dict())


def _encode_vector(vector: np.ndarray, encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode()
    return vector.tolist()
