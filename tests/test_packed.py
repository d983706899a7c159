"""Padding-free inference: packed texts give the padded forward pass's vectors."""

import random
from itertools import pairwise

import numpy as np
import pytest
import torch

from embedder import Encoder
from embedder.encoder import collate, pool
from embedder.inputs import pack_inputs
from embedder.packed import PackedBatch, can_pack, packed_hidden_states, pool_packed
from embedder.planning import fill_batches

TEXTS = [
    "ok",
    "A man is playing a guitar.",
    ("BERT is pretrained with masked language modelling and next sentence prediction, "
     "then fine-tuned for tasks such as sentiment analysis from the [CLS] vector."),
    "The cat sat.",
    "word " * 300,  # cut to the model's limit
    ("Retrieval-augmented generation feeds the passages most similar to a question to a "
     "language model."),
]


def _inputs(encoder, texts, pairs=False):
    ids = encoder.tokenize(texts)
    if pairs:  # [CLS] A [SEP] B [SEP]: segment ids 1 on B
        return [pack_inputs(a, b, encoder.special, 128) for a, b in pairwise(ids)]
    return [pack_inputs(i, None, encoder.special, encoder.max_seq_length) for i in ids]


def _padded_hidden(model, inputs, pad):
    tensors = collate(inputs, max(len(p) for p in inputs), pad)
    with torch.inference_mode():
        hidden = model(**tensors).last_hidden_state
    return hidden, tensors["attention_mask"]


def _check_against_padded(model, inputs, pad):
    inputs = sorted(inputs, key=len, reverse=True)
    batch = PackedBatch.of(inputs)
    with torch.inference_mode():
        packed = packed_hidden_states(model, batch)
    hidden, mask = _padded_hidden(model, inputs, pad)
    assert packed.shape == (sum(batch.lengths), model.config.hidden_size)
    assert torch.allclose(packed, hidden[mask.bool()], atol=1e-5)
    for pooling in ("mean", "cls"):
        assert torch.allclose(pool_packed(packed, batch, pooling),
                              pool(hidden, mask, pooling), atol=1e-5)


@pytest.mark.parametrize("pairs", [False, True])
def test_real_model_matches_its_padded_forward(encoder, pairs):
    assert can_pack(encoder.model)
    _check_against_padded(encoder.model, _inputs(encoder, TEXTS, pairs), encoder.special.pad)


def test_a_different_bert_matches_too(tiny_model_dir, encoder):
    from transformers import BertModel

    model = BertModel.from_pretrained(tiny_model_dir).eval()
    assert can_pack(model)
    rng = random.Random(0)
    texts = [" ".join(rng.choice(TEXTS[1].split()) for _ in range(rng.randint(1, 60)))
             for _ in range(40)]
    _check_against_padded(model, _inputs(encoder, texts)[:40], encoder.special.pad)


def test_attention_groups_cover_every_token_and_keep_long_texts_apart(encoder):
    lengths = [200] + [12] * 20 + [9] * 10
    inputs = [pack_inputs([1000] * (n - 2), None, encoder.special, 256) for n in lengths]
    batch = PackedBatch.of(inputs)
    groups = batch.groups
    assert groups[0].texts == 1 and groups[0].mask is None  # 200 tokens alone, no padding
    assert [g.start for g in groups[1:]] == [g.end for g in groups[:-1]]
    assert groups[-1].end == sum(lengths)
    assert sum(g.texts for g in groups) == len(lengths)
    for g in groups:
        assert len(g.slots) == g.end - g.start


def test_other_model_classes_are_padded_and_still_exact(encoder, tiny_model_dir):
    from transformers import BertModel

    class CustomBert(BertModel):  # a subclass may change the forward pass: not packed
        pass

    model = CustomBert.from_pretrained(tiny_model_dir).eval()
    assert not can_pack(model)
    custom = Encoder(model, encoder.tokenizer, name="custom", source=str(tiny_model_dir),
                     max_seq_length=128)
    assert not custom._runner.packs
    plain = Encoder.load(str(tiny_model_dir), device="cpu")
    assert plain._runner.packs
    assert np.allclose(custom.encode(TEXTS[:4]), plain.encode(TEXTS[:4]), atol=1e-5)


def test_fill_batches_fills_each_pass_to_its_budgets():
    rng = random.Random(5)
    counts = [rng.randint(3, 300) for _ in range(300)]
    order = sorted(range(len(counts)), key=lambda i: -counts[i])
    plan = fill_batches(order, counts, batch_size=16, max_tokens=1024, limit=256)
    assert [i for b in plan for i in b] == order
    for b, following in pairwise(plan):
        tokens = sum(min(counts[i], 256) for i in b)
        assert len(b) == 16 or tokens + min(counts[following[0]], 256) > 1024
        assert len(b) <= 16 and (len(b) == 1 or tokens <= 1024)
    assert fill_batches([], [], 16, 1024, 256) == []
