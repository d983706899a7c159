"""FAISS side: exact top-k equals numpy brute force; HNSW recall; atomic save/load."""

import numpy as np
import pytest

from indexer.errors import IndexCorruptError, IndexerError
from indexer.vectors import VectorIndex, choose_kind


def unit_vectors(n, d=32, seed=0, clusters=20):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, d))
    x = centres[rng.integers(0, clusters, n)] + 0.5 * rng.normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def brute_force(vectors, ids, queries, k):
    scores = queries @ vectors.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), ids[order]


def test_flat_top_k_equals_numpy_brute_force():
    vectors, queries = unit_vectors(2000), unit_vectors(50, seed=1)
    ids = np.arange(2000, dtype=np.int64) * 7 + 3  # ids are passage ids, not positions
    index = VectorIndex.empty(32, "flat")
    index.add(ids, vectors)
    scores, got = index.search(queries, 10)
    want_scores, want = brute_force(vectors, ids, queries, 10)
    assert np.allclose(scores, want_scores, atol=1e-5)
    assert (got == want).mean() > 0.99  # only exact ties may swap
    assert set(index.ids()) == set(ids)


def test_remove_and_k_larger_than_the_index():
    index = VectorIndex.empty(32, "flat")
    vectors = unit_vectors(5)
    index.add(np.arange(5), vectors)
    index.remove(np.array([1, 3]))
    scores, ids = index.search(vectors[:1], 10)
    assert sorted(ids[0]) == [0, 2, 4] and len(index) == 3


def test_empty_index_searches_to_nothing():
    scores, ids = VectorIndex.empty(8).search(np.zeros((2, 8), np.float32), 5)
    assert (ids == -1).all()


def test_hnsw_recall_at_10_against_exact():
    vectors, queries = unit_vectors(20_000, d=64), unit_vectors(200, d=64, seed=2)
    ids = np.arange(len(vectors))
    exact, approx = VectorIndex.empty(64, "flat"), VectorIndex.empty(64, "hnsw")
    exact.add(ids, vectors)
    approx.add(ids, vectors)
    _, want = exact.search(queries, 10)
    _, got = approx.search(queries, 10)
    recall = np.mean([len(set(g) & set(w)) / 10 for g, w in zip(got, want)])
    assert recall >= 0.95, recall
    with pytest.raises(IndexerError, match="cannot delete"):
        approx.remove(ids[:1])


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_save_load_round_trip(tmp_path, kind):
    index = VectorIndex.empty(32, kind)
    vectors = unit_vectors(300)
    index.add(np.arange(300) + 10, vectors)
    index.save(tmp_path / "v.faiss", generation=42)
    loaded, generation = VectorIndex.load(tmp_path / "v.faiss")
    assert generation == 42 and loaded.kind == kind and len(loaded) == 300
    assert np.array_equal(loaded.search(vectors[:5], 3)[1], index.search(vectors[:5], 3)[1])
    assert [p.name for p in tmp_path.iterdir()] == ["v.faiss"]  # no temp files left


def test_damaged_file_is_a_corrupt_error(tmp_path):
    path = tmp_path / "v.faiss"
    path.write_bytes(b"garbage")
    with pytest.raises(IndexCorruptError):
        VectorIndex.load(path)
    index = VectorIndex.empty(8)
    index.add(np.arange(3), unit_vectors(3, d=8))
    index.save(path, 1)
    path.write_bytes(path.read_bytes()[:-20])  # truncated
    with pytest.raises(IndexCorruptError):
        VectorIndex.load(path)


def test_choose_kind():
    assert choose_kind("auto", 1000) == "flat"
    assert choose_kind("auto", 10_000_000) == "hnsw"
    with pytest.raises(IndexerError, match="auto, flat or hnsw"):
        choose_kind("ivf", 10)


@pytest.mark.parametrize("damage", ["random bytes in the data", "header {}", "header [1]",
                                    "header without checksum", "count off by one"])
def test_damage_anywhere_in_the_file_is_detected(tmp_path, damage):
    """Issue 17: 4 KB of random bytes inside the vector data loaded fine and a corrupt
    vector became the top hit; a header of {} or [1] raised KeyError/TypeError."""
    import json

    from indexer.vectors import MAGIC

    path = tmp_path / "v.faiss"
    index = VectorIndex.empty(32)
    index.add(np.arange(2000), unit_vectors(2000))
    index.save(path, 7)
    raw = path.read_bytes()
    end = raw.index(b"\n", len(MAGIC))
    header = json.loads(raw[len(MAGIC):end])
    if damage == "random bytes in the data":
        at = end + 1 + 50_000
        raw = raw[:at] + np.random.default_rng(0).bytes(4096) + raw[at + 4096:]
    elif damage == "count off by one":
        raw = MAGIC + json.dumps({**header, "count": 1999}).encode() + raw[end:]
    else:
        replacement = {"header {}": {}, "header [1]": [1],
                       "header without checksum": {k: v for k, v in header.items()
                                                   if k != "sha256"}}[damage]
        raw = MAGIC + json.dumps(replacement).encode() + raw[end:]
    path.write_bytes(raw)
    with pytest.raises(IndexCorruptError, match="damaged"):
        VectorIndex.load(path)
