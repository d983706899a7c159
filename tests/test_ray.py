"""Issue 16: embedding on a local Ray cluster gives the same index as in-process, an
unchanged folder embeds nothing, and an actor that dies mid-run leaves a consistent index
that a re-run completes."""

import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, write_corpus
from test_build import assert_consistent

from indexer import Index, build_index

ray = pytest.importorskip("ray", reason="the ray extra is not installed")


@pytest.fixture(scope="module")
def cluster():
    """One local Ray for the module (`ray.init(num_cpus=2)`); runs join it with ray='auto'."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level="ERROR")
    yield "auto"
    ray.shutdown()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("ray") / "docs", 24, paragraphs=5)


def passages_and_vectors(index_dir):
    with Index.open(index_dir) as index:
        store = index.store
        ids = store.passage_ids()
        rows = store.passages(list(ids))
        by_place = {(rows[i].path, rows[i].ordinal): i for i in ids}
        vectors = {i: v for block_ids, block in store.stored_vectors(ids)
                   for i, v in zip(block_ids, block)}
        return {place: (rows[i].text, vectors[i]) for place, i in by_place.items()}


def test_a_ray_built_index_equals_the_in_process_one(cluster, corpus, tmp_path, encoder):
    local = build_index(corpus, tmp_path / "local", encoder)
    remote = build_index(corpus, tmp_path / "ray", encoder, ray=cluster, ray_actors=2,
                         batch_passages=48)
    assert (remote.added, remote.passages_written) == (local.added, local.passages_written)
    mine, theirs = passages_and_vectors(tmp_path / "local"), passages_and_vectors(
        tmp_path / "ray")
    assert mine.keys() == theirs.keys()
    for place, (text, vector) in mine.items():
        assert theirs[place][0] == text
        assert np.allclose(theirs[place][1], vector, atol=1e-5)
    queries = [f"river engine part {i}" for i in range(20)]
    with Index.open(tmp_path / "local") as a, Index.open(tmp_path / "ray") as b:
        for query in queries:
            assert [h.path for h in a.search(query, 10)] == [h.path for h in b.search(query, 10)]
    again = build_index(corpus, tmp_path / "ray", encoder, ray=cluster)
    assert again.passages_written == 0 and again.unchanged == 24
    assert_consistent(tmp_path / "ray")


def test_an_actor_that_dies_mid_run_leaves_a_consistent_index(cluster, corpus, tmp_path,
                                                               encoder, monkeypatch):
    """The test hook makes the actor exit at its first batch, once: Ray restarts it and
    retries, or the run stops with a clear error; either way the index is consistent and a
    re-run completes it."""
    from indexer.distributed import FAIL_AFTER_ENV, RayError

    ray.shutdown()  # workers inherit the hook from the environment Ray starts with
    monkeypatch.setenv(FAIL_AFTER_ENV, "0")
    monkeypatch.setenv(FAIL_AFTER_ENV + "_MARKER", str(tmp_path / "died"))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        build_index(corpus, tmp_path / "idx", encoder, ray="auto")  # one window
    except RayError as error:
        assert "run the same command again" in str(error)
    assert (tmp_path / "died").exists()  # the actor did die
    assert_consistent(tmp_path / "idx")
    build_index(corpus, tmp_path / "idx", encoder, ray="auto")
    clean = build_index(corpus, tmp_path / "clean", encoder)
    with Index.open(tmp_path / "idx") as a, Index.open(tmp_path / "clean") as b:
        assert a.store.counts() == b.store.counts() == (24, clean.passages_written)
    assert_consistent(tmp_path / "idx")


def test_a_missing_extra_is_a_one_line_hint(tmp_path, corpus):
    code = ("import sys; sys.modules['ray'] = None; from cli import main; "
            f"main(['index', '{corpus}', '--index', '{tmp_path / 'i'}', '--ray'])")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 1
    assert proc.stderr.strip() == "Error: This needs ray: pip install 'bertsearch[ray]'"
