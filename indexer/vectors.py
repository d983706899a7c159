"""The FAISS side of an index: a derived, rebuildable copy of the passage vectors.

The only module that imports faiss. Its API speaks `scores, ids`, where an id is the SQLite
rowid of a passage. `flat` is exact inner-product search; `hnsw` is an approximate graph
index for large collections (it cannot delete, so removals rebuild it).

On disk it is one file: a one-line JSON header (kind, the store generation the vectors
reflect, count, dimension and the sha256 of the data) followed by the serialised FAISS
index, replaced atomically. A file whose data does not match its checksum, or whose header
is not what this module writes, is damaged: `load` says so and the store rebuilds it from
SQLite, never serves it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections import OrderedDict
from pathlib import Path

import faiss
import numpy as np

from .errors import IndexCorruptError, IndexerError

VECTORS_NAME = "vectors.faiss"
MAGIC = b"bertsearch-vectors 2\n"  # 2: the header carries a checksum
KINDS = ("flat", "hnsw")
HNSW_NEIGHBOURS = 32
HNSW_EF_CONSTRUCTION = 200
HNSW_EF_SEARCH = 256  # recall@10 >= 0.95 on hard synthetic data; ~0.1 ms a query
# From this many passages `auto` picks HNSW: exact search reads every vector per query
# (100,000 x 384 floats = 150 MB, ~20 ms on a 2-core machine), HNSW a few hundred.
AUTO_HNSW_FROM = 50_000


def choose_kind(kind: str, passages: int) -> str:
    """Resolve `auto` to `flat` or `hnsw` by collection size."""
    if kind == "auto":
        return "hnsw" if passages >= AUTO_HNSW_FROM else "flat"
    if kind not in KINDS:
        raise IndexerError(f"Index type must be auto, flat or hnsw; got {kind!r}.")
    return kind


# A filtered search whose matching passages are at most this many reads their vectors and
# ranks them exactly (one matrix product); a broader one searches FAISS with an id selector.
EXACT_SUBSET_MAX = 20_000
GATHERED_SUBSETS = 4


class VectorIndex:
    """Passage vectors under their passage ids, searchable by inner product."""

    def __init__(self, index, kind: str):
        self.index = index
        self.kind = kind
        self._rows = None  # (sorted ids, their rows in the storage): built on demand
        # the vectors of the last few subsets ranked exactly, by the subset array itself
        # (the stores hand the same array for the same filter until the index changes)
        self._gathered: OrderedDict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = \
            OrderedDict()

    @classmethod
    def empty(cls, dimension: int, kind: str = "flat") -> VectorIndex:
        if kind == "hnsw":
            inner = faiss.IndexHNSWFlat(dimension, HNSW_NEIGHBOURS, faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
            inner.hnsw.efSearch = HNSW_EF_SEARCH
        else:
            inner = faiss.IndexFlatIP(dimension)
        return cls(faiss.IndexIDMap2(inner), kind)

    @property
    def dimension(self) -> int:
        return self.index.d

    def __len__(self) -> int:
        return self.index.ntotal

    @property
    def can_remove(self) -> bool:
        return self.kind == "flat"

    def ids(self) -> np.ndarray:
        """The ids held, in insertion order."""
        return faiss.vector_to_array(self.index.id_map).astype(np.int64)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids):
            self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32),
                                    np.ascontiguousarray(ids, dtype=np.int64))
            self._rows = None
            self._gathered.clear()

    def remove(self, ids: np.ndarray) -> None:
        if not len(ids):
            return
        if not self.can_remove:
            raise IndexerError("An HNSW index cannot delete vectors; rebuild it instead.")
        self.index.remove_ids(np.ascontiguousarray(ids, dtype=np.int64))
        self._rows = None
        self._gathered.clear()

    def _storage(self) -> np.ndarray:
        """The stored vectors `(len, dimension)`, a view of FAISS's own memory (no copy), in
        the order of `ids()`."""
        inner = faiss.downcast_index(self.index.index)
        flat = faiss.downcast_index(inner.storage) if self.kind == "hnsw" else inner
        n = len(self)
        return faiss.rev_swig_ptr(flat.get_xb(), n * self.dimension).reshape(n, self.dimension)

    def vectors_of(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The stored vectors of those `ids` that are held: `(found ids, vectors)`."""
        if self._rows is None:
            held = self.ids()
            order = np.argsort(held, kind="stable")
            self._rows = (held[order], order)
        sorted_ids, rows = self._rows
        ids = np.asarray(ids, dtype=np.int64)
        at = np.searchsorted(sorted_ids, ids)
        found = at < len(sorted_ids)
        found[found] = sorted_ids[at[found]] == ids[found]
        return ids[found], self._storage()[rows[at[found]]]

    def _subset_vectors(self, subset: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`vectors_of(subset)`, kept for the last `GATHERED_SUBSETS` subset arrays."""
        kept = self._gathered.get(id(subset))
        if kept is not None and kept[0] is subset:
            self._gathered.move_to_end(id(subset))
            return kept[1], kept[2]
        ids, vectors = self.vectors_of(subset)
        self._gathered[id(subset)] = (subset, ids, vectors)
        while len(self._gathered) > GATHERED_SUBSETS:
            self._gathered.popitem(last=False)
        return ids, vectors

    def search(self, queries: np.ndarray, k: int, subset: np.ndarray | None = None,
               exact: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Top-k inner products: `scores, ids`, each `(len(queries), k)`; id -1 where none.

        With `subset` (passage ids), only those are ranked: exactly, by one matrix product
        over their vectors, when there are at most `EXACT_SUBSET_MAX` of them (so a filter
        matching 0.1 % of the index still returns k hits, in exact order); through FAISS
        with an id selector otherwise (exact for flat, approximate for HNSW, whose graph
        search is then topped up exactly if it found fewer than k). `exact` ranks exactly
        whatever the index kind.
        """
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dimension)
        if exact and self.kind != "flat" or subset is not None and len(subset) <= \
                EXACT_SUBSET_MAX:
            return self._exact(queries, k, self.ids() if subset is None else subset)
        k = max(1, min(k, len(self) if subset is None else len(subset)))
        if not len(self):
            return _nothing(len(queries), k)
        if subset is None:
            return self.index.search(queries, k)
        selector = faiss.IDSelectorBatch(np.ascontiguousarray(subset, dtype=np.int64))
        params = (faiss.SearchParametersHNSW(sel=selector, efSearch=HNSW_EF_SEARCH)
                  if self.kind == "hnsw" else faiss.SearchParameters(sel=selector))
        scores, ids = self.index.search(queries, k, params=params)
        if (ids < 0).any():  # the graph search ran dry: rank the subset exactly instead
            return self._exact(queries, k, subset)
        return scores, ids

    def _exact(self, queries: np.ndarray, k: int, subset: np.ndarray):
        ids, vectors = self._subset_vectors(subset)
        if not len(ids):
            return _nothing(len(queries), max(1, k))
        k = min(k, len(ids))
        with _blas_threads(len(queries)):
            scores = queries @ vectors.T  # (queries, subset)
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < len(ids) else \
            np.tile(np.arange(len(ids)), (len(queries), 1))
        top_scores = np.take_along_axis(scores, top, axis=1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
        return (np.take_along_axis(top_scores, order, axis=1),
                ids[np.take_along_axis(top, order, axis=1)])

    def save(self, path: Path, generation: int) -> None:
        """Write atomically (temp file + rename), recording the store generation reflected."""
        data = faiss.serialize_index(self.index)
        header = json.dumps({"kind": self.kind, "generation": generation,
                             "count": len(self), "dimension": self.dimension,
                             "sha256": hashlib.sha256(data).hexdigest()}).encode()
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".vectors-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(MAGIC + header + b"\n")
                handle.write(data.tobytes())
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: Path) -> tuple[VectorIndex, int]:
        """Read a saved index; returns it and the store generation it reflects.

        Raises:
            IndexCorruptError: the file is damaged (the caller rebuilds it from SQLite).
        """
        try:
            raw = path.read_bytes()
            if not raw.startswith(MAGIC):
                raise ValueError("bad magic")
            end = raw.index(b"\n", len(MAGIC))
            header = _header(json.loads(raw[len(MAGIC):end]))
            data = np.frombuffer(raw[end + 1:], dtype=np.uint8)
            if hashlib.sha256(data).hexdigest() != header["sha256"]:
                raise ValueError("the vector data does not match its checksum")
            index = faiss.deserialize_index(data)
            if index.ntotal != header["count"] or index.d != header["dimension"]:
                raise ValueError("the vector data does not match its header")
        except (OSError, ValueError, RuntimeError) as exc:
            raise IndexCorruptError(f"Vector file {path} is damaged ({exc}).") from exc
        vectors = cls(index, header["kind"])
        if header["kind"] == "hnsw":
            faiss.downcast_index(index.index).hnsw.efSearch = HNSW_EF_SEARCH
        return vectors, header["generation"]


def _header(value) -> dict:
    """The header as this module writes it, or ValueError."""
    fields = {"kind": str, "generation": int, "count": int, "dimension": int, "sha256": str}
    if not isinstance(value, dict) or any(not isinstance(value.get(k), t)
                                          for k, t in fields.items()):
        raise ValueError("the header is not a bertsearch vector header")
    if value["kind"] not in KINDS:
        raise ValueError(f"unknown vector index kind {value['kind']!r}")
    return value


def _blas_threads(queries: int):
    """BLAS on one thread for a few queries: a product that small gains nothing from
    threads, and its threads would wait on cores the encoder's threads are spinning on
    (hybrid search at 100,000 passages: 23.7 -> 11.5 ms p50, bench/RESULTS.md)."""
    global _BLAS
    if queries > 4:
        return contextlib.nullcontext()
    if _BLAS is None:
        from threadpoolctl import ThreadpoolController

        _BLAS = ThreadpoolController()
    return _BLAS.limit(limits=1, user_api="blas")


_BLAS = None


def _nothing(queries: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    return np.full((queries, k), -np.inf, np.float32), np.full((queries, k), -1, np.int64)
