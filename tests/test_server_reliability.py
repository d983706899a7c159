"""Issue 17, the server side: hostile clients get clear 4xx answers (never a 500, never
their input echoed back), abandoned work stops costing encoder time, slow clients are cut
off, shutdown finishes what is in flight, and /metrics and the access log show it all."""

import contextlib
import json
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
from conftest import REPO
from fastapi.testclient import TestClient
from test_server_e2e import free_port

from indexer import build_index
from server import ServerSettings, create_app


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory, sample_docs, encoder):
    root = tmp_path_factory.mktemp("reliable")
    build_index(shutil.copytree(sample_docs, root / "docs"), root / "idx", encoder)
    return root / "idx"


@pytest.fixture(scope="module")
def client(encoder, index_dir):
    with TestClient(create_app(ServerSettings(index_dir=str(index_dir)),
                               encoder=encoder)) as c:
        yield c


SURROGATE_BODIES = {
    "/search": '{"query": "\\ud800"}',
    "/v1/embeddings": '{"input": "a\\udfff"}',
    "/embed": '{"texts": ["ok", "\\ud83d"]}',
    "/coherence": '{"passages": ["a", "\\ud800b"]}',
    "/classify": '{"texts": ["\\ud800"]}',
}


@pytest.mark.parametrize("route", sorted(SURROGATE_BODIES))
def test_a_lone_surrogate_is_a_422_on_every_post_route(client, route):
    response = client.post(route, content=SURROGATE_BODIES[route],
                           headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert "surrogate" in response.text or "unicode" in response.text


def test_a_lone_surrogate_in_a_document_is_a_422(client):
    response = client.put("/documents/x", content='{"text": "\\udc00"}',
                          headers={"content-type": "application/json"})
    assert response.status_code == 422 and "unicode" in response.text.lower()


@pytest.mark.parametrize("raw", ['{"query": "x", "k": NaN}', '{"query": "x", "k": Infinity}',
                                 '{"query": "x", "k": "5"}', '{"query": "x", "k": true}',
                                 '{"query": "   "}'])
def test_nan_strings_booleans_and_blank_queries_are_refused(client, raw):
    response = client.post("/search", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text


def test_normalize_must_be_a_boolean(client):
    response = client.post("/embed", json={"texts": ["x"], "normalize": 0})
    assert response.status_code == 422


def test_a_big_bad_request_is_not_echoed_back(client):
    body = {"query": "x", "k": "z" * 5_000_000}
    response = client.post("/search", json=body)
    assert response.status_code == 422 and len(response.content) < 4000
    detail = response.json()["detail"]
    assert detail[0]["loc"] == ["body", "k"] and "input" not in detail[0]


def test_a_chunked_body_over_the_limit_is_413(encoder, index_dir):
    with TestClient(create_app(ServerSettings(index_dir=str(index_dir), max_body_bytes=1000),
                               encoder=encoder)) as c:
        def chunks():
            for _ in range(50):
                yield b'{"texts": ["' + b"x" * 100 + b'"]}'[:100]

        response = c.post("/embed", content=chunks(),
                          headers={"content-type": "application/json"})
        assert response.status_code == 413 and "larger than 1000 bytes" in response.text


def test_a_body_that_is_not_utf8_is_a_documented_422(client):
    response = client.post("/search", content=b'{"query": "caf\xe9"}',
                           headers={"content-type": "application/json"})
    assert response.status_code == 422 and "not valid UTF-8" in response.json()["detail"]
    responses = client.get("/openapi.json").json()["paths"]["/search"]["post"]["responses"]
    assert {"413", "422", "503"} <= responses.keys()
    assert "ErrorOut" in json.dumps(responses["422"])


def test_bearer_in_any_case(encoder, index_dir):
    with TestClient(create_app(ServerSettings(index_dir=str(index_dir), api_key="s3cret"),
                               encoder=encoder)) as c:
        for scheme in ("Bearer", "bearer", "BEARER"):
            response = c.post("/search", json={"query": "knife"},
                              headers={"Authorization": f"{scheme} s3cret"})
            assert response.status_code == 200, scheme
        wrong = c.post("/v1/embeddings", json={"input": "x"},
                       headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"


def test_request_ids_and_metrics(client):
    response = client.post("/search", json={"query": "knife"},
                           headers={"X-Request-ID": "trace-42"})
    assert response.headers["x-request-id"] == "trace-42"
    generated = client.get("/health").headers["x-request-id"]
    assert len(generated) == 32
    client.get("/documents/nothing-here")
    metrics = client.get("/metrics").text
    assert 'bertsearch_requests_total{route="/search",method="POST",status="200"}' in metrics
    assert 'route="/documents/{doc_id}",method="GET",status="404"' in metrics
    for name in ("bertsearch_request_duration_seconds_bucket", "bertsearch_batch_texts_count",
                 "bertsearch_queue_texts", "bertsearch_encoder_busy_seconds_total",
                 "bertsearch_index_passages"):
        assert name in metrics, name


@pytest.fixture(scope="module")
def live(index_dir):
    """A real `bertsearch serve` with short read timeouts; its stderr collected."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "serve", "--index", str(index_dir), "--port", str(port),
         "--read-timeout", "2", "--log-level", "info"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.2)
        assert proc.poll() is None, proc.stderr.read()
    yield port, proc
    if proc.poll() is None:
        proc.terminate()
        proc.wait(timeout=60)


def test_slow_headers_and_bodies_are_cut_off(live):
    port, _ = live
    with socket.create_connection(("127.0.0.1", port)) as sock:  # headers never finish
        sock.sendall(b"POST /search HTTP/1.1\r\nHost: x\r\n")
        sock.settimeout(10)
        started = time.monotonic()
        assert sock.recv(1024) == b""  # closed by the server
        assert time.monotonic() - started < 8
    with socket.create_connection(("127.0.0.1", port)) as sock:  # the body trickles
        sock.sendall(b"POST /search HTTP/1.1\r\nHost: x\r\ncontent-type: application/json"
                     b"\r\ncontent-length: 100\r\n\r\n{\"query\"")
        sock.settimeout(10)
        answer = sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]


def test_abandoned_requests_stop_costing_encoder_time(live):
    """20 requests of 100 texts whose clients give up after half a second: most of their
    texts are dropped unembedded, and a lone request right after is answered quickly."""
    port, _ = live
    base = f"http://127.0.0.1:{port}"
    texts = [f"paragraph {i} about rivers, engines and violins " * 8 for i in range(100)]

    def impatient():
        with contextlib.suppress(httpx.TimeoutException):
            httpx.post(f"{base}/v1/embeddings", json={"input": texts}, timeout=0.5)

    threads = [threading.Thread(target=impatient) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    time.sleep(1.0)
    started = time.monotonic()
    assert httpx.post(f"{base}/v1/embeddings", json={"input": "one"},
                      timeout=60).status_code == 200
    waited = time.monotonic() - started
    metrics = httpx.get(f"{base}/metrics").text
    abandoned = int(float(next(line.split()[-1] for line in metrics.splitlines()
                               if line.startswith("bertsearch_abandoned_texts_total"))))
    assert abandoned >= 1000, metrics  # at least half of the 2,000 texts never embedded
    assert waited < 20, waited
    assert 'status="499"' in metrics


def test_shutdown_finishes_in_flight_requests_and_logs_json(live):
    port, proc = live
    base = f"http://127.0.0.1:{port}"
    texts = [f"text number {i} " * 20 for i in range(200)]
    result = {}

    def slow_request():
        result["response"] = httpx.post(f"{base}/embed", json={"texts": texts}, timeout=120)

    worker = threading.Thread(target=slow_request)
    worker.start()
    time.sleep(0.5)  # in flight
    proc.send_signal(signal.SIGTERM)
    worker.join(timeout=120)
    assert result["response"].status_code == 200
    assert len(result["response"].json()["embeddings"]) == 200
    proc.wait(timeout=60)
    lines = [json.loads(line) for line in proc.stderr.read().splitlines()
             if line.startswith("{")]
    assert any(entry["route"] == "/embed" and entry["status"] == 200 for entry in lines)
    assert all({"request_id", "method", "path", "status", "ms"} <= entry.keys()
               for entry in lines)
