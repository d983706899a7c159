"""bertsearch's indexer: a document folder -> passages in SQLite + vectors in FAISS.

    from embedder import Encoder
    from indexer import build_index, Index

    report = build_index("docs/", "my-index", Encoder.load())
    hits = Index.open("my-index").search("how is BERT pretrained?", k=5)

Names are imported on first use, so `import indexer.limits` (the CLI does, at start) does not
pay for FAISS and SQLite.
"""

import importlib

_EXPORTS = {
    "SyncReport": "build", "build_index": "build", "encoder_for_index": "build",
    "Chunk": "chunking", "ChunkSettings": "chunking", "chunk_text": "chunking",
    "FolderNotFoundError": "errors", "IndexCorruptError": "errors", "IndexerError": "errors",
    "IndexMismatchError": "errors", "IndexNotFoundError": "errors",
    "Hit": "search", "Index": "search", "IndexSettings": "settings",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
