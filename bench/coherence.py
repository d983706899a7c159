"""Coherence across domains: a model on sources it trained on and on sources it never saw.

    python bench/coherence.py [--pairs 100] [--model default|DIR] [--json FILE]

Sources and their roles are fixed in `embedder/training/sources.py` (run
scripts/coherence_sources.py first for the Debian ones):

- in-domain: the held-out documents (`Document.held_out`, about 2 %) of the `train`
  sources the model trained on (its `info.json` names them);
- out-of-domain: every `test` source, whole — never trained on, never calibrated on;
- calibration: the `calibration` sources, whole, on which the score calibration is fitted
  (scripts/calibrate_coherence.py); reported for the fit only.

For each source and kind of negative (another document, the same document but not next,
the true pair swapped), up to `--pairs` true continuations and `--pairs` negatives are
scored. Reported: ROC-AUC and balanced accuracy at P(next) >= 0.5 (calibrated) for the
model; the same for the cosine of the two passages' embeddings (default encoder), its
threshold fitted on the calibration sources (fair: not on the data it is scored on); and
the chance line as 0.5 +/- the 95 % band of AUC for scores unrelated to the labels, at the
same numbers of pairs. Then expected calibration error (ECE) on each domain before and after
calibration, and scoring throughput.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from common import REPO, Timer, print_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=100, help="pairs per kind and source")
    parser.add_argument("--model", default=None)
    parser.add_argument("--json", default=None, help="also write every figure here")
    args = parser.parse_args()

    from embedder import Encoder
    from embedder.coherence import INFO_FILE, PACKAGED_COHERENCE, Calibration, CoherenceScorer
    from embedder.training.calibration import calibration_set, fit_calibration
    from embedder.training.evaluation import (
        NEGATIVE_KINDS,
        balanced_mixture,
        expected_calibration_error,
        model_record,
        source_pairs,
    )
    from embedder.training.sources import TEST, TRAIN, default_roots, sources

    folder = PACKAGED_COHERENCE if args.model in (None, "default") else REPO / args.model
    info = json.loads((folder / INFO_FILE).read_text())
    scorer = CoherenceScorer.load(args.model, device="cpu", calibrated=False)
    stored = Calibration.of(info)
    encoder = Encoder.load("default", device="cpu")
    roots = default_roots(REPO)
    trained_on, in_domain, legacy_root = model_record(info)

    def cosine(pairs):
        if not pairs:
            return np.zeros(0)
        a = encoder.encode([p[0] for p in pairs])
        b = encoder.encode([p[1] for p in pairs])
        return (a * b).sum(axis=1)

    # -- calibration sources: the fit (stored in info.json) and the cosine's threshold
    cal_logits, cal_labels, cal_weights, cal_record = calibration_set(scorer, roots)
    fitted = fit_calibration(cal_logits, cal_labels, cal_weights)
    calibration = stored if "calibration" in info else fitted
    cal_cos = {}
    for source in sources("calibration"):
        for kind, pairs in source_pairs(source, roots, scorer.tokenizer, 150,
                                        held_out=False).items():
            cal_cos.setdefault(kind, []).extend(cosine(pairs).tolist())
    cos_threshold = best_threshold(*balanced_mixture({k: np.array(v)
                                                      for k, v in cal_cos.items()}))

    # -- in-domain and out-of-domain sources
    domains = {"in-domain": [s for s in sources(TRAIN) if s.name in in_domain],
               "out-of-domain": [s for s in sources(TEST) if s.name not in trained_on]}
    measured: dict[str, dict[str, dict[str, dict[str, np.ndarray]]]] = {}
    total, timing = 0, 0.0
    for domain, members in domains.items():
        for source in members:
            pairs = source_pairs(source, roots, scorer.tokenizer, args.pairs,
                                 held_out=domain == "in-domain", held_out_root=legacy_root)
            with Timer() as t:
                logits = {k: scorer.log_odds(v) for k, v in pairs.items()}
            timing += t.seconds
            total += sum(len(v) for v in pairs.values())
            measured.setdefault(domain, {})[source.name] = {
                "nsp": {k: calibration.probability(v) for k, v in logits.items()},
                "raw": {k: Calibration().probability(v) for k, v in logits.items()},
                "cos": {k: cosine(v) for k, v in pairs.items()}}

    print(f"model: {scorer.name}; trained on: {', '.join(trained_on)} (in-domain figures "
          f"from {', '.join(in_domain) or 'none'}); "
          f"held-out split: {'absolute paths under ' + legacy_root if legacy_root else 'keys'}")
    print(f"calibration: {'stored' if 'calibration' in info else 'none stored; fitted here'}"
          f" T={calibration.temperature:.3f} b={calibration.bias:.3f} on "
          f"{', '.join(cal_record['fitted_on'])} ({cal_record['pairs']}); fitted here "
          f"T={fitted.temperature:.3f}; cosine threshold {cos_threshold:.3f}")
    rows, pooled_rows, figures = [], [], {}
    for domain, by_source in measured.items():
        for name, scores in by_source.items():
            for kind in NEGATIVE_KINDS:
                row = figures_row(scores, kind, cos_threshold)
                if row is not None:
                    rows.append([domain, name, kind, *row])
        pooled = {part: {k: np.concatenate([s[part][k] for s in by_source.values()])
                         for k in ("next", *NEGATIVE_KINDS)}
                  for part in ("nsp", "raw", "cos")}
        for kind in NEGATIVE_KINDS:
            row = figures_row(pooled, kind, cos_threshold)
            pooled_rows.append([domain, kind, *row])
            figures[f"{domain}/{kind}"] = row
        figures[f"{domain}/mean_p_next"] = {
            k: float(pooled["nsp"][k].mean()) for k in ("next", *NEGATIVE_KINDS)}
        figures[f"{domain}/ece"] = ece_pair(pooled)
    headers = ["n pos/neg", "NSP AUC", "NSP acc@0.5", "cosine AUC", "cosine acc",
               "chance AUC (95 %)"]
    print("\nPooled over sources:")
    print_table(["domain", "negatives", *headers], pooled_rows)
    print("\nBy source:")
    print_table(["domain", "source", "negatives", *headers], rows)
    print("\nExpected calibration error (10 bins, true continuations vs a balanced mix of "
          "negatives):")
    cal_probs = calibration.probability(cal_logits)
    ece_rows = [["calibration (fit)",
                 expected_calibration_error(1 / (1 + np.exp(-cal_logits)), cal_labels,
                                            cal_weights),
                 expected_calibration_error(cal_probs, cal_labels, cal_weights)]]
    for domain in measured:
        ece_rows.append([domain, *figures[f"{domain}/ece"]])
    print_table(["pairs", "ECE raw", "ECE calibrated"], ece_rows)
    for domain in measured:
        means = figures[f"{domain}/mean_p_next"]
        print(f"{domain}: mean calibrated P(next) " + ", ".join(
            f"{k} {v:.3f}" for k, v in means.items()))
    print(f"\nscoring throughput: {total / timing:.1f} pairs/s ({total} pairs of up to "
          f"{scorer.max_length} tokens, CPU)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": scorer.name, "figures": figures,
                       "calibration": {"temperature": calibration.temperature,
                                       "bias": calibration.bias, **cal_record},
                       "cosine_threshold": cos_threshold}, f, indent=2, default=float)


def figures_row(scores: dict, kind: str, cos_threshold: float) -> list | None:
    """[n, NSP AUC, NSP accuracy, cosine AUC, cosine accuracy, chance band] for true
    continuations against one kind of negative; None when there are none of that kind."""
    from embedder.training.evaluation import balanced_accuracy, chance_auc_band, roc_auc

    pos, neg = scores["nsp"]["next"], scores["nsp"][kind]
    if not len(pos) or not len(neg):
        return None
    return [f"{len(pos)}/{len(neg)}", roc_auc(pos, neg), balanced_accuracy(pos, neg),
            roc_auc(scores["cos"]["next"], scores["cos"][kind]),
            balanced_accuracy(scores["cos"]["next"], scores["cos"][kind], cos_threshold),
            f"0.5 ± {chance_auc_band(len(pos), len(neg)):.3f}"]


def ece_pair(pooled: dict) -> list[float]:
    """ECE of the raw and the calibrated scores on a balanced mixture."""
    from embedder.training.evaluation import balanced_mixture, expected_calibration_error

    out = []
    for part in ("raw", "nsp"):
        scores, labels, weights = balanced_mixture(pooled[part])
        out.append(expected_calibration_error(scores, labels, weights))
    return out


def best_threshold(scores, labels, weights) -> float:
    """The threshold with the best weighted accuracy (fitted on calibration sources)."""
    best, best_accuracy = 0.0, -1.0
    for t in np.unique(scores):
        accuracy = (weights * ((scores >= t) == (labels == 1))).sum() / weights.sum()
        if accuracy > best_accuracy:
            best, best_accuracy = float(t), accuracy
    return best


if __name__ == "__main__":
    main()
