"""The text sources coherence is trained, calibrated and tested on, each with a fixed role.

A cross-domain measurement holds out whole sources, not documents of the sources a model
trained on: held-out documents of a book share its author, names and style, so they flatter
(issue 21). Every source here has one role for every model:

- `train`: models may train on it; its held-out documents (`Document.held_out`) measure
  in-domain skill.
- `calibration`: never trained on; its pairs fit the score calibration (temperature).
- `test`: never trained or calibrated on; the out-of-domain figures.

Kinds: `prose` (books and narrative) and `docs` (technical documentation). The shared data
(`../shared/data`) gives Moby-Dick, the King James Bible and the Linux docs; the rest comes
from Debian packages, extracted by `scripts/coherence_sources.py` into a corpora folder.
Reserved for evaluation by others and absent here: the Python documentation and Jane
Austen's novels.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .corpus import CorpusError

TRAIN, CALIBRATION, TEST = "train", "calibration", "test"
SHARED, CORPORA = "shared", "corpora"  # where a source lies: ../shared/data or the corpora


@dataclass(frozen=True)
class Source:
    """A named text source: its kind, role, and where it lies."""

    name: str
    kind: str  # "prose" or "docs"
    role: str  # TRAIN, CALIBRATION or TEST
    base: str  # SHARED or CORPORA
    path: str  # within that folder
    origin: str  # where the text comes from


SOURCES = [
    Source("mobydick", "prose", TRAIN, SHARED, "prose/mobydick.txt",
           "Moby-Dick (Debian r-cran-tokenizers)"),
    Source("kjv", "prose", TRAIN, SHARED, "prose/kjv.txt", "King James Bible (bible-kjv)"),
    Source("linux-docs", "docs", TRAIN, SHARED, "linux-docs", "Linux 6.1 docs (linux-doc-6.1)"),
    Source("debian-reference", "docs", TRAIN, CORPORA, "debian-reference",
           "Debian Reference (debian-reference-en)"),
    Source("debian-policy", "docs", TRAIN, CORPORA, "debian-policy",
           "Debian Policy and Developer's Reference"),
    Source("cmake-docs", "docs", TRAIN, CORPORA, "cmake-docs", "CMake manual (cmake-doc)"),
    Source("jargon-file", "prose", CALIBRATION, CORPORA, "jargon-file",
           "The Jargon File (dict-jargon)"),
    Source("debian-faq", "docs", CALIBRATION, CORPORA, "debian-faq", "Debian FAQ (debian-faq)"),
    Source("devils-dictionary", "prose", TEST, CORPORA, "devils-dictionary",
           "Ambrose Bierce, The Devil's Dictionary (dict-devil)"),
    Source("debian-history", "prose", TEST, CORPORA, "debian-history",
           "A Brief History of Debian (debian-history)"),
    Source("git-docs", "docs", TEST, CORPORA, "git-docs", "Git manual (git-doc)"),
    Source("perl-docs", "docs", TEST, CORPORA, "perl-docs", "Perl manual (perl-doc)"),
]
BY_NAME = {source.name: source for source in SOURCES}
# what the packaged model (issue 6) trained on
PACKAGED_SOURCES = ("mobydick", "kjv", "linux-docs")


def sources(role: str | None = None, names=None) -> list[Source]:
    """The sources with `role` (all when None), or those named, in table order."""
    if names is not None:
        unknown = sorted(set(names) - set(BY_NAME))
        if unknown:
            raise CorpusError(f"Unknown source {unknown[0]!r}; known: {', '.join(BY_NAME)}.")
        return [s for s in SOURCES if s.name in names]
    return [s for s in SOURCES if role is None or s.role == role]


def default_roots(repo: Path) -> dict[str, Path]:
    """Where the two folders lie by default: `../shared/data` (or $BERTSEARCH_SHARED_DATA)
    and `.corpora` in the repository (or $BERTSEARCH_CORPORA)."""
    return {SHARED: Path(os.environ.get("BERTSEARCH_SHARED_DATA",
                                        repo.parent / "shared" / "data")),
            CORPORA: Path(os.environ.get("BERTSEARCH_CORPORA", repo / ".corpora"))}


def source_path(source: Source, roots: dict[str, Path]) -> Path:
    """Where a source's text lies.

    Raises:
        CorpusError: it is not there (with how to get it).
    """
    path = Path(roots[source.base]) / source.path
    if not path.exists():
        how = ("run scripts/coherence_sources.py (after installing its Debian packages)"
               if source.base == CORPORA else "set BERTSEARCH_SHARED_DATA")
        raise CorpusError(f"Source {source.name!r} is not at {path}: {how}.")
    return path
