"""`bertsearch index` and `bertsearch query` through CliRunner, and once as real processes."""

import json
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner
from conftest import REPO

from cli import main


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def docs(tmp_path, sample_docs):
    return shutil.copytree(sample_docs, tmp_path / "docs")


def test_index_query_and_json(docs, tmp_path):
    idx = tmp_path / "idx"
    result = run("index", docs, "--index", idx)
    assert result.exit_code == 0, result.output
    assert "6 added, 0 changed, 0 removed, 0 unchanged, 0 skipped" in result.stdout
    result = run("index", docs, "--index", idx)
    assert "0 added, 0 changed, 0 removed, 6 unchanged" in result.stdout
    assert "0 passages written" in result.stdout

    result = run("query", "baking bread with a starter", "--index", idx, "-k", "2")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith(" 1. ") and "kitchen/sourdough.rst:" in lines[0]
    assert len([line for line in lines if line[:3].strip().endswith(".")]) == 2

    result = run("query", "baking bread with a starter", "--index", idx, "--json", "-k", "3")
    answer = json.loads(result.stdout)  # the shape POST /search answers with
    assert answer["query"] == "baking bread with a starter" and answer["mode"] == "hybrid"
    hits = answer["hits"]
    assert len(hits) == 3 and hits[0]["path"] == "kitchen/sourdough.rst"
    for key in ("passage_id", "file", "ordinal", "start", "end", "line_start", "line_end",
                "score", "text"):
        assert key in hits[0]
    assert hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]


def test_skipped_files_are_listed(docs, tmp_path):
    (docs / "blob.txt").write_bytes(b"\x00\x00\x00")
    result = run("index", docs, "--index", tmp_path / "idx")
    assert result.exit_code == 0
    assert "1 skipped" in result.stdout
    assert "skipped blob.txt: binary file" in result.stderr
    quiet = run("index", docs, "--index", tmp_path / "idx", "--quiet")
    assert "skipped blob.txt" not in quiet.stderr


def test_include_exclude_and_rebuild(docs, tmp_path, tiny_model_dir):
    idx = tmp_path / "idx"
    result = run("index", docs, "--index", idx, "--include", "*.md", "--exclude", "ml/*")
    assert "1 added" in result.stdout  # tide-pools.md only
    result = run("index", docs, "--index", idx, "--model", tiny_model_dir, "--chunk-tokens",
                 "100")
    assert result.exit_code == 1
    assert result.output.startswith("Error: Index ") and "--rebuild" in result.output
    assert result.output.count("\n") == 1
    result = run("index", docs, "--index", idx, "--model", tiny_model_dir, "--chunk-tokens",
                 "100", "--rebuild")
    assert result.exit_code == 0 and "6 added" in result.stdout
    result = run("index", docs, "--index", idx, "--chunk-tokens", "100")  # keeps its model
    assert result.exit_code == 0 and "6 unchanged" in result.stdout


@pytest.mark.parametrize("args, message", [
    (["query", "x", "--index", "{tmp}/none"], "Error: No index at"),
    (["index", "{tmp}/missing", "--index", "{tmp}/idx"], "Error: Folder"),
    (["index", "{docs}", "--index", "{tmp}/idx", "--chunk-tokens", "999"],
     "Error: Passage size must be between"),
])
def test_errors_are_one_line(args, message, tmp_path, docs):
    result = run(*[a.format(tmp=tmp_path, docs=docs) for a in args])
    assert result.exit_code == 1
    assert result.output.startswith(message) and result.output.count("\n") == 1
    assert "Traceback" not in result.output


def test_real_processes(docs, tmp_path):
    idx = tmp_path / "idx"
    cli = [sys.executable, "-m", "cli"]
    done = subprocess.run(cli + ["index", str(docs), "--index", str(idx)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr  # no progress bar when stderr is not a terminal
    found = subprocess.run(cli + ["query", "tide pools", "--index", str(idx), "--json"],
                           cwd=REPO, capture_output=True, text=True, timeout=300)
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)["hits"][0]["path"] == "tide-pools.md"


def test_progress_bar_on_a_terminal(docs, tmp_path):
    import fcntl
    import os
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # 120 columns
    proc = subprocess.Popen([sys.executable, "-m", "cli", "index", str(docs), "--index",
                             str(tmp_path / "idx")], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=slave)
    os.close(slave)
    output = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the terminal closed: the process is done
            break
        if not chunk:
            break
        output += chunk
    proc.wait(timeout=300)
    os.close(master)
    text = output.decode(errors="replace")
    assert proc.returncode == 0
    assert "6/6 files" in text and "passages/s" in text and "100%" in text
