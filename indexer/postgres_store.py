"""The shared store: one PostgreSQL database (pgvector for the vectors, full-text search for
the keywords) that many indexers and API servers use at once, with read replicas for queries.

The only module that imports psycopg, psycopg_pool and pgvector; they are imported when a
`postgresql://` URL is opened (`pip install 'bertsearch[postgres]'`), never by the plain
install.

Layout: the tables live in their own schema (`bertsearch` unless the URL says `?schema=...`,
so several indexes can share a database): `documents` (metadata as jsonb), `passages` (text,
heading path, a `vector(d)` column under an HNSW index, a `tsvector` column under a GIN
index), `settings`, a one-row `generation` counter, `writer` (who holds the writer lock) and
`attachments` (files kept with the index: an adapted coherence model).

Writes are short transactions that first bump the generation row: its row lock queues
writers one after another (two indexers never interleave a document's passages), and a
reader learns of any write by reading one number. A transaction that dies (`kill -9`, a
dropped connection) is rolled back by the server: a document's passages are all there or
none. Passage ids come from an identity column, never reused.

Dense search is exact (pgvector's `inner_product` over the matching passages, ties by id:
the order of a brute-force search) when asked, for small collections (`auto`, as the
embedded store) and for filters that match at most `EXACT_SUBSET_MAX` passages; otherwise
it walks the HNSW graph (built over half-precision copies of the vectors; what it finds is
scored at full precision), a filtered walk with iterative scans (`hnsw.iterative_scan`), so
a broad filter still fills k, and falls back to exact when the walk runs dry (an
unfiltered walk writes its limit, rounded up to a step, into the statement, so PostgreSQL
plans it once: `LIMIT_STEPS`). The documents' first passages, while there are at most
`EXACT_SUBSET_MAX` documents, are scored from an in-memory copy of their vectors instead
(`indexer.first_passages`). A search reads the generation once and a page of hits brings its
passages along (`one_search`).
Keyword search reads the words as `indexer.keywords` sees them (so `CONFIG_DEBUG_FS` stays
one word, which PostgreSQL's own parser would split) and stems them with the
`english_stem` dictionary; ranking is BM25 with FTS5's formula over those lexemes, from an
in-memory copy each process reads once and catches up per generation (`indexer.bm25`), as
the embedded store does.

URL options (removed before the URL reaches libpq): `schema` (default `bertsearch`),
`pool_size` (connections per process, default 4), `ef_search` (HNSW candidate list; default
recorded in the index), `hnsw_m` and `hnsw_ef_construction` (when the HNSW index is built).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import numpy as np

from .bm25 import KEYWORD_EPOCH, Bm25Postings, KeywordCopy, parse_occurrences, top_k
from .errors import (
    IndexBusyError,
    IndexCorruptError,
    IndexerError,
    IndexMismatchError,
    IndexNotFoundError,
    IndexReadOnlyError,
    IndexUnavailableError,
)
from .filters import ID_FIELD, All, Any, Condition, Filter, glob_to_regex
from .first_passages import VECTOR_EPOCH, FirstPassageCopy
from .keywords import words
from .store import (
    FOLDER,
    LAST,
    MIDDLE,
    PARTIAL,
    WHOLE,
    DocumentRecord,
    NewDocument,
    PassageRow,
    Store,
    StoredDocument,
)
from .vectors import EXACT_SUBSET_MAX, choose_kind

DEFAULT_SCHEMA = "bertsearch"
DEFAULT_POOL_SIZE = 4
# A sparser graph than the embedded store's FAISS one (m 32, ef_construction 200), built
# with more care: pgvector reads a page for every neighbour it scores, so each of the 2 * m
# neighbours a step looks at costs more than in FAISS, and a better-built graph needs fewer
# steps. On 100,000 distinct linux-docs passages (half-precision graph; bench/postgres.py
# --real-index, bench/RESULTS.md), paired against the embedded store's p50 at ef_search 80:
# m 24 / ef_construction 400 recall@10 0.988 at 1.6-1.7x; m 32 / 200 0.987 at 1.9-2.1x;
# m 24 / 200 0.987 at 1.6x but 0.974 at ef_search 60; m 16 and 20 below 0.985 at 80. The
# candidate list is shorter than FAISS's 256 for the same reason.
HNSW_M = 24
HNSW_EF_CONSTRUCTION = 400
HNSW_EF_SEARCH = 80
# a dense ranking at most this long reads its passages along (a page of hits; deeper lists
# are fused or grouped, and only the passages shown are read)
ROWS_WITH_RANKING = 20
# what an unfiltered walk's limit is rounded up to (see `_approximate`); the step is what
# the graph is asked for: k 81 walks a candidate list of 100, k 201 one of 300
LIMIT_STEPS = (10, 20, 50, 100, 150, 200, 300, 500, 750, 1000)
HALFVEC_MAX_DIMENSIONS = 4000  # pgvector's limit for an HNSW index over halfvec
MAX_BUILD_MEMORY_KB = 1024 * 1024  # maintenance_work_mem for building the graph, at most
MIN_PGVECTOR = (0, 8)  # iterative index scans
INLINE_DIMENSIONS = 1000  # vectors up to 4 kB stay in the row, whatever the text beside them
URL_OPTIONS = ("schema", "pool_size", "ef_search", "hnsw_m", "hnsw_ef_construction")
CONNECT_TIMEOUT_S = 10
POOL_TIMEOUT_S = 10  # waiting for a free (or a new) pooled connection


def _psycopg():
    """psycopg, psycopg_pool and pgvector's adapter, or a one-line hint to install them."""
    from embedder.frameworks import require

    psycopg = require("psycopg", "postgres")
    pool = require("psycopg_pool", "postgres")
    register = require("pgvector.psycopg", "postgres").register_vector
    return psycopg, pool, register


# -- migrations: numbered, recorded in _migrations, applied by writers under a lock ----------

MIGRATIONS: list[Callable] = []


def migration(fn):
    MIGRATIONS.append(fn)
    return fn


@migration
def m001_initial(conn) -> None:
    conn.execute("""
        CREATE TABLE settings (key text PRIMARY KEY, value jsonb NOT NULL);
        CREATE TABLE generation (id int PRIMARY KEY CHECK (id = 1), value bigint NOT NULL);
        INSERT INTO generation VALUES (1, 0);
        CREATE TABLE writer (id int PRIMARY KEY CHECK (id = 1), holder jsonb NOT NULL);
        CREATE TABLE documents (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            key text NOT NULL UNIQUE,
            origin text NOT NULL,
            root text NOT NULL,
            path text NOT NULL,
            content_hash text NOT NULL,
            size bigint NOT NULL,
            mtime double precision NOT NULL,
            passages integer NOT NULL,
            indexed_at double precision NOT NULL,
            metadata jsonb NOT NULL DEFAULT '{}',
            text text);
        CREATE INDEX documents_folder ON documents (root, origin);
        CREATE TABLE passages (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            document_id bigint NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
            ordinal integer NOT NULL,
            start integer NOT NULL,
            "end" integer NOT NULL,
            line_start integer NOT NULL,
            line_end integer NOT NULL,
            tokens integer NOT NULL,
            text text NOT NULL,
            headings jsonb NOT NULL DEFAULT '[]',
            embedding vector NOT NULL,
            terms tsvector NOT NULL,
            UNIQUE (document_id, ordinal));
        CREATE INDEX passages_terms ON passages USING gin (terms);
        CREATE INDEX passages_first ON passages (id) WHERE ordinal = 0;
        CREATE TABLE attachments (
            name text NOT NULL, file text NOT NULL, data bytea NOT NULL,
            PRIMARY KEY (name, file));
        """)
    # A word's lexeme: its english_stem (a stopword stays itself: FTS5 keeps them too).
    conn.execute("""
        CREATE FUNCTION bertsearch_lexeme(word text) RETURNS text
        LANGUAGE sql STABLE PARALLEL SAFE
        AS $$ SELECT coalesce((ts_lexize('english_stem', word))[1], word) $$""")
    # The keyword entry of a passage from its words (`indexer.keywords.words`, joined by
    # spaces): each lexeme with the positions of its words, so phrases can match.
    conn.execute("""
        CREATE FUNCTION bertsearch_tsvector(words text) RETURNS tsvector
        LANGUAGE sql STABLE PARALLEL SAFE AS $$
            SELECT coalesce(string_agg(quote_literal(lexeme) || ':' || positions, ' ')
                            ::tsvector, ''::tsvector)
            FROM (SELECT bertsearch_lexeme(w) AS lexeme,
                         string_agg(least(n, 16383)::text, ',' ORDER BY n) AS positions
                  FROM unnest(string_to_array(words, ' ')) WITH ORDINALITY AS t(w, n)
                  WHERE w <> '' AND octet_length(w) < 2048
                  GROUP BY 1) s $$""")
    # A keyword query from terms (a JSON list of word lists): phrases OR'ed, words within a
    # phrase adjacent.
    conn.execute("""
        CREATE FUNCTION bertsearch_tsquery(terms jsonb) RETURNS tsquery
        LANGUAGE sql STABLE PARALLEL SAFE AS $$
            SELECT string_agg(phrase, ' | ')::tsquery
            FROM (SELECT '(' || string_agg(quote_literal(bertsearch_lexeme(w)), ' <-> '
                                           ORDER BY n) || ')' AS phrase
                  FROM jsonb_array_elements(terms) WITH ORDINALITY AS t(term, i),
                       jsonb_array_elements_text(t.term) WITH ORDINALITY AS x(w, n)
                  WHERE w <> '' AND octet_length(w) < 2048
                  GROUP BY i) s $$""")


_PASSAGE_COLUMNS = ('p.id, p.document_id, d.root, d.path, p.ordinal, p.start, p."end", '
                    "p.line_start, p.line_end, p.text, d.key, p.headings, d.metadata")
_STORED_COLUMNS = "id, key, origin, path, content_hash, size, mtime, metadata, passages"
HNSW_INDEX = "passages_embedding_hnsw"


class Shape(NamedTuple):
    """What decides how a dense search runs (`PostgresStore._shape`)."""

    documents: int
    passages: int
    index_type: str  # auto, flat or hnsw, as recorded
    graph: str | None  # the HNSW graph's vectors: halfvec, vector (older indexes) or None
    dimension: int

    def graph_possible(self) -> bool:
        """Whether pgvector can build the graph: a typed column of at most
        `HALFVEC_MAX_DIMENSIONS` (larger vectors are searched exactly)."""
        return 0 < self.dimension <= HALFVEC_MAX_DIMENSIONS

    def distance(self) -> str:
        """The SQL distance the graph orders by, to the query `%b` (its expression index's
        form, or the planner would not walk it)."""
        if self.graph == "halfvec":
            return f"p.embedding::halfvec({self.dimension}) <#> %b::halfvec({self.dimension})"
        return "p.embedding <#> %b"


@dataclass
class OneSearch:
    """What one search keeps (`PostgresStore.one_search`): the generation it read, and the
    passages its short rankings read along."""

    generation: int | None = None
    rows: dict[int, PassageRow] = field(default_factory=dict)


class PostgresStore(Store):
    """An index in a PostgreSQL database. Thread-safe: a pool of connections, each
    statement or transaction on one of them."""

    kind = "postgresql"
    # a filtered search matching at most this many passages is exact (as the embedded store)
    exact_subset_max = EXACT_SUBSET_MAX

    def __init__(self, url: str, options: dict, conninfo: str, read_only: bool):
        self.url = url
        self.location = redact(url)
        self.options = options
        self.schema = options["schema"]
        self.conninfo = conninfo
        self.read_only = read_only
        self.damage: str | None = None
        self.ef_search = HNSW_EF_SEARCH
        self._seen = -1  # the generation `refresh` saw last
        self._searching = threading.local()  # .search: this thread's OneSearch, if any
        self._lock_session = None  # the connection holding the writer lock, while held
        self._lock = threading.Lock()
        self._cache: dict = {}  # generation-scoped answers (counts, matching documents)
        self._generation = -1
        self._keywords = KeywordCopy()  # in-memory BM25 copy, see keyword_search
        self._firsts = FirstPassageCopy()  # the first passages' vectors, see _dense_one
        self._lexeme_cache: dict[str, str] = {}
        self._pool = None

    # -- opening --------------------------------------------------------------------------

    @classmethod
    def open(cls, url: str, create: bool = False, read_only: bool = False) -> PostgresStore:
        """Open (or, with `create`, make) the index in the database `url`.

        A standby (a streaming read replica) opens read-only by itself; asking it to take
        writes raises `IndexReadOnlyError`.

        Raises:
            IndexerError: a URL libpq cannot read, or pgvector missing or too old.
            IndexUnavailableError: the server cannot be reached.
            IndexNotFoundError: no index in that database (schema) and not `create`.
        """
        psycopg, _, _ = _psycopg()
        clean, options = split_url(url)
        store = cls(url, options, clean, read_only)
        try:
            with store._connect(register=False) as conn:
                standby = conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
                if standby and create:
                    raise IndexReadOnlyError(
                        f"The database at '{store.location}' is a read-only replica (a "
                        f"standby): index into the primary and serve from the replica.")
                store.read_only = read_only or standby
                store._prepare(conn, create)
        except psycopg.Error as exc:
            raise store._error(exc) from None
        store._start_pool()
        return store

    def _connect(self, register: bool = True, autocommit: bool = True):
        """A new connection with the schema first on the search path (and the vector type
        known to psycopg when `register`)."""
        psycopg, _, register_vector = _psycopg()
        try:
            conn = psycopg.connect(self.conninfo, autocommit=autocommit)
        except psycopg.OperationalError as exc:
            raise IndexUnavailableError(
                f"Cannot connect to PostgreSQL at '{self.location}': {_first_line(exc)}. "
                f"Check that the server runs and the URL (host, port, database, user, "
                f"password or ~/.pgpass) is right.") from None
        try:
            self._configure(conn, register_vector if register else None)
        except BaseException:
            conn.close()
            raise
        return conn

    def _configure(self, conn, register_vector=None) -> None:
        """Per-connection settings: the search path, the HNSW candidate list, read-only.
        Iterative scans are left off here: they cost an unfiltered search ~10 % (measured),
        so only filtered walks turn them on (`_approximate`)."""
        conn.execute("SELECT set_config('search_path', quote_ident(%s) || ', ' || "
                     "current_setting('search_path'), false)", [self.schema])
        if self.read_only:
            conn.execute("SET default_transaction_read_only = on")
        if register_vector is not None:
            register_vector(conn)
            conn.execute("SELECT set_config('hnsw.ef_search', %s, false)",
                         [str(self.ef_search)])

    def _prepare(self, conn, create: bool) -> None:
        """Check pgvector, create the schema if asked, apply pending migrations."""
        version = conn.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
        exists = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s",
                              [self.schema]).fetchone()
        if not exists and not create:
            raise IndexNotFoundError(
                f"No index at '{self.location}' (the database has no '{self.schema}' "
                f"schema). Create one with: bertsearch index FOLDER --index "
                f"'{self.location}'")
        if version is None:
            version = self._create_extension(conn) if create else None
            if version is None:
                raise IndexerError(
                    f"The database at '{self.location}' lacks the pgvector extension: a "
                    f"superuser must run CREATE EXTENSION vector in it.")
        if tuple(int(x) for x in re.findall(r"\d+", version[0])[:2]) < MIN_PGVECTOR:
            raise IndexerError(
                f"The database at '{self.location}' has pgvector {version[0]}; bertsearch "
                f"needs 0.8 or later (ALTER EXTENSION vector UPDATE).")
        self._migrate(conn)
        row = conn.execute("SELECT value FROM settings WHERE key = 'hnsw_ef_search'"
                           ).fetchone()
        self.ef_search = int(self.options.get("ef_search") or (row and row[0])
                             or HNSW_EF_SEARCH)

    def _create_extension(self, conn):
        psycopg, _, _ = _psycopg()
        try:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except psycopg.Error as exc:
            raise IndexerError(
                f"Cannot create the pgvector extension in '{self.location}' "
                f"({_first_line(exc)}). Install pgvector 0.8 or later on the server, and "
                f"have a superuser run CREATE EXTENSION vector in this database.") from None
        return conn.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()

    def _migrate(self, conn) -> None:
        """Apply pending migrations (none: nothing is written, so a role that may only read
        opens an index as well as its owner)."""
        psycopg, _, _ = _psycopg()
        if not self._pending(conn):
            return
        if self.read_only:
            raise IndexReadOnlyError(
                f"The index at '{self.location}' was made by an older bertsearch (or is not "
                f"made yet) and must be upgraded once by a writer (run `bertsearch index` "
                f"against the primary) before it can be served read-only.")
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                             [f"bertsearch migrations {self.schema}"])
                conn.execute(f"CREATE SCHEMA IF NOT EXISTS {_ident(self.schema)}")
                conn.execute("CREATE TABLE IF NOT EXISTS _migrations "
                             "(name text PRIMARY KEY, applied_at double precision NOT NULL)")
                for fn in self._pending(conn):
                    fn(conn)
                    conn.execute("INSERT INTO _migrations VALUES (%s, %s)",
                                 [fn.__name__, time.time()])
        except psycopg.errors.InsufficientPrivilege as exc:
            raise IndexerError(
                f"The database user may not create bertsearch's tables at '{self.location}' "
                f"({_first_line(exc)}): grant it CREATE on the database (or the schema "
                f"'{self.schema}'), or have the owner run `bertsearch index` once.") from None

    def _pending(self, conn) -> list:
        exists = conn.execute("SELECT to_regclass(quote_ident(%s) || '._migrations')",
                              [self.schema]).fetchone()[0]
        if exists is None:
            return list(MIGRATIONS)
        done = {r[0] for r in conn.execute("SELECT name FROM _migrations")}
        return [fn for fn in MIGRATIONS if fn.__name__ not in done]

    def _start_pool(self) -> None:
        _, pool_module, register_vector = _psycopg()
        self._pool = pool_module.ConnectionPool(
            self.conninfo, min_size=1, max_size=int(self.options["pool_size"]),
            kwargs={"autocommit": True}, timeout=POOL_TIMEOUT_S, open=True, name="bertsearch",
            configure=lambda conn: self._configure(conn, register_vector))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()

    # -- running statements -----------------------------------------------------------------

    def _run(self, work: Callable, retry: bool = True):
        """`work(connection)` on a pooled connection. A connection the server dropped
        (restart, failover, idle timeout) or a statement a replica cancelled is tried once
        more on a fresh connection when `retry`; other database trouble becomes a clear
        `IndexerError`."""
        psycopg, pool_module, _ = _psycopg()
        try:
            with self._pool.connection() as conn:
                return work(conn)
        except pool_module.PoolTimeout:
            raise IndexUnavailableError(
                f"No connection to PostgreSQL at '{self.location}' within {POOL_TIMEOUT_S} "
                f"seconds: the server is down, unreachable or out of connections.") from None
        except psycopg.Error as exc:
            if not retry or not _transient(exc):
                raise self._error(exc) from None
        self._pool.check()  # the pool drops its other dead connections and makes new ones
        try:  # meanwhile the retry takes a connection of its own, so it fails fast if need be
            with self._connect() as conn:
                return work(conn)
        except psycopg.Error as exc:
            raise self._error(exc) from None

    def _error(self, exc) -> Exception:
        """What a database error means for the index, as an `IndexerError`."""
        psycopg, _, _ = _psycopg()
        errors = psycopg.errors
        message = _first_line(exc)
        if isinstance(exc, errors.ReadOnlySqlTransaction):
            return IndexReadOnlyError(
                f"The database at '{self.location}' only takes reads (a replica, or opened "
                f"read-only): write to the primary instead.")
        if isinstance(exc, errors.InsufficientPrivilege):
            return IndexReadOnlyError(
                f"The database user may not change the index at '{self.location}' "
                f"({message}); connect as a role with write grants to change it.")
        if isinstance(exc, (errors.DataCorrupted, errors.IndexCorrupted)):
            self.damage = message
            return IndexCorruptError(
                f"PostgreSQL reports damage in the index at '{self.location}' ({message}). "
                f"Run `bertsearch check --index '{self.location}' --repair`.")
        if isinstance(exc, errors.UndefinedTable):
            return IndexNotFoundError(
                f"The index at '{self.location}' is gone (its tables were dropped: "
                f"{message}). Index the documents again to recreate it.")
        if isinstance(exc, psycopg.OperationalError):
            return IndexUnavailableError(
                f"Lost the connection to PostgreSQL at '{self.location}' ({message}); it did "
                f"not come back on a retry. Check the server, then try again.")
        return IndexerError(f"PostgreSQL error at '{self.location}': {message}")

    def _query(self, sql: str, params=(), retry: bool = True) -> list:
        return self._run(lambda conn: conn.execute(sql, params).fetchall(), retry)

    def _write(self, work: Callable, retry: bool = True):
        """`work(connection)` in one transaction that first bumps the generation (which
        also queues concurrent writers on that row's lock). Retried once after a dropped
        connection when `retry`: every write here leaves the same state when run twice."""
        self._refuse_read_only()

        def transaction(conn):
            with conn.transaction():
                conn.execute("UPDATE generation SET value = value + 1 WHERE id = 1")
                return work(conn)

        try:
            return self._run(transaction, retry)
        finally:
            search = self._search()
            if search is not None:  # read afresh after this thread's own write
                search.generation, search.rows = None, {}

    def _refuse_read_only(self) -> None:
        if self.read_only:
            raise IndexReadOnlyError(
                f"The index at '{self.location}' is open read-only (a replica, or opened for "
                f"reading): it can be searched but not changed.")

    def _cached(self, key, compute: Callable):
        """`compute()`, remembered until the generation moves on."""
        generation = self.generation()
        with self._lock:
            if self._generation != generation:
                self._cache, self._generation = {}, generation
            if key in self._cache:
                return self._cache[key]
        value = compute()
        with self._lock:
            if self._generation == generation:
                self._cache[key] = value
        return value

    # -- settings, generation, writer lock --------------------------------------------------

    def settings(self) -> dict:
        return dict(self._query("SELECT key, value FROM settings"))

    def save_settings(self, values: dict) -> None:
        def work(conn):
            self._put_settings(conn, values)
            self._shape_vectors(conn)

        self._write(work)

    def _put_settings(self, conn, values: dict) -> None:
        psycopg, _, _ = _psycopg()
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO settings VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET "
                "value = excluded.value",
                [(k, psycopg.types.json.Jsonb(_clean_json(v))) for k, v in values.items()])

    def generation(self) -> int:
        search = self._search()
        if search is not None and search.generation is not None:
            return search.generation
        generation = self._query("SELECT value FROM generation")[0][0]
        if search is not None:  # kept for the rest of the search
            search.generation = generation
        return generation

    def _search(self) -> OneSearch | None:
        return getattr(self._searching, "search", None)

    @contextlib.contextmanager
    def one_search(self):
        """One read of the generation per search (a round trip each: a hybrid search read
        it three times), and the passages a short ranking read along (`_approximate`)
        kept for the search's `passages` call: see `Store.one_search`."""
        if self._search() is not None:  # nested: the outer context's
            yield
            return
        self._searching.search = OneSearch()
        try:
            yield
        finally:
            self._searching.search = None

    def clear(self, settings: dict) -> None:
        def work(conn):
            conn.execute("DELETE FROM passages")
            conn.execute("DELETE FROM documents")
            conn.execute("DELETE FROM settings")
            self._put_settings(conn, settings)
            self._shape_vectors(conn)

        self._write(work)

    def _shape_vectors(self, conn) -> None:
        """Give the vector column the index's dimension, and drop the HNSW index when the
        index type is `flat` (`checkpoint` builds it when wanted)."""
        settings = dict(conn.execute("SELECT key, value FROM settings").fetchall())
        dimension = int(settings.get("dimension") or 0)
        typmod = conn.execute(
            "SELECT atttypmod FROM pg_attribute WHERE attrelid = 'passages'::regclass "
            "AND attname = 'embedding'").fetchone()[0]
        if dimension and typmod != dimension:
            if conn.execute("SELECT EXISTS (SELECT 1 FROM passages)").fetchone()[0]:
                raise IndexMismatchError(
                    f"The index at '{self.location}' holds {typmod}-dimensional vectors; "
                    f"pass --rebuild to re-embed with a {dimension}-dimensional model.")
            conn.execute(f"DROP INDEX IF EXISTS {HNSW_INDEX}")
            conn.execute(f"ALTER TABLE passages ALTER COLUMN embedding TYPE vector({dimension})")
            # inline, not in TOAST (pgvector's default once a row passes 2 kB): an exact
            # search reads every vector, and a TOAST fetch each tripled its cost (measured)
            storage = "PLAIN" if dimension <= INLINE_DIMENSIONS else "MAIN"
            conn.execute(f"ALTER TABLE passages ALTER COLUMN embedding SET STORAGE {storage}")
        if settings.get("index_type") == "flat":
            conn.execute(f"DROP INDEX IF EXISTS {HNSW_INDEX}")

    def checkpoint(self) -> None:
        """Build the HNSW index once it is wanted (`hnsw`, or `auto` from
        `vectors.AUTO_HNSW_FROM` passages, as the embedded store builds its FAISS graph) and
        missing: in one go over
        the rows, which gives a better graph in a fraction of the time of growing it from
        an empty table row by row; later rows join it as they are written. Built
        CONCURRENTLY (writes go on meanwhile) by whoever holds the writer lock, or can take
        it without waiting; a reader or a busy lock leaves it to the next writer."""
        if self.read_only:
            return
        shape = self._shape()
        if shape.graph or shape.index_type == "flat" or not shape.graph_possible() or \
                choose_kind(shape.index_type, shape.passages) == "flat":
            return
        if self._lock_session is not None:
            self._build_hnsw(self._lock_session, shape)
            return
        with contextlib.suppress(IndexBusyError), self.writer_lock("bertsearch (HNSW build)"):
            self._build_hnsw(self._lock_session, shape)

    def _build_hnsw(self, conn, shape: Shape) -> None:
        """The graph over `embedding::halfvec(d)`, d the column's own dimension (the
        expression `Shape.distance` orders by, or the planner would not walk it)."""
        psycopg, _, _ = _psycopg()
        m = int(self.options.get("hnsw_m") or HNSW_M)
        build = int(self.options.get("hnsw_ef_construction") or HNSW_EF_CONSTRUCTION)
        dimension, passages = shape.dimension, shape.passages
        memory_kb = min(MAX_BUILD_MEMORY_KB,
                        max(65536, 3 * passages * (4 * dimension + 16 * m + 128) // 2048))
        try:
            conn.execute(f"SET maintenance_work_mem = '{memory_kb}kB'")
            valid = conn.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = "
                                 "to_regclass(%s)", [HNSW_INDEX]).fetchone()
            if valid and not valid[0]:  # an interrupted concurrent build
                conn.execute(f"DROP INDEX CONCURRENTLY {HNSW_INDEX}")
            # half-precision vectors in the graph: half the pages to walk, and a recall@10
            # equal to full precision's (0.981 vs 0.981 at ef_search 60, 0.987 vs 0.986 at 80)
            # 20 % faster; the candidates it finds are scored at full precision
            conn.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {HNSW_INDEX} ON passages "
                         f"USING hnsw ((embedding::halfvec({dimension})) halfvec_ip_ops) "
                         f"WITH (m = {m}, ef_construction = {build})")
        except psycopg.Error as exc:
            raise self._error(exc) from None
        self.save_settings({"hnsw_m": m, "hnsw_ef_construction": build,
                            "hnsw_ef_search": self.ef_search})

    @contextlib.contextmanager
    def writer_lock(self, owner: str, wait: bool = False):
        """A session-level advisory lock, held on a connection of its own for the duration
        of the block: the server releases it when this process lets go or dies (its session
        ends), so a crashed writer never leaves it behind. Who holds it goes in `writer`."""
        psycopg, _, _ = _psycopg()
        self._refuse_read_only()
        conn = self._connect(register=False)
        key = f"bertsearch writer {self.schema}"
        try:
            self._take_lock(conn, key, owner, wait)
        except BaseException as exc:
            conn.close()
            if isinstance(exc, psycopg.Error):
                raise self._error(exc) from None
            raise
        self._lock_session = conn
        try:
            yield
        finally:
            self._lock_session = None
            conn.close()  # ends the session: the lock goes with it

    def _take_lock(self, conn, key: str, owner: str, wait: bool) -> None:
        """Take (or, with `wait`, wait for) the lock on `conn` and say who holds it."""
        if wait:
            conn.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", [key])
        elif not conn.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))",
                              [key]).fetchone()[0]:
            holder = conn.execute("SELECT holder FROM writer").fetchone()
            raise IndexBusyError(
                f"Another writer is updating the index at '{self.location}' "
                f"({_holder(holder[0] if holder else None)}). Wait for it to finish, or pass "
                f"--wait to wait for it.")
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "command": owner,
                  "since": time.time()}
        conn.execute("INSERT INTO writer VALUES (1, %s) ON CONFLICT (id) DO UPDATE SET "
                     "holder = excluded.holder", [json.dumps(holder)])

    # -- documents ----------------------------------------------------------------------------

    def folder_documents(self, root: str) -> dict[str, StoredDocument]:
        rows = self._query(f"SELECT {_STORED_COLUMNS} FROM documents WHERE root = %s AND "
                           f"origin = %s", [_clean(root), FOLDER])
        return {r[3]: StoredDocument(*r) for r in rows}

    def stored_document(self, key: str) -> StoredDocument | None:
        rows = self._query(f"SELECT {_STORED_COLUMNS} FROM documents WHERE key = %s",
                           [_clean(key)])
        return StoredDocument(*rows[0]) if rows else None

    def document(self, key: str) -> DocumentRecord | None:
        rows = self._query(
            "SELECT key, origin, root, path, content_hash, size, mtime, metadata, text, "
            "passages, indexed_at FROM documents WHERE key = %s", [_clean(key)])
        return DocumentRecord(*rows[0]) if rows else None

    def write_documents(self, documents: list[NewDocument], vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)

        def work(conn):
            ids = {doc.key: self._document_row(conn, doc) for doc in documents}
            # too few vectors: StopIteration here, inside the transaction, which rolls back
            given = iter(vectors)
            rows = [(doc.key, p, next(given)) for doc in documents for p in doc.passages]
            with conn.cursor() as cur:
                cur.executemany(
                    'INSERT INTO passages (document_id, ordinal, start, "end", line_start, '
                    "line_end, tokens, text, headings, embedding, terms) VALUES (%s, %s, %s, "
                    "%s, %s, %s, %s, %s, %s, %b, bertsearch_tsvector(%s))",
                    [(ids[key], p.ordinal, p.start, p.end, p.line_start, p.line_end,
                      p.tokens, _clean(p.text), _jsonb(list(p.headings)), vector,
                      " ".join(words(_clean(p.text)))) for key, p, vector in rows])

        # a part that appends (MIDDLE, LAST) must not run twice: its passages would repeat
        self._write(work, retry=all(d.part not in (MIDDLE, LAST) for d in documents))

    def _document_row(self, conn, doc: NewDocument) -> int:
        """The id of the row `doc`'s passages go under: a new row (replacing the stored
        document) for WHOLE and FIRST, the existing one for MIDDLE and LAST."""
        key = _clean(doc.key)
        if doc.part in (MIDDLE, LAST):
            done = doc.content_hash if doc.part == LAST else PARTIAL + doc.content_hash
            return conn.execute(
                "UPDATE documents SET passages = passages + %s, content_hash = %s, "
                "indexed_at = %s WHERE key = %s RETURNING id",
                [len(doc.passages), done, time.time(), key]).fetchone()[0]
        conn.execute("DELETE FROM documents WHERE key = %s", [key])  # passages cascade
        digest = doc.content_hash if doc.part == WHOLE else PARTIAL + doc.content_hash
        return conn.execute(
            "INSERT INTO documents (key, origin, root, path, content_hash, size, mtime, "
            "passages, indexed_at, metadata, text) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, "
            "%s, %s, %s) RETURNING id",
            [key, doc.origin, _clean(doc.root), _clean(doc.path), digest,
             doc.size, doc.mtime, len(doc.passages), time.time(), _jsonb(doc.metadata),
             None if doc.text is None else _clean(doc.text)]).fetchone()[0]

    def update_document(self, doc_id: int, size: int, mtime: float, metadata: dict) -> None:
        self._write(lambda conn: conn.execute(
            "UPDATE documents SET size = %s, mtime = %s, metadata = %s WHERE id = %s",
            [size, mtime, _jsonb(metadata), doc_id]))

    def delete_documents(self, ids: list[int]) -> int:
        if not ids:
            return 0

        def work(conn):
            removed = conn.execute("DELETE FROM passages WHERE document_id = ANY(%s::bigint[])",
                                   [list(ids)]).rowcount
            conn.execute("DELETE FROM documents WHERE id = ANY(%s::bigint[])", [list(ids)])
            return removed

        return self._write(work)

    def counts(self) -> tuple[int, int]:
        shape = self._shape()
        return shape.documents, shape.passages

    def _shape(self) -> Shape:
        """How many documents and passages, the index type, and the HNSW graph (if a valid
        one is there): read once per generation."""
        def compute():
            documents, passages, index_type, valid, expression, dimension = self._query(
                "SELECT (SELECT count(*) FROM documents), (SELECT count(*) FROM passages), "
                "coalesce((SELECT value #>> '{}' FROM settings WHERE key = 'index_type'), "
                "'auto'), (SELECT indisvalid FROM pg_index WHERE indexrelid = "
                "to_regclass(%s)), (SELECT indexprs IS NOT NULL FROM pg_index WHERE "
                "indexrelid = to_regclass(%s)), (SELECT atttypmod FROM pg_attribute WHERE "
                "attrelid = 'passages'::regclass AND attname = 'embedding')",
                [HNSW_INDEX, HNSW_INDEX])[0]
            graph = None if not valid else "halfvec" if expression else "vector"
            return Shape(documents, passages, index_type, graph, dimension)

        return self._cached("shape", compute)

    def iter_documents(self) -> Iterator[tuple[int, str, str]]:
        yield from self._query("SELECT id, root, path FROM documents ORDER BY id")

    # -- passages and search ----------------------------------------------------------------

    def passages(self, ids: list[int]) -> dict[int, PassageRow]:
        if not ids:
            return {}
        search = self._search()
        if search is not None and all(i in search.rows for i in ids):  # read along
            return {i: search.rows[i] for i in ids}
        rows = self._query(
            f"SELECT {_PASSAGE_COLUMNS} FROM passages p JOIN documents d ON d.id = "
            f"p.document_id WHERE p.id = ANY(%s::bigint[])", [[int(i) for i in ids]])
        return {r[0]: _passage(r) for r in rows}

    def passage_documents(self, ids: list[int]) -> dict[int, int]:
        if not ids:
            return {}
        return dict(self._query("SELECT id, document_id FROM passages WHERE id = "
                                "ANY(%s::bigint[])", [[int(i) for i in ids]]))

    def document_passages(self, document_id: int) -> list[PassageRow]:
        rows = self._query(
            f"SELECT {_PASSAGE_COLUMNS} FROM passages p JOIN documents d ON d.id = "
            f"p.document_id WHERE p.document_id = %s ORDER BY p.ordinal", [document_id])
        return [_passage(r) for r in rows]

    def stored_vectors(self, ids: list[int]) -> dict[int, np.ndarray]:
        """The stored vectors of passages by id (the first-passage copy, checks, tests and
        benchmarks), read in binary: a third of the bytes, no parsing of text."""
        rows = self._run(lambda conn: conn.execute(
            "SELECT id, embedding FROM passages WHERE id = ANY(%s::bigint[])",
            [[int(i) for i in ids]], binary=True).fetchall())
        return {r[0]: r[1].to_numpy() for r in rows}

    def first_passages(self) -> tuple[np.ndarray, np.ndarray]:
        """`(passage ids, document ids)` of every document's first passage."""
        rows = self._query("SELECT id, document_id FROM passages WHERE ordinal = 0")
        pairs = np.array(rows, dtype=np.int64).reshape(-1, 2)
        return pairs[:, 0], pairs[:, 1]

    def dense_search(self, queries: np.ndarray, k: int, where: Filter | None = None,
                     exact: bool = False, first_only: bool = False,
                     ) -> list[list[tuple[int, float]]]:
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        queries = queries.reshape(len(queries), -1)
        shape = self._shape()
        exact = exact or not shape.graph  # no graph (yet): every passage is scored
        if where is None:  # every passage, or every document's first one
            matching, scope = (shape.documents if first_only else shape.passages), None
            exact = exact or choose_kind(shape.index_type, shape.passages) == "flat" or \
                first_only and matching <= self.exact_subset_max
        else:
            matching, scope = self._scope(where, first_only)
            exact = exact or matching <= self.exact_subset_max
        if not matching:
            return [[] for _ in queries]
        return [self._dense_one(q, k, where, first_only, scope, exact, min(k, matching),
                                shape) for q in queries]

    def _scope(self, where: Filter, first_only: bool) -> tuple[int, list[int] | None]:
        """How many passages a filtered search ranks, and the ids of the documents they
        belong to when there are few enough for an exact search (else None)."""

        def compute():
            predicate, params = compile_filter(where)
            count = "1" if first_only else "passages"
            limit = self.exact_subset_max
            rows = self._query(f"SELECT id, {count} FROM documents d WHERE {predicate} "
                               f"LIMIT {limit + 1}", params)
            total = sum(r[1] for r in rows)
            if len(rows) > limit or total > limit:
                return limit + 1, None
            return total, [r[0] for r in rows]

        return self._cached(("scope", repr(where), first_only), compute)

    def _dense_one(self, query: np.ndarray, k: int, where, first_only: bool, scope,
                   exact: bool, expected: int, shape: Shape) -> list[tuple[int, float]]:
        if not exact:
            found = self._approximate(query, k, where, first_only, shape)
            if len(found) >= expected:
                return found
        if first_only and shape.documents > self.exact_subset_max:
            self._firsts.forget()  # too many to keep: the graph or SQL ranks them
        elif first_only and (where is None or scope is not None):  # few: scored in memory
            # (with this few documents a filter's scope is always listed; kept as a guard,
            # since the copy cannot apply a filter itself)
            return self._firsts.current(self).top(query, k, scope)
        conditions, params = ["TRUE"], [query]
        if scope is not None:
            conditions.append("p.document_id = ANY(%s::bigint[])")
            params.append(scope)
        elif where is not None:
            predicate, extra = compile_filter(where)
            conditions.append(f"EXISTS (SELECT 1 FROM documents d WHERE d.id = p.document_id "
                              f"AND {predicate})")
            params += extra
        if first_only:
            conditions.append("p.ordinal = 0")
        # inner_product(), not the <#> operator, so the planner cannot take the HNSW index:
        # every matching passage is scored, ties broken by id as a brute-force search does
        rows = self._query(
            f"SELECT p.id, inner_product(p.embedding, %b) AS score FROM passages p "
            f"WHERE {' AND '.join(conditions)} ORDER BY score DESC, p.id LIMIT %s",
            [*params, k])
        return [(r[0], float(r[1])) for r in rows]

    def _approximate(self, query: np.ndarray, k: int, where, first_only: bool,
                     shape: Shape) -> list[tuple[int, float]]:
        """The HNSW walk: the graph's `k` nearest, scored at full precision, best first (ties
        by id). A filtered walk uses iterative scans (turned on for its transaction only):
        it goes on past the candidate list until `k` passages pass the filter or
        `hnsw.max_scan_tuples` is reached. A short list (a page of hits) brings its
        passages along, kept for the `passages` call of the same search (`one_search`)."""
        search = self._search()
        with_rows = k <= ROWS_WITH_RANKING and search is not None
        conditions, params = ["TRUE"], [query]  # the full score, in the select list
        if where is not None:
            predicate, extra = compile_filter(where)
            conditions.append(predicate)
            params += extra
        if first_only:
            conditions.append("p.ordinal = 0")
        # the score computed in the select list, not over a CTE of the found rows: carrying
        # ten vectors through one cost 0.5 ms a search (measured)
        columns = f", {_PASSAGE_COLUMNS}" if with_rows else ""
        join = (" JOIN documents d ON d.id = p.document_id"
                if with_rows or where is not None else "")
        # without a filter the limit is written into the statement, rounded up to a step:
        # psycopg prepares it, and PostgreSQL then keeps one generic plan instead of planning
        # every search (a limit it cannot see makes the generic plan look dear): 0.25 ms a
        # search, measured; the steps keep the statements few (psycopg prepares at most 100
        # per connection). A filter's values still get a plan of their own (its
        # selectivity picks the plan).
        asked = k if where is not None else next((s for s in LIMIT_STEPS if s >= k), k)
        limit = "%s" if where is not None else str(int(asked))
        sql = (f"SELECT p.id, inner_product(p.embedding, %b){columns} FROM passages p{join} "
               f"WHERE {' AND '.join(conditions)} ORDER BY {shape.distance()} LIMIT {limit}")
        params += [query, k] if where is not None else [query]  # the graph's order, limit
        knobs = {}
        # a filter, or a list long for the candidate list (a few invisible rows, deleted
        # and not yet vacuumed, would leave it short and send it to the exact scan): scan on
        if len(conditions) > 1 or asked > self.ef_search // 2:
            knobs["hnsw.iterative_scan"] = "relaxed_order"
        if asked > self.ef_search:  # a candidate list at least as long as the list asked
            knobs["hnsw.ef_search"] = str(min(asked, 1000))

        def work(conn):
            if not knobs:
                return conn.execute(sql, params).fetchall()
            with conn.pipeline(), conn.transaction():  # settings sent with the query
                for name, value in knobs.items():
                    conn.execute("SELECT set_config(%s, %s, true)", [name, value])
                return conn.execute(sql, params).fetchall()

        rows = self._run(work)
        if with_rows:
            search.rows.update((r[0], _passage(r[2:])) for r in rows)
        found = sorted(((r[0], float(r[1])) for r in rows), key=lambda hit: (-hit[1], hit[0]))
        return found[:k]

    def keyword_search(self, terms: list[tuple[str, ...]], k: int,
                       where: Filter | None = None) -> list[tuple[int, float]]:
        """BM25 (FTS5's formula, `indexer.bm25`) over the passages' lexemes, from this
        process's in-memory copy of them (`ts_rank_cd`, scoring every matching row in SQL,
        took 424 ms p50 for ten-word queries at 100,000 passages)."""
        if not terms:
            return []
        tokenized = [lexemes for lexemes in map(self._lexemes, terms) if lexemes]
        total, matched = self._keywords.scores(tokenized, self)
        subset = None if where is None else self._matching_passages(where)
        return top_k(total, matched, k, subset)

    def _lexemes(self, term: tuple[str, ...]) -> tuple[str, ...]:
        """The lexemes the passages' `terms` hold for a term's words (cached per word)."""
        known = {w: self._lexeme_cache.get(w) for w in term}
        missing = [w for w, lexeme in known.items() if lexeme is None and w and
                   len(w.encode("utf-8", "surrogatepass")) < 2048]
        if missing:
            rows = dict(self._query("SELECT w, bertsearch_lexeme(w) FROM unnest(%s::text[]) w",
                                    [missing]))
            known.update(rows)
            if len(self._lexeme_cache) > 100_000:
                self._lexeme_cache.clear()
            self._lexeme_cache.update(rows)
        return tuple(known[w] for w in term if known.get(w) is not None)

    def _matching_passages(self, where: Filter) -> np.ndarray:
        """The ids of the passages whose document matches `where`, sorted (per generation)."""
        def compute():
            predicate, params = compile_filter(where)
            rows = self._query(f"SELECT p.id FROM passages p WHERE EXISTS (SELECT 1 FROM "
                               f"documents d WHERE d.id = p.document_id AND {predicate}) "
                               f"ORDER BY p.id", params)
            return np.array([r[0] for r in rows], dtype=np.int64)

        return self._cached(("passages", repr(where)), compute)

    def token_passage_ids(self) -> np.ndarray:
        return np.array([r[0] for r in self._query("SELECT id FROM passages ORDER BY id")],
                        dtype=np.int64)

    def read_all_tokens(self) -> tuple[Bm25Postings, int]:
        generation = self.generation()  # first: a later write only makes the copy stale
        ids = self.token_passage_ids()
        copy = Bm25Postings()
        copy.add(ids, self.read_tokens(ids))
        return copy, generation

    def read_tokens(self, ids: np.ndarray) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        """These passages' lexemes with their word positions, from their `terms`."""
        return parse_occurrences(self._query(
            "SELECT u.lexeme, string_agg(p.id::text, ',' ORDER BY p.id, n), "
            "string_agg(n::text, ',' ORDER BY p.id, n) FROM passages p, "
            "unnest(p.terms) u, unnest(u.positions) n WHERE p.id = ANY(%s::bigint[]) "
            "GROUP BY u.lexeme", [ids.tolist()]))

    def warm(self) -> None:
        """Read the keyword copy and the first passages' vectors (when few enough) now, and
        load the HNSW graph into the server's shared buffers when it fits and the server has
        `pg_prewarm`, so the first searches wait for none of them."""
        self.refresh()
        self._keywords.warm(self)
        shape = self._shape()
        if 0 < shape.documents <= self.exact_subset_max:
            self._firsts.current(self)
        if shape.graph:
            self._prewarm()

    def _prewarm(self) -> None:
        """`pg_prewarm` the graph, from the schema the extension is in. Only a speed-up: a
        role the server will not let prewarm the index, or any other database error, leaves
        the graph to be read as searches need it."""
        psycopg, _, _ = _psycopg()
        graph, buffers = self._memory()

        def work(conn):
            row = conn.execute("SELECT quote_ident(n.nspname) FROM pg_extension e JOIN "
                               "pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = "
                               "'pg_prewarm'").fetchone()
            if row:
                conn.execute(f"SELECT {row[0]}.pg_prewarm(to_regclass(%s))", [HNSW_INDEX])

        if graph <= buffers:
            with contextlib.suppress(psycopg.Error, IndexerError):
                self._run(work, retry=False)

    def refresh(self) -> bool:
        """Nothing here is derived: a new generation only means the next answers differ."""
        generation = self.generation()
        with self._lock:
            changed, self._seen = generation != self._seen, generation
        return changed

    def describe(self) -> dict:
        shape = self._shape()
        kind = choose_kind(shape.index_type, shape.passages)
        waiting = ("flat (the HNSW index is built at the next sync)" if shape.graph_possible()
                   else f"flat (pgvector's HNSW takes at most {HALFVEC_MAX_DIMENSIONS} "
                        f"dimensions)")
        out = {"vector_index": kind if shape.graph or kind == "flat" else waiting,
               "vectors": shape.passages}
        if shape.graph:
            settings = self.settings()
            graph, buffers = self._memory()
            out["hnsw"] = {"m": settings.get("hnsw_m"),
                           "ef_construction": settings.get("hnsw_ef_construction"),
                           "ef_search": self.ef_search, "vectors": shape.graph,
                           "graph_mb": round(graph / 2**20, 1),
                           "shared_buffers_mb": round(buffers / 2**20, 1)}
            if graph > buffers:
                out["hnsw"]["advice"] = (
                    f"The HNSW graph ({graph / 2**20:.0f} MB) does not fit in the server's "
                    f"shared_buffers ({buffers / 2**20:.0f} MB): searches read its pages from "
                    f"the operating system over and over (a 201 MB graph in 128 MB made them "
                    f"1.5x slower). Raise shared_buffers above the graph's size.")
        return out

    def _memory(self) -> tuple[int, int]:
        """(bytes of the HNSW graph, bytes of the server's shared buffers)."""
        return tuple(self._query(
            "SELECT coalesce(pg_relation_size(to_regclass(%s)), 0), "
            "pg_size_bytes(current_setting('shared_buffers'))", [HNSW_INDEX])[0])

    # -- files kept with the index ----------------------------------------------------------

    def attached_folder(self, name: str) -> Path | None:
        """The files kept under `name`, written to a cache folder named by their content
        (so every process that loads them gets the same folder, and a change a new one)."""
        rows = self._query("SELECT file, data FROM attachments WHERE name = %s ORDER BY file",
                           [name])
        if not rows:
            return None
        import hashlib

        digest = hashlib.sha256()
        for file, data in rows:
            digest.update(file.encode() + b"\0" + bytes(data))
        cache = Path(os.environ.get("BERTSEARCH_CACHE", "~/.cache/bertsearch")).expanduser()
        folder = cache / "attachments" / f"{name}-{digest.hexdigest()[:16]}"
        if not folder.is_dir():
            staging = folder.with_name(f".{folder.name}-{os.getpid()}")
            staging.mkdir(parents=True, exist_ok=True)
            for file, data in rows:
                (staging / file).write_bytes(bytes(data))
            with contextlib.suppress(OSError):  # another process got there first
                os.replace(staging, folder)
        return folder

    def attach_folder(self, name: str, folder: Path) -> None:
        files = [(p.name, p.read_bytes()) for p in sorted(Path(folder).iterdir())
                 if p.is_file()]

        def work(conn):
            conn.execute("DELETE FROM attachments WHERE name = %s", [name])
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO attachments VALUES (%s, %s, %s)",
                                [(name, file, data) for file, data in files])

        self._write(work)

    # -- integrity ------------------------------------------------------------------------------

    def health(self) -> str | None:
        return self.damage

    def quick_check(self) -> str | None:
        """The tables answer (an HNSW index left invalid by an interrupted build is not
        damage: searches do without it and the next checkpoint rebuilds it)."""
        try:
            self._query("SELECT 1 FROM documents LIMIT 1")
        except IndexCorruptError as exc:
            return str(exc)
        return self.damage

    def check(self, repair: bool = False, reembed=None) -> tuple[list[str], list[str]]:
        """Verify passage counts, the stored vectors (dimension, finite, unit length), the
        keyword column (recomputed from the text) and the HNSW index; with `repair`, mend
        them (vectors through `reembed(passage_rows) -> vectors`). PostgreSQL guards its
        own pages (checksums, WAL); damage it reports is surfaced, not salvaged here."""
        problems, repairs = [], []
        for found, mend in (self._check_counts(), self._check_vectors(reembed),
                            self._check_keywords(), self._check_hnsw()):
            if found:
                problems.append(found)
                if repair:
                    repairs.append(mend())
        return problems, repairs

    def _check_counts(self):
        wrong = self._query("SELECT d.id FROM documents d WHERE d.passages != "
                            "(SELECT count(*) FROM passages p WHERE p.document_id = d.id)")
        if not wrong:
            return None, None

        def mend():
            self._write(lambda conn: conn.execute(
                "UPDATE documents d SET passages = (SELECT count(*) FROM passages p "
                "WHERE p.document_id = d.id)"))
            return f"passage counts of {len(wrong)} documents corrected"
        return f"{len(wrong)} documents record a wrong passage count", mend

    def _check_vectors(self, reembed):
        dimension = int(self.settings().get("dimension") or 0)
        bad = [r[0] for r in self._query(
            "SELECT id FROM passages WHERE vector_dims(embedding) != %s OR NOT "
            "abs(vector_norm(embedding) - 1) <= 1e-3 ORDER BY id", [dimension])]
        if not bad:
            return None, None

        def mend():
            if reembed is None:
                return f"{len(bad)} damaged vectors left: no encoder to recompute them"
            rows = self.passages(bad)
            vectors = np.ascontiguousarray(reembed([rows[i] for i in bad]), dtype=np.float32)

            def work(conn):
                with conn.cursor() as cur:
                    cur.executemany("UPDATE passages SET embedding = %b WHERE id = %s",
                                    list(zip(vectors, bad)))
                self._put_settings(conn, {VECTOR_EPOCH: time.time()})  # changed in place
            self._write(work)
            return f"{len(bad)} damaged vectors recomputed from their passages"
        return (f"{len(bad)} stored vectors are damaged (wrong size, not finite or not unit "
                f"length)"), mend

    def _check_keywords(self, batch: int = 2000):
        """Each passage's keyword entry must be what its text gives now."""
        bad, last = [], 0
        while True:
            rows = self._query("SELECT id, text FROM passages WHERE id > %s ORDER BY id "
                               "LIMIT %s", [last, batch])
            if not rows:
                break
            last = rows[-1][0]
            bad += [r[0] for r in self._query(
                "SELECT t.id FROM unnest(%s::bigint[], %s::text[]) AS t(id, words) JOIN "
                "passages p ON p.id = t.id WHERE p.terms IS DISTINCT FROM "
                "bertsearch_tsvector(t.words)",
                [[r[0] for r in rows], [" ".join(words(r[1])) for r in rows]])]
        if not bad:
            return None, None

        def mend():
            rows = self.passages(bad)

            def work(conn):
                with conn.cursor() as cur:
                    cur.executemany(
                        "UPDATE passages SET terms = bertsearch_tsvector(%s) WHERE id = %s",
                        [(" ".join(words(rows[i].text)), i) for i in bad if i in rows])
                self._put_settings(conn, {KEYWORD_EPOCH: time.time()})
            self._write(work)
            return f"keyword entries of {len(bad)} passages rebuilt from their text"
        return f"the keyword index disagrees with {len(bad)} passages", mend

    def _check_hnsw(self):
        """An HNSW index must be valid (a concurrent build that was interrupted leaves an
        invalid one behind)."""
        rows = self._query("SELECT indisvalid FROM pg_index WHERE indexrelid = "
                           "to_regclass(%s)", [HNSW_INDEX])
        if not rows or rows[0][0]:
            return None, None

        def mend():
            if self._lock_session is not None:
                self._build_hnsw(self._lock_session, self._shape())
            else:
                with self._connect() as conn:
                    self._build_hnsw(conn, self._shape())
            return "HNSW index rebuilt"
        return "the HNSW index is not valid (an interrupted build)", mend


# -- URLs ---------------------------------------------------------------------------------------

def split_url(url: str) -> tuple[str, dict]:
    """(the URL for libpq, bertsearch's options taken out of its query string).

    Raises:
        IndexerError: a URL libpq cannot read, or a bad option value.
    """
    psycopg, _, _ = _psycopg()
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise IndexerError(f"'{redact(url)}' is not a PostgreSQL URL libpq can use ({exc}); "
                           f"write it as postgresql://USER@HOST:PORT/DATABASE.") from None
    query = parse_qsl(parts.query, keep_blank_values=True)
    options = {"schema": DEFAULT_SCHEMA, "pool_size": DEFAULT_POOL_SIZE}
    options.update({k: v for k, v in query if k in URL_OPTIONS})
    kept = [(k, v) for k, v in query if k not in URL_OPTIONS]
    if not any(k == "connect_timeout" for k, _ in kept):
        kept.append(("connect_timeout", str(CONNECT_TIMEOUT_S)))
    if not any(k == "application_name" for k, _ in kept):
        kept.append(("application_name", "bertsearch"))
    clean = urlunsplit(parts._replace(query=urlencode(kept, quote_via=quote)))
    try:
        psycopg.conninfo.conninfo_to_dict(clean)
    except psycopg.ProgrammingError as exc:
        raise IndexerError(f"'{redact(url)}' is not a PostgreSQL URL libpq can use "
                           f"({_first_line(exc)}); write it as postgresql://USER@HOST:PORT/"
                           f"DATABASE.") from None
    for name in ("pool_size", "ef_search", "hnsw_m", "hnsw_ef_construction"):
        value = str(options.get(name) or "1")
        if not value.isdigit() or not 1 <= int(value) <= 1000:
            raise IndexerError(f"The URL option {name}={value} must be a whole number from 1 "
                               f"to 1000.")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", str(options["schema"])):
        raise IndexerError(f"The URL option schema={options['schema']} must be a plain "
                           f"identifier (letters, digits, underscores).")
    return clean, options


def redact(url: str) -> str:
    """The URL with its password replaced by ***, for messages and stats."""
    return re.sub(r"^(\w+://[^:/@?#]*):[^@/?#]+@", r"\1:***@", url)


# -- helpers ------------------------------------------------------------------------------------

def _transient(exc) -> bool:
    """A dropped connection or a statement a replica cancelled: worth one more try."""
    psycopg, _, _ = _psycopg()
    if isinstance(exc, psycopg.errors.SerializationFailure):  # conflict with recovery
        return True
    return isinstance(exc, psycopg.OperationalError) and not isinstance(
        exc, psycopg.errors.QueryCanceled)


def _first_line(exc) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


_SURROGATES = re.compile("[\ud800-\udfff]")


def _clean(text: str) -> str:
    """PostgreSQL text holds neither NUL nor lone surrogates: each becomes U+FFFD (one
    character for one, so offsets into the text stay right)."""
    text = text.replace("\x00", "\ufffd")
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return _SURROGATES.sub("\ufffd", text)


def _clean_json(value):
    if isinstance(value, str):
        return _clean(value)
    if isinstance(value, dict):
        return {_clean(str(k)): _clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean_json(v) for v in value]
    return value


def _jsonb(value):
    psycopg, _, _ = _psycopg()
    return psycopg.types.json.Jsonb(_clean_json(value))


def _passage(row) -> PassageRow:
    return PassageRow(*row[:11], headings=tuple(row[11]), metadata=row[12])


def _holder(info) -> str:
    try:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info["since"]))
        return f"pid {info['pid']} on {info['host']}: {info['command']}, since {since}"
    except (KeyError, TypeError):
        return "a process that did not say who it is"


# -- filters -> SQL -------------------------------------------------------------------------

_SCALAR = "jsonb_typeof(v) IN ('string', 'number', 'boolean')"


def compile_filter(node: Filter) -> tuple[str, list]:
    """A SQL predicate over the documents table (alias `d`) and its parameters, with the
    semantics of `indexer.filters` (the oracle in tests/filter_oracle.py)."""
    if isinstance(node, (All, Any)):
        parts = [compile_filter(part) for part in node.parts]
        joiner = " AND " if isinstance(node, All) else " OR "
        return ("(" + joiner.join(sql for sql, _ in parts) + ")",
                [p for _, params in parts for p in params])
    return _condition(node)


def _condition(cond: Condition) -> tuple[str, list]:
    """Some value of the field passes a test (`$ne`, `$nin`: none does). A field's values
    are its value, or a list's elements; `strict` paths never step into lists on the way,
    as the oracle does not."""
    if cond.field == (ID_FIELD,):
        source, source_params = "(SELECT to_jsonb(d.key)) AS f(v)", []
    else:
        path = "strict $" + "".join(f'."{part}"' for part in cond.field)
        source = ("jsonb_path_query(d.metadata, %s::jsonpath, '{}', true) AS x(value), "
                  "jsonb_array_elements(CASE WHEN jsonb_typeof(x.value) = 'array' THEN "
                  "x.value ELSE jsonb_build_array(x.value) END) AS f(v)")
        source_params = [path]

    def some(test: str, params: list) -> tuple[str, list]:
        return (f"EXISTS (SELECT 1 FROM {source} WHERE {test})", source_params + params)

    def equal(values: list) -> tuple[str, list]:
        """Equal to one of `values`; None: missing or null (no scalar value but null)."""
        parts = []
        if any(v is None for v in values):
            sql, params = some(f"{_SCALAR} AND jsonb_typeof(v) != 'null'", [])
            parts.append((f"NOT {sql}", params))
        given = [json.dumps(_clean_json(v)) for v in values if v is not None]
        if given:
            parts.append(some("v = ANY(%s::jsonb[])", [given]))
        return ("(" + " OR ".join(s for s, _ in parts) + ")",
                [p for _, params in parts for p in params])

    op = cond.op
    if op in ("eq", "ne"):
        sql, params = equal([cond.value])
    elif op in ("in", "nin"):
        sql, params = equal(list(cond.value))
    elif op == "glob":
        return some("jsonb_typeof(v) = 'string' AND (v #>> '{}') ~ %s",
                    [glob_to_regex(cond.value)])
    else:
        symbol = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[op]
        if isinstance(cond.value, str):  # code-point order, as Python compares strings
            return some(f"jsonb_typeof(v) = 'string' AND (v #>> '{{}}') COLLATE \"C\" "
                        f"{symbol} %s", [_clean(cond.value)])
        return some(f"jsonb_typeof(v) = 'number' AND v::numeric {symbol} %s::numeric",
                    [cond.value])
    return (f"NOT {sql}" if op in ("ne", "nin") else sql), params
