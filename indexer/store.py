"""The store interface: where an index keeps its documents, passages, vectors and keywords.

Two implementations, each the only module that imports its engine:
- `SQLiteStore` (`sqlite_store.py`): an index directory — SQLite (WAL) as the source of
  truth with an FTS5 keyword index, plus a FAISS file derived from it (`vectors.py`). The
  embedded default: no server.
- `PostgresStore` (`postgres_store.py`): a PostgreSQL database with pgvector — many
  indexers and servers share it, and read replicas serve queries.

Everything above this interface is written once: folder sync (`build.py`), the documents
API and search modes (`index.py`), fusion, filters (`filters.py`: parsed once into a tree,
which each store compiles to its own query language), snippets. `open_store` picks the
implementation from the location: a `postgresql://` URL or a folder.

Contract every store keeps (tested by one conformance suite against both):
- Writes are transactions: a document's passages, vectors and keyword entries are replaced
  together or not at all; every write bumps `generation()`.
- Passage ids are never reused, so a deleted passage can never come back under another's id.
- `dense_search` with a filter returns k hits whenever k passages match, ranked as an exact
  search of the matching passages would rank them (approximate indexes only for broad
  filters); `keyword_search` ranks by the engine's BM25-style relevance.
- One bulk writer at a time (`writer_lock`): a second waits or learns who holds the lock;
  a crashed holder never leaves it behind.
"""

from __future__ import annotations

import contextlib
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .filters import Filter

FOLDER, API = "folder", "api"  # where a document came from
# a long document is written in parts, each its own transaction: the first replaces the
# stored document (its content hash marked PARTIAL until the last part), later ones append
WHOLE, FIRST, MIDDLE, LAST = "whole", "first", "middle", "last"
PARTIAL = "partial:"


@dataclass(frozen=True)
class NewPassage:
    """A passage to store: its place in the document, its text and its heading path."""

    ordinal: int
    start: int
    end: int
    line_start: int
    line_end: int
    tokens: int
    text: str
    headings: tuple[str, ...] = ()


@dataclass(frozen=True)
class NewDocument:
    """A document to insert, or to replace the stored document of the same key."""

    key: str  # the document id: the file's full path, or the id given to the documents API
    origin: str  # FOLDER or API
    root: str  # the indexed folder ("" for API documents)
    path: str  # the path within that folder (the key for API documents)
    content_hash: str
    size: int
    mtime: float
    metadata: dict
    text: str
    passages: list[NewPassage]
    part: str = WHOLE  # WHOLE, or FIRST / MIDDLE / LAST of a long document's parts


@dataclass(frozen=True)
class StoredDocument:
    """What folder sync and upserts compare against: the stored state of one document."""

    id: int
    key: str
    origin: str
    path: str
    content_hash: str
    size: int
    mtime: float
    metadata: dict
    passages: int = 0


@dataclass(frozen=True)
class DocumentRecord:
    """A stored document as the documents API returns it."""

    key: str
    origin: str
    root: str
    path: str
    content_hash: str
    size: int
    mtime: float
    metadata: dict
    text: str | None  # None for documents indexed before texts were kept
    passages: int
    indexed_at: float


@dataclass(frozen=True)
class PassageRow:
    """A stored passage with what a hit shows of its document."""

    id: int
    document_id: int
    root: str
    path: str
    ordinal: int
    start: int
    end: int
    line_start: int
    line_end: int
    text: str
    key: str = ""
    headings: tuple[str, ...] = ()
    metadata: dict = field(default_factory=dict)


class Store(ABC):
    """An index's storage. Implementations are thread-safe."""

    kind: str  # "sqlite" or "postgresql"
    location: str  # the folder or the URL, for messages
    read_only: bool = False

    # -- settings and generation ------------------------------------------------------------

    @abstractmethod
    def settings(self) -> dict:
        """The settings the index was made with (see `IndexSettings`); {} when new."""

    @abstractmethod
    def save_settings(self, values: dict) -> None:
        """Record settings (merged into those stored)."""

    @abstractmethod
    def clear(self, settings: dict) -> None:
        """Drop every document and passage and start over with new settings (--rebuild)."""

    @abstractmethod
    def generation(self) -> int:
        """A counter every write bumps: readers compare it to see whether anything changed."""

    def one_search(self) -> contextlib.AbstractContextManager:
        """For the duration of the context this thread runs one search: the store may read
        its generation once and answer from that reading after (each of a search's calls
        checks its caches against the generation), and keep the passages read along with a
        ranking for the search's `passages` call. A no-op where neither saves anything."""
        return contextlib.nullcontext()

    @abstractmethod
    def writer_lock(self, owner: str, wait: bool = False) -> contextlib.AbstractContextManager:
        """Hold the index's bulk-writer lock (folder sync) for the duration of the context.

        Raises:
            IndexBusyError: another process holds it and `wait` is False.
        """

    # -- documents --------------------------------------------------------------------------

    @abstractmethod
    def folder_documents(self, root: str) -> dict[str, StoredDocument]:
        """The documents indexed from folder `root`, by relative path."""

    @abstractmethod
    def stored_document(self, key: str) -> StoredDocument | None:
        """The stored state of the document `key`, or None."""

    @abstractmethod
    def document(self, key: str) -> DocumentRecord | None:
        """The document `key` with its text and metadata, or None."""

    @abstractmethod
    def write_documents(self, documents: list[NewDocument], vectors: np.ndarray) -> None:
        """Insert documents, each replacing the stored one of the same key, with their
        passages, vectors (float32, one row per passage in order) and keyword entries, in
        one transaction. A document's `part` says whether it is whole or one part of a long
        one (FIRST replaces and marks the content hash PARTIAL, MIDDLE appends, LAST appends
        and records the real content hash), so a long file commits as it goes."""

    @abstractmethod
    def update_document(self, doc_id: int, size: int, mtime: float, metadata: dict) -> None:
        """Record a new size, mtime and metadata for a document whose text is unchanged."""

    @abstractmethod
    def delete_documents(self, ids: list[int]) -> int:
        """Delete documents with every trace of them; returns how many passages went."""

    @abstractmethod
    def counts(self) -> tuple[int, int]:
        """(documents, passages)."""

    @abstractmethod
    def iter_documents(self) -> Iterator[tuple[int, str, str]]:
        """(id, root, path) of every document, in id order."""

    # -- passages and search ----------------------------------------------------------------

    @abstractmethod
    def passages(self, ids: list[int]) -> dict[int, PassageRow]:
        """Passage rows by id (missing ids left out)."""

    @abstractmethod
    def passage_documents(self, ids: list[int]) -> dict[int, int]:
        """Each passage's document (its row id), by passage id (missing ids left out): what
        grouping by documents needs, without reading the passages."""

    @abstractmethod
    def document_passages(self, document_id: int) -> list[PassageRow]:
        """All passages of one document, in order."""

    @abstractmethod
    def dense_search(self, queries: np.ndarray, k: int, where: Filter | None = None,
                     exact: bool = False, first_only: bool = False,
                     ) -> list[list[tuple[int, float]]]:
        """The k passages of highest inner product with each query vector, among those whose
        document matches `where`: `[(passage id, score), ...]` per query, best first.
        `exact` asks for exact search even where the store keeps an approximate index;
        `first_only` searches only each document's first passage (ordinal 0)."""

    @abstractmethod
    def keyword_search(self, terms: list[str], k: int, where: Filter | None = None,
                       ) -> list[tuple[int, float]]:
        """The k passages most relevant to any of `terms` (lower-case words), by the
        engine's full-text ranking (higher is better), among those matching `where`."""

    @abstractmethod
    def refresh(self) -> bool:
        """Catch derived structures up with writes made elsewhere; True if anything changed."""

    def warm(self) -> None:
        """Prepare what searches use (derived copies), so the first search does not pay."""
        self.refresh()

    def checkpoint(self) -> None:  # noqa: B027 - optional: only some stores derive data
        """Persist derived data after a bulk write (the FAISS file); a no-op where nothing
        is derived."""

    def describe(self) -> dict:
        """Engine-specific figures for stats (the vector index kind, ...)."""
        return {}

    def health(self) -> str | None:
        """None while the store answers soundly, else what is wrong (damage seen, ...)."""
        return None

    def quick_check(self) -> str | None:
        """A cheap-as-possible integrity probe run at server start and before a sync: None
        when sound, else what is wrong."""
        return None

    # -- files kept with the index (an adapted coherence model) ------------------------------

    @abstractmethod
    def attached_folder(self, name: str) -> Path | None:
        """A local folder holding the files kept with the index under `name`, or None when
        there are none."""

    @abstractmethod
    def attach_folder(self, name: str, folder: Path) -> None:
        """Keep the files of `folder` with the index under `name`, replacing those kept."""

    @abstractmethod
    def check(self, repair: bool = False, reembed=None) -> tuple[list[str], list[str]]:
        """Verify everything the store keeps; with `repair`, mend what can be mended
        (`reembed(passage_rows) -> vectors` recomputes damaged vectors). Returns
        (problems found, repairs made)."""

    @abstractmethod
    def close(self) -> None:
        """Release the connection and any lock."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def is_database_url(location: str | os.PathLike) -> bool:
    """Whether an index location names a PostgreSQL database rather than a folder."""
    return str(location).startswith(("postgresql://", "postgres://"))


def open_store(location: str | os.PathLike, *, create: bool = False,
               read_only: bool = False) -> Store:
    """Open the store at `location`: a PostgreSQL URL, or an index folder.

    Args:
        create: make the folder / schema if missing (writers do; readers never).
        read_only: open for reading only (a shared, mounted index; a replica).

    Raises:
        IndexNotFoundError: nothing there and not `create`.
        IndexCorruptError: the database cannot be read.
    """
    if is_database_url(location):
        from .postgres_store import PostgresStore

        return PostgresStore.open(str(location), create=create, read_only=read_only)
    from .sqlite_store import SQLiteStore

    return SQLiteStore.open(Path(location).expanduser(), create=create, read_only=read_only)
