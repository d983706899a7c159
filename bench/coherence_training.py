"""Coherence training on CPU: packed vs padded step time, and how far
`bertsearch coherence train --index` adapts the model to one corpus in 10 CPU minutes.

    python bench/coherence_training.py [--source cmake-docs] [--minutes 10]
        [--rounds 3] [--speed-only] [--work /tmp/coherence-training]

1. Indexes a source the packaged model never trained on (default: the CMake manual, a
   `train` source of embedder/training/sources.py; run scripts/coherence_sources.py first)
   with the default chunking, and builds its training pairs as `coherence train` does
   (10 % of documents held out).
2. Times training passes (forward and backward of a batch of 16, the CLI's default) on the
   same six batches, the modes taking turns batch by batch, medians: padded with dropout in
   the frozen layers too (as before issue 21), padded with the frozen layers in eval mode
   (now, the default), packed with the frozen layers in eval mode (opt-in);
   for the index's pairs and for pairs of mixed length (BERT's short-sequence targets, as
   short passages give), with the share of padding in the batches. `--speed-only` stops here.
3. Trains for the steps that fit `--minutes` (timed by a 12-step run), exactly as the CLI
   does, and reports held-out accuracy (P(next) >= 0.5) and ROC-AUC per kind of negative
   before and after.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from common import REPO, print_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="cmake-docs")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3, help="passes over 6 timed batches")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--work", default="/tmp/coherence-training")
    parser.add_argument("--speed-only", action="store_true",
                        help="only time the steps (index pairs and mixed-length pairs)")
    args = parser.parse_args()

    from embedder import Encoder
    from embedder.coherence import CoherenceScorer
    from embedder.training.coherence import train_coherence
    from embedder.training.sources import BY_NAME, default_roots, source_path
    from indexer import build_index
    from indexer.coherence import coherence_training_set

    work = Path(args.work)
    index = work / f"index-{args.source}"
    corpus = source_path(BY_NAME[args.source], default_roots(REPO))
    started = time.perf_counter()
    report = build_index(corpus, index, Encoder.load("default", device="cpu"))
    print(f"index of {args.source}: {report.summary()} ({time.perf_counter() - started:.0f}s)")
    data = coherence_training_set(index)
    print(f"pairs: {len(data.train)} training, {len(data.held_out)} held out")

    scorer = CoherenceScorer.load(device="cpu")
    step_times(scorer, data.train, args, f"{args.source} index pairs")
    step_times(scorer, mixed_pairs(scorer, corpus), args,
               f"{args.source} pairs of mixed length (BERT's short-sequence targets)")
    if args.speed_only:
        return

    steps = max(1, int(args.minutes * 60 / seconds_per_step(data, work, args.batch_size)))
    before = held_out_figures(scorer, data.held_out)
    started = time.perf_counter()
    result = train_coherence(data.train, data.held_out, work / "adapted", steps=steps,
                             batch_size=args.batch_size)
    seconds = time.perf_counter() - started
    after = held_out_figures(CoherenceScorer.load(work / "adapted", device="cpu"),
                             data.held_out)
    print(f"\nadaptation: {steps} steps x {args.batch_size} pairs in {seconds / 60:.1f} min "
          f"({steps * args.batch_size / len(data.train):.1f} passes over "
          f"{len(data.train)} pairs); held-out documents' pairs:")
    rows = [[kind, before[kind][0], after[kind][0], before[kind][1], after[kind][1]]
            for kind in before]
    print_table(["negatives", "accuracy before", "after", "ROC-AUC before", "after"], rows)
    print(f"(the CLI's own report: {result.before} -> {result.after})")


def step_times(scorer, pairs, args, what: str) -> dict[str, float]:
    """Median seconds of a training pass (forward and backward of one batch: what differs;
    the optimiser step is the same) in each mode, on the same batches, the modes taking
    turns batch by batch so that other load on the machine falls on all of them alike."""
    import random

    from embedder.training.coherence import (
        batch_nsp_loss,
        frozen_in_eval_mode,
        tokenized_pairs,
    )
    from embedder.training.loop import set_trainable

    print(f"{what}: padding is {padding_share(scorer, pairs, args.batch_size):.1%} of the "
          f"positions of padded batches of {args.batch_size}")
    model = scorer.model
    set_trainable(model, lambda name: name.startswith(
        ("bert.encoder.layer.4.", "bert.encoder.layer.5.", "bert.pooler.",
         "cls.seq_relationship.")))
    examples = tokenized_pairs(scorer, random.Random(0).sample(list(pairs), 16 * 6))
    batches = [examples[i:i + args.batch_size] for i in range(0, 96, args.batch_size)]
    modes = {  # name: (packed, dropout in the frozen layers)
        "padded, dropout in frozen layers (before)": (False, True),
        "padded": (False, False),
        "packed": (True, False),
    }
    timings: dict[str, list] = {mode: [] for mode in modes}
    for _ in range(args.rounds):
        for batch in batches:
            for mode, (packed, frozen_dropout) in modes.items():
                model.train()
                if not frozen_dropout:
                    frozen_in_eval_mode(model, (4, 5))
                started = time.perf_counter()
                batch_nsp_loss(scorer, batch, packed, 0.0).backward()
                timings[mode].append(time.perf_counter() - started)
                model.zero_grad(set_to_none=True)
    model.eval()
    per_step = {mode: float(np.median(t)) for mode, t in timings.items()}
    first = next(iter(per_step.values()))
    print_table([f"training pass (batch {args.batch_size}, median of {len(timings['packed'])})",
                 "seconds", "ratio"],
                [[mode, seconds, first / seconds] for mode, seconds in per_step.items()])
    return per_step


def seconds_per_step(data, work: Path, batch_size: int, steps: int = 12) -> float:
    """Seconds of a whole step of `coherence train` as the CLI runs it, from a short run."""
    from embedder.training.coherence import train_coherence

    stamps: list[float] = []
    train_coherence(data.train, data.held_out[:8], work / "probe", steps=steps,
                    batch_size=batch_size, progress=lambda *_: stamps.append(time.perf_counter()))
    return float(np.median(np.diff(stamps[2:])))


def mixed_pairs(scorer, corpus, count: int = 2000) -> list:
    """Labelled pairs whose lengths vary as BERT's short-sequence pairs do (a random target
    of 2 to 125 tokens each), from the same corpus: what short passages give."""
    import random

    from embedder.coherence import TextPair
    from embedder.training.corpus import read_documents
    from embedder.training.pairs import HARD_NEGATIVES, PairBuilder

    tok = scorer.tokenizer
    builder = PairBuilder(lambda s: tok(s, add_special_tokens=False, verbose=False)["input_ids"],
                          scorer.max_length, random.Random(0), negatives=HARD_NEGATIVES,
                          trim="continuation", short_seq_prob=1.0)
    out = []
    for pair in builder.pairs(read_documents(corpus, rng=random.Random(0))):
        out.append(TextPair(tok.decode(pair.ids_a), tok.decode(pair.ids_b), pair.is_next,
                            pair.kind))
        if len(out) == count:
            break
    return out


def padding_share(scorer, pairs, batch_size: int) -> float:
    """Share of the positions of padded batches that are padding, over the training pairs
    as the loop draws them (shuffled)."""
    from embedder.inputs import truncate_for_continuation

    texts = sorted({t for p in pairs for t in (p.a, p.b)})
    lengths = dict(zip(texts, (len(ids) for ids in scorer.tokenizer(
        texts, add_special_tokens=False, verbose=False)["input_ids"])))
    sizes = []
    for p in pairs:
        a, b, _ = truncate_for_continuation([0] * lengths[p.a], [0] * lengths[p.b],
                                            scorer.max_length - 3)
        sizes.append(len(a) + len(b) + 3)
    rng = np.random.default_rng(0)
    sizes = rng.permutation(sizes)
    real = padded = 0
    for start in range(0, len(sizes) - batch_size + 1, batch_size):
        batch = sizes[start:start + batch_size]
        real += batch.sum()
        padded += batch.max() * len(batch)
    return 1 - real / padded


def held_out_figures(scorer, pairs) -> dict[str, tuple[float, float]]:
    """(accuracy at 0.5, ROC-AUC) of true continuations against each kind of negative."""
    from embedder.training.evaluation import NEGATIVE_KINDS, balanced_accuracy, roc_auc

    scores = scorer.scores([(p.a, p.b) for p in pairs])
    kinds = np.array([p.kind for p in pairs])
    positives = scores[kinds == "next"]
    return {kind: (balanced_accuracy(positives, scores[kinds == kind]),
                   roc_auc(positives, scores[kinds == kind]))
            for kind in NEGATIVE_KINDS if (kinds == kind).any()}


if __name__ == "__main__":
    main()
