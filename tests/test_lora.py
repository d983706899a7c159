"""LoRA adapters on frozen layers: training, checkpoints, resume and low-rank export."""

import numpy as np
import pytest
import torch
from test_pretrain import config
from transformers import BertForPreTraining

from embedder.coherence import CoherenceScorer, load_base
from embedder.errors import ModelLoadError
from embedder.training.coherence import save_delta
from embedder.training.lora import add_lora, factorize, lora_state, merged_state_dict
from embedder.training.pretrain import load_for_pretraining, pretrain

STORY = ["The storm reached the harbour at dusk.", "Boats strained against their ropes.",
         "By morning the sea was calm again.", "Fishermen counted the damage."]


def test_adapters_start_as_the_identity_and_train_only_themselves(toy_corpus, tmp_path):
    cfg = config(toy_corpus, tmp_path / "out", freeze_layers=1, lora_rank=4)
    torch.manual_seed(0)
    model, _ = load_for_pretraining(cfg, "cpu")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {n for n in trainable if n.startswith("bert.encoder.layer.0.")} == {
        n for n in trainable if n.startswith("bert.encoder.layer.0.") and n.endswith((".A", ".B"))}
    assert len([n for n in trainable if n.endswith(".A")]) == 6  # six dense weights
    query = model.bert.encoder.layer[0].attention.self.query
    assert torch.equal(query.weight, query.parametrizations.weight.original)  # B = 0


def test_checkpoint_is_plain_bert_and_bottom_changes_are_low_rank(toy_corpus, tmp_path):
    torch.manual_seed(0)
    start, _ = load_for_pretraining(config(toy_corpus, tmp_path / "s", freeze_layers=1), "cpu")
    initial = {k: v.clone() for k, v in start.state_dict().items()}
    out = tmp_path / "out"
    pretrain(config(toy_corpus, out, steps=6, freeze_layers=1, lora_rank=2))
    saved = BertForPreTraining.from_pretrained(out).state_dict()
    assert not any("parametrizations" in k for k in saved)
    change = saved["bert.encoder.layer.0.intermediate.dense.weight"] - \
        initial["bert.encoder.layer.0.intermediate.dense.weight"]
    assert change.abs().max() > 0
    assert torch.linalg.matrix_rank(change, atol=1e-6) <= 2
    assert torch.equal(saved["bert.encoder.layer.0.output.dense.bias"],
                       initial["bert.encoder.layer.0.output.dense.bias"])  # frozen
    assert torch.equal(saved["bert.embeddings.word_embeddings.weight"],
                       initial["bert.embeddings.word_embeddings.weight"])


def test_resume_keeps_the_adapters(toy_corpus, tmp_path):
    class Interrupted(Exception):
        pass

    def interrupt(metrics):
        if metrics.step == 5:
            raise Interrupted

    settings = dict(steps=8, save_every=4, freeze_layers=1, lora_rank=2)
    whole = pretrain(config(toy_corpus, tmp_path / "whole", **settings))
    with pytest.raises(Interrupted):
        pretrain(config(toy_corpus, tmp_path / "split", **settings), progress=interrupt)
    resumed = pretrain(config(toy_corpus, tmp_path / "split", **settings), resume=True)
    # the base weights are recovered as merged - B @ A: equal up to float rounding
    assert np.allclose(resumed.losses, whole.losses[4:], atol=1e-4)
    state = torch.load(tmp_path / "split" / "training_state.pt", weights_only=False)
    assert len(state["lora"]) == 12


def test_factorize_recovers_low_rank_changes_and_refuses_full_ones():
    torch.manual_seed(0)
    change = torch.randn(48, 3) @ torch.randn(3, 32)
    b, a = factorize(change, 3)
    assert b.shape == (48, 3) and a.shape == (3, 32)
    assert torch.allclose(b @ a, change, atol=1e-4)
    with pytest.raises(ValueError, match="not of rank 3"):
        factorize(torch.randn(48, 32), 3)


def test_lora_delta_round_trip_with_the_real_encoder(tmp_path):
    model, tokenizer = load_base()
    add_lora(model, range(4), rank=4)
    torch.manual_seed(0)
    with torch.no_grad():
        for name, tensor in model.named_parameters():
            if name.endswith(".B"):
                tensor.normal_(std=0.02)
        model.cls.seq_relationship.weight.normal_()
    state = merged_state_dict(model)
    assert len(lora_state(model)) == 48
    merged, _ = load_base()
    merged.load_state_dict(state)
    folder = save_delta(merged, tmp_path / "delta", layers=[4, 5], lora_rank=4)
    loaded = CoherenceScorer.load(folder)
    in_memory = CoherenceScorer(merged, tokenizer, name="mem")
    pairs = list(zip(STORY, STORY[1:]))
    assert np.allclose(loaded.scores(pairs), in_memory.scores(pairs), atol=3e-3)  # fp16
    with pytest.raises(ModelLoadError, match="not trained through LoRA"):
        save_delta(merged, tmp_path / "bad", layers=[4, 5], lora_rank=2)


def test_cli_pretrain_with_adapters(toy_corpus, tmp_path):
    from click.testing import CliRunner

    from cli import main

    out = tmp_path / "cli-lora"
    args = ["pretrain", str(toy_corpus), "--out", str(out), "--from-scratch", "--hidden-size",
            "32", "--layers", "2", "--heads", "2", "--batch-size", "4", "--max-length", "32",
            "--steps", "2", "--lora-rank", "2"]
    bad = CliRunner().invoke(main, args)
    assert bad.exit_code == 1 and "set freeze layers" in bad.output
    assert bad.output.count("\n") == 1
    result = CliRunner().invoke(main, args + ["--freeze-layers", "1"])
    assert result.exit_code == 0, result.output
    state = torch.load(out / "training_state.pt", weights_only=False)
    assert len(state["lora"]) == 12


def test_training_continues_from_the_packaged_coherence_delta(toy_corpus, tmp_path):
    from embedder.coherence import PACKAGED_COHERENCE, load_delta
    from embedder.errors import EmbedderError
    from embedder.training.coherence import export_delta

    def cont(out, **overrides):
        settings = dict(base_model=str(PACKAGED_COHERENCE), mlm=False, freeze_layers=4,
                        lora_rank=32, steps=2, batch_size=4, max_length=32)
        return config(toy_corpus, tmp_path / out, **{**settings, **overrides})

    start, _ = load_for_pretraining(cont("start"), "cpu")
    packaged, _, _ = load_delta(PACKAGED_COHERENCE)
    merged, reference = merged_state_dict(start), packaged.state_dict()
    scoring = [k for k in reference if k.startswith(("bert.", "cls.seq_relationship"))]
    assert all(torch.allclose(merged[k], reference[k], atol=1e-5) for k in scoring)
    trainable = {n for n, p in start.named_parameters() if p.requires_grad}
    assert "bert.encoder.layer.5.output.dense.weight" in trainable
    assert "bert.encoder.layer.1.attention.self.query.weight" not in trainable

    with pytest.raises(EmbedderError, match="rank of at least 32"):
        load_for_pretraining(cont("low", lora_rank=8), "cpu")
    with pytest.raises(EmbedderError, match="no LoRA adapter on bert.encoder.layer.2"):
        load_for_pretraining(cont("few", freeze_layers=2), "cpu")

    pretrain(cont("out"))
    folder = export_delta(tmp_path / "out", tmp_path / "delta", layers=[4, 5], lora_rank=32)
    trained = CoherenceScorer.load(folder)
    pairs = list(zip(STORY, STORY[1:]))
    assert not np.allclose(trained.scores(pairs), CoherenceScorer.load().scores(pairs))
