"""A real `bertsearch serve` under uvicorn on 127.0.0.1: query it while it is re-indexed."""

import shutil
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
from conftest import REPO, write_corpus


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "cli", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=300, **kwargs)


@pytest.fixture
def server(tmp_path, sample_docs):
    docs = shutil.copytree(sample_docs, tmp_path / "docs")
    idx = tmp_path / "idx"
    assert cli("index", docs, "--index", idx).returncode == 0
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "serve", "--index", str(idx), "--port", str(port),
         "--api-key", "k3y", "--log-level", "warning"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.2)
        assert proc.poll() is None, proc.stderr.read().decode()
    yield base, docs, idx
    proc.terminate()
    proc.wait(timeout=30)


def test_query_over_http_while_reindexing(server):
    base, docs, idx = server
    auth = {"Authorization": "Bearer k3y"}
    with httpx.Client(base_url=base, headers=auth, timeout=60) as http:
        hits = http.post("/search", json={"query": "tide pools at low tide", "k": 2}).json()
        assert hits["hits"][0]["path"] == "tide-pools.md"
        assert httpx.post(f"{base}/search", json={"query": "x"}).status_code == 401

        write_corpus(docs / "more", 30, paragraphs=4)
        (docs / "more" / "zeppelin.md").write_text("Airships float because helium is lighter "
                                                   "than air; the Hindenburg used hydrogen.")
        statuses, failures, stop = [], [], threading.Event()

        def hammer():
            with httpx.Client(base_url=base, headers=auth, timeout=60) as c:
                while not stop.is_set():
                    try:
                        r = c.post("/search", json={"query": "helium airship", "k": 5})
                        statuses.append(r.status_code)
                        if len(r.json()["hits"]) != 5:
                            failures.append(r.text)
                    except Exception as exc:
                        failures.append(repr(exc))

        thread = threading.Thread(target=hammer)
        thread.start()
        try:
            result = cli("index", docs, "--index", idx, "--batch-size", "16")
        finally:
            stop.set()
            thread.join()
        assert result.returncode == 0, result.stderr
        assert "31 added" in result.stdout
        assert not failures and len(statuses) > 5 and set(statuses) == {200}

        hits = http.post("/search", json={"query": "helium airship", "k": 1}).json()["hits"]
        assert hits[0]["path"] == "more/zeppelin.md"
        stats = http.get("/stats").json()
        assert stats["index"]["documents"] == 6 + 31
