"""The SQLite side of an index: documents, passages and their vectors — the source of truth.

The only module that imports sqlite_utils. Writes happen in short transactions, each of which
bumps a `generation` counter, so a crash (even `kill -9`) loses at most the transaction in
flight and the FAISS file can tell whether it is behind. The schema evolves by numbered
migrations, applied in order and recorded in `_migrations` (as llm does).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sqlite_utils

from .errors import IndexCorruptError

DB_NAME = "passages.db"
MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = []


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


@dataclass(frozen=True)
class StoredDocument:
    id: int
    path: str
    content_hash: str
    size: int
    mtime: float


@dataclass(frozen=True)
class NewPassage:
    ordinal: int
    start: int
    end: int
    line_start: int
    line_end: int
    tokens: int
    text: str


@dataclass(frozen=True)
class PassageRow:
    id: int
    document_id: int
    root: str
    path: str
    ordinal: int
    start: int
    end: int
    line_start: int
    line_end: int
    text: str


class Store:
    """An index's SQLite database. Thread-safe: one connection, used under a lock."""

    def __init__(self, path: Path):
        self.path = path
        try:
            conn = sqlite3.connect(str(path), timeout=30, check_same_thread=False)
            self.db = sqlite_utils.Database(conn)
            with self.db.ensure_autocommit_on():
                self.db.execute("PRAGMA journal_mode=wal")
                self.db.execute("PRAGMA synchronous=normal")
                self.db.execute("PRAGMA foreign_keys=on")
            self.lock = threading.RLock()
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise IndexCorruptError(
                f"{path} is not a readable bertsearch database ({exc}). Delete the index "
                f"folder and index the documents again.") from exc

    @classmethod
    def open(cls, folder: Path) -> Store:
        return cls(folder / DB_NAME)

    def close(self) -> None:
        self.db.conn.close()

    def _migrate(self) -> None:
        with self.lock, self.db.atomic():
            if "_migrations" not in self.db.table_names():
                self.db["_migrations"].create({"name": str, "applied_at": float}, pk="name")
            done = {row["name"] for row in self.db["_migrations"].rows}
            for fn in MIGRATIONS:
                if fn.__name__ not in done:
                    fn(self.db)
                    self.db["_migrations"].insert({"name": fn.__name__, "applied_at": time.time()})

    # -- settings and generation ----------------------------------------------------------

    def settings(self) -> dict:
        with self.lock:
            return {row["key"]: json.loads(row["value"]) for row in self.db["settings"].rows}

    def save_settings(self, values: dict) -> None:
        with self.lock, self.db.atomic():
            self.db["settings"].upsert_all(
                [{"key": k, "value": json.dumps(v)} for k, v in values.items()], pk="key")

    def generation(self) -> int:
        """A counter bumped by every write: the FAISS file records the value it reflects."""
        with self.lock:
            row = self.db.execute("SELECT value FROM settings WHERE key = 'generation'").fetchone()
            return int(row[0])

    def _bump_generation(self) -> None:
        self.db.execute(
            "UPDATE settings SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")

    # -- documents ------------------------------------------------------------------------

    def documents(self, root: str) -> dict[str, StoredDocument]:
        """The documents indexed from folder `root`, by relative path."""
        with self.lock:
            rows = self.db.execute(
                "SELECT id, path, content_hash, size, mtime FROM documents WHERE root = ?",
                [root]).fetchall()
        return {r[1]: StoredDocument(*r) for r in rows}

    def write_documents(self, root: str, documents: list[tuple], vectors: np.ndarray) -> None:
        """Insert or replace documents with their passages and vectors, in one transaction.

        Args:
            root: the indexed folder.
            documents: `(relpath, content_hash, size, mtime, [NewPassage, ...])` tuples.
            vectors: float32 `(total passages, dimension)`, in the order of the passages.
        """
        rows = iter(np.ascontiguousarray(vectors, dtype=np.float32))
        with self.lock, self.db.atomic():
            for relpath, digest, size, mtime, passages in documents:
                old = self.db.execute("SELECT id FROM documents WHERE root = ? AND path = ?",
                                      [root, relpath]).fetchone()
                if old:
                    self._delete_documents([old[0]])
                doc_id = self.db["documents"].insert({
                    "root": root, "path": relpath, "content_hash": digest, "size": size,
                    "mtime": mtime, "passages": len(passages), "indexed_at": time.time(),
                }).last_pk
                self.db.conn.executemany(
                    'INSERT INTO passages (document_id, ordinal, start, "end", line_start, '
                    "line_end, tokens, text, vector) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(doc_id, p.ordinal, p.start, p.end, p.line_start, p.line_end, p.tokens,
                      p.text, next(rows).tobytes()) for p in passages])
            self._bump_generation()

    def touch_document(self, doc_id: int, size: int, mtime: float) -> None:
        """Record a new size/mtime for a document whose content did not change."""
        with self.lock, self.db.atomic():
            self.db["documents"].update(doc_id, {"size": size, "mtime": mtime})

    def delete_documents(self, ids: list[int]) -> int:
        """Delete documents and their passages; returns how many passages went."""
        if not ids:
            return 0
        with self.lock, self.db.atomic():
            removed = self._delete_documents(ids)
            self._bump_generation()
        return removed

    def _delete_documents(self, ids: list[int]) -> int:
        marks = ",".join("?" * len(ids))
        removed = self.db.execute(
            f"DELETE FROM passages WHERE document_id IN ({marks})", ids).rowcount
        self.db.execute(f"DELETE FROM documents WHERE id IN ({marks})", ids)
        return removed

    def clear(self, settings: dict) -> None:
        """Drop every document and passage and start over with new settings (--rebuild)."""
        with self.lock, self.db.atomic():
            self.db.execute("DELETE FROM passages")
            self.db.execute("DELETE FROM documents")
            self.db.execute("DELETE FROM settings WHERE key != 'generation'")
            self.db["settings"].insert_all(
                [{"key": k, "value": json.dumps(v)} for k, v in settings.items()])
            self._bump_generation()

    # -- passages and vectors -------------------------------------------------------------

    def counts(self) -> tuple[int, int]:
        """(documents, passages)."""
        with self.lock:
            docs = self.db.execute("SELECT count(*) FROM documents").fetchone()[0]
            passages = self.db.execute("SELECT count(*) FROM passages").fetchone()[0]
        return docs, passages

    def passage_ids(self) -> np.ndarray:
        with self.lock:
            rows = self.db.execute("SELECT id FROM passages ORDER BY id").fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def vectors(self, ids: np.ndarray | None = None,
                batch: int = 20_000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield `(ids, vectors)` blocks: all passages, or those with the given ids."""
        if ids is None:
            ids = self.passage_ids()
        for start in range(0, len(ids), batch):
            block = [int(i) for i in ids[start:start + batch]]
            with self.lock:
                rows = self.db.execute(
                    f"SELECT id, vector FROM passages WHERE id IN ({','.join('?' * len(block))})",
                    block).fetchall()
            if rows:
                got = np.array([r[0] for r in rows], dtype=np.int64)
                matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32)
                yield got, matrix.reshape(len(rows), -1)

    def passages(self, ids: list[int]) -> dict[int, PassageRow]:
        """Passage rows (with their document's path) by id; missing ids are left out."""
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        with self.lock:
            rows = self.db.execute(
                f'SELECT p.id, p.document_id, d.root, d.path, p.ordinal, p.start, p."end", '
                f"p.line_start, p.line_end, p.text FROM passages p "
                f"JOIN documents d ON d.id = p.document_id WHERE p.id IN ({marks})",
                [int(i) for i in ids]).fetchall()
        return {r[0]: PassageRow(*r) for r in rows}

    def document_passages(self, document_id: int) -> list[PassageRow]:
        """All passages of one document, in order."""
        with self.lock:
            ids = [r[0] for r in self.db.execute(
                "SELECT id FROM passages WHERE document_id = ? ORDER BY ordinal",
                [document_id]).fetchall()]
        rows = self.passages(ids)
        return [rows[i] for i in ids]

    def iter_documents(self) -> Iterator[tuple[int, str, str]]:
        """(id, root, path) of every document, in id order."""
        with self.lock:
            rows = self.db.execute("SELECT id, root, path FROM documents ORDER BY id").fetchall()
        yield from rows
