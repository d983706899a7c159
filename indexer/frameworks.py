"""A bertsearch index as a LangChain vector store (and, through it, a retriever).

    store = Index.open("my-index", create=True).as_langchain()
    store.add_texts(["..."], metadatas=[{"year": 2025}], ids=["doc-1"])
    store.similarity_search("question", k=4, filter={"year": {"$gte": 2024}})
    retriever = store.as_retriever(search_kwargs={"k": 4, "filter": {...}})

Texts are documents of the index's documents API: chunked, embedded by the index's own
encoder, searched in the index's default mode (hybrid) unless `mode=` says otherwise, with
the same filter dialect. Each hit is a LangChain `Document` holding the passage's text and
its document's metadata plus where it stands (`id`, `path`, `line_start`, `line_end`,
`headings`, `score`). LangChain is an optional extra (`bertsearch[langchain]`).
"""

from __future__ import annotations

import uuid

from embedder.frameworks import require

from .index import Hit, Index


def langchain_vector_store(index: Index):
    """A LangChain `VectorStore` over `index`."""
    vectorstores = require("langchain_core.vectorstores", "langchain")
    documents = require("langchain_core.documents", "langchain")

    class BertsearchVectorStore(vectorstores.VectorStore):
        """bertsearch's index behind LangChain's vector-store interface."""

        def __init__(self, inner: Index):
            self.index = inner

        @property
        def embeddings(self):
            return self.index.encoder.as_langchain()

        def add_texts(self, texts, metadatas=None, *, ids=None, **kwargs) -> list[str]:
            texts = list(texts)
            ids = list(ids) if ids is not None else [uuid.uuid4().hex for _ in texts]
            metadatas = list(metadatas) if metadatas is not None else [{} for _ in texts]
            for doc_id, text, metadata in zip(ids, texts, metadatas, strict=True):
                self.index.upsert(doc_id, text, metadata)
            return ids

        def similarity_search(self, query: str, k: int = 4, **kwargs):
            return [doc for doc, _ in self.similarity_search_with_score(query, k, **kwargs)]

        def similarity_search_with_score(self, query: str, k: int = 4, filter=None,
                                         mode: str | None = None, **kwargs):
            hits = self.index.search(query, k, filter=filter, mode=mode)
            return [(_document(documents.Document, hit), hit.score) for hit in hits]

        def delete(self, ids=None, **kwargs) -> bool:
            return all([self.index.delete(doc_id) for doc_id in ids or []])

        def get_by_ids(self, ids):
            found = []
            for doc_id in ids:
                document = self.index.get(doc_id)
                if document is not None:
                    found.append(documents.Document(page_content=document.text or "",
                                                    metadata=document.metadata, id=doc_id))
            return found

        @classmethod
        def from_texts(cls, texts, embedding=None, metadatas=None, *, ids=None,
                       location=None, **kwargs):
            """A new (or existing) index at `location` holding `texts`; the index embeds
            with its own encoder, so `embedding` must be bertsearch's (or None)."""
            encoder = getattr(embedding, "encoder", None)
            if embedding is not None and encoder is None:
                from embedder.errors import InvalidInputError

                raise InvalidInputError("A bertsearch index embeds with its own encoder: pass "
                                        "Encoder.as_langchain() or no embedding.")
            if location is None:
                raise TypeError("from_texts needs location= (an index folder or URL)")
            store = cls(Index.open(location, encoder=encoder, create=True))
            store.add_texts(texts, metadatas, ids=ids)
            return store

    return BertsearchVectorStore(index)


def _document(document_class, hit: Hit):
    metadata = {**hit.metadata, "id": hit.document_id, "path": hit.path,
                "line_start": hit.line_start, "line_end": hit.line_end,
                "headings": list(hit.headings), "score": hit.score}
    return document_class(page_content=hit.text, metadata=metadata, id=hit.document_id)
