"""Measuring a coherence scorer on labelled pairs: pairs per kind of negative from a
source, ROC-AUC, accuracy at a threshold, calibration error, and the chance line.

Pairs are built as training builds them (BERT's recipe with hard negatives, trimmed to keep
the end of A and the start of B) from whole sources or from a source's held-out documents,
and decoded back to text, so any scorer (or the cosine baseline) sees the same pairs.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .corpus import CorpusError, Document, held_out_key, read_documents
from .pairs import HARD_NEGATIVES, PairBuilder

NEGATIVE_KINDS = ("random", "same_document", "swapped")
KINDS = ("next", *NEGATIVE_KINDS)

ALL, HELD_OUT = "all", "held_out"  # which documents of a source give pairs


def document_filter(split: str, held_out_root: str | None = None
                    ) -> Callable[[Document], bool]:
    """Which documents a split takes: every one (`all`, a source never trained on) or the
    held-out ones (`held_out`). `held_out_root`: the data folder of a model trained before
    documents had keys, whose split hashed `ROOT/key` (an absolute path then)."""
    if split == ALL:
        return lambda document: True
    if held_out_root:
        root = held_out_root.rstrip("/")
        return lambda document: held_out_key(f"{root}/{document.key}")
    return lambda document: document.held_out


def labelled_pairs(path: str | Path | list, tokenizer, per_kind: int, *,
                   documents: Callable[[Document], bool] | None = None,
                   seed: int = 0, max_length: int = 128, passes: int = 5,
                   ) -> dict[str, list[tuple[str, str]]]:
    """Up to `per_kind` text pairs of each kind ("next" and each negative kind) from the
    chosen documents (default: all) of a corpus, reading it up to `passes` times (each pass
    cuts the documents into other pairs) when it is small.
    """
    documents = documents or document_filter(ALL)
    out: dict[str, list[tuple[str, str]]] = {kind: [] for kind in KINDS}

    def tokenize(sentences):
        return tokenizer(sentences, add_special_tokens=False, verbose=False)["input_ids"]

    for number in range(passes):
        rng = random.Random(f"{seed}/{number}")
        builder = PairBuilder(tokenize, max_length, rng, negatives=HARD_NEGATIVES,
                              trim="continuation", short_seq_prob=0.0)
        chosen = (d for d in read_documents(path, rng=random.Random(rng.random()))
                  if documents(d))
        try:
            for pair in builder.pairs(chosen):
                bucket = out[pair.kind]
                if len(bucket) < per_kind:
                    bucket.append((tokenizer.decode(pair.ids_a), tokenizer.decode(pair.ids_b)))
                if all(len(b) >= per_kind for b in out.values()):
                    return out
        except CorpusError:  # fewer than two chosen documents: nothing to pair
            return out
    return out


def roc_auc(positives: np.ndarray, negatives: np.ndarray) -> float:
    """Probability that a random positive outscores a random negative (ties count half)."""
    positives, negatives = np.asarray(positives), np.asarray(negatives)
    if not len(positives) or not len(negatives):
        return float("nan")
    diff = positives[:, None] - negatives[None, :]
    return float((diff > 0).mean() + 0.5 * (diff == 0).mean())


def balanced_accuracy(positives, negatives, threshold: float = 0.5) -> float:
    """Mean of the accuracy on positives (score >= threshold) and on negatives (below)."""
    return float((np.mean(np.asarray(positives) >= threshold)
                  + np.mean(np.asarray(negatives) < threshold)) / 2)


def chance_auc_band(positives: int, negatives: int) -> float:
    """Half-width of the 95 % band of ROC-AUC for scores unrelated to the labels (the
    Mann-Whitney U variance): a fair chance line is 0.5 +/- this, not 0.5 alone."""
    if not positives or not negatives:
        return float("nan")
    return 1.96 * math.sqrt((positives + negatives + 1) / (12 * positives * negatives))


def balanced_mixture(scores: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray,
                                                             np.ndarray]:
    """(scores, labels, weights) of true continuations against all kinds of negative, each
    side weighing half and the negative kinds a third each: the 50/50 mix NSP trains on."""
    parts, labels, weights = [], [], []
    present = [k for k in NEGATIVE_KINDS if len(scores.get(k, ()))]
    for kind in ("next", *present):
        values = np.asarray(scores[kind], dtype=float)
        share = 0.5 if kind == "next" else 0.5 / len(present)
        parts.append(values)
        labels.append(np.full(len(values), float(kind == "next")))
        weights.append(np.full(len(values), share / max(1, len(values))))
    return np.concatenate(parts), np.concatenate(labels), np.concatenate(weights)


def expected_calibration_error(probabilities, labels, weights=None, bins: int = 10) -> float:
    """ECE: the weighted mean over equal-width probability bins of |mean predicted -
    observed frequency| (Guo et al. 2017)."""
    p, y = np.asarray(probabilities, float), np.asarray(labels, float)
    w = np.ones_like(p) if weights is None else np.asarray(weights, float)
    w = w / w.sum()
    which = np.minimum((p * bins).astype(int), bins - 1)
    error = 0.0
    for b in range(bins):
        inside = which == b
        mass = w[inside].sum()
        if mass > 0:
            error += mass * abs(np.average(p[inside], weights=w[inside])
                                - np.average(y[inside], weights=w[inside]))
    return float(error)


def model_record(info: dict) -> tuple[list[str], list[str], str | None]:
    """What a coherence model's `info.json` says it trained on: source names (the packaged
    model's three before it said so); those whose held-out documents it never saw (a model
    continued from another saw the other's, split another way: only its new sources); and
    the data root of an absolute-path split, if any."""
    from .sources import PACKAGED_SOURCES

    trained = list(info.get("sources", PACKAGED_SOURCES))
    return trained, list(info.get("in_domain_sources", trained)), info.get("held_out_data_root")


def source_pairs(source, roots: dict, tokenizer, per_kind: int, *, held_out: bool,
                 held_out_root: str | None = None, seed: int = 0,
                 ) -> dict[str, list[tuple[str, str]]]:
    """`labelled_pairs` of a registered source: its held-out documents (a source the model
    trained on) or all of them (one it never saw)."""
    from .sources import source_path

    split = document_filter(HELD_OUT, held_out_root) if held_out else document_filter(ALL)
    return labelled_pairs(source_path(source, roots), tokenizer, per_kind, documents=split,
                          seed=seed)
