"""The encoder as the embedding interfaces RAG frameworks check for.

`Encoder.as_langchain()` is a LangChain `Embeddings` (sync and async) and
`Encoder.as_llama_index()` a LlamaIndex `BaseEmbedding`: real subclasses, so
`FAISS.from_texts(texts, embedding=...)` and `VectorStoreIndex(..., embed_model=...)` take
them. The frameworks are optional extras (`bertsearch[langchain]`, `bertsearch[llamaindex]`)
imported only here, when an adapter is asked for; a missing one is a one-line hint.
"""

from __future__ import annotations

import asyncio

from .errors import EmbedderError


class MissingExtraError(EmbedderError):
    """An optional framework the call needs is not installed."""


def require(module: str, extra: str):
    """Import an optional framework, or say which extra brings it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(f"This needs {module.split('.')[0]}: pip install "
                                f"'bertsearch[{extra}]'") from None


def langchain_embeddings(encoder):
    """A LangChain `Embeddings` over `encoder` (unit-length float vectors)."""
    base = require("langchain_core.embeddings", "langchain").Embeddings

    class BertsearchEmbeddings(base):
        """bertsearch's encoder as LangChain embeddings."""

        def __init__(self, inner):
            self.encoder = inner

        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return self.encoder.encode(list(texts)).tolist() if texts else []

        def embed_query(self, text: str) -> list[float]:
            return self.encoder.embed_query(text)

        async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
            return await asyncio.to_thread(self.embed_documents, texts)

        async def aembed_query(self, text: str) -> list[float]:
            return await asyncio.to_thread(self.embed_query, text)

    return BertsearchEmbeddings(encoder)


def llama_index_embedding(encoder, batch_size: int = 64):
    """A LlamaIndex `BaseEmbedding` over `encoder`."""
    base = require("llama_index.core.base.embeddings.base", "llamaindex").BaseEmbedding
    private = require("pydantic", "llamaindex").PrivateAttr

    class BertsearchEmbedding(base):
        """bertsearch's encoder as a LlamaIndex embedding model."""

        _encoder: object = private()

        def __init__(self, inner, **kwargs):
            super().__init__(model_name=inner.name, embed_batch_size=batch_size, **kwargs)
            self._encoder = inner

        @classmethod
        def class_name(cls) -> str:
            return "BertsearchEmbedding"

        def _get_query_embedding(self, query: str) -> list[float]:
            return self._encoder.embed_query(query)

        def _get_text_embedding(self, text: str) -> list[float]:
            return self._encoder.encode([text])[0].tolist()

        def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
            return self._encoder.encode(list(texts)).tolist() if texts else []

        async def _aget_query_embedding(self, query: str) -> list[float]:
            return await asyncio.to_thread(self._get_query_embedding, query)

        async def _aget_text_embedding(self, text: str) -> list[float]:
            return await asyncio.to_thread(self._get_text_embedding, text)

    return BertsearchEmbedding(encoder)
