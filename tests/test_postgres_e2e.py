"""bertsearch with a `postgresql://` URL wherever it takes an index: the CLI end to end,
`bertsearch serve` under uvicorn (two servers on one database answer alike), and a streaming
read replica serving what the primary was given once it has replayed it."""

import json
import shutil
import subprocess
import sys
import time

import httpx
import pytest
from click.testing import CliRunner
from conftest import REPO
from pg_server import ReplicaPair, free_port

from cli import main
from indexer import Index, build_index


@pytest.fixture
def url(postgres):
    location = postgres.new_database()
    yield location
    postgres.drop(location)


@pytest.fixture
def docs(tmp_path, sample_docs):
    return shutil.copytree(sample_docs, tmp_path / "docs")


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def test_the_cli_end_to_end(docs, url, tmp_path):
    assert "6 added" in run("index", docs, "--index", url, "--quiet")
    assert "6 unchanged" in run("index", docs, "--index", url, "--quiet")
    body = json.loads(run("query", "how do I sharpen a knife?", "--index", url, "--json",
                          "-k", "2"))
    assert body["hits"][0]["path"] == "kitchen/knife-care.html"
    keyword = run("query", "sourdough", "--index", url, "--mode", "keyword", "--path",
                  "kitchen/*")
    assert "kitchen/sourdough.rst" in keyword
    run("documents", "put", "ticket-42", "--text", "Printer on floor 3 jams", "--meta",
        "year=2025", "--index", url)
    got = json.loads(run("documents", "get", "ticket-42", "--index", url, "--json"))
    assert got["metadata"] == {"year": 2025} and got["origin"] == "api"
    hits = json.loads(run("query", "paper stuck in the printer", "--index", url, "--json",
                          "--where", "year>=2025"))["hits"]
    assert [h["document_id"] for h in hits] == ["ticket-42"]
    run("documents", "delete", "ticket-42", "--index", url)
    assert run("check", "--index", url).endswith(": sound.\n")


def test_coherence_training_keeps_the_model_in_the_database(url, tmp_path, monkeypatch,
                                                            encoder):
    from conftest import write_corpus

    from indexer import ChunkSettings
    from indexer.coherence import coherence_model_dir

    monkeypatch.setenv("BERTSEARCH_CACHE", str(tmp_path / "cache"))
    build_index(write_corpus(tmp_path / "docs", 8, paragraphs=4), url, encoder,
                chunk=ChunkSettings(40, 8))
    assert coherence_model_dir(url) is None
    output = run("coherence", "train", "--index", url, "--steps", "2", "--batch-size", "4")
    assert "saved to the database at postgresql://" in output
    folder = coherence_model_dir(url)
    assert folder is not None and str(folder).startswith(str(tmp_path / "cache"))
    assert json.loads((folder / "info.json").read_text())["steps"] == 2


def serve(location, *extra):
    """A real `bertsearch serve` on a free port; returns (process, base URL) once healthy."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "serve", "--index", str(location), "--port", str(port),
         "--log-level", "warning", "--no-access-log", *extra],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return proc, base
        except httpx.TransportError:
            pass
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.2)
    proc.kill()
    raise TimeoutError("bertsearch serve did not become healthy")


def stop(proc) -> None:
    proc.terminate()
    proc.wait(timeout=30)


QUERIES = [{"query": "how do I sharpen a knife?", "k": 3},
           {"query": "tide pools", "k": 5, "mode": "keyword"},
           {"query": "bert", "k": 4, "filter": {"path": {"$glob": "ml/*"}}, "group": "passages"}]


def test_two_servers_on_one_database_answer_alike(docs, url, encoder):
    build_index(docs, url, encoder)
    (a, base_a), (b, base_b) = serve(url), serve(url)
    try:
        put = httpx.put(f"{base_a}/documents/note-1", json={
            "text": "Whetstones need soaking before use.", "metadata": {"kind": "note"}},
            timeout=60)
        assert put.status_code == 201
        QUERIES.append({"query": "soak the whetstone", "k": 2, "filter": {"kind": "note"}})
        for request in QUERIES:
            answers = [httpx.post(f"{base}/search", json=request, timeout=60).json()
                       for base in (base_a, base_b)]
            for answer in answers:
                answer.pop("took_ms")
            assert answers[0]["hits"] and answers[0] == answers[1], request
        assert httpx.post(f"{base_b}/search", json=QUERIES[-1], timeout=60).json()[
            "hits"][0]["document_id"] == "note-1"  # written through a, found through b
        stats = httpx.get(f"{base_b}/stats", timeout=60).json()["index"]
        assert (stats["store"], stats["documents"]) == ("postgresql", 7)
        assert stats["vector_index"] == "flat" and "hnsw" not in stats  # auto: 7 documents
    finally:
        QUERIES[3:] = []
        stop(a)
        stop(b)


@pytest.fixture
def pair(postgres):  # the session server first: it makes the binaries usable as non-root
    replicas = ReplicaPair()
    yield replicas
    replicas.stop()


def test_a_replica_serves_what_the_primary_was_given(pair, docs, encoder):
    primary, standby = pair.primary_url(), pair.standby_url()
    build_index(docs, primary, encoder)
    pair.wait_for_replay()
    proc, base = serve(standby)
    try:
        hits = httpx.post(f"{base}/search", json={"query": "sharpen a knife", "k": 1},
                          timeout=60).json()["hits"]
        assert hits[0]["path"] == "kitchen/knife-care.html"
        with Index.open(primary, encoder=encoder) as index:
            index.upsert("zeppelin", "Airships float because helium is lighter than air.")
        pair.wait_for_replay()
        hits = httpx.post(f"{base}/search", json={"query": "why do airships float", "k": 1},
                          timeout=60).json()["hits"]
        assert hits[0]["document_id"] == "zeppelin"  # replayed, seen without a restart
        refused = httpx.put(f"{base}/documents/x", json={"text": "no"}, timeout=60)
        assert refused.status_code == 409 and "read-only" in refused.json()["detail"]
    finally:
        stop(proc)


def test_a_server_whose_database_is_down_starts_and_says_why(encoder):
    from fastapi.testclient import TestClient

    from server import ServerSettings, create_app

    settings = ServerSettings(index_dir="postgresql://127.0.0.1:1/nothing")
    with TestClient(create_app(settings, encoder=encoder)) as client:
        health = client.get("/health")
        assert health.status_code == 503 and "Cannot connect to PostgreSQL" in health.json()[
            "detail"]
        search = client.post("/search", json={"query": "anything"})
        assert search.status_code == 503 and "Cannot connect" in search.json()["detail"]
