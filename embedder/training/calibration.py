"""Calibrating a coherence model: temperature scaling of its NSP log-odds, fitted on
labelled pairs of sources it never trained on and never tested on.

Guo et al. 2017 ("On Calibration of Modern Neural Networks"): one temperature T, fitted by
minimising the log-loss of sigmoid(log_odds / T) on held-out data, leaves the ranking (and
so ROC-AUC) untouched and makes the probabilities mean what they say. With `bias=True` a
Platt bias is fitted too, which also moves the 0.5 threshold. The fit is stored in the
model's `info.json` (`calibration`) and applied by `CoherenceScorer.scores`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..coherence import INFO_FILE, Calibration


def fit_calibration(log_odds: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None,
                    *, bias: bool = False) -> Calibration:
    """The temperature (and bias) minimising the weighted log-loss of
    sigmoid(log_odds / T + b) against `labels` (1 = B follows A)."""
    x = torch.tensor(np.asarray(log_odds), dtype=torch.float64)
    y = torch.tensor(np.asarray(labels), dtype=torch.float64)
    w = torch.tensor(np.ones(len(x)) if weights is None else np.asarray(weights),
                     dtype=torch.float64)
    w = w / w.sum()
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=bias)
    optimizer = torch.optim.LBFGS([log_t, b] if bias else [log_t], lr=0.5, max_iter=200,
                                  line_search_fn="strong_wolfe")

    def loss():
        optimizer.zero_grad()
        value = (w * torch.nn.functional.binary_cross_entropy_with_logits(
            x / log_t.exp() + b, y, reduction="none")).sum()
        value.backward()
        return value

    optimizer.step(loss)
    return Calibration(log_t.detach().exp().item(), b.detach().item() if bias else 0.0)


def store_calibration(model_dir: str | Path, calibration: Calibration, record: dict) -> None:
    """Write `calibration` (with what it was fitted on and its effect) into a coherence
    model folder's `info.json`, where `CoherenceScorer.load` finds it."""
    path = Path(model_dir) / INFO_FILE
    info = json.loads(path.read_text())
    info["calibration"] = {"temperature": calibration.temperature, "bias": calibration.bias,
                           **record}
    path.write_text(json.dumps(info, indent=2))


def calibration_set(scorer, roots: dict, per_kind: int = 150, seed: int = 0
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Raw log-odds, labels and weights (a balanced mixture) of pairs from every source
    whose role is `calibration` — never trained on, never tested on — with a record of
    what they were.

    Args:
        scorer: a `CoherenceScorer` (its calibration is not used: log-odds are raw).
        roots: where the shared data and the corpora lie (`sources.default_roots`).
    """
    from .evaluation import balanced_mixture, source_pairs
    from .sources import CALIBRATION, sources

    scores: dict[str, list] = {}
    names = []
    for source in sources(CALIBRATION):
        pairs = source_pairs(source, roots, scorer.tokenizer, per_kind, held_out=False,
                             seed=seed)
        names.append(source.name)
        for kind, kind_pairs in pairs.items():
            scores.setdefault(kind, []).extend(scorer.log_odds(kind_pairs).tolist())
    log_odds, labels, weights = balanced_mixture({k: np.array(v) for k, v in scores.items()})
    record = {"fitted_on": names, "pairs": {k: len(v) for k, v in scores.items()},
              "seed": seed}
    return log_odds, labels, weights, record
