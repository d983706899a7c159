"""The FAISS side of an index: a derived, rebuildable copy of the passage vectors.

The only module that imports faiss. Its API speaks `scores, ids`, where an id is the SQLite
rowid of a passage. `flat` is exact inner-product search; `hnsw` is an approximate graph
index for large collections (it cannot delete, so removals rebuild it).

On disk it is one file: a one-line JSON header (format, kind, the store generation the
vectors reflect) followed by the serialised FAISS index, replaced atomically.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import faiss
import numpy as np

from .errors import IndexCorruptError, IndexerError

VECTORS_NAME = "vectors.faiss"
MAGIC = b"bertsearch-vectors 1\n"
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


class VectorIndex:
    """Passage vectors under their passage ids, searchable by inner product."""

    def __init__(self, index, kind: str):
        self.index = index
        self.kind = kind

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

    def remove(self, ids: np.ndarray) -> None:
        if not len(ids):
            return
        if not self.can_remove:
            raise IndexerError("An HNSW index cannot delete vectors; rebuild it instead.")
        self.index.remove_ids(np.ascontiguousarray(ids, dtype=np.int64))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k inner products: `scores, ids`, each `(len(queries), k)`; id -1 where none."""
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dimension)
        k = max(1, min(k, len(self))) if len(self) else 1
        if not len(self):
            n = len(queries)
            return np.full((n, k), -np.inf, np.float32), np.full((n, k), -1, np.int64)
        return self.index.search(queries, k)

    def save(self, path: Path, generation: int) -> None:
        """Write atomically (temp file + rename), recording the store generation reflected."""
        header = json.dumps({"kind": self.kind, "generation": generation,
                             "count": len(self), "dimension": self.dimension}).encode()
        data = faiss.serialize_index(self.index)
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
            header = json.loads(raw[len(MAGIC):end])
            index = faiss.deserialize_index(np.frombuffer(raw[end + 1:], dtype=np.uint8))
        except (OSError, ValueError, RuntimeError) as exc:
            raise IndexCorruptError(f"Vector file {path} is unreadable ({exc}).") from exc
        vectors = cls(index, header["kind"])
        if header["kind"] == "hnsw":
            faiss.downcast_index(index.index).hnsw.efSearch = HNSW_EF_SEARCH
        return vectors, int(header["generation"])
