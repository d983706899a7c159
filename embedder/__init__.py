"""bertsearch's encoder: BERT inputs, embeddings, coherence scoring and classifiers;
`embedder.training` holds everything that trains.

Importable on its own, e.g. in a RAG pipeline:

    from embedder import Encoder
    encoder = Encoder.load()            # the packaged all-MiniLM-L6-v2, offline
    vectors = encoder.encode(["a passage", "another"])   # float32 (2, 384), L2-normalised

Names are imported on first use, so a command that needs only the errors or the limits
(`bertsearch --help`, a query sent to a server) never loads numpy or torch.
"""

import importlib

_EXPORTS = {
    "Encoded": "encoder", "Encoder": "encoder", "TruncationWarning": "encoder",
    "BertsearchError": "errors", "EmbedderError": "errors", "EncoderMismatchError": "errors",
    "InvalidInputError": "errors", "ModelLoadError": "errors", "ModelNotFoundError": "errors",
    "PairInputs": "inputs", "build_pair_inputs": "inputs", "pack_inputs": "inputs",
    "truncate_longest_first": "inputs", "DEFAULT_MODEL": "models",
    "resolve_model_path": "models",
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
