"""Errors raised by the embedder.

Every error bertsearch raises on bad input derives from `BertsearchError`, so the CLI and
the server can turn them into one clear line or a 4xx response in a single place. Messages
are whole sentences that say how to fix the problem.
"""


class BertsearchError(Exception):
    """Base class of every error bertsearch raises for bad input or a bad environment."""


class EmbedderError(BertsearchError):
    """An error in the encoder, its inputs or its models."""


class ModelNotFoundError(EmbedderError):
    """The model name is neither a known alias nor a local model folder."""


class ModelLoadError(EmbedderError):
    """A model folder exists but cannot be loaded (missing or broken files)."""


class InvalidInputError(EmbedderError, ValueError):
    """An argument or input text is not acceptable (wrong type, empty, unknown option)."""


class EncoderMismatchError(EmbedderError):
    """The encoder asked for would make vectors other than those an index holds."""
