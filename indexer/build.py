"""Building and syncing an index from a document folder: `build_index`.

Run it again on the same folder and it only does what changed: new and edited files (by
content hash) are chunked and embedded, deleted ones are removed, and an unchanged folder
costs a directory walk. Work is committed to SQLite a batch of documents at a time, so a
crash loses at most the batch in flight; the FAISS file is brought up to date at the end
(and by the next open, should the run die first).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from embedder.prefetch import prefetch

from .chunking import Chunk, ChunkSettings, chunk_text
from .documents import (
    DEFAULT_MAX_FILE_BYTES,
    FoundFile,
    SkippedFile,
    UnreadableFile,
    content_hash,
    extract_text,
    read_bytes,
    walk_folder,
)
from .errors import FolderNotFoundError, IndexerError, IndexMismatchError
from .search import load_vectors
from .settings import IndexSettings, TextEncoder
from .store import NewPassage, Store
from .vectors import choose_kind

# Tokenize long documents in blocks this size, so offsets stay cheap for a 10 MB file.
TOKENIZE_BLOCK_CHARS = 100_000


@dataclass
class SyncReport:
    """What a `build_index` run did."""

    folder: str
    index: str
    added: int = 0
    changed: int = 0
    removed: int = 0
    unchanged: int = 0
    skipped: list[SkippedFile] = field(default_factory=list)
    passages_written: int = 0
    passages_removed: int = 0
    seconds: float = 0.0

    @property
    def embedded_anything(self) -> bool:
        return self.passages_written > 0

    def summary(self) -> str:
        return (f"{self.added} added, {self.changed} changed, {self.removed} removed, "
                f"{self.unchanged} unchanged, {len(self.skipped)} skipped; "
                f"{self.passages_written} passages written, {self.passages_removed} removed "
                f"in {self.seconds:.1f}s")


ProgressCallback = Callable[[int, int, int], None]  # (files done, files total, passages)


def build_index(folder: str | Path, index_dir: str | Path, encoder: TextEncoder, *,
                chunk: ChunkSettings = ChunkSettings(), include: list[str] | None = None,
                exclude: list[str] | None = None, rebuild: bool = False,
                index_type: str = "auto", max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
                batch_passages: int = 256,
                progress: ProgressCallback | None = None) -> SyncReport:
    """Index (or re-sync) every readable document below `folder` into `index_dir`.

    Args:
        folder: the documents. Several folders can share one index; each syncs on its own.
        index_dir: the index directory (created if missing).
        encoder: the model; it must be the one the index was built with unless `rebuild`.
        chunk: passage size and overlap, in tokens.
        include, exclude: glob patterns choosing files (see `walk_folder`).
        rebuild: drop everything stored and re-embed with this encoder and these settings.
        index_type: `auto`, `flat` (exact) or `hnsw` (approximate).
        max_file_bytes: larger files are skipped and reported.
        batch_passages: passages embedded and committed together.
        progress: called after each file with (files done, files total, passages written).

    Raises:
        FolderNotFoundError: `folder` is not a folder.
        IndexMismatchError: the index was built with another model or chunk settings.
    """
    started = time.perf_counter()
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise FolderNotFoundError(f"Folder '{folder}' does not exist or is not a folder.")
    root = root.resolve()
    chunk.validate(encoder.max_seq_length)
    choose_kind(index_type, 0)  # validates the name before any work
    index_path = Path(index_dir).expanduser()
    try:
        index_path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise IndexerError(
            f"Cannot create the index folder '{index_dir}': {exc.strerror}.") from None
    store = Store.open(index_path)
    try:
        settings = _prepare_settings(store, IndexSettings.of(encoder, chunk, index_type),
                                     rebuild, index_path)
        report = SyncReport(str(root), str(index_path))
        _sync(store, root, encoder, chunk, report, include, exclude,
              max_file_bytes, batch_passages, progress)
        load_vectors(index_path, store, settings)  # catch the FAISS file up and save it
    finally:
        store.close()
    report.seconds = time.perf_counter() - started
    return report


def encoder_for_index(index_dir: str | Path, model: str | None = None,
                      backend: str | None = None, pooling: str | None = None, *,
                      rebuild: bool = False, **load_options):
    """The encoder to index or query `index_dir` with, by `embedder.resolver`'s rule: what
    is asked for, else what the index records, else the defaults; a request that would make
    other vectors than the index holds is refused unless `rebuild`.

    Raises:
        IndexMismatchError: the request does not fit the index's vectors.
    """
    from embedder.errors import EncoderMismatchError
    from embedder.resolver import resolve_encoder

    recorded = recorded_settings(index_dir)
    try:
        return resolve_encoder(model, backend, pooling,
                               record=recorded.record if recorded else None, replace=rebuild,
                               where=f"index '{index_dir}'", **load_options)
    except EncoderMismatchError as exc:
        raise IndexMismatchError(str(exc)) from None


def recorded_settings(index_dir: str | Path) -> IndexSettings | None:
    """The settings an existing index was built with, or None (no index, or empty)."""
    path = Path(index_dir).expanduser() / "passages.db"
    if not path.is_file():
        return None
    store = Store(path)
    try:
        return IndexSettings.from_dict(store.settings())
    finally:
        store.close()


def _prepare_settings(store: Store, wanted: IndexSettings, rebuild: bool,
                      index_path: Path) -> IndexSettings:
    current = IndexSettings.from_dict(store.settings())
    if rebuild or current is None:
        store.clear(wanted.to_dict())
        return wanted
    current.check_compatible(wanted, f"'{index_path}'")
    if current.index_type != wanted.index_type:  # no re-embedding needed, only new FAISS
        store.save_settings({"index_type": wanted.index_type})
    return wanted


def _sync(store, root, encoder, chunk, report, include, exclude, max_file_bytes,
          batch_passages, progress) -> None:
    found, skipped = walk_folder(root, include, exclude, max_file_bytes)
    report.skipped.extend(skipped)
    known = store.documents(str(root))
    present = {f.relpath for f in found}
    gone = [doc.id for path, doc in known.items() if path not in present]
    report.passages_removed += store.delete_documents(gone)
    report.removed += len(gone)

    batch = _Batch(store, str(root), encoder, report)
    # Reading, hashing and chunking (tokenising) run one file ahead on a worker thread,
    # so the model never waits for them; all writes stay on this thread.
    prepared = prefetch((_prepare(file, known.get(file.relpath), encoder, chunk)
                         for file in found), depth=64)
    for done, (file, stored, outcome) in enumerate(prepared, 1):
        _apply(file, stored, outcome, store, batch, report)
        if batch.passages >= batch_passages:
            batch.flush()
        if progress:
            progress(done, len(found), report.passages_written + batch.passages)
    batch.flush()
    if progress:
        progress(len(found), len(found), report.passages_written)


def _prepare(file: FoundFile, stored, encoder, chunk):
    """What to do with one file, worked out without touching the store:
    "unchanged", "touch" (same content, new mtime), a `SkippedFile`, or (digest, chunks)."""
    if stored and stored.size == file.size and stored.mtime == file.mtime:
        return file, stored, "unchanged"
    try:
        data = read_bytes(file.path)
        digest = content_hash(data)
        if stored and stored.content_hash == digest:
            return file, stored, "touch"
        text = extract_text(data, file.path.suffix)
    except UnreadableFile as exc:
        return file, stored, SkippedFile(file.relpath, str(exc))
    return file, stored, (digest, chunk_document(text, encoder, chunk))


def _apply(file: FoundFile, stored, outcome, store: Store, batch, report) -> None:
    if outcome == "unchanged":
        report.unchanged += 1
    elif outcome == "touch":
        store.touch_document(stored.id, file.size, file.mtime)
        report.unchanged += 1
    elif isinstance(outcome, SkippedFile):
        report.skipped.append(outcome)
        if stored:  # it was indexed before; its old passages are stale now
            report.passages_removed += store.delete_documents([stored.id])
            report.removed += 1
    else:
        digest, chunks = outcome
        batch.add(file, digest, chunks, changed=stored is not None)


def chunk_document(text: str, encoder: TextEncoder, chunk: ChunkSettings) -> list[Chunk]:
    """Passages of one document, token-bounded by the encoder's tokenizer."""
    spans: list[tuple[int, int]] = []
    blocks = _blocks(text, TOKENIZE_BLOCK_CHARS)
    for (offset, _), block_spans in zip(blocks, encoder.token_spans([b for _, b in blocks])):
        spans.extend((offset + s, offset + e) for s, e in block_spans)
    return chunk_text(text, spans, chunk)


def _blocks(text: str, size: int) -> list[tuple[int, str]]:
    """Cut text into pieces of about `size` characters at paragraph (else line) breaks."""
    out, start = [], 0
    while start < len(text):
        end = min(len(text), start + size)
        if end < len(text):
            cut = text.rfind("\n\n", start + size // 2, end)
            if cut < 0:
                cut = text.rfind("\n", start + size // 2, end)
            end = cut + 1 if cut >= 0 else end
        out.append((start, text[start:end]))
        start = end
    return out


class _Batch:
    """Documents waiting to be embedded and committed together."""

    def __init__(self, store: Store, root: str, encoder, report: SyncReport):
        self.store, self.root, self.encoder, self.report = store, root, encoder, report
        self.documents: list[tuple] = []
        self.passages = 0
        self.changed: list[bool] = []

    def add(self, file: FoundFile, digest: str, chunks: list[Chunk], changed: bool) -> None:
        passages = [NewPassage(c.ordinal, c.start, c.end, c.line_start, c.line_end, c.tokens,
                               c.text) for c in chunks]
        self.documents.append((file.relpath, digest, file.size, file.mtime, passages))
        self.changed.append(changed)
        self.passages += len(passages)

    def flush(self) -> None:
        if not self.documents:
            return
        texts = [p.text for doc in self.documents for p in doc[4]]
        vectors = self.encoder.encode(texts)
        self.store.write_documents(self.root, self.documents, vectors)
        self.report.passages_written += len(texts)
        self.report.changed += sum(self.changed)
        self.report.added += len(self.changed) - sum(self.changed)
        self.documents, self.changed, self.passages = [], [], 0
