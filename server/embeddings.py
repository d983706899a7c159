"""Embeddings: `POST /v1/embeddings` and `GET /v1/models` as OpenAI clients expect them
(their error shape too), and `POST /embed` with pooling and normalisation choices.

Any model name a client sends is taken to mean the served model (clients send their own
defaults, such as `text-embedding-3-small`), unless the server was started with
`strict_model_names`, when only the served model's names are accepted. Token-id input is in
the served model's own WordPiece vocabulary (`GET /v1/models` says which).
"""

from __future__ import annotations

import base64

import numpy as np
from fastapi import APIRouter

from embedder.errors import InvalidInputError
from embedder.models import is_packaged_alias

from .dependencies import ERRORS, OPENAI_ERRORS, ServicesDep
from .errors import BadTokenIdsError
from .schemas import (
    EmbeddingOut,
    EmbeddingsRequest,
    EmbeddingsResponse,
    EmbedRequest,
    EmbedResponse,
    ModelOut,
    ModelsResponse,
    Usage,
)
from .services import DocumentNotFoundError


def build_embeddings_router() -> APIRouter:
    router = APIRouter(tags=["embeddings"])

    @router.post("/v1/embeddings", response_model=EmbeddingsResponse,
                 responses=OPENAI_ERRORS)
    async def openai_embeddings(body: EmbeddingsRequest, services: ServicesDep):
        """OpenAI-compatible embeddings: `input` a string, a list of strings, or token ids
        of the served model's vocabulary; `encoding_format` float or base64 (little-endian
        float32)."""
        encoder = services.encoder
        served_name(services, body.model)
        if body.dimensions not in (None, encoder.dimension):
            raise InvalidInputError(
                f"This model's embeddings have {encoder.dimension} dimensions; it cannot "
                f"return {body.dimensions}. Leave `dimensions` out.")
        if _is_token_ids(body.input):
            ids = [body.input] if isinstance(body.input[0], int) else body.input
            result = await services.batcher.run(_encode_ids, encoder, ids)
        else:
            texts = [body.input] if isinstance(body.input, str) else body.input
            result = await services.batcher.embed(texts)
        tokens = sum(min(n, encoder.max_seq_length) for n in result.token_counts)
        return EmbeddingsResponse(
            data=[EmbeddingOut(embedding=_vector(v, body.encoding_format), index=i)
                  for i, v in enumerate(result.embeddings)],
            model=encoder.name, usage=Usage(prompt_tokens=tokens, total_tokens=tokens))

    @router.get("/v1/models", response_model=ModelsResponse, responses=OPENAI_ERRORS)
    async def models(services: ServicesDep):
        """The served model (one), as OpenAI's model list."""
        return ModelsResponse(data=[ModelOut(id=services.encoder.name)])

    @router.get("/v1/models/{model:path}", response_model=ModelOut, responses=OPENAI_ERRORS)
    async def model(model: str, services: ServicesDep):
        """The served model, under any of its names."""
        if model not in served_names(services):
            raise DocumentNotFoundError(f"This server serves '{services.encoder.name}', not "
                                        f"'{model[:80]}'.")
        return ModelOut(id=services.encoder.name)

    @router.post("/embed", response_model=EmbedResponse, responses=ERRORS)
    async def embed(body: EmbedRequest, services: ServicesDep):
        """Embeddings with a choice of pooling and normalisation; reports truncation."""
        result = await services.batcher.embed(body.texts, body.pooling, body.normalize)
        encoder = services.encoder
        return EmbedResponse(
            embeddings=result.embeddings.tolist(), dimension=encoder.dimension,
            pooling=body.pooling or encoder.pooling, normalized=body.normalize,
            token_counts=result.token_counts, truncated=result.truncated,
            max_seq_length=encoder.max_seq_length)

    return router


def served_names(services) -> set[str]:
    encoder = services.encoder
    names = {encoder.name, encoder.source, "default"}
    if is_packaged_alias(encoder.source):
        names |= {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}
    return names | set(services.settings.model_aliases)


def served_name(services, requested: str | None) -> None:
    """Accept `requested` as the served model (any name, unless names are strict)."""
    if not services.settings.strict_model_names or requested in (None, ""):
        return
    if requested not in served_names(services):
        raise InvalidInputError(
            f"This server serves the model '{services.encoder.name}'; send that as `model` "
            f"or leave it out (got '{requested[:80]}').")


def _is_token_ids(value) -> bool:
    return isinstance(value, list) and bool(value) and not isinstance(value[0], str)


def _encode_ids(encoder, ids):
    try:
        return encoder.encode_token_ids(ids)
    except InvalidInputError as exc:
        raise BadTokenIdsError(str(exc)) from None


def _vector(vector: np.ndarray, encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode()
    return vector.tolist()

