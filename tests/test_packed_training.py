"""Packed (padding-free) NSP training passes: the same loss and gradients as the padded
batch, for a seeded tiny BERT with LoRA adapters on its frozen bottom layer."""

import random

import pytest
import torch
from transformers import BertForPreTraining

from embedder.inputs import SpecialTokens, pack_inputs
from embedder.training.loop import collate_pairs, set_trainable
from embedder.training.lora import add_lora
from embedder.training.objectives import packed_nsp_loss, pretraining_loss
from embedder.training.pairs import NspPair, hf_next_sentence_label


@pytest.fixture
def tiny(tiny_model_dir):
    torch.manual_seed(0)
    model = BertForPreTraining.from_pretrained(tiny_model_dir)
    set_trainable(model, lambda name: not name.startswith(("bert.embeddings.",
                                                          "bert.encoder.layer.0.")))
    add_lora(model, [0], rank=2)
    with torch.no_grad():  # adapters that do something
        for name, param in model.named_parameters():
            if name.endswith(".B"):
                param.normal_(0, 0.02)
    return model


def pairs(seed=0, n=9):
    rng = random.Random(seed)
    return [NspPair([rng.randrange(1000, 5000) for _ in range(rng.randint(2, 40))],
                    [rng.randrange(1000, 5000) for _ in range(rng.randint(1, 70))],
                    rng.randint(0, 1), "next") for _ in range(n)]


def gradients(model):
    return {name: p.grad.clone() for name, p in model.named_parameters()
            if p.requires_grad and p.grad is not None}


def test_packed_loss_and_gradients_equal_the_padded_ones(tiny, encoder):
    special = SpecialTokens.of(encoder.tokenizer)
    batch_pairs = pairs()
    tiny.eval()  # no dropout: the two passes must agree
    padded = collate_pairs(batch_pairs, special, 128)
    padded.pop("special_mask")
    loss, stats = pretraining_loss(tiny, padded, mlm=False)
    loss.backward()
    expected = gradients(tiny)
    tiny.zero_grad()
    inputs = [pack_inputs(p.ids_a, p.ids_b, special, 128) for p in batch_pairs]
    labels = torch.tensor([hf_next_sentence_label(p.is_next) for p in batch_pairs])
    packed_loss, packed_stats = packed_nsp_loss(tiny, inputs, labels)
    packed_loss.backward()
    got = gradients(tiny)
    assert len({len(i) for i in inputs}) > 5  # lengths really differ: padding was there
    assert packed_loss.item() == pytest.approx(loss.item(), abs=1e-5)
    assert packed_stats["nsp_correct"] == stats["nsp_correct"]
    assert set(got) == set(expected) and any(n.endswith(".A") for n in got)  # LoRA trains
    for name in expected:
        assert torch.allclose(got[name], expected[name], atol=1e-5), name


def test_packed_training_applies_dropout(tiny, encoder):
    special = SpecialTokens.of(encoder.tokenizer)
    inputs = [pack_inputs(p.ids_a, p.ids_b, special, 128) for p in pairs()]
    labels = torch.zeros(len(inputs), dtype=torch.long)
    tiny.train()
    torch.manual_seed(1)
    first = packed_nsp_loss(tiny, inputs, labels)[0].item()
    torch.manual_seed(2)
    second = packed_nsp_loss(tiny, inputs, labels)[0].item()
    tiny.eval()
    assert first != second  # dropout masks differ from seed to seed
    assert packed_nsp_loss(tiny, inputs, labels)[0].item() == pytest.approx(
        packed_nsp_loss(tiny, inputs, labels)[0].item())
