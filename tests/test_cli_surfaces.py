"""Issue 20, the command line: honest progress where no terminal is watching, a clear line
on interrupt, fast answers that never load the model, one rule per input."""

import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner
from conftest import REPO, write_corpus
from test_server_e2e import free_port

import cli
from cli import main


def imports_of(*args) -> tuple[set[str], subprocess.CompletedProcess]:
    """The modules a `bertsearch` command imports (python -X importtime), and its result."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "cli", *map(str, args)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    modules = {line.split("|")[-1].strip() for line in proc.stderr.splitlines()
               if line.startswith("import time:")}
    return modules, proc


def test_errors_and_help_answer_without_loading_the_model(tmp_path):
    modules, proc = imports_of("index", tmp_path / "no-such-folder", "--index", tmp_path / "i")
    assert proc.returncode == 1 and "does not exist" in proc.stderr
    assert not {"torch", "transformers", "faiss", "numpy"} & modules
    modules, proc = imports_of("--help")
    assert proc.returncode == 0 and not {"torch", "transformers", "numpy"} & modules


def test_non_terminal_progress_lines_and_final_line(tmp_path, encoder, monkeypatch):
    docs = write_corpus(tmp_path / "docs", 12, paragraphs=4)
    monkeypatch.setattr(cli._progress_bar, "LOG_EVERY_S", 0.0)  # a line per step
    result = CliRunner().invoke(main, ["index", str(docs), "--index", str(tmp_path / "i"),
                                       "--batch-size", "8"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("indexing:")]
    assert len(lines) >= 12 and lines[-1].startswith("indexing: done, 12/12 files, 100%")
    assert all("passages at" in line and "/s" in line for line in lines)
    counts = [int(line.split(" passages at")[0].rsplit(" ", 1)[-1]) for line in lines]
    assert counts == sorted(counts) and counts[-1] > 0  # the count moves steadily


def test_interrupt_says_what_was_kept_and_a_rerun_continues(tmp_path):
    from test_crash import committed_documents

    docs = write_corpus(tmp_path / "docs", 60, paragraphs=6)
    command = [sys.executable, "-m", "cli", "index", str(docs), "--index",
               str(tmp_path / "i"), "--batch-size", "8", "--quiet"]
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while committed_documents(tmp_path / "i" / "passages.db") < 3 and \
            time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)  # some batches are committed, most are not
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    assert "Error: Interrupted after embedding" in err and "run the same command again" in err
    assert "Traceback" not in err
    rerun = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0 and "60 unchanged" not in rerun.stdout
    added = int(rerun.stdout.split(": ")[1].split(" added")[0])
    assert 0 < added < 60  # it carried on: what was committed before stayed


@pytest.fixture(scope="module")
def server(tmp_path_factory, sample_docs, encoder):
    from indexer import build_index

    root = tmp_path_factory.mktemp("remote")
    build_index(sample_docs, root / "idx", encoder)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "cli", "serve", "--index", str(root / "idx"),
                             "--port", str(port), "--api-key", "k", "--no-access-log",
                             "--log-level", "warning"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    import httpx

    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.2)
    yield base
    proc.terminate()
    proc.wait(timeout=60)


def test_query_through_a_server_never_loads_the_model(server):
    modules, proc = imports_of("query", "sharpen a knife", "--server", server, "--api-key",
                               "k", "-k", "2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "kitchen/knife-care.html" in proc.stdout.splitlines()[0]
    assert not {"torch", "transformers", "numpy", "faiss"} & modules
    _, wrong = imports_of("query", "x", "--server", server, "--api-key", "nope")
    assert wrong.returncode == 1 and "401" in wrong.stderr and "API key" in wrong.stderr
    _, gone = imports_of("query", "x", "--server", "http://127.0.0.1:9", "--api-key", "k")
    assert gone.returncode == 1 and "Cannot reach a bertsearch server" in gone.stderr


def test_one_rule_for_empty_text_across_surfaces(encoder):
    """An empty text is refused by the CLI as by HTTP (it used to be embedded)."""
    result = CliRunner().invoke(main, ["embed", ""])
    assert result.exit_code == 1 and "empty" in result.output
