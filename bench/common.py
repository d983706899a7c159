"""Helpers shared by the benchmarks: the data sets, timing and a plain-text table."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def shared_data() -> Path:
    """`../shared/data` or $BERTSEARCH_SHARED_DATA; benchmarks need it and say so if missing."""
    path = Path(os.environ.get("BERTSEARCH_SHARED_DATA", REPO.parent / "shared" / "data"))
    if not path.is_dir():
        sys.exit(f"The shared data sets are not at {path}; set BERTSEARCH_SHARED_DATA.")
    return path


def linux_doc_paragraphs(count: int, min_chars: int = 200, max_chars: int = 1500) -> list[str]:
    """The first `count` prose-sized paragraphs of the linux-docs tree, in a fixed order."""
    out: list[str] = []
    for path in sorted((shared_data() / "linux-docs").rglob("*.rst")):
        for block in path.read_text(encoding="utf-8", errors="replace").split("\n\n"):
            block = block.strip()
            if min_chars <= len(block) <= max_chars:
                out.append(block)
                if len(out) == count:
                    return out
    return out


def cosine_rows(reference, other):
    """Row-wise cosine similarity of two embedding matrices."""
    import numpy as np

    a = reference / np.linalg.norm(reference, axis=1, keepdims=True)
    b = other / np.linalg.norm(other, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


class Timer:
    """`with Timer() as t: ...` then `t.seconds`."""

    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start


def print_table(headers: list[str], rows: list[list]) -> str:
    """Print (and return) a Markdown table, so it can be pasted into RESULTS.md as is."""
    cells = [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in cells]
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
    return str(value)
