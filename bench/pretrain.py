"""Pretraining step speed (gathered MLM head vs Hugging Face's full loss) and a short
continued-pretraining run of MiniLM on prose + linux-docs.

    python bench/pretrain.py [--steps 20] [--batch-size 16] [--train-steps 200]

1. The same model (the packaged MiniLM as `BertForPreTraining`) and the same masked batches,
   alternating: our step (MLM head only at masked positions) against
   `BertForPreTraining(..., labels=, next_sentence_label=)` (MLM head over every position),
   forward + backward + AdamW. Reports training tokens/s and the ratio (target >= 1.5).
2. `--train-steps` of MLM + NSP continued pretraining (random negatives, BERT's recipe),
   with held-out MLM and NSP accuracy before and after.
"""

from __future__ import annotations

import argparse
import tempfile

import torch
from common import Timer, print_table, shared_data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--train-steps", type=int, default=200)
    args = parser.parse_args()

    from embedder.training.pretrain import (
        PairStream,
        PretrainConfig,
        evaluate,
        evaluation_batches,
        load_for_pretraining,
        masked_batch,
        pretrain,
        pretraining_loss,
    )

    data = shared_data()
    corpus = [str(data / "prose"), str(data / "linux-docs")]
    config = PretrainConfig(corpus=corpus, out=tempfile.mkdtemp(), batch_size=args.batch_size,
                            max_length=args.max_length, steps=args.train_steps,
                            eval_pairs=256, eval_every=args.train_steps, lr=1e-4,
                            save_every=10 ** 9)
    torch.manual_seed(0)
    model, tokenizer = load_for_pretraining(config, "cpu")
    stream = iter(PairStream(config, tokenizer))
    batches = [masked_batch([next(stream) for _ in range(args.batch_size)], tokenizer, config,
                            i, "cpu") for i in range(args.steps + 2)]
    tokens = sum(int(b["attention_mask"].sum()) for b in batches[2:])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    model.train()

    def ours(batch):
        loss, _ = pretraining_loss(model, batch)
        return loss

    def hugging_face(batch):
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                     token_type_ids=batch["token_type_ids"], labels=batch["labels"],
                     next_sentence_label=batch["next_sentence_label"]).loss

    seconds = {"HF BertForPreTraining full MLM loss (baseline)": 0.0,
               "bertsearch gathered MLM + NSP": 0.0}
    steps = dict(zip(seconds, (hugging_face, ours)))
    for i, batch in enumerate(batches):
        for name, step in steps.items():
            with Timer() as t:
                loss = step(batch)
                loss.backward()
                optimizer.step()
                optimizer.zero_grad()
            if i >= 2:  # the first two are warm-up
                seconds[name] += t.seconds
    base = seconds["HF BertForPreTraining full MLM loss (baseline)"]
    print(f"{args.steps} steps of {args.batch_size} pairs x up to {args.max_length} tokens "
          f"({tokens} real tokens), all-MiniLM-L6-v2 + heads, CPU")
    print_table(["training step", "seconds", "tokens/s", "ratio"],
                [[name, s, tokens / s, base / s] for name, s in seconds.items()])

    eval_batches = evaluation_batches(config, tokenizer, "cpu")
    fresh, _ = load_for_pretraining(config, "cpu")
    before = evaluate(fresh, eval_batches, config, 0)
    with Timer() as training:
        result = pretrain(config)
    after = result.evaluations[-1]
    print(f"\ncontinued pretraining: {args.train_steps} steps x {args.batch_size} pairs in "
          f"{training.seconds:.0f}s; held-out documents, {after.pairs} pairs")
    print_table(["held-out metric", "before", "after"], [
        ["MLM accuracy", before.mlm_accuracy, after.mlm_accuracy],
        ["MLM loss", before.mlm_loss, after.mlm_loss],
        ["NSP accuracy", before.nsp_accuracy, after.nsp_accuracy],
        ["NSP loss", before.nsp_loss, after.nsp_loss],
    ])


if __name__ == "__main__":
    main()
