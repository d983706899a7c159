"""Inference backends: ONNX fp32 and int8 against exact PyTorch, the quality guard, caching,
and indexes that refuse to mix backends."""

import shutil

import numpy as np
import pytest
from conftest import cosine_rows

from embedder import Encoder, InvalidInputError
from embedder.backends import BACKENDS, DEFAULT_BACKEND
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
    from indexer.chunking import ChunkSettings
    from indexer.passages import chunk_document

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
def reference():
    """sentence-transformers over the same packaged folder: the reference implementation."""
    from sentence_transformers import SentenceTransformer

    from embedder import resolve_model_path

    return SentenceTransformer(str(resolve_model_path("default")), device="cpu")


@pytest.fixture(scope="module")
def stsb(encoders, reference, shared_data):
    """STS-B test Spearman x 100 of each backend and of the reference, computed once."""
    from scipy.stats import spearmanr

    rows = [line.rstrip("\n").split("\t")
            for line in (shared_data / "stsb" / "sts-test.tsv").open(encoding="utf-8")]
    gold = [float(r[4]) for r in rows]
    embedders = {**{name: enc.encode for name, enc in encoders.items()},
                 "reference": reference.encode}
    scores = {}
    for name, encode in embedders.items():
        left, right = encode([r[5] for r in rows]), encode([r[6] for r in rows])
        scores[name] = spearmanr(cosine_rows(left, right), gold).statistic * 100
    return scores


@pytest.mark.parametrize("backend", BACKENDS)
def test_quality_guard(backend, encoders, reference, sample_docs, stsb):
    """Against sentence-transformers, the reference: mean cosine >= 0.99 on held-out text
    and STS-B test Spearman within 0.5 — what a backend must meet to be the default. The
    exact backends (torch, onnx) agree with the reference to 1e-4 as well."""
    texts = held_out_passages(sample_docs, encoders["torch"])
    expected = reference.encode(texts)
    got = encoders[backend].encode(texts)
    cosine = cosine_rows(expected, got)
    gap = abs(stsb[backend] - stsb["reference"])
    assert stsb["reference"] == pytest.approx(82.03, abs=0.01)  # the published figure
    assert cosine.mean() >= 0.99 and gap <= 0.5, (backend, cosine.mean(), gap)
    if backend != "onnx-int8":
        assert np.abs(got - expected).max() < 1e-4 and gap < 0.01
    assert DEFAULT_BACKEND != "onnx-int8"


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


def test_small_calls_run_on_onnx_with_the_same_vectors(encoders, tmp_path):
    """`fast_small_calls`: a lone query on ONNX Runtime fp32, big batches on packed torch;
    the vectors agree to float rounding either way."""
    from embedder import Encoder

    torch_encoder = Encoder.load()  # its own, so the shared session encoder is untouched
    texts = ["how do I mount debugfs?", "tide pools at low tide", "a", "b", "c"]
    before = torch_encoder.encode(texts)
    singles = [torch_encoder.encode([t])[0] for t in texts]
    assert torch_encoder.fast_small_calls(export=True)  # the module's cache has the export
    assert torch_encoder._small_runner is not None
    after = [torch_encoder.encode([t])[0] for t in texts]
    assert np.allclose(after, singles, atol=1e-5) and np.allclose(after, before, atol=1e-5)
    assert np.allclose(torch_encoder.encode(texts), before, atol=1e-6)  # 5 texts: torch
    assert not encoders["onnx-int8"].fast_small_calls()  # int8 vectors differ: never mixed


def test_the_first_export_says_so_once(tiny_model_dir, tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("BERTSEARCH_CACHE", str(tmp_path / "fresh-cache"))
    capfd.readouterr()
    Encoder.load(str(tiny_model_dir), backend="onnx")
    first = capfd.readouterr()
    assert first.out == ""  # stdout stays clean for `bertsearch embed`
    assert first.err.count("exporting the model to ONNX for the onnx backend") == 1
    assert str(tmp_path / "fresh-cache") in first.err
    Encoder.load(str(tiny_model_dir), backend="onnx")
    assert "exporting" not in capfd.readouterr().err  # cached: nothing to say
