"""Reading a text corpus for pretraining: documents made of sentences, streamed.

A corpus is a folder of text files (`.txt .md .rst .text`, recursively, hidden ones
skipped) or a single file. Each file is a document; a very long file (a whole book) is cut
at paragraph breaks into documents of about `max_document_chars`, so "another document"
can also mean another part of the same book. Documents are yielded one at a time, so a
corpus larger than memory works.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import EmbedderError

CORPUS_SUFFIXES = {".txt", ".md", ".rst", ".text", ".markdown"}
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")


class CorpusError(EmbedderError):
    """The corpus cannot be used for training (missing, empty, too small)."""


@dataclass(frozen=True)
class Document:
    """A document: where it came from and its sentences, in order."""

    source: str  # file path, with "#part" for a piece of a long file
    sentences: list[str]
    key: str = ""  # where it lies within its corpus (see `document_key`); "" = `source`

    @property
    def held_out(self) -> bool:
        """Whether this document belongs to the evaluation split (about 2 %, stable).

        Chosen by a hash of `key`, which does not depend on where the corpus lies: a split
        by absolute path held out different documents on the machine that trained than on
        the one that evaluated (bench/RESULTS.md, issue 21)."""
        return held_out_key(self.key or self.source)


def held_out_key(key: str) -> bool:
    """The evaluation split's rule: about 2 % of documents, by a hash of their key."""
    return zlib.crc32(key.encode()) % 50 == 0


def document_key(root: Path, file: Path, part: int) -> str:
    """A document's location-independent name: the corpus folder's name and the file's path
    in it, with "#part" for a piece of a long file. A file given alone is named by its own
    folder and name, as when its folder is the corpus ("prose/mobydick.txt#3" either way)."""
    root = root if root.is_dir() else file.parent
    name = f"{root.name}/{file.relative_to(root).as_posix()}"
    return name if part == 0 else f"{name}#{part}"


def corpus_files(path: str | Path | list) -> list[Path]:
    """The text files of a corpus (one or several folders or files), sorted.

    Raises:
        CorpusError: a path does not exist or holds no text files.
    """
    if isinstance(path, (list, tuple)):
        if not path:
            raise CorpusError("No corpus given: pass at least one folder or text file.")
        return [f for p in path for f in corpus_files(p)]
    root = Path(path).expanduser()
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise CorpusError(f"Corpus '{path}' does not exist. Pass a folder of text files or "
                          f"one text file.")
    files = sorted(p for p in root.rglob("*") if p.is_file()
                   and p.suffix.lower() in CORPUS_SUFFIXES
                   and not any(part.startswith(".") for part in p.relative_to(root).parts))
    if not files:
        raise CorpusError(f"Corpus '{path}' holds no text files "
                          f"({', '.join(sorted(CORPUS_SUFFIXES))}).")
    return files


def read_documents(path: str | Path | list, max_document_chars: int = 20_000,
                   min_sentences: int = 2, rng=None) -> Iterator[Document]:
    """Stream the corpus as documents of sentences (documents with too few are dropped).

    With `rng` (a `random.Random`) the files come in a shuffled order, so a corpus made of
    several sources is mixed rather than read one source after another.
    """
    files = [(root, file) for root in _roots(path) for file in corpus_files(root)]
    if rng is not None:
        rng.shuffle(files)
    for root, file in files:
        text = file.read_text(encoding="utf-8", errors="replace")
        for part, piece in enumerate(_pieces(text, max_document_chars)):
            sentences = split_sentences(piece)
            if len(sentences) >= min_sentences:
                source = str(file) if part == 0 else f"{file}#{part}"
                yield Document(source, sentences, document_key(root, file, part))


def _roots(path: str | Path | list) -> list[Path]:
    paths = path if isinstance(path, (list, tuple)) else [path]
    if not paths:
        corpus_files(paths)  # raises the clear error
    return [Path(p).expanduser() for p in paths]


def split_sentences(text: str) -> list[str]:
    """Sentences of a text: paragraph breaks always end one; otherwise `. ! ?` followed by
    space and a capital or digit. Line breaks inside a paragraph are joined."""
    out = []
    for paragraph in re.split(r"\n\s*\n", text):
        flat = " ".join(paragraph.split())
        if flat:
            out.extend(s.strip() for s in _SENTENCE_END.split(flat) if s.strip())
    return out


def _pieces(text: str, size: int) -> Iterator[str]:
    start = 0
    while start < len(text):
        end = min(len(text), start + size)
        if end < len(text):
            cut = text.rfind("\n\n", start + size // 2, end)
            end = cut if cut > start else end
        yield text[start:end]
        start = end
