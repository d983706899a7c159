"""What only the PostgreSQL store has to prove (the conformance suite in test_store.py runs
on it too): its HNSW index and iterative scans, URLs and their options, clear one-line
errors for database trouble, a retry after a dropped connection, read-only opens, the
advisory writer lock, checks and repairs, files kept in the database. A real PostgreSQL
(tests/pg_server.py), no mocks."""

import os
import signal
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import REPO
from pg_server import database_name
from test_store import document, unit

from cli import main
from indexer.errors import (
    IndexBusyError,
    IndexerError,
    IndexNotFoundError,
    IndexReadOnlyError,
    IndexUnavailableError,
)
from indexer.filters import parse_filter
from indexer.postgres_store import HNSW_EF_SEARCH
from indexer.store import open_store


@pytest.fixture
def url(postgres):
    location = postgres.new_database()
    yield location
    postgres.drop(location)


def hnsw_store(url, n_docs=1000, passages=3):
    """`n_docs` documents of `passages` passages under an HNSW index; bucket = doc % 100."""
    store = open_store(url, create=True)
    store.save_settings({"dimension": 16, "index_type": "hnsw"})
    vectors = unit(n_docs * passages, seed=4)
    store.write_documents([document(f"d{i}", passages, metadata={"bucket": i % 100})
                           for i in range(n_docs)], vectors)
    store.checkpoint()  # the graph is built in one go over the rows
    return store, vectors


def overlap(found, expected) -> float:
    return np.mean([len({i for i, _ in a} & {i for i, _ in b}) / max(1, len(b))
                    for a, b in zip(found, expected)])


def test_hnsw_is_recorded_and_finds_what_exact_search_finds(url):
    store, vectors = hnsw_store(url + "&pool_size=1")
    try:
        settings = store.settings()
        assert (settings["hnsw_m"], settings["hnsw_ef_construction"]) == (24, 400)
        described = store.describe()["hnsw"]
        graph, buffers = store._query(
            "SELECT pg_relation_size('passages_embedding_hnsw'), "
            "pg_size_bytes(current_setting('shared_buffers'))")[0]
        assert described == {"m": 24, "ef_construction": 400, "ef_search": 80,
                             "vectors": "halfvec", "graph_mb": round(graph / 2**20, 1),
                             "shared_buffers_mb": round(buffers / 2**20, 1)}
        assert store.describe()["vector_index"] == "hnsw"
        queries = unit(20, seed=7)
        exact = store.dense_search(queries, 10, exact=True)
        ids = sorted(p.id for i in range(1000)
                     for p in store.document_passages(store.stored_document(f"d{i}").id))
        scores = queries @ vectors.T
        for q, hits in enumerate(exact):  # exact: brute force, order and scores
            order = np.argsort(-scores[q], kind="stable")[:10]
            assert [i for i, _ in hits] == [ids[j] for j in order]
        walks = graph_walks(store)
        approximate = store.dense_search(queries, 10)
        assert graph_walks(store) == walks + len(queries)  # each one walked the graph
        assert overlap(approximate, exact) >= 0.95
        assert all([s for _, s in hits] == sorted((s for _, s in hits), reverse=True)
                   for hits in approximate)
        for q, hits in enumerate(approximate):  # half-precision graph, full-precision scores
            by_id = dict(zip(ids, scores[q]))
            assert [s for _, s in hits] == pytest.approx([by_id[i] for i, _ in hits],
                                                         abs=1e-6)
        deep = store.dense_search(queries[:1], 400)[0]  # deeper than the candidate list
        assert len(deep) == 400 and len({i for i, _ in deep}) == 400
        walked = store._approximate(queries[0], 400, None, False, store._shape())
        assert len(walked) == 400  # the walk itself, not the exact fallback, filled it
        nearest = [i for i, _ in store.dense_search(queries[:1], 60, exact=True)[0]]
        owners = set(store.passage_documents(nearest).values())
        store.delete_documents(sorted(owners))  # dead rows the graph still holds (no vacuum)
        walked = store._approximate(queries[0], 80, None, False, store._shape())
        assert len(walked) == 80 and not set(nearest) & {i for i, _ in walked}
    finally:
        store.close()


def graph_walks(store) -> int:
    """How many scans of the HNSW index the server has counted (a store with one pooled
    connection: the backend that searched is the one told to flush its counts). Sequential
    scans are turned off on it: a table this small the planner would rather sort whole."""
    store._run(lambda conn: conn.execute("SET enable_seqscan = off; "
                                         "SELECT pg_stat_force_next_flush()"))
    return store._query("SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelid = "
                        "to_regclass('passages_embedding_hnsw')")[0][0]


def test_a_graph_of_full_precision_vectors_from_older_indexes_is_still_walked(url):
    store, _ = hnsw_store(url + "&pool_size=1", n_docs=300)
    try:
        store._run(lambda conn: conn.execute(  # the graph older bertsearch built
            "DROP INDEX passages_embedding_hnsw; CREATE INDEX passages_embedding_hnsw ON "
            "passages USING hnsw (embedding vector_ip_ops) WITH (m = 32, "
            "ef_construction = 200)"))
        store.save_settings({})  # a write: the next search reads the shape again
        assert store.describe()["hnsw"]["vectors"] == "vector"
        queries = unit(10, seed=3)
        walks = graph_walks(store)
        approximate = store.dense_search(queries, 10)
        assert graph_walks(store) == walks + len(queries)
        assert overlap(approximate, store.dense_search(queries, 10, exact=True)) >= 0.95
    finally:
        store.close()


def test_a_walk_without_filter_is_planned_once_not_every_search(url):
    store, _ = hnsw_store(url + "&pool_size=1", n_docs=300)
    try:
        walks = graph_walks(store)  # sequential scans off: every plan below walks the graph
        queries = unit(20, seed=2)
        for n, query in enumerate(queries):
            k = 7 if n % 2 else 10  # one statement: the limit is rounded up to a step
            with store.one_search():
                store.dense_search(query.reshape(1, -1), k)
            assert len(store.dense_search(query.reshape(1, -1), k)[0]) == k
        assert graph_walks(store) == walks + 2 * len(queries)
        plans = store._query(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE "
            "statement LIKE 'SELECT p.id, inner_product(%%'")
        # with and without the page's passages, each run 20 times: psycopg runs a statement
        # 5 times before preparing it (its prepare_threshold), PostgreSQL plans a prepared
        # statement's first 5 runs for their values and then keeps a generic plan when that
        # costs no more (a limit it cannot see made the generic plan look dearer: 15 custom)
        assert plans == [(len(queries) - 5 - 5, 5)] * 2
    finally:
        store.close()


def test_one_search_reads_the_generation_once_and_keeps_a_pages_passages(url):
    store, _ = hnsw_store(url, n_docs=300)
    other = open_store(url)
    try:
        before = store.generation()
        with store.one_search():
            assert store.generation() == before
            other.save_settings({"note": 1})  # another process writes meanwhile
            assert store.generation() == before  # the search goes on with its reading
            hits = store.dense_search(unit(1, seed=5), 10)[0]
            assert {i for i, _ in hits} <= store._search().rows.keys()  # read along
            kept = store.passages([i for i, _ in hits])
            with store.one_search():  # nested: the same search
                assert store.generation() == before
            store.save_settings({"note": 2})  # its own write: read afresh
            assert store._search().rows == {}
            assert store.generation() == before + 2
        assert store._search() is None
        assert store.generation() == before + 2
        assert kept == store.passages([i for i, _ in hits])  # read along == read after
    finally:
        other.close()
        store.close()


def test_the_graph_is_built_at_checkpoint_and_rebuilt_when_left_invalid(url):
    store = open_store(url, create=True)
    try:
        store.save_settings({"dimension": 16, "index_type": "hnsw"})
        store.write_documents([document(f"d{i}", 2) for i in range(50)], unit(100))
        assert store.describe()["vector_index"].startswith("flat (")  # not built yet
        exact = store.dense_search(unit(3, seed=1), 5, exact=True)
        assert store.dense_search(unit(3, seed=1), 5) == exact  # without a graph: exact
        store.checkpoint()
        assert store.describe()["vector_index"] == "hnsw"
        store._run(lambda conn: conn.execute(  # as an interrupted CONCURRENTLY build leaves it
            "UPDATE pg_index SET indisvalid = false WHERE indexrelid = "
            "to_regclass('passages_embedding_hnsw')"))
        store.save_settings({})  # a write: the next search reads the shape again
        assert store.describe()["vector_index"].startswith("flat (")
        assert store.quick_check() is None  # derived: not damage
        problems, repairs = store.check(repair=True)
        assert problems == ["the HNSW index is not valid (an interrupted build)"]
        assert repairs == ["HNSW index rebuilt"] and store.check() == ([], [])
        assert store.describe()["vector_index"] == "hnsw"
        store.save_settings({"index_type": "flat"})  # flat keeps no graph
        assert store.describe()["vector_index"] == "flat" and "hnsw" not in store.describe()
    finally:
        store.close()


def test_filtered_hnsw_search_scans_on_until_k_match(url):
    store, _ = hnsw_store(url + "&pool_size=1")
    try:
        store.exact_subset_max = 10  # make a 1 % filter (30 passages) take the HNSW walk
        queries = unit(10, seed=8)
        one_percent = parse_filter({"bucket": 7})
        walks = graph_walks(store)
        walked = [store._approximate(q, 10, one_percent, False, store._shape())
                  for q in queries]  # the walk alone, without the exact fallback
        assert graph_walks(store) == walks + len(queries)
        assert all(len(hits) == 10 for hits in walked)
        assert walked == store.dense_search(queries, 10, one_percent)
        rows = store.passages([i for hits in walked for i, _ in hits])
        assert {r.metadata["bucket"] for r in rows.values()} == {7}
        assert overlap(walked, store.dense_search(queries, 10, one_percent, exact=True)) >= 0.9
        tenth = parse_filter({"id": {"$in": ["d3", "d500"]}})  # 6 of 3,000 passages
        store.exact_subset_max = 2
        assert [len(h) for h in store.dense_search(queries, 10, tenth)] == [6] * 10
    finally:
        store.close()


def test_url_options_and_schemas(url):
    a = open_store(url + "&schema=notes_a&pool_size=2&ef_search=50", create=True)
    b = open_store(url + "&schema=notes_b", create=True)
    try:
        for store in (a, b):
            store.save_settings({"dimension": 16, "index_type": "flat"})
        a.write_documents([document("only-in-a", 2)], unit(2))
        assert (a.counts(), b.counts()) == ((1, 2), (0, 0))  # two indexes, one database
        assert a.ef_search == 50 and b.ef_search == HNSW_EF_SEARCH
        assert a.schema == "notes_a" and "notes_a" in a.location
    finally:
        a.close()
        b.close()
    with pytest.raises(IndexerError, match="pool_size=0 must be a whole number"):
        open_store(url + "&pool_size=0")
    with pytest.raises(IndexerError, match="schema=.* plain identifier"):
        open_store(url + "&schema=a;drop")


def test_passwords_never_show(postgres):
    with pytest.raises(IndexUnavailableError) as caught:
        open_store("postgresql://me:s3cret@127.0.0.1:1/db")
    assert "s3cret" not in str(caught.value) and "me:***@" in str(caught.value)


@pytest.mark.parametrize("location, error, message", [
    ("postgresql://127.0.0.1:1/nothing", IndexUnavailableError, "Cannot connect to PostgreSQL"),
    ("postgresql://[bad", IndexerError, "not a PostgreSQL URL"),
    ("postgresql://localhost/db?nosuchoption=1", IndexerError, "not a PostgreSQL URL"),
])
def test_database_trouble_is_one_clear_line(postgres, location, error, message):
    with pytest.raises(error, match=message):
        open_store(location, create=True)
    result = CliRunner().invoke(main, ["query", "anything", "--index", location])
    assert result.exit_code == 1 and result.output.startswith("Error: ")
    assert message.split()[0] in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_no_index_and_missing_pgvector(postgres, url):
    with pytest.raises(IndexNotFoundError, match="No index at .*bertsearch index FOLDER"):
        open_store(url)  # a database without bertsearch's schema, not created
    postgres.sql("postgres", "DROP ROLE IF EXISTS plain")
    postgres.sql("postgres", "CREATE ROLE plain LOGIN")
    postgres.sql("postgres", "CREATE DATABASE bare OWNER plain TEMPLATE template0")
    try:
        bare = postgres.url("bare").replace("postgres@", "plain@")
        with pytest.raises(IndexerError, match="Cannot create the pgvector extension.*"
                                               "CREATE EXTENSION vector"):
            open_store(bare, create=True)  # pgvector needs a superuser to create it
    finally:
        postgres.drop(postgres.url("bare"))
        postgres.sql("postgres", "DROP ROLE plain")


def test_read_only_opens_refuse_writes(url):
    open_store(url, create=True).close()
    reader = open_store(url, read_only=True)
    try:
        assert reader.read_only
        with pytest.raises(IndexReadOnlyError, match="read-only"):
            reader.write_documents([document("a")], unit(2))
        with pytest.raises(IndexReadOnlyError), reader.writer_lock("x"):
            pass
        with pytest.raises(IndexReadOnlyError, match="only takes reads"):  # the server says no
            reader._run(lambda conn: conn.execute("INSERT INTO settings VALUES ('x', '1')"))
    finally:
        reader.close()


def test_a_dropped_connection_is_retried_once(postgres, url):
    store = open_store(url, create=True)
    try:
        store.save_settings({"dimension": 16, "index_type": "flat"})
        store.write_documents([document("a", 2)], unit(2))
        kill = ("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                "AND application_name = 'bertsearch'")
        name = database_name(url)
        postgres.sql("postgres", kill, [name])
        assert store.generation() >= 1  # a fresh connection, no error
        postgres.sql("postgres", kill, [name])
        store.write_documents([document("b", 1)], unit(1))  # a write, retried: done once
        assert store.counts() == (2, 3)
        postgres.sql("postgres", f"ALTER DATABASE {name} ALLOW_CONNECTIONS false")
        postgres.sql("postgres", kill, [name])
        with pytest.raises(IndexUnavailableError, match="did not come back|Cannot connect|No "
                                                        "connection"):
            store.generation()
    finally:
        postgres.sql("postgres", f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")
        store.close()


HOLDER = """
import sys, time
from indexer.store import open_store
store = open_store(sys.argv[1])
with store.writer_lock("bertsearch index /some/folder"):
    print("held", flush=True)
    time.sleep(300)
"""


def test_the_writer_lock_names_its_holder_and_dies_with_it(url):
    open_store(url, create=True).close()
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, url], cwd=REPO,
                              stdout=subprocess.PIPE, text=True)
    store = open_store(url)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(IndexBusyError, match=f"pid {holder.pid} .*bertsearch index "
                                                 f"/some/folder"), store.writer_lock("me"):
            pass
        os.kill(holder.pid, signal.SIGKILL)  # its session ends, and the lock with it
        holder.wait(timeout=30)
        with store.writer_lock("me", wait=True):
            pass
    finally:
        if holder.poll() is None:
            holder.kill()
        store.close()


def first_passages_by_hand(store, query, k, bucket=None):
    """The documents' first passages ranked by brute force (inner product, ties by id)."""
    rows = [store.document_passages(doc_id)[0] for doc_id, _, _ in store.iter_documents()]
    rows = [r for r in rows if bucket is None or r.metadata.get("bucket") == bucket]
    assert all(r.ordinal == 0 for r in rows)
    vectors = store.stored_vectors([r.id for r in rows])
    scored = sorted(((float(vectors[r.id] @ query), r.id) for r in rows),
                    key=lambda s: (-s[0], s[1]))
    return [i for _, i in scored[:k]]


def test_first_passages_are_scored_in_memory_through_every_change(url):
    store = open_store(url, create=True)
    other = open_store(url)  # another process changes the index meanwhile
    try:
        store.save_settings({"dimension": 16, "index_type": "flat"})
        store.write_documents([document(f"d{i}", 3, metadata={"bucket": i % 4})
                               for i in range(40)], unit(120, seed=1))
        queries = unit(6, seed=8)

        def agree(bucket=None):
            where = None if bucket is None else parse_filter({"bucket": bucket})
            for query in queries:
                found = store.dense_search(query.reshape(1, -1), 7, where, first_only=True)[0]
                assert [i for i, _ in found] == first_passages_by_hand(store, query, 7, bucket)
            assert store._firsts._state.generation == store.generation()  # the copy ranked

        agree()
        agree(bucket=1)  # a few documents: their first passages among themselves
        other.write_documents([document(f"n{i}", 2) for i in range(5)], unit(10, seed=2))
        other.write_documents([document("d3", 2, words="changed")], unit(2, seed=3))
        other.delete_documents([other.stored_document("d7").id])
        agree()  # added, replaced (new ids) and deleted first passages followed
        target = first_passages_by_hand(store, queries[0], 50)[-1]  # the worst first one
        store._run(lambda conn: conn.execute(  # damage, not a write: the copy is not told
            "UPDATE passages SET embedding = %s::vector WHERE id = %s",
            [str([2.0] + [0.0] * 15), target]))
        _, repairs = other.check(repair=True,
                                 reembed=lambda rows: np.repeat(queries[:1], len(rows), 0))
        assert repairs  # recomputed in place, under the same id: the copy reads it again
        top = store.dense_search(queries[:1], 1, first_only=True)[0]
        assert [i for i, _ in top] == [target] and top[0][1] == pytest.approx(1.0, abs=1e-5)
        agree()
        store.exact_subset_max = 30  # an index with more documents than the copy may hold:
        for query in queries:  # dropped, and the first passages ranked in the database
            found = store.dense_search(query.reshape(1, -1), 7, first_only=True)[0]
            assert [i for i, _ in found] == first_passages_by_hand(store, query, 7)
        assert store._firsts._state is None
    finally:
        other.close()
        store.close()


def test_check_finds_and_repairs_damage(url):
    store = open_store(url, create=True)
    try:
        store.save_settings({"dimension": 16, "index_type": "flat"})
        store.write_documents([document(f"d{i}", 3) for i in range(4)], unit(12))
        assert store.check() == ([], [])
        first = store.document_passages(store.stored_document("d0").id)[0].id
        store._run(lambda conn: conn.execute(  # a vector that is not unit length
            "UPDATE passages SET embedding = %s::vector WHERE id = %s",
            [str([2.0] + [0.0] * 15), first]))
        store._run(lambda conn: conn.execute("UPDATE passages SET terms = '' WHERE id = %s",
                                             [first + 1]))
        store._run(lambda conn: conn.execute("UPDATE documents SET passages = 9 "
                                             "WHERE key = 'd1'"))
        problems, _ = store.check()
        assert len(problems) == 3, problems
        problems, repairs = store.check(repair=True, reembed=lambda rows: unit(len(rows), 5))
        assert len(repairs) == 3 and "recomputed" in " ".join(repairs)
        assert store.check() == ([], [])
        assert store.keyword_search([("alpha",)], 100).__len__() == 12
    finally:
        store.close()


def test_text_postgresql_cannot_hold_is_stored_as_replacement_characters(url):
    store = open_store(url, create=True)
    try:
        store.save_settings({"dimension": 16, "index_type": "flat"})
        doc = replace(document("nul", 1, metadata={"note": "a\x00b"}), text="x\x00y\ud800")
        store.write_documents([doc], unit(1))
        record = store.document("nul")
        assert record.text == "x\ufffdy\ufffd" and record.metadata == {"note": "a\ufffdb"}
    finally:
        store.close()


def test_files_kept_in_the_database(url, tmp_path, monkeypatch):
    monkeypatch.setenv("BERTSEARCH_CACHE", str(tmp_path / "cache"))
    source = tmp_path / "model"
    source.mkdir()
    (source / "a.bin").write_bytes(b"\x00\x01" * 1000)
    (source / "info.json").write_text("{}")
    store = open_store(url, create=True)
    try:
        assert store.attached_folder("coherence") is None
        store.attach_folder("coherence", source)
        folder = store.attached_folder("coherence")
        assert sorted(p.name for p in folder.iterdir()) == ["a.bin", "info.json"]
        assert (folder / "a.bin").read_bytes() == b"\x00\x01" * 1000
        assert str(folder).startswith(str(tmp_path / "cache"))
        assert store.attached_folder("coherence") == folder  # named by content: reused
    finally:
        store.close()


def test_migrations_are_recorded(url):
    store = open_store(url, create=True)
    try:
        assert [r[0] for r in store._query("SELECT name FROM _migrations")] == ["m001_initial"]
    finally:
        store.close()
    open_store(url).close()  # a second open applies nothing twice


def test_a_role_that_may_only_read_searches_and_is_told_it_cannot_write(postgres, url):
    store = open_store(url, create=True)
    store.save_settings({"dimension": 16, "index_type": "flat"})
    store.write_documents([document("a", 2)], unit(2))
    store.close()
    name = database_name(url)
    postgres.sql("postgres", "DROP ROLE IF EXISTS reader")
    postgres.sql("postgres", "CREATE ROLE reader LOGIN")
    postgres.sql(name, "GRANT USAGE ON SCHEMA bertsearch TO reader; "
                       "GRANT SELECT ON ALL TABLES IN SCHEMA bertsearch TO reader")
    reader = open_store(url.replace("postgres@", "reader@"))  # not asked to be read-only
    try:
        assert reader.counts() == (1, 2) and reader.keyword_search([("alpha",)], 5)
        with pytest.raises(IndexReadOnlyError, match="may not change the index"):
            reader.delete_documents([reader.stored_document("a").id])
    finally:
        reader.close()
        postgres.drop(url)
        postgres.sql("postgres", "DROP ROLE reader")


def bm25_by_hand(store, terms, k, where_ids=None):
    """Oracle: BM25 (FTS5's formula) computed passage by passage over the lexemes
    PostgreSQL makes of each passage's words."""
    import math

    from indexer.bm25 import K1, B
    from indexer.keywords import words

    rows = store._query("SELECT id, text FROM passages ORDER BY id")
    vocabulary = sorted({w for _, text in rows for w in words(text)} |
                        {w for term in terms for w in term})
    lexeme = dict(store._query("SELECT w, bertsearch_lexeme(w) FROM unnest(%s::text[]) w",
                               [vocabulary]))
    tokens = {i: [lexeme[w] for w in words(text)] for i, text in rows}
    n, average = len(tokens), sum(map(len, tokens.values())) / len(tokens)
    scores, matched = dict.fromkeys(tokens, 0.0), set()
    for term in terms:
        wanted = [lexeme[w] for w in term]
        tf = {i: sum(t[j:j + len(wanted)] == wanted for j in range(len(t)))
              for i, t in tokens.items()}
        hits = sum(1 for c in tf.values() if c)
        idf = max(math.log((n - hits + 0.5) / (hits + 0.5)), 1e-6)
        for i, c in tf.items():
            if c:  # in FTS5's order of operations, so equal scores tie as FTS5's would
                matched.add(i)
                scores[i] += idf * ((c * (K1 + 1)) /
                                    (c + K1 * (1 - B + B * len(tokens[i]) / average)))
    ranked = sorted((i for i in matched if where_ids is None or i in where_ids),
                    key=lambda i: (-scores[i], i))
    return [(i, scores[i]) for i in ranked[:k]]


def test_keyword_ranking_is_bm25_over_postgres_lexemes_through_changes(url):
    """The in-memory copy ranks as BM25 computed by hand, before and after writes and
    deletions (read incrementally), with and without a filter."""
    import random

    from test_bm25 import documents, queries, write

    store = open_store(url, create=True)
    try:
        store.save_settings({"dimension": 16, "index_type": "flat"})
        rng = random.Random(11)
        write(store, documents(rng, [f"d{i}" for i in range(40)],
                               lambda name: {"half": int(name[1:]) % 2}))
        asked = queries(rng, 12)
        rounds = [lambda: None,
                  lambda: (write(store, documents(rng, [f"d{i}" for i in range(0, 40, 6)])),
                           store.delete_documents([store.stored_document(f"d{i}").id
                                                   for i in range(1, 40, 7)]))]
        for change in rounds:
            change()
            half = {i for i, _ in store.dense_search(unit(1), 1000, parse_filter({"half": 1}),
                                                      exact=True)[0]}
            for terms in asked:
                for where, ids in ((None, None), (parse_filter({"half": 1}), half)):
                    assert store.keyword_search(terms, 10, where) == \
                        bm25_by_hand(store, terms, 10, ids), terms
    finally:
        store.close()


def test_serving_warns_when_the_graph_does_not_fit_in_shared_buffers(url, monkeypatch,
                                                                      caplog):
    import logging
    import threading

    from indexer import Index
    from indexer.postgres_store import PostgresStore
    from server.services import Services
    from server.settings import ServerSettings

    store, _ = hnsw_store(url, n_docs=300)
    store.save_settings({"model": "tiny", "model_fingerprint": "f", "pooling": "mean",
                         "max_seq_length": 128, "chunk_tokens": 200, "chunk_overlap": 32})
    store.close()
    # a graph larger than the shared buffers (a real one would take > 128 MB here)
    monkeypatch.setattr(PostgresStore, "_memory", lambda self: (201 * 2**20, 128 * 2**20))
    with Index.open(url) as index, caplog.at_level(logging.WARNING, "bertsearch.server"):
        Services(ServerSettings(index_dir=url), None, index).warm_in_background()
        for thread in threading.enumerate():
            if thread.name == "bertsearch-warm":
                thread.join(timeout=30)
    assert [r.getMessage() for r in caplog.records if r.name == "bertsearch.server"] == [
        "The HNSW graph (201 MB) does not fit in the server's shared_buffers (128 MB): "
        "searches read its pages from the operating system over and over (a 201 MB graph "
        "in 128 MB made them 1.5x slower). Raise shared_buffers above the graph's size."]


def test_warming_loads_the_graph_into_shared_buffers(url):
    store, _ = hnsw_store(url, n_docs=300)
    try:
        store._run(lambda conn: conn.execute(  # pg_prewarm off the search path
            "CREATE EXTENSION pg_buffercache; CREATE SCHEMA tools; "
            "CREATE EXTENSION pg_prewarm SCHEMA tools"))

        def cached() -> int:
            return store._query(
                "SELECT count(*) FROM pg_buffercache WHERE relfilenode = "
                "pg_relation_filenode('passages_embedding_hnsw') AND reldatabase = "
                "(SELECT oid FROM pg_database WHERE datname = current_database())")[0][0]

        blocks = store._query("SELECT pg_relation_size('passages_embedding_hnsw') / "
                              "current_setting('block_size')::int")[0][0]
        store._run(lambda conn: conn.execute(  # as after a restart
            "SELECT pg_buffercache_evict_relation('passages_embedding_hnsw')"))
        assert cached() == 0
        store.warm()
        assert cached() == blocks > 0
        store._run(lambda conn: conn.execute(
            "SELECT pg_buffercache_evict_relation('passages_embedding_hnsw')"))
        store._memory = lambda: (blocks * 8192, blocks * 8192 - 1)  # as if it did not fit
        store.warm()
        assert cached() == 0
    finally:
        store.close()
