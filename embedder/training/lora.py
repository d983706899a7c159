"""Low-rank adapters (LoRA) on frozen BERT layers, and low-rank deltas for small exports.

Training: `add_lora` reparametrises each dense weight of the chosen encoder layers as
`W + B @ A` (A: rank × in, B: out × rank, B starting at zero), with W frozen and only A and
B trained. The model still computes `module.weight` as usual, so nothing else changes.

Saving: `merged_state_dict` folds the adapters in, so checkpoints stay plain BERT folders
that any tool loads. `lora_state` / `restore_lora` carry the adapters across a resume;
`seed_lora` starts them from an exported delta's factors, to train it further.

Exporting: a merged weight minus the base weight has rank ≤ `rank`; `factorize` recovers
two thin factors from it with an SVD, which is how a LoRA-trained coherence model ships in
a few MB (see `embedder.coherence.save_delta`).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils import parametrize

# the dense layers of a BERT encoder layer, relative to `bert.encoder.layer.N`
ADAPTED = ("attention.self.query", "attention.self.key", "attention.self.value",
           "attention.output.dense", "intermediate.dense", "output.dense")
_SUFFIX = ".parametrizations.weight"


class LowRankUpdate(nn.Module):
    """The parametrisation W ↦ W + B A. Starts as the identity (B = 0)."""

    def __init__(self, out_features: int, in_features: int, rank: int):
        super().__init__()
        self.A = nn.Parameter(torch.empty(rank, in_features))
        self.B = nn.Parameter(torch.zeros(out_features, rank))
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight + (self.B @ self.A).to(weight.dtype)


def adapted_modules(model, layers) -> dict[str, nn.Linear]:
    """The dense modules of encoder `layers` in a `BertForPreTraining`, by state-dict name."""
    found = {}
    for i in layers:
        for path in ADAPTED:
            name = f"bert.encoder.layer.{i}.{path}"
            found[name] = model.get_submodule(name)
    return found


def add_lora(model, layers, rank: int) -> int:
    """Add rank-`rank` adapters to the dense weights of encoder `layers`, whose own weights
    are frozen. Returns the number of trainable adapter parameters."""
    count = 0
    for module in adapted_modules(model, layers).values():
        module.weight.requires_grad_(False)
        update = LowRankUpdate(module.out_features, module.in_features, rank)
        update.to(module.weight.device)
        parametrize.register_parametrization(module, "weight", update)
        count += update.A.numel() + update.B.numel()
    return count


def _parametrized(model) -> dict[str, nn.Module]:
    return {name: module for name, module in model.named_modules()
            if parametrize.is_parametrized(module, "weight")}


def merged_state_dict(model) -> dict[str, torch.Tensor]:
    """The model's state dict with every adapter folded into its weight (plain BERT names)."""
    state = model.state_dict()
    with torch.no_grad():
        for name, module in _parametrized(model).items():
            for key in [k for k in state if k.startswith(name + _SUFFIX + ".")]:
                del state[key]
            state[f"{name}.weight"] = module.weight.detach().clone()
    return state


def lora_state(model) -> dict[str, torch.Tensor]:
    """The adapter factors, by module name (empty when the model has none)."""
    return {f"{name}.{part}": getattr(module.parametrizations.weight[0], part).detach().cpu()
            for name, module in _parametrized(model).items() for part in ("A", "B")}


def restore_lora(model, state: dict[str, torch.Tensor]) -> None:
    """Give a model loaded from a merged checkpoint (with fresh adapters added) its saved
    adapters back, taking them out of the merged weights again."""
    with torch.no_grad():
        for name, module in _parametrized(model).items():
            update = module.parametrizations.weight[0]
            update.A.copy_(state[f"{name}.A"])
            update.B.copy_(state[f"{name}.B"])
            original = module.parametrizations.weight.original
            original.sub_((update.B @ update.A).to(original.dtype))


def seed_lora(model, factors: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Start fresh adapters from saved low-rank changes `{weight name: (B, A)}` (a delta's
    factors, of rank at most the adapters'), so training continues where that delta ended.

    Raises:
        ValueError: a factor has no adapter to go into.
    """
    adapters = {f"{name}.weight": module.parametrizations.weight[0]
                for name, module in _parametrized(model).items()}
    missing = sorted(set(factors) - set(adapters))
    if missing:
        raise ValueError(f"no LoRA adapter on {missing[0]} (freeze and adapt the layers the "
                         f"starting model adapted)")
    with torch.no_grad():
        for name, (b, a) in factors.items():
            update, rank = adapters[name], b.shape[1]
            update.B.zero_()
            update.B[:, :rank].copy_(b)
            update.A[:rank].copy_(a)


def factorize(delta: torch.Tensor, rank: int, tolerance: float = 1e-2
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Factors (B, A) with B @ A ≈ `delta`, of rank `rank`, from an SVD.

    Raises:
        ValueError: `delta` is not (close to) rank `rank`: its weight was trained in full,
            so a low-rank export would lose training.
    """
    u, s, vh = torch.linalg.svd(delta.double(), full_matrices=False)
    b = (u[:, :rank] * s[:rank]).float()
    a = vh[:rank].float()
    error = torch.linalg.norm(delta.double() - b.double() @ a.double())
    if error > tolerance * max(torch.linalg.norm(delta.double()).item(), 1e-12):
        raise ValueError(f"the change is not of rank {rank} (relative error "
                         f"{error / torch.linalg.norm(delta.double()):.3f})")
    return b, a
