"""An in-memory copy of the keyword index, so BM25 ranks a query without FTS5's per-row cost.

FTS5 ranks by calling `bm25()` once for every passage that matches any query term: a
ten-word question matches ~27,000 of 100,000 passages and costs ~33 ms. This copy holds, for
each token, the passages it occurs in and how often (numpy arrays), and each passage's length
in tokens, so a query is a few vectorised array operations (~1 ms).

It is derived data, like the FAISS copy of the vectors: the store fills it from FTS5's own
token stream (the same Porter stems and folded diacritics) and catches it up when the index
changes. Scores follow FTS5's `bm25()` exactly — k1 = 1.2, b = 0.75, a term's
idf = ln((N - n + 0.5) / (n + 0.5)) (at least 1e-6) over the N passages, n of them holding
it, lengths against the average — so the ranking is FTS5's own; the tests hold the two
side by side.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

K1, B = 1.2, 0.75
MIN_IDF = 1e-6  # FTS5's floor for terms in more than half the passages


class Bm25Postings:
    """For each token, the passages holding it and its count in each; passage lengths.

    Passages are numbered by their store ids (never reused). Removing passages only marks
    them; their postings are dropped when a quarter of what is held is dead."""

    def __init__(self) -> None:
        self._chunks: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
        self.lengths = np.zeros(0, dtype=np.float64)  # tokens per passage id; 0: none
        self.alive = np.zeros(0, dtype=bool)
        self.count = 0  # passages held
        self.total_tokens = 0.0
        self._dead = 0  # removed passages whose postings are still held
        self._norm: np.ndarray | None = None

    def __len__(self) -> int:
        return self.count

    def ids(self) -> np.ndarray:
        """The passage ids held, sorted."""
        return np.flatnonzero(self.alive).astype(np.int64)

    def add(self, passages: np.ndarray, counts: Iterable[tuple[str, int, int]]) -> None:
        """Add the passages `passages` (ids, all new; a passage without a token still counts,
        as FTS5 counts it) from `(token, passage id, occurrences)` triples, each (token,
        passage) pair once — grouped by token, as FTS5 lists them, they are stored as they
        stream by."""
        passages = np.asarray(passages, dtype=np.int64)
        if not len(passages):
            return
        self._grow(int(passages.max()) + 1)
        token, ids, tfs = None, [], []
        for next_token, passage, occurrences in counts:
            if next_token != token:
                self._store(token, ids, tfs)
                token, ids, tfs = next_token, [], []
            ids.append(passage)
            tfs.append(occurrences)
        self._store(token, ids, tfs)
        self.alive[passages] = True
        self.count += len(passages)
        self.total_tokens += float(self.lengths[passages].sum())
        self._norm = None

    def _store(self, token: str | None, ids: list[int], tfs: list[int]) -> None:
        if not ids:
            return
        id_array, tf_array = np.array(ids, dtype=np.int64), np.array(tfs, dtype=np.float32)
        self._chunks.setdefault(token, []).append((id_array, tf_array))
        self.lengths[id_array] += tf_array

    def remove(self, ids: np.ndarray) -> None:
        """Forget these passages (ids not held are ignored)."""
        ids = np.asarray(ids, dtype=np.int64)
        ids = ids[(ids < len(self.alive))]
        ids = ids[self.alive[ids]]
        if not len(ids):
            return
        self.alive[ids] = False
        self.count -= len(ids)
        self.total_tokens -= float(self.lengths[ids].sum())
        self.lengths[ids] = 0.0
        self._dead += len(ids)
        self._norm = None
        if self._dead * 4 > self.count:
            self._compact()

    def scores(self, tokens: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """BM25 of every passage against the query `tokens` (one per term, repeats count as
        FTS5 counts them): an array indexed by passage id, and which passages matched."""
        total = np.zeros(len(self.alive), dtype=np.float64)
        matched = np.zeros(len(self.alive), dtype=bool)
        if not self.count:
            return total, matched
        norm = self._normaliser()
        for token in tokens:
            ids, tf = self._postings(token)
            if not len(ids):
                continue
            idf = max(math.log((self.count - len(ids) + 0.5) / (len(ids) + 0.5)), MIN_IDF)
            tf = tf.astype(np.float64)  # FTS5 computes in doubles; so must the sums here
            total[ids] += idf * (tf * (K1 + 1)) / (tf + norm[ids])
            matched[ids] = True
        return total, matched

    def _normaliser(self) -> np.ndarray:
        """k1 * (1 - b + b * length / average length), per passage id."""
        if self._norm is None:
            average = self.total_tokens / self.count if self.count else 1.0
            self._norm = K1 * (1 - B + B * self.lengths / average)
        return self._norm

    def _postings(self, token: str) -> tuple[np.ndarray, np.ndarray]:
        """The live passages holding `token` and its counts (chunks merged on first use)."""
        chunks = self._chunks.get(token)
        if not chunks:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        if len(chunks) > 1:
            chunks[:] = [(np.concatenate([c[0] for c in chunks]),
                          np.concatenate([c[1] for c in chunks]))]
        ids, tf = chunks[0]
        if self._dead:
            keep = self.alive[ids]
            if not keep.all():
                ids, tf = ids[keep], tf[keep]
        return ids, tf

    def _grow(self, size: int) -> None:
        if size > len(self.alive):
            extra = max(size, 2 * len(self.alive)) - len(self.alive)
            self.lengths = np.concatenate([self.lengths, np.zeros(extra)])
            self.alive = np.concatenate([self.alive, np.zeros(extra, dtype=bool)])

    def _compact(self) -> None:
        for token in list(self._chunks):
            ids, tf = self._postings(token)
            if len(ids):
                self._chunks[token] = [(ids, tf)]
            else:
                del self._chunks[token]
        self._dead = 0


def top_k(total: np.ndarray, matched: np.ndarray, k: int,
          subset: np.ndarray | None = None) -> list[tuple[int, float]]:
    """The `k` best matched passages (of `subset`, sorted ids, when given) by score, ties to
    the lower id: `[(id, score), ...]`."""
    if subset is None:
        candidates = np.flatnonzero(matched)
    else:
        subset = subset[subset < len(matched)]
        candidates = subset[matched[subset]]
    if not len(candidates) or k < 1:
        return []
    scores = total[candidates]
    if len(candidates) > k:
        cut = np.partition(scores, len(scores) - k)[len(scores) - k]
        keep = scores >= cut  # ties at the cut all stay, so the lowest ids win them
        candidates, scores = candidates[keep], scores[keep]
    order = np.lexsort((candidates, -scores))[:k]
    return [(int(candidates[i]), float(scores[i])) for i in order]
