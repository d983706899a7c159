"""Coherence over an index: reading search hits in order, and labelled passage pairs for
adapting the coherence model to the index's documents.

Consecutive passages of a document are the positives — with the overlap the chunker gave
them removed, or B would simply repeat the end of A. Negatives, in equal shares: a passage
of another document, a passage of the same document that is not next, and a true pair in
swapped order. Whole documents are held out (10 %, at least one) to measure before and after,
chosen by a hash of their path within the indexed folder: the same split on every run,
wherever the folder lies.
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass
from pathlib import Path

from embedder.coherence import IS_NEXT, NOT_NEXT, TextPair

from .store import PassageRow, Store, open_store


def coherence_pairs(store: Store, *, held_out_share: float = 0.1, seed: int = 0,
                    max_pairs: int = 20_000) -> tuple[list[TextPair], list[TextPair]]:
    """(training pairs, held-out pairs) from every document with two or more passages."""
    rng = random.Random(seed)
    documents = [store.document_passages(doc_id) for doc_id, _, _ in store.iter_documents()]
    documents = [d for d in documents if len(d) >= 2]
    train, held_out = [], []
    held = held_out_documents([d[0] for d in documents], held_out_share)
    for index, passages in enumerate(documents):
        target = held_out if index in held else train
        for i in range(len(passages) - 1):
            a, b = passages[i].text, _without_overlap(passages[i], passages[i + 1])
            if not b.strip():
                continue
            target.append(TextPair(a, b, IS_NEXT, "next"))
            target.append(_negative(rng, documents, index, i, a, b))
    rng.shuffle(train)
    return train[:max_pairs], held_out[:max_pairs // 4]


def held_out_documents(first_passages: list[PassageRow], share: float) -> set[int]:
    """Indices of the documents to hold out: `share` of them (at least one when there are
    two or more), those whose relative path hashes lowest — not the folder's absolute path,
    so the split does not depend on where the documents lie."""
    if len(first_passages) < 2:
        return set()
    count = max(1, round(share * len(first_passages)))
    ranked = sorted(range(len(first_passages)), key=lambda i: (
        zlib.crc32(first_passages[i].path.encode()), first_passages[i].path,
        first_passages[i].root))
    return set(ranked[:count])


def _negative(rng, documents, index, i, a, b) -> TextPair:
    kind = rng.choice(["random", "same_document", "swapped"])
    passages = documents[index]
    if kind == "same_document":
        far = [j for j in range(len(passages)) if abs(j - (i + 1)) >= 2 and j != i]
        if far:
            return TextPair(a, passages[rng.choice(far)].text, NOT_NEXT, "same_document")
    if kind == "swapped" or len(documents) < 2:
        return TextPair(b, a, NOT_NEXT, "swapped")
    other = rng.randrange(len(documents) - 1)  # any document but this one
    other += other >= index
    return TextPair(a, rng.choice(documents[other]).text, NOT_NEXT, "random")


def _without_overlap(first: PassageRow, second: PassageRow) -> str:
    """The part of `second` after the end of `first` (passages overlap by a few tokens)."""
    if second.start < first.end:
        return second.text[first.end - second.start:].lstrip()
    return second.text


COHERENCE_DIR = "coherence"


def coherence_model_dir(index_dir) -> Path | None:
    """The index's own adapted coherence model, if `bertsearch coherence train` made one."""
    from embedder.coherence import DELTA_FILE

    folder = Path(index_dir).expanduser() / COHERENCE_DIR
    return folder if (folder / DELTA_FILE).is_file() else None


@dataclass
class CoherenceTrainingSet:
    """What adapting the coherence model to an index needs: labelled pairs from its
    documents, where the adapted model goes, and the model to start from."""

    train: list[TextPair]
    held_out: list[TextPair]
    out: Path  # INDEX/coherence, which search and the server then use
    base: Path | None  # the index's current adapted model; None: the packaged default


def coherence_training_set(index_dir, *, seed: int = 0) -> CoherenceTrainingSet:
    """Pairs from an index's passages for `embedder.training.coherence.train_coherence`.

    Raises:
        IndexNotFoundError: no index there.
        InvalidInputError: too few multi-passage documents to learn from.
    """
    from embedder.errors import InvalidInputError

    folder = Path(index_dir).expanduser()
    with open_store(folder, read_only=True) as store:
        train, held_out = coherence_pairs(store, seed=seed)
    if len(train) < 8 or not held_out:
        raise InvalidInputError(
            f"The index at '{folder}' has too few documents with two or more passages to "
            f"learn coherence from ({len(train)} training pairs, {len(held_out)} held out).")
    return CoherenceTrainingSet(train, held_out, folder / COHERENCE_DIR,
                                coherence_model_dir(folder))


def read_hits(scorer, hits) -> tuple:
    """How search hits follow one another in rank order, and the order to read them in:
    hits of one document in their document's order (by ordinal: known, not guessed), the
    documents' runs ordered by the scorer's P(next) between them.

    Returns:
        `(Chain, Order | None)` from `CoherenceScorer.read`; each link says whether it was
        known from the document or scored.
    """
    from embedder.coherence import Position

    return scorer.read([hit.text for hit in hits],
                       [Position(hit.document_id, hit.ordinal) for hit in hits])


def coherence_scorer_for(index_dir=None, model=None):
    """The coherence scorer to use: `model` if named, else the index's adapted model if it
    has one, else the packaged default."""
    from embedder.coherence import CoherenceScorer

    if model is None and index_dir is not None:
        model = coherence_model_dir(index_dir)
    return CoherenceScorer.load(model)
