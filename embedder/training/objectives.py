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
