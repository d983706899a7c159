"""The store conformance suite: one set of tests every store passes (SQLite + FAISS here;
PostgreSQL + pgvector through the `stores` fixture in conftest when it is available).

Oracles: numpy brute force over the matching passages for filtered dense search, a plain
Python reading of the filter dialect (`filter_oracle.matches`) for which documents match.
"""

import json
import random

import numpy as np
import pytest
from filter_oracle import matches

from indexer.errors import IndexBusyError
from indexer.filters import parse_filter
from indexer.store import API, FOLDER, NewDocument, NewPassage

DIM = 16


def passages(n, doc="d", words="alpha beta"):
    return [NewPassage(i, i * 10, i * 10 + 5, i + 1, i + 1, 3, f"{doc} passage {i} {words}",
                       ("Title", f"Section {i}")) for i in range(n)]


def document(key, n=2, origin=API, metadata=None, words="alpha beta", root=""):
    return NewDocument(key, origin, root, key if not root else key.rsplit("/", 1)[-1],
                       f"hash-{key}-{n}-{words}", 10, 1.0, metadata or {}, f"text of {key}",
                       passages(n, key, words))


def unit(n, seed=0):
    x = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_write_replace_delete_and_generation(store):
    g0 = store.generation()
    store.write_documents([document("a", 2), document("b", 1)], unit(3))
    assert store.generation() == g0 + 1 and store.counts() == (2, 3)
    first = {r.id for r in store.document_passages(store.stored_document("a").id)}
    store.write_documents([document("a", 1, words="gamma")], unit(1, seed=1))
    a = store.stored_document("a")
    assert a.content_hash == "hash-a-1-gamma" and store.counts() == (2, 2)
    (new,) = store.document_passages(a.id)
    assert new.id > max(first)  # replaced passages get new ids; the old ones are gone
    assert store.passages(sorted(first)) == {}
    assert store.delete_documents([a.id]) == 1 and store.counts() == (1, 1)
    assert store.document("a") is None and store.stored_document("a") is None


def test_ids_are_never_reused_even_after_deleting_the_last(store):
    store.write_documents([document("a", 3)], unit(3))
    last = max(r.id for r in store.document_passages(store.stored_document("a").id))
    store.delete_documents([store.stored_document("a").id])
    store.write_documents([document("b", 1)], unit(1))
    assert min(r.id for r in store.document_passages(store.stored_document("b").id)) > last


def test_a_failed_write_leaves_nothing_behind(store):
    g0 = store.generation()
    with pytest.raises(StopIteration):  # fewer vectors than passages: fails mid-transaction
        store.write_documents([document("a", 3)], unit(2))
    assert store.counts() == (0, 0) and store.generation() == g0
    assert store.keyword_search([("alpha",)], 10) == []


def test_documents_keep_text_metadata_and_origin(store):
    meta = {"year": 2025, "tags": ["faq", "howto"], "author": {"name": "Ada"}}
    store.write_documents([document("api/one", 1, metadata=meta),
                           document("/root/f.md", 1, origin=FOLDER, root="/root")], unit(2))
    record = store.document("api/one")
    assert (record.origin, record.text, record.metadata, record.passages) == (
        API, "text of api/one", meta, 1)
    assert set(store.folder_documents("/root")) == {"f.md"}
    assert store.folder_documents("") == {}  # API documents belong to no folder
    row = next(iter(store.passages([r.id for r in store.document_passages(
        store.stored_document("api/one").id)]).values()))
    assert row.key == "api/one" and row.headings == ("Title", "Section 0")
    assert row.metadata == meta
    store.update_document(store.stored_document("api/one").id, 11, 2.0, {"year": 2026})
    assert store.document("api/one").metadata == {"year": 2026}


def test_dense_search_top_k_equals_brute_force(store):
    vectors = unit(200)
    store.write_documents([document(f"d{i}", 4) for i in range(50)], vectors)
    ids = sorted(p.id for i in range(50)
                 for p in store.document_passages(store.stored_document(f"d{i}").id))
    queries = unit(5, seed=9)
    got = store.dense_search(queries, 10)
    expected = queries @ vectors.T
    for q, hits in enumerate(got):
        order = np.argsort(-expected[q], kind="stable")[:10]
        assert [i for i, _ in hits] == [ids[j] for j in order]
        assert np.allclose([s for _, s in hits], expected[q][order], atol=1e-5)


def random_metadata(rng, i):
    meta = {"n": i, "bucket": i % 100, "kind": rng.choice(["faq", "guide", "ref"]),
            "score": rng.choice([0.5, 1, 2.5, 3]), "draft": rng.random() < 0.3,
            "path": rng.choice(["api/a.md", "api/deep/b.md", "guide/c.rst", "x.txt"]),
            "date": f"202{rng.randint(0, 5)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}"}
    if rng.random() < 0.5:
        meta["tags"] = rng.sample(["red", "green", "blue", "black"], rng.randint(0, 3))
    if rng.random() < 0.2:
        meta["owner"] = None
    if rng.random() < 0.3:
        meta["author"] = {"name": rng.choice(["ada", "bob"])}
    return meta


FILTERS = [
    {"kind": "faq"}, {"kind": {"$ne": "faq"}}, {"bucket": {"$lt": 1}},
    {"n": {"$gte": 995}}, {"score": {"$gt": 1}}, {"score": 2.5}, {"draft": True},
    {"draft": False, "kind": {"$in": ["faq", "ref"]}}, {"kind": {"$nin": ["faq", "guide"]}},
    {"tags": "red"}, {"tags": {"$in": ["green", "black"]}}, {"tags": {"$nin": ["red"]}},
    {"path": {"$glob": "api/*.md"}}, {"path": {"$glob": "*/[!d]*.??"}}, {"owner": None},
    {"owner": {"$ne": None}}, {"author.name": "ada"}, {"date": {"$gte": "2023-05"}},
    {"$or": [{"kind": "faq", "draft": True}, {"bucket": {"$lte": 2}}]},
    {"$and": [{"n": {"$gt": 10}}, {"$or": [{"tags": "blue"}, {"missing": 1}]}]},
    {"n": {"$gt": "5"}},  # a string never compares with a number
    {"id": {"$in": ["doc3", "doc7"]}}, {"id": {"$glob": "doc1?"}}, {"nothing": "here"},
]


@pytest.fixture(scope="module")
def filtered(store_factory, tmp_path_factory):
    """1,000 documents of two passages with varied metadata, in a store of its own."""
    rng = random.Random(0)
    store = store_factory(tmp_path_factory.mktemp("filtered"))
    metadata = [random_metadata(rng, i) for i in range(1000)]
    vectors = unit(2000, seed=3)
    store.write_documents([document(f"doc{i}", 2, metadata=m)
                           for i, m in enumerate(metadata)], vectors)
    yield store, metadata, vectors
    store.close()


@pytest.mark.parametrize("spec", FILTERS, ids=[json.dumps(f) for f in FILTERS])
def test_filtered_search_equals_brute_force_over_the_matching_passages(filtered, spec):
    store, metadata, vectors = filtered
    where = parse_filter(spec)
    wanted = [i for i, m in enumerate(metadata) if matches(where, m, f"doc{i}")]
    rows = [2 * i + j for i in wanted for j in range(2)]
    query = unit(1, seed=11)
    k = 10
    hits = store.dense_search(query, k, where)[0]
    if not rows:
        assert hits == []
        return
    scores = (query @ vectors[rows].T)[0]
    order = np.argsort(-scores, kind="stable")[:k]
    assert len(hits) == min(k, len(rows))  # k hits whenever k passages match
    assert np.allclose([s for _, s in hits], scores[order], atol=1e-5)
    found = store.passages([i for i, _ in hits])
    assert all(matches(where, found[i].metadata, found[i].key) for i, _ in hits)
    keyword = store.keyword_search([("alpha",)], 5000, where)
    assert len(keyword) == len(rows)  # every matching passage has the word, no other


def test_a_filter_matching_a_tenth_of_a_percent_still_returns_k(filtered):
    store, metadata, _ = filtered
    where = parse_filter({"n": {"$in": [7, 500]}})  # 4 of 2,000 passages
    assert len(store.dense_search(unit(1), 4, where)[0]) == 4
    assert len(store.dense_search(unit(1), 10, where)[0]) == 4


def test_filtered_keyword_ranking_is_the_unfiltered_one_restricted(store):
    """Oracle: the unfiltered BM25 ranking with the passages the filter refuses left out."""
    rng = random.Random(5)
    vocabulary = ["alpha", "beta", "gamma", "delta", "omega"]
    docs = [document(f"w{i}", 3, metadata={"half": i % 2},
                     words=" ".join(rng.choices(vocabulary, k=rng.randint(1, 12))))
            for i in range(60)]
    store.write_documents(docs, unit(180))
    where = parse_filter({"half": 1})
    allowed = {i for i, _ in store.dense_search(unit(1), 180, where)[0]}
    terms = [("gamma",), ("omega",), ("beta",)]
    everything = store.keyword_search(terms, 1000)
    expected = [i for i, _ in everything if i in allowed][:10]
    found = store.keyword_search(terms, 10, where)
    assert len(found) == 10
    assert sorted(i for i, _ in found) == sorted(expected)  # ties may fall either way
    scores = dict(everything)
    assert np.allclose([s for _, s in found], [scores[i] for i in expected], atol=1e-6)


def test_a_repeated_filter_sees_every_change(store):
    store.write_documents([document(f"c{i}", 2, metadata={"team": "a"}) for i in range(3)],
                          unit(6))
    where = parse_filter({"team": "a"})
    assert len(store.dense_search(unit(1), 10, where)[0]) == 6
    store.update_document(store.stored_document("c0").id, 10, 2.0, {"team": "b"})
    assert len(store.dense_search(unit(1), 10, where)[0]) == 4
    store.delete_documents([store.stored_document("c1").id])
    assert len(store.dense_search(unit(1), 10, where)[0]) == 2
    store.write_documents([document("c9", 3, metadata={"team": "a"})], unit(3))
    assert len(store.dense_search(unit(1), 10, where)[0]) == 5
    assert len(store.keyword_search([("alpha",)], 10, where)) == 5


def test_keyword_search_finds_exact_identifiers_and_phrases(store):
    texts = ["Set CONFIG_DEBUG_FS=y to mount debugfs.", "The debug file system is handy.",
             "bind() fails with EADDRINUSE when the port is taken.",
             "Call PyErr_Print to print the traceback.", "Use os.path.join for paths.",
             "The path is joined by the OS."]
    docs = [NewDocument(f"k{i}", API, "", f"k{i}", f"h{i}", 1, 1.0, {}, t,
                        [NewPassage(0, 0, len(t), 1, 1, 5, t)]) for i, t in enumerate(texts)]
    store.write_documents(docs, unit(len(texts)))
    top = store.passages([i for i, _ in store.keyword_search([("config_debug_fs",)], 3)])
    assert [r.key for r in top.values()] == ["k0"]
    assert [store.passages([i])[i].key for i, _ in
            store.keyword_search([("eaddrinuse",)], 3)] == ["k2"]
    assert [store.passages([i])[i].key for i, _ in
            store.keyword_search([("pyerr_print",)], 3)] == ["k3"]
    ranked = store.keyword_search([("os", "path", "join"), ("os",), ("path",), ("join",)], 3)
    assert store.passages([ranked[0][0]])[ranked[0][0]].key == "k4"  # the phrase wins
    stemmed = store.keyword_search([("mounting",)], 3)  # stemming: mounting ~ mount
    assert store.passages([stemmed[0][0]])[stemmed[0][0]].key == "k0"


def test_delete_leaves_no_trace(store, vocabulary):
    secret = "xylophonist zebrafinch"
    store.write_documents([document("secret", 3, words=secret), document("other", 1)],
                          unit(4))
    gone = store.stored_document("secret")
    ids = [r.id for r in store.document_passages(gone.id)]
    store.delete_documents([gone.id])
    assert store.passages(ids) == {} and store.document("secret") is None
    assert store.keyword_search([("xylophonist",)], 10) == []
    terms = vocabulary(store)
    assert "other" in terms and not terms & {"xylophonist", "zebrafinch"}
    found = {i for i, _ in store.dense_search(unit(1), 10, exact=True)[0]}
    assert not found & set(ids) and len(found) == 1


def test_clear_starts_over_with_new_settings(store):
    store.write_documents([document("a", 2)], unit(2))
    store.clear({"dimension": DIM, "note": "rebuilt"})
    assert store.counts() == (0, 0) and store.settings()["note"] == "rebuilt"
    assert store.keyword_search([("alpha",)], 10) == []


def test_a_second_writer_learns_who_holds_the_lock(store, store_factory, store_location):
    other = store_factory(store_location)
    try:
        with store.writer_lock("bertsearch index /docs"), \
                pytest.raises(IndexBusyError, match="bertsearch index /docs"), \
                other.writer_lock("second"):
            pass
        with other.writer_lock("second"):  # free again once the first let go
            pass
    finally:
        other.close()
