"""Sentence-pair construction for next-sentence prediction (NSP), BERT's recipe.

Follows `create_instances_from_document` in BERT's `create_pretraining_data.py`: sentences
of a document are gathered until a target length is reached (10 % of the time a shorter,
random one), segment A ends at a random sentence boundary, and B is either the true
continuation (IsNext) or, half of the time, a NotNext span. Pairs are trimmed to fit.

Label convention — stated once, converted in one place:
  * here and in the lecture, `is_next` is y = 1 when B follows A and y = 0 when not;
  * Hugging Face's `next_sentence_label` is the opposite (0 = B continues A): use
    `hf_next_sentence_label`, the only place the two meet.

Beyond BERT's random-document negatives, `NegativeMix` can ask for hard ones, which a
coherence scorer needs: a span of the same document that does not follow A, and the true
pair in swapped order (B, A).
"""

from __future__ import annotations

import collections
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from ..coherence import IS_NEXT, NOT_NEXT
from ..inputs import truncate_for_continuation, truncate_longest_first
from .corpus import CorpusError, Document


def hf_next_sentence_label(is_next: int) -> int:
    """Our/the lecture's y (1 = B follows A) -> Hugging Face's label (0 = B follows A)."""
    return 0 if is_next == IS_NEXT else 1


@dataclass(frozen=True)
class NegativeMix:
    """How NotNext pairs are made, as shares that sum to 1."""

    random: float = 1.0  # B from another document (BERT)
    same_document: float = 0.0  # B from the same document, not A's continuation
    swapped: float = 0.0  # the true pair in the wrong order: (B, A)

    def __post_init__(self):
        shares = (self.random, self.same_document, self.swapped)
        if min(shares) < 0 or abs(sum(shares) - 1) > 1e-6:
            raise ValueError(f"Negative shares must be >= 0 and sum to 1; got {shares}.")

    def pick(self, rng: random.Random) -> str:
        r = rng.random()
        if r < self.random:
            return "random"
        return "same_document" if r < self.random + self.same_document else "swapped"


HARD_NEGATIVES = NegativeMix(random=0.34, same_document=0.33, swapped=0.33)


@dataclass(frozen=True)
class NspPair:
    """Segment A, segment B (content token ids) and whether B follows A."""

    ids_a: list[int]
    ids_b: list[int]
    is_next: int  # IS_NEXT or NOT_NEXT
    kind: str  # "next", "random", "same_document" or "swapped"


class PairBuilder:
    """Turns a stream of documents into NSP pairs, deterministically for a given `rng`.

    Streaming: random-document negatives are drawn from a pool of the most recent
    `pool_size` documents, so the corpus never has to fit in memory.
    """

    def __init__(self, tokenize: Callable[[list[str]], list[list[int]]], max_length: int,
                 rng: random.Random, *, short_seq_prob: float = 0.1,
                 negatives: NegativeMix = NegativeMix(), trim: str = "random",
                 pool_size: int = 1000, min_gap: int = 2):
        if trim not in ("random", "continuation"):
            raise ValueError(f"trim must be 'random' or 'continuation'; got {trim!r}.")
        self.tokenize = tokenize
        self.max_tokens = max_length - 3  # [CLS] A [SEP] B [SEP]
        self.rng = rng
        self.short_seq_prob = short_seq_prob
        self.negatives = negatives
        self.trim = trim
        self.pool: collections.deque[list[list[int]]] = collections.deque(maxlen=pool_size)
        self.min_gap = min_gap

    def pairs(self, documents: Iterable[Document]) -> Iterator[NspPair]:
        """NSP pairs from every document, in document order.

        Raises:
            CorpusError: fewer than two documents (NotNext pairs need another document).
        """
        waiting = None  # the first document waits until a second one exists
        for document in documents:
            sentences = [ids for ids in self.tokenize(document.sentences) if ids]
            if not sentences:
                continue
            self.pool.append(sentences)
            if waiting is not None:
                yield from self.document_pairs(waiting)
                waiting = None
            if len(self.pool) < 2:
                waiting = sentences
                continue
            yield from self.document_pairs(sentences)
        if waiting is not None:
            raise CorpusError("The corpus has only one document with text; NSP needs at "
                              "least two (NotNext pairs come from another document).")

    def document_pairs(self, document: list[list[int]]) -> Iterator[NspPair]:
        """BERT's `create_instances_from_document`, with the hard negatives added."""
        rng = self.rng
        target = self.max_tokens
        if rng.random() < self.short_seq_prob:
            target = rng.randint(2, self.max_tokens)
        chunk, length, i = [], 0, 0
        while i < len(document):
            chunk.append(i)
            length += len(document[i])
            if i == len(document) - 1 or length >= target:
                a_end = 1 if len(chunk) < 2 else rng.randint(1, len(chunk) - 1)
                ids_a = _join(document, chunk[:a_end])
                true_b = chunk[a_end:]
                if len(chunk) == 1 or rng.random() < 0.5:
                    kind = self.negatives.pick(rng)
                    pair = self._negative(kind, document, chunk[:a_end], true_b, target)
                    if pair.kind in ("random", "same_document"):
                        i -= len(true_b)  # BERT puts the unused sentences back
                else:
                    pair = NspPair(ids_a, _join(document, true_b), IS_NEXT, "next")
                yield self._trimmed(pair)
                chunk, length = [], 0
                target = self.max_tokens
                if rng.random() < self.short_seq_prob:
                    target = rng.randint(2, self.max_tokens)
            i += 1

    def _negative(self, kind: str, document, a_idx: list[int], b_idx: list[int],
                  target: int) -> NspPair:
        ids_a = _join(document, a_idx)
        if kind == "swapped" and b_idx:
            return NspPair(_join(document, b_idx), ids_a, NOT_NEXT, "swapped")
        want = max(1, target - len(ids_a))
        if kind == "same_document":
            start = self._far_start(document, a_idx)
            if start is not None:  # a span before A stops short of A
                stop = a_idx[0] if start < a_idx[0] else len(document)
                return NspPair(ids_a, _span(document[:stop], start, want), NOT_NEXT,
                               "same_document")
        other = self._other_document(document)
        start = self.rng.randrange(len(other))
        return NspPair(ids_a, _span(other, start, want), NOT_NEXT, "random")

    def _far_start(self, document, a_idx: list[int]) -> int | None:
        """A sentence of the same document at least `min_gap` sentences from A's end and
        outside A, or None when the document is too short."""
        first, after = a_idx[0], a_idx[-1] + 1
        choices = [k for k in range(len(document))
                   if (k >= after + self.min_gap) or (k < first - self.min_gap)]
        return self.rng.choice(choices) if choices else None

    def _other_document(self, document) -> list[list[int]]:
        for _ in range(10):
            other = self.pool[self.rng.randrange(len(self.pool))]
            if other is not document:
                return other
        return next(d for d in self.pool if d is not document)

    def _trimmed(self, pair: NspPair) -> NspPair:
        if self.trim == "continuation":
            a, b, _ = truncate_for_continuation(pair.ids_a, pair.ids_b, self.max_tokens)
        else:
            a, b, _ = truncate_longest_first(pair.ids_a, pair.ids_b, self.max_tokens, self.rng)
        return NspPair(a, b, pair.is_next, pair.kind)


def _join(document, indices) -> list[int]:
    return [t for i in indices for t in document[i]]


def _span(document, start: int, want: int) -> list[int]:
    out: list[int] = []
    for sentence in document[start:]:
        out.extend(sentence)
        if len(out) >= want:
            break
    return out
