"""bertsearch's indexer: a document folder -> passages in SQLite + vectors in FAISS.

    from embedder import Encoder
    from indexer import build_index, Index

    report = build_index("docs/", "my-index", Encoder.load())
    hits = Index.open("my-index").search("how is BERT pretrained?", k=5)
"""

from .build import SyncReport, build_index, encoder_for_index
from .chunking import Chunk, ChunkSettings, chunk_text
from .errors import (
    FolderNotFoundError,
    IndexCorruptError,
    IndexerError,
    IndexMismatchError,
    IndexNotFoundError,
)
from .search import Hit, Index
from .settings import IndexSettings

__all__ = [
    "Chunk", "ChunkSettings", "FolderNotFoundError", "Hit", "Index", "IndexCorruptError",
    "IndexMismatchError", "IndexNotFoundError", "IndexSettings", "IndexerError", "SyncReport",
    "build_index", "chunk_text", "encoder_for_index",
]
