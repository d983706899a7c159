"""Inference backends: ONNX fp32 and int8 against exact PyTorch, the quality guard, caching,
and indexes that refuse to mix backends."""

import shutil

import numpy as np
import pytest

from embedder import Encoder, InvalidInputError
from embedder.backends import BACKENDS, DEFAULT_BACKEND, cosine_to
from indexer import IndexMismatchError, build_index


@pytest.fixture(scope="module", autouse=True)
def private_cache(tmp_path_factory):
    """Build the ONNX files once for this module, in a temporary cache folder."""
    import os

    old = os.environ.get("BERTSEARCH_CACHE")
    os.environ["BERTSEARCH_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        os.environ.pop("BERTSEARCH_CACHE")
    else:
        os.environ["BERTSEARCH_CACHE"] = old


@pytest.fixture(scope="module")
def encoders(encoder):
    return {"torch": encoder, **{b: Encoder.load(backend=b) for b in BACKENDS if b != "torch"}}


def held_out_passages(sample_docs, encoder):
    from indexer.build import chunk_document
    from indexer.chunking import ChunkSettings

    passages = []
    for path in sorted(sample_docs.rglob("*.*")):
        text = path.read_text(encoding="utf-8")
        passages += [c.text for c in chunk_document(text, encoder, ChunkSettings(48, 8))]
    return passages + ["short query", "how do I sharpen a knife?"]


def test_onnx_fp32_matches_torch(encoders, sample_docs):
    texts = held_out_passages(sample_docs, encoders["torch"])
    reference = encoders["torch"].encode(texts)
    got = encoders["onnx"].encode(texts)
    assert np.abs(got - reference).max() < 1e-4
    raw = encoders["onnx"].encode(texts[:3], pooling="cls", normalize=False)
    assert np.allclose(raw, encoders["torch"].encode(texts[:3], pooling="cls", normalize=False),
                       atol=1e-3)


@pytest.fixture(scope="module")
def stsb(encoders, shared_data):
    """STS-B test Spearman x 100 of each backend, computed once."""
    from scipy.stats import spearmanr

    rows = [line.rstrip("\n").split("\t")
            for line in (shared_data / "stsb" / "sts-test.tsv").open(encoding="utf-8")]
    scores = {}
    for name, encoder in encoders.items():
        left = encoder.encode([r[5] for r in rows])
        right = encoder.encode([r[6] for r in rows])
        scores[name] = spearmanr((left * right).sum(1),
                                 [float(r[4]) for r in rows]).statistic * 100
    return scores


@pytest.mark.parametrize("backend", BACKENDS)
def test_quality_guard(backend, encoders, sample_docs, stsb):
    """Mean cosine >= 0.99 to torch fp32 on held-out text and STS-B test Spearman within
    0.5 of fp32: what a backend must meet to be the default (int8 is measured too)."""
    texts = held_out_passages(sample_docs, encoders["torch"])
    cosine = cosine_to(encoders["torch"].encode(texts), encoders[backend].encode(texts))
    gap = abs(stsb[backend] - stsb["torch"])
    meets_guard = cosine.mean() >= 0.99 and gap <= 0.5
    assert meets_guard or backend != DEFAULT_BACKEND
    if backend in ("onnx", "onnx-int8"):
        assert meets_guard, (backend, cosine.mean(), gap)


def test_onnx_files_are_built_once(encoders):
    from embedder.backends import cache_dir

    files = sorted(cache_dir().rglob("*.onnx"))
    assert [f.name for f in files] == ["model-int8.onnx", "model-optimised.onnx", "model.onnx"]
    stamps = [f.stat().st_mtime_ns for f in files]
    Encoder.load(backend="onnx-int8")
    assert [f.stat().st_mtime_ns for f in files] == stamps
    assert not list(cache_dir().rglob(".*"))  # no temporary files left behind


def test_unknown_backend():
    with pytest.raises(InvalidInputError, match="backend must be one of"):
        Encoder.load(backend="tensorrt")


def test_index_records_and_refuses_to_mix_backends(encoders, tmp_path, sample_docs):
    docs = shutil.copytree(sample_docs, tmp_path / "docs")
    build_index(docs, tmp_path / "idx", encoders["onnx-int8"])
    from indexer import Index

    with Index.open(tmp_path / "idx") as index:
        assert index.settings.backend == "onnx-int8"
        assert index.encoder.backend_name == "onnx-int8"  # queries use the same backend
        assert index.search("sharpen a knife", 1)[0].path == "kitchen/knife-care.html"
    with pytest.raises(IndexMismatchError, match="backend onnx-int8 vs torch"):
        build_index(docs, tmp_path / "idx", encoders["torch"])
    report = build_index(docs, tmp_path / "idx", encoders["torch"], rebuild=True)
    assert report.added == 6
