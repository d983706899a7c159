"""Fine-tuning BERT to classify text from its `[CLS]` token (e.g. sentiment).

As in the lecture: the final `[CLS]` representation goes through a small network (BERT's
pooler and a linear layer: Hugging Face `BertForSequenceClassification`) that predicts the
class. The whole encoder is fine-tuned unless `freeze_encoder`. Labels come from the data
(any number of classes), are stored by name in the saved config, and come back by name.
"""

from __future__ import annotations

import csv
import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..classifier import REPORT_FILE, Classifier, encode_batch
from ..errors import EmbedderError
from ..loading import load_pretrained, pick_device, quiet_hf_loading
from ..models import resolve_model_path
from .loop import (
    adamw_with_schedule,
    autocast,
    optimizer_step,
    replace_folder,
    seed_everything,
    set_trainable,
)


class DataError(EmbedderError):
    """Labelled data that cannot be used (missing file or column, too few classes)."""


@dataclass
class LabelledData:
    texts: list[str]
    labels: list[str]


def read_labelled(path: str | Path, text_column: str = "text",
                  label_column: str = "label") -> LabelledData:
    """Read CSV, TSV (with a header row) or JSONL with a text and a label column.

    Raises:
        DataError: the file is missing or empty, a column is missing, or a row lacks text.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"Data file '{path}' does not exist.")
    rows = _rows(path)
    if not rows:
        raise DataError(f"Data file '{path}' has no rows.")
    for column in (text_column, label_column):
        if column not in rows[0]:
            raise DataError(f"Data file '{path}' has no column '{column}'; its columns are: "
                            f"{', '.join(map(str, rows[0]))}. Use --text-column/--label-column.")
    texts, labels = [], []
    for number, row in enumerate(rows, 1):
        text, label = row.get(text_column), row.get(label_column)
        if not isinstance(text, str) or not text.strip() or label in (None, ""):
            raise DataError(f"Row {number} of '{path}' has no text or no label.")
        texts.append(text)
        labels.append(str(label))
    return LabelledData(texts, labels)


def _rows(path: Path) -> list[dict]:
    suffix = path.suffix.lower()
    text = path.read_text(encoding="utf-8-sig")
    if suffix in (".jsonl", ".json", ".ndjson"):
        try:
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as exc:
            raise DataError(f"'{path}' is not valid JSON lines: {exc}.") from exc
    delimiter = "\t" if suffix in (".tsv", ".tab") else ","
    return list(csv.DictReader(text.splitlines(), delimiter=delimiter))


def split_data(data: LabelledData, share: float, seed: int) -> tuple[LabelledData, LabelledData]:
    """A seeded shuffle split: (train, evaluation) with `share` of the rows held out."""
    order = list(range(len(data.texts)))
    random.Random(seed).shuffle(order)
    cut = max(1, int(round(len(order) * share)))
    pick = lambda idx: LabelledData([data.texts[i] for i in idx],  # noqa: E731
                                    [data.labels[i] for i in idx])
    return pick(order[cut:]), pick(order[:cut])


@dataclass
class FinetuneConfig:
    out: str
    model: str = "default"
    epochs: int = 3
    batch_size: int = 32
    lr: float = 5e-5
    warmup: float = 0.1
    weight_decay: float = 0.01
    max_length: int = 128
    freeze_encoder: bool = False
    seed: int = 0
    device: str | None = None


@dataclass
class EpochReport:
    epoch: int
    train_loss: float
    eval_loss: float
    accuracy: float
    macro_f1: float
    per_class_f1: dict = field(default_factory=dict)


@dataclass
class FinetuneResult:
    out: Path
    labels: list[str]
    epochs: list[EpochReport]
    best_epoch: int
    seconds: float


def macro_f1(gold: Sequence[str], predicted: Sequence[str], labels: Sequence[str]) -> tuple:
    """(macro-F1, {label: F1}): the unweighted mean of each class's F1."""
    per_class = {}
    for label in labels:
        tp = sum(g == label and p == label for g, p in zip(gold, predicted))
        fp = sum(g != label and p == label for g, p in zip(gold, predicted))
        fn = sum(g == label and p != label for g, p in zip(gold, predicted))
        per_class[label] = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return float(np.mean(list(per_class.values()))), per_class


def evaluate(classifier: Classifier, data: LabelledData) -> tuple[float, float, dict]:
    """(accuracy, macro-F1, per-class F1) of a classifier on labelled data.

    Raises:
        DataError: the data has a label this classifier does not know.
    """
    unknown = sorted(set(data.labels) - set(classifier.labels))
    if unknown:
        raise DataError(f"Label(s) {', '.join(unknown)} are not among the classifier's "
                        f"labels ({', '.join(classifier.labels)}).")
    predicted = [p.label for p in classifier.predict(data.texts)]
    accuracy = float(np.mean([g == p for g, p in zip(data.labels, predicted)]))
    f1, per_class = macro_f1(data.labels, predicted, classifier.labels)
    return accuracy, f1, per_class


def finetune(train: LabelledData, evaluation: LabelledData, config: FinetuneConfig,
             progress: Callable[[int, int, float], None] | None = None,
             on_epoch: Callable[[EpochReport], None] | None = None) -> FinetuneResult:
    """Fine-tune a classifier; the best epoch (by macro-F1 on `evaluation`) is kept.

    Raises:
        DataError: one class only, or evaluation labels unseen in training.
    """
    started = time.perf_counter()
    labels = sorted(set(train.labels))
    if len(labels) < 2:
        raise DataError(f"The training data has a single class ('{labels[0]}'); a "
                        f"classifier needs at least two.")
    unknown = sorted(set(evaluation.labels) - set(labels))
    if unknown:
        raise DataError(f"Evaluation label(s) {', '.join(unknown)} never occur in the "
                        f"training data.")
    seed_everything(config.seed)
    device = pick_device(config.device)
    model, tokenizer = _load_for_classification(config, labels, device)
    classifier = Classifier(model, tokenizer, max_length=config.max_length, device=device)
    steps_per_epoch = -(-len(train.texts) // config.batch_size)
    total = steps_per_epoch * config.epochs
    optimizer, scheduler = adamw_with_schedule(model, config.lr, config.weight_decay, total,
                                               int(config.warmup * total))
    label_ids = torch.tensor([labels.index(label) for label in train.labels])
    rng = random.Random(config.seed)
    reports, best, step = [], -1.0, 0
    for epoch in range(1, config.epochs + 1):
        model.train()
        order = list(range(len(train.texts)))
        rng.shuffle(order)
        losses = []
        for start in range(0, len(order), config.batch_size):
            chunk = order[start:start + config.batch_size]
            batch = encode_batch(tokenizer, classifier.special,
                                 [train.texts[i] for i in chunk], config.max_length, device)
            with autocast(device):
                logits = model(**batch).logits
            loss = F.cross_entropy(logits.float(), label_ids[chunk].to(device))
            loss.backward()
            optimizer_step(model, optimizer, scheduler)
            losses.append(loss.item())
            step += 1
            if progress:
                progress(step, total, loss.item())
        model.eval()
        report = _epoch_report(classifier, evaluation, epoch, float(np.mean(losses)))
        reports.append(report)
        if on_epoch:
            on_epoch(report)
        if report.macro_f1 > best:
            best = report.macro_f1
            _save(classifier, config, reports, epoch)
    best_epoch = max(reports, key=lambda r: r.macro_f1).epoch
    return FinetuneResult(Path(config.out), labels, reports, best_epoch,
                          time.perf_counter() - started)


def _epoch_report(classifier: Classifier, data: LabelledData, epoch: int,
                  train_loss: float) -> EpochReport:
    probabilities = classifier.probabilities(data.texts)
    labels = classifier.labels
    gold = np.array([labels.index(label) for label in data.labels])
    eval_loss = float(-np.log(np.clip(probabilities[np.arange(len(gold)), gold], 1e-12, 1)).mean())
    predicted = [labels[i] for i in probabilities.argmax(1)]
    accuracy = float(np.mean([g == p for g, p in zip(data.labels, predicted)]))
    f1, per_class = macro_f1(data.labels, predicted, labels)
    return EpochReport(epoch, train_loss, eval_loss, accuracy, f1, per_class)


def _load_for_classification(config: FinetuneConfig, labels: list[str], device: str):
    from transformers import BertForSequenceClassification

    loaded = load_pretrained(
        resolve_model_path(config.model), BertForSequenceClassification,
        num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)})
    if config.freeze_encoder:  # train only the [CLS] head: the pooler and the classifier
        encoder = ("bert.embeddings.", "bert.encoder.")
        set_trainable(loaded.model, lambda name: not name.startswith(encoder))
    return loaded.model.to(device), loaded.tokenizer


def _save(classifier: Classifier, config: FinetuneConfig, reports, epoch: int) -> None:
    import dataclasses

    def write(folder: Path) -> None:
        classifier.model.save_pretrained(folder)
        classifier.tokenizer.save_pretrained(folder)
        (folder / REPORT_FILE).write_text(json.dumps({
            "labels": classifier.labels, "max_length": config.max_length,
            "best_epoch": epoch, "config": dataclasses.asdict(config),
            "epochs": [dataclasses.asdict(r) for r in reports]}, indent=2))

    with quiet_hf_loading():
        replace_folder(Path(config.out).expanduser(), write)

