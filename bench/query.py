"""Query latency at 100,000 passages: the /search path (embed + search + fetch), by mode,
with and without a filter.

    python bench/query.py [--passages 100000] [--queries 200] [--backends torch,onnx]

The first 40 linux-docs files are indexed for real; their documents are then replicated
(each copy's vectors with a little noise, renormalised; the text shared, so the keyword
index grows as the real one would) until the store holds `--passages` passages, so the size
is reached by replication, as stated. Each copy carries `bucket` metadata (0-99), so the
filter `{"bucket": 7}` matches 1 % of the passages. Every run answers the same queries of
ten words through `Index.search` — what `/search` calls, with its default grouping (one hit
per document) — and reports p50/p99; the query embedding alone is timed too, and recall@10
of dense search against exact search. The torch backend runs single queries on ONNX fp32 as
the server does (`Encoder.fast_small_calls`), unless named `torch-only`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from common import Timer, print_table, shared_data


def build(work: Path, passages: int, encoder) -> list[str]:
    """The replicated index in `work/index`; returns the passage texts of the real part."""
    from indexer import build_index
    from indexer.store import API, NewDocument, NewPassage, open_store

    source = shared_data() / "linux-docs"
    for path in sorted(source.rglob("*.rst"))[:40]:
        target = work / "docs" / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    build_index(work / "docs", work / "index", encoder)
    store = open_store(work / "index")
    originals = []
    for doc_id, root, path in store.iter_documents():
        rows = store.document_passages(doc_id)
        _, vectors = zip(*store.stored_vectors(np.array([r.id for r in rows])))
        record = store.document(os.path.join(root, path))
        originals.append((record, rows, np.concatenate(vectors)))
    rng = np.random.default_rng(0)
    copy, total = 0, store.counts()[1]
    while total < passages:
        batch, vectors = [], []
        for record, rows, block in originals:
            if total >= passages:
                break
            rows = rows[:passages - total]
            noisy = block[:len(rows)] + rng.normal(scale=0.02, size=(len(rows), block.shape[1]))
            vectors.append(noisy / np.linalg.norm(noisy, axis=1, keepdims=True))
            batch.append(NewDocument(
                f"copy{copy}/{record.key}", API, "", f"copy{copy}/{record.key}",
                f"{record.content_hash}-{copy}", record.size, record.mtime,
                {**record.metadata, "bucket": copy % 100, "copy": copy}, record.text,
                [NewPassage(r.ordinal, r.start, r.end, r.line_start, r.line_end, 0, r.text,
                            r.headings) for r in rows]))
            total += len(rows)
        store.write_documents(batch, np.concatenate(vectors).astype(np.float32))
        copy += 1
    store.checkpoint()
    texts = [r.text for _, rows, _ in originals for r in rows]
    store.close()
    return texts


def percentile(values, q) -> float:
    return float(np.percentile(values, q))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passages", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--backends", default="torch,torch-only")
    parser.add_argument("--keep", type=Path,
                        help="build the index in this folder and keep it; reuse it if there")
    args = parser.parse_args()

    from embedder import Encoder
    from indexer import Index

    work = args.keep or Path(tempfile.mkdtemp(prefix="bertsearch-query-"))
    torch_encoder = Encoder.load("default", device="cpu")
    if args.keep and (work / "texts.json").exists():
        texts = json.loads((work / "texts.json").read_text())
    else:
        texts = build(work, args.passages, torch_encoder)
        (work / "texts.json").write_text(json.dumps(texts))
    rng = np.random.default_rng(1)
    queries = [" ".join(texts[i].split()[:10])
               for i in rng.choice(len(texts), args.queries, replace=False)]

    runs = [("dense", None), ("hybrid", None), ("keyword", None),
            ("dense", {"bucket": 7}), ("hybrid", {"bucket": 7})]
    rows = []
    for backend in args.backends.split(","):
        encoder = (torch_encoder if backend == "torch"
                   else Encoder.load(backend="torch" if backend == "torch-only" else backend))
        if backend == "torch":
            encoder.fast_small_calls(export=True)
        elif backend == "torch-only":  # keep Index.open from switching small calls on
            encoder.fast_small_calls = lambda export=True: False
        with Index.open(work / "index", encoder=encoder) as index:
            total = len(index)
            kind = index.stats()["vector_index"]
            exact = [[i for i, _ in index.store.dense_search(encoder.encode([q]), 10,
                                                               exact=True)[0]]
                     for q in queries]
            for q in queries[:10]:  # warm up
                index.search(q, 10)
            embed_only = []
            for q in queries:
                with Timer() as t:
                    encoder.encode([q])
                embed_only.append(t.seconds * 1000)
            for mode, spec in runs:
                times, found = [], []
                for q in queries:
                    with Timer() as t:
                        hits = index.search(q, 10, mode=mode, filter=spec)
                    times.append(t.seconds * 1000)
                    found.append([h.passage_id for h in hits])
                    assert len(hits) == 10, (mode, spec, len(hits))
                recall = (np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, exact)])
                          if mode == "dense" and spec is None else float("nan"))
                rows.append([backend, mode, "1 % (bucket = 7)" if spec else "-",
                             percentile(times, 50), percentile(times, 99),
                             percentile(embed_only, 50) if mode != "keyword" else 0.0,
                             recall])
    print(f"{total} passages ({len(texts)} real, the rest replicas with noisy vectors), "
          f"vector index {kind}, {args.queries} queries of ten words")
    print_table(["backend", "mode", "filter", "Index.search p50 ms", "p99 ms",
                 "embed only p50 ms", "dense recall@10 vs exact"], rows)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
