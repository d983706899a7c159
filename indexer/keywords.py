"""Keyword queries and the marks that show why a passage matched.

A query becomes a list of terms for the stores' full-text indexes: each word (letters,
digits and `_`, lower-cased: `PyErr_Print` stays one word) is a term, and a token that
punctuation splits into several words (`os.path.join`, `--chunk-tokens`, `en_US.UTF-8`) is
also a phrase, so the exact sequence ranks above its words scattered. Common English words
are left out unless nothing else is left (they match nearly every passage and only cost
time). The stores OR the terms and rank by BM25.

`highlights` finds the query's words in a passage (whole words, or words that start with a
query word of four letters or more: "sharpen" marks "sharpening"), as character spans.
"""

from __future__ import annotations

import functools
import re

WORD = re.compile(r"\w+", re.UNICODE)
MAX_TERMS = 32
STOPWORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being
below between both but by can could did do does doing down during each few for from further
had has have having he her here hers herself him himself his how i if in into is it its
itself just me more most my myself no nor not now of off on once only or other our ours
ourselves out over own same she should so some such than that the their theirs them
themselves then there these they this those through to too under until up very was we were
what when where which while who whom why will with would you your yours yourself yourselves
""".split())

Term = tuple[str, ...]  # one word, or a phrase of words that must follow each other


def words(text: str) -> list[str]:
    """The lower-cased words of a text, as the keyword index sees them."""
    return [w.lower() for w in WORD.findall(text)]


def keyword_terms(query: str) -> list[Term]:
    """The terms a keyword search looks for (see the module's rules), at most `MAX_TERMS`."""
    terms: list[Term] = []
    for token in query.split():
        parts = words(token)
        if len(parts) > 1:
            terms.append(tuple(parts))
        terms.extend((w,) for w in parts)
    content = [t for t in terms if len(t) > 1 or t[0] not in STOPWORDS]
    unique = list(dict.fromkeys(content or terms))
    return unique[:MAX_TERMS]


_IDENTIFIER = re.compile(r"[_\-./:()#=]|[A-Z]{3,}|[a-z][A-Z]|\d")


def identifier_like(query: str) -> bool:
    """Whether a query names something exactly (an identifier, option, error code, file
    name — `CONFIG_DEBUG_FS`, `--chunk-tokens`, `EADDRINUSE`, `os.path.join`) rather than
    asking in words: at most three tokens, one of them shaped like code (an underscore,
    punctuation inside, capitals in a row or in the middle, digits)."""
    tokens = query.split()
    return 0 < len(tokens) <= 3 and any(_IDENTIFIER.search(t.strip("?!,;\"'")) for t in tokens)


def highlights(text: str, query: str) -> list[tuple[int, int]]:
    """Character spans `(start, end)` of the query's words in `text`, in order."""
    wanted, prefixes, candidates = _query_words(query)
    if candidates is None:
        return []
    # ASCII text: a case-blind regex finds the few candidate words in C, and each is then
    # held to the rule; other text walks every word (case folding can change lengths there)
    found = candidates.finditer(text) if text.isascii() else WORD.finditer(text)
    spans = []
    for match in found:
        word = match.group().lower()
        if word in wanted or (prefixes and word.startswith(prefixes)):
            spans.append(match.span())
    return spans


@functools.lru_cache(maxsize=256)
def _query_words(query: str) -> tuple[frozenset, tuple[str, ...], re.Pattern | None]:
    """The words `highlights` marks for a query: whole words, prefixes of four letters or
    more, and a pattern matching every word that could be one of them."""
    wanted = frozenset(w for w in words(query) if w not in STOPWORDS) or frozenset(words(query))
    prefixes = tuple(w for w in wanted if len(w) >= 4)
    if not wanted:
        return wanted, prefixes, None
    alternatives = "|".join(re.escape(w) for w in sorted(wanted, key=len, reverse=True))
    return wanted, prefixes, re.compile(rf"(?<!\w)(?:{alternatives})\w*", re.IGNORECASE)


def mark(text: str, spans: list[tuple[int, int]], before: str = "**", after: str = "**") -> str:
    """`text` with each span wrapped in `before`/`after` (e.g. `**` or ANSI bold)."""
    out, last = [], 0
    for start, end in spans:
        out += [text[last:start], before, text[start:end], after]
        last = end
    out.append(text[last:])
    return "".join(out)


def snippet(text: str, spans: list[tuple[int, int]], width: int = 200,
            ) -> tuple[str, list[tuple[int, int]]]:
    """A window of about `width` characters of `text` (whitespace flattened), around its
    first highlight, and the highlights that fall inside it, relative to the window."""
    flat, where = [], []  # flattened characters, and their offsets in `text`
    for match in re.finditer(r"\S+", text):
        if flat:
            flat.append(" ")
            where.append(match.start())
        flat.extend(match.group())
        where.extend(range(match.start(), match.end()))
    line = "".join(flat)
    to_flat = {offset: i for i, offset in enumerate(where)}
    moved = [(to_flat[s], to_flat[e - 1] + 1) for s, e in spans if s in to_flat and
             e - 1 in to_flat]
    if len(line) <= width:
        return line, moved
    first = moved[0][0] if moved else 0
    start = max(0, min(first - width // 4, len(line) - width))
    start = line.rfind(" ", 0, start) + 1 if start else 0
    end = min(len(line), start + width)
    end = line.rfind(" ", start, end) if end < len(line) and " " in line[start:end] else end
    prefix, suffix = ("… " if start else ""), (" …" if end < len(line) else "")
    shift = len(prefix) - start
    inside = [(s + shift, e + shift) for s, e in moved if s >= start and e <= end]
    return prefix + line[start:end] + suffix, inside
