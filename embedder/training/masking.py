"""Masked-language-model masking, the BERT recipe.

Per sequence, 15 % of the real (non-special, non-padding) tokens are chosen — at least one,
at most `max_predictions` — and of those 80 % become `[MASK]`, 10 % a random token and 10 %
stay as they are. Labels hold the original token at chosen positions and -100 everywhere
else (the lecture's padded labels), which cross-entropy ignores.
"""

from __future__ import annotations

import torch

IGNORE = -100


def mask_tokens(input_ids: torch.Tensor, special_mask: torch.Tensor, *, vocab_size: int,
                mask_id: int, generator: torch.Generator, prob: float = 0.15,
                max_predictions: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask a batch for MLM.

    Args:
        input_ids: `(batch, seq)` token ids.
        special_mask: `(batch, seq)` True at `[CLS]`, `[SEP]` and padding (never masked).
        vocab_size: random replacements are drawn from `[0, vocab_size)`.
        mask_id: the `[MASK]` token id.
        generator: a seeded generator, so masking is reproducible.
        prob: share of real tokens to predict. max_predictions: cap per sequence.

    Returns:
        The masked input ids and the labels, both `(batch, seq)`.
    """
    candidates = ~special_mask
    n_real = candidates.sum(dim=1)  # (batch,)
    n_pick = torch.clamp((n_real.float() * prob).round().long(), min=1)
    n_pick = torch.minimum(torch.minimum(n_pick, n_real), torch.tensor(max_predictions))
    # a random rank for each real token; the n_pick lowest ranks of each row are chosen
    scores = torch.rand(input_ids.shape, generator=generator)
    scores[special_mask] = 2.0
    ranks = scores.argsort(dim=1).argsort(dim=1)
    chosen = ranks < n_pick.unsqueeze(1)

    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, IGNORE))
    action = torch.rand(input_ids.shape, generator=generator)
    random_tokens = torch.randint(vocab_size, input_ids.shape, generator=generator)
    masked = input_ids.clone()
    masked[chosen & (action < 0.8)] = mask_id
    use_random = chosen & (action >= 0.8) & (action < 0.9)
    masked[use_random] = random_tokens[use_random]
    return masked, labels
