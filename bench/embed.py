"""Encoder.encode vs plain SentenceTransformer.encode on the same real passages.

    python bench/embed.py [--passages 2000] [--batch-size 32]

Both encode the same linux-docs paragraphs with the same model, batch size and threads, in
this one process, alternating so neither gets a warmer cache. Prints passages/s, tokens/s and
the ratio of ours to sentence-transformers' (target >= 1.0: no overhead over what we wrap).
"""

from __future__ import annotations

import argparse

import numpy as np
from common import Timer, linux_doc_paragraphs, print_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passages", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    import torch
    from sentence_transformers import SentenceTransformer

    from embedder import Encoder, resolve_model_path

    passages = linux_doc_paragraphs(args.passages)
    encoder = Encoder.load("default", device="cpu")
    reference = SentenceTransformer(str(resolve_model_path(encoder.source)), device="cpu")
    tokens = sum(min(n, encoder.max_seq_length) for n in encoder.count_tokens(passages))
    print(f"{len(passages)} passages, {tokens} tokens (after truncation to "
          f"{encoder.max_seq_length}), torch threads {torch.get_num_threads()}", flush=True)

    timings = {"sentence-transformers encode": [], "bertsearch Encoder.encode": []}
    for _ in range(args.rounds):
        with Timer() as t:
            theirs = reference.encode(passages, batch_size=args.batch_size)
        timings["sentence-transformers encode"].append(t.seconds)
        with Timer() as t:
            ours = encoder.encode(passages, batch_size=args.batch_size)
        timings["bertsearch Encoder.encode"].append(t.seconds)

    cosine = (ours * theirs).sum(axis=1)
    base = min(timings["sentence-transformers encode"])
    rows = [[name, min(s), len(passages) / min(s), tokens / min(s), base / min(s)]
            for name, s in timings.items()]
    print_table(["path", "best s", "passages/s", "tokens/s", "ratio vs ST"], rows)
    print(f"cosine(ours, ST): mean {cosine.mean():.6f}, min {cosine.min():.6f}")
    assert np.all(cosine > 0.9999)


if __name__ == "__main__":
    main()
