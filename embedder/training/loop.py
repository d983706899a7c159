"""Plumbing every training loop here shares: seeding, optimiser and schedule, one optimiser
step, one way to freeze parameters, one collate of sentence pairs, RNG state, saving.

Used by pretraining (MLM + NSP), coherence training and fine-tuning, so each of those is only
its own data and loss.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from ..encoder import collate
from ..inputs import SpecialTokens, pack_inputs
from .pairs import NspPair, hf_next_sentence_label


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def adamw_with_schedule(model: torch.nn.Module, lr: float, weight_decay: float,
                        total_steps: int, warmup_steps: int):
    """AdamW (no decay on biases and LayerNorm, as BERT) with linear warmup then decay."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 or "LayerNorm" in name else decay).append(param)
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay},
         {"params": no_decay, "weight_decay": 0.0}], lr=lr)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def optimizer_step(model: torch.nn.Module, optimizer, scheduler, clip: float = 1.0) -> None:
    """Clip the gradient norm of the trainable parameters, step, advance the schedule and
    clear the gradients: the end of every training step."""
    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], clip)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)


def set_trainable(model: torch.nn.Module, trainable: Callable[[str], bool]) -> None:
    """Train exactly the parameters whose state-dict name `trainable` accepts; freeze the
    rest. The one way layers are frozen here."""
    for name, param in model.named_parameters():
        param.requires_grad_(trainable(name))


def bottom_layers(layers: int) -> tuple[str, ...]:
    """Name prefixes of the embeddings and the `layers` lowest encoder layers of a
    `BertForPreTraining` / `BertForSequenceClassification` (what pretraining freezes)."""
    return ("bert.embeddings.", *(f"bert.encoder.layer.{i}." for i in range(layers)))


def collate_pairs(pairs: Sequence[NspPair], special: SpecialTokens, max_length: int) -> dict:
    """Pad a batch of sentence pairs to its longest member (the encoder's `collate`), with
    a mask of the positions masking must skip and NSP labels in Hugging Face's convention."""
    packed = [pack_inputs(p.ids_a, p.ids_b, special, max_length) for p in pairs]
    batch = collate(packed, max(len(p) for p in packed), special.pad)
    ids = batch["input_ids"]
    batch["special_mask"] = ((batch["attention_mask"] == 0) | (ids == special.cls)
                             | (ids == special.sep))
    batch["next_sentence_label"] = torch.tensor([hf_next_sentence_label(p.is_next)
                                                 for p in pairs])
    return batch


def autocast(device: str):
    """bf16 autocast on CUDA; plain fp32 elsewhere (bf16 is slower than fp32 on most CPUs)."""
    if device.startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def replace_folder(target: Path, write) -> None:
    """Write a folder through `write(tmp_path)` then swap it in for `target`.

    A crash leaves either the old folder (as `target` or `target.old`) or the new one, never
    a half-written mix; `recover_folder` puts a stranded `.old` back.
    """
    target = Path(target)
    tmp = target.with_name(target.name + ".tmp")
    old = target.with_name(target.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write(tmp)
    if target.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)


def recover_folder(target: Path) -> None:
    """Undo a swap interrupted between its two renames."""
    target = Path(target)
    old = target.with_name(target.name + ".old")
    if not target.exists() and old.exists():
        os.replace(old, target)
