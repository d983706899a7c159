"""Dynamic batching: concurrent requests share forward passes of the encoder.

Requests put their texts on a queue and await a future. One worker collects texts from
requests that arrive while its last batch ran, or within a short window after it was idle
(up to a text and token budget), encodes them in one `encode_detailed` call on a dedicated
thread — so the event loop never blocks — and hands each request its rows. The window opens
only while requests come together (the last batch served several, or more were waiting):
a lone client's requests go straight through instead of each waiting for company. Requests
with different pooling/normalisation go in different batches. A full queue refuses new work
(`QueueFullError`) instead of growing without bound.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import time
from dataclasses import dataclass

import numpy as np

from embedder.errors import BertsearchError

from .metrics import BATCH_BUCKETS, Histogram


class QueueFullError(BertsearchError):
    """Too much work is already waiting; the client should retry shortly."""


@dataclass
class Embedded:
    """One request's share of a batch."""

    embeddings: np.ndarray
    token_counts: list[int]
    truncated: list[int]


@dataclass
class _Job:
    texts: list[str]
    key: tuple  # (pooling, normalize)
    future: asyncio.Future
    tokens: int


class EmbeddingBatcher:
    """Batches concurrent `embed` calls into shared encoder calls."""

    def __init__(self, encoder, *, wait_ms: float = 5.0, max_texts: int = 128,
                 max_tokens: int = 16_384, max_queued_texts: int = 4_096):
        self.encoder = encoder
        self.wait = wait_ms / 1000
        self.max_texts = max_texts
        self.max_tokens = max_tokens
        self.max_queued_texts = max_queued_texts
        self.pending: collections.deque[_Job] = collections.deque()
        self.queued_texts = 0
        self.wakeup: asyncio.Event | None = None
        self.worker: asyncio.Task | None = None
        self.thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="encoder")
        self.batches = 0  # forward calls made, for /stats and tests
        self.batch_sizes = Histogram(BATCH_BUCKETS)  # texts per call, for /metrics
        self.busy_seconds = 0.0  # time spent embedding, for /metrics
        self.abandoned_texts = 0  # dropped because their request was cancelled
        self.together = True  # requests came together lately: worth waiting for company

    def start(self) -> None:
        self.wakeup = asyncio.Event()
        self.worker = asyncio.get_running_loop().create_task(self._run())

    async def stop(self, drain_seconds: float = 30.0) -> None:
        """Finish the work already queued (up to `drain_seconds`), then stop."""
        deadline = time.monotonic() + drain_seconds
        while self.pending and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if self.worker:
            self.worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.worker
        for job in self.pending:
            if not job.future.done():
                job.future.set_exception(QueueFullError("The server is shutting down."))
        self.thread.shutdown(wait=False, cancel_futures=True)

    async def run(self, fn, *args):
        """Run `fn(*args)` on the encoder's thread, between batches: writes that embed
        (document upserts) must not use the tokenizer while a batch does."""
        return await asyncio.get_running_loop().run_in_executor(self.thread, fn, *args)

    async def embed(self, texts: list[str], pooling: str | None = None,
                    normalize: bool | None = None) -> Embedded:
        """Embed `texts` (in order) as part of whatever batch is forming."""
        if self.queued_texts + len(texts) > self.max_queued_texts:
            raise QueueFullError(
                f"The server has {self.queued_texts} texts waiting to be embedded; retry in "
                f"a moment or send fewer texts per request.")
        future = asyncio.get_running_loop().create_future()
        self.pending.append(_Job(list(texts), (pooling, normalize), future,
                                 sum(self._estimate_tokens(t) for t in texts)))
        self.queued_texts += len(texts)
        self.wakeup.set()
        return await future

    def _estimate_tokens(self, text: str) -> int:
        # ~4 characters a WordPiece token in English; the model truncates at max_seq_length
        return min(len(text) // 4 + 2, self.encoder.max_seq_length)

    async def _run(self) -> None:
        while True:
            await self.wakeup.wait()
            self.wakeup.clear()
            if self.together:  # idle until now: let concurrent requests join
                await asyncio.sleep(self.wait)
            while True:
                # what arrived while the last batch ran has waited already: no new window
                self._drop_abandoned()
                if not self.pending:
                    break
                jobs = self._take_batch()
                self.together = len(jobs) > 1 or bool(self.pending)
                await self._encode(jobs)

    def _drop_abandoned(self) -> None:
        """Requests whose client left were cancelled: their texts are not embedded."""
        kept = collections.deque()
        for job in self.pending:
            if job.future.done():
                self.queued_texts -= len(job.texts)
                self.abandoned_texts += len(job.texts)
            else:
                kept.append(job)
        self.pending = kept

    def _take_batch(self) -> list[_Job]:
        first = self.pending.popleft()
        jobs, texts, tokens, kept = [first], len(first.texts), first.tokens, []
        while self.pending:
            job = self.pending.popleft()
            fits = (texts + len(job.texts) <= self.max_texts and
                    tokens + job.tokens <= self.max_tokens)
            if job.key == first.key and fits:
                jobs.append(job)
                texts += len(job.texts)
                tokens += job.tokens
            else:
                kept.append(job)
        self.pending.extendleft(reversed(kept))
        return jobs

    async def _encode(self, jobs: list[_Job]) -> None:
        texts = [t for job in jobs for t in job.texts]
        pooling, normalize = jobs[0].key
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            result = await loop.run_in_executor(
                self.thread, lambda: self.encoder.encode_detailed(
                    texts, pooling=pooling, normalize=normalize))
        except Exception as exc:  # hand the error to every waiting request
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        finally:
            self.queued_texts -= len(texts)
            self.batches += 1
            self.batch_sizes.observe(len(texts))
            self.busy_seconds += time.perf_counter() - started
        start = 0
        for job in jobs:
            end = start + len(job.texts)
            share = Embedded(result.embeddings[start:end], result.token_counts[start:end],
                             [i - start for i in result.truncated if start <= i < end])
            if not job.future.done():
                job.future.set_result(share)
            start = end
