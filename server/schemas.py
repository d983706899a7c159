"""Request and response models of the HTTP API (they are the OpenAPI schema).

Limits come from `ServerSettings`, so models are built per app by `make_schemas`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from indexer.limits import DEFAULT_MODE, MAX_K, MAX_QUERY_CHARS, MODES

from .settings import ServerSettings


class HitOut(BaseModel):
    passage_id: int
    score: float = Field(description="Cosine (dense), BM25 (keyword) or fused reciprocal "
                                     "rank (hybrid): higher is better.")
    document_id: str = Field(description="The document's id: its file's full path, or the id "
                                         "given to PUT /documents.")
    file: str = Field(description="The document's full path (its id for API documents).")
    path: str = Field(description="The document's path within the indexed folder.")
    ordinal: int = Field(description="The passage's position in its document, from 0.")
    start: int = Field(description="Character offset where the passage starts.")
    end: int
    line_start: int
    line_end: int
    text: str | None = None
    headings: list[str] = Field(default_factory=list,
                                description="The document's title and the section headings "
                                            "above the passage.")
    metadata: dict = Field(default_factory=dict)
    highlights: list[tuple[int, int]] = Field(
        default_factory=list, description="[start, end) character spans of the query's words "
                                          "in `text`.")


class LinkOut(BaseModel):
    kind: Literal["document", "scored"] = Field(
        description="document: both passages lie in one document, so the order is known "
                    "(score 1 when the second comes after the first there, 0 when before); "
                    "scored: the coherence model's calibrated P(next).")
    score: float


class ChainOut(BaseModel):
    pair_scores: list[float] = Field(description="P(next) of each consecutive pair.")
    mean: float
    weakest_link: int | None = Field(description="Index i of the weakest pair (i, i+1).")
    weakest_score: float | None
    links: list[LinkOut] = Field(default_factory=list,
                                 description="Each consecutive pair: known or scored.")


class OrderOut(BaseModel):
    order: list[int] = Field(description="Input indices in the suggested reading order: "
                                         "search hits of one document in its order, "
                                         "documents ordered by P(next).")
    pair_scores: list[float]
    mean: float
    links: list[LinkOut] = Field(default_factory=list,
                                 description="Each step of the order: known or scored.")


class SearchResponse(BaseModel):
    query: str
    mode: str
    hits: list[HitOut]
    took_ms: float
    coherence: ChainOut | None = None
    reading_order: OrderOut | None = None


class EmbeddingOut(BaseModel):
    object: Literal["embedding"] = "embedding"
    embedding: list[float] | str
    index: int


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingsResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingOut]
    model: str
    usage: Usage


class EmbedResponse(BaseModel):
    embeddings: list[list[float]]
    dimension: int
    pooling: str
    normalized: bool
    token_counts: list[int]
    truncated: list[int] = Field(description="Indices of texts cut to the model's limit.")
    max_seq_length: int


class DocumentOut(BaseModel):
    id: str
    origin: Literal["folder", "api"]
    text: str | None
    metadata: dict
    passages: int
    content_hash: str
    indexed_at: float


class UpsertResponse(BaseModel):
    id: str
    action: Literal["created", "replaced", "metadata", "unchanged"] = Field(
        description="created/replaced: chunked and embedded; metadata: same text, new "
                    "metadata, nothing embedded; unchanged: nothing to do.")
    passages: int


class DeleteResponse(BaseModel):
    id: str
    deleted: bool


class CoherenceResponse(BaseModel):
    chain: ChainOut
    reading_order: OrderOut | None = Field(
        None, description="Absent for more than 12 passages (it scores every ordered pair).")


class ClassifyResult(BaseModel):
    label: str
    probabilities: dict[str, float]


class ClassifyResponse(BaseModel):
    results: list[ClassifyResult]
    labels: list[str]


class HealthResponse(BaseModel):
    status: Literal["ok", "loading", "degraded"]
    model: bool
    index: bool
    detail: str | None = None


class StatsResponse(BaseModel):
    model: str
    dimension: int
    pooling: str
    max_seq_length: int
    index: dict | None
    batches: int


def make_schemas(settings: ServerSettings) -> dict[str, type[BaseModel]]:
    """Request models whose limits are the server's settings."""
    text = Annotated[str, Field(min_length=1, max_length=settings.max_input_chars)]
    texts = Annotated[list[text], Field(min_length=1, max_length=settings.max_inputs)]
    strict = ConfigDict(extra="forbid")
    return {
        "SearchRequest": create_model(
            "SearchRequest", __config__=strict,
            query=(str, Field(min_length=1, max_length=MAX_QUERY_CHARS)),
            k=(int, Field(10, ge=1, le=MAX_K)),
            mode=(Literal[MODES] | None, Field(  # type: ignore[valid-type]
                None, description=f"hybrid, dense or keyword; default {DEFAULT_MODE}.")),
            filter=(dict | None, Field(
                None, description='Metadata filter, e.g. {"path": {"$glob": "api/*.md"}, '
                                  '"year": {"$gte": 2020}}; operators $eq $ne $gt $gte $lt '
                                  '$lte $in $nin $glob $and $or.')),
            include_text=(bool, True),
            coherence=(bool, Field(False, description="Score how the hits follow each other "
                                                      "(NSP) and suggest a reading order.")),
        ),
        "EmbeddingsRequest": create_model(
            "EmbeddingsRequest",
            input=(text | texts, Field(description="A text or a list of texts.")),
            model=(str | None, None),
            encoding_format=(Literal["float", "base64"], "float"),
            dimensions=(int | None, None),
            user=(str | None, None),
        ),
        "EmbedRequest": create_model(
            "EmbedRequest", __config__=strict,
            texts=(texts, ...),
            pooling=(Literal["mean", "cls"] | None, None),
            normalize=(bool, True),
        ),
        "DocumentRequest": create_model(
            "DocumentRequest", __config__=strict,
            text=(str, Field(min_length=1, max_length=settings.max_document_chars)),
            metadata=(dict, Field(default_factory=dict)),
        ),
        "CoherenceRequest": create_model(
            "CoherenceRequest", __config__=strict,
            passages=(Annotated[list[text], Field(min_length=2, max_length=64)], ...),
        ),
        "ClassifyRequest": create_model(
            "ClassifyRequest", __config__=strict, texts=(texts, ...),
        ),
    }
