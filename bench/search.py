"""Search quality by mode and passage recipe: nDCG@10 on question sets and exact terms.

    python bench/search.py [--files 1000] [--term-files 600] [--work DIR] [--rrf 60]

Two kinds of queries, each with exactly one relevant file, scored by nDCG@10 over distinct
files (a file counts once, at the rank of its best passage):

- Questions (Debian FAQ, apt package `debian-faq`): each question heading of the English
  FAQ becomes a query; its answer section becomes a file, with the question heading
  removed so it cannot leak, under its chapter's title. Linux-docs sections fill the
  corpus up to `--files` files, as distractors.
- Exact terms: identifiers (`CONFIG_*`, function names with `_`), error codes (`E*`) and
  `--option` names from `../shared/data/linux-docs`, each occurring in exactly one file
  of the whole tree; the query is the bare term; the corpus is `--term-files` linux-docs
  files, every term's file among them.

For each passage recipe (`plain`: a passage embedded alone; `headings`: with its title and
section path) the corpus is indexed once; then every mode and ranking is evaluated on the
same index, next to whole-file embedding (each file's text truncated to the model's 256
tokens, no chunking; brute force), the baseline chunking must beat.
"""

from __future__ import annotations

import argparse
import gzip
import math
import re
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
from common import Timer, print_table, shared_data

FAQ = Path("/usr/share/doc/debian/FAQ/debian-faq.en.txt.gz")
HEADING = re.compile(r"^(\d+(?:\.\d+)+)\.\s+(.*)$")
CHAPTER = re.compile(r"^Chapter (\d+)\.\s+(.*)$")
TERM = re.compile(r"(?<![\w-])(CONFIG_[A-Z0-9_]{4,}|E[A-Z]{4,}[A-Z0-9]*|"
                  r"[a-z][a-z0-9]+(?:_[a-z0-9]+){2,}|--[a-z][a-z0-9]+(?:-[a-z0-9]+)+)(?![\w-])")


def faq_sections() -> tuple[list[tuple[str, str, str]], dict[str, str]]:
    """[(number, question, answer)] from the English FAQ, and chapter titles by number."""
    if not FAQ.exists():
        sys.exit(f"{FAQ} is missing: apt-get install debian-faq")
    text = gzip.decompress(FAQ.read_bytes()).decode("utf-8")
    lines = text.replace("\u00a0", " ").split("\n")
    body_start = next(i for i, line in enumerate(lines) if CHAPTER.match(line))
    chapters, sections, current, i = {}, [], None, body_start
    while i < len(lines):
        line = lines[i]
        chapter = CHAPTER.match(line)
        heading = HEADING.match(line)
        if chapter:
            chapters[chapter.group(1)] = " ".join(chapter.group(2).split())
        if heading:
            question = [heading.group(2)]
            while i + 1 < len(lines) and lines[i + 1].strip():  # wrapped headings
                i += 1
                question.append(lines[i].strip())
            current = [heading.group(1), " ".join(" ".join(question).split()), []]
            sections.append(current)
        elif current is not None and not chapter:
            current[2].append(line)
        i += 1
    out = []
    for number, question, body in sections:
        answer = "\n".join(body).strip()
        if len(answer) > 80:
            out.append((number, question, answer))
    return out, chapters


def linux_doc_sections(count: int) -> list[tuple[str, str]]:
    """(title, text) of reST sections of the linux docs, in a fixed order, for distractors."""
    from indexer.structure import rst_sections

    out = []
    for path in sorted((shared_data() / "linux-docs").rglob("*.rst")):
        text = path.read_text(encoding="utf-8", errors="replace")
        sections = rst_sections(text)
        for a, b in zip(sections, [*sections[1:], None]):
            body = text[a.start:b.start if b else len(text)]
            if 400 <= len(body) <= 6000:
                out.append((a.title, body))
                if len(out) == count:
                    return out
    return out


def question_corpus(folder: Path, files: int) -> list[tuple[str, str]]:
    """Write the FAQ answers and distractors; returns (question, relevant relative path)."""
    sections, chapters = faq_sections()
    queries = []
    for number, question, answer in sections:
        chapter = chapters.get(number.split(".")[0], "Debian FAQ")
        path = f"faq/{number}.md"
        (folder / "faq").mkdir(parents=True, exist_ok=True)
        (folder / path).write_text(f"# {chapter}\n\n{answer}\n", encoding="utf-8")
        queries.append((question, path))
    for i, (_, body) in enumerate(linux_doc_sections(max(0, files - len(sections)))):
        (folder / "docs").mkdir(parents=True, exist_ok=True)
        (folder / f"docs/{i:04d}.rst").write_text(body, encoding="utf-8")
    return queries


def term_corpus(folder: Path, files: int, wanted: int = 150) -> list[tuple[str, str]]:
    """Copy `files` linux-docs files including one per unique term; (term, its file)."""
    root = shared_data() / "linux-docs"
    paths = sorted(root.rglob("*.rst"))
    where: dict[str, set[Path]] = {}
    counts: Counter = Counter()
    for path in paths:
        found = TERM.findall(path.read_text(encoding="utf-8", errors="replace"))
        counts.update(found)
        for term in set(found):
            where.setdefault(term, set()).add(path)
    unique = sorted(t for t, p in where.items() if len(p) == 1 and counts[t] <= 3)
    rng = np.random.default_rng(0)
    chosen = [unique[i] for i in rng.permutation(len(unique))]
    kinds = {"config": [], "errno": [], "identifier": [], "option": []}
    for term in chosen:
        kind = ("config" if term.startswith("CONFIG_") else "option" if term.startswith("--")
                else "errno" if term[0] == "E" else "identifier")
        kinds[kind].append(term)
    picked = []
    while len(picked) < wanted and any(kinds.values()):
        for kind in kinds:
            if kinds[kind] and len(picked) < wanted:
                picked.append(kinds[kind].pop())
    keep = {next(iter(where[t])) for t in picked}
    others = [p for p in paths if p not in keep]
    keep |= {others[i] for i in rng.permutation(len(others))[:max(0, files - len(keep))]}
    for path in keep:
        target = folder / path.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    return [(t, next(iter(where[t])).relative_to(root).as_posix()) for t in picked]


def ndcg_at_10(ranked_files: list[str], relevant: str) -> float:
    for rank, path in enumerate(ranked_files[:10], 1):
        if path == relevant:
            return 1 / math.log2(rank + 1)
    return 0.0


def distinct(paths: list[str]) -> list[str]:
    return list(dict.fromkeys(paths))


def evaluate(index, queries, runs: dict, depth: int = 100) -> dict[str, float]:
    """nDCG@10 x 100 of each named run. Each query's ranked lists (`Index.rankings`: dense
    passages, keyword passages, first passages; `depth` hits each) are fetched once; a run
    ranks files from them: `runs[name](lists) -> paths`."""
    scores: dict[str, list[float]] = {name: [] for name in runs}
    scores.update({"DEFAULT: Index.search (hybrid, by documents)": [],
                   "Index.search (hybrid, by passages)": []})
    for query, relevant in queries:
        lists = index.rankings(query, depth)
        for name, run in runs.items():
            scores[name].append(ndcg_at_10(distinct(run(lists)), relevant))
        for name, group in (("DEFAULT: Index.search (hybrid, by documents)", "documents"),
                            ("Index.search (hybrid, by passages)", "passages")):
            hits = index.search(query, 10, group=group)
            scores[name].append(ndcg_at_10(distinct([h.path for h in hits]), relevant))
    return {name: 100 * float(np.mean(values)) for name, values in scores.items()}


def whole_file_baseline(folder: Path, queries, encoder) -> float:
    """Each file's text, truncated to the model's limit, as one vector; brute force."""
    import warnings

    from indexer.documents import extract_text

    paths = sorted(p for p in folder.rglob("*") if p.is_file())
    texts = [extract_text(p.read_bytes(), p.suffix) for p in paths]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vectors = encoder.encode(texts)
    names = [p.relative_to(folder).as_posix() for p in paths]
    scores = []
    for query, relevant in queries:
        order = np.argsort(-(encoder.encode([query]) @ vectors.T)[0])
        scores.append(ndcg_at_10([names[i] for i in order[:10]], relevant))
    return 100 * float(np.mean(scores))


def mode_runs(rrf_values: list[float], depths=(20, 50, 100)) -> dict:
    """dense, keyword, and hybrid as `Index.search` fuses passages
    (`reciprocal_rank_fusion` over each list's top `depth`) for several constants and
    depths; then document-level rankings (`group="documents"`): each list ranks
    documents by their first appearance, and the document rankings are fused, with and
    without the documents' first passages as a third list."""
    from indexer.fusion import reciprocal_rank_fusion
    from indexer.index import document_ranking

    def hybrid(constant, depth):
        def run(lists):
            by_id = {h.passage_id: h.path for h in lists["dense"] + lists["keyword"]}
            fused = reciprocal_rank_fusion(
                {name: [h.passage_id for h in lists[name][:depth]]
                 for name in ("dense", "keyword")}, 100, None, constant)
            return [by_id[i] for i, _ in fused]
        return run

    def documents(names, constant, weights=None):
        def run(lists):
            ranked = document_ranking({n: lists[n] for n in names}, 100, weights, constant)
            return [hits[0].path for _, hits in ranked]
        return run

    runs = {"dense": lambda lists: [h.path for h in lists["dense"]],
            "keyword": lambda lists: [h.path for h in lists["keyword"]],
            "first passages (dense)": lambda lists: [h.path for h in lists["first"]]}
    for c in rrf_values:
        for depth in depths:
            runs[f"hybrid (rrf {c:g}, depth {depth})"] = hybrid(c, depth)
    for c in rrf_values:
        runs[f"documents: dense+keyword (rrf {c:g})"] = documents(("dense", "keyword"), c)
        runs[f"documents: dense+keyword+first (rrf {c:g})"] = documents(
            ("dense", "keyword", "first"), c)
        for w in (0.5, 2.0):
            runs[f"documents: dense+keyword+first x{w:g} (rrf {c:g})"] = documents(
                ("dense", "keyword", "first"), c, {"first": w})
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--term-files", type=int, default=600)
    parser.add_argument("--work", default=None, help="keep corpora and indexes here")
    parser.add_argument("--rrf", default="10,30,60", help="RRF constants to compare")
    parser.add_argument("--recipes", default="plain,headings")
    parser.add_argument("--reuse", action="store_true",
                        help="keep the indexes already in --work (measure rankings only)")
    args = parser.parse_args()

    from embedder import Encoder
    from indexer import Index, build_index

    work = Path(args.work or tempfile.mkdtemp(prefix="bertsearch-search-"))
    encoder = Encoder.load("default", device="cpu")
    sets = {}
    for name, make, size in (("questions (Debian FAQ)", question_corpus, args.files),
                             ("exact terms (linux-docs)", term_corpus, args.term_files)):
        folder = work / name.split()[0]
        if folder.exists() and not args.reuse:
            shutil.rmtree(folder)
        queries = make(folder, size)
        sets[name] = (folder, queries)
        files = sum(1 for p in folder.rglob("*") if p.is_file())
        print(f"{name}: {len(queries)} queries, {files} files", flush=True)

    rows = []
    runs = mode_runs([float(c) for c in args.rrf.split(",")])
    for name, (folder, queries) in sets.items():
        rows.append([name, "whole file (256 tokens, no chunks)", "-",
                     whole_file_baseline(folder, queries, encoder), "-"])
        for recipe in args.recipes.split(","):
            index_dir = work / f"{folder.name}-{recipe}"
            rate = float("nan")
            if not (args.reuse and index_dir.exists()):
                shutil.rmtree(index_dir, ignore_errors=True)
                with Timer() as t:
                    report = build_index(folder, index_dir, encoder, context=recipe)
                rate = report.passages_written / t.seconds
            with Index.open(index_dir, encoder=encoder) as index:
                scores = evaluate(index, queries, runs)
            for run_name, score in scores.items():
                rows.append([name, run_name, recipe, score, f"{rate:.1f}"])
            print(f"{name}, {recipe}: {rate:.1f} passages/s", flush=True)
    print_table(["set", "ranking", "recipe", "nDCG@10", "index passages/s"], rows)
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
