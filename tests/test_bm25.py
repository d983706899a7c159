"""The in-memory BM25 copy ranks exactly as FTS5 does (the oracle: FTS5's own bm25() over the
same passages), through writes, replacements, deletions and filters."""

import random

import numpy as np
import pytest

from indexer.bm25 import Bm25Postings, top_k
from indexer.filters import parse_filter
from indexer.sqlite_store import SQLiteStore
from indexer.store import API, NewDocument, NewPassage

WORDS = ("mount mounting mounted kernel module config_debug_fs eaddrinuse pyerr_print café "
         "cafe naïve file files system path join os the of and driver memory page cache "
         "printer jams floor tray paper").split()
PUNCTUATED = ["os.path.join", "en_US.UTF-8", "--chunk-tokens", "CONFIG_DEBUG_FS=y",
              "file-system", "page.cache", "page.page.page", "the-the-the"]


def text(rng: random.Random) -> str:
    n = rng.choice([0, 1, 3, 8, 20, 60, 150])
    words = [rng.choice(WORDS) if rng.random() < 0.9 else rng.choice(PUNCTUATED)
             for _ in range(n)]
    return " ".join(words) if words else "— … —"  # a passage FTS5 finds no token in


def documents(rng: random.Random, names, metadata=lambda name: {}):
    out = []
    for name in names:
        texts = [text(rng) for _ in range(rng.randint(1, 4))]
        out.append(NewDocument(name, API, "", name, f"h-{name}-{rng.random()}", 1, 1.0,
                               metadata(name), " ".join(texts),
                               [NewPassage(i, 0, 1, 1, 1, 3, t) for i, t in enumerate(texts)]))
    return out


def vectors(n: int) -> np.ndarray:
    x = np.random.default_rng(n).normal(size=(n, 16)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def write(store, docs):
    store.write_documents(docs, vectors(sum(len(d.passages) for d in docs)))


def queries(rng: random.Random, n: int):
    pool = [(w,) for w in WORDS] + [("os", "path", "join"), ("en_us", "utf", "8"),
                                    ("chunk", "tokens"), ("file", "system"), ("page", "cache"),
                                    ("page", "page"), ("the", "the"), ("mounting", "kernel")]
    return [rng.sample(pool, rng.randint(1, 6)) for _ in range(n)]


def assert_same_ranking(store, terms, k=15, where=None):
    """The same passages, in the same order, with the same scores to the last bit (so ties
    fall as FTS5's `ORDER BY score DESC, rowid` lets them fall)."""
    assert store.keyword_search(terms, k, where) == store.fts5_keyword_search(terms, k, where), \
        terms


@pytest.fixture
def store(tmp_path):
    s = SQLiteStore.open(tmp_path / "index", create=True)
    s.save_settings({"dimension": 16, "index_type": "flat"})
    yield s
    s.close()


def test_the_copy_ranks_as_fts5_through_writes_and_deletes(store):
    rng = random.Random(3)
    write(store, documents(rng, [f"d{i}" for i in range(80)],
                           lambda name: {"half": int(name[1:]) % 2}))
    asked = queries(rng, 40)
    for terms in asked:
        assert_same_ranking(store, terms)
    # replace some documents, delete others, add new ones: the copy catches up
    write(store, documents(rng, [f"d{i}" for i in range(0, 80, 7)]))
    store.delete_documents([store.stored_document(f"d{i}").id for i in range(3, 80, 5)])
    write(store, documents(rng, [f"n{i}" for i in range(10)]))
    half = parse_filter({"half": 1})
    for terms in asked:
        assert_same_ranking(store, terms)
        assert_same_ranking(store, terms, where=half)


def test_deleting_most_passages_keeps_the_ranking(store):
    rng = random.Random(4)
    write(store, documents(rng, [f"d{i}" for i in range(60)]))
    store.keyword_search([("kernel",)], 5)  # the copy is built
    store.delete_documents([store.stored_document(f"d{i}").id for i in range(45)])
    for terms in queries(rng, 20):
        assert_same_ranking(store, terms)
    assert store.keyword_search([("nothing_like_this",)], 5) == []


def test_top_k_breaks_ties_by_the_lower_id():
    total = np.array([0.0, 2.0, 1.0, 2.0, 2.0, 0.5])
    matched = total > 0
    assert top_k(total, matched, 2) == [(1, 2.0), (3, 2.0)]
    assert top_k(total, matched, 10, subset=np.array([2, 4, 5, 9])) == \
        [(4, 2.0), (2, 1.0), (5, 0.5)]


def test_a_passage_without_tokens_still_counts():
    copy = Bm25Postings()
    copy.add(np.array([1, 2, 3]), [("a", np.array([1, 1]), np.array([0, 1])),
                                   ("b", np.array([2]), np.array([0]))])
    assert len(copy) == 3 and copy.total_tokens == 3
    copy.remove(np.array([3, 7]))
    assert len(copy) == 2 and list(copy.ids()) == [1, 2]


def test_a_repaired_keyword_index_is_read_again_by_every_copy(store, tmp_path):
    """A repair rewrites tokens of passages that keep their ids, which no id comparison can
    see: it changes the keyword epoch, and a copy held by another process reads anew."""
    rng = random.Random(5)
    write(store, documents(rng, [f"d{i}" for i in range(20)]))
    damaged = SQLiteStore.open(tmp_path / "index")  # another process's handle, same index
    first = store.db.execute("SELECT min(id) FROM passages").fetchone()[0]
    store.db.execute("INSERT INTO passages_fts(passages_fts, rowid, text) VALUES ('delete', "
                     "?, (SELECT text FROM passages WHERE id = ?))", [first, first])
    damaged.keyword_search([("kernel",)], 5)  # its copy mirrors the damaged FTS5 index
    problems, repairs = store.check(repair=True)
    assert any("keyword index" in p for p in problems) and repairs
    try:
        for terms in queries(rng, 20):
            found = damaged.keyword_search(terms, 15)
            assert found == store.keyword_search(terms, 15)
            assert np.allclose([s for _, s in found],
                               [s for _, s in store.fts5_keyword_search(terms, 15)])
    finally:
        damaged.close()


def test_tokens_of_passages_not_added_are_ignored():
    """A damaged keyword index may name passages that are not there: they never count."""
    copy = Bm25Postings()
    copy.add(np.array([1, 2]), [("a", np.array([1, 9, 400]), np.array([0, 0, 3])),
                                ("b", np.array([400]), np.array([1]))])
    assert len(copy) == 2 and copy.total_tokens == 1
    total, matched = copy.scores([("a",), ("b",)])
    assert list(np.flatnonzero(matched)) == [1]
