"""Where a passage stands in its document: titles and section headings.

Pure functions over extracted text. Each format's sections are `Section(start, level,
title)`: the character offset where the heading line starts, its depth (1 outermost) and
its text. `heading_path` gives the headings enclosing an offset, outermost first — what a
passage is embedded with, so that one from the middle of a long page still carries "which
page, which section" (issue: chunked search must beat whole-file search).

- Markdown: `#`..`######` headings and setext underlines (`===` level 1, `---` level 2),
  not inside fenced code blocks.
- reStructuredText: a title line under- (and optionally over-) lined with one punctuation
  character at least as long as the title; levels in order of each style's first use, as
  docutils assigns them.
- HTML: `h1`-`h6` (found by the HTML reader, `documents.py`); PDF: the outline (bookmarks).
- Plain text: a short first line followed by a blank line is the title.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_TITLE_CHARS = 120  # longer "headings" are prose, not titles
PLAIN_TITLE_CHARS = 80
_ATX = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_RST_ADORNMENT = re.compile(r"^([=\-~^\"'`#*+<>:._!$%&,;/?@\\|])\1{2,}[ \t]*$")


@dataclass(frozen=True)
class Section:
    start: int  # offset of the heading line in the document text
    level: int  # 1 = outermost
    title: str


def _lines(text: str) -> list[tuple[int, str]]:
    """(offset, line without its newline) of every line."""
    out, offset = [], 0
    for line in text.split("\n"):
        out.append((offset, line))
        offset += len(line) + 1
    return out


def _clean(title: str) -> str:
    title = re.sub(r"[*_`]+", "", title)  # emphasis and code marks
    title = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", title)  # [text](link) -> text
    return " ".join(title.split())


def markdown_sections(text: str) -> list[Section]:
    """Sections of a Markdown text (ATX and setext headings outside code fences)."""
    sections, fenced = [], False
    lines = _lines(text)
    for i, (offset, line) in enumerate(lines):
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if fenced:
            continue
        atx = _ATX.match(line)
        if atx:
            title = _clean(atx.group(2))
            if title:
                sections.append(Section(offset, len(atx.group(1)), title))
            continue
        below = lines[i + 1][1] if i + 1 < len(lines) else ""
        if line.strip() and re.fullmatch(r" {0,3}(=+|-+)[ \t]*", below) and \
                len(line.strip()) <= MAX_TITLE_CHARS and not line.startswith((" ", "\t")):
            sections.append(Section(offset, 1 if below.strip()[0] == "=" else 2,
                                    _clean(line)))
    return sections


def rst_sections(text: str) -> list[Section]:
    """Sections of a reStructuredText text; levels by each adornment style's first use."""
    styles: list[tuple[str, bool]] = []  # (character, overlined) in order of first use
    sections = []
    lines = _lines(text)
    i = 0
    while i < len(lines) - 1:
        offset, line = lines[i]
        over = _RST_ADORNMENT.match(line)
        if over and i + 2 < len(lines) and lines[i + 1][1].strip() and \
                _same_adornment(lines[i + 2][1], over.group(1)):
            title, start, overlined, step = lines[i + 1][1].strip(), offset, True, 3
        elif line.strip() and not over and _same_adornment(lines[i + 1][1]) and \
                len(lines[i + 1][1].rstrip()) >= len(line.rstrip()) and \
                not line.startswith((" ", "\t")):
            title, start, overlined, step = line.strip(), offset, False, 2
        else:
            i += 1
            continue
        style = (lines[i + step - 1][1].strip()[0], overlined)
        if style not in styles:
            styles.append(style)
        if len(title) <= MAX_TITLE_CHARS:
            sections.append(Section(start, styles.index(style) + 1, _clean(title)))
        i += step
    return sections


def _same_adornment(line: str, char: str | None = None) -> bool:
    match = _RST_ADORNMENT.match(line)
    return bool(match) and (char is None or match.group(1) == char)


def plain_title(text: str) -> str | None:
    """A plain text's title: a short first line followed by a blank line."""
    stripped = text.lstrip("\n")
    first, _, rest = stripped.partition("\n")
    first = first.strip()
    if first and len(first) <= PLAIN_TITLE_CHARS and rest.startswith("\n") and \
            not first.endswith((".", ",", ";", ":")):
        return first
    return None


def heading_path(sections: list[Section], offset: int, title: str | None = None,
                 ) -> tuple[str, ...]:
    """The headings enclosing `offset`, outermost first, after the document's title.

    A heading at or before `offset` is open until a heading of the same or a higher
    level follows it. A title equal to the first heading is not repeated.
    """
    stack: list[Section] = []
    for section in sections:
        if section.start > offset:
            break
        while stack and stack[-1].level >= section.level:
            stack.pop()
        stack.append(section)
    path = [s.title for s in stack]
    if title and (not path or path[0] != title):
        path.insert(0, title)
    return tuple(path)


def document_title(sections: list[Section]) -> str | None:
    """The first outermost heading: the title of a Markdown or reST document."""
    top = min((s.level for s in sections), default=None)
    return next((s.title for s in sections if s.level == top), None)
