"""Soak a real `bertsearch serve`: 64 clients, mixed routes, bounded time.

    python bench/soak.py [--clients 64] [--seconds 120] [--files 60]

Starts the server under uvicorn on 127.0.0.1 (a free port) over an index of the first
`--files` linux-docs files, then runs `--clients` concurrent clients (aiohttp, in this
process) for `--seconds`, each picking a route at random: search (hybrid, filtered,
keyword), OpenAI embeddings, /embed, documents (put, get, delete), coherence, health,
stats and metrics. Reports per route: requests, errors (5xx or a broken connection; 503 with
Retry-After under overload is counted apart, as the designed answer), p50/p99 latency; and
the server's RSS at the start and `--samples` times during the run (growth shows leaks).
Only loopback traffic; the run stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from common import REPO, print_table, shared_data


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def requests_for(rng: random.Random, queries: list[str], n: int,
                 only: set[str] | None = None) -> tuple[str, str, str, dict]:
    """(label, method, path, json body) of one random request (of the `only` labels)."""
    query = rng.choice(queries)
    doc = f"soak-{rng.randrange(50)}"
    choices = [
        (30, ("search", "POST", "/search", {"query": query, "k": 5})),
        (8, ("search filtered", "POST", "/search",
             {"query": query, "k": 5, "filter": {"ext": ".rst"}})),
        (7, ("search keyword", "POST", "/search", {"query": query, "mode": "keyword"})),
        (20, ("v1/embeddings", "POST", "/v1/embeddings", {"input": [query] * rng.randint(1, 4)})),
        (8, ("embed", "POST", "/embed", {"texts": [query]})),
        (6, ("documents put", "PUT", f"/documents/{doc}",
             {"text": f"{query} (version {n % 3})", "metadata": {"n": n % 5}})),
        (6, ("documents get", "GET", f"/documents/{doc}", None)),
        (2, ("documents delete", "DELETE", f"/documents/{doc}", None)),
        (3, ("coherence", "POST", "/coherence", {"passages": [query, rng.choice(queries)]})),
        (10, ("health/stats/metrics", "GET", rng.choice(["/health", "/stats", "/metrics"]),
              None)),
    ]
    choices = [(w, r) for w, r in choices if only is None or r[0] in only]
    total = sum(w for w, _ in choices)
    pick = rng.uniform(0, total)
    for weight, request in choices:
        pick -= weight
        if pick <= 0:
            return request
    return choices[0][1]


async def client(base: str, queries: list[str], deadline: float, seed: int, results,
                 only: set[str] | None = None) -> None:
    import aiohttp

    rng = random.Random(seed)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        n = 0
        while time.monotonic() < deadline:
            label, method, path, body = requests_for(rng, queries, n, only)
            n += 1
            started = time.perf_counter()
            try:
                async with session.request(method, base + path, json=body) as response:
                    await response.read()
                    status = response.status
            except (aiohttp.ClientError, asyncio.TimeoutError):
                status = -1
            results[label].append((status, (time.perf_counter() - started) * 1000))


async def soak(base: str, queries: list[str], clients: int, seconds: float, results,
               only: set[str] | None = None) -> None:
    deadline = time.monotonic() + seconds
    await asyncio.gather(*(client(base, queries, deadline, i, results, only)
                           for i in range(clients)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--files", type=int, default=60)
    parser.add_argument("--samples", type=int, default=2,
                        help="how many times to read the server's RSS during the run")
    parser.add_argument("--routes", default=None,
                        help="only these route labels, comma-separated (e.g. 'search,embed')")
    args = parser.parse_args()
    only = set(args.routes.split(",")) if args.routes else None

    work = Path(tempfile.mkdtemp(prefix="bertsearch-soak-"))
    source = shared_data() / "linux-docs"
    for path in sorted(source.rglob("*.rst"))[:args.files]:
        target = work / "docs" / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    cli = [sys.executable, "-m", "cli"]
    subprocess.run([*cli, "index", str(work / "docs"), "--index", str(work / "idx"),
                    "--quiet"], cwd=REPO, check=True)
    port = free_port()
    server = subprocess.Popen([*cli, "serve", "--index", str(work / "idx"), "--port",
                               str(port), "--no-access-log", "--log-level", "error"],
                              cwd=REPO)
    base = f"http://127.0.0.1:{port}"
    import urllib.request

    for _ in range(600):
        try:
            urllib.request.urlopen(base + "/health", timeout=1)
            break
        except OSError:
            time.sleep(0.2)
    queries = [" ".join(p.read_text(errors="replace").split()[:8])
               for p in sorted((work / "docs").rglob("*.rst"))]
    results: dict[str, list] = defaultdict(list)
    rss = [rss_mb(server.pid)]
    try:
        for _ in range(args.samples):
            asyncio.run(soak(base, queries, args.clients, args.seconds / args.samples, results,
                             only))
            rss.append(rss_mb(server.pid))
    finally:
        server.terminate()
        server.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)

    rows, errors, total = [], 0, 0
    for label, entries in sorted(results.items()):
        statuses = [s for s, _ in entries]
        latencies = [ms for s, ms in entries if 200 <= s < 300]
        bad = sum(1 for s in statuses if s < 0 or s >= 500 and s != 503)
        busy = sum(1 for s in statuses if s == 503)
        errors += bad
        total += len(entries)
        rows.append([label, len(entries), bad, busy,
                     float(np.percentile(latencies, 50)) if latencies else float("nan"),
                     float(np.percentile(latencies, 99)) if latencies else float("nan")])
    print(f"{args.clients} clients for {args.seconds:g} s over {args.files} files: {total} "
          f"requests, {errors} errors; server RSS " + " -> ".join(f"{mb:.0f}" for mb in rss)
          + f" MB (start, then every {args.seconds / args.samples:g} s)")
    print_table(["route", "requests", "errors (5xx, broken)", "503 busy", "p50 ms", "p99 ms"],
                rows)


if __name__ == "__main__":
    main()
