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
import shutil
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from embedder.coherence import IS_NEXT, NOT_NEXT, TextPair

from .errors import IndexNotFoundError
from .store import PassageRow, Store, is_database_url, open_store


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
    """The index's own adapted coherence model, if `bertsearch coherence train` made one:
    INDEX/coherence, or for a database index the copy it keeps, written to a cache folder."""
    from embedder.coherence import DELTA_FILE

    try:
        with open_store(_location(index_dir), read_only=True) as store:
            folder = store.attached_folder(COHERENCE_DIR)
    except IndexNotFoundError:
        return None
    return folder if folder is not None and (folder / DELTA_FILE).is_file() else None


@dataclass
class CoherenceTrainingSet:
    """What adapting the coherence model to an index needs: labelled pairs from its
    documents, where the adapted model goes, and the model to start from."""

    train: list[TextPair]
    held_out: list[TextPair]
    out: Path  # INDEX/coherence, which search and the server then use (a temporary folder
    # for a database index, which `keep` copies into the database)
    base: Path | None  # the index's current adapted model; None: the packaged default
    index: str = ""  # the index's location

    def keep(self) -> str:
        """Keep the model trained into `out` with the index; returns where it is kept."""
        with open_store(self.index) as store:
            store.attach_folder(COHERENCE_DIR, self.out)
        if not is_database_url(self.index):
            return str(self.out)
        shutil.rmtree(self.out, ignore_errors=True)
        return f"the database at {store.location}"


def coherence_training_set(index_dir, *, seed: int = 0) -> CoherenceTrainingSet:
    """Pairs from an index's passages for `embedder.training.coherence.train_coherence`;
    then `CoherenceTrainingSet.keep` keeps the trained model with the index.

    Raises:
        IndexNotFoundError: no index there.
        InvalidInputError: too few multi-passage documents to learn from.
    """
    from embedder.errors import InvalidInputError

    location = _location(index_dir)
    with open_store(location, read_only=True) as store:
        train, held_out = coherence_pairs(store, seed=seed)
    if len(train) < 8 or not held_out:
        raise InvalidInputError(
            f"The index at '{location}' has too few documents with two or more passages to "
            f"learn coherence from ({len(train)} training pairs, {len(held_out)} held out).")
    out = Path(tempfile.mkdtemp(prefix="bertsearch-coherence-")) \
        if is_database_url(location) else Path(location) / COHERENCE_DIR
    return CoherenceTrainingSet(train, held_out, out, coherence_model_dir(location),
                                str(location))


def _location(index) -> str | Path:
    return str(index) if is_database_url(index) else Path(index).expanduser()


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
