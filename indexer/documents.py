"""Walking a document folder and reading its files as text.

Reads `.txt .md .rst .html/.htm` (HTML reduced to its visible text) and `.pdf` (with pypdf).
A file that cannot be used — binary, empty, too large, unreadable, a broken or looping link,
not a regular file — is reported as a `SkippedFile` with the reason; it never stops a run.
"""

from __future__ import annotations

import fnmatch
import hashlib
import html
import os
import re
import stat
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".rst", ".text"}
HTML_SUFFIXES = {".html", ".htm"}
PDF_SUFFIXES = {".pdf"}
SUPPORTED_SUFFIXES = TEXT_SUFFIXES | HTML_SUFFIXES | PDF_SUFFIXES
DEFAULT_MAX_FILE_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True)
class FoundFile:
    """A candidate document: its path relative to the folder, and what stat says of it."""

    relpath: str  # always with forward slashes
    path: Path
    size: int
    mtime: float


@dataclass(frozen=True)
class SkippedFile:
    """A file that was not indexed, and why."""

    relpath: str
    reason: str


class UnreadableFile(Exception):
    """Raised by `read_text` with the reason a file cannot be indexed."""


def walk_folder(root: Path, include: list[str] | None = None, exclude: list[str] | None = None,
                max_bytes: int = DEFAULT_MAX_FILE_BYTES,
                ) -> tuple[list[FoundFile], list[SkippedFile]]:
    """List the indexable files below `root`, recursively, in a stable order.

    Hidden files and folders (a name starting with `.`) are passed over, and so are files
    whose type bertsearch does not read. Links to folders are not followed (so a link loop
    cannot trap the walk); links to files are read through.

    Args:
        root: the folder to walk.
        include: glob patterns (matched against the relative path and the file name); when
            given, only matching files are indexed.
        exclude: glob patterns of files to leave out.
        max_bytes: larger files are skipped with a reason.

    Returns:
        The files to read, sorted by relative path, and the files skipped with reasons.
    """
    found: list[FoundFile] = []
    skipped: list[SkippedFile] = []

    def on_error(error: OSError) -> None:
        skipped.append(SkippedFile(_rel(root, Path(error.filename)), _os_reason(error)))

    for dirpath, dirnames, filenames in os.walk(root, onerror=on_error):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in list(dirnames):
            if (here / name).is_symlink():
                dirnames.remove(name)
                skipped.append(SkippedFile(_rel(root, here / name),
                                           "link to a folder; links to folders are not followed"))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = here / name
            relpath = _rel(root, path)
            if not _matches(relpath, include, exclude):
                continue
            if path.suffix.lower() not in SUPPORTED_SUFFIXES:
                continue
            try:
                info = path.stat()
            except OSError as error:
                skipped.append(SkippedFile(relpath, _os_reason(error)))
                continue
            if not stat.S_ISREG(info.st_mode):
                skipped.append(SkippedFile(relpath, "not a regular file"))
            elif info.st_size == 0:
                skipped.append(SkippedFile(relpath, "empty file"))
            elif info.st_size > max_bytes:
                skipped.append(SkippedFile(
                    relpath, f"larger than {max_bytes // (1024 * 1024)} MB "
                             f"({info.st_size / 1e6:.1f} MB); raise --max-file-mb to include it"))
            else:
                found.append(FoundFile(relpath, path, info.st_size, info.st_mtime))
    found.sort(key=lambda f: f.relpath)
    return found, skipped


def read_bytes(path: Path) -> bytes:
    """The file's bytes; raises `UnreadableFile` with a reason instead of `OSError`."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as error:
        raise UnreadableFile(_os_reason(error)) from error


def content_hash(data: bytes) -> str:
    """sha256 of a file's bytes: what decides whether a document changed."""
    return hashlib.sha256(data).hexdigest()


def extract_text(data: bytes, suffix: str) -> str:
    """A document's text, from its bytes and file suffix.

    Raises:
        UnreadableFile: binary content, no text, or a PDF that pypdf cannot read.
    """
    suffix = suffix.lower()
    if suffix in PDF_SUFFIXES:
        text = _pdf_text(data)
    else:
        text = decode_text(data)
        if suffix in HTML_SUFFIXES:
            text = html_to_text(text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise UnreadableFile("no text in the file")
    return text


def decode_text(data: bytes) -> str:
    """Decode UTF-8 (a BOM is dropped; UTF-16 with a BOM is honoured), else cp1252.

    Content with NUL bytes or mostly control characters is binary, not text.
    """
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", errors="replace")
    if b"\x00" in data[:8192]:
        raise UnreadableFile("binary file (contains NUL bytes)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("cp1252", errors="replace")
    sample = text[:8192]
    controls = sum(1 for ch in sample if ord(ch) < 32 and ch not in "\n\r\t\f")
    if controls > 0.05 * len(sample) or sample.count("\ufffd") > 0.05 * len(sample):
        raise UnreadableFile("binary file (mostly control or undecodable bytes)")
    return text


class _TextExtractor(HTMLParser):
    """Visible text of an HTML page, with a paragraph break at each block element."""

    BLOCKS = {"p", "div", "br", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "tr",
              "table", "section", "article", "header", "footer", "pre", "blockquote", "title",
              "dd", "dt", "hr"}
    HIDDEN = {"script", "style", "noscript", "template", "head"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden_depth = 0
        self.in_title = False

    def handle_starttag(self, tag, attrs):
        if tag == "title":
            self.in_title = True
        elif tag in self.HIDDEN:
            self.hidden_depth += 1
        if tag in self.BLOCKS:
            self.parts.append("\n\n")

    def handle_endtag(self, tag):
        if tag == "title":
            self.in_title = False
        elif tag in self.HIDDEN and self.hidden_depth:
            self.hidden_depth -= 1
        if tag in self.BLOCKS:
            self.parts.append("\n\n")

    def handle_data(self, data):
        if self.in_title or not self.hidden_depth:
            self.parts.append(data)


def html_to_text(markup: str) -> str:
    """The visible text of an HTML document: no tags, scripts or styles; blocks as paragraphs."""
    parser = _TextExtractor()
    parser.feed(markup)
    parser.close()
    text = html.unescape("".join(parser.parts))
    text = re.sub(r"[ \t]*\n[ \t]*", "\n", text)          # trim around line breaks
    text = re.sub(r"[ \t]+", " ", text)
    text = re.sub(r"\n{3,}", "\n\n", text)                 # at most one blank line
    return text.strip() + "\n"


def _pdf_text(data: bytes) -> str:
    try:
        import io

        from pypdf import PdfReader
        from pypdf.errors import PyPdfError
    except ImportError as exc:  # pragma: no cover - pypdf is a dependency
        raise UnreadableFile("PDF support needs pypdf: pip install pypdf") from exc
    try:
        reader = PdfReader(io.BytesIO(data))
        pages = [page.extract_text() or "" for page in reader.pages]
    except (PyPdfError, ValueError, KeyError, TypeError) as exc:
        raise UnreadableFile(f"unreadable PDF ({type(exc).__name__})") from exc
    return "\n\n".join(page.strip() for page in pages if page.strip())


def _matches(relpath: str, include: list[str] | None, exclude: list[str] | None) -> bool:
    name = relpath.rsplit("/", 1)[-1]

    def hit(patterns):
        return any(fnmatch.fnmatch(relpath, p) or fnmatch.fnmatch(name, p) for p in patterns)

    if include and not hit(include):
        return False
    return not (exclude and hit(exclude))


def _rel(root: Path, path: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def _os_reason(error: OSError) -> str:
    import errno

    if error.errno == errno.ELOOP:
        return "symbolic link loop"
    if error.errno == errno.ENOENT:
        return "broken symbolic link or file vanished"
    if error.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    return error.strerror or str(error)
