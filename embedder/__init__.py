"""bertsearch's encoder: BERT inputs, embeddings, pretraining, fine-tuning and coherence.

Importable on its own, e.g. in a RAG pipeline:

    from embedder import Encoder
    encoder = Encoder.load()            # the packaged all-MiniLM-L6-v2, offline
    vectors = encoder.encode(["a passage", "another"])   # float32 (2, 384), L2-normalised
"""

from .encoder import Encoded, Encoder, TruncationWarning
from .errors import (
    BertsearchError,
    EmbedderError,
    InvalidInputError,
    ModelLoadError,
    ModelNotFoundError,
)
from .inputs import PairInputs, build_pair_inputs, pack_inputs, truncate_longest_first
from .models import DEFAULT_MODEL, resolve_model_path

__all__ = [
    "BertsearchError", "DEFAULT_MODEL", "EmbedderError", "Encoded", "Encoder",
    "InvalidInputError", "ModelLoadError", "ModelNotFoundError", "PairInputs",
    "TruncationWarning", "build_pair_inputs", "pack_inputs", "resolve_model_path",
    "truncate_longest_first",
]
