"""Text classification from the `[CLS]` token: `Classifier.load(DIR).predict(texts)`.

A classifier is a `bertsearch finetune` output folder (`embedder.training.finetune`): a
Hugging Face `BertForSequenceClassification` whose labels are stored by name. This module
only runs it; training lives in `embedder.training`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .encoder import collate
from .errors import InvalidInputError, ModelLoadError
from .inputs import SpecialTokens, pack_inputs
from .loading import load_pretrained, pick_device
from .models import resolve_model_path

REPORT_FILE = "finetune.json"  # written by fine-tuning: labels, max length, epochs


@dataclass
class Prediction:
    label: str
    probabilities: dict[str, float]


class Classifier:
    """A fine-tuned text classifier."""

    def __init__(self, model, tokenizer, *, max_length: int = 128, device: str = "cpu"):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.special = SpecialTokens.of(tokenizer)
        self.max_length = max_length
        self.device = device

    @property
    def labels(self) -> list[str]:
        return [self.model.config.id2label[i] for i in range(self.model.config.num_labels)]

    @classmethod
    def load(cls, path: str | Path, device: str | None = None) -> Classifier:
        """Load a `bertsearch finetune` output folder.

        Raises:
            ModelLoadError: the folder holds no sequence classifier.
        """
        from transformers import BertForSequenceClassification

        folder = resolve_model_path(path)
        report = folder / REPORT_FILE
        if not report.is_file():
            raise ModelLoadError(f"'{folder}' is not a classifier made by `bertsearch "
                                 f"finetune` (no {REPORT_FILE}).")
        settings = json.loads(report.read_text())
        device = pick_device(device)
        loaded = load_pretrained(folder, BertForSequenceClassification)
        return cls(loaded.model.to(device), loaded.tokenizer,
                   max_length=settings["max_length"], device=device)

    def probabilities(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Class probabilities `(len(texts), classes)` in `labels` order."""
        import torch

        if isinstance(texts, str):
            raise InvalidInputError("Pass a list of texts, not a single string.")
        texts = list(texts)
        out = np.zeros((len(texts), len(self.labels)))
        for start in range(0, len(texts), batch_size):
            batch = encode_batch(self.tokenizer, self.special, texts[start:start + batch_size],
                                 self.max_length, self.device)
            with torch.inference_mode():
                logits = self.model(**batch).logits.float()
            out[start:start + batch_size] = torch.softmax(logits, -1).cpu().numpy()
        return out

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        """The most likely label of each text, with every label's probability."""
        labels = self.labels
        return [Prediction(labels[int(row.argmax())],
                           {label: float(p) for label, p in zip(labels, row)})
                for row in self.probabilities(texts)]


def encode_batch(tokenizer, special: SpecialTokens, texts: list[str], max_length: int,
                 device: str) -> dict:
    """Padded `[CLS] text [SEP]` tensors for a batch of texts (truncated to `max_length`)."""
    ids = tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
    packed = [pack_inputs(i, None, special, max_length) for i in ids]
    return collate(packed, max(len(p) for p in packed), special.pad, device)
