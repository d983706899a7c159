"""`PUT/GET/DELETE /documents/{doc_id}`: documents by id, without a folder."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from .dependencies import ERRORS, ServicesDep
from .schemas import DeleteResponse, DocumentOut, DocumentRequest, UpsertResponse
from .services import DocumentNotFoundError


def build_documents_router() -> APIRouter:
    router = APIRouter(tags=["documents"], responses=ERRORS)

    @router.put("/documents/{doc_id:path}", response_model=UpsertResponse,
                responses={201: {"model": UpsertResponse, "description": "Created"}})
    async def put_document(doc_id: str, body: DocumentRequest, services: ServicesDep):
        """Add or replace a document: its text is chunked and embedded as a file's would be
        (the same text again embeds nothing; new metadata alone re-embeds nothing)."""
        index = await run_in_threadpool(services.writable_index)
        # on the encoder's thread: chunking and embedding must not share the tokenizer
        result = await services.batcher.run(index.upsert, doc_id, body.text, body.metadata)
        return JSONResponse(UpsertResponse(**result.__dict__).model_dump(),
                            status_code=201 if result.action == "created" else 200)

    @router.get("/documents/{doc_id:path}", response_model=DocumentOut)
    async def get_document(doc_id: str, services: ServicesDep):
        """A document's text, metadata and passage count."""
        index = services.require_index()
        document = await run_in_threadpool(index.get, doc_id)
        if document is None:
            raise DocumentNotFoundError(f"No document with id '{_shown(doc_id)}' in the index.")
        return DocumentOut(**document.to_dict())

    @router.delete("/documents/{doc_id:path}", response_model=DeleteResponse)
    async def delete_document(doc_id: str, services: ServicesDep):
        """Delete a document added through this API, with every trace of it."""
        index = services.require_index()
        if not await services.batcher.run(index.delete, doc_id):
            raise DocumentNotFoundError(f"No document with id '{_shown(doc_id)}' in the index.")
        return DeleteResponse(id=doc_id, deleted=True)

    return router


def _shown(doc_id: str) -> str:
    return doc_id if len(doc_id) <= 80 else doc_id[:80] + "…"
