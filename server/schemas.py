"""Request and response models of the HTTP API (they are the OpenAPI schema).

Requests are strict: a number is a JSON number (`"k": "5"` and `"k": true` are refused),
unknown fields are refused (except on the OpenAI route, whose clients send extras), text is
valid Unicode (a lone surrogate such as "\\ud800" is refused, not passed to the tokenizer)
and a query is not blank. The limits are the same for Python, the CLI and HTTP
(`indexer.limits`) or stated here.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from indexer.limits import DEFAULT_GROUP, DEFAULT_MODE, GROUPS, MAX_K, MAX_QUERY_CHARS, MODES

MAX_INPUTS = 256  # texts per request
MAX_INPUT_CHARS = 20_000  # characters per text to embed
MAX_DOCUMENT_CHARS = 1_000_000  # a document sent to PUT /documents
MAX_PASSAGES = 64  # passages in one /coherence request


def valid_unicode(text: str) -> str:
    """Refuse strings with unpaired surrogates (valid JSON, but not text)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"contains an unpaired surrogate at position {exc.start}; send "
                         f"valid Unicode text") from None
    return text


def not_blank(text: str) -> str:
    if not text.strip():
        raise ValueError("must contain something other than whitespace")
    return text


Query = Annotated[str, Field(min_length=1, max_length=MAX_QUERY_CHARS),
                  AfterValidator(valid_unicode), AfterValidator(not_blank)]
InputText = Annotated[str, Field(min_length=1, max_length=MAX_INPUT_CHARS),
                      AfterValidator(valid_unicode), AfterValidator(not_blank)]
Texts = Annotated[list[InputText], Field(min_length=1, max_length=MAX_INPUTS)]
TokenIds = Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1, max_length=512)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


# -- requests ---------------------------------------------------------------------------------

class SearchRequest(Strict):
    query: Query
    k: int = Field(10, ge=1, le=MAX_K)
    mode: Literal[MODES] | None = Field(  # type: ignore[valid-type]
        None, description=f"hybrid, dense or keyword; default {DEFAULT_MODE}.")
    group: Literal[GROUPS] | None = Field(  # type: ignore[valid-type]
        None, description=f"documents (one hit per document, its other passages that ranked "
                          f"as `context`) or passages; default {DEFAULT_GROUP}.")
    filter: dict | None = Field(
        None, description='Metadata filter, e.g. {"path": {"$glob": "api/*.md"}, '
                          '"year": {"$gte": 2020}}; operators $eq $ne $gt $gte $lt $lte $in '
                          '$nin $glob $and $or.')
    include_text: bool = True
    coherence: bool = Field(False, description="Score how the hits follow each other (NSP) "
                                               "and suggest a reading order.")


class EmbeddingsRequest(BaseModel):
    """OpenAI's embeddings request. Extra fields are ignored, as OpenAI clients send some."""

    model_config = ConfigDict(extra="ignore")

    input: InputText | Texts | TokenIds | Annotated[
        list[TokenIds], Field(min_length=1, max_length=MAX_INPUTS)] = Field(
        description="A text, a list of texts, or token ids in the served model's own "
                    "WordPiece vocabulary (a list of ids, or a list of such lists).")
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None


class EmbedRequest(Strict):
    texts: Texts
    pooling: Literal["mean", "cls"] | None = None
    normalize: bool = True


class DocumentRequest(Strict):
    text: Annotated[str, Field(min_length=1, max_length=MAX_DOCUMENT_CHARS),
                    AfterValidator(valid_unicode), AfterValidator(not_blank)]
    metadata: dict = Field(default_factory=dict)


class CoherenceRequest(Strict):
    passages: Annotated[list[InputText], Field(min_length=2, max_length=MAX_PASSAGES)]


class ClassifyRequest(Strict):
    texts: Texts


# -- responses --------------------------------------------------------------------------------

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
    context: list[HitOut] = Field(
        default_factory=list, description="Grouped by document: the document's other passages "
                                          "that ranked, best first.")


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
    group: str
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


class ModelOut(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "bertsearch"


class ModelsResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelOut]


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
    coherence: ChainOut = Field(description="Named as in POST /search and query --json.")
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


# -- errors -----------------------------------------------------------------------------------

class ValidationItem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ErrorOut(BaseModel):
    """Every error outside /v1: a sentence, or for a malformed request the fields at
    fault (never the whole input back)."""

    detail: str | list[ValidationItem]


class OpenAIErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIError(BaseModel):
    """Errors of the OpenAI-compatible routes, in OpenAI's shape."""

    error: OpenAIErrorBody
