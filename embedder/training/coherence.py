"""Fine-tuning a coherence scorer on your own passage pairs (in-domain adaptation).

Takes labelled text pairs — adjacent passages as positives; other documents' passages,
non-adjacent passages and swapped pairs as negatives — trains the top layers, pooler and NSP
head of a coherence model, and reports held-out accuracy before and after. The indexer
builds such pairs from an index (`bertsearch coherence train --index DIR`).
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..coherence import (
    DELTA_FILE,
    INFO_FILE,
    LORA_A,
    LORA_B,
    PACKAGED_COHERENCE,
    Calibration,
    CoherenceScorer,
    TextPair,
    accuracy_by_kind,
    load_base,
    read_nsp_model,
)
from ..errors import InvalidInputError, ModelLoadError
from ..inputs import pack_inputs, truncate_for_continuation
from ..models import resolve_model_path, weights_fingerprint
from ..packed import can_pack
from .loop import (
    adamw_with_schedule,
    autocast,
    collate_pairs,
    optimizer_step,
    seed_everything,
    set_trainable,
)
from .lora import factorize
from .objectives import PACK_MIN_PADDING, packed_nsp_loss, padding_share, pretraining_loss
from .pairs import NspPair, hf_next_sentence_label


@dataclass
class CoherenceTrainingResult:
    out: Path
    before: dict[str, float]  # held-out accuracy, overall and by kind of pair
    after: dict[str, float]
    train_pairs: int
    held_out_pairs: int
    seconds: float


def train_coherence(train: Sequence[TextPair], held_out: Sequence[TextPair],
                    out: str | Path, *, base: str | Path | None = None, steps: int = 200,
                    batch_size: int = 16, lr: float = 5e-5, layers: Sequence[int] = (4, 5),
                    seed: int = 0, device: str | None = None, packed: bool = False,
                    pack_min_padding: float = PACK_MIN_PADDING,
                    dropout_in_frozen_layers: bool = False,
                    progress: Callable[[int, int, float], None] | None = None,
                    ) -> CoherenceTrainingResult:
    """Fine-tune a coherence model on labelled pairs and save it to `out`.

    Args:
        train, held_out: labelled pairs; held-out ones are only scored, before and after.
        out: where the adapted model goes (a small delta over the default encoder).
        base: the model to start from: None for the packaged default, or a delta folder.
        steps, batch_size, lr: the optimisation.
        layers: the encoder layers trained (with the pooler and the NSP head).
        packed: train on pairs packed end to end without padding (as inference runs),
            when the model is a plain BERT and padding would take at least
            `pack_min_padding` of the batch. Off by default: it pays on a quiet machine
            with short passages only (`objectives.PACK_MIN_PADDING`).
        dropout_in_frozen_layers: run dropout in the layers that do not train too (as
            before issue 21; slower, kept for comparison).
        progress: called with (step, steps, loss) after each step.

    Raises:
        InvalidInputError: no training pairs, or pairs of one label only.
    """
    started = time.perf_counter()
    labels = {p.is_next for p in train}
    if len(labels) < 2:
        raise InvalidInputError("Coherence training needs both following and non-following "
                                "pairs; index documents with at least two passages each.")
    if base is not None and not (Path(base) / DELTA_FILE).is_file():
        raise InvalidInputError(f"'{base}' is not a coherence model made by bertsearch (no "
                                f"{DELTA_FILE}); start from the default instead.")
    seed_everything(seed)
    scorer = CoherenceScorer.load(base or PACKAGED_COHERENCE, device=device)
    before = accuracy_by_kind(scorer, held_out)
    model = scorer.model
    trained = tuple(f"bert.encoder.layer.{i}." for i in layers) + (
        "bert.pooler.", "cls.seq_relationship.")
    set_trainable(model, lambda name: name.startswith(trained))
    examples = tokenized_pairs(scorer, train)
    optimizer, scheduler = adamw_with_schedule(model, lr, 0.01, steps, max(1, steps // 10))
    rng = random.Random(seed)
    order: list[int] = []
    model.train()
    if not dropout_in_frozen_layers:
        frozen_in_eval_mode(model, layers)
    for step in range(1, steps + 1):
        if len(order) < batch_size:
            fresh = list(range(len(examples)))
            rng.shuffle(fresh)
            order.extend(fresh)
        chunk, order = order[:batch_size], order[batch_size:]
        with autocast(scorer.device):
            loss = batch_nsp_loss(scorer, [examples[i] for i in chunk], packed, pack_min_padding)
        loss.backward()
        optimizer_step(model, optimizer, scheduler)
        if progress:
            progress(step, steps, loss.item())
    model.eval()
    after = accuracy_by_kind(scorer, held_out)
    # the starting delta's own changes (its layers, its LoRA factors) go along
    start = json.loads((Path(base or PACKAGED_COHERENCE) / INFO_FILE).read_text())
    save_delta(model, out, sorted(set(layers) | set(start.get("layers", []))),
               lora_rank=start.get("lora_rank", 0), max_length=scorer.max_length,
               extra={"adapted_on_pairs": len(train), "steps": steps,
                      "held_out_accuracy_before": before, "held_out_accuracy_after": after,
                      **({"calibration": held_out_calibration(scorer, held_out)}
                         if len(held_out) >= 8 else {})})
    return CoherenceTrainingResult(Path(out), before, after, len(train), len(held_out),
                                   time.perf_counter() - started)


def frozen_in_eval_mode(model, layers: Sequence[int]) -> None:
    """Put the embeddings and the encoder layers that do not train in eval mode: no
    dropout where nothing learns. The frozen layers become a fixed feature extractor for the
    trained ones, and a CPU step is about 1.3x faster (dropout's masks and the attention
    it forces cost a third of the forward pass; bench/RESULTS.md, issue 21)."""
    model.bert.embeddings.eval()
    for i, layer in enumerate(model.bert.encoder.layer):
        if i not in layers:
            layer.eval()


def held_out_calibration(scorer: CoherenceScorer, held_out: Sequence[TextPair]) -> dict:
    """A temperature for the adapted model, fitted on the first half of the held-out pairs
    (whole documents, as the index gives them in document order) with its calibration
    error before and after on the second half: fitted and checked on disjoint pairs. (A
    temperature leaves accuracy at 0.5 and ROC-AUC as they were.)"""
    from .calibration import fit_calibration
    from .evaluation import balanced_mixture, expected_calibration_error

    def mixture(pairs):
        log_odds = scorer.log_odds([(p.a, p.b) for p in pairs])
        by_kind: dict[str, list[float]] = {}
        for pair, value in zip(pairs, log_odds):
            by_kind.setdefault(pair.kind, []).append(float(value))
        return balanced_mixture({k: np.array(v) for k, v in by_kind.items()})

    half = len(held_out) // 2
    fitted = fit_calibration(*mixture(held_out[:half]))
    checked, labels, weights = mixture(held_out[half:])
    return {"temperature": fitted.temperature, "bias": fitted.bias,
            "fitted_on": f"the first {half} held-out pairs of the index",
            "ece_before": expected_calibration_error(
                Calibration().probability(checked), labels, weights),
            "ece_after": expected_calibration_error(
                fitted.probability(checked), labels, weights),
            "checked_on": f"the other {len(held_out) - half} held-out pairs"}


def batch_nsp_loss(scorer: CoherenceScorer, pairs: list[NspPair], packed: bool,
                   min_padding: float):
    """The NSP loss of one batch: packed without padding when it pays, else padded."""
    model = scorer.model
    inputs = [pack_inputs(p.ids_a, p.ids_b, scorer.special, scorer.max_length) for p in pairs]
    if (packed and can_pack(model.bert)
            and padding_share([len(i) for i in inputs]) >= min_padding):
        labels = torch.tensor([hf_next_sentence_label(p.is_next) for p in pairs])
        return packed_nsp_loss(model, inputs, labels, scorer.device)[0]
    batch = collate_pairs(pairs, scorer.special, scorer.max_length)
    batch.pop("special_mask")
    batch = {k: v.to(scorer.device) for k, v in batch.items()}
    return pretraining_loss(model, batch, mlm=False)[0]


def tokenized_pairs(scorer: CoherenceScorer, pairs: Sequence[TextPair]) -> list[NspPair]:
    """Text pairs as token ids, trimmed to the scorer's limit keeping A's end and B's
    start."""
    texts = sorted({t for p in pairs for t in (p.a, p.b)})
    ids = dict(zip(texts, scorer.tokenizer(texts, add_special_tokens=False,
                                           verbose=False)["input_ids"]))
    out = []
    for p in pairs:
        a, b, _ = truncate_for_continuation(ids[p.a], ids[p.b], scorer.max_length - 3)
        out.append(NspPair(a, b, p.is_next, p.kind))
    return out


def export_delta(checkpoint: str | os.PathLike, out: str | os.PathLike, layers: list[int],
                 extra: dict | None = None, lora_rank: int = 0) -> Path:
    """Save the parts of an NSP checkpoint folder that differ from the default encoder as a
    small fp16 delta (see `save_delta`). This is how the packaged default stays a few MB."""
    model = read_nsp_model(resolve_model_path(checkpoint)).model
    return save_delta(model, out, layers, extra, lora_rank=lora_rank)


def save_delta(model, out: str | os.PathLike, layers: list[int],
               extra: dict | None = None, max_length: int = 128, lora_rank: int = 0) -> Path:
    """Write the given top `layers`, the pooler and the NSP head of `model` as fp16, with an
    `info.json` naming the base encoder they go over. With `lora_rank`, the dense weights of
    the other layers (trained through LoRA adapters) go as two rank-`lora_rank` factors.

    Raises:
        ModelLoadError: the model changed tensors outside those parts, so a delta would
            silently lose training.
    """
    import torch
    from safetensors.torch import save_file

    base, _ = load_base()
    base_state = base.state_dict()
    prefixes = tuple(f"bert.encoder.layer.{i}." for i in layers) + (
        "bert.pooler.", "cls.seq_relationship.")
    state = {name: t.detach().cpu().float() if t.is_floating_point() else t.detach().cpu()
             for name, t in model.state_dict().items()}
    delta = {name: tensor.to(torch.float16).contiguous()
             for name, tensor in state.items() if name.startswith(prefixes)}
    changed = [name for name, tensor in state.items()
               if not name.startswith(prefixes) and name.startswith("bert.")
               and not torch.equal(tensor, base_state[name])]
    for name in changed if lora_rank else []:
        if not (name.startswith("bert.encoder.layer.") and name.endswith(".weight")
                and state[name].ndim == 2):
            continue
        try:
            b, a = factorize(state[name] - base_state[name], lora_rank)
        except ValueError as exc:
            raise ModelLoadError(f"{name}: {exc}; it was not trained through LoRA adapters "
                                 f"of rank {lora_rank}.") from exc
        delta[name + LORA_B] = b.to(torch.float16).contiguous()
        delta[name + LORA_A] = a.to(torch.float16).contiguous()
    changed = [name for name in changed if name + LORA_A not in delta]
    if changed:
        raise ModelLoadError(f"The model changed tensors outside the exported layers "
                             f"(e.g. {changed[0]}); export the layers that were trained.")
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(delta, str(folder / DELTA_FILE))
    info = {"base_fingerprint": weights_fingerprint(base.bert), "layers": layers,
            "lora_rank": lora_rank, "max_length": max_length, "tensors": len(delta),
            **(extra or {})}
    (folder / INFO_FILE).write_text(json.dumps(info, indent=2))
    return folder
