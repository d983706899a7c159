"""What the app holds while it runs: the encoder, its batcher, the index and the scorers.

Created by the lifespan (never at import time) and reached by routes through a dependency.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from embedder.errors import BertsearchError
from indexer import Index, IndexCorruptError, IndexNotFoundError

from .batching import EmbeddingBatcher
from .settings import ServerSettings

log = logging.getLogger("bertsearch.server")


class FeatureUnavailableError(BertsearchError):
    """A route whose model is not configured or not available in this build."""


class DocumentNotFoundError(BertsearchError):
    """No document with the id asked for."""


class Services:
    """The loaded parts of the server."""

    def __init__(self, settings: ServerSettings, encoder, index: Index | None):
        self.settings = settings
        self.encoder = encoder
        self.index = index
        self.batcher = EmbeddingBatcher(
            encoder, wait_ms=settings.batch_wait_ms, max_texts=settings.batch_max_texts,
            max_tokens=settings.batch_max_tokens, max_queued_texts=settings.max_queued_texts)
        self._lock = threading.Lock()
        self._coherence = None
        self._classifier = None

    @classmethod
    def load(cls, settings: ServerSettings, encoder=None, index: Index | None = None):
        """Open the index and load the encoder `embedder.resolver`'s rule gives: the one
        asked for, else the index's own, else the default."""
        from embedder.resolver import resolve_encoder
        from indexer import encoder_for_index

        problem = None
        if index is None and settings.index_dir and index_exists(settings.index_dir):
            try:
                if encoder is None:
                    encoder = encoder_for_index(settings.index_dir, settings.model,
                                                settings.backend)
                index = Index.open(settings.index_dir, encoder=encoder)
            except IndexCorruptError as exc:  # served as 503 and a degraded /health
                problem = str(exc)
        if encoder is None:
            encoder = (index.encoder if index is not None else
                       resolve_encoder(settings.model, settings.backend))
        prepare_fast_queries(encoder)
        services = cls(settings, encoder, index)
        services.index_problem = problem
        return services

    def require_index(self) -> Index:
        """The index, opened now if it appeared since start-up."""
        if self.index is None:
            with self._lock:
                if self.index is None:
                    if not self.settings.index_dir:
                        raise IndexNotFoundError(
                            "This server has no index; start it with --index DIR.")
                    self.index = Index.open(self.settings.index_dir, encoder=self.encoder)
        return self.index

    def writable_index(self) -> Index:
        """The index for document writes: created, with this server's encoder, if there is
        none yet at the configured location."""
        if self.index is None:
            with self._lock:
                if self.index is None:
                    if not self.settings.index_dir:
                        raise IndexNotFoundError(
                            "This server has no index; start it with --index DIR.")
                    self.index = Index.open(self.settings.index_dir, encoder=self.encoder,
                                            create=True)
        return self.index

    index_problem: str | None = None  # why the configured index cannot be opened

    def index_status(self) -> str | None:
        """None when the index (if one is configured) answers; else why it does not: not
        there yet, damaged, ..."""
        if self.index is None and self.settings.index_dir:
            try:
                self.require_index()
            except BertsearchError as exc:
                self.index_problem = str(exc)
                return self.index_problem
        damage = self.index.store.health() if self.index is not None else None
        if damage:
            return (f"The index is damaged ({damage}); run `bertsearch check --index "
                    f"{self.settings.index_dir} --repair`.")
        return None

    def coherence(self):
        """The coherence scorer, loaded on first use (search alone never pays for it): the
        one named in the settings, else the index's adapted model, else the default."""
        with self._lock:
            if self._coherence is None:
                from indexer.coherence import coherence_scorer_for

                self._coherence = coherence_scorer_for(self.settings.index_dir,
                                                       self.settings.coherence_model)
            return self._coherence

    def classifier(self):
        """The text classifier given with --classifier, loaded on first use."""
        with self._lock:
            if self._classifier is None:
                if not self.settings.classifier:
                    raise FeatureUnavailableError(
                        "No classifier is loaded; start the server with --classifier DIR.")
                from embedder.classifier import Classifier

                self._classifier = Classifier.load(self.settings.classifier)
            return self._classifier

    def warm_in_background(self) -> None:
        """Bring the index's derived copies (vectors, keywords) up to date on a thread of
        their own, so the server answers at once and the first searches do not build
        them (they wait for the build instead of repeating it)."""
        index = self.index
        if index is None:
            return

        def warm():
            try:
                index.warm()
                advice = index.stats().get("hnsw", {}).get("advice")
            except BertsearchError as exc:  # damage: /health and the searches say so
                log.warning("Could not prepare the index: %s", exc)
                return
            if advice:  # e.g. a database whose shared buffers cannot hold the graph
                log.warning("%s", advice)

        threading.Thread(target=warm, name="bertsearch-warm", daemon=True).start()

    def close(self) -> None:
        if self.index is not None:
            self.index.close()


def prepare_fast_queries(encoder) -> None:
    """Lone queries run on ONNX Runtime fp32 (same vectors as torch, ~2x faster); its
    export is built once per model, on the first start, and cached."""
    from embedder.backends import onnx_cached

    prepare = getattr(encoder, "fast_small_calls", None)
    if prepare is None or encoder.backend_name != "torch":
        return
    if not onnx_cached("onnx", encoder.fingerprint):
        log.info("Building the fast path for single queries (an ONNX export of the model, "
                 "once; cached).")
    prepare(export=True)


def index_exists(location: str) -> bool:
    """Whether an index (possibly still empty) is at `location`. A database that cannot be
    reached now counts as none: the server starts, and /health says why."""
    from indexer import IndexerError
    from indexer.build import recorded_settings
    from indexer.store import is_database_url

    if not is_database_url(location):
        return (Path(location).expanduser() / "passages.db").is_file()
    try:
        return recorded_settings(location) is not None
    except IndexerError:
        return False
