"""Which encoder to load: one rule for the CLI, the indexer and the server.

A request names a model, a backend and a pooling, each optional. An index records the
encoder its vectors came from (`EncoderRecord`). The rule:

- Nothing recorded (no index, or a new one): what is asked for, else the defaults
  (`default` model, `DEFAULT_BACKEND`, the model's own pooling).
- An index's record: what is not asked for comes from the record, and what is asked for
  must give the same vectors — the same weights (by fingerprint), dimension, pooling and
  backend family — or it is refused with a one-line reason. torch and ONNX fp32 give the
  same vectors (to ~1e-6) and count as one family; int8 is its own. Only `replace=True`
  (re-embedding everything, `--rebuild`) lets a request differ from the record.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .backends import DEFAULT_BACKEND, check_backend
from .errors import EncoderMismatchError
from .models import DEFAULT_MODEL

# backends whose vectors are interchangeable share a family
BACKEND_FAMILY = {"torch": "fp32", "onnx": "fp32", "onnx-int8": "int8"}


@dataclass(frozen=True)
class EncoderRecord:
    """What an index records about the encoder that made its vectors."""

    model: str  # what `Encoder.load` takes: `default` or a folder
    backend: str
    pooling: str
    fingerprint: str
    dimension: int


def same_vectors(backend: str, other: str) -> bool:
    """Whether two backends give interchangeable vectors (torch and ONNX fp32 do)."""
    return BACKEND_FAMILY[check_backend(backend)] == BACKEND_FAMILY[check_backend(other)]


def resolve_encoder(model: str | os.PathLike | None = None, backend: str | None = None,
                    pooling: str | None = None, *, record: EncoderRecord | None = None,
                    replace: bool = False, where: str = "the index", **load_options):
    """Load the encoder a request and an index's record call for (see the module's rule).

    Args:
        model, backend, pooling: what was asked for; None takes the record's or the default.
        record: the index's encoder record, or None when there is no index yet.
        replace: the index is being rebuilt: the request may differ from the record.
        where: how to name the index in errors.
        load_options: passed to `Encoder.load` (`device`, `max_seq_length`).

    Raises:
        EncoderMismatchError: the request would make other vectors than the index holds.
        ModelNotFoundError, ModelLoadError: the model cannot be loaded.
    """
    from .encoder import Encoder

    if record is None or replace:
        same_model = record is not None and model in (None, record.model)
        return Encoder.load(
            model if model is not None else (record.model if record else DEFAULT_MODEL),
            backend=backend or (record.backend if record else DEFAULT_BACKEND),
            pooling=pooling or (record.pooling if same_model else None), **load_options)
    backend = backend or record.backend
    pooling = pooling or record.pooling
    if not same_vectors(backend, record.backend):
        raise EncoderMismatchError(
            f"{_cap(where)} was built with the {record.backend} backend; {backend} gives "
            f"other vectors. Use --backend {record.backend} (or leave it out), or rebuild "
            f"the index with --rebuild.")
    if pooling != record.pooling:
        raise EncoderMismatchError(
            f"{_cap(where)} was built with {record.pooling} pooling, not {pooling}. Leave "
            f"the pooling out, or rebuild the index with --rebuild.")
    encoder = Encoder.load(model if model is not None else record.model, backend=backend,
                           pooling=pooling, **load_options)
    check_encoder(encoder, record, where)
    return encoder


def check_encoder(encoder, record: EncoderRecord, where: str = "the index") -> None:
    """Refuse an already loaded encoder whose vectors would not match an index's.

    Raises:
        EncoderMismatchError: other weights, dimension, pooling or backend family.
    """
    if encoder.fingerprint != record.fingerprint or encoder.dimension != record.dimension:
        raise EncoderMismatchError(
            f"{_cap(where)} was built with model '{record.model}' ({record.dimension} "
            f"dimensions); the encoder given is '{encoder.name}' ({encoder.dimension} "
            f"dimensions). Use the index's own model, or rebuild the index with --rebuild.")
    if encoder.pooling != record.pooling or not same_vectors(encoder.backend_name,
                                                              record.backend):
        raise EncoderMismatchError(
            f"{_cap(where)} was built with {record.pooling} pooling on the {record.backend} "
            f"backend; the encoder given uses {encoder.pooling} pooling on "
            f"{encoder.backend_name}. Use the index's own settings, or rebuild the index "
            f"with --rebuild.")


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]
