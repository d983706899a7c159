"""Issue 17, the indexer side: hostile file names, damaged vector files, damaged and
truncated databases, read-only indexes — never a traceback, never a silent wrong answer,
and `bertsearch check --repair` mends what can be mended."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import REPO, write_corpus
from fastapi.testclient import TestClient
from test_build import assert_consistent

from cli import main
from indexer import Index, IndexCorruptError, IndexReadOnlyError, build_index
from indexer.check import check_index
from indexer.vectors import VECTORS_NAME
from server import ServerSettings, create_app


@pytest.fixture
def built(tmp_path, encoder):
    docs = write_corpus(tmp_path / "docs", 30, paragraphs=5)
    build_index(docs, tmp_path / "idx", encoder)
    return docs, tmp_path / "idx"


def top_ids(index_dir, queries=("river engine", "violin harbour", "falcon thunder")):
    with Index.open(index_dir) as index:
        return [[h.passage_id for h in index.search(q, 5, mode="dense")] for q in queries]


def test_a_file_name_that_is_not_utf8_is_indexed_and_shown_escaped(tmp_path, encoder):
    docs = tmp_path / "d"
    docs.mkdir()
    with open(os.fsencode(docs) + b"/bad_\xff.txt", "wb") as handle:
        handle.write(b"Glaciers carve valleys over thousands of years.\n")
    (docs / "good.txt").write_text("Volcanoes erupt lava.")
    result = CliRunner().invoke(main, ["index", str(docs), "--index", str(tmp_path / "idx")])
    assert result.exit_code == 0 and "2 added" in result.output, result.output
    again = CliRunner().invoke(main, ["index", str(docs), "--index", str(tmp_path / "idx")])
    assert "2 unchanged" in again.output  # the escaped name maps to the same file again
    found = CliRunner().invoke(main, ["query", "glaciers", "--index", str(tmp_path / "idx"),
                                      "-k", "1"])
    assert "bad_\\xff.txt" in found.output


def test_damaged_vector_data_is_detected_and_rebuilt(built):
    """4 KB of random bytes inside the vector data: the file's checksum no longer matches,
    so it is rebuilt from SQLite instead of served (it used to give a 4.5e37 top hit)."""
    _, idx = built
    clean = top_ids(idx)
    path = idx / VECTORS_NAME
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2:len(raw) // 2 + 4096] = np.random.default_rng(0).bytes(4096)
    path.write_bytes(bytes(raw))
    report = check_index(idx)
    assert any("vector file" in p.lower() and "damaged" in p for p in report.problems)
    assert top_ids(idx) == clean  # rebuilt on open, not served
    assert check_index(idx).problems == []  # and saved again
    for header in (b"{}", b"[1]"):
        from indexer.vectors import MAGIC

        end = path.read_bytes().index(b"\n", len(MAGIC))
        path.write_bytes(MAGIC + header + path.read_bytes()[end:])
        assert top_ids(idx) == clean
    assert_consistent(idx)


def damage_pages(db, size=8192):
    raw = bytearray(db.read_bytes())
    start = len(raw) // 2
    raw[start:start + size] = np.random.default_rng(1).bytes(size)
    db.write_bytes(bytes(raw))


def test_damaged_database_pages_are_a_clear_error_and_check_repairs(built, encoder):
    docs, idx = built
    db = idx / "passages.db"
    with Index.open(idx) as index:  # merge the write-ahead log into the file first
        index.store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    damage_pages(db)
    with pytest.raises(IndexCorruptError, match="damaged"):
        build_index(docs, idx, encoder)  # it used to say "unchanged"
    with TestClient(create_app(ServerSettings(index_dir=str(idx)), encoder=encoder)) as c:
        health = c.get("/health")
        assert health.status_code == 503 and "damaged" in health.json()["detail"]
        for query in ("river", "violin harbour", "thunder"):
            response = c.post("/search", json={"query": query, "mode": "keyword"})
            assert response.status_code in (200, 503), response.text
    result = CliRunner().invoke(main, ["check", "--index", str(idx)])
    assert result.exit_code == 1 and "problem: database pages" in result.output
    repaired = CliRunner().invoke(main, ["check", "--index", str(idx), "--repair"])
    assert repaired.exit_code == 0, repaired.output
    assert "database salvaged" in repaired.output
    assert (idx / "passages.db.damaged").exists()
    assert check_index(idx).problems == []
    report = build_index(docs, idx, encoder)  # dropped files come back
    assert report.added + report.unchanged == 30
    assert_consistent(idx)


def test_a_truncated_database_is_reported_not_taken_for_empty(built):
    _, idx = built
    (idx / "passages.db").write_bytes(b"")
    for path in idx.glob("passages.db-*"):
        path.unlink()
    with pytest.raises(IndexCorruptError, match="0 bytes"):
        Index.open(idx)
    result = CliRunner().invoke(main, ["query", "river", "--index", str(idx)])
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert "truncated" in result.output
    repaired = CliRunner().invoke(main, ["check", "--index", str(idx), "--repair"])
    assert repaired.exit_code == 0 and "start it over" in repaired.output


def test_damaged_stored_vectors_are_recomputed(built):
    _, idx = built
    clean = top_ids(idx)
    with Index.open(idx) as index:
        victim = int(index.store.passage_ids()[3])
        index.store.db.execute("UPDATE passages SET vector = ? WHERE id = ?",
                               [np.full(384, 1e37, np.float32).tobytes(), victim])
    assert any("stored vectors are damaged" in p for p in check_index(idx).problems)
    report = check_index(idx, repair=True)
    assert any("recomputed" in r for r in report.repairs) and report.ok
    assert top_ids(idx) == clean and check_index(idx).problems == []


def test_keyword_index_out_of_step_is_rebuilt(built):
    _, idx = built
    with Index.open(idx) as index:
        index.store.db.execute("INSERT INTO passages_fts(passages_fts, rowid, text) "
                               "VALUES ('delete', (SELECT min(id) FROM passages), "
                               "(SELECT text FROM passages ORDER BY id LIMIT 1))")
    assert any("keyword index" in p for p in check_index(idx).problems)
    assert check_index(idx, repair=True).ok and check_index(idx).problems == []


READ_ONLY = """
import sys
from click.testing import CliRunner
from cli import main
from indexer import Index
idx = sys.argv[1]
with Index.open(idx, read_only=True) as index:
    print("hits", len(index.search("river engine", 3)))
result = CliRunner().invoke(main, ["query", "river", "--index", idx, "-k", "2"])
print("query", result.exit_code)
result = CliRunner().invoke(main, ["index", sys.argv[2], "--index", idx])
print("index", result.exit_code, result.output.strip())
result = CliRunner().invoke(main, ["check", "--index", idx])
print("check", result.exit_code)
"""


def test_a_read_only_index_answers_and_refuses_writes_clearly(built):
    """A read-only bind mount in a private mount namespace (root ignores chmod)."""
    docs, idx = built
    if shutil.which("unshare") is None:
        pytest.skip("unshare is not available")
    script = (f"mount --bind {idx} {idx} && mount -o remount,bind,ro {idx} && "
              f"{sys.executable} -c '{READ_ONLY}' {idx} {docs}")
    proc = subprocess.run(["unshare", "-m", "sh", "-c", script], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    if "Operation not permitted" in proc.stderr or "permission denied" in proc.stderr.lower():
        pytest.skip(f"no private mount namespace here: {proc.stderr.strip()[:200]}")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "hits 3" in lines and "query 0" in lines and "check 0" in lines, proc.stdout
    index_line = next(line for line in lines if line.startswith("index"))
    assert index_line.startswith("index 1 Error: The index at") and \
        "read-only file system" in index_line
    assert "Traceback" not in proc.stdout + proc.stderr


def test_read_only_opening_never_writes(built):
    _, idx = built
    before = {p.name: p.stat().st_mtime_ns for p in idx.iterdir()}
    with Index.open(idx, read_only=True) as index:
        assert len(index.search("river", 3)) == 3
        with pytest.raises(IndexReadOnlyError):
            index.upsert("x", "text")
    assert {p.name: p.stat().st_mtime_ns for p in idx.iterdir()
            if p.name in before and not p.name.endswith("-shm")} == {
        k: v for k, v in before.items() if not k.endswith("-shm")}
