"""Coherence of the default model on held-out documents, by kind of negative, vs cosine.

    python bench/coherence.py [--pairs 400] [--model default|DIR]

Held-out documents are those `Document.held_out` marks (about 2 % of prose + linux-docs,
chosen by a hash of their source); the default model never trained on them. For each kind of
negative — another document (random), the same document but not next, and the true pair
swapped — a balanced set of `--pairs` true continuations and `--pairs` negatives is scored,
giving accuracy at P(next) >= 0.5 and ROC-AUC. The baseline in the same run is the cosine of
the two passages' embeddings (default encoder), whose accuracy uses its best threshold on the
same data (an optimistic baseline). Then scoring throughput on CPU.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from common import Timer, print_table, shared_data


def roc_auc(positives: np.ndarray, negatives: np.ndarray) -> float:
    """Probability that a random positive outscores a random negative (ties count half)."""
    diff = positives[:, None] - negatives[None, :]
    return float((diff > 0).mean() + 0.5 * (diff == 0).mean())


def best_threshold_accuracy(positives, negatives) -> float:
    scores = np.concatenate([positives, negatives])
    labels = np.concatenate([np.ones(len(positives)), np.zeros(len(negatives))])
    return max(((scores >= t) == labels).mean() for t in np.unique(scores))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=400)
    parser.add_argument("--model", default=None)
    args = parser.parse_args()

    from embedder import Encoder
    from embedder.coherence import INFO_FILE, PACKAGED_COHERENCE, CoherenceScorer
    from embedder.training.pairs import HARD_NEGATIVES
    from embedder.training.pretrain import PairStream, PretrainConfig

    scorer = CoherenceScorer.load(args.model, device="cpu")
    encoder = Encoder.load("default", device="cpu")
    data = shared_data()
    config = PretrainConfig(corpus=[str(data / "prose"), str(data / "linux-docs")],
                            out="unused", negatives=HARD_NEGATIVES, trim="continuation",
                            max_length=scorer.max_length, seed=12345)
    by_kind: dict[str, list] = {"next": [], "random": [], "same_document": [], "swapped": []}
    tok = scorer.tokenizer
    for pair in PairStream(config, tok, split="eval"):
        bucket = by_kind[pair.kind]
        if len(bucket) < args.pairs:
            bucket.append((tok.decode(pair.ids_a), tok.decode(pair.ids_b)))
        if all(len(b) >= args.pairs for b in by_kind.values()):
            break

    def cosine(pairs):
        a = encoder.encode([p[0] for p in pairs])
        b = encoder.encode([p[1] for p in pairs])
        return (a * b).sum(axis=1)

    with Timer() as timing:
        nsp = {kind: scorer.scores(pairs) for kind, pairs in by_kind.items()}
    cos = {kind: cosine(pairs) for kind, pairs in by_kind.items()}
    total_pairs = sum(len(p) for p in by_kind.values())

    rows = []
    for kind in ("random", "same_document", "swapped"):
        pos, neg = nsp["next"], nsp[kind]
        accuracy = (np.mean(pos >= 0.5) + np.mean(neg < 0.5)) / 2
        rows.append([kind, len(neg), accuracy, roc_auc(pos, neg),
                     best_threshold_accuracy(cos["next"], cos[kind]),
                     roc_auc(cos["next"], cos[kind])])
    print(f"model: {scorer.name}; held-out pairs: {args.pairs} per kind; "
          f"positives' mean P(next) {nsp['next'].mean():.3f}")
    print_table(["negatives", "n", "NSP accuracy", "NSP ROC-AUC",
                 "cosine accuracy (best threshold)", "cosine ROC-AUC"], rows)
    print(f"\nscoring throughput: {total_pairs / timing.seconds:.1f} pairs/s "
          f"({total_pairs} pairs of up to {scorer.max_length} tokens, CPU)")
    if args.model is None:
        info = json.loads((PACKAGED_COHERENCE / INFO_FILE).read_text())
        print(f"training: {info.get('command')} — {info.get('trained_steps')} steps")


if __name__ == "__main__":
    main()
