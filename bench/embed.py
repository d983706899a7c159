"""Encoder.encode (each backend) vs plain SentenceTransformer.encode on the same passages.

    python bench/embed.py [--passages 2000] [--batch-size 32] [--backends torch,onnx,onnx-int8]
        [--budgets 512,1024,2048,8192]

All encode the same linux-docs paragraphs with the same model and threads, in this one
process, taking turns so none gets a warmer cache. Prints passages/s, tokens/s, the ratio to
sentence-transformers' fp32 encode (targets: exact torch path >= 1.0, fastest >= 2.5) and
each path's cosine to it (the quality guard asks mean >= 0.99). With `--budgets`, also
passages/s of each backend for each `max_batch_tokens` (padded tokens per forward pass),
against the default budget's.
"""

from __future__ import annotations

import argparse
import warnings

from common import Timer, cosine_rows, linux_doc_paragraphs, print_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passages", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--backends", default="torch,onnx,onnx-int8")
    parser.add_argument("--budgets", default=None, help="max_batch_tokens values to compare")
    args = parser.parse_args()

    import torch
    from sentence_transformers import SentenceTransformer

    from embedder import Encoder, resolve_model_path

    passages = linux_doc_paragraphs(args.passages)
    encoders = {b: Encoder.load("default", device="cpu", backend=b)
                for b in args.backends.split(",")}
    reference = SentenceTransformer(str(resolve_model_path("default")), device="cpu")
    encoder = encoders.get("torch") or next(iter(encoders.values()))
    tokens = sum(min(n, encoder.max_seq_length) for n in encoder.count_tokens(passages))
    print(f"{len(passages)} passages, {tokens} tokens (after truncation to "
          f"{encoder.max_seq_length}), torch threads {torch.get_num_threads()}", flush=True)

    base_name = "sentence-transformers encode fp32 (baseline)"
    timings = {base_name: [], **{f"bertsearch Encoder.encode, {b}": [] for b in encoders}}
    outputs = {}
    for _ in range(args.rounds):
        with Timer() as t:
            outputs[base_name] = reference.encode(passages, batch_size=args.batch_size)
        timings[base_name].append(t.seconds)
        for b, enc in encoders.items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the few over-long paragraphs are truncated
                with Timer() as t:
                    outputs[f"bertsearch Encoder.encode, {b}"] = enc.encode(passages)
            timings[f"bertsearch Encoder.encode, {b}"].append(t.seconds)

    base = min(timings[base_name])
    rows = []
    for name, seconds in timings.items():
        cosine = cosine_rows(outputs[base_name], outputs[name])
        rows.append([name, min(seconds), len(passages) / min(seconds), tokens / min(seconds),
                     base / min(seconds), float(cosine.mean()), float(cosine.min())])
    print_table(["path", "best s", "passages/s", "tokens/s", "ratio vs ST",
                 "cosine mean", "cosine min"], rows)
    if args.budgets:
        print()
        compare_budgets(encoders, passages, [int(b) for b in args.budgets.split(",")])


def compare_budgets(encoders: dict, passages: list[str], budgets: list[int]) -> None:
    """Passages/s per backend and token budget, as a ratio to the default budget."""
    from embedder.encoder import MAX_BATCH_TOKENS

    rows = []
    for backend, enc in encoders.items():
        rates = {}
        for budget in sorted(set(budgets) | {MAX_BATCH_TOKENS}):
            with warnings.catch_warnings(), Timer() as t:
                warnings.simplefilter("ignore")
                enc.encode(passages, max_batch_tokens=budget)
            rates[budget] = len(passages) / t.seconds
        rows += [[backend, budget, rate, rate / rates[MAX_BATCH_TOKENS]]
                 for budget, rate in rates.items()]
    print_table(["backend", "max_batch_tokens", "passages/s",
                 f"ratio vs default ({MAX_BATCH_TOKENS})"], rows)


if __name__ == "__main__":
    main()
