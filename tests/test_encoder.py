"""The encoder with the real all-MiniLM-L6-v2: shapes, pooling oracles, order, truncation."""

import warnings

import numpy as np
import pytest
import torch

from embedder import (
    Encoder,
    InvalidInputError,
    ModelLoadError,
    ModelNotFoundError,
    TruncationWarning,
    resolve_model_path,
)

TEXTS = [
    "A man is playing a guitar.",
    "The new movie is awesome.",
    "BERT is pretrained with masked language modelling and next sentence prediction.",
    "A cheetah chases its prey across the savanna at full speed.",
    "ok",
]


def _token_vectors(encoder, text):
    """The model's last hidden states for one text, straight from transformers."""
    batch = encoder.tokenizer([text], return_tensors="pt")
    with torch.inference_mode():
        return encoder.model(**batch).last_hidden_state[0].numpy()


def test_shape_dtype_and_unit_norm(encoder):
    vectors = encoder.encode(TEXTS)
    assert vectors.shape == (len(TEXTS), 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert encoder.dimension == 384


def test_empty_list_gives_zero_rows(encoder):
    vectors = encoder.encode([])
    assert vectors.shape == (0, 384) and vectors.dtype == np.float32


def test_mean_pooling_recomputed_by_hand(encoder):
    for text in TEXTS[:3]:
        tokens = _token_vectors(encoder, text)
        expected = tokens.mean(axis=0)
        got = encoder.encode([text], pooling="mean", normalize=False)[0]
        assert np.allclose(got, expected, atol=1e-5)


def test_cls_pooling_returns_the_cls_vector(encoder):
    text = TEXTS[2]
    expected = _token_vectors(encoder, text)[0]
    got = encoder.encode([text], pooling="cls", normalize=False)[0]
    assert np.allclose(got, expected, atol=1e-5)
    assert not np.allclose(got, encoder.encode([text], pooling="mean", normalize=False)[0])


def test_matches_sentence_transformers(encoder):
    from sentence_transformers import SentenceTransformer

    folder = str(resolve_model_path(encoder.source))
    reference = SentenceTransformer(folder, device="cpu").encode(TEXTS)
    assert np.allclose(encoder.encode(TEXTS), reference, atol=1e-5)


def test_batched_equals_one_at_a_time_and_order_is_kept(encoder):
    batched = encoder.encode(TEXTS, batch_size=2)
    single = np.stack([encoder.encode([t])[0] for t in TEXTS])
    assert np.allclose(batched, single, atol=1e-5)
    reversed_ = encoder.encode(TEXTS[::-1], batch_size=3)
    assert np.allclose(reversed_[::-1], batched, atol=1e-5)


def test_truncation_is_reported(encoder):
    long_text = "word " * 400
    result = encoder.encode_detailed(["short", long_text, "also short"])
    assert result.truncated == [1]
    assert result.token_counts[1] == 402 and result.token_counts[0] == 3
    with pytest.warns(TruncationWarning, match="1 of 2 texts"):
        encoder.encode([long_text, "short"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        encoder.encode(["short"])  # no warning when nothing is cut


def test_truncated_text_embeds_its_first_max_seq_length_tokens(encoder):
    words = [f"w{i}" for i in range(600)]
    long_text = " ".join(words)
    ids = encoder.tokenize([long_text])[0][: encoder.max_seq_length - 2]
    head = encoder.tokenizer.decode(ids)
    with pytest.warns(TruncationWarning):
        cut = encoder.encode([long_text])[0]
    assert np.allclose(cut, encoder.encode([head])[0], atol=1e-4)


def test_rag_friendly_methods(encoder):
    docs = encoder.embed_documents(TEXTS[:2])
    assert isinstance(docs, list) and isinstance(docs[0], list) and len(docs[0]) == 384
    query = encoder.embed_query(TEXTS[0])
    assert np.allclose(query, docs[0], atol=1e-6)


def test_similar_texts_are_closer(encoder):
    a, b, c = encoder.encode(["A man plays the guitar.", "Someone is playing a guitar.",
                              "The stock market fell sharply today."])
    assert a @ b > a @ c + 0.3


@pytest.mark.parametrize("bad, error", [
    ("a single string", "list of texts"),
    ([1, 2], "not a string"),
])
def test_bad_texts_are_refused(encoder, bad, error):
    with pytest.raises(InvalidInputError, match=error):
        encoder.encode(bad)


def test_bad_pooling_and_batch_size(encoder):
    with pytest.raises(InvalidInputError, match="pooling must be one of"):
        encoder.encode(["x"], pooling="max")
    with pytest.raises(InvalidInputError, match="batch_size"):
        encoder.encode(["x"], batch_size=0)


def test_unknown_model_is_a_clear_error(tmp_path):
    with pytest.raises(ModelNotFoundError, match="neither a local folder"):
        Encoder.load(tmp_path / "nope")
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        Encoder.load(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ModelLoadError, match="Could not load"):
        Encoder.load(tmp_path)


def test_loads_a_plain_hugging_face_folder(encoder, tmp_path):
    """A folder saved by transformers (no sentence-transformers files) loads, mean pooled."""
    encoder.model.save_pretrained(tmp_path)
    encoder.tokenizer.save_pretrained(tmp_path)
    plain = Encoder.load(tmp_path)
    assert plain.pooling == "mean"
    assert np.allclose(plain.encode(TEXTS[:2]), encoder.encode(TEXTS[:2]), atol=1e-5)
    assert plain.fingerprint == encoder.fingerprint  # the same weights


def test_stsb_test_spearman_reproduces_the_published_figure(encoder, shared_data):
    """all-MiniLM-L6-v2 scores 82.03 Spearman on STS-B test with mean pooling + cosine."""
    from scipy.stats import spearmanr

    rows = [line.rstrip("\n").split("\t")
            for line in (shared_data / "stsb" / "sts-test.tsv").open(encoding="utf-8")]
    gold = [float(r[4]) for r in rows]
    left = encoder.encode([r[5] for r in rows], batch_size=64)
    right = encoder.encode([r[6] for r in rows], batch_size=64)
    cosine = (left * right).sum(axis=1)
    spearman = spearmanr(cosine, gold).statistic * 100
    assert len(rows) == 1379
    assert abs(spearman - 82.03) <= 0.5, spearman
