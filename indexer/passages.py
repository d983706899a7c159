"""From a document's text to the passages an index stores and the inputs it embeds.

Written once for folder sync and the documents API, so a file and an upserted text of the
same content become the same passages and vectors.

A passage is embedded together with where it stands (the recipe `headings`): the heading
path above it — the document's title, then its section headings — and then its own text,
`"Title > Section > Subsection\\n\\npassage text"`. The stored text, offsets and line
numbers stay the passage's own; only the vector sees the context. The context takes what
room the model's token limit leaves after the passage (never the passage's room), giving
up outer headings first, the innermost heading and the title last.
"""

from __future__ import annotations

from collections.abc import Iterator

from .chunking import Chunk, ChunkSettings, chunk_text
from .documents import Extracted
from .settings import TextEncoder
from .store import NewPassage
from .structure import heading_path

# Tokenize long documents in blocks this size, so offsets stay cheap for a 10 MB file.
TOKENIZE_BLOCK_CHARS = 100_000
RECIPES = ("headings", "plain")  # what a passage is embedded with; see the module docstring
# chosen by measurement (bench/RESULTS.md, "What the headings cost"): with documents ranked
# as units, headings add 0.4-0.8 nDCG@10 on questions, within noise, for 7-18 % of indexing
# throughput
DEFAULT_RECIPE = "plain"
CONTEXT_SEPARATOR = " > "
MAX_CONTEXT_TOKENS = 48  # the heading path never takes more than this


def document_passages(document: Extracted, encoder: TextEncoder,
                      chunk: ChunkSettings) -> list[NewPassage]:
    """The passages of one document, each with its heading path."""
    return list(iter_passages(document, encoder, chunk))


def iter_passages(document: Extracted, encoder: TextEncoder,
                  chunk: ChunkSettings) -> Iterator[NewPassage]:
    """The passages of one document, produced as they are cut (a block of the text at a
    time), so a very long document never holds all its tokens at once."""
    for c in iter_chunks(document.text, encoder, chunk):
        yield NewPassage(c.ordinal, c.start, c.end, c.line_start, c.line_end, c.tokens,
                         c.text, heading_path(document.sections, c.start, document.title))


def chunk_document(text: str, encoder: TextEncoder, chunk: ChunkSettings) -> list[Chunk]:
    """Passages of one text, token-bounded by the encoder's tokenizer."""
    return list(iter_chunks(text, encoder, chunk))


def iter_chunks(text: str, encoder: TextEncoder, chunk: ChunkSettings) -> Iterator[Chunk]:
    """Chunks of a text, block by block: blocks of about `TOKENIZE_BLOCK_CHARS` end at a
    paragraph (else line) break, where a passage would end anyway; a passage never spans
    two blocks (nor overlaps across one)."""
    ordinal, lines_before = 0, 0
    for offset, block in _blocks(text, TOKENIZE_BLOCK_CHARS):
        spans = encoder.token_spans([block])[0]
        for c in chunk_text(block, spans, chunk):
            yield Chunk(ordinal, offset + c.start, offset + c.end,
                        lines_before + c.line_start, lines_before + c.line_end, c.tokens,
                        c.text)
            ordinal += 1
        lines_before += block.count("\n")


def _blocks(text: str, size: int) -> list[tuple[int, str]]:
    """Cut text into pieces of about `size` characters at paragraph (else line) breaks."""
    out, start = [], 0
    while start < len(text):
        end = min(len(text), start + size)
        if end < len(text):
            cut = text.rfind("\n\n", start + size // 2, end)
            if cut < 0:
                cut = text.rfind("\n", start + size // 2, end)
            end = cut + 1 if cut >= 0 else end
        out.append((start, text[start:end]))
        start = end
    return out


def embedding_inputs(passages: list[NewPassage], encoder: TextEncoder,
                     recipe: str) -> list[str]:
    """What each passage is embedded as, under `recipe` (`headings` or `plain`)."""
    if recipe == "plain":
        return [p.text for p in passages]
    contexts = {p.headings for p in passages if p.headings}
    fitted = {h: _fit(h, encoder) for h in contexts}
    out = []
    for p in passages:
        room = encoder.max_seq_length - 2 - p.tokens - 2  # [CLS] [SEP], the blank line
        context = _within(fitted.get(p.headings, []), room)
        out.append(f"{context}\n\n{p.text}" if context else p.text)
    return out


def _fit(headings: tuple[str, ...], encoder: TextEncoder) -> list[tuple[str, int]]:
    """Candidate contexts, longest first, with their token counts: the whole path, then
    without its outer headings (the title and the innermost heading kept longest)."""
    path = list(headings)
    candidates = [path]
    while len(path) > 2:
        path = [path[0], *path[2:]]  # drop the outermost heading below the title
        candidates.append(path)
    candidates += [[headings[-1]]] if len(headings) > 1 else []
    texts = [CONTEXT_SEPARATOR.join(c) for c in candidates]
    counts = [n - 2 for n in encoder.count_tokens(texts)]
    return [(t, n) for t, n in zip(texts, counts) if n <= MAX_CONTEXT_TOKENS]


def _within(candidates: list[tuple[str, int]], room: int) -> str:
    return next((text for text, tokens in candidates if tokens <= room), "")
