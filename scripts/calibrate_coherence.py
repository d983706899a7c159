"""Fit a coherence model's score calibration and store it in its info.json.

    python scripts/calibrate_coherence.py [--model embedder/coherence_model] [--bias]
        [--pairs 150]

Temperature scaling (Guo et al. 2017) of the NSP log-odds, fitted on pairs of the
`calibration` sources of `embedder/training/sources.py` (never trained on, never tested
on: bench/coherence.py reports the test sources). With `--bias`, a Platt bias as well.
Prints the calibration error on the fitting pairs before and after.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from embedder.coherence import PACKAGED_COHERENCE, Calibration, CoherenceScorer  # noqa: E402
from embedder.training.calibration import (  # noqa: E402
    calibration_set,
    fit_calibration,
    store_calibration,
)
from embedder.training.evaluation import expected_calibration_error  # noqa: E402
from embedder.training.sources import default_roots  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(PACKAGED_COHERENCE))
    parser.add_argument("--pairs", type=int, default=150, help="pairs per kind and source")
    parser.add_argument("--bias", action="store_true", help="fit a Platt bias too")
    args = parser.parse_args()
    scorer = CoherenceScorer.load(args.model, device="cpu", calibrated=False)
    log_odds, labels, weights, record = calibration_set(scorer, default_roots(REPO),
                                                        args.pairs)
    calibration = fit_calibration(log_odds, labels, weights, bias=args.bias)
    before = expected_calibration_error(Calibration().probability(log_odds), labels, weights)
    after = expected_calibration_error(calibration.probability(log_odds), labels, weights)
    store_calibration(args.model, calibration, {**record, "ece_before": round(before, 4),
                                                "ece_after": round(after, 4)})
    print(f"{args.model}: temperature {calibration.temperature:.3f}, bias "
          f"{calibration.bias:.3f}; ECE on the fitting pairs {before:.3f} -> {after:.3f}")


if __name__ == "__main__":
    main()
