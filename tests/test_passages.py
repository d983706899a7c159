"""Issue 22: passages that know where they are — heading paths from each format, embedded
with the passage while the stored text stays its own; the recipe recorded and a change of
it re-embedding; documents ranked as units."""

import io

import numpy as np
import pytest

from indexer import ChunkSettings, Index, build_index
from indexer.documents import extract_document
from indexer.keywords import identifier_like
from indexer.passages import document_passages, embedding_inputs
from indexer.structure import heading_path, markdown_sections, plain_title, rst_sections

MARKDOWN = """---
title: Front matter title
---
# Guide

Intro text.

## Install

```
# not a heading: inside a fence
```

### From source

Build it.

Setext title
============

Text under setext.
"""

RST = """=====
Title
=====

Intro.

Section one
-----------

Text one.

Sub section
~~~~~~~~~~~

Text sub.

Section two
-----------

Text two.
"""

HTML = """<html><head><title>Page title</title></head><body>
<h1>Page title</h1><p>Intro.</p>
<h2>Part A</h2><p>About A.</p><h3>Detail</h3><p>Deep.</p>
<h2>Part B</h2><p>About B.</p></body></html>"""


def path_at(document, needle):
    return heading_path(document.sections, document.text.index(needle), document.title)


def test_markdown_headings_front_matter_and_fences():
    document = extract_document(MARKDOWN.encode(), ".md")
    assert document.title == "Front matter title"
    assert [(s.level, s.title) for s in markdown_sections(document.text)] == [
        (1, "Guide"), (2, "Install"), (3, "From source"), (1, "Setext title")]
    assert path_at(document, "Build it.") == ("Front matter title", "Guide", "Install",
                                              "From source")
    assert path_at(document, "Text under setext.") == ("Front matter title", "Setext title")
    assert document.text.count("\n") == MARKDOWN.count("\n")  # line numbers kept


def test_rst_levels_follow_the_order_styles_appear():
    document = extract_document(RST.encode(), ".rst")
    assert [(s.level, s.title) for s in rst_sections(document.text)] == [
        (1, "Title"), (2, "Section one"), (3, "Sub section"), (2, "Section two")]
    assert path_at(document, "Text sub.") == ("Title", "Section one", "Sub section")
    assert path_at(document, "Text two.") == ("Title", "Section two")


def test_html_headings_and_a_title_not_repeated_in_the_text():
    document = extract_document(HTML.encode(), ".html")
    assert document.title == "Page title" and document.text.count("Page title") == 1
    assert path_at(document, "Deep.") == ("Page title", "Part A", "Detail")
    assert path_at(document, "About B.") == ("Page title", "Part B")


def test_plain_text_title_is_a_short_first_line_before_a_blank_line():
    assert plain_title("Keeping a bicycle running\n\nCheck the tyres.") == \
        "Keeping a bicycle running"
    assert plain_title("A whole sentence that ends.\n\nMore.") is None
    assert plain_title("No blank line after\nthe first line.") is None


def test_pdf_outline_gives_sections(tmp_path):
    pypdf = pytest.importorskip("pypdf")
    writer = pypdf.PdfWriter()
    for _ in range(2):
        writer.add_blank_page(200, 200)
    writer.add_outline_item(title="Chapter one", page_number=0)
    writer.add_outline_item(title="Chapter two", page_number=1)
    writer.add_metadata({"/Title": "A PDF"})
    buffer = io.BytesIO()
    writer.write(buffer)
    from indexer.documents import _pdf_outline

    reader = pypdf.PdfReader(io.BytesIO(buffer.getvalue()))
    sections = _pdf_outline(reader, {0: 0, 1: 50})
    assert [(s.start, s.title) for s in sections] == [(0, "Chapter one"), (50, "Chapter two")]


def test_the_embedded_input_holds_the_headings_the_stored_text_does_not(encoder):
    document = extract_document(RST.encode(), ".rst")
    passages = document_passages(document, encoder, ChunkSettings(12, 0))
    sub = next(p for p in passages if "Text sub." in p.text)
    assert sub.text == document.text[sub.start:sub.end]  # the passage's own text, offsets
    assert sub.headings == ("Title", "Section one", "Sub section")
    [headed] = embedding_inputs([sub], encoder, "headings")
    [plain] = embedding_inputs([sub], encoder, "plain")
    assert headed == "Title > Section one > Sub section\n\n" + sub.text and plain == sub.text


def test_context_never_takes_the_passages_room(encoder):
    """A full-size passage leaves no room: it is embedded alone, never truncated."""
    document = extract_document(("# Title\n\n" + "word " * 400).encode(), ".md")
    passages = document_passages(document, encoder, ChunkSettings(254, 0))
    full = max(passages, key=lambda p: p.tokens)
    assert full.tokens == 254
    assert embedding_inputs([full], encoder, "headings") == [full.text]


def test_changing_the_recipe_re_embeds_with_a_message(tmp_path, sample_docs, encoder):
    from click.testing import CliRunner

    from cli import main

    build_index(sample_docs, tmp_path / "idx", encoder)  # a new index: the default recipe
    with Index.open(tmp_path / "idx") as index:
        assert index.settings.context == "plain"
    again = build_index(sample_docs, tmp_path / "idx", encoder, context="plain")
    assert again.passages_written == 0 and again.recipe_change is None
    result = CliRunner().invoke(main, ["index", str(sample_docs), "--index",
                                       str(tmp_path / "idx"), "--context", "headings"])
    assert result.exit_code == 0, result.output
    assert "passage recipe changed (plain -> headings)" in result.output
    assert "0 passages written" not in result.output
    kept = build_index(sample_docs, tmp_path / "idx", encoder)  # not asked: kept
    assert kept.recipe_change is None and kept.passages_written == 0
    with Index.open(tmp_path / "idx") as index:
        assert index.settings.context == "headings"
        row = index.store.passages([int(index.store.passage_ids()[0])])
        stored = next(iter(row.values()))
        _, vector = next(index.store.stored_vectors(np.array([stored.id])))
        [expected] = embedding_inputs(
            [p for p in document_passages(_doc(sample_docs, stored.path), encoder,
                                          index.settings.chunk) if p.start == stored.start],
            encoder, "headings")
        assert np.allclose(vector[0], encoder.encode([expected])[0], atol=1e-5)


def _doc(root, path):
    return extract_document((root / path).read_bytes(), (root / path).suffix)


def test_documents_come_one_hit_each_in_the_order_of_their_best_passages(tmp_path, encoder):
    with Index.open(tmp_path / "idx", encoder=encoder, create=True) as index:
        for i in range(6):
            index.upsert(f"doc{i}", "\n\n".join(
                f"Paragraph {p} of document {i}: rivers, mountains and engines number {p}."
                for p in range(8)))
        passages = index.search("rivers and engines", 60, mode="dense", group="passages")
        documents = index.search("rivers and engines", 6, mode="dense", group="documents")
        order = list(dict.fromkeys(h.document_id for h in passages))
        assert [h.document_id for h in documents] == order  # one hit per document
        first = {h.document_id: h for h in reversed(passages)}
        assert all(h.passage_id == first[h.document_id].passage_id for h in documents)
        assert all(c.document_id == h.document_id for h in documents for c in h.context)
        hybrid = index.search("rivers and engines", 6)
        assert len({h.document_id for h in hybrid}) == len(hybrid) == 6


def test_documents_mode_fills_k_when_few_documents_hold_the_top_passages(tmp_path, encoder):
    """Two long documents own every top passage; grouping must look deeper, not return 2."""
    with Index.open(tmp_path / "idx", encoder=encoder, create=True,
                    chunk=ChunkSettings(16, 0)) as index:
        for i in range(2):
            index.upsert(f"long{i}", "\n\n".join(
                f"Rivers and engines, part {p} of long document {i}, about rivers and engines."
                for p in range(80)))
        for i in range(12):
            index.upsert(f"short{i}", f"A note on gardening number {i}: tomatoes and basil.",
                         {"kind": "short" if i % 2 else "other"})
        top = index.search("rivers and engines", 100, mode="dense", group="passages")
        assert {h.document_id for h in top} == {"long0", "long1"}  # they fill a first fetch
        for mode in ("dense", "hybrid", "keyword"):
            hits = index.search("rivers and engines", 10, mode=mode)
            ids = [h.document_id for h in hits]
            assert len(ids) == len(set(ids)) == (10 if mode != "keyword" else len(ids)), mode
            assert {"long0", "long1"} <= set(ids[:2] if mode != "keyword" else ids)
        filtered = index.search("rivers and engines", 10, mode="dense",
                                filter={"kind": "short"})
        assert {h.document_id for h in filtered} == {f"short{i}" for i in range(1, 12, 2)}


@pytest.mark.parametrize("query, expected", [
    ("CONFIG_DEBUG_FS", True), ("EADDRINUSE", True), ("--chunk-tokens", True),
    ("os.path.join", True), ("PyErr_Print", True), ("kmalloc_array", True),
    ("How do I install Debian from CD-ROMs?", False), ("what is a tide pool", False),
    ("sharpen knife", False),
])
def test_identifier_like_queries(query, expected):
    assert identifier_like(query) is expected
