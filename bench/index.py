"""End-to-end indexing of linux-docs vs the encoder alone; sync, query and HNSW figures.

    python bench/index.py [--files N] [--queries 200] [--backend torch]

In one run:
  1. `build_index` on the linux-docs folder (or its first --files files): wall time,
     files/s, passages/s;
  2. the encoder alone on exactly the passages stored, in the same batches — the pipeline
     overhead is (1) / (2) - 1 (target <= 10 %);
  3. a no-change re-run;
  4. in-process query latency p50/p99 (embed + search + fetch) on the exact index;
  5. an HNSW index over the same vectors: recall@10 against exact search and its latency.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np
from common import Timer, print_table, shared_data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=0, help="first N files only (0: all)")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--backend", default="torch")
    args = parser.parse_args()

    from embedder import Encoder
    from indexer import Index, build_index
    from indexer.vectors import VectorIndex

    source = shared_data() / "linux-docs"
    work = Path(tempfile.mkdtemp(prefix="bertsearch-bench-"))
    folder = source
    if args.files:
        folder = work / "docs"
        for path in sorted(source.rglob("*.rst"))[:args.files]:
            target = folder / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target)
    encoder = Encoder.load("default", device="cpu", backend=args.backend)
    print(f"backend: {args.backend}", flush=True)
    idx = work / "index"

    with Timer() as full:
        report = build_index(folder, idx, encoder, index_type="flat")  # exact reference
    print(report.summary(), flush=True)
    files = report.added
    passages = report.passages_written

    index = Index.open(idx, encoder=encoder)
    rows = index.store.passages(list(index.store.passage_ids()))
    texts = [rows[i].text for i in sorted(rows)]
    with Timer() as alone:
        for start in range(0, len(texts), 256):  # the pipeline's batches
            encoder.encode(texts[start:start + 256])

    with Timer() as rerun:
        again = build_index(folder, idx, encoder, index_type="flat")
    assert again.passages_written == 0

    rng = np.random.default_rng(0)
    picks = rng.choice(len(texts), size=min(args.queries, len(texts)), replace=False)
    queries = [" ".join(texts[i].split()[:12]) for i in picks]  # a passage's opening words
    latencies = []
    for query in queries:
        with Timer() as t:
            index.search(query, 10)
        latencies.append(t.seconds * 1000)

    query_vectors = encoder.encode(queries)
    exact_scores, exact_ids = index._vectors.search(query_vectors, 10)
    hnsw = VectorIndex.empty(encoder.dimension, "hnsw")
    with Timer() as hnsw_build:
        for ids, block in index.store.vectors():
            hnsw.add(ids, block)
    hnsw_ms, exact_ms, found = [], [], []
    for q, want in zip(query_vectors, exact_ids):
        with Timer() as t:
            _, got = hnsw.search(q[None], 10)
        hnsw_ms.append(t.seconds * 1000)
        with Timer() as t:
            index._vectors.search(q[None], 10)
        exact_ms.append(t.seconds * 1000)
        found.append(len(set(got[0]) & set(want)) / 10)

    print()
    print_table(["stage", "seconds", "files/s", "passages/s", "ratio"], [
        ["encoder alone (baseline)", alone.seconds, files / alone.seconds,
         passages / alone.seconds, 1.0],
        ["build_index end to end", full.seconds, files / full.seconds,
         passages / full.seconds, full.seconds / alone.seconds],
        ["no-change re-run", rerun.seconds, files / rerun.seconds, 0.0,
         rerun.seconds / alone.seconds],
    ])
    print(f"\npipeline overhead: {100 * (full.seconds / alone.seconds - 1):.1f} % "
          f"({files} files, {passages} passages)\n")
    p = lambda xs, q: float(np.percentile(xs, q))  # noqa: E731
    print_table(["query path", "p50 ms", "p99 ms", "recall@10 vs exact"], [
        ["Index.search (embed+search+fetch), flat", p(latencies, 50), p(latencies, 99), 1.0],
        ["FAISS flat search only", p(exact_ms, 50), p(exact_ms, 99), 1.0],
        ["FAISS HNSW search only", p(hnsw_ms, 50), p(hnsw_ms, 99), float(np.mean(found))],
    ])
    print(f"\nHNSW build over {len(hnsw)} vectors: {hnsw_build.seconds:.1f}s")
    index.close()
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
