"""Start-up time of CLI commands, against what every command paid before imports were lazy.

    python bench/startup.py [--repeats 5]

Each command runs as a fresh `python -m cli ...` process (as the `bertsearch` script does)
and is timed from start to exit; the table gives the median of `--repeats` runs and its ratio
to the baseline, `python -c "import torch, transformers"` — the imports every command paid
before. `query --server` asks a `bertsearch serve` started here on the bundled sample.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from common import REPO, Timer, print_table

SAMPLE = REPO / "samples" / "docs"


def timed(args: list[str], expect: int = 0) -> float:
    """Seconds one fresh process takes to run `args` (checked for its exit status)."""
    with Timer() as t:
        done = subprocess.run(args, cwd=REPO, capture_output=True, text=True)
    if done.returncode != expect:
        sys.exit(f"{' '.join(args)} exited {done.returncode}: {done.stderr.strip()[-300:]}")
    return t.seconds


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(index: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "cli", "serve", "--index", str(index),
                             "--port", str(port), "--log-level", "warning"], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return proc, base
        except httpx.TransportError:
            time.sleep(0.3)
    proc.kill()
    sys.exit("the server did not start within 300 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bertsearch-startup-"))
    index = work / "index"
    cli = [sys.executable, "-m", "cli"]
    timed([*cli, "index", str(SAMPLE), "--index", str(index)])
    proc, base = start_server(index)
    commands = [
        ("baseline: import torch, transformers",
         [sys.executable, "-c", "import torch, transformers"], 0),
        ("bertsearch --help", [*cli, "--help"], 0),
        ("bertsearch index no-such-folder", [*cli, "index", str(work / "missing")], 1),
        ("bertsearch query --server URL", [*cli, "query", "--server", base, "tide pools"], 0),
        ("bertsearch query --index (loads the model)",
         [*cli, "query", "--index", str(index), "tide pools"], 0),
    ]
    try:
        medians = {}
        for name, command, expect in commands:
            timed(command, expect)  # warm the page cache
            medians[name] = statistics.median(timed(command, expect)
                                              for _ in range(args.repeats))
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    baseline = medians[commands[0][0]]
    print_table(["command", "median s", "vs baseline"],
                [[name, seconds, seconds / baseline] for name, seconds in medians.items()])


if __name__ == "__main__":
    main()
