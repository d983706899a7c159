"""The library object a RAG pipeline holds: `Index.open(location)`.

    with Index.open("my-index") as index:
        index.upsert("ticket-42", "The printer on floor 3 jams ...", {"year": 2025})
        hits = index.search("printer jams", k=5, filter={"year": {"$gte": 2024}})
        index.delete("ticket-42")

Search modes (`mode=`): `dense` (embedding similarity), `keyword` (full-text BM25, which
finds exact identifiers, option names and error codes) and `hybrid` (both lists fused by
reciprocal rank), the default chosen by measurement (`indexer.limits.DEFAULT_MODE`). A
filter narrows any mode (`indexer.filters`); a filtered search returns k hits whenever k
passages match. Hits carry the spans of the query's words (`highlights`).

The documents API (`upsert`, `get`, `delete`) chunks and embeds a text exactly as folder
indexing does a file; an unchanged text is never embedded again, new metadata alone is
only recorded. The index sees writes of other processes (an indexer, another server) on
its next search, without reopening.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import asdict, dataclass, field, fields, replace

import numpy as np

from embedder.errors import InvalidInputError

from .chunking import ChunkSettings
from .documents import api_document, content_hash
from .errors import (
    IndexCorruptError,
    IndexMismatchError,
    IndexNotFoundError,
    IndexReadOnlyError,
)
from .filters import parse_filter
from .fusion import RRF_CONSTANT, fusion_for, reciprocal_rank_fusion
from .keywords import highlights, identifier_like, keyword_terms
from .limits import DEFAULT_GROUP, DEFAULT_MODE, GROUPS, MAX_K, MAX_QUERY_CHARS, MODES
from .passages import DEFAULT_RECIPE, document_passages, embedding_inputs
from .settings import IndexSettings, TextEncoder
from .store import API, FOLDER, DocumentRecord, NewDocument, PassageRow, Store, open_store

# how deep each list goes before hybrid fusion: the fused top k draws on the lists' top
# HYBRID_DEPTH (measured: bench/RESULTS.md, "Search modes"; 100 beat 20 and 50)
HYBRID_DEPTH = 100
# how deep `group="documents"` may look for k distinct documents (passages per list)
MAX_DOCUMENT_DEPTH = 25_600
# how often a search fuses again when passages it ranked were deleted before they were read
MAX_REFETCHES = 3
MAX_ID_CHARS = 512
MAX_METADATA_BYTES = 64 * 1024
MAX_DOCUMENT_CHARS = 10 * 1024 * 1024


@dataclass(frozen=True)
class Hit:
    """A passage found by a search."""

    passage_id: int
    score: float  # cosine (dense), BM25 (keyword) or fused reciprocal rank (hybrid)
    document_id: str  # the document's id: its file's full path, or the id it was given
    root: str  # the folder that was indexed ("" for documents added through the API)
    path: str  # the document's path within that folder (its id for API documents)
    ordinal: int  # the passage's position in its document (0-based)
    start: int  # character offsets of the passage in the document's text
    end: int
    line_start: int
    line_end: int
    text: str
    headings: tuple[str, ...] = ()  # the document's title and the sections above the passage
    metadata: dict = field(default_factory=dict)
    highlights: tuple[tuple[int, int], ...] = ()  # spans of the query's words in `text`
    context: tuple[Hit, ...] = ()  # grouped by document: its other passages that ranked

    @property
    def file(self) -> str:
        """The document's full path (its id for API documents)."""
        return os.path.join(self.root, self.path) if self.root else self.path

    def to_dict(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["headings"] = list(self.headings)
        data["highlights"] = [list(span) for span in self.highlights]
        data["context"] = [hit.to_dict() for hit in self.context]
        return {**data, "file": self.file}


@dataclass(frozen=True)
class UpsertResult:
    """What `Index.upsert` did: `created`, `replaced` (new text, re-embedded),
    `metadata` (same text, new metadata: nothing embedded) or `unchanged`."""

    id: str
    action: str
    passages: int


@dataclass(frozen=True)
class Document:
    """A stored document, as `Index.get` returns it."""

    id: str
    origin: str  # "folder" or "api"
    text: str | None
    metadata: dict
    passages: int
    content_hash: str
    indexed_at: float

    def to_dict(self) -> dict:
        return asdict(self)


class Index:
    """A searchable index: a folder (SQLite + FAISS) or a PostgreSQL database."""

    def __init__(self, store: Store, settings: IndexSettings,
                 encoder: TextEncoder | None = None):
        self.store = store
        self.settings = settings
        self._encoder = encoder
        _quick_queries(encoder)
        self._write_lock = threading.Lock()  # this process's document writes, one at a time
        self.store.checkpoint()  # caught up with the source of truth, and saved if behind

    @classmethod
    def open(cls, location: str | os.PathLike, encoder: TextEncoder | None = None, *,
             create: bool = False, chunk: ChunkSettings | None = None,
             context: str = DEFAULT_RECIPE, read_only: bool = False) -> Index:
        """Open an index made by `bertsearch index`, or the documents API.

        Args:
            location: the index directory, or a `postgresql://` URL.
            encoder: the encoder for queries and upserts; default: the model the index
                records, loaded on first use.
            create: make an empty index if there is none (for the documents API), with
                `encoder` (default: the default model), `chunk` and `context` settings.
            read_only: never write (a shared, mounted index or a read replica).

        Raises:
            IndexNotFoundError: no index there (and not `create`).
            IndexMismatchError: `encoder` is not the model the index was built with.
        """
        store = open_store(location, create=create, read_only=read_only)
        try:
            settings = IndexSettings.from_dict(store.settings())
            if settings is None and create:
                encoder = encoder or _default_encoder()
                settings = _initial_settings(store, encoder, chunk or ChunkSettings(), context)
            if settings is None:
                raise IndexNotFoundError(
                    f"The index at '{location}' is empty: no documents were indexed into it "
                    f"yet.")
            if encoder is not None:
                _check_encoder(encoder, settings, store.location)
            return cls(store, settings, encoder)
        except BaseException:
            store.close()
            raise

    @property
    def encoder(self) -> TextEncoder:
        """The encoder queries are embedded with, loaded on first use from the settings."""
        if self._encoder is None:
            from embedder.resolver import resolve_encoder

            self._encoder = resolve_encoder(record=self.settings.record,
                                            where=f"index '{self.store.location}'")
            _quick_queries(self._encoder)
        return self._encoder

    def warm(self) -> None:
        """Bring what searches use (the store's derived copies of vectors and keywords) up to
        date now, so the first search does not wait for them."""
        self.store.warm()

    def refresh(self) -> bool:
        """Catch up with writes made elsewhere since the last search; True if any."""
        changed = self.store.refresh()
        if changed:
            self.settings = IndexSettings.from_dict(self.store.settings()) or self.settings
        return changed

    # -- search ---------------------------------------------------------------------------

    def search(self, query: str, k: int = 10, *, filter: dict | None = None,
               mode: str | None = None, group: str | None = None,
               vector: np.ndarray | None = None) -> list[Hit]:
        """The `k` best answers to `query`, best first.

        Args:
            query: the question or terms (1 to `MAX_QUERY_CHARS` characters).
            k: how many hits, 1 to `MAX_K`.
            filter: a metadata filter (`indexer.filters`), e.g. `{"year": {"$gte": 2020}}`.
            mode: `hybrid`, `dense` or `keyword`; default `DEFAULT_MODE`.
            group: `documents` (one hit per document: its best passage, with the others
                found as `context`) or `passages` (the best passages, several per document
                if they rank); default `DEFAULT_GROUP`.
            vector: the query's embedding when the caller already has it (the server
                batches queries); default: embedded here.

        Raises:
            InvalidInputError: an empty or over-long query, k out of range, a bad mode.
            FilterError: a filter outside the dialect.
        """
        query = check_query(query)
        k, mode, group = check_k(k), check_mode(mode), check_group(group)
        where = parse_filter(filter)
        fusion = fusion_for(identifier_like(query), group)
        names = fusion.lists if mode == "hybrid" else (mode,)
        depth = max(HYBRID_DEPTH, 2 * k) if mode == "hybrid" or group == "documents" else k
        if vector is None and {"dense", "first"} & set(names):
            vector = self.encoder.encode([query])
        with self.store.one_search():
            if group == "documents":
                return self._search_documents(query, k, depth, names, where, vector, fusion,
                                              fused=mode == "hybrid")
            return self._search_passages(query, k, depth, names, mode, where, vector, fusion)

    def _search_passages(self, query: str, k: int, depth: int, names, mode: str, where,
                         vector, fusion) -> list[Hit]:
        """The best `k` passages, several per document if they rank."""
        ranked = self._ranked(query, depth, names, where, vector)
        for _ in range(MAX_REFETCHES):
            if mode == "hybrid":
                top = reciprocal_rank_fusion({n: [i for i, _ in ranked[n]] for n in names},
                                             k, fusion.weights, fusion.constant)
            else:
                top = ranked[mode][:k]
            rows = self.store.passages([i for i, _ in top])
            if len(rows) == len(top):
                break
            ranked = _without(ranked, {i for i, _ in top} - rows.keys())
        return [make_hit(rows[i], score, query) for i, score in top if i in rows]

    def _search_documents(self, query: str, k: int, depth: int, names, where, vector,
                          fusion, fused: bool) -> list[Hit]:
        """One hit per document: the lists rank documents (by the rank at which each first
        appears), and only the passages shown are read from the store."""
        ranked, owners = self._document_lists(query, k, depth, names, where, vector)
        for _ in range(MAX_REFETCHES):  # passages deleted meanwhile leave the lists
            groups = rank_documents({n: [(i, owners[i]) for i, _ in ranked[n] if i in owners]
                                     for n in names}, k, fusion.weights, fusion.constant)
            wanted = {i for _, ids in groups for i in ids}
            rows = self.store.passages(sorted(wanted))
            if len(rows) == len(wanted):
                break
            ranked = _without(ranked, wanted - rows.keys())
        scores: dict[int, float] = {}
        for name in names:
            for i, score in ranked[name]:
                scores.setdefault(i, score)
        hits = []
        for score, ids in groups:
            present = [i for i in ids if i in rows]
            if present:
                best, *others = present
                context = tuple(make_hit(rows[i], scores[i], query) for i in others)
                hits.append(replace(make_hit(rows[best], score if fused else scores[best],
                                             query), context=context))
        return hits

    def _document_lists(self, query: str, k: int, depth: int, names, where, vector,
                        ) -> tuple[dict[str, list[tuple[int, float]]], dict[int, int]]:
        """The rankings, deep enough to hold `k` distinct documents, and each passage's
        document: when the top passages come from fewer documents (long ones, or a filter
        matching a few), the lists are fetched again four times as deep until they hold `k`
        or run out of passages."""
        while True:
            ranked = self._ranked(query, depth, names, where, vector)
            owners = self.store.passage_documents(
                sorted({i for found in ranked.values() for i, _ in found}))
            exhausted = all(len(found) < depth for found in ranked.values())
            if len(set(owners.values())) >= k or exhausted or depth >= MAX_DOCUMENT_DEPTH:
                return ranked, owners
            depth = min(4 * depth, MAX_DOCUMENT_DEPTH)

    def _ranked(self, query: str, depth: int, names, where, vector,
                ) -> dict[str, list[tuple[int, float]]]:
        """Each named list's top `depth` `(passage id, score)`, best first (called inside
        the search's `store.one_search()`)."""
        self._refuse_damage()
        self.refresh()
        ranked = {}
        for name in names:
            if name == "keyword":
                ranked[name] = self.store.keyword_search(keyword_terms(query), depth, where)
            else:
                ranked[name] = self.store.dense_search(np.asarray(vector).reshape(1, -1),
                                                       depth, where,
                                                       first_only=name == "first")[0]
        return ranked

    def rankings(self, query: str, depth: int, *, lists=("dense", "keyword", "first"),
                 filter: dict | None = None, vector: np.ndarray | None = None,
                 ) -> dict[str, list[Hit]]:
        """The ranked lists search modes fuse, each `depth` deep: `dense` (passages by
        embedding), `keyword` (passages by BM25) and `first` (documents' first passages by
        embedding). For measuring fusions (bench/search.py) and for building on."""
        query, where = check_query(query), parse_filter(filter)
        if {"dense", "first"} & set(lists) and vector is None:
            vector = self.encoder.encode([query])
        with self.store.one_search():
            ranked = self._ranked(query, depth, lists, where, vector)
            rows = self.store.passages(sorted({i for hits in ranked.values()
                                               for i, _ in hits}))
        return {name: [make_hit(rows[i], score) for i, score in hits if i in rows]
                for name, hits in ranked.items()}

    def search_vectors(self, queries: np.ndarray, k: int = 10, *,
                       filter: dict | None = None) -> list[list[Hit]]:
        """Dense search with query vectors `(n, dimension)`: one list of hits per query."""
        k, where = check_k(k), parse_filter(filter)
        self._refuse_damage()
        with self.store.one_search():
            self.refresh()
            found = self.store.dense_search(np.asarray(queries, dtype=np.float32), k, where)
            return [self._hits(ranked) for ranked in found]

    def _refuse_damage(self) -> None:
        damage = self.store.health()
        if damage:
            raise IndexCorruptError(
                f"The index at '{self.store.location}' is damaged ({damage}); it is not "
                f"searched until `bertsearch check --index {self.store.location} --repair` "
                f"mends it.")

    def _hits(self, ranked: list[tuple[int, float]], query: str | None = None) -> list[Hit]:
        rows = self.store.passages([i for i, _ in ranked])
        return [make_hit(rows[i], score, query) for i, score in ranked if i in rows]

    def neighbours(self, hit: Hit, before: int = 1, after: int = 1) -> list[Hit]:
        """The passages around a hit in its document (score 0 for the neighbours)."""
        row = self.store.passages([hit.passage_id]).get(hit.passage_id)
        if row is None:
            return []
        rows = self.store.document_passages(row.document_id)
        lo, hi = max(0, row.ordinal - before), row.ordinal + after + 1
        return [make_hit(r, hit.score if r.id == hit.passage_id else 0.0)
                for r in rows[lo:hi]]

    # -- documents ------------------------------------------------------------------------

    def upsert(self, id: str, text: str, metadata: dict | None = None) -> UpsertResult:
        """Add or replace the document `id`: its text is chunked and embedded exactly as a
        file's would be. The same text again embeds nothing; new metadata alone is only
        recorded.

        Raises:
            InvalidInputError: a bad id, empty text or metadata that is not a JSON object;
                an id that belongs to a folder's file (sync the folder instead).
        """
        id, metadata = check_document_id(id), check_metadata(metadata)
        self._refuse_read_only()
        if not isinstance(text, str) or not text.strip():
            raise InvalidInputError("A document's text must be a non-empty string.")
        if len(text) > MAX_DOCUMENT_CHARS:
            raise InvalidInputError(f"A document's text may have at most {MAX_DOCUMENT_CHARS} "
                                    f"characters; split it into several documents.")
        with self._write_lock:
            stored = self.store.stored_document(id)
            if stored is not None and stored.origin == FOLDER:
                raise InvalidInputError(
                    f"Document '{id}' was indexed from a folder; it follows its file. Edit "
                    f"the file and run `bertsearch index` on the folder instead.")
            digest = content_hash(text.encode("utf-8", "surrogatepass"))
            size = len(text.encode("utf-8", "surrogatepass"))
            if stored is not None and stored.content_hash == digest:
                if stored.metadata == metadata:
                    return UpsertResult(id, "unchanged", self._passage_count(id))
                self.store.update_document(stored.id, size, time.time(), metadata)
                return UpsertResult(id, "metadata", self._passage_count(id))
            passages = document_passages(api_document(text, metadata), self.encoder,
                                         self.settings.chunk)
            vectors = self.encoder.encode(embedding_inputs(passages, self.encoder,
                                                           self.settings.context))
            self.store.write_documents([NewDocument(id, API, "", id, digest, size, time.time(),
                                                    metadata, text, passages)], vectors)
        return UpsertResult(id, "created" if stored is None else "replaced", len(passages))

    def get(self, id: str) -> Document | None:
        """The document `id` (text, metadata, passage count), or None."""
        record = self.store.document(check_document_id(id))
        return None if record is None else _document(record)

    def delete(self, id: str) -> bool:
        """Delete the document `id` with every trace of it (passages, vectors, keyword
        entries, text); False if there was none.

        Raises:
            InvalidInputError: the id belongs to a folder's file (delete the file and sync).
        """
        id = check_document_id(id)
        self._refuse_read_only()
        with self._write_lock:
            stored = self.store.stored_document(id)
            if stored is None:
                return False
            if stored.origin == FOLDER:
                raise InvalidInputError(
                    f"Document '{id}' was indexed from a folder; delete the file and run "
                    f"`bertsearch index` on the folder instead.")
            self.store.delete_documents([stored.id])
        return True

    def _refuse_read_only(self) -> None:
        if self.store.read_only:
            raise IndexReadOnlyError(f"The index at '{self.store.location}' is open "
                                     f"read-only: it can be searched but not changed.")

    def _passage_count(self, id: str) -> int:
        record = self.store.document(id)
        return record.passages if record else 0

    # -- the rest --------------------------------------------------------------------------

    def as_langchain(self):
        """This index as a LangChain `VectorStore` (needs `bertsearch[langchain]`):
        `add_texts`, `similarity_search(query, k, filter=...)`, `delete`, `as_retriever()`."""
        from .frameworks import langchain_vector_store

        return langchain_vector_store(self)

    def stats(self) -> dict:
        """Counts, the settings that made the index, and each folder's last sync (when,
        what changed, the files skipped and why)."""
        documents, passages = self.store.counts()
        syncs = self.store.settings().get("syncs") or {}
        return {**self.settings.to_dict(), **self.store.describe(), "documents": documents,
                "passages": passages, "store": self.store.kind, "path": self.store.location,
                "syncs": syncs,
                "last_sync": max((v["finished_at"] for v in syncs.values()), default=None)}

    def __len__(self) -> int:
        return self.store.counts()[1]

    def close(self) -> None:
        """Save derived data (the FAISS file) if writes moved it on, then close."""
        try:
            self.store.checkpoint()
        finally:
            self.store.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _without(ranked: dict[str, list[tuple[int, float]]], gone: set[int],
             ) -> dict[str, list[tuple[int, float]]]:
    """The ranked lists with the passages `gone` left out."""
    return {name: [(i, score) for i, score in found if i not in gone]
            for name, found in ranked.items()}


def document_ranking(lists: dict[str, list[Hit]], k: int,
                     weights: dict[str, float] | None = None,
                     constant: float = RRF_CONSTANT) -> list[tuple[float, list[Hit]]]:
    """`rank_documents` over lists of hits: `[(score, [best, *context]), ...]`."""
    by_id = {h.passage_id: h for hits in lists.values() for h in hits}
    ranked = rank_documents({name: [(h.passage_id, h.document_id) for h in hits]
                             for name, hits in lists.items()}, k, weights, constant)
    return [(score, [by_id[i] for i in ids]) for score, ids in ranked]


def rank_documents(lists: dict[str, list[tuple[int, object]]], k: int,
                   weights: dict[str, float] | None = None,
                   constant: float = RRF_CONSTANT) -> list[tuple[float, list[int]]]:
    """Documents ranked by fusing, over the lists of `(passage id, document)`, the rank at
    which each document first appears (reciprocal rank). Each document comes with its
    passages the lists found, its best first (by the passages' own fused rank):
    `[(score, [best, *others]), ...]`."""
    appearances = {name: list(dict.fromkeys(doc for _, doc in found))
                   for name, found in lists.items()}
    ranked = reciprocal_rank_fusion(appearances, k, weights, constant)
    passage_rank = dict(reciprocal_rank_fusion(
        {name: [i for i, _ in found] for name, found in lists.items()},
        sum(len(found) for found in lists.values()), weights, constant))
    by_document: dict[object, dict[int, None]] = {}
    for found in lists.values():
        for i, doc in found:
            by_document.setdefault(doc, {})[i] = None
    return [(score, sorted(by_document[doc], key=lambda i: -passage_rank[i]))
            for doc, score in ranked]


def _quick_queries(encoder) -> None:
    """Single queries on ONNX Runtime fp32 where its export is cached (same vectors, ~2x
    faster; `Encoder.fast_small_calls`); `bertsearch index` and the server build it."""
    prepare = getattr(encoder, "fast_small_calls", None)
    if prepare is not None:
        prepare(export=False)


def make_hit(row: PassageRow, score: float, query: str | None = None) -> Hit:
    return Hit(passage_id=row.id, score=score, document_id=row.key, root=row.root,
               path=row.path, ordinal=row.ordinal, start=row.start, end=row.end,
               line_start=row.line_start, line_end=row.line_end, text=row.text,
               headings=row.headings, metadata=row.metadata,
               highlights=tuple(highlights(row.text, query)) if query else ())


def _document(record: DocumentRecord) -> Document:
    return Document(record.key, record.origin, record.text, record.metadata, record.passages,
                    record.content_hash, record.indexed_at)


def check_query(query) -> str:
    """The one rule for queries, in Python, the CLI and HTTP alike."""
    if not isinstance(query, str) or not query.strip():
        raise InvalidInputError("The query must be a non-empty string.")
    if len(query) > MAX_QUERY_CHARS:
        raise InvalidInputError(f"The query may have at most {MAX_QUERY_CHARS} characters; "
                                f"got {len(query)}.")
    return query


def check_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise InvalidInputError(f"k must be a whole number from 1 to {MAX_K}; got {k!r}.")
    return k


def check_mode(mode) -> str:
    if mode is None:
        return DEFAULT_MODE
    if mode not in MODES:
        raise InvalidInputError(f"mode must be one of {', '.join(MODES)}; got {mode!r}.")
    return mode


def check_group(group) -> str:
    if group is None:
        return DEFAULT_GROUP
    if group not in GROUPS:
        raise InvalidInputError(f"group must be one of {', '.join(GROUPS)}; got {group!r}.")
    return group


def check_document_id(id) -> str:
    if not isinstance(id, str) or not id.strip() or len(id) > MAX_ID_CHARS or "\x00" in id:
        raise InvalidInputError(f"A document id is a non-empty string of at most "
                                f"{MAX_ID_CHARS} characters; got {str(id)[:40]!r}.")
    return id


def check_metadata(metadata) -> dict:
    """Metadata is a JSON object (finite numbers, string keys), at most 64 KB as JSON."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise InvalidInputError("Metadata must be a JSON object, e.g. {\"year\": 2025}.")
    try:
        encoded = json.dumps(metadata, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"Metadata must be plain JSON (strings, finite numbers, "
                                f"booleans, null, lists and objects): {exc}.") from None
    if len(encoded.encode("utf-8", "surrogatepass")) > MAX_METADATA_BYTES:
        raise InvalidInputError(f"Metadata may take at most {MAX_METADATA_BYTES} bytes as "
                                f"JSON.")
    return json.loads(encoded)  # plain JSON types only (tuples become lists, ...)


def metadata_from_options(fields: list[str] | tuple = (), raw: str | None = None) -> dict:
    """Metadata from command-line options: `KEY=VALUE` fields (VALUE read as JSON when it is
    a JSON value, else as text) over a JSON object.

    Raises:
        InvalidInputError: a field without `=`, or JSON that is not an object.
    """
    metadata = {}
    if raw:
        try:
            metadata = json.loads(raw)
        except ValueError as exc:
            raise InvalidInputError(f"--metadata is not valid JSON: {exc}.") from None
        if not isinstance(metadata, dict):
            raise InvalidInputError("--metadata must be a JSON object.")
    for field_ in fields:
        key, sep, value = field_.partition("=")
        if not sep or not key.strip():
            raise InvalidInputError(f"--meta {field_!r} is not KEY=VALUE.")
        try:
            metadata[key.strip()] = json.loads(value)
        except ValueError:
            metadata[key.strip()] = value
    return check_metadata(metadata)


def _initial_settings(store: Store, encoder, chunk: ChunkSettings,
                      context: str) -> IndexSettings:
    chunk.validate(encoder.max_seq_length)
    settings = IndexSettings.of(encoder, chunk, "auto", context)
    store.clear(settings.to_dict())
    return settings


def _default_encoder():
    from embedder.resolver import resolve_encoder

    return resolve_encoder()


def _check_encoder(encoder: TextEncoder, settings: IndexSettings, where: str) -> None:
    from embedder.errors import EncoderMismatchError
    from embedder.resolver import check_encoder

    try:
        check_encoder(encoder, settings.record, f"index '{where}'")
    except EncoderMismatchError as exc:
        raise IndexMismatchError(str(exc)) from None

