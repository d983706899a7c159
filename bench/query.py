"""In-process query latency (embed + search + fetch) at 100,000 passages, per backend.

    python bench/query.py [--passages 100000] [--queries 200]

The first 40 linux-docs files are indexed for real; their passages and vectors are then
replicated (each copy's vector with a little noise, renormalised; text shared) until the
SQLite store holds `--passages` passages — so the size is reached by replication, as
stated. Each backend then answers the same queries through `Index.search`; the embedding
alone is timed too, and the flat (exact) index's search alone.
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
    parser.add_argument("--passages", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()

    from embedder import Encoder
    from indexer import Index, build_index
    from indexer.store import NewPassage, Store

    work = Path(tempfile.mkdtemp(prefix="bertsearch-query-"))
    source = shared_data() / "linux-docs"
    for path in sorted(source.rglob("*.rst"))[:40]:
        target = work / "docs" / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    torch_encoder = Encoder.load("default", device="cpu")
    build_index(work / "docs", work / "index", torch_encoder)

    store = Store.open(work / "index")
    rows = store.passages(list(store.passage_ids()))
    texts = [rows[i].text for i in sorted(rows)]
    ids, vectors = next(store.vectors(batch=10 ** 9))
    rng = np.random.default_rng(0)
    copy = 0
    while store.counts()[1] < args.passages:
        need = min(len(texts), args.passages - store.counts()[1])
        noisy = vectors[:need] + rng.normal(scale=0.02, size=(need, vectors.shape[1]))
        noisy = (noisy / np.linalg.norm(noisy, axis=1, keepdims=True)).astype(np.float32)
        passages = [NewPassage(i, 0, len(t), 1, 1, 0, t) for i, t in enumerate(texts[:need])]
        store.write_documents("/replicas", [(f"copy{copy}.txt", "x", 0, 0.0, passages)], noisy)
        copy += 1
    total = store.counts()[1]
    store.close()
    queries = [" ".join(texts[i].split()[:10])
               for i in rng.choice(len(texts), args.queries, replace=False)]

    results = []
    exact_ids = None
    runs = [("torch", "flat"), ("torch", "auto"), ("onnx", "auto"), ("onnx-int8", "flat"),
            ("onnx-int8", "auto")]
    for backend, kind in runs:
        encoder = torch_encoder if backend == "torch" else Encoder.load(backend=backend)
        store = Store.open(work / "index")
        store.save_settings({"index_type": kind})
        store.close()
        (work / "index" / "vectors.faiss").unlink(missing_ok=True)
        index = Index.open(work / "index", encoder=encoder)
        for q in queries[:10]:
            index.search(q, 10)
        full, embed_only, search_only, found = [], [], [], []
        for q in queries:
            with Timer() as t:
                index.search(q, 10)
            full.append(t.seconds * 1000)
            with Timer() as t:
                vector = encoder.encode([q])
            embed_only.append(t.seconds * 1000)
            with Timer() as t:
                _, ids = index._vectors.search(vector, 10)
            search_only.append(t.seconds * 1000)
            found.append(ids[0])
        if exact_ids is None:
            exact_ids = found  # torch + flat: the exact ranking
        recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, exact_ids)])
        vector_index = index.stats()["vector_index"]
        index.close()
        p = lambda xs, q: float(np.percentile(xs, q))  # noqa: E731
        results.append([backend, f"{kind} ({vector_index})", p(full, 50), p(full, 99),
                        p(embed_only, 50), p(search_only, 50), recall])
    print(f"{total} passages ({len(texts)} real, the rest replicas with noisy vectors), "
          f"{args.queries} queries of ten words")
    print_table(["backend", "index type", "Index.search p50 ms", "p99 ms",
                 "embed only p50 ms", "FAISS search only p50 ms", "recall@10 vs exact"],
                results)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
