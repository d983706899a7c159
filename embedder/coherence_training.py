"""Fine-tuning a coherence scorer on your own passage pairs (in-domain adaptation).

Takes labelled text pairs — adjacent passages as positives; other documents' passages,
non-adjacent passages and swapped pairs as negatives — trains the top layers, pooler and NSP
head of a coherence model, and reports held-out accuracy before and after. The indexer
builds such pairs from an index (`bertsearch coherence train --index DIR`).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from .coherence import (
    DELTA_FILE,
    INFO_FILE,
    PACKAGED_COHERENCE,
    CoherenceScorer,
    save_delta,
)
from .errors import InvalidInputError
from .inputs import truncate_for_continuation
from .pairs import IS_NEXT, NspPair
from .pretrain import collate, pretraining_loss
from .training import adamw_with_schedule, autocast, seed_everything


@dataclass(frozen=True)
class TextPair:
    """A labelled passage pair: `is_next` is 1 when B follows A (the lecture's y)."""

    a: str
    b: str
    is_next: int
    kind: str  # "next", "random", "same_document" or "swapped"


@dataclass
class CoherenceTrainingResult:
    out: Path
    before: dict[str, float]  # held-out accuracy, overall and by kind of pair
    after: dict[str, float]
    train_pairs: int
    held_out_pairs: int
    seconds: float


def accuracy_by_kind(scorer: CoherenceScorer, pairs: Sequence[TextPair]) -> dict[str, float]:
    """Accuracy of `P(next) >= 0.5` on labelled pairs, overall and for each kind of pair."""
    if not pairs:
        return {}
    scores = scorer.scores([(p.a, p.b) for p in pairs])
    right: dict[str, list[bool]] = {}
    for pair, score in zip(pairs, scores):
        ok = (score >= 0.5) == (pair.is_next == IS_NEXT)
        right.setdefault(pair.kind, []).append(bool(ok))
        right.setdefault("overall", []).append(bool(ok))
    return {kind: sum(v) / len(v) for kind, v in sorted(right.items())}


def train_coherence(train: Sequence[TextPair], held_out: Sequence[TextPair],
                    out: str | Path, *, base: str | Path | None = None, steps: int = 200,
                    batch_size: int = 16, lr: float = 5e-5, layers: Sequence[int] = (4, 5),
                    seed: int = 0, device: str | None = None,
                    progress: Callable[[int, int, float], None] | None = None,
                    ) -> CoherenceTrainingResult:
    """Fine-tune a coherence model on labelled pairs and save it to `out`.

    Args:
        train, held_out: labelled pairs; held-out ones are only scored, before and after.
        out: where the adapted model goes (a small delta over the default encoder).
        base: the model to start from: None for the packaged default, or a delta folder.
        steps, batch_size, lr: the optimisation.
        layers: the encoder layers trained (with the pooler and the NSP head).
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
    _train_only(model, layers)
    examples = _tokenized(scorer, train)
    optimizer, scheduler = adamw_with_schedule(model, lr, 0.01, steps, max(1, steps // 10))
    rng = random.Random(seed)
    order: list[int] = []
    model.train()
    for step in range(1, steps + 1):
        if len(order) < batch_size:
            fresh = list(range(len(examples)))
            rng.shuffle(fresh)
            order.extend(fresh)
        chunk, order = order[:batch_size], order[batch_size:]
        batch = collate([examples[i] for i in chunk], scorer.special, scorer.max_length)
        batch.pop("special_mask")
        batch = {k: v.to(scorer.device) for k, v in batch.items()}
        with autocast(scorer.device):
            loss, _ = pretraining_loss(model, batch, mlm=False)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if progress:
            progress(step, steps, loss.item())
    model.eval()
    after = accuracy_by_kind(scorer, held_out)
    # the starting delta's own changes (its layers, its LoRA factors) go along
    start = json.loads((Path(base or PACKAGED_COHERENCE) / INFO_FILE).read_text())
    save_delta(model, out, sorted(set(layers) | set(start.get("layers", []))),
               lora_rank=start.get("lora_rank", 0), max_length=scorer.max_length,
               extra={"adapted_on_pairs": len(train), "steps": steps,
                      "held_out_accuracy_before": before, "held_out_accuracy_after": after})
    return CoherenceTrainingResult(Path(out), before, after, len(train), len(held_out),
                                   time.perf_counter() - started)


def _train_only(model, layers: Sequence[int]) -> None:
    trained = tuple(f"bert.encoder.layer.{i}." for i in layers) + (
        "bert.pooler.", "cls.seq_relationship.")
    for name, param in model.named_parameters():
        param.requires_grad_(name.startswith(trained))


def _tokenized(scorer: CoherenceScorer, pairs: Sequence[TextPair]) -> list[NspPair]:
    texts = sorted({t for p in pairs for t in (p.a, p.b)})
    ids = dict(zip(texts, scorer.tokenizer(texts, add_special_tokens=False,
                                           verbose=False)["input_ids"]))
    out = []
    for p in pairs:
        a, b, _ = truncate_for_continuation(ids[p.a], ids[p.b], scorer.max_length - 3)
        out.append(NspPair(a, b, p.is_next, p.kind))
    return out
