"""Extract the extra coherence sources from installed Debian packages into plain text.

    apt-get install -y --no-install-recommends dict-devil dict-jargon debian-history \
        debian-faq debian-reference-en debian-policy developers-reference cmake-doc \
        git-doc perl-doc
    python scripts/coherence_sources.py [--out .corpora]

Each source becomes a folder of `.txt` files under `--out` (one file per document the
package ships, or per letter of a dictionary), and `--out/SOURCES.json` records what came
from which package and version. `embedder.training.sources` names each source's role (train,
calibration or test) and kind (prose or docs); bench/coherence.py and
scripts/train_default_coherence.py read the folders from there.

Reserved for evaluation by others and never read here, whatever is installed: the Python
documentation and Jane Austen's novels (../shared/DATA.md). The script refuses any path or
text that looks like them.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESERVED = re.compile(r"janeausten|python3(\.\d+)?-doc|/python3(\.\d+)?/|pride and prejudice"
                      r"|jane austen", re.IGNORECASE)


def _dict_entries(path: str) -> Iterator[tuple[str, str]]:
    """A dictd database (dictzip is gzip) as (first letter, entry text), skipping the
    `00-database-*` header entries."""
    text = _gunzip(path)
    entries = re.split(r"\n(?=\S)", text)
    for entry in entries:
        if entry.startswith("00-database") or not entry.strip():
            continue
        yield entry[0].upper(), entry.strip()


def by_letter(path: str) -> Callable[[], dict[str, str]]:
    """A dictionary as one document per initial letter, entries as paragraphs."""
    def read() -> dict[str, str]:
        letters: dict[str, list[str]] = {}
        for letter, entry in _dict_entries(path):
            if letter.isalpha():
                letters.setdefault(letter, []).append(entry)
        return {f"{letter}.txt": "\n\n".join(entries) for letter, entries in letters.items()}
    return read


def _gunzip(path: str) -> str:
    with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
        return f.read()


def gzipped(path: str, name: str) -> Callable[[], dict[str, str]]:
    return lambda: {name: _gunzip(path)}


def files(pattern: str, suffix: str, clean=lambda text: text) -> Callable[[], dict[str, str]]:
    """Every file matching a glob under `/`, named by its path relative to the glob's root."""
    def read() -> dict[str, str]:
        root = Path(pattern[:pattern.index("*")].rsplit("/", 1)[0])
        out = {}
        for path in sorted(Path("/").glob(pattern.lstrip("/"))):
            name = path.relative_to(root).as_posix().removesuffix(suffix) + ".txt"
            out[name.replace("/", "__")] = clean(path.read_text(encoding="utf-8",
                                                                errors="replace"))
        return out
    return read


def pod_to_text(text: str) -> str:
    """Perl's POD as plain paragraphs: headings and items kept as lines, other commands
    dropped, formatting codes (C<...>, B<...>, L<...>) reduced to their text."""
    lines = []
    for line in text.splitlines():
        if line.startswith("="):
            command, _, rest = line.partition(" ")
            line = rest if command.startswith(("=head", "=item")) else ""
        lines.append(line)
    text = "\n".join(lines)
    for _ in range(3):  # nested codes
        text = re.sub(r"[A-Z]<<+\s*(.*?)\s*>+>", r"\1", text)
        text = re.sub(r"L<(?:[^|>]*\|)?([^>]*)>", r"\1", text)
        text = re.sub(r"[A-Z]<([^<>]*)>", r"\1", text)
    return text


# name -> (Debian package, how its text is read)
SOURCES: dict[str, tuple[str, Callable[[], dict[str, str]]]] = {
    "devils-dictionary": ("dict-devil", by_letter("/usr/share/dictd/devil.dict.dz")),
    "jargon-file": ("dict-jargon", by_letter("/usr/share/dictd/jargon.dict.dz")),
    "debian-history": ("debian-history", gzipped(
        "/usr/share/doc/debian-history/docs/project-history.en.txt.gz", "history.txt")),
    "debian-faq": ("debian-faq", gzipped(
        "/usr/share/doc/debian/FAQ/debian-faq.en.txt.gz", "faq.txt")),
    "debian-reference": ("debian-reference-en", gzipped(
        "/usr/share/doc/debian-reference-en/docs/debian-reference.en.txt.gz",
        "reference.txt")),
    "debian-policy": ("debian-policy developers-reference", lambda: {
        **files("/usr/share/doc/debian-policy/policy.html/_sources/*.rst.txt", ".rst.txt")(),
        **{f"devref__{k}": v for k, v in files(
            "/usr/share/doc/developers-reference/developers-reference.html/_sources/*.rst.txt",
            ".rst.txt")().items()}}),
    "cmake-docs": ("cmake-doc", files("/usr/share/doc/cmake-data/html/_sources/**/*.rst.txt",
                                      ".rst.txt")),
    "git-docs": ("git-doc", files("/usr/share/doc/git-doc/*.txt", ".txt")),
    "perl-docs": ("perl-doc", files("/usr/share/perl/5.*.*/pod/*.pod", ".pod", pod_to_text)),
}


def package_version(names: str) -> str:
    out = []
    for name in names.split():
        result = subprocess.run(["dpkg-query", "-W", "-f=${Version}", name],
                                capture_output=True, text=True)
        out.append(f"{name} {result.stdout.strip() or '(not installed)'}")
    return ", ".join(out)


def extract(name: str, out: Path) -> dict:
    """Write one source's documents under `out/name`; its record for SOURCES.json."""
    package, read = SOURCES[name]
    documents = {k: v for k, v in read().items() if v.strip()}
    if not documents:
        raise SystemExit(f"{name}: nothing found; install the Debian package {package}.")
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    for file_name, text in documents.items():
        if RESERVED.search(file_name) or RESERVED.search(text[:200_000]):
            raise SystemExit(f"{name}/{file_name} looks like a source reserved for "
                             f"evaluation (the Python docs or Jane Austen); not extracted.")
        (folder / file_name).write_text(text, encoding="utf-8")
    return {"package": package_version(package), "documents": len(documents),
            "characters": sum(len(t) for t in documents.values())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / ".corpora"))
    parser.add_argument("--only", nargs="*", default=None, help="source names")
    args = parser.parse_args()
    out = Path(args.out)
    record = {}
    for name in args.only or SOURCES:
        record[name] = extract(name, out)
        print(f"{name}: {record[name]}", flush=True)
    (out / "SOURCES.json").write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
