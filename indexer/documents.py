"""Walking a document folder and reading its files as text, title, metadata and sections.

Reads `.txt .md .rst .html/.htm` (HTML reduced to its visible text) and `.pdf` (with pypdf).
A file that cannot be used — binary, empty, too large, unreadable, a broken or looping link,
not a regular file — is reported as a `SkippedFile` with the reason; it never stops a run.
A Markdown file's YAML front matter becomes metadata (and is left out of the text, its lines
kept blank so line numbers stay those of the file).
"""

from __future__ import annotations

import fnmatch
import hashlib
import html
import os
import re
import stat
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

from .structure import (
    Section,
    document_title,
    markdown_sections,
    plain_title,
    rst_sections,
)

TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".rst", ".text"}
MARKDOWN_SUFFIXES = {".md", ".markdown"}
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


@dataclass
class Extracted:
    """What a file holds for the index: its text, title, front-matter metadata and
    sections (headings with offsets into `text`)."""

    text: str
    title: str | None = None
    metadata: dict = field(default_factory=dict)
    sections: list[Section] = field(default_factory=list)


def check_folder(folder: str | Path) -> Path:
    """The folder to index, resolved.

    Raises:
        FolderNotFoundError: it does not exist or is not a folder.
    """
    from .errors import FolderNotFoundError

    root = Path(folder).expanduser()
    if not root.is_dir():
        raise FolderNotFoundError(f"Folder '{folder}' does not exist or is not a folder.")
    return root.resolve()


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
    """A document's text, from its bytes and file suffix (see `extract_document`)."""
    return extract_document(data, suffix).text


def extract_document(data: bytes, suffix: str) -> Extracted:
    """A document's text, title, metadata and sections, from its bytes and file suffix.

    Raises:
        UnreadableFile: binary content, no text, or a PDF that pypdf cannot read.
    """
    suffix = suffix.lower()
    if suffix in PDF_SUFFIXES:
        found = _pdf_document(data)
    elif suffix in HTML_SUFFIXES:
        found = html_document(decode_text(data))
    else:
        found = text_document(_newlines(decode_text(data)), suffix)
    found.text = _newlines(found.text)
    if not found.text.strip():
        raise UnreadableFile("no text in the file")
    return found


def _newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def text_document(text: str, suffix: str) -> Extracted:
    """Plain text, Markdown (with YAML front matter) or reStructuredText."""
    if suffix in MARKDOWN_SUFFIXES:
        metadata, text = front_matter(text)
        sections = markdown_sections(text)
        title = metadata.get("title") if isinstance(metadata.get("title"), str) else None
        return Extracted(text, title or document_title(sections), metadata, sections)
    if suffix == ".rst":
        sections = rst_sections(text)
        return Extracted(text, document_title(sections), {}, sections)
    return Extracted(text, plain_title(text))


def api_document(text: str, metadata: dict) -> Extracted:
    """A text sent to the documents API, read as Markdown (headings give its sections; plain
    text has none); its title is the metadata's `title`, else its first heading or line."""
    text = _newlines(text)
    sections = markdown_sections(text)
    title = metadata.get("title") if isinstance(metadata.get("title"), str) else None
    return Extracted(text, title or document_title(sections) or plain_title(text), {},
                     sections)


def front_matter(text: str) -> tuple[dict, str]:
    """A Markdown text's YAML front matter as metadata, and the text with the front matter's
    lines left blank. No front matter, or YAML that is not a mapping: ({}, text)."""
    match = re.match(r"---[ \t]*\n(.*?\n)?(---|\.\.\.)[ \t]*(\n|$)", text, flags=re.S)
    if not match:
        return {}, text
    import yaml

    try:
        values = yaml.safe_load(match.group(1) or "")
    except yaml.YAMLError:
        return {}, text
    if not isinstance(values, dict):
        return {}, text
    blank = "\n" * match.group(0).count("\n")
    return {str(k): _jsonable(v) for k, v in values.items()}, blank + text[match.end():]


def _jsonable(value):
    """YAML values as JSON: dates as ISO strings, anything unusual as its string."""
    import datetime
    import math

    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (datetime.date, datetime.datetime, datetime.time)):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def decode_text(data: bytes) -> str:
    """Decode UTF-8 (a BOM is dropped; UTF-16 with a BOM is honoured), else cp1252.

    A UTF-8 text with a few stray bytes (at most one in a thousand) stays UTF-8, the stray
    bytes replaced by U+FFFD: one bad byte must not turn every accent into mojibake.
    Content with NUL bytes or mostly control characters is binary, not text.
    """
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", errors="replace")
    if b"\x00" in data[:8192]:
        raise UnreadableFile("binary file (contains NUL bytes)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = _mostly_utf8(data)
    sample = text[:8192]
    controls = sum(1 for ch in sample if ord(ch) < 32 and ch not in "\n\r\t\f")
    if controls > 0.05 * len(sample) or sample.count("\ufffd") > max(2, 0.05 * len(sample)):
        raise UnreadableFile("binary file (mostly control or undecodable bytes)")
    return text


def _mostly_utf8(data: bytes) -> str:
    """UTF-8 with replacement characters when the text's valid multi-byte characters
    outnumber its invalid bytes (a UTF-8 file with stray bytes), else cp1252 (a legacy
    file, whose accented letters are all invalid UTF-8)."""
    text = data.decode("utf-8-sig", errors="replace")
    bad = text.count("\ufffd") - data.count("\ufffd".encode())
    valid = sum(1 for ch in text if ord(ch) >= 0x80) - text.count("\ufffd")
    return text if valid >= bad else data.decode("cp1252", errors="replace")


class _TextExtractor(HTMLParser):
    """Visible text of an HTML page, with a paragraph break at each block element; the
    `<title>` and the `h1`-`h6` headings (with their offsets in the text) on the side."""

    BLOCKS = {"p", "div", "br", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "tr",
              "table", "section", "article", "header", "footer", "pre", "blockquote",
              "dd", "dt", "hr"}
    HIDDEN = {"script", "style", "noscript", "template", "head"}
    HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden_depth = 0
        self.in_title = False
        self.title: list[str] = []
        self.heading: tuple[int, int, list[str]] | None = None  # (level, part index, words)
        self.headings: list[tuple[int, int, str]] = []  # (part index, level, text)

    def handle_starttag(self, tag, attrs):
        if tag == "title":
            self.in_title = True
        elif tag in self.HIDDEN:
            self.hidden_depth += 1
        if tag in self.BLOCKS:
            self.parts.append("\n\n")
        if tag in self.HEADINGS and not self.hidden_depth:
            self.heading = (self.HEADINGS[tag], len(self.parts), [])

    def handle_endtag(self, tag):
        if tag == "title":
            self.in_title = False
        elif tag in self.HIDDEN and self.hidden_depth:
            self.hidden_depth -= 1
        if tag in self.HEADINGS and self.heading is not None:
            level, index, words = self.heading
            text = " ".join("".join(words).split())
            if text:
                self.headings.append((index, level, text))
            self.heading = None
        if tag in self.BLOCKS:
            self.parts.append("\n\n")

    def handle_data(self, data):
        if self.in_title:
            self.title.append(data)
        elif not self.hidden_depth:
            self.parts.append(data)
            if self.heading is not None:
                self.heading[2].append(data)


def html_to_text(markup: str) -> str:
    """The visible text of an HTML document: no tags, scripts or styles; blocks as paragraphs."""
    return html_document(markup).text


def html_document(markup: str) -> Extracted:
    """An HTML page's visible text (the `<title>` is not repeated in it), its title (the
    `<title>`, else the first `h1`) and its `h1`-`h6` sections."""
    parser = _TextExtractor()
    parser.feed(markup)
    parser.close()
    marker = "\x00"  # marks where each heading starts, through the whitespace clean-up
    parts = list(parser.parts)
    for index, _, _ in reversed(parser.headings):
        parts.insert(index, marker)
    text = html.unescape("".join(parts)).replace(marker + marker, marker)
    text = re.sub(r"[ \t]*\n[ \t]*", "\n", text)          # trim around line breaks
    text = re.sub(r"[ \t]+", " ", text)
    text = re.sub(r"\n{3,}", "\n\n", text)                 # at most one blank line
    text = text.strip(" \n") + "\n"
    offsets = [m.start() - i for i, m in enumerate(re.finditer(marker, text))]
    text = text.replace(marker, "")
    sections = [Section(min(offset, len(text)), level, title)
                for offset, (_, level, title) in zip(offsets, parser.headings)]
    title = " ".join(html.unescape("".join(parser.title)).split()) or None
    return Extracted(text, title or document_title(sections), {}, sections)


def _pdf_document(data: bytes) -> Extracted:
    """A PDF's text (pages joined by blank lines), its metadata title and its outline."""
    try:
        import io

        from pypdf import PdfReader
        from pypdf.errors import PyPdfError
    except ImportError as exc:  # pragma: no cover - pypdf is a dependency
        raise UnreadableFile("PDF support needs pypdf: pip install pypdf") from exc
    try:
        reader = PdfReader(io.BytesIO(data))
        pages = [(page.extract_text() or "").strip() for page in reader.pages]
    except (PyPdfError, ValueError, KeyError, TypeError) as exc:
        raise UnreadableFile(f"unreadable PDF ({type(exc).__name__})") from exc
    starts, offset, kept = {}, 0, []
    for number, page in enumerate(pages):
        if page:
            starts[number] = offset
            kept.append(page)
            offset += len(page) + 2
    sections = _pdf_outline(reader, starts)
    try:
        title = (reader.metadata.title or "").strip() if reader.metadata else ""
    except (PyPdfError, ValueError, KeyError, TypeError):
        title = ""
    return Extracted("\n\n".join(kept), title or document_title(sections), {}, sections)


def _pdf_outline(reader, page_starts: dict[int, int]) -> list[Section]:
    """The PDF's bookmarks as sections, each at the start of the page it points to."""
    from pypdf.errors import PyPdfError

    sections: list[Section] = []

    def walk(items, level):
        for item in items:
            if isinstance(item, list):
                walk(item, level + 1)
                continue
            try:
                page = reader.get_destination_page_number(item)
            except (PyPdfError, ValueError, KeyError, TypeError, AttributeError):
                continue
            title = " ".join(str(getattr(item, "title", "") or "").split())
            start = next((page_starts[p] for p in sorted(page_starts) if p >= page), None)
            if title and start is not None:
                sections.append(Section(start, level, title))

    try:
        walk(reader.outline, 1)
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError):
        return []
    return sorted(sections, key=lambda s: s.start)


def _matches(relpath: str, include: list[str] | None, exclude: list[str] | None) -> bool:
    name = relpath.rsplit("/", 1)[-1]

    def hit(patterns):
        return any(fnmatch.fnmatch(relpath, p) or fnmatch.fnmatch(name, p) for p in patterns)

    if include and not hit(include):
        return False
    return not (exclude and hit(exclude))


def _rel(root: Path, path: Path) -> str:
    """The path relative to `root`, with forward slashes. A name that is not valid UTF-8
    (its bytes come back from the file system as surrogates) is shown escaped, `bad_\\xff`,
    so it can be stored, printed and sent as JSON; the file is still read by its real name."""
    try:
        relative = path.relative_to(root).as_posix()
    except ValueError:
        relative = path.as_posix()
    return safe_name(relative)


def safe_name(name: str) -> str:
    """`name` with undecodable bytes (surrogate escapes) written as `\\xNN`."""
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        return os.fsencode(name).decode("utf-8", "backslashreplace")


def _os_reason(error: OSError) -> str:
    import errno

    if error.errno == errno.ELOOP:
        return "symbolic link loop"
    if error.errno == errno.ENOENT:
        return "broken symbolic link or file vanished"
    if error.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    return error.strerror or str(error)
