"""The library on both stores: `build_index` and `Index` with a location that is a folder
(SQLite + FAISS) or a PostgreSQL URL, the real model, real subprocesses. Folder sync embeds
only what changed (the encoder's calls are counted), the documents API, search modes with
filters and highlights, `kill -9` mid-sync then a re-run equals a clean build, and two
indexers (and an upserter) writing one index at once."""

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO, CountingEncoder, write_corpus

from indexer import Index, IndexerError, build_index
from indexer.store import open_store


@pytest.fixture
def docs(tmp_path, sample_docs):
    return shutil.copytree(sample_docs, tmp_path / "docs")


def test_sync_embeds_only_what_changed_and_search_finds_it(docs, index_location, encoder):
    counting = CountingEncoder(encoder)
    first = build_index(docs, index_location, counting)
    assert first.added == 6 and counting.texts == first.passages_written
    before = counting.texts
    again = build_index(docs, index_location, counting)
    assert (again.unchanged, again.passages_written, counting.texts) == (6, 0, before)

    (docs / "tide-pools.md").write_text("# Tide pools\n\nBarnacles filter plankton at high tide.")
    (docs / "bicycle-maintenance.txt").unlink()
    (docs / "new.md").write_text("Volcanoes erupt molten rock called lava.")
    touched = docs / "ml" / "vector-search.txt"
    touched.write_text(touched.read_text())  # new mtime, same content: nothing to embed
    report = build_index(docs, index_location, counting)
    assert (report.added, report.changed, report.removed, report.unchanged) == (1, 1, 1, 4)
    assert report.passages_written == 2 and counting.texts == before + 2

    with Index.open(index_location, encoder=encoder) as index:
        assert index.stats()["store"] in ("sqlite", "postgresql")
        assert index.search("lava from a volcano", 1)[0].path == "new.md"
        assert index.search("barnacles", 1)[0].text.startswith("# Tide pools")
        assert "bicycle-maintenance.txt" not in {h.path for h in index.search("bicycle", 10)}
        [hit] = index.search("sharpen a knife", 1, mode="dense")
        assert hit.path == "kitchen/knife-care.html"
        keyword = index.search("sourdough starter", 3, mode="keyword", group="passages")
        assert keyword[0].path == "kitchen/sourdough.rst"
        assert {keyword[0].text[s:e].lower() for s, e in keyword[0].highlights} >= {
            "sourdough", "starter"}
        filtered = index.search("knife", 5, filter={"path": {"$glob": "ml/*"}})
        assert filtered and all(h.path.startswith("ml/") for h in filtered)
        assert index.search("knife", 3, filter={"ext": ".nothing"}) == []


def test_documents_api_embeds_only_new_text(index_location, encoder):
    counting = CountingEncoder(encoder)
    text = "# Printer jams\n\nThe printer on floor 3 jams when the tray is overfilled."
    with Index.open(index_location, encoder=counting, create=True) as index:
        assert index.upsert("ticket-42", text, {"year": 2025}).action == "created"
        assert counting.texts == 1
        assert index.upsert("ticket-42", text, {"year": 2025}).action == "unchanged"
        assert index.upsert("ticket-42", text, {"year": 2026}).action == "metadata"
        assert counting.texts == 1
        document = index.get("ticket-42")
        assert (document.text, document.metadata, document.origin) == (text, {"year": 2026},
                                                                        "api")
        [hit] = index.search("paper stuck in the printer", 1)
        assert (hit.document_id, hit.headings) == ("ticket-42", ("Printer jams",))
        assert index.search("printer", 1, filter={"year": {"$gte": 2026}})
        assert index.search("printer", 1, filter={"year": {"$gte": "2026"}}) == []
        before = counting.texts  # searches embed their queries
        assert index.upsert("ticket-42", text + " Use the lower tray.").action == "replaced"
        assert counting.texts == before + 1
        assert index.delete("ticket-42") and index.get("ticket-42") is None
        assert index.search("printer", 5) == []


def committed_documents(location) -> int:
    """Documents a concurrent reader sees in the index now (-1: none there yet)."""
    try:
        with open_store(location, read_only=True) as store:
            return store.counts()[0]
    except IndexerError:
        return -1


def index_command(folder, location, *extra):
    return subprocess.Popen(
        [sys.executable, "-m", "cli", "index", str(folder), "--index", str(location),
         "--batch-size", "8", "--quiet", *extra],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def passage_rows(location) -> list:
    """Every passage as (path, ordinal, text), sorted, and (documents, passages)."""
    with open_store(location, read_only=True) as store:
        rows = []
        for doc_id, _, _ in store.iter_documents():
            rows += [(r.path, r.ordinal, r.text) for r in store.document_passages(doc_id)]
        return sorted(rows), store.counts()


def test_kill_9_mid_sync_then_a_rerun_equals_a_clean_build(tmp_path, index_location,
                                                           new_location, encoder):
    docs = write_corpus(tmp_path / "docs", 24, paragraphs=5)
    killed = []
    for wanted in (1, 8):  # killed after the first commit, then well into the run
        proc = index_command(docs, index_location)
        deadline = time.monotonic() + 180
        while proc.poll() is None and time.monotonic() < deadline:
            if committed_documents(index_location) >= wanted:
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.05)
        proc.wait(timeout=30)
        killed.append((proc.returncode, committed_documents(index_location)))
    assert any(code == -signal.SIGKILL and 0 < n < 24 for code, n in killed), killed

    rerun = index_command(docs, index_location)
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    clean = new_location()
    build_index(docs, clean, encoder, batch_passages=8)
    crashed_rows, crashed_counts = passage_rows(index_location)
    clean_rows, clean_counts = passage_rows(clean)
    assert crashed_counts == clean_counts and crashed_rows == clean_rows  # no duplicates
    with Index.open(index_location) as crashed, Index.open(clean) as fresh:
        for query in ("river mountain", "violin protein", "document 7 part 2"):
            assert [(h.path, h.ordinal) for h in crashed.search(query, 5, mode="dense")] == \
                [(h.path, h.ordinal) for h in fresh.search(query, 5, mode="dense")]


UPSERTER = """
import sys
from indexer import Index
with Index.open(sys.argv[1], create=True) as index:
    for i in range(int(sys.argv[2])):
        index.upsert(f"note-{i % 7}", f"Note {i} about the harbour and its lanterns.")
"""


def test_two_indexers_and_an_upserter_at_once(tmp_path, index_location, encoder):
    a = write_corpus(tmp_path / "a", 12, paragraphs=3, seed=1)
    b = write_corpus(tmp_path / "b", 12, paragraphs=3, seed=2)
    build_index(a, index_location, encoder, batch_passages=8)  # the index exists: settings
    for path in list(a.iterdir())[:6]:
        path.write_text(path.read_text() + "\n\nAn edit made while nobody indexed.")
    procs = [index_command(a, index_location, "--wait"), index_command(b, index_location,
                                                                       "--wait"),
             subprocess.Popen([sys.executable, "-c", UPSERTER, str(index_location), "40"],
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
    rows, (documents, passages) = passage_rows(index_location)
    assert documents == 12 + 12 + 7 and passages == len(rows)
    assert len(set(rows)) == len(rows)  # no passage twice
    with open_store(index_location, read_only=True) as store:
        for doc_id, _, _ in store.iter_documents():
            ordinals = [r.ordinal for r in store.document_passages(doc_id)]
            assert ordinals == list(range(len(ordinals)))
        assert store.document("note-0").text.startswith("Note 35 ")  # the last write won
