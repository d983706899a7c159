"""Building and syncing an index from a document folder: `build_index`.

Run it again on the same folder and it only does what changed: new and edited files (by
content hash) are chunked and embedded, deleted ones are removed, files whose content is
the same but whose metadata moved on (mtime, front matter) only get their metadata updated,
and an unchanged folder costs a directory walk. Documents added through the documents API
are never touched by a folder sync. Work is committed a batch of documents at a time, so a
crash loses at most the batch in flight. One writer at a time: a second `build_index` on the
same index waits or says who holds it.

When the passage recipe (what passages are embedded with) differs from the one the index
records, everything is re-embedded, and the report says why.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from embedder.prefetch import prefetch

from .chunking import ChunkSettings
from .documents import (
    DEFAULT_MAX_FILE_BYTES,
    Extracted,
    FoundFile,
    SkippedFile,
    UnreadableFile,
    check_folder,
    content_hash,
    extract_document,
    read_bytes,
    walk_folder,
)
from .errors import IndexCorruptError, IndexerError, IndexMismatchError
from .passages import (
    DEFAULT_RECIPE,
    RECIPES,
    document_passages,
    embedding_inputs,
    iter_passages,
)
from .settings import IndexSettings, TextEncoder
from .store import (
    FIRST,
    FOLDER,
    LAST,
    MIDDLE,
    PARTIAL,
    WHOLE,
    NewDocument,
    NewPassage,
    Store,
    StoredDocument,
    open_store,
)
from .vectors import choose_kind


@dataclass
class SyncReport:
    """What a `build_index` run did."""

    folder: str
    index: str
    added: int = 0
    changed: int = 0
    removed: int = 0
    unchanged: int = 0
    metadata_updated: int = 0
    skipped: list[SkippedFile] = field(default_factory=list)
    passages_written: int = 0
    passages_removed: int = 0
    recipe_change: tuple[str, str] | None = None  # (old, new) when everything is re-embedded
    seconds: float = 0.0

    @property
    def embedded_anything(self) -> bool:
        return self.passages_written > 0

    def summary(self) -> str:
        return (f"{self.added} added, {self.changed} changed, {self.removed} removed, "
                f"{self.unchanged} unchanged, {len(self.skipped)} skipped; "
                f"{self.passages_written} passages written, {self.passages_removed} removed "
                f"in {self.seconds:.1f}s")


@dataclass
class Progress:
    """Where a sync stands, for progress bars and log lines. Only files that need reading
    count in the byte totals (an unchanged file costs a stat), so the rate and the time
    left follow the work that remains."""

    files_done: int = 0
    files_total: int = 0
    bytes_done: int = 0  # of the files to read, those embedded (or found unusable)
    bytes_total: int = 0
    passages: int = 0  # embedded so far in this run
    started: float = field(default_factory=time.monotonic)

    @property
    def passages_per_second(self) -> float:
        return self.passages / max(time.monotonic() - self.started, 1e-9)

    @property
    def seconds_left(self) -> float | None:
        """From the bytes embedded so far; None until there is a rate to go by."""
        elapsed = time.monotonic() - self.started
        if not self.bytes_done or elapsed < 1:
            return None
        return (self.bytes_total - self.bytes_done) * elapsed / self.bytes_done


ProgressCallback = Callable[[Progress], None]


def build_index(folder: str | Path, index: str | Path, encoder: TextEncoder, *,
                chunk: ChunkSettings = ChunkSettings(), context: str | None = None,
                include: list[str] | None = None, exclude: list[str] | None = None,
                rebuild: bool = False, index_type: str = "auto",
                max_file_bytes: int = DEFAULT_MAX_FILE_BYTES, batch_passages: int | None = None,
                wait: bool = False, progress: ProgressCallback | None = None,
                ray: str | None = None, ray_actors: int = 1,
                ray_gpus_per_actor: float = 0.0) -> SyncReport:
    """Index (or re-sync) every readable document below `folder` into `index`.

    Args:
        folder: the documents. Several folders can share one index; each syncs on its own.
        index: the index directory (created if missing).
        encoder: the model; it must be the one the index was built with unless `rebuild`.
        chunk: passage size and overlap, in tokens.
        context: what passages are embedded with: `headings` (their heading path) or
            `plain` (their text alone); see `indexer.passages`. None: what the index
            records (a sync never changes the recipe unasked), else `DEFAULT_RECIPE`.
        include, exclude: glob patterns choosing files (see `walk_folder`).
        rebuild: drop everything stored and re-embed with this encoder and these settings.
        index_type: `auto`, `flat` (exact) or `hnsw` (approximate).
        max_file_bytes: larger files are skipped and reported.
        batch_passages: passages embedded and committed together (default 256; with Ray,
            `distributed.DEFAULT_WINDOW`, so its actors start rarely).
        wait: wait for another writer of this index to finish instead of failing.
        progress: called with a `Progress` after each file and each encoder batch.
        ray: embed on Ray (`indexer.distributed`): `local` starts it here, `auto` or an
            address joins a cluster; None embeds in this process.
        ray_actors, ray_gpus_per_actor: the Ray actor pool (each actor loads the encoder
            once; one CPU each, and this share of a GPU when set).

    Raises:
        FolderNotFoundError: `folder` is not a folder.
        IndexMismatchError: the index was built with another model or chunk settings.
        IndexBusyError: another writer holds the index and `wait` is False.
    """
    started = time.perf_counter()
    root = check_folder(folder)
    chunk.validate(encoder.max_seq_length)
    choose_kind(index_type, 0)  # validates the name before any work
    if context is not None and context not in RECIPES:
        raise IndexerError(f"Passage context must be one of {', '.join(RECIPES)}; got "
                           f"{context!r}.")
    wanted = IndexSettings.of(encoder, chunk, index_type, context)
    if ray is not None:
        from .distributed import DEFAULT_WINDOW, RayEncoder, RaySettings, shutdown_local

        encoder = RayEncoder(encoder, RaySettings(ray, ray_actors, 1.0, ray_gpus_per_actor))
        batch_passages = batch_passages or DEFAULT_WINDOW
    try:
        return _build(root, index, encoder, wanted, rebuild, wait, batch_passages or 256,
                      include, exclude, max_file_bytes, progress, started)
    finally:
        if ray is not None:
            shutdown_local(ray)


def _build(root, index, encoder, wanted, rebuild, wait, batch_passages, include, exclude,
           max_file_bytes, progress, started) -> SyncReport:
    with open_store(index, create=True) as store, \
            store.writer_lock(f"bertsearch index {root}", wait=wait):
        report = SyncReport(str(root), store.location)
        damage = None if rebuild else store.quick_check()
        if damage:
            raise IndexCorruptError(
                f"The index at '{store.location}' is damaged ({damage}). Run `bertsearch "
                f"check --index {store.location} --repair` first, or pass --rebuild.")
        settings = _prepare_settings(store, wanted, rebuild, report)
        sync = _Sync(store, root, encoder, settings, report, batch_passages)
        sync.run(include, exclude, max_file_bytes, progress)
        if report.recipe_change:
            sync.reembed_api_documents()
        store.checkpoint()  # e.g. save the FAISS file
        report.seconds = time.perf_counter() - started
        record_sync(store, report)
    return report


MAX_RECORDED_SKIPS = 1000


def record_sync(store: Store, report: SyncReport) -> None:
    """Keep what the last sync of each folder did (counts, when, skipped files and why),
    for `Index.stats()` and the search page's overview."""
    syncs = dict(store.settings().get("syncs") or {})
    syncs[report.folder] = {
        "finished_at": time.time(), "seconds": round(report.seconds, 3),
        "added": report.added, "changed": report.changed, "removed": report.removed,
        "unchanged": report.unchanged, "passages_written": report.passages_written,
        "skipped": [{"path": f.relpath, "reason": f.reason}
                    for f in report.skipped[:MAX_RECORDED_SKIPS]],
        "skipped_total": len(report.skipped)}
    store.save_settings({"syncs": syncs})


def _prepare_settings(store: Store, wanted: IndexSettings, rebuild: bool,
                      report: SyncReport) -> IndexSettings:
    current = IndexSettings.from_dict(store.settings())
    if wanted.context is None:  # not asked: keep the index's recipe
        wanted = replace(wanted, context=current.context if current else DEFAULT_RECIPE)
    if rebuild or current is None:
        store.clear(wanted.to_dict())
        return wanted
    current.check_compatible(wanted, f"'{store.location}'")
    if current.context != wanted.context:
        report.recipe_change = (current.context, wanted.context)
    if current != wanted:  # index type or recipe: no stored vector of the others is wrong
        store.save_settings({"index_type": wanted.index_type, "context": wanted.context})
    return wanted


def encoder_for_index(index: str | Path, model: str | None = None,
                      backend: str | None = None, pooling: str | None = None, *,
                      rebuild: bool = False, **load_options):
    """The encoder to index or query `index` with, by `embedder.resolver`'s rule: what
    is asked for, else what the index records, else the defaults; a request that would make
    other vectors than the index holds is refused unless `rebuild`.

    Raises:
        IndexMismatchError: the request does not fit the index's vectors.
    """
    from embedder.errors import EncoderMismatchError
    from embedder.resolver import resolve_encoder

    recorded = recorded_settings(index)
    try:
        return resolve_encoder(model, backend, pooling,
                               record=recorded.record if recorded else None, replace=rebuild,
                               where=f"index '{index}'", **load_options)
    except EncoderMismatchError as exc:
        raise IndexMismatchError(str(exc)) from None


def recorded_settings(index: str | Path) -> IndexSettings | None:
    """The settings an existing index was built with, or None (no index, or empty)."""
    from .errors import IndexNotFoundError

    try:
        store = open_store(index, read_only=True)
    except IndexNotFoundError:
        return None
    with store:
        return IndexSettings.from_dict(store.settings())


def folder_metadata(root: Path, file: FoundFile, document: Extracted) -> dict:
    """A folder document's metadata: its front matter, then the built-ins (`path` within the
    folder, `ext`, `size`, `mtime`, `folder`, and `title` unless the front matter has one)."""
    metadata = dict(document.metadata)
    if document.title and not isinstance(metadata.get("title"), str):
        metadata["title"] = document.title
    metadata.update(path=file.relpath, ext=os.path.splitext(file.relpath)[1].lower(),
                    size=file.size, mtime=file.mtime, folder=str(root))
    return metadata


# A text longer than this is cut into passages as they are embedded and committed in parts
# (so memory stays flat in the file's size and a crash keeps the parts done); shorter ones
# are cut ahead, on the reading thread.
STREAM_FROM_CHARS = 200_000
PREFETCH_CHARS = 64_000_000  # the texts read ahead hold at most this much (one is always read)


@dataclass
class _Prepared:
    """What to do with one file, worked out off the writer's thread."""

    file: FoundFile
    stored: StoredDocument | None
    action: str  # "unchanged", "metadata", "skip" or "embed"
    skipped: SkippedFile | None = None
    digest: str = ""
    text: str = ""
    metadata: dict = field(default_factory=dict)
    passages: list[NewPassage] | Iterator[NewPassage] = field(default_factory=list)
    done: int = 0  # passages a crashed run already committed (a PARTIAL document)


class _Sync:
    """One folder's sync: walks, compares, embeds in batches, removes what is gone."""

    def __init__(self, store: Store, root: Path, encoder: TextEncoder, settings: IndexSettings,
                 report: SyncReport, batch_passages: int):
        self.store, self.root, self.encoder = store, root, encoder
        self.settings, self.report = settings, report
        self.batch_passages = batch_passages
        self.pending: list[tuple[NewDocument, bool]] = []  # (document or part, stored before)
        self.pending_passages = 0
        self.reembed = report.recipe_change is not None
        self.credited: dict[str, int] = {}  # bytes of a long document counted as done
        self.progress = Progress()
        self.on_progress: ProgressCallback = lambda state: None

    def run(self, include, exclude, max_file_bytes, progress) -> None:
        found, skipped = walk_folder(self.root, include, exclude, max_file_bytes)
        self.report.skipped.extend(skipped)
        known = self.store.folder_documents(str(self.root))
        present = {f.relpath for f in found}
        gone = [doc.id for path, doc in known.items() if path not in present]
        self.report.passages_removed += self.store.delete_documents(gone)
        self.report.removed += len(gone)
        self.progress = Progress(files_total=len(found), bytes_total=sum(
            f.size for f in found if not self._unchanged(f, known.get(f.relpath))))
        self.on_progress = progress or (lambda state: None)
        # Reading, hashing and chunking (tokenising) run ahead on a worker thread, so the
        # model never waits for them; all writes stay on this thread.
        prepared = prefetch((self._prepare(f, known.get(f.relpath)) for f in found), depth=64,
                            cost=lambda item: len(item.text), budget=PREFETCH_CHARS)
        for item in prepared:
            self._apply(item)
            if self.pending_passages >= self.batch_passages:
                self.flush()
            self.progress.files_done += 1
            self.on_progress(self.progress)
        self.flush()
        self.on_progress(self.progress)

    def _unchanged(self, file: FoundFile, stored: StoredDocument | None) -> bool:
        """Whether the file's stat says it is as stored (so it is not even read)."""
        return bool(stored) and not self.reembed and stored.size == file.size and \
            stored.mtime == file.mtime and not stored.content_hash.startswith(PARTIAL)

    def _prepare(self, file: FoundFile, stored: StoredDocument | None) -> _Prepared:
        if self._unchanged(file, stored):
            return _Prepared(file, stored, "unchanged")
        try:
            data = read_bytes(file.path)
            digest = content_hash(data)
            document = extract_document(data, file.path.suffix)
        except UnreadableFile as exc:
            return _Prepared(file, stored, "skip", SkippedFile(file.relpath, str(exc)))
        metadata = folder_metadata(self.root, file, document)
        if stored and not self.reembed and stored.content_hash == digest:
            return _Prepared(file, stored, "metadata", metadata=metadata)
        done = stored.passages if stored and not self.reembed and \
            stored.content_hash == PARTIAL + digest else 0
        passages = iter_passages(document, self.encoder, self.settings.chunk)
        if len(document.text) < STREAM_FROM_CHARS and not done:
            passages = list(passages)
        return _Prepared(file, stored, "embed", None, digest, document.text, metadata,
                         passages, done)

    def _apply(self, item: _Prepared) -> None:
        report, stored = self.report, item.stored
        if item.action == "unchanged":
            report.unchanged += 1
        elif item.action == "metadata":
            self.store.update_document(stored.id, item.file.size, item.file.mtime,
                                       item.metadata)
            report.unchanged += 1
            report.metadata_updated += stored.metadata != item.metadata
            self.progress.bytes_done += item.file.size
        elif item.action == "skip":
            report.skipped.append(item.skipped)
            self.progress.bytes_done += item.file.size
            if stored:  # it was indexed before; its old passages are stale now
                report.passages_removed += self.store.delete_documents([stored.id])
                report.removed += 1
        else:
            document = NewDocument(
                os.path.join(self.root, item.file.relpath), FOLDER, str(self.root),
                item.file.relpath, item.digest, item.file.size, item.file.mtime,
                item.metadata, item.text, [])
            if isinstance(item.passages, list):
                self._add(replace(document, passages=item.passages), stored is not None)
            else:
                self._stream(document, item.passages, item.done, stored is not None)

    def _add(self, document: NewDocument, changed: bool) -> None:
        self.pending.append((document, changed))
        self.pending_passages += len(document.passages)

    def _stream(self, document: NewDocument, passages: Iterator[NewPassage], done: int,
                changed: bool) -> None:
        """Embed and commit a long document in parts as its passages are cut; `done`
        passages are already stored by a run that crashed (its parts are kept)."""
        part, first = [], done == 0
        for passage in itertools.islice(passages, done, None):
            part.append(passage)
            if self.pending_passages + len(part) >= self.batch_passages:
                self._add(replace(document, passages=part, part=FIRST if first else MIDDLE),
                          changed)
                self.flush()
                part, first = [], False
        self._add(replace(document, passages=part, part=WHOLE if first else LAST), changed)

    def flush(self) -> None:
        """Embed and commit the pending documents in one transaction."""
        if not self.pending:
            return
        documents = [d for d, _ in self.pending]
        passages = [p for d in documents for p in d.passages]

        def embedded(count: int) -> None:
            self.progress.passages += count
            self.on_progress(self.progress)

        vectors = self.encoder.encode(embedding_inputs(passages, self.encoder,
                                                       self.settings.context),
                                      on_batch=embedded)
        self.store.write_documents(documents, vectors)
        for document in documents:
            self._credit_bytes(document)
        finished = [c for d, c in self.pending if d.part in (WHOLE, LAST)]
        self.report.passages_written += len(passages)
        self.report.changed += sum(finished)
        self.report.added += len(finished) - sum(finished)
        self.pending, self.pending_passages = [], 0

    def _credit_bytes(self, document: NewDocument) -> None:
        """Count a written document's bytes as done: all of them for a whole document or a
        last part, the share of the text its passages reach for an earlier part."""
        credited = self.credited.pop(document.key, 0)
        if document.part in (WHOLE, LAST) or not document.passages or not document.text:
            done = document.size
        else:
            done = document.size * document.passages[-1].end // len(document.text)
            self.credited[document.key] = done
        self.progress.bytes_done += max(0, done - credited)

    def reembed_api_documents(self) -> None:
        """After a recipe change, the documents API's documents are re-embedded too, from
        the text the index keeps of them."""
        from .documents import api_document
        from .store import API

        for _, root, path in list(self.store.iter_documents()):
            record = self.store.document(path) if not root else None
            if record is None or record.origin != API or record.text is None:
                continue
            document = api_document(record.text, record.metadata)
            self._add(NewDocument(record.key, API, "", record.key, record.content_hash,
                                  record.size, record.mtime, record.metadata, record.text,
                                  document_passages(document, self.encoder,
                                                    self.settings.chunk)), True)
            if self.pending_passages >= self.batch_passages:
                self.flush()
        self.flush()
