"""The pretraining objective, shared by pretraining and coherence training.

MLM + NSP as in the lecture: the sum of the masked-language-model loss and the
next-sentence-prediction loss. Coherence training uses the NSP part alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .masking import IGNORE


def pretraining_loss(model, batch: dict, mlm: bool = True) -> tuple[torch.Tensor, dict]:
    """MLM + NSP loss of a `BertForPreTraining`, the MLM head applied only at masked
    positions (NSP alone with `mlm=False`).

    Equal to `BertForPreTraining(..., labels=, next_sentence_label=).loss` (whose
    cross-entropy ignores label -100) but without projecting every position onto the
    vocabulary.

    Returns:
        The loss and counts for reporting (losses, correct predictions, totals).
    """
    out = model.bert(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                     token_type_ids=batch["token_type_ids"])
    nsp_logits = model.cls.seq_relationship(out.pooler_output)  # (batch, 2)
    nsp_loss = F.cross_entropy(nsp_logits.float(), batch["next_sentence_label"])
    stats = {"nsp_loss": nsp_loss.item(),
             "nsp_correct": (nsp_logits.argmax(-1) == batch["next_sentence_label"]).sum().item(),
             "nsp_total": len(nsp_logits), "mlm_loss": 0.0, "mlm_correct": 0, "mlm_total": 0}
    if not mlm:
        return nsp_loss, stats
    positions = batch["labels"] != IGNORE  # (batch, seq)
    hidden = out.last_hidden_state[positions]  # (masked, hidden)
    logits = model.cls.predictions(hidden)  # (masked, vocab)
    targets = batch["labels"][positions]
    mlm_loss = F.cross_entropy(logits.float(), targets)
    stats.update(mlm_loss=mlm_loss.item(), mlm_total=len(targets),
                 mlm_correct=(logits.argmax(-1) == targets).sum().item())
    return mlm_loss + nsp_loss, stats


# Packed training passes are opt-in: on a quiet 2-core CPU they broke even on full-length
# pairs and won 1.18x at 19 % padding, 1.58x at 42 %; with another job on the machine they
# lost (0.52x to 0.67x: many small ops suffer most from a contended core), and the pairs
# these loops see have little padding (index pairs 0 %, pretraining 5 %). bench/RESULTS.md,
# issue 21. When asked for, a batch is packed once padding takes this share of it.
PACK_MIN_PADDING = 0.1


def padding_share(lengths: list[int]) -> float:
    """The share of a padded batch's positions that padding would take."""
    return 1 - sum(lengths) / (max(lengths) * len(lengths))


def packed_nsp_loss(model, inputs: list, labels: torch.Tensor, device: str = "cpu",
                    ) -> tuple[torch.Tensor, dict]:
    """The NSP loss of a `BertForPreTraining` over pair inputs packed end to end, without
    padding (`embedder.packed`): the linear layers run on real tokens only, as inference
    does. Dropout runs in the parts that are in training mode. Equal to
    `pretraining_loss(..., mlm=False)` on the padded batch, up to float rounding
    (tests/test_packed_training.py).

    Args:
        inputs: `PairInputs` of each pair (unpadded), in any order.
        labels: Hugging Face NSP labels (0 = B follows A), one per input.
    """
    from ..packed import PackedBatch, packed_hidden_states, pool_packed

    order = sorted(range(len(inputs)), key=lambda i: -len(inputs[i]))  # groups by length
    batch = PackedBatch.of([inputs[i] for i in order], device)
    hidden = packed_hidden_states(model.bert, batch)  # (tokens, hidden)
    pooler = model.bert.pooler
    pooled = pooler.activation(pooler.dense(pool_packed(hidden, batch, "cls")))  # (batch, h)
    logits = model.cls.seq_relationship(pooled)  # (batch, 2), in packed order
    targets = labels[torch.tensor(order)].to(logits.device)
    loss = F.cross_entropy(logits.float(), targets)
    return loss, {"nsp_loss": loss.item(), "nsp_total": len(targets),
                  "nsp_correct": (logits.argmax(-1) == targets).sum().item()}
