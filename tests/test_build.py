"""build_index and Index with the real default model on real folders in tmp_path."""

import shutil

import numpy as np
import pytest
from conftest import write_corpus

from embedder import Encoder
from indexer import (
    ChunkSettings,
    FolderNotFoundError,
    Index,
    IndexMismatchError,
    IndexNotFoundError,
    build_index,
)
from indexer.store import open_store
from indexer.vectors import VECTORS_NAME, VectorIndex


def assert_consistent(index_dir):
    """Every passage in SQLite is searchable by vector and keyword, no vector lacks a
    passage, no duplicates, the keyword index agrees with the passages."""
    with Index.open(index_dir) as index:
        store = index.store
        store_ids = store.passage_ids()
        faiss_ids = store._vectors.ids()
        assert len(faiss_ids) == len(set(faiss_ids)), "duplicate vectors"
        assert set(faiss_ids) == set(store_ids)
        docs = store.db.execute("SELECT id, passages FROM documents").fetchall()
        for doc_id, count in docs:
            assert len(store.document_passages(doc_id)) == count
        store.db.execute("INSERT INTO passages_fts(passages_fts, rank) "
                         "VALUES ('integrity-check', 1)")  # raises if FTS and rows disagree
        indexed = store.db.execute("SELECT count(*) FROM passages_fts_vocab").fetchone()[0]
        assert indexed > 0 or not len(store_ids)
        if len(store_ids):  # a stored vector finds its own passage first
            pid = int(store_ids[len(store_ids) // 2])
            _, vector = next(store.stored_vectors(np.array([pid])))
            assert index.search_vectors(vector, 1)[0][0].passage_id == pid
        return len(store_ids)


@pytest.fixture
def docs(tmp_path, sample_docs):
    return shutil.copytree(sample_docs, tmp_path / "docs")


def test_index_then_query_finds_the_expected_file(docs, tmp_path, encoder):
    report = build_index(docs, tmp_path / "idx", encoder)
    assert report.added == 6 and report.passages_written >= 6 and not report.skipped
    with Index.open(tmp_path / "idx", encoder=encoder) as index:
        for query, expected in [("how do I sharpen a kitchen knife", "kitchen/knife-care.html"),
                                ("what lives in rock pools at the seaside", "tide-pools.md"),
                                ("oil the chain of my bike", "bicycle-maintenance.txt"),
                                ("next sentence prediction objective", "ml/bert-pretraining.md")]:
            hits = index.search(query, k=3)
            assert hits[0].path == expected, (query, [h.path for h in hits])
            dense = index.search(query, k=3, mode="dense")
            assert dense[0].path == expected and dense[0].score > dense[1].score
            hit = hits[0]
            original = (docs / hit.path).read_text()
            if not hit.path.endswith(".html"):  # offsets index the text as read
                assert original[hit.start:hit.end] == hit.text
                assert hit.line_start == original.count("\n", 0, hit.start) + 1


def test_sync_after_edit_delete_add_and_no_change(docs, tmp_path, encoder):
    idx = tmp_path / "idx"
    first = build_index(docs, idx, encoder)
    again = build_index(docs, idx, encoder)
    assert (again.unchanged, again.passages_written, again.added) == (6, 0, 0)

    (docs / "tide-pools.md").write_text("# Tide pools\n\nBarnacles filter plankton at high tide.")
    (docs / "bicycle-maintenance.txt").unlink()
    (docs / "new.md").write_text("Volcanoes erupt molten rock called lava.")
    touched = docs / "ml" / "vector-search.txt"
    touched.write_text(touched.read_text())  # new mtime, same content
    report = build_index(docs, idx, encoder)
    assert (report.added, report.changed, report.removed, report.unchanged) == (1, 1, 1, 4)
    assert report.passages_written == 2 and report.passages_removed >= 1
    with Index.open(idx, encoder=encoder) as index:
        assert index.search("lava from a volcano", 1)[0].path == "new.md"
        assert index.search("barnacles", 1)[0].text.startswith("# Tide pools")
        paths = {h.path for h in index.search("bicycle chain oil", 10)}
        assert "bicycle-maintenance.txt" not in paths
    assert_consistent(idx)
    del first
    assert build_index(docs, idx, encoder).passages_written == 0


def test_unchanged_rerun_embeds_nothing(docs, tmp_path, encoder):
    class CountingEncoder:
        def __init__(self, inner):
            self.inner, self.calls = inner, 0

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def encode(self, texts):
            self.calls += 1
            return self.inner.encode(texts)

    build_index(docs, tmp_path / "idx", encoder)
    counting = CountingEncoder(encoder)
    report = build_index(docs, tmp_path / "idx", counting)
    assert counting.calls == 0 and not report.embedded_anything


def test_bad_files_are_skipped_and_reported(tmp_path, encoder):
    import os

    folder = tmp_path / "bad"
    write_corpus(folder, 2)
    (folder / "binary.txt").write_bytes(b"\x00\x01\x02" * 100)
    (folder / "latin1.txt").write_bytes("Un caf\xe9 cr\xe8me tr\xe8s chaud.".encode("cp1252"))
    (folder / "empty.md").write_bytes(b"")
    (folder / "huge.txt").write_bytes(b"big words " * (2 * 1024 * 1024))  # 20 MB
    os.symlink(folder / "loop.txt", folder / "loop.txt")
    os.symlink(folder, folder / "again")
    deep = folder.joinpath(*[f"level{i}" for i in range(40)])
    deep.mkdir(parents=True)
    (deep / "deep.md").write_text("A note hidden deep in the tree about saffron.")
    report = build_index(folder, tmp_path / "idx", encoder)
    reasons = {s.relpath: s.reason for s in report.skipped}
    assert set(reasons) == {"binary.txt", "empty.md", "huge.txt", "loop.txt", "again"}
    assert report.added == 4  # two corpus files, latin1.txt, deep.md
    with Index.open(tmp_path / "idx", encoder=encoder) as index:
        assert index.search("café crème", 1)[0].path == "latin1.txt"
        assert index.search("saffron", 1)[0].path.endswith("deep.md")


def test_a_document_that_turns_bad_is_removed(docs, tmp_path, encoder):
    build_index(docs, tmp_path / "idx", encoder)
    (docs / "tide-pools.md").write_bytes(b"\x00binary now\x00")
    report = build_index(docs, tmp_path / "idx", encoder)
    assert report.removed == 1 and report.skipped[0].relpath == "tide-pools.md"
    assert_consistent(tmp_path / "idx")


def test_another_model_is_refused_unless_rebuild(docs, tmp_path, encoder, tiny_model_dir):
    idx = tmp_path / "idx"
    build_index(docs, idx, encoder)
    tiny = Encoder.load(tiny_model_dir)
    with pytest.raises(IndexMismatchError, match="--rebuild"):
        build_index(docs, idx, tiny, chunk=ChunkSettings(100, 16))
    with pytest.raises(IndexMismatchError, match="built with model 'default'"):
        Index.open(idx, encoder=tiny)
    with pytest.raises(IndexMismatchError, match="chunk_tokens 200 vs 120"):
        build_index(docs, idx, encoder, chunk=ChunkSettings(120, 16))
    report = build_index(docs, idx, tiny, chunk=ChunkSettings(100, 16), rebuild=True)
    assert report.added == 6
    with Index.open(idx) as index:  # the recorded model is loaded for queries
        assert index.settings.dimension == 32 and index.encoder.dimension == 32
        assert len(index.search("knife", 2)) == 2


def test_faiss_file_is_caught_up_from_sqlite(docs, tmp_path, encoder):
    idx = tmp_path / "idx"
    build_index(docs, idx, encoder)
    total = assert_consistent(idx)
    (idx / VECTORS_NAME).unlink()  # lost
    assert assert_consistent(idx) == total and (idx / VECTORS_NAME).exists()
    (idx / VECTORS_NAME).write_bytes(b"damaged")  # corrupt
    assert assert_consistent(idx) == total
    stale = VectorIndex.empty(384)  # behind: an empty index claiming an old generation
    stale.add(np.array([999_999]), np.ones((1, 384), np.float32))  # and a vector of no passage
    stale.save(idx / VECTORS_NAME, generation=0)
    assert assert_consistent(idx) == total


def test_open_index_sees_new_passages_without_reopening(docs, tmp_path, encoder):
    idx = tmp_path / "idx"
    build_index(docs, idx, encoder)
    with Index.open(idx, encoder=encoder) as index:
        before = len(index)
        (docs / "new.md").write_text("Penguins huddle together through the antarctic winter.")
        build_index(docs, idx, encoder)
        assert index.search("penguins in antarctica", 1)[0].path == "new.md"
        assert len(index) == before + 1


def test_hnsw_index_type(docs, tmp_path, encoder):
    build_index(docs, tmp_path / "idx", encoder, index_type="hnsw")
    with Index.open(tmp_path / "idx", encoder=encoder) as index:
        assert index.stats()["vector_index"] == "hnsw"
        assert index.search("sourdough starter", 1)[0].path == "kitchen/sourdough.rst"
    (docs / "tide-pools.md").unlink()  # removal forces an HNSW rebuild
    build_index(docs, tmp_path / "idx", encoder, index_type="hnsw")
    assert_consistent(tmp_path / "idx")


def test_errors(tmp_path, encoder):
    with pytest.raises(FolderNotFoundError, match="does not exist"):
        build_index(tmp_path / "missing", tmp_path / "idx", encoder)
    with pytest.raises(IndexNotFoundError, match="No index at"):
        Index.open(tmp_path / "idx")
    open_store(tmp_path, create=True).close()  # a database with no settings yet
    with pytest.raises(IndexNotFoundError, match="empty"):
        Index.open(tmp_path)


def test_query_errors(docs, tmp_path, encoder):
    from embedder import InvalidInputError

    build_index(docs, tmp_path / "idx", encoder)
    with Index.open(tmp_path / "idx", encoder=encoder) as index:
        with pytest.raises(InvalidInputError, match="non-empty"):
            index.search("   ")
        with pytest.raises(InvalidInputError, match="k must be"):
            index.search("x", k=0)


def test_neighbours(docs, tmp_path, encoder):
    build_index(docs, tmp_path / "idx", encoder, chunk=ChunkSettings(40, 8))
    with Index.open(tmp_path / "idx", encoder=encoder) as index:
        hit = index.search("segment embeddings position embeddings", 1)[0]
        around = index.neighbours(hit, 1, 1)
        assert hit.passage_id in [h.passage_id for h in around]
        assert [h.ordinal for h in around] == list(range(max(0, hit.ordinal - 1),
                                                         hit.ordinal + len(around) -
                                                         min(1, hit.ordinal)))


def test_stats_record_each_folders_last_sync(tmp_path, encoder):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "good.txt").write_text("A readable note about tide pools.")
    (docs / "empty.md").write_text("")
    report = build_index(docs, tmp_path / "idx", encoder)
    with Index.open(tmp_path / "idx") as index:
        stats = index.stats()
    sync = stats["syncs"][report.folder]
    assert (sync["added"], sync["skipped_total"]) == (1, 1)
    assert sync["skipped"] == [{"path": "empty.md", "reason": "empty file"}]
    assert stats["last_sync"] == sync["finished_at"] and stats["documents"] == 1
