"""Walking a folder and reading files: supported types, bad files reported, never fatal."""

import json
import os
import random

import pytest

from indexer.documents import (
    SkippedFile,
    UnreadableFile,
    decode_text,
    extract_text,
    html_to_text,
    read_bytes,
    walk_folder,
)


def make_pdf(text: str) -> bytes:
    """A minimal one-page PDF showing `text` in Helvetica, with a correct xref table."""
    content = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out, offsets = b"%PDF-1.4\n", []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, xref)
    return out


def write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    path.write_bytes(data)
    return path


def test_walk_finds_supported_files_recursively_and_skips_hidden(tmp_path):
    for name in ["a.txt", "b.md", "sub/c.rst", "sub/deeper/d.html", "e.htm", "f.pdf",
                 "notes.markdown"]:
        write(tmp_path / name, "text")
    write(tmp_path / "image.png", b"\x89PNG")
    write(tmp_path / ".hidden.txt", "secret")
    write(tmp_path / ".git" / "config.txt", "x")
    found, skipped = walk_folder(tmp_path)
    assert [f.relpath for f in found] == ["a.txt", "b.md", "e.htm", "f.pdf", "notes.markdown",
                                         "sub/c.rst", "sub/deeper/d.html"]
    assert skipped == []


def test_include_and_exclude_globs(tmp_path):
    for name in ["a.md", "b.txt", "drafts/c.md", "docs/d.md"]:
        write(tmp_path / name, "text")
    found, _ = walk_folder(tmp_path, include=["*.md"], exclude=["drafts/*"])
    assert [f.relpath for f in found] == ["a.md", "docs/d.md"]


def test_bad_files_are_reported_not_fatal(tmp_path):
    write(tmp_path / "good.txt", "fine text")
    write(tmp_path / "empty.txt", b"")
    write(tmp_path / "huge.txt", b"a" * (2 * 1024 * 1024 + 1))
    os.symlink(tmp_path / "loop.md", tmp_path / "loop.md")            # a link to itself
    os.symlink(tmp_path / "missing.txt", tmp_path / "broken.txt")
    os.symlink(tmp_path, tmp_path / "cycle")                           # a link to a folder
    os.mkfifo(tmp_path / "pipe.txt")
    found, skipped = walk_folder(tmp_path, max_bytes=2 * 1024 * 1024)
    assert [f.relpath for f in found] == ["good.txt"]
    reasons = {s.relpath: s.reason for s in skipped}
    assert reasons["empty.txt"] == "empty file"
    assert reasons["huge.txt"].startswith("larger than 2 MB")
    assert reasons["loop.md"] == "symbolic link loop"
    assert reasons["broken.txt"] == "broken symbolic link or file vanished"
    assert "links to folders are not followed" in reasons["cycle"]
    assert reasons["pipe.txt"] == "not a regular file"


def test_deep_nesting(tmp_path):
    deep = tmp_path.joinpath(*[f"d{i}" for i in range(60)])
    write(deep / "leaf.txt", "deep text")
    found, skipped = walk_folder(tmp_path)
    assert len(found) == 1 and found[0].relpath.endswith("d59/leaf.txt") and not skipped


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read files without permission")
def test_unreadable_file_is_reported(tmp_path):
    path = write(tmp_path / "secret.txt", "x")
    path.chmod(0)
    with pytest.raises(UnreadableFile, match="permission denied"):
        read_bytes(path)


def test_read_error_becomes_a_reason(tmp_path):
    with pytest.raises(UnreadableFile, match="broken symbolic link or file vanished"):
        read_bytes(tmp_path / "gone.txt")
    with pytest.raises(UnreadableFile, match="Is a directory"):
        read_bytes(tmp_path)


@pytest.mark.parametrize("data, expected", [
    ("héllo wörld".encode(), "héllo wörld"),
    ("\ufeffwith bom".encode("utf-8"), "with bom"),
    ("caf\xe9 cr\xe8me".encode("cp1252"), "café crème"),       # invalid UTF-8: cp1252
    ("smart \u201cquotes\u201d".encode("cp1252"), "smart \u201cquotes\u201d"),
    ("utf-16 text".encode("utf-16"), "utf-16 text"),
])
def test_decoding_with_fallback(data, expected):
    assert decode_text(data) == expected


@pytest.mark.parametrize("data", [b"\x00\x01\x02binary\x00", bytes(range(1, 32)) * 50,
                                  bytes(b for b in random.Random(0).randbytes(5000) if b)],
                         ids=["nul", "controls", "random-no-nul"])
def test_binary_content_is_refused(data):
    with pytest.raises(UnreadableFile, match="binary"):
        decode_text(data)


def test_html_keeps_visible_text_only():
    markup = ("<html><head><title>T</title><style>p {color: red}</style></head><body>"
              "<h1>Title</h1><p>First &amp; <b>bold</b> paragraph.</p>"
              "<script>var x = 1;</script><ul><li>one</li><li>two</li></ul></body></html>")
    text = html_to_text(markup)
    assert "color" not in text and "var x" not in text and "<" not in text
    assert "First & bold paragraph." in text
    assert "Title\n\nFirst" in text and "one\n\ntwo" in text


def test_pdf_text_is_extracted():
    text = extract_text(make_pdf("Hello from a PDF file"), ".pdf")
    assert "Hello from a PDF file" in text


def test_broken_pdf_and_empty_text_are_reasons():
    with pytest.raises(UnreadableFile, match="PDF"):
        extract_text(b"%PDF-1.4 this is not really a pdf", ".pdf")
    with pytest.raises(UnreadableFile, match="no text"):
        extract_text(b"   \n\n  ", ".txt")
    with pytest.raises(UnreadableFile, match="no text"):
        extract_text(b"<html><script>only()</script></html>", ".html")


def test_crlf_is_normalised():
    assert extract_text(b"one\r\ntwo\rthree", ".txt") == "one\ntwo\nthree"


def test_skipped_file_is_a_value():
    assert SkippedFile("a", "b") == SkippedFile("a", "b")


def test_a_file_name_that_is_not_utf8_is_indexed_under_an_escaped_name(tmp_path):
    """Issue 17: one such name stopped the whole run with UnicodeEncodeError."""
    folder = tmp_path / "d"
    folder.mkdir()
    with open(os.fsencode(folder) + b"/bad_\xff.txt", "wb") as handle:
        handle.write(b"text\n")
    write(folder / "good.txt", "fine")
    found, skipped = walk_folder(folder)
    assert [f.relpath for f in found] == ["bad_\\xff.txt", "good.txt"] and not skipped
    assert read_bytes(found[0].path) == b"text\n"  # read by its real name
    json.dumps([f.relpath for f in found])  # storable, printable


def test_one_stray_byte_does_not_garble_a_utf8_file():
    """Issue 17: a stray \\xff made the whole file decode as cp1252 ("NaÃ¯ve cafÃ©")."""
    data = ("Naïve café. " * 300).encode() + b"\xff" + " Déjà vu.".encode()
    text = decode_text(data)
    assert text.startswith("Naïve café.") and text.endswith("\ufffd Déjà vu.")
