"""The HTTP API through TestClient: every route, limits, auth, batching, live index."""

import base64
import shutil
import threading
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

from indexer import build_index
from server import ServerSettings, create_app


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory, sample_docs, encoder):
    root = tmp_path_factory.mktemp("server")
    docs = shutil.copytree(sample_docs, root / "docs")
    build_index(docs, root / "idx", encoder)
    return root / "idx"


def client_for(encoder, **settings):
    return TestClient(create_app(ServerSettings(**settings), encoder=encoder))


@pytest.fixture(scope="module")
def client(encoder, index_dir):
    with client_for(encoder, index_dir=str(index_dir)) as c:
        yield c


def test_health_and_stats(client):
    assert client.get("/health").json() == {"status": "ok", "model": True, "index": True,
                                            "detail": None}
    stats = client.get("/stats").json()
    assert stats["model"] == "all-MiniLM-L6-v2" and stats["dimension"] == 384
    assert stats["index"]["documents"] == 6 and stats["index"]["vector_index"] == "flat"


def test_search(client):
    body = client.post("/search", json={"query": "sharpening knives", "k": 3}).json()
    assert [h["path"] for h in body["hits"]][0] == "kitchen/knife-care.html"
    assert len(body["hits"]) == 3 and body["took_ms"] > 0
    hit = body["hits"][0]
    assert {"passage_id", "file", "ordinal", "start", "end", "line_start", "score"} <= hit.keys()
    assert hit["text"]
    bare = client.post("/search", json={"query": "knives", "k": 1, "include_text": False})
    assert bare.json()["hits"][0]["text"] is None


@pytest.mark.parametrize("body, field", [
    ({"query": "", "k": 3}, "query"),
    ({"query": "x" * 2001}, "query"),
    ({"query": "x", "k": 0}, "k"),
    ({"query": "x", "k": 1001}, "k"),
    ({"query": "x", "k": "ten"}, "k"),
    ({"k": 3}, "query"),
    ({"query": "x", "unknown": 1}, "unknown"),
])
def test_search_limits_are_422_with_detail(client, body, field):
    response = client.post("/search", json=body)
    assert response.status_code == 422
    assert field in str(response.json()["detail"])


def test_malformed_json_is_422(client):
    response = client.post("/search", content=b"{not json", headers={
        "content-type": "application/json"})
    assert response.status_code == 422 and "detail" in response.json()


def test_openai_embeddings(client, encoder):
    texts = ["my dog is cute", "he likes playing"]
    body = client.post("/v1/embeddings", json={"input": texts, "model": "all-MiniLM-L6-v2"}).json()
    assert body["object"] == "list" and body["model"] == "all-MiniLM-L6-v2"
    assert [d["index"] for d in body["data"]] == [0, 1]
    assert np.allclose([d["embedding"] for d in body["data"]], encoder.encode(texts), atol=1e-5)
    assert body["usage"]["prompt_tokens"] == sum(encoder.count_tokens(texts))
    single = client.post("/v1/embeddings", json={"input": "my dog is cute"}).json()
    assert len(single["data"]) == 1
    packed = client.post("/v1/embeddings", json={"input": texts, "encoding_format": "base64"})
    vectors = [np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4")
               for d in packed.json()["data"]]
    assert np.allclose(vectors, encoder.encode(texts), atol=1e-5)


@pytest.mark.parametrize("body, param, message", [
    ({"input": []}, "input", ""),
    ({"input": ""}, "input", ""),
    ({"input": ["x"] * 257}, "input", ""),
    ({"input": "x" * 20_001}, "input", ""),
    ({"input": "x", "encoding_format": "int8"}, "encoding_format", ""),
    ({"input": "x", "dimensions": 128}, None, "384 dimensions"),
])
def test_openai_embeddings_errors_in_openai_shape(client, body, param, message):
    response = client.post("/v1/embeddings", json=body)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and message in error["message"]
    assert param is None or error["param"].startswith(param)
    assert len(response.content) < 4000  # never the input echoed back


def test_token_ids_outside_the_vocabulary_are_a_400(client):
    response = client.post("/v1/embeddings", json={"input": [[101, 99999, 102]]})
    assert response.status_code == 400
    assert "vocabulary" in response.json()["error"]["message"]


def test_embed_with_pooling_and_truncation(client, encoder):
    body = client.post("/embed", json={"texts": ["a short text", "word " * 300],
                                       "pooling": "cls", "normalize": False}).json()
    expected = encoder.encode(["a short text"], pooling="cls", normalize=False)[0]
    assert np.allclose(body["embeddings"][0], expected, atol=1e-5)
    assert body["truncated"] == [1] and body["token_counts"][1] == 302
    assert body["pooling"] == "cls" and body["normalized"] is False


def test_body_too_large_is_413(encoder, index_dir):
    with client_for(encoder, index_dir=str(index_dir), max_body_bytes=1000) as c:
        response = c.post("/embed", json={"texts": ["x" * 2000]})
        assert response.status_code == 413 and "larger than 1000 bytes" in response.json()["detail"]


def test_api_key(encoder, index_dir):
    with client_for(encoder, index_dir=str(index_dir), api_key="s3cret") as c:
        assert c.get("/health").status_code == 200
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            response = c.post("/search", json={"query": "x"}, headers=headers)
            assert response.status_code == 401 and "API key" in response.json()["detail"]
            assert response.headers["www-authenticate"] == "Bearer"
        assert c.get("/stats").status_code == 401
        ok = c.post("/search", json={"query": "x"}, headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200


def test_no_index_yet_is_503_then_appears(encoder, tmp_path, sample_docs):
    with client_for(encoder, index_dir=str(tmp_path / "idx")) as c:
        health = c.get("/health")
        assert health.status_code == 503 and health.json()["status"] == "degraded"
        response = c.post("/search", json={"query": "knife"})
        assert response.status_code == 503 and "No index at" in response.json()["detail"]
        assert c.post("/embed", json={"texts": ["still works"]}).status_code == 200
        build_index(sample_docs, tmp_path / "idx", encoder)
        assert c.get("/health").status_code == 200
        assert c.post("/search", json={"query": "knife"}).status_code == 200


def test_full_queue_is_503_with_retry_after(encoder, index_dir):
    with client_for(encoder, index_dir=str(index_dir), max_queued_texts=2) as c:
        response = c.post("/embed", json={"texts": ["a", "b", "c"]})
        assert response.status_code == 503 and response.headers["retry-after"] == "1"
        assert "retry" in response.json()["detail"]


def test_concurrent_requests_share_batches(encoder, index_dir):
    texts = [f"sentence number {i} about topic {i % 5}" for i in range(24)]
    results, errors = {}, []
    with client_for(encoder, index_dir=str(index_dir), batch_wait_ms=50) as c:
        before = c.get("/stats").json()["batches"]
        barrier = threading.Barrier(len(texts))

        def call(i):
            try:
                barrier.wait()
                results[i] = c.post("/v1/embeddings", json={"input": texts[i]}).json()
            except Exception as exc:
                errors.append(exc)

        threads = [threading.Thread(target=call, args=(i,)) for i in range(len(texts))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        batches = c.get("/stats").json()["batches"] - before
    assert not errors
    assert batches < len(texts) / 2, batches
    got = np.array([results[i]["data"][0]["embedding"] for i in range(len(texts))])
    assert np.allclose(got, encoder.encode(texts), atol=1e-5)  # each got its own row


def test_a_lone_client_does_not_wait_for_company(encoder, index_dir):
    with client_for(encoder, index_dir=str(index_dir), batch_wait_ms=2_000) as c:
        c.post("/v1/embeddings", json={"input": "warm up"})  # may wait: nothing known yet
        for i in range(3):
            started = time.perf_counter()
            assert c.post("/v1/embeddings", json={"input": f"query {i}"}).status_code == 200
            assert time.perf_counter() - started < 1.0  # far below the 2 s window


def test_live_index_updates_without_restart(encoder, tmp_path, sample_docs):
    docs = shutil.copytree(sample_docs, tmp_path / "docs")
    build_index(docs, tmp_path / "idx", encoder)
    with client_for(encoder, index_dir=str(tmp_path / "idx")) as c:
        (docs / "new.md").write_text("Saturn's rings are made of ice and rock.")
        build_index(docs, tmp_path / "idx", encoder)
        hits = c.post("/search", json={"query": "rings of saturn", "k": 1}).json()["hits"]
        assert hits[0]["path"] == "new.md"


def test_openapi_schema_documents_the_routes(client):
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/search", "/v1/embeddings", "/embed", "/coherence", "/health", "/stats"):
        assert path in paths


def test_documents_routes_round_trip(encoder, tmp_path):
    """PUT creates (201) and re-embeds only new text; GET returns it; search finds it with
    a filter; DELETE removes it; an index is created on the first PUT."""
    with client_for(encoder, index_dir=str(tmp_path / "idx")) as c:
        body = {"text": "Printer on floor 3 jams when the tray is overfilled.",
                "metadata": {"year": 2025, "team": "ops"}}
        created = c.put("/documents/tickets/42", json=body)
        assert created.status_code == 201 and created.json() == {
            "id": "tickets/42", "action": "created", "passages": 1}
        again = c.put("/documents/tickets/42", json=body)
        assert again.status_code == 200 and again.json()["action"] == "unchanged"
        moved = c.put("/documents/tickets/42", json={**body, "metadata": {"year": 2024}})
        assert moved.json()["action"] == "metadata"
        got = c.get("/documents/tickets/42").json()
        assert (got["text"], got["metadata"], got["origin"]) == (body["text"], {"year": 2024},
                                                                 "api")
        c.put("/documents/other", json={"text": "Paper feed rollers wear out.",
                                        "metadata": {"year": 2020}})
        hits = c.post("/search", json={"query": "printer paper", "k": 5,
                                       "filter": {"year": {"$gte": 2024}}}).json()["hits"]
        assert [h["document_id"] for h in hits] == ["tickets/42"]
        assert hits[0]["metadata"] == {"year": 2024}
        assert hits[0]["text"][slice(*hits[0]["highlights"][0])].lower() == "printer"
        assert c.delete("/documents/tickets/42").json() == {"id": "tickets/42", "deleted": True}
        assert c.get("/documents/tickets/42").status_code == 404
        missing = c.delete("/documents/tickets/42")
        assert missing.status_code == 404 and "No document" in missing.json()["detail"]


@pytest.mark.parametrize("body, status, message", [
    ({"query": "x", "filter": {"year": {"$regex": "2"}}}, 422, "Unknown filter operator"),
    ({"query": "x", "filter": {"year": {"$gt": [1]}}}, 422, "number or a string"),
    ({"query": "x", "filter": ["year"]}, 422, "filter"),
    ({"query": "x", "mode": "fuzzy"}, 422, "mode"),
])
def test_bad_filters_and_modes_are_422(client, body, status, message):
    response = client.post("/search", json=body)
    assert response.status_code == status and message in str(response.json()["detail"])


@pytest.mark.parametrize("mode", ["dense", "keyword", "hybrid"])
def test_every_mode_over_http(client, mode):
    body = client.post("/search", json={"query": "whetstone", "k": 3, "mode": mode}).json()
    assert body["mode"] == mode and body["hits"][0]["path"] == "kitchen/knife-care.html"
    assert body["hits"][0]["headings"] == ["Caring for kitchen knives"]


@pytest.mark.parametrize("body, message", [
    ({"text": ""}, "text"), ({"text": "x", "metadata": [1]}, "metadata"),
    ({"text": "x", "extra": 1}, "extra"),
])
def test_bad_documents_are_422(client, body, message):
    response = client.put("/documents/a", json=body)
    assert response.status_code == 422 and message in str(response.json()["detail"])


def test_folder_documents_cannot_be_overwritten_over_http(client, index_dir):
    hit = client.post("/search", json={"query": "knife", "k": 1}).json()["hits"][0]
    response = client.put(f"/documents/{hit['document_id']}", json={"text": "replaced"})
    assert response.status_code == 422 and "indexed from a folder" in response.json()["detail"]
    assert client.get(f"/documents/{hit['document_id']}").json()["origin"] == "folder"


def test_the_server_prepares_the_keyword_copy_as_it_starts(encoder, index_dir):
    """The first keyword search must not pay for building the in-memory BM25 copy: the
    server builds it in the background at start-up."""
    with client_for(encoder, index_dir=str(index_dir)) as c:
        store = c.app.state.services.index.store
        deadline = time.monotonic() + 30
        while store._keywords.postings is None and time.monotonic() < deadline:
            time.sleep(0.05)
        copy = store._keywords.postings
        assert copy is not None and len(copy) == len(store.passage_ids())
        hits = c.post("/search", json={"query": "chain pressure", "mode": "keyword"}).json()["hits"]
        assert hits and store.fts5_keyword_search([("chain",), ("pressure",)], 1)[0][0] == \
            hits[0]["passage_id"]
