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
    # OpenAI clients send their own default model names: by default any name means the
    # served model; strict, only its names (and these aliases) are accepted
    strict_model_names: bool = False
    model_aliases: tuple[str, ...] = ()
    # request limits (per-field limits are in server/schemas.py)
    max_body_bytes: int = 8 * 1024 * 1024
    body_timeout_s: float = 30.0  # a body that takes longer to arrive is refused (408)
    header_timeout_s: float = 10.0  # a connection whose headers take longer is closed
    # dynamic batching
    batch_wait_ms: float = 5.0  # how long the first request of a batch waits for company
    batch_max_texts: int = 128
    batch_max_tokens: int = 16_384  # estimated tokens per encoder call (it plans the passes)
    max_queued_texts: int = 4_096  # beyond this, requests are refused with 503
