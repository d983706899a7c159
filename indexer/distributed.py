"""Embedding on a Ray cluster: `build_index(..., ray="local" | "auto" | ADDRESS)`.

Everything but the embedding stays as it is: the driver walks the folder, reads and chunks
the documents, decides what changed, and is the only writer, committing through the store
in the same crash-safe transactions as an in-process run. Only the embedding is handed to
Ray Data: each batch of passages the sync commits (a window of `batch_passages`, large by
default with Ray, so the actors' start-up is paid rarely) becomes a dataset whose
`map_batches` runs on a pool of actors, each loading the encoder once — the same model,
backend and pooling the index records, on a CPU or a GPU. Vectors come back in order and are
written by the driver; a crashed run keeps every window written, and a re-run carries on.

An actor that dies is restarted and its batch retried (Ray Data's own fault tolerance); a
job that fails for good stops the run with a clear message, and Ctrl-C stops it. Ray is an
optional extra (`bertsearch[ray]`) imported only here.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from embedder.frameworks import require

from .errors import IndexerError

ACTOR_BATCH = 64  # texts per actor call
DEFAULT_WINDOW = 16_384  # passages per Ray job: actors start once per window
FAIL_AFTER_ENV = "BERTSEARCH_RAY_FAIL_AFTER"  # test hook: an actor dies after N batches, once


class RayError(IndexerError):
    """The Ray cluster could not be reached, or the embedding job failed for good."""


@dataclass(frozen=True)
class RaySettings:
    """Where and how to embed on Ray."""

    address: str = "local"  # "local" starts Ray here; "auto" or an address joins a cluster
    actors: int = 1
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0


class EmbedActor:
    """A Ray Data actor: loads the encoder once, embeds batches of texts."""

    def __init__(self, model: str, backend: str, pooling: str, max_seq_length: int,
                 threads: int, device: str):
        import torch

        from embedder.encoder import Encoder

        torch.set_num_threads(max(1, threads))
        self.encoder = Encoder.load(model, backend=backend, pooling=pooling,
                                    max_seq_length=max_seq_length, device=device)
        self.batches = 0
        hook = os.environ.get(FAIL_AFTER_ENV)
        self.fail_after = int(hook) if hook else None

    def __call__(self, batch: dict) -> dict:
        self.batches += 1
        if self.fail_after is not None and self.batches > self.fail_after:
            marker = os.environ.get(FAIL_AFTER_ENV + "_MARKER")
            if marker and not os.path.exists(marker):  # die once, as a crash would
                open(marker, "w").close()
                os._exit(1)
        vectors = self.encoder.encode([str(t) for t in batch["text"]])
        return {"i": batch["i"], "vector": vectors}


class RayEncoder:
    """The indexer's encoder interface, embedding on Ray: tokenisation and chunking use the
    local encoder (the driver cuts passages); `encode` runs a Ray Data job."""

    def __init__(self, local, settings: RaySettings):
        import logging

        self.local = local
        self.settings = settings
        self.ray = connect(settings.address, settings.actors, settings.cpus_per_actor)
        data = require("ray.data", "ray")
        data.DataContext.get_current().enable_progress_bars = False  # ours shows progress
        for name in ("ray.data", "ray"):
            logging.getLogger(name).setLevel(logging.ERROR)

    def __getattr__(self, name):  # name, source, pooling, dimension, token_spans, ...
        return getattr(self.local, name)

    def encode(self, texts: Sequence[str], *, on_batch=None, **options) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.local.dimension), dtype=np.float32)
        data = require("ray.data", "ray")
        dataset = data.from_items([{"i": i, "text": t} for i, t in enumerate(texts)])
        settings, local = self.settings, self.local
        embedded = dataset.map_batches(
            EmbedActor, batch_size=ACTOR_BATCH,
            fn_constructor_kwargs={
                "model": local.source, "backend": local.backend_name,
                "pooling": local.pooling, "max_seq_length": local.max_seq_length,
                "threads": max(1, int(settings.cpus_per_actor)),
                "device": "cuda" if settings.gpus_per_actor else "cpu"},
            compute=data.ActorPoolStrategy(size=settings.actors),
            num_cpus=settings.cpus_per_actor, num_gpus=settings.gpus_per_actor or None)
        out = np.zeros((len(texts), local.dimension), dtype=np.float32)
        try:
            for batch in embedded.iter_batches(batch_size=None, batch_format="numpy"):
                out[batch["i"]] = np.stack(batch["vector"])
                if on_batch is not None:
                    on_batch(len(batch["i"]))
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # Ray's own errors: the job failed for good
            raise RayError(f"The Ray embedding job failed "
                           f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]}). "
                           f"What was written is kept; run the same command again to "
                           f"continue.") from None
        return out


def connect(address: str, actors: int, cpus_per_actor: float):
    """Join the cluster at `address` (`auto`, `ray://...`, `host:port`) or start a local Ray
    (`local`) with room for the actors; returns the `ray` module."""
    ray = require("ray", "ray")
    if ray.is_initialized():
        return ray
    options = {"include_dashboard": False, "log_to_driver": False,
               "logging_level": "ERROR", "configure_logging": True}
    try:
        if address == "local":
            cpus = max(os.cpu_count() or 1, int(actors * cpus_per_actor))
            ray.init(num_cpus=cpus, **options)
        else:
            ray.init(address=address, **options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise RayError(f"Cannot reach a Ray cluster at '{address}' ({exc}). Start one with "
                       f"`ray start --head`, or pass --ray local.") from None
    return ray


def shutdown_local(address: str) -> None:
    """Stop the Ray instance a `local` run started (a joined cluster keeps running)."""
    if address == "local":
        import ray

        if ray.is_initialized():
            ray.shutdown()
