"""The first-passage copy's own logic against brute force, over a source held in plain Python
(the PostgreSQL store's use of it, through real changes, is in test_postgres.py)."""

import numpy as np

from indexer.first_passages import VECTOR_EPOCH, FirstPassageCopy


class Source:
    """An index reduced to what the copy reads: first passages, their documents, vectors."""

    def __init__(self):
        self.rows: dict[int, tuple[int, np.ndarray]] = {}  # passage id -> (document, vector)
        self.generation_value, self.epoch, self.fetched = 0, None, []

    def put(self, passage: int, document: int, vector) -> None:
        self.rows[passage] = (document, np.asarray(vector, dtype=np.float32))
        self.generation_value += 1

    def generation(self) -> int:
        return self.generation_value

    def settings(self) -> dict:
        return {VECTOR_EPOCH: self.epoch}

    def first_passages(self):
        ids = list(self.rows)[::-1]  # in no particular order, as a database may give them
        return (np.array(ids, dtype=np.int64),
                np.array([self.rows[i][0] for i in ids], dtype=np.int64))

    def stored_vectors(self, ids):
        self.fetched += list(ids)
        return {i: self.rows[i][1] for i in ids if i in self.rows}


def by_hand(source, query, k, documents=None):
    scored = [(float(v @ query), i) for i, (d, v) in source.rows.items()
              if documents is None or d in documents]
    return [i for _, i in sorted(scored, key=lambda s: (-s[0], s[1]))[:k]]


def test_ties_at_the_cut_go_to_the_lower_id_and_a_scope_keeps_its_own():
    source, copy = Source(), FirstPassageCopy()
    for passage, vector in [(9, [1, 0]), (4, [1, 0]), (7, [0.6, 0.8]), (2, [1, 0]),
                            (5, [0, 1])]:
        source.put(passage, passage * 10, vector)
    state = copy.current(source)
    assert [i for i, _ in state.top(np.array([1, 0]), 2)] == [2, 4]  # three tied for two
    assert [i for i, _ in state.top(np.array([1, 0]), 9)] == [2, 4, 9, 7, 5]
    assert state.top(np.array([0, 1]), 2, documents=[90, 50]) == [(5, 1.0), (9, 0.0)]
    assert state.top(np.array([0, 1]), 2, documents=[]) == []
    assert state.top(np.array([0, 1]), 0) == []


def test_catching_up_fetches_only_new_vectors_and_rereads_after_a_repair():
    rng = np.random.default_rng(3)
    source, copy = Source(), FirstPassageCopy()
    for passage in range(1, 41):
        source.put(passage, passage, rng.normal(size=8))
    query = rng.normal(size=8).astype(np.float32)
    assert [i for i, _ in copy.current(source).top(query, 5)] == by_hand(source, query, 5)
    assert sorted(source.fetched) == list(range(1, 41))
    source.fetched.clear()
    source.generation_value += 1  # a write that changed no first passage (metadata)
    assert copy.current(source).generation == source.generation_value
    assert source.fetched == []  # relabelled, nothing read again
    for passage in (3, 17):
        del source.rows[passage]
    source.put(41, 41, rng.normal(size=8))
    assert [i for i, _ in copy.current(source).top(query, 40)] == by_hand(source, query, 40)
    assert source.fetched == [41]  # only the new one
    source.rows[5] = (5, query)  # repaired in place, under its id: the epoch moves
    source.epoch, source.generation_value = "repaired", source.generation_value + 1
    assert [i for i, _ in copy.current(source).top(query, 1)] == [5]
    assert len(source.fetched) == 1 + len(source.rows)  # read whole
