"""Train and export the packaged default coherence model (embedder/coherence_model/).

    python scripts/train_default_coherence.py --steps 3000 [--work /tmp/coherence-run]
        [--resume] [--export-only]

1. NSP fine-tuning of the packaged all-MiniLM-L6-v2 with this project's pretraining code:
   the embeddings and bottom 4 layers frozen; the top 2 layers, pooler and NSP head trained
   on prose (Moby-Dick, the King James Bible) and the Linux kernel documentation, with hard
   negatives (a third each: another document, the same document but not next, the true pair
   swapped) and pairs trimmed to keep the end of A and the start of B.
2. Export of the trained tensors as an fp16 delta over the packaged encoder (a few MB).

Held-out documents (about 2 %, chosen by a hash of their source) are never trained on;
bench/coherence.py evaluates on them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from embedder.coherence import PACKAGED_COHERENCE, export_delta  # noqa: E402
from embedder.pairs import HARD_NEGATIVES  # noqa: E402
from embedder.pretrain import PretrainConfig, pretrain  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--work", default="/tmp/bertsearch-coherence-run")
    parser.add_argument("--data", default=os.environ.get(
        "BERTSEARCH_SHARED_DATA", str(REPO.parent / "shared" / "data")))
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--export-only", action="store_true")
    args = parser.parse_args()

    data = Path(args.data)
    config = PretrainConfig(
        corpus=[str(data / "prose"), str(data / "linux-docs")], out=args.work,
        base_model="default", mlm=False, negatives=HARD_NEGATIVES, trim="continuation",
        freeze_layers=4, max_length=128, batch_size=args.batch_size, steps=args.steps,
        lr=args.lr, warmup=0.06, eval_every=250, eval_pairs=1024, save_every=100,
        shuffle_buffer=10_000, seed=0)
    started = time.time()
    if not args.export_only:
        def show(m):
            if m.step % 25 == 0:
                print(f"step {m.step}/{m.steps} loss {m.loss:.4f} nsp_acc {m.nsp_accuracy:.3f} "
                      f"lr {m.lr:.2e} {time.time() - started:.0f}s", flush=True)

        def evaluated(m):
            print(f"EVAL step {m.step}: nsp_acc {m.nsp_accuracy:.4f} "
                  f"{json.dumps(m.nsp_accuracy_by_kind)}", flush=True)

        pretrain(config, resume=args.resume, progress=show, on_eval=evaluated)
    info = json.loads((Path(args.work) / "pretraining.json").read_text())
    planned = info["config"]["steps"]
    export_delta(args.work, PACKAGED_COHERENCE, layers=[4, 5], extra={
        "trained_steps": info["step"], "planned_steps": planned,
        "evaluations": info["evaluations"],
        "command": f"python scripts/train_default_coherence.py --steps {planned}"
                   + ("" if info["step"] == planned else
                      f"  (stopped at step {info['step']}; continue with --resume)")})
    print(f"exported to {PACKAGED_COHERENCE}")


if __name__ == "__main__":
    main()
