"""Token-bounded chunking: limits, offsets, line numbers, preferred breaks, overlap."""

import re

import pytest

from indexer.chunking import ChunkSettings, chunk_text
from indexer.errors import IndexerError


def word_spans(text):
    """A whitespace tokenizer: one token per run of non-space characters."""
    return [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]


def paragraphs(n_paragraphs, sentences=4, words=8):
    out = []
    for p in range(n_paragraphs):
        sents = [" ".join(f"p{p}s{s}w{w}" for w in range(words)) + "." for s in range(sentences)]
        out.append(" ".join(sents))
    return "\n\n".join(out)


def test_short_text_is_one_passage():
    text = "Just one short line."
    [chunk] = chunk_text(text, word_spans(text), ChunkSettings(max_tokens=50))
    assert (chunk.ordinal, chunk.start, chunk.end, chunk.text) == (0, 0, len(text), text)
    assert (chunk.line_start, chunk.line_end, chunk.tokens) == (1, 1, 4)


def test_empty_text_has_no_passages():
    assert chunk_text("", [], ChunkSettings()) == []


@pytest.mark.parametrize("max_tokens, overlap", [(20, 0), (40, 8), (64, 16), (100, 50)])
def test_limits_offsets_order_and_coverage(max_tokens, overlap):
    text = paragraphs(12)
    spans = word_spans(text)
    chunks = chunk_text(text, spans, ChunkSettings(max_tokens=max_tokens, overlap_tokens=overlap))
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    covered = set()
    for chunk in chunks:
        assert chunk.text == text[chunk.start:chunk.end]
        assert chunk.tokens == len(word_spans(chunk.text)) <= max_tokens
        assert chunk.line_start == text.count("\n", 0, chunk.start) + 1
        assert chunk.line_end == text.count("\n", 0, chunk.end) + 1
        covered.update(i for i, (s, e) in enumerate(spans) if chunk.start <= s and e <= chunk.end)
    assert covered == set(range(len(spans)))  # no token is lost
    for before, after in zip(chunks, chunks[1:]):
        assert after.start > before.start
        shared = len(word_spans(text[after.start:before.end])) if after.start < before.end else 0
        assert shared <= overlap


def test_breaks_at_paragraphs_when_possible():
    text = paragraphs(6, sentences=2, words=8)  # 16 tokens per paragraph
    chunks = chunk_text(text, word_spans(text), ChunkSettings(max_tokens=40, overlap_tokens=0))
    for chunk in chunks:
        assert chunk.text.startswith("p") and chunk.text.endswith(".")
        assert text[chunk.end:chunk.end + 2] in ("\n\n", "")  # ends at a paragraph break
    assert len(chunks) == 3


def test_falls_back_to_sentence_breaks_in_a_long_paragraph():
    text = paragraphs(1, sentences=10, words=10)  # one paragraph, 100 tokens
    chunks = chunk_text(text, word_spans(text), ChunkSettings(max_tokens=35, overlap_tokens=0))
    assert all(c.text.endswith(".") for c in chunks)
    assert all(c.tokens == 30 for c in chunks[:-1])  # three whole sentences each


def test_overlap_starts_at_a_sentence_when_one_is_in_reach():
    text = paragraphs(1, sentences=10, words=5)
    chunks = chunk_text(text, word_spans(text), ChunkSettings(max_tokens=20, overlap_tokens=6))
    for chunk in chunks[1:]:
        assert re.match(r"p0s\d+w0 ", chunk.text), chunk.text[:20]


def test_headings_stay_with_the_text_below():
    words = " ".join(f"w{i}" for i in range(20)) + "."
    for heading in ("## Section two", "Section two\n-----------"):
        text = f"# Title\n\n{words}\n\n{heading}\n\n{words}"
        chunks = chunk_text(text, word_spans(text), ChunkSettings(max_tokens=34, overlap_tokens=0))
        assert chunks[0].text.endswith("w19.")
        assert chunks[1].text.startswith(heading)


def test_a_word_longer_than_the_budget_is_cut_inside():
    text = "short " + "x" * 50 + " end"
    spans = [(0, 5)] + [(6 + i, 7 + i) for i in range(50)] + [(57, 60)]  # 1 token per char
    chunks = chunk_text(text, spans, ChunkSettings(max_tokens=20, overlap_tokens=0))
    assert all(c.tokens <= 20 for c in chunks)
    assert "".join(c.text for c in chunks[1:-1]).startswith("x")


def test_real_tokenizer_passages_never_exceed_the_budget(encoder, sample_docs):
    settings = ChunkSettings(max_tokens=48, overlap_tokens=12)
    for path in sorted(sample_docs.rglob("*.*")):
        text = path.read_text(encoding="utf-8")
        chunks = chunk_text(text, encoder.token_spans([text])[0], settings)
        counts = encoder.count_tokens([c.text for c in chunks])
        assert max(counts) <= settings.max_tokens + 2, path  # +[CLS] +[SEP]
        assert [n - 2 for n in counts] == [c.tokens for c in chunks]


@pytest.mark.parametrize("max_tokens, overlap, error", [
    (4, 0, "between 8 and 254"), (300, 0, "between 8 and 254"), (100, 60, "Overlap"),
])
def test_settings_are_validated(max_tokens, overlap, error):
    with pytest.raises(IndexerError, match=error):
        ChunkSettings(max_tokens, overlap).validate(256)
