"""Errors raised by the indexer; all derive from `BertsearchError` (see embedder.errors)."""

from embedder.errors import BertsearchError, EncoderMismatchError


class IndexerError(BertsearchError):
    """An error while building, opening or searching an index."""


class FolderNotFoundError(IndexerError):
    """The folder to index does not exist or is not a folder."""


class IndexNotFoundError(IndexerError):
    """There is no index at the given path, or it holds no passages yet."""


class IndexMismatchError(IndexerError, EncoderMismatchError):
    """The index was built with another model or other settings than those asked for."""


class IndexCorruptError(IndexerError):
    """The index files cannot be read; rebuilding from the documents fixes it."""


class IndexBusyError(IndexerError):
    """Another writer holds the index's writer lock."""


class IndexReadOnlyError(IndexerError):
    """A write was asked of an index opened (or only openable) for reading."""


class IndexUnavailableError(IndexerError):
    """The index's database server cannot be reached, or it dropped the connection."""
