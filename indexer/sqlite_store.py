"""The embedded store: an index directory holding SQLite (the source of truth, with an FTS5
keyword index) and a FAISS file derived from it.

The only module that imports sqlite_utils. Writes happen in short `BEGIN IMMEDIATE`
transactions, each of which bumps a `generation` counter, so a crash (even `kill -9`) loses
at most the transaction in flight and the FAISS copy of the vectors can tell whether it is
behind; it is caught up from SQLite on open and before each search. The keyword index is an
FTS5 table over the passages, kept by triggers in the same transactions. Deleted rows are
overwritten on disk (`secure_delete`). The schema evolves by numbered migrations, applied in
order and recorded in `_migrations` (as llm does).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import json
import os
import re
import shutil
import socket
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import sqlite_utils

from .bm25 import KEYWORD_EPOCH, Bm25Postings, KeywordCopy, parse_occurrences, top_k
from .errors import IndexBusyError, IndexCorruptError, IndexNotFoundError, IndexReadOnlyError
from .filters import ID_FIELD, All, Any, Condition, Filter, glob_to_regex
from .store import (
    FOLDER,
    LAST,
    MIDDLE,
    PARTIAL,
    WHOLE,
    DocumentRecord,
    NewDocument,
    NewPassage,
    PassageRow,
    Store,
    StoredDocument,
)
from .vectors import VECTORS_NAME, VectorIndex, choose_kind

DB_NAME = "passages.db"
CACHED_FILTERS = 16  # filters whose matching passages are kept (per index generation)
LOCK_NAME = "writer.lock"
MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = []
# FTS5: Porter stemming over Unicode words; '_' is part of a word, so identifiers such as
# CONFIG_DEBUG_FS or PyErr_Print stay one token
FTS_TOKENIZER = "porter unicode61 remove_diacritics 2 tokenchars '_'"


def migration(fn):
    """Register a schema migration; they run in the order they are defined."""
    MIGRATIONS.append(fn)
    return fn


@migration
def m001_initial(db: sqlite_utils.Database) -> None:
    db["settings"].create({"key": str, "value": str}, pk="key")
    db["documents"].create(
        {"id": int, "root": str, "path": str, "content_hash": str, "size": int,
         "mtime": float, "passages": int, "indexed_at": float},
        pk="id", not_null={"root", "path", "content_hash"},
    )
    db["documents"].create_index(["root", "path"], unique=True)
    # AUTOINCREMENT: a passage id is never reused, so the FAISS id of a deleted passage can
    # never come to stand for a new one (the FAISS catch-up relies on that).
    db.execute("""
        CREATE TABLE passages (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            document_id INTEGER NOT NULL REFERENCES documents(id),
            ordinal INTEGER NOT NULL,
            start INTEGER NOT NULL,
            "end" INTEGER NOT NULL,
            line_start INTEGER NOT NULL,
            line_end INTEGER NOT NULL,
            tokens INTEGER NOT NULL,
            text TEXT NOT NULL,
            vector BLOB NOT NULL
        )""")
    db["passages"].create_index(["document_id", "ordinal"], unique=True)
    db["settings"].insert({"key": "generation", "value": "0"})


@migration
def m002_documents_keywords(db: sqlite_utils.Database) -> None:
    """Documents get an id (`key`), an origin, metadata and their text; passages their
    heading path; an FTS5 keyword index over passage text, filled from what is stored."""
    for column, kind in (("key", "TEXT"), ("origin", "TEXT NOT NULL DEFAULT 'folder'"),
                         ("metadata", "TEXT NOT NULL DEFAULT '{}'"), ("text", "TEXT")):
        db.execute(f"ALTER TABLE documents ADD COLUMN {column} {kind}")
    rows = db.execute("SELECT id, root, path, size, mtime FROM documents").fetchall()
    for doc_id, root, path, size, mtime in rows:
        metadata = {"path": path, "ext": os.path.splitext(path)[1].lower(), "size": size,
                    "mtime": mtime, "folder": root}
        db.execute("UPDATE documents SET key = ?, metadata = ? WHERE id = ?",
                   [os.path.join(root, path), json.dumps(metadata), doc_id])
    db.execute("CREATE UNIQUE INDEX documents_key ON documents(key)")
    db.execute("ALTER TABLE passages ADD COLUMN headings TEXT NOT NULL DEFAULT '[]'")
    db.execute(f"""CREATE VIRTUAL TABLE passages_fts USING fts5(
        text, content='passages', content_rowid='id', tokenize="{FTS_TOKENIZER}")""")
    db.execute("""CREATE TRIGGER passages_fts_insert AFTER INSERT ON passages BEGIN
        INSERT INTO passages_fts(rowid, text) VALUES (new.id, new.text); END""")
    db.execute("""CREATE TRIGGER passages_fts_delete AFTER DELETE ON passages BEGIN
        INSERT INTO passages_fts(passages_fts, rowid, text) VALUES ('delete', old.id, old.text);
        END""")
    db.execute("""CREATE TRIGGER passages_fts_update AFTER UPDATE OF text ON passages BEGIN
        INSERT INTO passages_fts(passages_fts, rowid, text) VALUES ('delete', old.id, old.text);
        INSERT INTO passages_fts(rowid, text) VALUES (new.id, new.text); END""")
    db.execute("INSERT INTO passages_fts(passages_fts) VALUES ('rebuild')")
    # the words the keyword index holds, straight from the index (checks and tests)
    db.execute("CREATE VIRTUAL TABLE passages_fts_vocab USING fts5vocab(passages_fts, 'row')")
    _bump_generation(db)


def _bump_generation(db) -> None:
    db.execute(
        "UPDATE settings SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")


_PASSAGE_COLUMNS = ('p.id, p.document_id, d.root, d.path, p.ordinal, p.start, p."end", '
                    "p.line_start, p.line_end, p.text, d.key, p.headings, d.metadata")


@dataclasses.dataclass(frozen=True)
class PassageLayout:
    """Every passage's id (sorted), document and ordinal at one store generation."""

    generation: int
    ids: np.ndarray
    documents: np.ndarray
    ordinals: np.ndarray

    @functools.cached_property
    def first(self) -> np.ndarray:
        """The ids of every document's first passage."""
        return self.ids[self.ordinals == 0]


class SQLiteStore(Store):
    """An index directory's SQLite database and FAISS vectors. Thread-safe: one
    connection, used under a lock."""

    kind = "sqlite"
    damage: str | None = None  # what SQLite said when it found the file damaged

    def __init__(self, folder: Path, read_only: bool = False, immutable: bool = False):
        self.folder = folder
        self.location = str(folder)
        self.path = folder / DB_NAME
        self.read_only = read_only or immutable
        self.immutable = immutable  # a read-only file system: no locks, no WAL, no writes
        self.lock = threading.RLock()
        self._vectors: VectorIndex | None = None
        self._vectors_generation = -1
        self._saved_generation = -1
        self._subsets: OrderedDict[object, tuple[int, np.ndarray]] = OrderedDict()
        self._keywords = KeywordCopy()
        self._tokenizer = FtsTokenizer()
        self._cached_layout: PassageLayout | None = None
        try:
            self.db = sqlite_utils.Database(self._connect())
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise IndexCorruptError(
                f"{self.path} is not a readable bertsearch database ({exc}). Run `bertsearch "
                f"check --index {folder} --repair`, or delete the index folder and index the "
                f"documents again.") from exc

    @classmethod
    def open(cls, folder: Path, create: bool = False, read_only: bool = False) -> SQLiteStore:
        """Open (or, with `create`, make) the index directory `folder`.

        A folder on a read-only file system (a shared mount) opens for reading only; asking
        it to take writes raises `IndexReadOnlyError` with that reason.
        """
        db = folder / DB_NAME
        if not db.is_file():
            if not create:
                raise IndexNotFoundError(
                    f"No index at '{folder}'. Create one with: bertsearch index FOLDER "
                    f"--index {folder}")
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise IndexReadOnlyError(
                    f"Cannot create the index folder '{folder}': {exc.strerror}.") from None
        elif db.stat().st_size == 0 and (folder / VECTORS_NAME).exists():
            raise IndexCorruptError(
                f"{db} is empty (0 bytes) although the index holds a vector file: the "
                f"database was truncated and its documents are lost. Run `bertsearch check "
                f"--index {folder} --repair` to start the index over, then index the folder "
                f"again.")
        if not os.access(folder, os.W_OK):  # readers carry on read-only; writers are told
            if create:
                raise IndexReadOnlyError(
                    f"The index at '{folder}' is on a read-only file system (or this user "
                    f"may not write it): it can be searched but not changed.")
            _check_closed_cleanly(folder)
            return cls(folder, immutable=True)
        return cls(folder, read_only=read_only)

    def _connect(self) -> sqlite3.Connection:
        mode = "?mode=ro&immutable=1" if self.immutable else "?mode=ro" if self.read_only else ""
        conn = sqlite3.connect(f"file:{self.path}{mode}", uri=True, timeout=30,
                               check_same_thread=False,
                               isolation_level=None)  # transactions are explicit
        conn.create_function("regexp", 2, _regexp, deterministic=True)
        if not self.read_only:
            conn.execute("PRAGMA journal_mode=wal")
        for pragma in ("synchronous=normal", "foreign_keys=on", "secure_delete=on"):
            conn.execute(f"PRAGMA {pragma}")
        return conn

    def close(self) -> None:
        with self.lock:
            self.db.conn.close()

    def _migrate(self) -> None:
        if self.read_only:
            if self._pending_migrations():
                raise IndexReadOnlyError(
                    f"The index at '{self.folder}' was made by an older bertsearch and must "
                    f"be upgraded once by a writer (run `bertsearch index` on it) before it "
                    f"can be served read-only.")
            return
        with self._write():
            if "_migrations" not in self.db.table_names():
                self.db["_migrations"].create({"name": str, "applied_at": float}, pk="name")
            for fn in self._pending_migrations():
                fn(self.db)
                self.db["_migrations"].insert({"name": fn.__name__, "applied_at": time.time()})

    def _pending_migrations(self) -> list:
        if "_migrations" not in self.db.table_names():
            return list(MIGRATIONS)
        done = {row[0] for row in self.db.execute("SELECT name FROM _migrations")}
        return [fn for fn in MIGRATIONS if fn.__name__ not in done]

    @contextlib.contextmanager
    def _write(self):
        """A write transaction, taken with BEGIN IMMEDIATE so that concurrent writers queue
        on SQLite's lock (busy timeout) instead of failing part-way."""
        if self.read_only:
            raise IndexReadOnlyError(f"The index at '{self.folder}' is open read-only.")
        with self.lock:
            conn = self.db.conn
            if conn.in_transaction:  # nested: part of the outer transaction
                yield
                return
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                raise IndexBusyError(
                    f"The index at '{self.folder}' stayed locked by another writer for 30 "
                    f"seconds; retry in a moment.") from None
            try:
                yield
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                self._raise_damage(exc)
                raise

    def _query(self, sql: str, params=()) -> list:
        with self.lock:
            try:
                return self.db.execute(sql, list(params)).fetchall()
            except sqlite3.DatabaseError as exc:
                self._raise_damage(exc)
                raise

    def _raise_damage(self, exc: BaseException) -> None:
        """Turn SQLite's report of a damaged file into a clear `IndexCorruptError` (a 503
        over HTTP), remembering it for health checks; other errors pass through."""
        if isinstance(exc, sqlite3.OperationalError) and "readonly" in str(exc):
            raise IndexReadOnlyError(
                f"The index at '{self.folder}' is read-only here: it can be searched but "
                f"not changed.") from None
        if isinstance(exc, sqlite3.DatabaseError) and not isinstance(
                exc, sqlite3.OperationalError) or "malformed" in str(exc):
            self.damage = str(exc)
            raise IndexCorruptError(
                f"The index database at '{self.folder}' is damaged ({exc}). Run `bertsearch "
                f"check --index {self.folder} --repair`.") from None

    # -- settings, generation, writer lock --------------------------------------------------

    def settings(self) -> dict:
        return {key: json.loads(value) for key, value in self._query(
            "SELECT key, value FROM settings")}

    def save_settings(self, values: dict) -> None:
        with self._write():
            self.db["settings"].upsert_all(
                [{"key": k, "value": json.dumps(v)} for k, v in values.items()], pk="key")

    def generation(self) -> int:
        return int(self._query("SELECT value FROM settings WHERE key = 'generation'")[0][0])

    def clear(self, settings: dict) -> None:
        with self._write():
            self.db.execute("DELETE FROM passages")
            self.db.execute("DELETE FROM documents")
            self.db.execute("DELETE FROM settings WHERE key != 'generation'")
            self.db["settings"].insert_all(
                [{"key": k, "value": json.dumps(v)} for k, v in settings.items()])
            _bump_generation(self.db)

    @contextlib.contextmanager
    def writer_lock(self, owner: str, wait: bool = False):
        """An exclusive `flock` on INDEX/writer.lock, released by the kernel if this
        process dies, with who holds it written inside for the next writer's message."""
        if self.read_only:
            raise IndexReadOnlyError(f"The index at '{self.folder}' is open read-only.")
        handle = open(self.folder / LOCK_NAME, "a+")  # noqa: SIM115 - held across the block
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                handle.seek(0)
                raise IndexBusyError(
                    f"Another writer is updating the index at '{self.folder}' "
                    f"({_holder(handle.read())}). Wait for it to finish, or pass --wait to "
                    f"wait for it.") from None
            handle.seek(0)
            handle.truncate()
            handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                     "command": owner, "since": time.time()}))
            handle.flush()
            yield
        finally:
            handle.close()  # releases the lock

    # -- documents ----------------------------------------------------------------------------

    def folder_documents(self, root: str) -> dict[str, StoredDocument]:
        rows = self._query(
            "SELECT id, key, origin, path, content_hash, size, mtime, metadata, passages "
            "FROM documents WHERE root = ? AND origin = ?", [root, FOLDER])
        return {r[3]: _stored(r) for r in rows}

    def stored_document(self, key: str) -> StoredDocument | None:
        rows = self._query(
            "SELECT id, key, origin, path, content_hash, size, mtime, metadata, passages "
            "FROM documents WHERE key = ?", [key])
        return _stored(rows[0]) if rows else None

    def document(self, key: str) -> DocumentRecord | None:
        rows = self._query(
            "SELECT key, origin, root, path, content_hash, size, mtime, metadata, text, "
            "passages, indexed_at FROM documents WHERE key = ?", [key])
        if not rows:
            return None
        r = rows[0]
        return DocumentRecord(r[0], r[1], r[2], r[3], r[4], r[5], r[6], json.loads(r[7]),
                              r[8], r[9], r[10])

    def write_documents(self, documents: list[NewDocument], vectors: np.ndarray) -> None:
        rows = iter(np.ascontiguousarray(vectors, dtype=np.float32))
        with self._write():
            for doc in documents:
                doc_id = self._document_row(doc)
                self.db.conn.executemany(
                    'INSERT INTO passages (document_id, ordinal, start, "end", line_start, '
                    "line_end, tokens, text, vector, headings) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(doc_id, p.ordinal, p.start, p.end, p.line_start, p.line_end, p.tokens,
                      p.text, next(rows).tobytes(), _dumps(list(p.headings)))
                     for p in doc.passages])
            _bump_generation(self.db)

    def _document_row(self, doc: NewDocument) -> int:
        """The id of the row `doc`'s passages go under: a new row (replacing the stored
        document) for WHOLE and FIRST, the existing one for MIDDLE and LAST."""
        old = self.db.execute("SELECT id FROM documents WHERE key = ?", [doc.key]).fetchone()
        if doc.part in (MIDDLE, LAST):
            done = doc.content_hash if doc.part == LAST else PARTIAL + doc.content_hash
            self.db.execute("UPDATE documents SET passages = passages + ?, content_hash = ?, "
                            "indexed_at = ? WHERE id = ?",
                            [len(doc.passages), done, time.time(), old[0]])
            return old[0]
        if old:
            self._delete([old[0]])
        digest = doc.content_hash if doc.part == WHOLE else PARTIAL + doc.content_hash
        return self.db.execute(
            "INSERT INTO documents (key, origin, root, path, content_hash, size, mtime, "
            "passages, indexed_at, metadata, text) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [doc.key, doc.origin, doc.root, doc.path, digest, doc.size, doc.mtime,
             len(doc.passages), time.time(), _dumps(doc.metadata), doc.text]).lastrowid

    def update_document(self, doc_id: int, size: int, mtime: float, metadata: dict) -> None:
        with self._write():
            self.db.execute("UPDATE documents SET size = ?, mtime = ?, metadata = ? "
                            "WHERE id = ?", [size, mtime, _dumps(metadata), doc_id])
            _bump_generation(self.db)

    def delete_documents(self, ids: list[int]) -> int:
        if not ids:
            return 0
        with self._write():
            removed = self._delete(ids)
            _bump_generation(self.db)
        return removed

    def _delete(self, ids: list[int]) -> int:
        marks = ",".join("?" * len(ids))
        removed = self.db.execute(
            f"DELETE FROM passages WHERE document_id IN ({marks})", ids).rowcount
        self.db.execute(f"DELETE FROM documents WHERE id IN ({marks})", ids)
        return removed

    def counts(self) -> tuple[int, int]:
        return tuple(self._query("SELECT (SELECT count(*) FROM documents), "
                                 "(SELECT count(*) FROM passages)")[0])

    def iter_documents(self) -> Iterator[tuple[int, str, str]]:
        yield from self._query("SELECT id, root, path FROM documents ORDER BY id")

    # -- passages and vectors ---------------------------------------------------------------

    def passage_ids(self) -> np.ndarray:
        rows = self._query("SELECT id FROM passages ORDER BY id")
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def _layout(self) -> PassageLayout:
        """Every passage's id, document and ordinal, read once per generation: what the
        derived copies catch up to and what grouping by documents looks up, without a query
        per search."""
        generation = self.generation()
        layout = self._cached_layout
        if layout is None or layout.generation != generation:
            rows = self._query("SELECT id, document_id, ordinal FROM passages ORDER BY id")
            table = np.array(rows, dtype=np.int64).reshape(-1, 3)
            layout = PassageLayout(generation, table[:, 0].copy(), table[:, 1].copy(),
                                   table[:, 2].copy())
            self._cached_layout = layout
        return layout

    def stored_vectors(self, ids: np.ndarray | None = None, batch: int = 20_000,
                       ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield `(ids, vectors)` blocks from SQLite: all passages, or those with given ids."""
        if ids is None:
            ids = self.passage_ids()
        for start in range(0, len(ids), batch):
            block = [int(i) for i in ids[start:start + batch]]
            rows = self._query(
                f"SELECT id, vector FROM passages WHERE id IN ({','.join('?' * len(block))})",
                block)
            if rows:
                got = np.array([r[0] for r in rows], dtype=np.int64)
                matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32)
                yield got, matrix.reshape(len(rows), -1)

    def passages(self, ids: list[int]) -> dict[int, PassageRow]:
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self._query(
            f"SELECT {_PASSAGE_COLUMNS} FROM passages p JOIN documents d "
            f"ON d.id = p.document_id WHERE p.id IN ({marks})", [int(i) for i in ids])
        return {r[0]: _passage(r) for r in rows}

    def passage_documents(self, ids: list[int]) -> dict[int, int]:
        if not ids:
            return {}
        layout = self._layout()
        wanted = np.asarray(ids, dtype=np.int64)
        where = np.minimum(np.searchsorted(layout.ids, wanted), max(len(layout.ids) - 1, 0))
        held = layout.ids[where] == wanted if len(layout.ids) else np.zeros(len(wanted), bool)
        return dict(zip(wanted[held].tolist(), layout.documents[where[held]].tolist()))

    def document_passages(self, document_id: int) -> list[PassageRow]:
        rows = self._query(
            f"SELECT {_PASSAGE_COLUMNS} FROM passages p JOIN documents d "
            f"ON d.id = p.document_id WHERE p.document_id = ? ORDER BY p.ordinal",
            [document_id])
        return [_passage(r) for r in rows]

    def matching_passages(self, where: Filter) -> np.ndarray:
        """The ids of the passages whose document matches `where`, sorted."""
        def compute():
            sql, params = compile_filter(where)
            rows = self._query(
                f"SELECT id FROM passages WHERE document_id IN "
                f"(SELECT d.id FROM documents d WHERE {sql}) ORDER BY id", params)
            return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

        return self._cached_subset(repr(where), compute)

    def _cached_subset(self, key, compute) -> np.ndarray:
        """`compute()`, kept for the last few keys until the index changes: a filter is
        usually asked again (one tenant, one folder), and evaluating it over every
        document's metadata costs more than the vector search it narrows."""
        generation = self.generation()  # read first: a later write only makes this stale
        with self.lock:
            cached = self._subsets.get(key)
            if cached is not None and cached[0] == generation:
                self._subsets.move_to_end(key)
                return cached[1]
        ids = compute()
        with self.lock:
            self._subsets[key] = (generation, ids)
            while len(self._subsets) > CACHED_FILTERS:
                self._subsets.popitem(last=False)
        return ids

    def dense_search(self, queries: np.ndarray, k: int, where: Filter | None = None,
                     exact: bool = False, first_only: bool = False,
                     ) -> list[list[tuple[int, float]]]:
        self.refresh()
        if first_only:
            subset = self._first_passages() if where is None else self._first_matching(where)
        else:
            subset = None if where is None else self.matching_passages(where)
        if subset is not None and not len(subset):
            return [[] for _ in range(len(queries))]
        with self.lock:
            scores, ids = self._vectors.search(queries, k, subset, exact=exact)
        return [[(int(i), float(s)) for s, i in zip(srow, irow) if i >= 0]
                for srow, irow in zip(scores, ids)]

    def _first_matching(self, where: Filter) -> np.ndarray:
        """The first passages of the documents matching `where`, kept like
        `matching_passages` (so the vectors gathered for it are kept too)."""
        return self._cached_subset(("first", repr(where)), lambda: np.intersect1d(
            self.matching_passages(where), self._first_passages(), assume_unique=True))

    def _first_passages(self) -> np.ndarray:
        """Ids of every document's first passage, sorted (one array per generation)."""
        return self._layout().first

    def keyword_search(self, terms: list[tuple[str, ...]], k: int,
                       where: Filter | None = None) -> list[tuple[int, float]]:
        """BM25 from the in-memory copy of the FTS5 index (`indexer.bm25`): FTS5's ranking
        without its per-row cost, each term made into FTS5's own tokens first."""
        if not terms:
            return []
        tokenized = [tokens for tokens in map(self._tokenizer.tokens, terms) if tokens]
        total, matched = self._keywords.scores(tokenized, self)
        subset = None if where is None else self.matching_passages(where)
        return top_k(total, matched, k, subset)

    def fts5_keyword_search(self, terms: list[tuple[str, ...]], k: int,
                            where: Filter | None = None) -> list[tuple[int, float]]:
        """The same ranking straight from FTS5 (slow: bm25() on every matching row); the
        oracle the in-memory copy is held to."""
        if not terms:
            return []
        sql = ("SELECT rowid, -bm25(passages_fts) AS score FROM passages_fts "
               "WHERE passages_fts MATCH ?")
        params: list = [_fts_match(terms)]
        if where is not None:
            # `+rowid` keeps the filter from FTS5, which would run the whole MATCH once per
            # passage the filter admits (seconds at 100,000 passages); this way the match
            # runs once and only the admitted rows are ranked.
            predicate, extra = compile_filter(where)
            sql += (" AND +rowid IN (SELECT id FROM passages WHERE document_id IN "
                    f"(SELECT d.id FROM documents d WHERE {predicate}))")
            params += extra
        rows = self._query(sql + " ORDER BY score DESC, rowid LIMIT ?", [*params, k])
        return [(int(r[0]), float(r[1])) for r in rows]

    def token_passage_ids(self) -> np.ndarray:
        return self._layout().ids

    def read_tokens(self, ids: np.ndarray) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """These passages' tokens, made by FTS5's tokenizer from their text."""
        return self._tokenizer.counts(self._query(
            f"SELECT id, text FROM passages WHERE id IN ({','.join(str(int(i)) for i in ids)})"))

    def read_all_tokens(self) -> tuple[Bm25Postings, int]:
        """A copy of every passage's tokens from FTS5's index, and the generation it is of:
        read through a connection of its own, in one read transaction (a consistent
        snapshot, while searches and writes go on over the shared one)."""
        conn = self._connect()
        try:
            conn.execute("BEGIN")
            generation = int(conn.execute(
                "SELECT value FROM settings WHERE key = 'generation'").fetchone()[0])
            ids = np.array([r[0] for r in conn.execute("SELECT id FROM passages")],
                           dtype=np.int64)
            conn.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.passages_fts_instance "
                         "USING fts5vocab(main, passages_fts, instance)")
            copy = Bm25Postings()
            copy.add(ids, parse_occurrences(conn.execute(
                "SELECT term, group_concat(doc), group_concat(offset) "
                "FROM temp.passages_fts_instance GROUP BY term")))
            conn.execute("COMMIT")
            return copy, generation
        except sqlite3.DatabaseError as exc:
            self._raise_damage(exc)
            raise
        finally:
            conn.close()

    def warm(self) -> None:
        """Bring the vector and keyword copies up to date now, so the first search does not
        wait for them (the server does this in the background as it starts)."""
        self.refresh()
        self._keywords.warm(self)

    # -- the FAISS copy -----------------------------------------------------------------------

    def refresh(self) -> bool:
        """Bring the FAISS copy to exactly the passages SQLite holds, reading vectors from
        SQLite (on first use, the saved FAISS file is the starting point)."""
        generation = self.generation()
        if self._vectors is not None and generation == self._vectors_generation:
            return False
        with self.lock:
            if self._vectors is None:
                self._vectors, self._saved_generation = self._load_file()
            self._vectors = self._caught_up(self._vectors)
            self._vectors_generation = generation
        return True

    def _load_file(self) -> tuple[VectorIndex | None, int]:
        path = self.folder / VECTORS_NAME
        if not path.exists():
            return None, -1
        try:
            return VectorIndex.load(path)
        except IndexCorruptError:
            return None, -1  # derived data: rebuilt from SQLite

    def _caught_up(self, vectors: VectorIndex | None) -> VectorIndex:
        """Add what is missing, remove what SQLite no longer has (an HNSW index, which
        cannot remove, is rebuilt instead). Passage ids are never reused, so comparing id
        sets is enough."""
        settings = self.settings()
        wanted = self._layout().ids
        kind = choose_kind(settings.get("index_type", "auto"), len(wanted))
        dimension = int(settings.get("dimension") or (vectors.dimension if vectors else 0))
        if vectors is None or vectors.kind != kind or vectors.dimension != dimension:
            vectors = VectorIndex.empty(dimension, kind)
        have = vectors.ids()
        stale = np.setdiff1d(have, wanted, assume_unique=True)
        if len(stale) and not vectors.can_remove:  # HNSW: start over rather than delete
            vectors, have = VectorIndex.empty(dimension, kind), np.array([], dtype=np.int64)
        else:
            vectors.remove(stale)
        missing = np.setdiff1d(wanted, have, assume_unique=True)
        for ids, block in self.stored_vectors(missing):
            vectors.add(ids, block)
        return vectors

    def checkpoint(self) -> None:
        """Save the FAISS copy if it moved on since it was last saved (atomically; a
        read-only folder keeps answering from memory)."""
        self.refresh()
        if self.read_only or self._saved_generation == self._vectors_generation:
            return
        with self.lock, contextlib.suppress(OSError):
            self._vectors.save(self.folder / VECTORS_NAME, self._vectors_generation)
            self._saved_generation = self._vectors_generation

    def describe(self) -> dict:
        self.refresh()
        return {"vector_index": self._vectors.kind, "vectors": len(self._vectors)}

    # -- files kept with the index ----------------------------------------------------------

    def attached_folder(self, name: str) -> Path | None:
        """INDEX/name, where the files kept under `name` live, if it holds any."""
        folder = self.folder / name
        return folder if folder.is_dir() and any(folder.iterdir()) else None

    def attach_folder(self, name: str, folder: Path) -> None:
        """Copy `folder`'s files to INDEX/name (nothing to do when they were written there)."""
        target = self.folder / name
        if Path(folder).resolve() == target.resolve():
            return
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(folder, target)

    # -- integrity ------------------------------------------------------------------------------

    def quick_check(self) -> str | None:
        """SQLite's page-level check (`PRAGMA quick_check`, a read of every page): None when
        sound, else what is wrong (also remembered as `damage`)."""
        try:
            rows = self._query("PRAGMA quick_check")
        except IndexCorruptError as exc:
            return str(exc)
        if [r[0] for r in rows] != ["ok"]:
            self.damage = "; ".join(r[0] for r in rows[:3])
        return self.damage

    def health(self) -> str | None:
        return self.damage

    def check(self, repair: bool = False, reembed=None) -> tuple[list[str], list[str]]:
        """Verify the database pages, the keyword index, the stored vectors and the FAISS
        copy; with `repair`, mend what is derived (FAISS, keyword index, passage counts),
        recompute damaged vectors with `reembed(passage_rows) -> vectors`, and salvage a
        damaged database into a new file. Returns (problems found, repairs made)."""
        problems, repairs = [], []
        pages = self._integrity()
        if pages:
            problems.append(f"database pages: {pages}")
            if not repair:
                return problems, repairs
            repairs.append(self._salvage())
        for found, mend in (self._check_keywords(), self._check_counts(),
                            self._check_vectors(reembed), self._check_faiss()):
            if found:
                problems.append(found)
                if repair:
                    repairs.append(mend())
        return problems, repairs

    def _integrity(self) -> str | None:
        try:
            rows = [r[0] for r in self.db.execute("PRAGMA integrity_check").fetchall()]
        except sqlite3.DatabaseError as exc:
            return str(exc)
        return None if rows == ["ok"] else f"{len(rows)} problems, e.g. {rows[0]}"

    def _check_keywords(self):
        if self.read_only:  # FTS5 checks through an INSERT, which a read-only file refuses
            return None, None
        try:
            self.db.execute("INSERT INTO passages_fts(passages_fts, rank) "
                            "VALUES ('integrity-check', 1)")
            return None, None
        except sqlite3.DatabaseError:
            def mend():
                with self._write():
                    self.db.execute("INSERT INTO passages_fts(passages_fts) VALUES ('rebuild')")
                    self.db.execute("INSERT OR REPLACE INTO settings VALUES (?, ?)",
                                    [KEYWORD_EPOCH, json.dumps(time.time())])
                    _bump_generation(self.db)
                return "keyword index rebuilt from the passages"
            return "the keyword index disagrees with the passages", mend

    def _check_counts(self):
        wrong = self._query(
            "SELECT d.id FROM documents d WHERE d.passages != "
            "(SELECT count(*) FROM passages p WHERE p.document_id = d.id)")
        if not wrong:
            return None, None

        def mend():
            with self._write():
                self.db.execute("UPDATE documents SET passages = (SELECT count(*) FROM "
                                "passages p WHERE p.document_id = documents.id)")
            return f"passage counts of {len(wrong)} documents corrected"
        return f"{len(wrong)} documents record a wrong passage count", mend

    def _check_vectors(self, reembed):
        """Stored vectors must have the index's dimension, be finite and unit length."""
        dimension = int(self.settings().get("dimension") or 0)
        bad = []
        for row_id, blob in self.db.execute("SELECT id, vector FROM passages"):
            vector = np.frombuffer(blob, dtype=np.float32) if len(blob) % 4 == 0 else None
            if vector is None or len(vector) != dimension or not np.isfinite(vector).all() \
                    or abs(float(np.linalg.norm(vector)) - 1) > 1e-3:
                bad.append(row_id)
        if not bad:
            return None, None

        def mend():
            if reembed is None:
                return f"{len(bad)} damaged vectors left: no encoder to recompute them"
            rows = self.passages(bad)
            vectors = np.ascontiguousarray(reembed([rows[i] for i in bad]), dtype=np.float32)
            with self._write():
                self.db.conn.executemany("UPDATE passages SET vector = ? WHERE id = ?",
                                         [(v.tobytes(), i) for i, v in zip(bad, vectors)])
                _bump_generation(self.db)
            self._vectors = None  # rebuilt from SQLite on the next refresh
            return f"{len(bad)} damaged vectors recomputed from their passages"
        return f"{len(bad)} stored vectors are damaged (wrong size, not finite or not unit " \
               f"length)", mend

    def _check_faiss(self):
        """The FAISS file must load (checksum), hold exactly the passages and equal SQLite's
        vectors."""
        path = self.folder / VECTORS_NAME
        problem = None
        if not path.exists():
            problem = "the vector file is missing"
        else:
            try:
                vectors, _ = VectorIndex.load(path)
                wanted = self.passage_ids()
                held = np.sort(vectors.ids())
                if not np.array_equal(held, wanted):
                    problem = (f"the vector file holds {len(held)} vectors for {len(wanted)} "
                               f"passages")
                else:
                    for ids, block in self.stored_vectors(wanted):
                        if not np.array_equal(vectors.vectors_of(ids)[1], block):
                            problem = "the vector file's vectors differ from the database's"
                            break
            except IndexCorruptError as exc:
                problem = str(exc)
        if problem is None:
            return None, None

        def mend():
            self._vectors = None
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            self._saved_generation = -1
            self._vectors_generation = -1
            self.checkpoint()
            return "vector file rebuilt from the database"
        return problem, mend

    def _salvage(self) -> str:
        """Copy every readable document, whole, into a new database and swap it in; the
        damaged file is kept beside it (`passages.db.damaged`)."""
        fresh_folder = self.folder / ".salvage"
        shutil.rmtree(fresh_folder, ignore_errors=True)
        fresh_folder.mkdir()
        fresh = SQLiteStore(fresh_folder)
        kept, lost = 0, []
        try:
            settings = _readable(lambda: self.settings(), {})
            fresh.save_settings({k: v for k, v in settings.items() if k != "generation"})
            for doc_id in _readable(lambda: [r[0] for r in self.db.execute(
                    "SELECT id FROM documents ORDER BY id")], []):
                copied = _readable(lambda d=doc_id: self._copy_document(d, fresh), None)
                if copied:
                    kept += 1
                else:
                    lost.append(doc_id)
        finally:
            fresh.close()
        self.db.conn.close()
        for suffix in ("", "-wal", "-shm"):
            source = self.folder / (DB_NAME + suffix)
            if source.exists():
                os.replace(source, self.folder / (DB_NAME + ".damaged" + suffix))
        os.replace(fresh_folder / DB_NAME, self.path)
        shutil.rmtree(fresh_folder, ignore_errors=True)
        self.db = sqlite_utils.Database(self._connect())
        self.damage, self._vectors, self._cached_layout = None, None, None
        self._keywords.forget()  # the new file counts generations afresh
        self._subsets.clear()
        return (f"database salvaged: {kept} documents kept, {len(lost)} unreadable ones "
                f"dropped (a folder's files come back on its next `bertsearch index`); the "
                f"damaged file is kept as {DB_NAME}.damaged")

    def _copy_document(self, doc_id: int, target: SQLiteStore) -> bool:
        row = self.db.execute(
            "SELECT key, origin, root, path, content_hash, size, mtime, metadata, text "
            "FROM documents WHERE id = ?", [doc_id]).fetchone()
        passages = self.db.execute(
            'SELECT ordinal, start, "end", line_start, line_end, tokens, text, headings, '
            "vector FROM passages WHERE document_id = ? ORDER BY ordinal", [doc_id]).fetchall()
        document = NewDocument(row[0], row[1], row[2], row[3], row[4], row[5], row[6],
                               json.loads(row[7]), row[8],
                               [NewPassage(*p[:7], tuple(json.loads(p[7]))) for p in passages])
        vectors = np.array([np.frombuffer(p[8], dtype=np.float32) for p in passages])
        target.write_documents([document], vectors.reshape(len(passages), -1))
        return True


def _readable(read, default):
    """`read()`, or `default` where the damaged file cannot give it."""
    try:
        return read()
    except (sqlite3.DatabaseError, IndexCorruptError, ValueError):
        return default


def _check_closed_cleanly(folder: Path) -> None:
    """A database on a read-only file system is read without its write-ahead log; one left
    with unmerged writes (its writer died) would be read stale, so it is refused."""
    wal = folder / (DB_NAME + "-wal")
    if wal.exists() and wal.stat().st_size > 0:
        raise IndexReadOnlyError(
            f"The index at '{folder}' is on a read-only file system and was not closed "
            f"cleanly (its write-ahead log holds writes). Open it once where it is writable "
            f"(any bertsearch command) so the log is merged, then mount it read-only.")


def _stored(row) -> StoredDocument:
    return StoredDocument(row[0], row[1], row[2], row[3], row[4], row[5], row[6],
                          json.loads(row[7]), row[8])


def _passage(row) -> PassageRow:
    return PassageRow(*row[:11], headings=tuple(json.loads(row[11])),
                      metadata=json.loads(row[12]))


def _dumps(value) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False, sort_keys=True)


def _holder(raw: str) -> str:
    try:
        info = json.loads(raw)
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info["since"]))
        return f"pid {info['pid']} on {info['host']}: {info['command']}, since {since}"
    except (ValueError, KeyError, TypeError):
        return "a process that did not say who it is"


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern:
    return re.compile(pattern, re.S)


def _regexp(pattern: str, value) -> bool:
    return isinstance(value, str) and _compiled(pattern).match(value) is not None


# -- filters -> SQL -------------------------------------------------------------------------

def compile_filter(node: Filter) -> tuple[str, list]:
    """A SQL predicate over the documents table (alias `d`) and its parameters."""
    if isinstance(node, (All, Any)):
        parts = [compile_filter(part) for part in node.parts]
        joiner = " AND " if isinstance(node, All) else " OR "
        return ("(" + joiner.join(sql for sql, _ in parts) + ")",
                [p for _, params in parts for p in params])
    return _condition(node)


def _condition(cond: Condition) -> tuple[str, list]:
    if cond.field == (ID_FIELD,):
        source, source_params = "json_each(json_array(d.key))", []
    else:
        path = "$" + "".join(f'."{part}"' for part in cond.field)
        source, source_params = "json_each(d.metadata, ?)", [path]

    def some(test: str, params: list) -> tuple[str, list]:
        """Some value of the field (the value itself, or a list's element) passes `test`."""
        return (f"EXISTS (SELECT 1 FROM {source} WHERE typeof(key) != 'text' AND ({test}))",
                source_params + params)

    def equal(value) -> tuple[str, list]:
        if value is None:  # missing or null: no value that is not null
            sql, params = some("type != 'null'", [])
            return f"NOT {sql}", params
        if isinstance(value, bool):
            return some(f"type = '{'true' if value else 'false'}'", [])
        if isinstance(value, str):
            return some("type = 'text' AND value = ?", [value])
        return some("type IN ('integer', 'real') AND value = ?", [value])

    def any_of(values) -> tuple[str, list]:
        parts = [equal(v) for v in values]
        return "(" + " OR ".join(s for s, _ in parts) + ")", [p for _, ps in parts for p in ps]

    op = cond.op
    if op in ("eq", "ne"):
        sql, params = equal(cond.value)
    elif op in ("in", "nin"):
        sql, params = any_of(cond.value)
    elif op == "glob":
        return some("type = 'text' AND regexp(?, value)", [glob_to_regex(cond.value)])
    else:
        symbol = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[op]
        kind = "type = 'text'" if isinstance(cond.value, str) else \
            "type IN ('integer', 'real')"
        return some(f"{kind} AND value {symbol} ?", [cond.value])
    return (f"NOT {sql}" if op in ("ne", "nin") else sql), params



def _fts_match(terms: list[tuple[str, ...]]) -> str:
    """An FTS5 MATCH expression: the terms as quoted phrases, OR-ed."""
    return " OR ".join('"' + " ".join(term).replace('"', '""') + '"' for term in terms)


class FtsTokenizer:
    """FTS5's own tokenizer (`FTS_TOKENIZER`) on a private in-memory database, so the
    in-memory keyword copy sees exactly the tokens FTS5 stores: Porter stems, folded
    diacritics."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        self.db.execute(f"CREATE VIRTUAL TABLE scratch USING fts5(text, tokenize="
                        f"\"{FTS_TOKENIZER}\")")
        self.db.execute("CREATE VIRTUAL TABLE scratch_instance USING "
                        "fts5vocab(scratch, instance)")
        self._words: dict[str, tuple[str, ...]] = {}

    def tokens(self, term: tuple[str, ...]) -> tuple[str, ...]:
        """The tokens FTS5 makes of a term's words, in order."""
        return tuple(token for word in term for token in self._word(word))

    def _word(self, word: str) -> tuple[str, ...]:
        found = self._words.get(word)
        if found is None:
            with self.lock:
                self.db.execute("INSERT INTO scratch(rowid, text) VALUES (1, ?)", [word])
                found = tuple(r[0] for r in self.db.execute(
                    "SELECT term FROM scratch_instance ORDER BY offset"))
                self.db.execute("DELETE FROM scratch")
            if len(self._words) > 100_000:
                self._words.clear()
            self._words[word] = found
        return found

    def counts(self, texts: list[tuple[int, str]]) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """`(token, ids, offsets)` of the tokens of `(id, text)` pairs."""
        with self.lock:
            self.db.execute("BEGIN")
            self.db.executemany("INSERT INTO scratch(rowid, text) VALUES (?, ?)", texts)
            found = list(parse_occurrences(self.db.execute(
                "SELECT term, group_concat(doc), group_concat(offset) FROM scratch_instance "
                "GROUP BY term")))
            self.db.execute("DELETE FROM scratch")
            self.db.execute("COMMIT")
        return found
