"""kill -9 a real `bertsearch index` at several points: nothing committed is lost, the next
open finds a consistent index, and a re-run completes the sync."""

import os
import signal
import sqlite3
import subprocess
import sys
import time

from conftest import REPO, write_corpus
from test_build import assert_consistent

from indexer import Index, IndexNotFoundError, build_index

N_DOCS = 60


def committed_documents(db) -> int:
    if not db.exists():
        return -1
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            return conn.execute("SELECT count(*) FROM documents").fetchone()[0]
    except sqlite3.Error:  # not created yet
        return -1


def start_index(docs, idx):
    return subprocess.Popen(
        [sys.executable, "-m", "cli", "index", str(docs), "--index", str(idx),
         "--batch-size", "8", "--quiet"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def kill_when(proc, ready, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if ready():
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait(timeout=30)
    return proc.returncode


def test_kill_9_at_several_points(tmp_path, encoder):
    docs = write_corpus(tmp_path / "docs", N_DOCS, paragraphs=6)
    idx = tmp_path / "idx"
    db = idx / "passages.db"

    def after_commits(n, delay=0.0):
        def ready():
            if committed_documents(db) >= start + n:
                time.sleep(delay)
                return True
            return False
        return ready

    kill_points = [
        ("as soon as the database exists", lambda: db.exists()),
        ("right after the first commit", after_commits(1)),
        ("mid-batch, a moment after a commit", after_commits(3, delay=0.3)),
        ("well into the run", after_commits(12)),
    ]
    killed, partial = 0, []
    for name, ready in kill_points:
        start = max(committed_documents(db), 0)
        code = kill_when(start_index(docs, idx), ready)
        if code == -signal.SIGKILL:
            killed += 1
            partial.append(committed_documents(db))
        if db.exists():
            try:
                assert_consistent(idx)  # a fresh open catches FAISS up
            except IndexNotFoundError as exc:  # killed before the settings were written
                assert "empty" in str(exc) and committed_documents(db) <= 0, name
    assert killed >= 3, "the runs ended before they could be killed"
    assert any(0 < n < N_DOCS for n in partial), partial  # some kills left a half-done sync
    print("documents committed at each kill:", partial)

    before = committed_documents(db)
    proc = start_index(docs, idx)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()
    assert f"{N_DOCS - before} added" in out.decode()

    # the result equals a clean, uninterrupted build
    clean = tmp_path / "clean"
    build_index(docs, clean, encoder, batch_passages=8)
    with Index.open(idx) as crashed, Index.open(clean) as fresh:
        assert crashed.store.counts() == fresh.store.counts() == (N_DOCS, crashed.store.counts()[1])
        rows = lambda ix: sorted(  # noqa: E731
            (r.path, r.ordinal, r.text)
            for r in ix.store.passages(list(ix.store.passage_ids())).values())
        assert rows(crashed) == rows(fresh)
        assert len(crashed) == len(fresh)
    assert_consistent(idx)


UPSERTER = """
import sys
from indexer import Index
with Index.open(sys.argv[1], create=True) as index:
    for i in range(10_000):
        index.upsert(f"doc-{i % 40}", f"Document {i} about topic {i % 7}. " * (1 + i % 5),
                     {"round": i})
        print(i, flush=True)
"""


def test_kill_9_mid_upsert_leaves_a_consistent_index(tmp_path):
    """Upserts replacing documents again and again, killed at several points: passages,
    vectors and keyword index always agree, and each document is whole (one version)."""
    idx = tmp_path / "idx"
    for stop_after in (3, 17, 41):
        proc = subprocess.Popen([sys.executable, "-c", UPSERTER, str(idx)], cwd=REPO,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        done = 0
        while done < stop_after and proc.poll() is None:
            line = proc.stdout.readline()
            done = int(line) if line.strip() else done
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        assert_consistent(idx)
        with Index.open(idx) as index:
            for doc_id, _, key in index.store.iter_documents():
                record = index.store.document(key)
                rows = index.store.document_passages(doc_id)
                assert len(rows) == record.passages >= 1
                assert {r.text.split(" ")[1] for r in rows} == {
                    record.text.split(" ")[1]}  # all passages of one version
