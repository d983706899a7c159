"""`bertsearch --help/--version/embed` through CliRunner and once as a real subprocess."""

import json
import subprocess
import sys

import numpy as np
from click.testing import CliRunner

from cli import main


def run(*args, input=None):
    return CliRunner().invoke(main, list(args), input=input)


def test_help_lists_the_commands():
    result = run("--help")
    assert result.exit_code == 0
    assert "embed" in result.output and "Quick start" in result.output


def test_version():
    result = run("--version")
    assert result.exit_code == 0 and "bertsearch, version" in result.output


def test_embed_prints_json_lines(encoder):
    result = run("embed", "my dog is cute", "he likes playing")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["text"] for r in rows] == ["my dog is cute", "he likes playing"]
    expected = encoder.encode(["my dog is cute", "he likes playing"])
    assert np.allclose([r["embedding"] for r in rows], expected, atol=1e-6)


def test_embed_reads_stdin_and_honours_options(encoder):
    result = run("embed", "-", "--pooling", "cls", "--no-normalize",
                 input="first line\n\nsecond line\n")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["text"] for r in rows] == ["first line", "second line"]
    expected = encoder.encode(["first line", "second line"], pooling="cls", normalize=False)
    assert np.allclose([r["embedding"] for r in rows], expected, atol=1e-5)


def test_embed_reports_truncation_on_stderr():
    result = run("embed", "word " * 300)
    assert result.exit_code == 0
    assert "1 text(s) exceeded 256 tokens" in result.stderr


def test_unknown_model_is_one_line_and_nonzero(tmp_path):
    result = run("embed", "x", "--model", str(tmp_path / "missing"))
    assert result.exit_code == 1
    assert result.output.strip().count("\n") == 0
    assert result.output.startswith("Error: Model ") and "Traceback" not in result.output


def test_empty_input_is_one_line_and_nonzero():
    result = run("embed", "-", input="\n\n")
    assert result.exit_code == 1
    assert result.output.strip() == ("Error: No input: give at least one TEXT, or - to read "
                                     "texts from stdin.")


def test_real_subprocess():
    proc = subprocess.run([sys.executable, "-m", "cli", "embed", "hello world"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    row = json.loads(proc.stdout)
    assert row["text"] == "hello world" and len(row["embedding"]) == 384
    assert "Loading weights" not in proc.stderr  # loading noise is silenced
