"""Encoder.encode (each backend) vs plain SentenceTransformer.encode on the same passages.

    python bench/embed.py [--passages 2000] [--batch-size 32] [--backends torch,onnx,onnx-int8]
        [--budgets 512,1024,2048,8192]

All encode the same linux-docs paragraphs with the same model and threads, in this one
process, taking turns so none gets a warmer cache. Prints passages/s, tokens/s, the ratio to
sentence-transformers' fp32 encode (targets: exact torch path >= 1.0, fastest >= 2.5) and
each path's cosine to it (the quality guard asks mean >= 0.99). With `--budgets`, also
passages/s of each backend for each `max_batch_tokens` (padded tokens per forward pass),
against the default budget's.

With `--load N`, instead: each backend's throughput on `--passages` passages and its
single-query latency (a sentence, p50 of 200), idle and then with N busy single-threaded
processes beside it (a server and an indexer on one machine), for `--load-rounds` rounds;
the goal is, in every round, at least 0.27x the idle throughput (0.8x the share one process
of three would get on 2 cores).
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
    parser.add_argument("--load", type=int, default=0,
                        help="busy single-threaded processes beside (0: the usual run)")
    parser.add_argument("--load-rounds", type=int, default=3)
    args = parser.parse_args()
    if args.load:
        return under_load(args)

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


def under_load(args) -> None:
    """Throughput and single-query latency of each backend, idle and beside busy processes."""
    import subprocess
    import sys

    import numpy as np

    from embedder import Encoder

    passages = linux_doc_paragraphs(args.passages)
    encoders = {b: Encoder.load("default", device="cpu", backend=b)
                for b in args.backends.split(",")}
    query = ["how do I mount the debug file system at boot?"]

    def measure(encoder):
        with warnings.catch_warnings(), Timer() as t:
            warnings.simplefilter("ignore")
            encoder.encode(passages)
        latencies = []
        for _ in range(200):
            with Timer() as q:
                encoder.encode(query)
            latencies.append(q.seconds * 1000)
        return len(passages) / t.seconds, float(np.percentile(latencies, 50))

    rows = []
    for round_ in range(1, args.load_rounds + 1):
        for name, encoder in encoders.items():
            encoder.encode(passages[:32])  # warm
            idle_rate, idle_ms = measure(encoder)
            busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                    for _ in range(args.load)]
            try:
                busy_rate, busy_ms = measure(encoder)
            finally:
                for proc in busy:
                    proc.kill()
                    proc.wait()
            rows.append([round_, name, idle_rate, busy_rate, busy_rate / idle_rate,
                         idle_ms, busy_ms])
    print(f"{len(passages)} passages; {args.load} busy single-threaded processes beside")
    print_table(["round", "backend", "idle passages/s", "loaded passages/s", "loaded / idle",
                 "idle query p50 ms", "loaded query p50 ms"], rows)


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
