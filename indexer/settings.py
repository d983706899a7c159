"""What an index records about how it was made, and the encoder interface it needs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Protocol

import numpy as np

from embedder.backends import DEFAULT_BACKEND
from embedder.resolver import EncoderRecord, same_vectors

from .chunking import ChunkSettings
from .errors import IndexMismatchError

FORMAT_VERSION = 1


class TextEncoder(Protocol):
    """The small part of `embedder.Encoder` the indexer uses."""

    name: str
    source: str
    pooling: str
    backend_name: str
    max_seq_length: int

    @property
    def dimension(self) -> int: ...

    @property
    def fingerprint(self) -> str: ...

    def encode(self, texts: Sequence[str], *, on_batch=None) -> np.ndarray: ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]: ...

    def token_spans(self, texts: Sequence[str]) -> list[list[tuple[int, int]]]: ...


@dataclass(frozen=True)
class IndexSettings:
    """The settings that made an index; vectors made otherwise must not be mixed in."""

    model: str  # the alias or folder the encoder was loaded from
    model_fingerprint: str
    dimension: int
    pooling: str
    max_seq_length: int
    chunk_tokens: int
    chunk_overlap: int
    index_type: str = "auto"
    backend: str = DEFAULT_BACKEND  # int8 vectors differ from fp32 ones: never mixed
    format_version: int = FORMAT_VERSION
    # what passages are embedded with (indexer.passages); indexes from before it was
    # recorded embedded their text alone. A change re-embeds, it is not a mismatch.
    context: str = "plain"

    # a change in any of these makes every stored vector or passage wrong (the backend
    # only across families: torch and ONNX fp32 give the same vectors)
    EMBEDDING_KEYS = ("model_fingerprint", "dimension", "pooling", "backend", "chunk_tokens",
                      "chunk_overlap", "format_version")

    @property
    def record(self) -> EncoderRecord:
        """The encoder these vectors came from, for `embedder.resolver`."""
        return EncoderRecord(self.model, self.backend, self.pooling, self.model_fingerprint,
                             self.dimension)

    @classmethod
    def of(cls, encoder: TextEncoder, chunk: ChunkSettings, index_type: str = "auto",
           context: str = "plain"):
        return cls(
            model=encoder.source, model_fingerprint=encoder.fingerprint,
            dimension=encoder.dimension,
            pooling=encoder.pooling, max_seq_length=encoder.max_seq_length,
            chunk_tokens=chunk.max_tokens, chunk_overlap=chunk.overlap_tokens,
            index_type=index_type, backend=encoder.backend_name, context=context,
        )

    @property
    def chunk(self) -> ChunkSettings:
        return ChunkSettings(self.chunk_tokens, self.chunk_overlap)

    @classmethod
    def from_dict(cls, values: dict) -> IndexSettings | None:
        names = {f.name for f in fields(cls)}
        if not names - {"index_type", "backend", "format_version", "context"} <= values.keys():
            return None  # a new, empty index
        return cls(**{k: v for k, v in values.items() if k in names})

    def to_dict(self) -> dict:
        return asdict(self)

    def check_compatible(self, wanted: IndexSettings, where: str) -> None:
        """Raise `IndexMismatchError` if vectors made with `wanted` would not fit this index."""
        diffs = [k for k in self.EMBEDDING_KEYS if getattr(self, k) != getattr(wanted, k)
                 and not (k == "backend" and same_vectors(self.backend, wanted.backend))]
        if not diffs:
            return
        if "model_fingerprint" in diffs or "dimension" in diffs:
            what = (f"was built with model '{self.model}' ({self.dimension} dimensions), not "
                    f"'{wanted.model}' ({wanted.dimension} dimensions)")
        else:
            what = "was built with other settings (" + ", ".join(
                f"{k} {getattr(self, k)} vs {getattr(wanted, k)}" for k in diffs) + ")"
        raise IndexMismatchError(
            f"Index {where} {what}. Pass --rebuild to re-embed everything, or use the "
            f"index's own settings.")
