"""SQLite side: migrations, transactions, generations, ids never reused."""


import numpy as np
import pytest

from indexer.errors import IndexCorruptError
from indexer.store import NewPassage, Store


def passages(n, doc="d"):
    return [NewPassage(i, i * 10, i * 10 + 5, i + 1, i + 1, 3, f"{doc} passage {i}")
            for i in range(n)]


@pytest.fixture
def store(tmp_path):
    s = Store.open(tmp_path)
    yield s
    s.close()


def test_migrations_are_recorded_and_idempotent(tmp_path, store):
    names = [r["name"] for r in store.db["_migrations"].rows]
    assert names == ["m001_initial"]
    again = Store.open(tmp_path)
    assert [r["name"] for r in again.db["_migrations"].rows] == names
    assert store.db.journal_mode == "wal"
    again.close()


def test_write_replace_delete_and_generation(store):
    g0 = store.generation()
    vectors = np.eye(3, 4, dtype=np.float32)
    store.write_documents("/root", [("a.txt", "h1", 10, 1.0, passages(2, "a")),
                                    ("b.txt", "h2", 10, 1.0, passages(1, "b"))], vectors)
    assert store.generation() == g0 + 1 and store.counts() == (2, 3)
    first_ids = list(store.passage_ids())
    ids, block = next(store.vectors())
    assert np.array_equal(block, vectors) and list(ids) == first_ids
    # replacing a document gives its passages new ids; the old ones are gone
    store.write_documents("/root", [("a.txt", "h3", 11, 2.0, passages(1, "a2"))],
                          np.ones((1, 4), np.float32))
    ids = list(store.passage_ids())
    assert len(ids) == 2 and max(ids) > max(first_ids)
    doc = store.documents("/root")["a.txt"]
    assert doc.content_hash == "h3"
    removed = store.delete_documents([doc.id])
    assert removed == 1 and store.counts() == (1, 1)


def test_ids_are_never_reused_even_after_deleting_the_last(store):
    store.write_documents("/r", [("a", "h", 1, 1.0, passages(3))], np.zeros((3, 2), np.float32))
    last = int(store.passage_ids().max())
    store.delete_documents([store.documents("/r")["a"].id])
    store.write_documents("/r", [("b", "h", 1, 1.0, passages(1))], np.zeros((1, 2), np.float32))
    assert int(store.passage_ids().min()) > last


def test_a_failed_write_leaves_nothing_behind(store):
    with pytest.raises(StopIteration):  # fewer vectors than passages: fails mid-transaction
        store.write_documents("/r", [("a", "h", 1, 1.0, passages(3))],
                              np.zeros((2, 2), np.float32))
    assert store.counts() == (0, 0) and store.generation() == 0


def test_roots_are_kept_apart(store):
    store.write_documents("/one", [("a", "h", 1, 1.0, passages(1))], np.zeros((1, 2), np.float32))
    store.write_documents("/two", [("a", "h", 1, 1.0, passages(1))], np.zeros((1, 2), np.float32))
    assert list(store.documents("/one")) == ["a"] and store.counts() == (2, 2)


def test_passage_rows_carry_their_document(store):
    store.write_documents("/r", [("dir/a.md", "h", 1, 1.0, passages(2))],
                          np.zeros((2, 2), np.float32))
    rows = store.passages(list(store.passage_ids()))
    row = rows[min(rows)]
    assert (row.root, row.path, row.ordinal, row.start, row.end) == ("/r", "dir/a.md", 0, 0, 5)
    assert [r.ordinal for r in store.document_passages(row.document_id)] == [0, 1]


def test_not_a_database_is_a_clear_error(tmp_path):
    (tmp_path / "passages.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(IndexCorruptError, match="not a readable bertsearch database"):
        Store.open(tmp_path)
