"""bertsearch's indexer: documents -> passages, vectors and keywords in a store; search.

    from embedder import Encoder
    from indexer import build_index, Index

    report = build_index("docs/", "my-index", Encoder.load())
    with Index.open("my-index") as index:
        hits = index.search("how is BERT pretrained?", k=5)

Names are imported on first use, so `import indexer.limits` (the CLI does, at start) does not
pay for FAISS and SQLite.
"""

import importlib

_EXPORTS = {
    "SyncReport": "build", "build_index": "build", "encoder_for_index": "build",
    "Chunk": "chunking", "ChunkSettings": "chunking", "chunk_text": "chunking",
    "FolderNotFoundError": "errors", "IndexCorruptError": "errors", "IndexerError": "errors",
    "IndexMismatchError": "errors", "IndexNotFoundError": "errors",
    "IndexBusyError": "errors", "IndexReadOnlyError": "errors",
    "IndexUnavailableError": "errors", "FilterError": "filters",
    "Document": "index", "Hit": "index", "Index": "index", "UpsertResult": "index",
    "IndexSettings": "settings",
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
