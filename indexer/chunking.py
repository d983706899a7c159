"""Splitting a document into passages that fit the encoder, with offsets and line numbers.

Pure functions over a text and its tokens' character spans (from the encoder's tokenizer),
so passages are bounded by the *model's* token count, never by a character guess, and never
silently truncated. A passage ends at the best break within its token budget: a paragraph
break if one lies in the second half of the window, else a sentence end, a line break, a
space — only a single word longer than the whole budget is ever cut inside.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

PARAGRAPH, SENTENCE, LINE, WORD, INSIDE_WORD = 4, 3, 2, 1, 0
_SENTENCE_END = re.compile(r"[.!?:;][\"')\]]*$")


@dataclass(frozen=True)
class Chunk:
    """A passage of a document."""

    ordinal: int  # 0-based position among the document's passages
    start: int  # character offsets into the document text: text[start:end]
    end: int
    line_start: int  # 1-based, inclusive
    line_end: int
    tokens: int  # content tokens (special tokens not counted)
    text: str


@dataclass(frozen=True)
class ChunkSettings:
    """How documents are cut into passages."""

    max_tokens: int = 200  # content tokens per passage; the model adds [CLS] and [SEP]
    overlap_tokens: int = 32  # tokens a passage repeats from the end of the previous one
    min_fill: float = 0.5  # a break is only taken once the passage is this full

    def validate(self, model_limit: int) -> None:
        from .errors import IndexerError

        if not 8 <= self.max_tokens <= model_limit - 2:
            raise IndexerError(
                f"Passage size must be between 8 and {model_limit - 2} tokens for this model "
                f"(its limit is {model_limit} with [CLS] and [SEP]); got {self.max_tokens}.")
        if not 0 <= self.overlap_tokens <= self.max_tokens // 2:
            raise IndexerError(
                f"Overlap must be between 0 and half the passage size "
                f"({self.max_tokens // 2} tokens); got {self.overlap_tokens}.")


def break_priorities(text: str, spans: list[tuple[int, int]]) -> list[int]:
    """How good a place each token boundary is to end a passage.

    `priorities[t]` rates a cut just before token `t` (t >= 1), from the text between token
    t-1 and token t: a blank line is a paragraph break, a sentence-ending token followed by
    space a sentence break, then a line break, then a space; no space means inside a word.
    """
    priorities = [PARAGRAPH] * (len(spans) + 1)
    for t in range(1, len(spans)):
        gap = text[spans[t - 1][1]:spans[t][0]]
        previous = text[spans[t - 1][0]:spans[t - 1][1]]
        if gap.count("\n") >= 2:
            # a heading belongs with the text below it, so cutting right after one is worse
            paragraph = text[text.rfind("\n\n", 0, spans[t - 1][0]) + 1:spans[t - 1][1]]
            priorities[t] = LINE if _is_heading(paragraph) else PARAGRAPH
        elif gap and gap.isspace() and _SENTENCE_END.search(previous):
            priorities[t] = SENTENCE
        elif "\n" in gap:
            priorities[t] = LINE
        elif gap:
            priorities[t] = WORD
        else:
            priorities[t] = INSIDE_WORD
    return priorities


def _is_heading(paragraph: str) -> bool:
    """A Markdown `# heading` or a reStructuredText title (a line underlined with = - ~ ...)."""
    lines = [line for line in paragraph.strip().splitlines() if line.strip()]
    if len(lines) == 1:
        return lines[0].lstrip().startswith("#")
    underline = lines[-1].strip()
    return len(lines) in (2, 3) and len(set(underline)) == 1 and underline[0] in "=-~^*+#\"'`"


def chunk_text(text: str, spans: list[tuple[int, int]], settings: ChunkSettings) -> list[Chunk]:
    """Cut `text` into passages of at most `settings.max_tokens` tokens.

    Args:
        text: the document text.
        spans: the (start, end) character span of each token of `text`, in order, without
            special tokens (`Encoder.token_spans`).
        settings: passage size, overlap and how full a passage must be before a break.

    Returns:
        The passages in document order; consecutive passages overlap by up to
        `overlap_tokens` tokens, starting at a word (or sentence) boundary.
    """
    n = len(spans)
    if n == 0:
        return []
    priorities = break_priorities(text, spans)
    newlines = [m.start() for m in re.finditer("\n", text)]
    budget, chunks, start = settings.max_tokens, [], 0
    while start < n:
        end = _best_end(priorities, start, n, budget, settings.min_fill)
        chunks.append(_make_chunk(text, spans, newlines, len(chunks), start, end))
        if end >= n:
            break
        start = _next_start(priorities, start, end, settings.overlap_tokens)
    return chunks


def _best_end(priorities: list[int], start: int, n: int, budget: int, min_fill: float) -> int:
    limit = start + budget
    if limit >= n:
        return n
    lowest = start + max(1, int(budget * min_fill))
    # highest priority wins; among equals, the latest (fullest passage)
    best = max(range(lowest, limit + 1), key=lambda t: (priorities[t], t))
    return best if priorities[best] > INSIDE_WORD else limit


def _next_start(priorities: list[int], start: int, end: int, overlap: int) -> int:
    if overlap <= 0:
        return end
    window = range(max(end - overlap, start + 1), end)
    for wanted in (SENTENCE, WORD):  # begin the overlap at a sentence start, else a word
        for t in window:
            if priorities[t] >= wanted:
                return t
    return end


def _make_chunk(text, spans, newlines, ordinal, start, end) -> Chunk:
    first, last = spans[start][0], spans[end - 1][1]
    return Chunk(
        ordinal=ordinal, start=first, end=last,
        line_start=bisect.bisect_right(newlines, first - 1) + 1,
        line_end=bisect.bisect_right(newlines, last - 1) + 1,
        tokens=end - start, text=text[first:last],
    )
