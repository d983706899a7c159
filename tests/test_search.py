"""Search that finds, through `Index` with the real model: the documents API, metadata,
filters, keyword and hybrid modes, highlights, old indexes gaining a keyword index."""

import random
import shutil
import sqlite3

import numpy as np
import pytest
from conftest import CountingEncoder

from embedder.errors import InvalidInputError
from indexer import FilterError, Index, build_index
from indexer.fusion import reciprocal_rank_fusion
from indexer.keywords import highlights, keyword_terms


@pytest.fixture
def docs(tmp_path, sample_docs):
    return shutil.copytree(sample_docs, tmp_path / "docs")


@pytest.fixture
def counting(encoder):
    return CountingEncoder(encoder)


def test_rrf_on_hand_made_lists():
    fused = reciprocal_rank_fusion({"dense": [1, 2, 3], "keyword": [3, 4, 1]}, 4, constant=60)
    scores = dict(fused)
    assert scores[1] == pytest.approx(1 / 61 + 1 / 63)
    assert scores[3] == pytest.approx(1 / 63 + 1 / 61)
    assert scores[2] == pytest.approx(1 / 62) and scores[4] == pytest.approx(1 / 62)
    assert [i for i, _ in fused] == [1, 3, 2, 4]  # ties: the first list's earlier rank first
    weighted = reciprocal_rank_fusion({"a": [1], "b": [2]}, 2, weights={"a": 1, "b": 2})
    assert [i for i, _ in weighted] == [2, 1]


def test_keyword_terms_and_highlights():
    assert keyword_terms("How do I set CONFIG_DEBUG_FS?") == [("set",), ("config_debug_fs",)]
    assert keyword_terms("the") == [("the",)]  # only stopwords: keep them
    assert ("os", "path", "join") in keyword_terms("os.path.join")
    text = "Sharpening a knife: the stone and the steel. Sharp!"
    spans = highlights(text, "how to sharpen with a stone")
    assert [text[s:e] for s, e in spans] == ["Sharpening", "stone"]


def test_documents_api_round_trip_and_no_needless_embedding(tmp_path, counting):
    with Index.open(tmp_path / "idx", encoder=counting, create=True) as index:
        text = "# Printer jams\n\nThe printer on floor 3 jams when the tray is overfilled."
        first = index.upsert("ticket-42", text, {"year": 2025, "team": "ops"})
        assert (first.action, first.passages) == ("created", 1)
        embedded = counting.texts
        assert embedded == 1
        assert index.upsert("ticket-42", text, {"year": 2025, "team": "ops"}).action == \
            "unchanged"
        assert index.upsert("ticket-42", text, {"year": 2026}).action == "metadata"
        assert counting.texts == embedded  # same text: the encoder was not called again
        document = index.get("ticket-42")
        assert (document.text, document.metadata, document.origin) == (text, {"year": 2026},
                                                                        "api")
        [hit] = index.search("paper stuck in the printer", 1)
        assert (hit.document_id, hit.file, hit.metadata) == ("ticket-42", "ticket-42",
                                                            {"year": 2026})
        assert hit.headings == ("Printer jams",)
        before = counting.texts
        assert index.upsert("ticket-42", text + " Use the lower tray.").action == "replaced"
        assert counting.texts == before + 1
        assert index.delete("ticket-42") and index.get("ticket-42") is None
        assert not index.delete("ticket-42")
        assert index.search("printer", 5) == []


@pytest.mark.parametrize("bad, message", [
    (dict(id=""), "document id"), (dict(id="x" * 600), "document id"),
    (dict(text="  "), "non-empty"), (dict(metadata=[1]), "JSON object"),
    (dict(metadata={"x": float("nan")}), "plain JSON"),
])
def test_upsert_refuses_bad_input(tmp_path, encoder, bad, message):
    with Index.open(tmp_path / "idx", encoder=encoder, create=True) as index:
        args = {"id": "a", "text": "some text", "metadata": None, **bad}
        with pytest.raises(InvalidInputError, match=message):
            index.upsert(args["id"], args["text"], args["metadata"])


def test_folder_sync_and_documents_live_side_by_side(docs, tmp_path, encoder):
    idx = tmp_path / "idx"
    build_index(docs, idx, encoder)
    with Index.open(idx) as index:
        index.upsert("note-1", "Whetstones need soaking before use.", {"kind": "note"})
        folder_file = str(docs.resolve() / "tide-pools.md")
        with pytest.raises(InvalidInputError, match="indexed from a folder"):
            index.upsert(folder_file, "overwrite attempt")
        with pytest.raises(InvalidInputError, match="indexed from a folder"):
            index.delete(folder_file)
        assert index.get(folder_file).metadata["title"] == "Life in tide pools"
    (docs / "tide-pools.md").unlink()
    report = build_index(docs, idx, encoder)
    assert report.removed == 1
    with Index.open(idx) as index:
        assert index.get("note-1") is not None  # sync never deletes API documents
        assert index.search("soak the whetstone", 1, filter={"kind": "note"})[0].document_id \
            == "note-1"


def test_folder_metadata_front_matter_and_filters(tmp_path, encoder):
    docs = tmp_path / "docs"
    (docs / "api").mkdir(parents=True)
    (docs / "api" / "auth.md").write_text(
        "---\ntitle: Auth tokens\nyear: 2024\ntags: [security, api]\n---\n"
        "# Tokens\n\nTokens expire after one hour; refresh them with the refresh endpoint.\n")
    (docs / "api" / "old.md").write_text(
        "---\nyear: 2019\n---\nTokens used to last a day in the old API.\n")
    (docs / "guide.txt").write_text("Getting started\n\nCreate a token in the dashboard.\n")
    build_index(docs, tmp_path / "idx", encoder)
    with Index.open(tmp_path / "idx") as index:
        auth = index.get(str(docs.resolve() / "api" / "auth.md"))
        meta = auth.metadata
        assert (meta["title"], meta["year"], meta["tags"], meta["path"], meta["ext"]) == (
            "Auth tokens", 2024, ["security", "api"], "api/auth.md", ".md")
        assert "title: Auth" not in auth.text and auth.text.count("\n") >= 5  # lines kept
        hits = index.search("how long does a token last", 10, filter={"year": {"$gte": 2020}})
        assert {h.path for h in hits} == {"api/auth.md"}
        hits = index.search("token", 10, filter={"path": {"$glob": "api/*"}}, mode="keyword")
        assert {h.path for h in hits} == {"api/auth.md", "api/old.md"}
        assert index.search("token", 10, filter={"tags": "security"})[0].headings == (
            "Auth tokens", "Tokens")
        guide = index.search("dashboard", 1, mode="keyword")[0]
        assert guide.metadata["title"] == "Getting started"
        assert index.search("token", 3, filter={"year": 1900}) == []
        with pytest.raises(FilterError, match="Unknown filter operator '\\$regex'"):
            index.search("token", filter={"path": {"$regex": "x"}})
        with pytest.raises(FilterError, match="compares with a number or a string"):
            index.search("token", filter={"year": {"$gt": [1]}})


def test_keyword_mode_finds_identifiers_dense_misses(tmp_path, encoder):
    with Index.open(tmp_path / "idx", encoder=encoder, create=True) as index:
        for i in range(30):
            index.upsert(f"filler-{i}", f"Network sockets and ports, part {i}: connections "
                                        f"are accepted, refused or reset by the peer.")
        index.upsert("answer", "If bind() reports EADDRINUSE, another process owns the port.")
        [top] = index.search("EADDRINUSE", 1, mode="keyword")
        assert top.document_id == "answer"
        assert [top.text[s:e] for s, e in top.highlights] == ["EADDRINUSE"]
        assert index.search("EADDRINUSE", 1, mode="hybrid")[0].document_id == "answer"
        dense = index.search("EADDRINUSE", 10, mode="dense")
        assert len(dense) == 10 and all(h.highlights == () or h.document_id == "answer"
                                        for h in dense)


@pytest.mark.parametrize("kwargs, message", [
    (dict(query=""), "non-empty"), (dict(query="x" * 2001), "at most 2000"),
    (dict(k=0), "from 1 to 1000"), (dict(k=1001), "from 1 to 1000"), (dict(k=True), "k must"),
    (dict(mode="fuzzy"), "mode must be one of"),
])
def test_search_refuses_bad_input(docs, tmp_path, encoder, kwargs, message):
    build_index(docs, tmp_path / "idx", encoder)
    with Index.open(tmp_path / "idx") as index:
        args = {"query": "knife", **kwargs}
        query = args.pop("query")
        with pytest.raises(InvalidInputError, match=message):
            index.search(query, **args)


def old_index(folder, texts):
    """An index as bertsearch made it before documents had ids and passages keywords:
    only the first migration's schema."""
    folder.mkdir()
    conn = sqlite3.connect(folder / "passages.db")
    conn.executescript("""
        CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT);
        CREATE TABLE documents (id INTEGER PRIMARY KEY, root TEXT NOT NULL, path TEXT NOT NULL,
            content_hash TEXT NOT NULL, size INTEGER, mtime FLOAT, passages INTEGER,
            indexed_at FLOAT);
        CREATE UNIQUE INDEX idx_documents_root_path ON documents (root, path);
        CREATE TABLE passages (id INTEGER PRIMARY KEY AUTOINCREMENT,
            document_id INTEGER NOT NULL REFERENCES documents(id), ordinal INTEGER NOT NULL,
            start INTEGER NOT NULL, "end" INTEGER NOT NULL, line_start INTEGER NOT NULL,
            line_end INTEGER NOT NULL, tokens INTEGER NOT NULL, text TEXT NOT NULL,
            vector BLOB NOT NULL);
        CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at FLOAT);
        INSERT INTO _migrations VALUES ('m001_initial', 0);
        """)
    return conn


def test_an_old_index_opens_and_gains_its_keyword_index(tmp_path, encoder):
    texts = ["Grease the chain of the bicycle monthly.", "Tide pools hold anemones."]
    conn = old_index(tmp_path / "idx", texts)
    settings = {"generation": 3, "model": "default", "model_fingerprint": encoder.fingerprint,
                "dimension": 384, "pooling": "mean", "max_seq_length": 256,
                "chunk_tokens": 200, "chunk_overlap": 32, "index_type": "auto",
                "backend": "torch", "format_version": 1}
    conn.executemany("INSERT INTO settings VALUES (?, ?)",
                     [(k, str(v) if k == "generation" else __import__("json").dumps(v))
                      for k, v in settings.items()])
    vectors = encoder.encode(texts)
    for i, (text, vector) in enumerate(zip(texts, vectors)):
        conn.execute("INSERT INTO documents VALUES (?, '/old', ?, 'h', 1, 1.0, 1, 0)",
                     (i + 1, f"f{i}.txt"))
        conn.execute("INSERT INTO passages (document_id, ordinal, start, \"end\", line_start, "
                     "line_end, tokens, text, vector) VALUES (?, 0, 0, ?, 1, 1, 8, ?, ?)",
                     (i + 1, len(text), text, np.asarray(vector, np.float32).tobytes()))
    conn.commit()
    conn.close()
    with Index.open(tmp_path / "idx") as index:
        assert index.settings.context == "plain"  # what it was built with
        [hit] = index.search("bicycle", 1, mode="keyword")
        assert (hit.document_id, hit.metadata["path"]) == ("/old/f0.txt", "f0.txt")
        assert index.search("sea creatures", 1, mode="dense")[0].path == "f1.txt"
        assert index.search("anemones", 1, filter={"ext": ".txt", "path": "f1.txt"})


def test_highlights_mark_what_the_word_rule_marks():
    """The regex fast path for ASCII text marks exactly the words the plain rule does."""
    from indexer.keywords import STOPWORDS, WORD, words

    def plain(text, query):
        wanted = {w for w in words(query) if w not in STOPWORDS} or set(words(query))
        prefixes = tuple(w for w in wanted if len(w) >= 4)
        return [m.span() for m in WORD.finditer(text)
                if m.group().lower() in wanted or prefixes and
                m.group().lower().startswith(prefixes)]

    rng = random.Random(7)
    vocabulary = ["Mount", "mounting", "re-mount", "CONFIG_DEBUG_FS", "config", "os.path",
                  "the", "A", "file_system", "filesystems", "x86_64", "ÉCOLE", "école", "İi",
                  "ß", "SS", "naïve", "ǅ", "K", "(", "--", "path.join()", "3d", "mountain"]
    for _ in range(300):
        text = " ".join(rng.choices(vocabulary, k=rng.randint(0, 30)))
        query = " ".join(rng.choices(vocabulary, k=rng.randint(1, 4)))
        assert highlights(text, query) == plain(text, query), (text, query)


@pytest.mark.parametrize("group", ["passages", "documents"])
def test_passages_deleted_between_ranking_and_reading_leave_k_hits(tmp_path, encoder, group):
    """A document deleted after the lists were ranked but before its passages were read
    drops out, and the search still returns k hits from what is left."""
    with Index.open(tmp_path / "idx", encoder=encoder, create=True) as index:
        for i in range(8):
            index.upsert(f"doc{i}", f"Note {i} about printers that jam on floor {i}.")
        first = index.search("printer jams", 3, group=group, mode="hybrid")
        victim = first[0].document_id
        read = index.store.passages

        def deleting_first(ids):
            if index.get(victim) is not None:
                index.delete(victim)
            return read(ids)

        index.store.passages = deleting_first
        hits = index.search("printer jams", 3, group=group, mode="hybrid")
        assert len(hits) == 3 and victim not in {h.document_id for h in hits}
        assert index.get(victim) is None
