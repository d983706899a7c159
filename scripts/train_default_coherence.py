"""Train and export the packaged default coherence model (embedder/coherence_model/).

    python scripts/train_default_coherence.py --steps 3000 [--batch-size 32] [--lr 1e-4]
        [--lora-rank 16] [--work /tmp/coherence-run] [--resume] [--export-only]
        [--minutes M] [--export-to DIR] [--start-from DIR]
    python scripts/train_default_coherence.py --adopt DIR   # a delta trained elsewhere

1. NSP fine-tuning of the packaged all-MiniLM-L6-v2 with this project's pretraining code:
   the embeddings and bottom 4 layers frozen (with `--lora-rank`, trained through low-rank
   adapters instead); the top 2 layers, pooler and NSP head trained in full, on prose
   (Moby-Dick, the King James Bible) and the Linux kernel documentation, with hard negatives
   (a third each: another document, the same document but not next, the true pair swapped)
   and pairs trimmed to keep the end of A and the start of B.
2. Export of the trained tensors as an fp16 delta over the packaged encoder (a few MB; the
   adapters as their two factors), into embedder/coherence_model/ unless `--export-to`.

`--start-from DIR` trains a coherence delta further (e.g. the packaged one, to add a lent
GPU's minutes to those it already had) instead of starting from the plain encoder; its LoRA
factors seed the adapters, so the export keeps its rank and size.

`--sources` names the training sources (embedder/training/sources.py; default: the three the
packaged model trained on, from `--data`; `--sources train` takes every source whose role
is `train`, the Debian ones from `--corpora`, see scripts/coherence_sources.py). Calibration
and test sources are refused: they are what bench/coherence.py measures on. `--negatives`
sets the shares of random / same-document / swapped negatives (swapped is sentence-order
prediction, ALBERT's SOP); `--freeze-layers` how many bottom layers only adapters train.

`--minutes M` picks `--steps` to fit M minutes of training, from a short timed probe, for a
run on a lent GPU. A delta exported on a machine whose copy of the encoder differs only by
rounding (an fp16 copy, where the 90 MB original can't travel) is taken in with `--adopt`.

Held-out documents (about 2 %, chosen by a hash of their source) are never trained on;
bench/coherence.py evaluates on them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from embedder.coherence import INFO_FILE, PACKAGED_COHERENCE  # noqa: E402
from embedder.training.coherence import export_delta  # noqa: E402
from embedder.training.pairs import NegativeMix  # noqa: E402
from embedder.training.pretrain import PretrainConfig, pretrain  # noqa: E402
from embedder.training.sources import (  # noqa: E402
    CORPORA,
    PACKAGED_SOURCES,
    SHARED,
    TRAIN,
    source_path,
    sources,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--minutes", type=float, default=None,
                        help="choose --steps to fit this much training time (timed probe)")
    parser.add_argument("--probe", type=int, default=120,
                        help="steps of the timed probe for --minutes (fewer on a CPU)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--lora-rank", type=int, default=0)
    parser.add_argument("--eval-pairs", type=int, default=1024)
    parser.add_argument("--work", default="/tmp/bertsearch-coherence-run")
    parser.add_argument("--export-to", default=str(PACKAGED_COHERENCE))
    parser.add_argument("--data", default=os.environ.get(
        "BERTSEARCH_SHARED_DATA", str(REPO.parent / "shared" / "data")))
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--export-only", action="store_true")
    parser.add_argument("--adopt", default=None, help="a delta folder exported elsewhere")
    parser.add_argument("--start-from", default=None,
                        help="a coherence delta folder to train further")
    parser.add_argument("--corpora", default=os.environ.get(
        "BERTSEARCH_CORPORA", str(REPO / ".corpora")))
    parser.add_argument("--sources", default=",".join(PACKAGED_SOURCES),
                        help="comma-separated training sources, or 'train' for all of them")
    parser.add_argument("--negatives", default="0.34,0.33,0.33",
                        help="shares of random, same-document and swapped negatives")
    parser.add_argument("--freeze-layers", type=int, default=4,
                        help="bottom layers trained only through LoRA adapters (or frozen)")
    args = parser.parse_args()
    if args.adopt:
        adopt(Path(args.adopt), Path(args.export_to))
        return

    config = run_config(args, args.steps)
    started = time.time()
    if not args.export_only:
        if args.minutes and not args.resume:
            config.steps = probe_steps(args)
            print(f"{config.steps} steps fit {args.minutes} minutes", flush=True)
        train(config, args.resume, started)
    info = json.loads((Path(args.work) / "pretraining.json").read_text())
    planned = info["config"]["steps"]
    command = (f"python scripts/train_default_coherence.py --steps {planned} "
               f"--batch-size {info['config']['batch_size']} --lr {info['config']['lr']:g}"
               + (f" --lora-rank {args.lora_rank}" if args.lora_rank else "")
               + (" --start-from DIR" if args.start_from else "")
               + f" --sources {args.sources} --negatives {args.negatives}"
               + f" --freeze-layers {args.freeze_layers}")
    top = list(range(args.freeze_layers, 6))
    export_delta(args.work, args.export_to, layers=top, lora_rank=args.lora_rank, extra={
        "sources": training_sources(args.sources), "negatives": args.negatives,
        **in_domain_record(args),
        "trained_steps": info["step"], "planned_steps": planned,
        "training_seconds": round(time.time() - started),
        "evaluations": info["evaluations"],
        **({"started_from": starting_point(Path(args.start_from))} if args.start_from else {}),
        "command": command + ("" if info["step"] == planned else
                              f"  (stopped at step {info['step']}; continue with --resume)")})
    print(f"exported to {args.export_to}")


def training_sources(names: str) -> list[str]:
    """The training sources' names; calibration and test sources are refused."""
    chosen = sources(TRAIN) if names == "train" else sources(names=names.split(","))
    wrong = [s.name for s in chosen if s.role != TRAIN]
    if wrong:
        raise SystemExit(f"{wrong} are kept for calibration or testing; train on sources "
                         f"whose role is 'train' (embedder/training/sources.py).")
    return [s.name for s in chosen]


def in_domain_record(args) -> dict:
    """A continued model saw its starting model's sources under that model's split, so
    only its new sources have held-out documents it never saw (bench/coherence.py)."""
    if not args.start_from:
        return {}
    start = json.loads((Path(args.start_from) / INFO_FILE).read_text())
    before = set(start.get("sources", PACKAGED_SOURCES))
    return {"in_domain_sources": [s for s in training_sources(args.sources)
                                  if s not in before]}


def run_config(args, steps: int) -> PretrainConfig:
    roots = {SHARED: Path(args.data), CORPORA: Path(args.corpora)}
    corpus = [str(source_path(s, roots)) for s in sources(names=training_sources(args.sources))]
    shares = [float(x) for x in args.negatives.split(",")]
    return PretrainConfig(
        corpus=corpus, out=args.work,
        base_model=args.start_from or "default", mlm=False,
        negatives=NegativeMix(*shares), trim="continuation",
        freeze_layers=args.freeze_layers, lora_rank=args.lora_rank, max_length=128,
        batch_size=args.batch_size, steps=steps, lr=args.lr, warmup=0.06,
        eval_every=max(250, steps // 8), eval_pairs=args.eval_pairs,
        save_every=max(100, steps // 4), shuffle_buffer=10_000, seed=0)


def starting_point(folder: Path) -> dict:
    """What a continued run started from (DIR in its command): that delta's own record."""
    info = json.loads((folder / INFO_FILE).read_text())
    keys = ("command", "trained_steps", "training_seconds", "trained_over", "started_from")
    return {key: info[key] for key in keys if key in info}


def train(config: PretrainConfig, resume: bool, started: float) -> None:
    def show(m):
        if m.step % 100 == 0:
            print(f"step {m.step}/{m.steps} loss {m.loss:.4f} nsp_acc {m.nsp_accuracy:.3f} "
                  f"lr {m.lr:.2e} {time.time() - started:.0f}s", flush=True)

    def evaluated(m):
        print(f"EVAL step {m.step}: nsp_acc {m.nsp_accuracy:.4f} "
              f"{json.dumps(m.nsp_accuracy_by_kind)}", flush=True)

    pretrain(config, resume=resume, progress=show, on_eval=evaluated)


def probe_steps(args) -> int:
    """Time `--probe` steps of the same run (the first sixth not counted) and scale."""
    probe = max(4, args.probe)
    skip = max(1, probe // 6)
    config = dataclasses.replace(run_config(args, probe), out=args.work + "-probe",
                                 eval_pairs=0, save_every=10 * probe)
    times = []
    pretrain(config, progress=lambda m: times.append(time.perf_counter()))
    per_step = (times[-1] - times[skip]) / (len(times) - 1 - skip)
    return max(probe, int(args.minutes * 60 / per_step))


def adopt(source: Path, target: Path) -> None:
    """Take in a delta exported over a copy of the encoder that differs only by rounding:
    check it loads and scores here, then record this machine's encoder as its base."""
    from embedder.coherence import DELTA_FILE, CoherenceScorer, load_base
    from embedder.models import weights_fingerprint

    info = json.loads((source / INFO_FILE).read_text())
    base, _ = load_base()
    info["trained_over"] = "an fp16 copy of the packaged encoder (a lent GPU machine)"
    info["base_fingerprint"] = weights_fingerprint(base.bert)
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(source / DELTA_FILE, target / DELTA_FILE)
    (target / INFO_FILE).write_text(json.dumps(info, indent=2))
    scorer = CoherenceScorer.load(target)
    print(f"adopted {source} into {target}: P(next) of a sample pair "
          f"{scorer.scores([('The storm broke.', 'Rain fell all night.')])[0]:.3f}")


if __name__ == "__main__":
    main()
