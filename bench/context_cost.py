"""What embedding passages with their headings costs at indexing time.

    python bench/context_cost.py [--files 150] [--rounds 2]

The first `--files` linux-docs files are indexed from scratch with the `plain` recipe (each
passage embedded alone, the baseline) and the `headings` recipe (title and section path
first), taking turns, best of `--rounds` each. The headings add tokens to every embedded
input (never more than the model's limit), so the cost is the extra tokens' compute; the
goal is a fall in passages/s of at most 10 %.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from common import Timer, print_table, shared_data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    from embedder import Encoder
    from indexer import build_index
    from indexer.passages import embedding_inputs
    from indexer.store import open_store

    work = Path(tempfile.mkdtemp(prefix="bertsearch-context-"))
    source = shared_data() / "linux-docs"
    for path in sorted(source.rglob("*.rst"))[:args.files]:
        target = work / "docs" / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    encoder = Encoder.load("default", device="cpu")
    best: dict[str, float] = {}
    passages = 0
    for _ in range(args.rounds):
        for recipe in ("plain", "headings"):
            shutil.rmtree(work / recipe, ignore_errors=True)
            with Timer() as t:
                report = build_index(work / "docs", work / recipe, encoder, context=recipe)
            passages = report.passages_written
            best[recipe] = min(best.get(recipe, float("inf")), t.seconds)
    with open_store(work / "headings") as store:
        rows = [row for doc_id, _, _ in store.iter_documents()
                for row in store.document_passages(doc_id)]
    from indexer.store import NewPassage

    new = [NewPassage(r.ordinal, r.start, r.end, r.line_start, r.line_end,
                      len(encoder.tokenize([r.text])[0]), r.text, r.headings) for r in rows]
    tokens = {recipe: sum(encoder.count_tokens(embedding_inputs(new, encoder, recipe)))
              for recipe in ("plain", "headings")}
    print(f"{args.files} files, {passages} passages; embedded tokens: plain "
          f"{tokens['plain']:,}, headings {tokens['headings']:,} "
          f"(+{tokens['headings'] / tokens['plain'] - 1:.1%})")
    base = best["plain"]
    print_table(["recipe", "best s", "passages/s", "throughput vs plain"],
                [[r, s, passages / s, base / s] for r, s in best.items()])
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
