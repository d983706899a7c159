"""MLM + NSP pretraining with a seeded tiny BERT: loss, gather equivalence, resume, output."""

import json

import pytest
import torch

from embedder import Encoder
from embedder.training.corpus import CorpusError
from embedder.training.loop import collate_pairs
from embedder.training.objectives import pretraining_loss
from embedder.training.pretrain import (
    ModelSize,
    PretrainConfig,
    masked_batch,
    pretrain,
)

TINY = ModelSize(hidden_size=32, layers=2, heads=2, intermediate_size=64)


def config(corpus, out, **overrides):
    values = dict(corpus=str(corpus), out=str(out), base_model=None, size=TINY, steps=40,
                  batch_size=8, max_length=48, lr=2e-3, warmup=0.1, save_every=1000,
                  eval_every=1000, seed=0)
    values.update(overrides)
    return PretrainConfig(**values)


def test_gathered_mlm_loss_equals_hugging_faces_full_loss(toy_corpus, tmp_path):
    from embedder.training.pretrain import PairStream, load_for_pretraining

    cfg = config(toy_corpus, tmp_path / "out")
    torch.manual_seed(0)
    model, tokenizer = load_for_pretraining(cfg, "cpu")
    model.eval()
    stream = iter(PairStream(cfg, tokenizer))
    batch = masked_batch([next(stream) for _ in range(8)], tokenizer, cfg, 0, "cpu")
    with torch.no_grad():
        ours, stats = pretraining_loss(model, batch)
        theirs = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       token_type_ids=batch["token_type_ids"], labels=batch["labels"],
                       next_sentence_label=batch["next_sentence_label"]).loss
    assert torch.allclose(ours, theirs, atol=1e-5), (ours, theirs)
    assert stats["mlm_total"] == (batch["labels"] != -100).sum().item() > 0


def test_loss_falls(toy_corpus, tmp_path):
    result = pretrain(config(toy_corpus, tmp_path / "out", steps=60))
    first, last = sum(result.losses[:5]) / 5, sum(result.losses[-5:]) / 5
    assert last < first - 1.0, (first, last)


def test_resume_continues_bit_for_bit(toy_corpus, tmp_path):
    class Interrupted(Exception):
        pass

    def interrupt(metrics):
        if metrics.step == 5:  # after the checkpoint at step 4 was written
            raise Interrupted

    settings = dict(steps=8, grad_accum=2, save_every=4)
    whole = pretrain(config(toy_corpus, tmp_path / "whole", **settings))
    with pytest.raises(Interrupted):
        pretrain(config(toy_corpus, tmp_path / "split", **settings), progress=interrupt)
    resumed = pretrain(config(toy_corpus, tmp_path / "split", **settings), resume=True)
    assert resumed.losses == whole.losses[4:]  # exactly, not approximately
    a = torch.load(tmp_path / "whole" / "training_state.pt", weights_only=False)["step"]
    assert a == 8


def test_nsp_only_training_runs_packed_and_resumes_bit_for_bit(toy_corpus, tmp_path):
    """NSP-only runs can train on packed pairs (no padding): the same pairs as the padded
    run (losses differ only by dropout's draws), resumed exactly."""
    class Interrupted(Exception):
        pass

    def interrupt(metrics):
        if metrics.step == 5:
            raise Interrupted

    settings = dict(steps=8, save_every=4, mlm=False, packed=True, pack_min_padding=0.0)
    whole = pretrain(config(toy_corpus, tmp_path / "whole", **settings))
    with pytest.raises(Interrupted):
        pretrain(config(toy_corpus, tmp_path / "split", **settings), progress=interrupt)
    resumed = pretrain(config(toy_corpus, tmp_path / "split", **settings), resume=True)
    assert resumed.losses == whole.losses[4:]
    padded = pretrain(config(toy_corpus, tmp_path / "padded", **{**settings, "packed": False}))
    assert padded.losses != whole.losses  # another path (and other dropout draws) ...
    assert max(abs(a - b) for a, b in zip(padded.losses, whole.losses)) < 0.05  # same pairs


def test_checkpoint_reloads_with_its_nsp_head(toy_corpus, tmp_path):
    from transformers import BertForPreTraining

    out = tmp_path / "out"
    result = pretrain(config(toy_corpus, out, steps=3))
    assert result.steps == 3
    reloaded = BertForPreTraining.from_pretrained(out)
    state = torch.load(out / "training_state.pt", weights_only=False)
    assert state["step"] == 3
    assert reloaded.cls.seq_relationship.weight.shape == (2, 32)
    info = json.loads((out / "pretraining.json").read_text())
    assert info["config"]["size"]["hidden_size"] == 32 and info["step"] == 3
    encoder = Encoder.load(out)  # the output works wherever a model is accepted
    assert encoder.encode(["the cat sees the dog"]).shape == (1, 32)


def test_evaluation_on_held_out_documents(tmp_path):
    from embedder.training.corpus import Document

    folder = tmp_path / "corpus"
    folder.mkdir()
    held_out, d = 0, 0
    while held_out < 3 or d < 40:  # ~2 % of documents are held out, by a hash of the path
        path = folder / f"d{d}.txt"  # within the corpus folder: its key is "corpus/d{d}.txt"
        path.write_text(" ".join(f"Sentence {i} of doc {d}." for i in range(12)))
        held_out += Document(str(path), [], key=f"corpus/d{d}.txt").held_out
        d += 1
    seen = []
    pretrain(config(folder, tmp_path / "out", steps=4, eval_every=2, eval_pairs=16),
             on_eval=seen.append)
    assert [m.step for m in seen] == [2, 4]
    assert seen[0].pairs == 16 and 0 <= seen[0].nsp_accuracy <= 1
    assert set(seen[0].nsp_accuracy_by_kind) <= {"next", "random"}


def test_continued_from_the_default_encoder_starts_fresh_heads(toy_corpus, tmp_path, encoder):
    result = pretrain(config(toy_corpus, tmp_path / "out", base_model="default", steps=1,
                             batch_size=2, freeze_layers=4))
    continued = Encoder.load(result.out)
    assert continued.dimension == 384
    # frozen bottom layers are untouched
    a = continued.model.encoder.layer[0].attention.self.query.weight
    b = encoder.model.encoder.layer[0].attention.self.query.weight
    assert torch.equal(a, b)


@pytest.mark.parametrize("name, message", [
    ("missing", "does not exist"), ("empty", "holds no text files"),
])
def test_bad_corpus(tmp_path, name, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "picture.png").write_bytes(b"\x89PNG")
    with pytest.raises(CorpusError, match=message):
        pretrain(config(tmp_path / name, tmp_path / "out"))


def test_one_document_corpus(tmp_path):
    folder = tmp_path / "one"
    folder.mkdir()
    (folder / "only.txt").write_text("One sentence. Another sentence. And a third one.")
    # "no training pairs" when its path's hash puts the one document in the held-out split
    with pytest.raises(CorpusError, match="only one document|no training pairs"):
        pretrain(config(folder, tmp_path / "out", steps=1))


def test_nothing_to_resume(tmp_path, toy_corpus):
    from embedder.errors import EmbedderError

    with pytest.raises(EmbedderError, match="Nothing to resume"):
        pretrain(config(toy_corpus, tmp_path / "out"), resume=True)


def test_collate_pads_and_labels_in_hf_convention(encoder):
    from embedder.inputs import SpecialTokens
    from embedder.training.pairs import IS_NEXT, NOT_NEXT, NspPair

    pairs = [NspPair([5, 6], [7], IS_NEXT, "next"), NspPair([5], [8, 9, 10], NOT_NEXT, "random")]
    batch = collate_pairs(pairs, SpecialTokens.of(encoder.tokenizer), 16)
    assert batch["input_ids"].tolist() == [[101, 5, 6, 102, 7, 102, 0],
                                           [101, 5, 102, 8, 9, 10, 102]]
    assert batch["token_type_ids"].tolist() == [[0, 0, 0, 0, 1, 1, 0], [0, 0, 0, 1, 1, 1, 1]]
    assert batch["next_sentence_label"].tolist() == [0, 1]


def test_cli_pretrain_and_resume(toy_corpus, tmp_path):
    from click.testing import CliRunner

    from cli import main

    out = tmp_path / "cli-out"
    args = ["pretrain", str(toy_corpus), "--out", str(out), "--from-scratch", "--hidden-size",
            "32", "--layers", "2", "--heads", "2", "--batch-size", "4", "--max-length", "32",
            "--save-every", "2"]
    result = CliRunner().invoke(main, args + ["--steps", "2"])
    assert result.exit_code == 0, result.output
    assert f"Saved {out} after 2 steps" in result.output
    result = CliRunner().invoke(main, args + ["--steps", "3", "--resume"])
    assert result.exit_code == 0 and "after 3 steps" in result.output
    bad = CliRunner().invoke(main, ["pretrain", str(tmp_path / "nope"), "--out", str(out)])
    assert bad.exit_code == 1 and bad.output.startswith("Error: Corpus")
    assert bad.output.count("\n") == 1
