"""Issue 17: one large file is no longer one batch. Its passages are cut as they are
embedded and committed in parts, so memory stays flat in the file's size and a kill keeps
the parts done; the next run carries on from them."""

import os
import signal
import subprocess
import sys
import time

from conftest import REPO
from test_build import assert_consistent

from indexer import ChunkSettings, Index, build_index
from indexer.passages import chunk_document


def big_text(paragraphs: int) -> str:
    return "\n\n".join(f"Paragraph {i} tells of river {i % 97} and mountain {i % 89}; "
                       f"the engine hums while the violin plays tune {i}."
                       for i in range(paragraphs))


def test_streamed_passages_equal_chunking_block_by_block(tmp_path, encoder):
    """A long file committed in parts stores the same passages as chunking it whole, in
    order, with offsets and line numbers of the file."""
    docs = tmp_path / "docs"
    docs.mkdir()
    text = big_text(3000)  # ~350,000 characters: streamed, several blocks
    (docs / "long.txt").write_text(text)
    report = build_index(docs, tmp_path / "idx", encoder, batch_passages=64)
    expected = chunk_document(text, encoder, ChunkSettings())
    assert report.passages_written == len(expected) and report.added == 1
    with Index.open(tmp_path / "idx") as index:
        doc_id = next(index.store.iter_documents())[0]
        rows = index.store.document_passages(doc_id)
        assert [(r.ordinal, r.start, r.end, r.line_start, r.text) for r in rows] == [
            (c.ordinal, c.start, c.end, c.line_start, c.text) for c in expected]
        assert all(text[r.start:r.end] == r.text for r in rows)
        assert index.store.stored_document(str(docs.resolve() / "long.txt")).content_hash \
            == index.store.document(str(docs.resolve() / "long.txt")).content_hash
    assert_consistent(tmp_path / "idx")


INDEXER = [sys.executable, "-m", "cli", "index", "{docs}", "--index", "{idx}", "--model",
           "{model}", "--chunk-tokens", "100", "--batch-size", "32", "--quiet"]


def run_indexer(docs, idx, model, **popen):
    args = [a.format(docs=docs, idx=idx, model=model) for a in INDEXER]
    return subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            **popen)


def stored_passages(idx) -> int:
    import sqlite3

    try:
        with sqlite3.connect(f"file:{idx / 'passages.db'}?mode=ro", uri=True) as conn:
            return conn.execute("SELECT count(*) FROM passages").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_a_kill_keeps_the_parts_done_and_the_rerun_carries_on(tmp_path, tiny_model_dir):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "long.txt").write_text(big_text(6000))
    idx = tmp_path / "idx"
    proc = run_indexer(docs, idx, tiny_model_dir)
    deadline = time.monotonic() + 300
    while stored_passages(idx) < 200 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    kept = stored_passages(idx)
    assert kept >= 200  # committed in parts while the file was being embedded
    rerun = run_indexer(docs, idx, tiny_model_dir)
    out, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err.decode()
    clean = tmp_path / "clean"
    fresh = run_indexer(docs, clean, tiny_model_dir)
    assert fresh.wait(timeout=600) == 0
    with Index.open(idx) as resumed, Index.open(clean) as whole:
        assert resumed.store.counts() == whole.store.counts()
        rows = lambda ix: [(r.ordinal, r.start, r.text) for r in ix.store.document_passages(  # noqa: E731
            next(ix.store.iter_documents())[0])]
        assert rows(resumed) == rows(whole)
        _, root, path = next(resumed.store.iter_documents())
        key = os.path.join(root, path)  # both indexed the same folder
        assert resumed.store.stored_document(key).content_hash == \
            whole.store.stored_document(key).content_hash  # finished: no partial marker
    assert_consistent(idx)


PEAK = """
import resource, subprocess, sys
proc = subprocess.run(sys.argv[1:], capture_output=True)
assert proc.returncode == 0, proc.stderr.decode()[-2000:]
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)
"""


def test_memory_stays_flat_in_the_file_size(tmp_path, tiny_model_dir):
    """Peak RSS indexing a 2 MB file and an 8 MB one differ by far less than the files'
    text would take as held passages and tokens (it grew ~30 MB per MB before)."""
    peaks = {}
    for megabytes in (2, 8):
        docs = tmp_path / f"docs{megabytes}"
        docs.mkdir()
        text = big_text(200)
        (docs / "big.txt").write_text((text + "\n\n") * (megabytes * 1_000_000 // len(text)))
        args = [a.format(docs=docs, idx=tmp_path / f"idx{megabytes}", model=tiny_model_dir)
                for a in INDEXER]
        out = subprocess.run([sys.executable, "-c", PEAK, *args], cwd=REPO,
                             capture_output=True, text=True, timeout=900)
        assert out.returncode == 0, out.stderr[-2000:]
        peaks[megabytes] = int(out.stdout.split()[-1])
    assert peaks[8] - peaks[2] < 150, peaks  # MB
