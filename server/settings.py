"""Server configuration: one dataclass, filled by the CLI (or by code that embeds the app)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServerSettings:
    """Everything `create_app` needs; nothing is read from the environment at import time."""

    index_dir: str | None = None  # None: embeddings only; /search answers 503
    model: str | None = None  # None: the index's own model, else the default
    backend: str | None = None  # None: the index's own backend, else the default
    api_key: str | None = None  # every route but /health then needs "Bearer <key>"
    coherence_model: str | None = None  # None: the packaged default coherence model
    classifier: str | None = None  # a `bertsearch finetune` output folder for /classify
    # request limits
    max_inputs: int = 256  # texts per request
    max_input_chars: int = 20_000  # characters per text
    max_document_chars: int = 1_000_000  # PUT /documents text
    max_body_bytes: int = 8 * 1024 * 1024
    # dynamic batching
    batch_wait_ms: float = 5.0  # how long the first request of a batch waits for company
    batch_max_texts: int = 128
    batch_max_tokens: int = 16_384  # estimated tokens per encoder call (it plans the passes)
    max_queued_texts: int = 4_096  # beyond this, requests are refused with 503
