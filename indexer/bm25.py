"""An in-memory copy of the keyword index, so BM25 ranks a query without FTS5's per-row cost.

FTS5 ranks by calling `bm25()` once for every passage that matches any query term: a
ten-word question matches ~27,000 of 100,000 passages and costs ~33 ms. This copy holds, for
each token, the passages it occurs in and how often (numpy arrays), and each passage's length
in tokens, so a query is a few vectorised array operations (~1 ms). Token positions are
kept too, so phrases (`os.path.join`) are matched here as FTS5 matches them.

It is derived data, like the FAISS copy of the vectors: the store fills it from FTS5's own
token stream (the same Porter stems and folded diacritics) and catches it up when the index
changes. Scores follow FTS5's `bm25()` exactly — k1 = 1.2, b = 0.75, a term's
idf = ln((N - n + 0.5) / (n + 0.5)) (at least 1e-6) over the N passages, n of them holding
it, lengths against the average — so the ranking is FTS5's own; the tests hold the two
side by side.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Iterator
from typing import Protocol

import numpy as np

from .ranking import best_k

K1, B = 1.2, 0.75
MIN_IDF = 1e-6  # FTS5's floor for terms in more than half the passages
# a setting a repair of the keyword index changes, so every process reads its copy again (a
# repair rewrites the tokens of passages that keep their ids, which no id comparison sees)
KEYWORD_EPOCH = "keyword_epoch"
Occurrences = Iterable[tuple[str, np.ndarray, np.ndarray]]  # token, passage ids, offsets


Postings = tuple[np.ndarray, np.ndarray, np.ndarray]  # passage ids, counts, offsets


class Bm25Postings:
    """For each token, the passages holding it, its count in each and its positions (token
    offsets, passage by passage, to match phrases); passage lengths.

    Passages are numbered by their store ids (never reused). Removing passages only marks
    them; their postings are dropped when a quarter of what is held is dead."""

    def __init__(self) -> None:
        self._chunks: dict[str, list[Postings]] = {}
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

    def add(self, passages: np.ndarray, occurrences: Occurrences) -> None:
        """Add the passages `passages` (ids, all new; a passage without a token still
        counts, as FTS5 counts it) from `(token, passage ids, offsets)`: one entry per
        occurrence of the token, in any order."""
        passages = np.asarray(passages, dtype=np.int64)
        if not len(passages):
            return
        self._grow(int(passages.max()) + 1)
        member = np.zeros(len(self.alive), dtype=bool)
        member[passages] = True
        for token, docs, offsets in occurrences:
            # a keyword index out of step with the passages (damage) may name others
            known = (docs >= 0) & (docs < len(member))
            known[known] = member[docs[known]]
            if not known.all():
                docs, offsets = docs[known], offsets[known]
                if not len(docs):
                    continue
            order = np.lexsort((offsets, docs))
            docs, offsets = docs[order], offsets[order].astype(np.int32)
            ids, counts = np.unique(docs, return_counts=True)
            self._chunks.setdefault(token, []).append(
                (ids.astype(np.int64), counts.astype(np.float32), offsets))
            self.lengths[ids] += counts
        self.alive[passages] = True
        self.count += len(passages)
        self.total_tokens += float(self.lengths[passages].sum())
        self._norm = None

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

    def scores(self, terms: list[tuple[str, ...]]) -> tuple[np.ndarray, np.ndarray]:
        """BM25 of every passage against the query: an array indexed by passage id, and
        which passages matched. Each term is a token or a phrase (tokens in a row); like
        FTS5, every term adds its own share, repeats included."""
        total = np.zeros(len(self.alive), dtype=np.float64)
        matched = np.zeros(len(self.alive), dtype=bool)
        if not self.count:
            return total, matched
        norm = self._normaliser()
        for term in terms:
            ids, tf = self._term(term)
            if not len(ids):
                continue
            idf = math.log((self.count - len(ids) + 0.5) / (len(ids) + 0.5))
            idf = idf if idf > 0 else MIN_IDF
            tf = tf.astype(np.float64)  # FTS5 computes in doubles, in this order: the same
            total[ids] += idf * ((tf * (K1 + 1)) / (tf + norm[ids]))  # bits, the same ties
            matched[ids] = True
        return total, matched

    def _term(self, term: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        """The passages holding a token or phrase, and how often."""
        if len(term) == 1:
            return self._postings(term[0])[:2]
        return self._phrase(term)

    def _phrase(self, tokens: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        """Where the tokens follow each other: every start counts, overlaps too (as FTS5
        counts phrase instances)."""
        postings = [self._postings(token) for token in tokens]
        candidates = postings[0][0]
        for ids, _, _ in postings[1:]:
            candidates = np.intersect1d(candidates, ids, assume_unique=True)
        if not len(candidates):
            return candidates, np.zeros(0, dtype=np.float32)
        starts = None
        for shift, (ids, tf, offsets) in enumerate(postings):
            docs = np.repeat(ids, tf.astype(np.int64))
            inside = np.isin(docs, candidates, assume_unique=False)
            keys = (docs[inside] << 32) + offsets[inside] - shift  # the phrase's start
            starts = keys if starts is None else np.intersect1d(starts, keys,
                                                                assume_unique=True)
        found, counts = np.unique(starts >> 32, return_counts=True)
        return found, counts.astype(np.float32)

    def _normaliser(self) -> np.ndarray:
        """k1 * (1 - b + b * length / average length), per passage id."""
        if self._norm is None:
            average = self.total_tokens / self.count if self.count else 1.0
            self._norm = K1 * (1 - B + B * self.lengths / average)
        return self._norm

    def _postings(self, token: str) -> Postings:
        """The live passages holding `token`, its counts and offsets (chunks merged on first
        use)."""
        chunks = self._chunks.get(token)
        if not chunks:
            return (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32),
                    np.zeros(0, dtype=np.int32))
        if len(chunks) > 1:
            chunks[:] = [tuple(np.concatenate([c[i] for c in chunks]) for i in range(3))]
        ids, tf, offsets = chunks[0]
        if self._dead:
            keep = self.alive[ids]
            if not keep.all():
                offsets = offsets[np.repeat(keep, tf.astype(np.int64))]
                ids, tf = ids[keep], tf[keep]
        return ids, tf, offsets

    def _grow(self, size: int) -> None:
        if size > len(self.alive):
            extra = max(size, 2 * len(self.alive)) - len(self.alive)
            self.lengths = np.concatenate([self.lengths, np.zeros(extra)])
            self.alive = np.concatenate([self.alive, np.zeros(extra, dtype=bool)])

    def _compact(self) -> None:
        for token in list(self._chunks):
            postings = self._postings(token)
            if len(postings[0]):
                self._chunks[token] = [postings]
            else:
                del self._chunks[token]
        self._dead = 0


class TokenSource(Protocol):
    """What a store gives its keyword copy."""

    def generation(self) -> int: ...

    def settings(self) -> dict: ...

    def token_passage_ids(self) -> np.ndarray:
        """Every passage id now, sorted."""

    def read_all_tokens(self) -> tuple[Bm25Postings, int]:
        """A new copy of every passage's tokens, and the generation it reflects."""

    def read_tokens(self, ids: np.ndarray) -> Occurrences:
        """The tokens of these passages."""


class KeywordCopy:
    """A store's in-memory BM25 copy, caught up and read under one lock: read whole on first
    use, when most passages are new or after a keyword repair (the `KEYWORD_EPOCH` setting
    moved), else only the passages that came and went since (ids are never reused, so
    comparing id sets is enough)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.postings: Bm25Postings | None = None
        self._generation = -1
        self._epoch = None

    def scores(self, terms: list[tuple[str, ...]], source: TokenSource,
               ) -> tuple[np.ndarray, np.ndarray]:
        """`Bm25Postings.scores` on the copy, caught up with `source` first."""
        with self.lock:
            return self._caught_up(source).scores(terms)

    def warm(self, source: TokenSource) -> None:
        """Catch up now (so the first search does not wait for it)."""
        with self.lock:
            self._caught_up(source)

    def forget(self) -> None:
        """Drop the copy (the store's file was replaced); the next use reads it whole."""
        with self.lock:
            self.postings, self._generation, self._epoch = None, -1, None

    def _caught_up(self, source: TokenSource) -> Bm25Postings:
        generation = source.generation()  # read first: a later write only makes it stale
        postings = self.postings
        if postings is not None and generation == self._generation:
            return postings
        epoch = source.settings().get(KEYWORD_EPOCH)
        if postings is None or epoch != self._epoch:
            postings, generation = source.read_all_tokens()
        else:
            postings = self._caught_up_in_part(source, postings)
            if postings is None:  # most passages are new: reading it whole is cheaper
                postings, generation = source.read_all_tokens()
        # only now: a read that failed is tried again by the next search
        self.postings, self._generation, self._epoch = postings, generation, epoch
        return postings

    @staticmethod
    def _caught_up_in_part(source: TokenSource, postings: Bm25Postings,
                           ) -> Bm25Postings | None:
        """The copy with the passages that went removed and those that came added, or None
        when most passages are new."""
        wanted, have = source.token_passage_ids(), postings.ids()
        missing = np.setdiff1d(wanted, have, assume_unique=True)
        if len(missing) > len(wanted) // 2:
            return None
        postings.remove(np.setdiff1d(have, wanted, assume_unique=True))
        if len(missing):
            postings.add(missing, source.read_tokens(missing))
        return postings


def parse_occurrences(rows) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Occurrences from rows of `(token, "id,id,...", "offset,offset,...")`, as both stores
    aggregate them in SQL (one row per token: far fewer rows to carry into Python)."""
    for token, ids, offsets in rows:
        yield (token, np.array(ids.split(","), dtype=np.int64),
               np.array(offsets.split(","), dtype=np.int32))


def top_k(total: np.ndarray, matched: np.ndarray, k: int,
          subset: np.ndarray | None = None) -> list[tuple[int, float]]:
    """The `k` best matched passages (of `subset`, sorted ids, when given) by score, ties to
    the lower id: `[(id, score), ...]`."""
    if subset is None:
        candidates = np.flatnonzero(matched)
    else:
        subset = subset[subset < len(matched)]
        candidates = subset[matched[subset]]
    return best_k(candidates, total[candidates], k)
