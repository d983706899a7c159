"""An in-memory copy of every document's first passage vector, for a store that keeps its
vectors in a database server (the PostgreSQL store).

Hybrid search by documents ranks the documents' first passages too (where a page says what it
is about), exactly while there are few enough of them. Scoring them in the database reads
each one's row from the heap on every search (2.3 ms for 3,067 documents, measured); scoring
a copy in memory takes 0.08 ms. The copy is caught up per generation like the keyword copy
(`indexer.bm25.KeywordCopy`): passage ids are never reused, so the ids read tell which
vectors are new and which are gone, and only the new ones are fetched; a vector repaired in
place under its id (`check --repair`) moves the `VECTOR_EPOCH` setting, and the copy is then
read whole. It is for a few documents (`EXACT_SUBSET_MAX`: ~30 MB at 384 dimensions); a
store that outgrows that drops it (`forget`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .ranking import best_k

VECTOR_EPOCH = "vector_epoch"  # a setting, moved when vectors change under their ids


class FirstPassageSource(Protocol):
    def generation(self) -> int: ...

    def settings(self) -> dict: ...

    def first_passages(self) -> tuple[np.ndarray, np.ndarray]:
        """`(passage ids, their document ids)` of every document's first passage."""

    def stored_vectors(self, ids: list[int]) -> dict[int, np.ndarray]: ...


@dataclass(frozen=True)
class FirstVectors:
    """One caught-up state: ids ascending, their documents, their vectors (rows alike)."""

    generation: int
    epoch: object
    ids: np.ndarray
    documents: np.ndarray
    vectors: np.ndarray

    def top(self, query: np.ndarray, k: int, documents: list[int] | None = None,
            ) -> list[tuple[int, float]]:
        """The `k` best first passages by inner product, ties by id (a brute-force
        search's order), among those of `documents` when given."""
        ids, vectors = self.ids, self.vectors
        if documents is not None:
            keep = np.isin(self.documents, np.asarray(documents, dtype=np.int64))
            ids, vectors = ids[keep], vectors[keep]
        if not len(ids) or k < 1:  # (an empty copy's vectors have no columns to score)
            return []
        scores = vectors @ np.asarray(query, dtype=np.float32).reshape(-1)
        return best_k(ids, scores, k)


class FirstPassageCopy:
    """The copy, shared by a store's threads: `current(source)` is caught up to the
    source's generation (one reader catches up, the others wait for it)."""

    def __init__(self) -> None:
        self._state: FirstVectors | None = None
        self._lock = threading.Lock()

    def current(self, source: FirstPassageSource) -> FirstVectors:
        generation = source.generation()  # read first: a later write only makes it stale
        state = self._state
        if state is not None and state.generation == generation:
            return state
        with self._lock:
            state = self._state
            if state is None or state.generation != generation:
                state = self._caught_up(source, state, generation)
                self._state = state  # only now: a read that failed is tried again
            return state

    def forget(self) -> None:
        """Drop the copy (the store outgrew it); a later use reads it whole."""
        if self._state is not None:  # no lock taken on every search of a large index
            with self._lock:
                self._state = None

    @staticmethod
    def _caught_up(source: FirstPassageSource, state: FirstVectors | None,
                   generation: int) -> FirstVectors:
        epoch = source.settings().get(VECTOR_EPOCH)
        ids, documents = source.first_passages()
        order = np.argsort(ids, kind="stable")
        ids, documents = ids[order], documents[order]
        known = np.zeros(len(ids), dtype=bool)
        if state is not None and state.epoch == epoch and len(state.ids):
            at = np.minimum(np.searchsorted(state.ids, ids), len(state.ids) - 1)
            known = state.ids[at] == ids
            if known.all() and len(ids) == len(state.ids):  # no first passage came or went
                return FirstVectors(generation, epoch, ids, documents, state.vectors)
        missing = ids[~known].tolist()
        fetched = source.stored_vectors(missing) if missing else {}
        dimension = (state.vectors.shape[1] if known.any() else
                     len(next(iter(fetched.values()))) if fetched else 0)
        vectors = np.zeros((len(ids), dimension), dtype=np.float32)
        if known.any():
            vectors[known] = state.vectors[at[known]]
        for row in np.flatnonzero(~known):
            if int(ids[row]) in fetched:
                vectors[row] = fetched[int(ids[row])]
        present = known | np.isin(ids, np.fromiter(fetched, dtype=np.int64, count=len(fetched)))
        return FirstVectors(generation, epoch, ids[present], documents[present],
                            vectors[present])  # deleted meanwhile: gone
