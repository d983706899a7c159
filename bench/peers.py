"""bertsearch (each backend) side by side with txtai and Chroma on the same folder.

    python bench/peers.py [--files 300] [--queries 100]

The first `--files` files of linux-docs are chunked once by bertsearch's chunker; every
system then indexes exactly those passages with the same all-MiniLM-L6-v2 folder (txtai:
FAISS backend with content storage; Chroma: a persistent client with a sentence-transformers
embedding function), so the embedding work is the same and hits are comparable by passage.
bertsearch's time is its whole `build_index` (reading and chunking included); the peers are
handed the passages. Each system runs in its own process, for a clean peak RSS.

Reports index wall time, passages/s, query latency p50/p99 (100 queries: a passage's first
ten words), peak RSS, and top-10 overlap with the exact fp32 ranking (brute force over
torch fp32 embeddings).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import REPO, print_table, shared_data

SYSTEMS = ["bertsearch torch", "bertsearch onnx", "bertsearch onnx-int8", "txtai", "chroma"]


def prepare(work: Path, files: int, n_queries: int) -> None:
    """Copy the folder, chunk it once, pick the queries, compute the exact ranking."""
    from embedder import Encoder
    from indexer.chunking import ChunkSettings
    from indexer.documents import extract_text
    from indexer.passages import chunk_document

    source = shared_data() / "linux-docs"
    folder = work / "docs"
    for path in sorted(source.rglob("*.rst"))[:files]:
        target = folder / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    encoder = Encoder.load("default", device="cpu")
    passages = []
    for path in sorted(folder.rglob("*.rst")):
        text = extract_text(path.read_bytes(), path.suffix)
        passages += [c.text for c in chunk_document(text, encoder, ChunkSettings())]
    rng = np.random.default_rng(0)
    queries = [" ".join(passages[i].split()[:10])
               for i in rng.choice(len(passages), n_queries, replace=False)]
    vectors = encoder.encode(passages)
    top = np.argsort(-(encoder.encode(queries) @ vectors.T), axis=1)[:, :10]
    exact = [[passages[j] for j in row] for row in top]
    (work / "setup.json").write_text(json.dumps(
        {"passages": passages, "queries": queries, "exact": exact}))


def run_system(system: str, work: Path) -> dict:
    setup = json.loads((work / "setup.json").read_text())
    passages, queries = setup["passages"], setup["queries"]
    store = work / system.replace(" ", "-")
    started = time.perf_counter()
    if system.startswith("bertsearch"):
        from embedder import Encoder
        from indexer import Index, build_index

        encoder = Encoder.load("default", device="cpu", backend=system.split()[1])
        started = time.perf_counter()  # the ONNX build is a one-time cost, not indexing
        build_index(work / "docs", store, encoder)
        index = Index.open(store, encoder=encoder)
        indexed = time.perf_counter() - started
        search = lambda q: [h.text for h in index.search(q, 10)]  # noqa: E731
    elif system == "txtai":
        from txtai import Embeddings

        from embedder import resolve_model_path

        embeddings = Embeddings(path=str(resolve_model_path("default")), content=True,
                                backend="faiss")
        embeddings.index([(i, text, None) for i, text in enumerate(passages)])
        embeddings.save(str(store))
        indexed = time.perf_counter() - started
        search = lambda q: [r["text"] for r in embeddings.search(q, 10)]  # noqa: E731
    else:
        import chromadb
        from chromadb.utils.embedding_functions import SentenceTransformerEmbeddingFunction

        from embedder import resolve_model_path

        client = chromadb.PersistentClient(path=str(store), settings=chromadb.Settings(
            anonymized_telemetry=False))
        collection = client.create_collection(
            "bench", metadata={"hnsw:space": "cosine"},
            embedding_function=SentenceTransformerEmbeddingFunction(
                model_name=str(resolve_model_path("default")), device="cpu"))
        for start in range(0, len(passages), 1000):
            chunk = passages[start:start + 1000]
            collection.add(ids=[str(start + i) for i in range(len(chunk))], documents=chunk)
        indexed = time.perf_counter() - started
        search = lambda q: collection.query(  # noqa: E731
            query_texts=[q], n_results=10)["documents"][0]
    for q in queries[:5]:
        search(q)  # warm up
    latencies, overlaps = [], []
    for query, exact in zip(queries, setup["exact"]):
        t = time.perf_counter()
        found = search(query)
        latencies.append((time.perf_counter() - t) * 1000)
        overlaps.append(len(set(found) & set(exact)) / 10)
    return {"system": system, "index_s": indexed, "passages": len(passages),
            "p50_ms": float(np.percentile(latencies, 50)),
            "p99_ms": float(np.percentile(latencies, 99)),
            "peak_rss_mb": peak_rss_mb(),
            "overlap": float(np.mean(overlaps))}


def peak_rss_mb() -> float:
    """This process's peak resident memory. VmHWM, not getrusage: a forked child's ru_maxrss
    can carry the parent's peak over, which would hide the child's own."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--run", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--work", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    if args.run:
        print(json.dumps(run_system(args.run, Path(args.work))))
        return

    work = Path(tempfile.mkdtemp(prefix="bertsearch-peers-"))
    prepare(work, args.files, args.queries)
    results = []
    for system in args.systems.split(","):
        done = subprocess.run([sys.executable, __file__, "--run", system, "--work", str(work)],
                              cwd=REPO / "bench", capture_output=True, text=True)
        if done.returncode != 0:
            print(f"{system} failed:\n{done.stderr[-2000:]}")
            continue
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"{system}: done", flush=True)
    print(f"\n{args.files} linux-docs files, {results[0]['passages']} passages, "
          f"{args.queries} queries")
    by_name = {r["system"]: r for r in results}
    rows = []
    for r in results:
        rows.append([r["system"], r["index_s"], r["passages"] / r["index_s"], r["p50_ms"],
                     r["p99_ms"], r["peak_rss_mb"], r["overlap"]])
    print_table(["system", "index s", "passages/s", "query p50 ms", "query p99 ms",
                 "peak RSS MB", "top-10 overlap vs exact fp32"], rows)
    for peer in ("txtai", "chroma"):
        if peer in by_name:
            for ours in (s for s in by_name if s.startswith("bertsearch")):
                print(f"{ours} indexing speed vs {peer}: "
                      f"{by_name[peer]['index_s'] / by_name[ours]['index_s']:.2f}x")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
