"""Opening an index and searching it: `Index.open(path).search(query, k) -> list[Hit]`.

The FAISS file is checked against SQLite on open and before each search: if the store has
moved on (another process indexed more, or a run was killed before saving the vectors),
the missing vectors are added and the stale ones removed, from SQLite. So a search always
sees exactly what SQLite holds, and an index keeps answering while it is being updated.
"""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .errors import IndexCorruptError, IndexMismatchError, IndexNotFoundError
from .limits import MAX_K
from .settings import IndexSettings, TextEncoder
from .store import DB_NAME, Store
from .vectors import VECTORS_NAME, VectorIndex, choose_kind


@dataclass(frozen=True)
class Hit:
    """A passage found by a search."""

    passage_id: int
    score: float
    root: str  # the folder that was indexed
    path: str  # the document's path within that folder
    ordinal: int  # the passage's position in its document (0-based)
    start: int  # character offsets of the passage in the document's text
    end: int
    line_start: int
    line_end: int
    text: str

    @property
    def file(self) -> str:
        """The document's full path."""
        return os.path.join(self.root, self.path)

    def to_dict(self) -> dict:
        return {**asdict(self), "file": self.file}


def sync_vectors(store: Store, vectors: VectorIndex | None, dimension: int,
                 kind: str) -> VectorIndex:
    """Bring a vector index to exactly the passages SQLite holds, reading vectors from SQLite.

    Adds what is missing and removes what SQLite no longer has (an HNSW index, which cannot
    remove, is rebuilt instead). Passage ids are never reused, so comparing id sets is enough.
    """
    wanted = store.passage_ids()
    kind = choose_kind(kind, len(wanted))
    if vectors is None or vectors.kind != kind or vectors.dimension != dimension:
        vectors = VectorIndex.empty(dimension, kind)
    have = vectors.ids()
    stale = np.setdiff1d(have, wanted, assume_unique=True)
    if len(stale) and not vectors.can_remove:  # HNSW: start over rather than delete
        vectors, have = VectorIndex.empty(dimension, kind), np.array([], dtype=np.int64)
    else:
        vectors.remove(stale)
    missing = np.setdiff1d(wanted, have, assume_unique=True)
    for ids, block in store.vectors(missing):
        vectors.add(ids, block)
    return vectors


def load_vectors(folder: Path, store: Store, settings: IndexSettings,
                 save: bool = True) -> tuple[VectorIndex, int]:
    """The index's vectors, caught up with SQLite (and saved again if they were behind)."""
    path = folder / VECTORS_NAME
    generation = store.generation()
    vectors, saved_generation = None, -1
    if path.exists():
        try:
            vectors, saved_generation = VectorIndex.load(path)
        except IndexCorruptError:
            vectors = None  # derived data: rebuilt from SQLite below
    if vectors is not None and saved_generation == generation and \
            len(vectors) == store.counts()[1]:
        return vectors, generation
    vectors = sync_vectors(store, vectors, settings.dimension, settings.index_type)
    if save:
        with contextlib.suppress(OSError):  # a read-only index still answers from memory
            vectors.save(path, generation)
    return vectors, generation


class Index:
    """A searchable index directory (see `indexer.build.build_index` to make one)."""

    def __init__(self, folder: Path, store: Store, settings: IndexSettings,
                 encoder: TextEncoder | None = None):
        self.folder = folder
        self.store = store
        self.settings = settings
        self._encoder = encoder
        self._lock = threading.RLock()
        self._vectors, self._generation = load_vectors(folder, store, settings)

    @classmethod
    def open(cls, path: str | os.PathLike, encoder: TextEncoder | None = None) -> Index:
        """Open an index directory made by `bertsearch index`.

        Args:
            path: the index directory.
            encoder: the encoder for queries; default: load the model the index records,
                on first use.

        Raises:
            IndexNotFoundError: no index there.
            IndexMismatchError: `encoder` is not the model the index was built with.
        """
        folder = Path(path).expanduser()
        if not (folder / DB_NAME).is_file():
            raise IndexNotFoundError(
                f"No index at '{folder}'. Create one with: bertsearch index FOLDER --index "
                f"{folder}")
        store = Store.open(folder)
        settings = IndexSettings.from_dict(store.settings())
        if settings is None:
            store.close()
            raise IndexNotFoundError(
                f"The index at '{folder}' is empty: no documents were indexed into it yet.")
        if encoder is not None:
            try:
                _check_encoder(encoder, settings, folder)
            except IndexMismatchError:
                store.close()
                raise
        return cls(folder, store, settings, encoder)

    @property
    def encoder(self) -> TextEncoder:
        """The encoder queries are embedded with, loaded on first use from the settings."""
        if self._encoder is None:
            from embedder.resolver import resolve_encoder

            self._encoder = resolve_encoder(record=self.settings.record,
                                            where=f"index '{self.folder}'")
        return self._encoder

    def refresh(self) -> bool:
        """Catch up with writes made since the last search; True if anything changed."""
        generation = self.store.generation()
        if generation == self._generation:
            return False
        with self._lock:
            self._vectors = sync_vectors(self.store, self._vectors, self.settings.dimension,
                                         self.settings.index_type)
            self._generation = generation
        return True

    def search(self, query: str, k: int = 10) -> list[Hit]:
        """The `k` passages most similar to `query`, best first."""
        if not isinstance(query, str) or not query.strip():
            from embedder.errors import InvalidInputError

            raise InvalidInputError("The query must be a non-empty string.")
        return self.search_vectors(self.encoder.encode([query]), k)[0]

    def search_vectors(self, queries: np.ndarray, k: int = 10) -> list[list[Hit]]:
        """Search with query vectors `(n, dimension)`: one list of hits per query."""
        _check_k(k)
        self.refresh()
        with self._lock:
            scores, ids = self._vectors.search(queries, k)
        rows = self.store.passages(sorted({int(i) for i in ids.ravel() if i >= 0}))
        return [[_hit(rows[int(i)], float(s)) for s, i in zip(srow, irow) if int(i) in rows]
                for srow, irow in zip(scores, ids)]

    def neighbours(self, hit: Hit, before: int = 1, after: int = 1) -> list[Hit]:
        """The passages around a hit in its document (score 0 for the neighbours)."""
        row = self.store.passages([hit.passage_id]).get(hit.passage_id)
        if row is None:
            return []
        rows = self.store.document_passages(row.document_id)
        lo, hi = max(0, row.ordinal - before), row.ordinal + after + 1
        return [_hit(r, hit.score if r.id == hit.passage_id else 0.0) for r in rows[lo:hi]]

    def stats(self) -> dict:
        documents, passages = self.store.counts()
        return {**self.settings.to_dict(), "documents": documents, "passages": passages,
                "vector_index": self._vectors.kind, "path": str(self.folder)}

    def __len__(self) -> int:
        return len(self._vectors)

    def close(self) -> None:
        self.store.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _hit(row, score: float) -> Hit:
    return Hit(passage_id=row.id, score=score, root=row.root, path=row.path,
               ordinal=row.ordinal, start=row.start, end=row.end, line_start=row.line_start,
               line_end=row.line_end, text=row.text)


def _check_k(k: int) -> None:
    if not isinstance(k, int) or not 1 <= k <= MAX_K:
        from embedder.errors import InvalidInputError

        raise InvalidInputError(f"k must be a whole number from 1 to {MAX_K}; got {k!r}.")


def _check_encoder(encoder: TextEncoder, settings: IndexSettings, folder: Path) -> None:
    from embedder.errors import EncoderMismatchError
    from embedder.resolver import check_encoder

    try:
        check_encoder(encoder, settings.record, f"index '{folder}'")
    except EncoderMismatchError as exc:
        raise IndexMismatchError(str(exc)) from None
