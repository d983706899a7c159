"""HTTP figures of a real `bertsearch serve`: /search latency and /v1/embeddings batching.

    python bench/server.py [--index DIR] [--files 300] [--requests 1024] [--backend NAME]
        [--rounds 1] [--embeddings-only]

Starts the server under uvicorn on 127.0.0.1 (a free port) over an index of linux-docs
(`--index`, or one built here from the first `--files` files), then measures, in one run:
  - /search latency p50/p99 with 1 client and with 16 concurrent clients;
  - /v1/embeddings throughput for `--requests` one-text requests sent one after another
    (the baseline) and from 32 concurrent clients (dynamic batching); target ratio >= 3.
    The default, 1,024, gives each client 32 requests: with 256 (8 each) the first batch's
    window and the last, half-empty batches are a large part of a sub-second run.
    Three kinds of text: natural sentences (STS-B test, what a query looks like), a
    paragraph's first 12 words (linux-docs: prose, but also table rows of 100+ tokens) and
    whole paragraphs (200-1500 characters).
  - with the server stopped, the ceiling batching could reach without HTTP: the encoder in
    this process, one text per call vs 16 and 32 texts per call.
The load generator (aiohttp) runs in this process and shares the cores with the server.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import REPO, linux_doc_paragraphs, print_table, shared_data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", default=None)
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--requests", type=int, default=1024)
    parser.add_argument("--backend", default=None, help="the server's --backend")
    parser.add_argument("--rounds", type=int, default=1,
                        help="embeddings: best of this many rounds of each mode, in turns")
    parser.add_argument("--embeddings-only", action="store_true",
                        help="skip the /search latency part")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bertsearch-serve-"))
    index_dir = args.index or str(work / "index")
    if args.index is None:
        folder = work / "docs"
        source = shared_data() / "linux-docs"
        for path in sorted(source.rglob("*.rst"))[:args.files]:
            target = folder / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target)
        subprocess.run([sys.executable, "-m", "cli", "index", str(folder), "--index",
                        index_dir, "--quiet"], cwd=REPO, check=True)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "cli", "serve", "--index", index_dir,
                               "--port", str(port), "--log-level", "warning"]
                              + (["--backend", args.backend] if args.backend else []), cwd=REPO)
    paragraphs = linux_doc_paragraphs(args.requests + 200)
    kinds = embedding_inputs(paragraphs[:args.requests])
    queries = [" ".join(p.split()[:10]) for p in paragraphs[args.requests:]]
    try:
        asyncio.run(run(f"http://127.0.0.1:{port}", kinds, queries, args.rounds,
                        not args.embeddings_only))
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)
    encoder_ceiling(kinds, args.backend or "torch", args.rounds)


def embedding_inputs(paragraphs: list[str]) -> list[tuple[str, list[str]]]:
    """The three kinds of one-text request, as many of each as `paragraphs`."""
    return [("sentence (STS-B)", sts_sentences(len(paragraphs))),
            ("first 12 words of a paragraph", [" ".join(t.split()[:12]) for t in paragraphs]),
            ("paragraph (200-1500 chars)", paragraphs)]


def encoder_ceiling(kinds, backend: str, rounds: int) -> None:
    """What batching can gain at most, without HTTP: the encoder in this process, one text
    per call vs batches of 16 and 32 (32 clients never make a batch larger than 32)."""
    from embedder import Encoder

    encoder = Encoder.load("default", backend=backend)
    encoder.encode(kinds[0][1][:32])  # warm up
    rows = []
    for label, texts in kinds:
        best = {}
        for size in (1, 16, 32):
            times = []
            for _ in range(rounds):
                started = time.perf_counter()
                for i in range(0, len(texts), size):
                    encoder.encode_detailed(texts[i:i + size])
                times.append(time.perf_counter() - started)
            best[size] = min(times)
        rows += [[label, size, len(texts) / best[size], best[1] / best[size]]
                 for size in (1, 16, 32)]
    print()
    print_table([f"in-process encoder ({backend}), no HTTP", "texts per call", "texts/s",
                 "ratio"], rows)


async def run(base: str, kinds, queries: list[str], rounds: int = 1,
              search_latency: bool = True) -> None:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=64)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(base, connector=connector, timeout=timeout) as session:
        http = Client(session)
        for _ in range(600):
            try:
                if (await http.get("/health"))[0] == 200:
                    break
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.2)
        stats = (await http.get("/stats"))[1]
        print(f"index: {stats['index']['documents']} documents, "
              f"{stats['index']['passages']} passages", flush=True)
        n_requests = len(kinds[0][1])

        async def search(query):
            started = time.perf_counter()
            await http.post("/search", json={"query": query, "k": 10})
            return (time.perf_counter() - started) * 1000

        async def embed(text):
            await http.post("/v1/embeddings", json={"input": text})

        for q in queries[:10]:  # warm up
            await search(q)
        if search_latency:
            one = [await search(q) for q in queries[:100]]
            many = await clients(16, queries[:160], search)
            p = lambda xs, q: float(np.percentile(xs, q))  # noqa: E731
            print_table(["/search", "requests", "p50 ms", "p99 ms"], [
                ["1 client", len(one), p(one, 50), p(one, 99)],
                ["16 concurrent clients", len(many), p(many, 50), p(many, 99)],
            ])

        rows = []
        async def timed(send) -> tuple[float, int]:
            """Seconds `send` took and the encoder calls the server made meanwhile."""
            before = (await http.get("/stats"))[1]["batches"]
            started = time.perf_counter()
            await send()
            seconds = time.perf_counter() - started
            return seconds, (await http.get("/stats"))[1]["batches"] - before

        async def one_by_one(inputs):
            for text in inputs:
                await embed(text)

        for label, inputs in kinds:
            best = {"sequential": float("inf"), "concurrent": float("inf")}
            calls = {"sequential": 0, "concurrent": 0}
            for _ in range(rounds):  # best of `rounds`, taking turns
                for mode, send in (
                        ("sequential", lambda inputs=inputs: one_by_one(inputs)),
                        ("concurrent", lambda inputs=inputs: clients(32, inputs, embed))):
                    seconds, batches = await timed(send)
                    best[mode] = min(best[mode], seconds)
                    calls[mode] += batches
            per_batch = {mode: rounds * n_requests / calls[mode] for mode in calls}
            rows += [[label, "sequential (baseline)", n_requests / best["sequential"], 1.0,
                      per_batch["sequential"]],
                     [label, "32 concurrent clients, dynamic batching",
                      n_requests / best["concurrent"], best["sequential"] / best["concurrent"],
                      per_batch["concurrent"]]]
        print()
        print_table(["/v1/embeddings, one text per request", "clients", "requests/s",
                     "ratio", "texts per batch"], rows)


class Client:
    """The load generator's HTTP calls, on aiohttp: it shares the cores with the server, and
    under 32 clients httpx left the server short of CPU (bench/RESULTS.md)."""

    def __init__(self, session):
        self.session = session

    async def get(self, path: str) -> tuple[int, dict | None]:
        async with self.session.get(path) as response:
            return response.status, (await response.json() if response.status == 200 else None)

    async def post(self, path: str, json: dict) -> dict:
        async with self.session.post(path, json=json) as response:
            response.raise_for_status()
            return await response.json()


def sts_sentences(count: int) -> list[str]:
    """Sentences spread over the STS-B test set (captions, news, forums)."""
    rows = (shared_data() / "stsb" / "sts-test.tsv").read_text().splitlines()
    sentences = [row.split("\t")[5] for row in rows if row.count("\t") >= 6]
    step = max(1, len(sentences) // count)
    return sentences[::step][:count]


async def clients(n: int, items: list, call) -> list:
    """Run `call` over `items` from `n` concurrent clients; returns their results."""
    queue = list(reversed(items))
    results = []

    async def client():
        while queue:
            results.append(await call(queue.pop()))

    await asyncio.gather(*(client() for _ in range(n)))
    return results


if __name__ == "__main__":
    main()
