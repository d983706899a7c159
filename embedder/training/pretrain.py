"""Pretraining BERT with masked-language modelling + next-sentence prediction (the lecture).

`pretrain(PretrainConfig(...))` trains a Hugging Face `BertForPreTraining` — from scratch or
continued from an encoder (default: the packaged MiniLM, whose `cls.*` heads start fresh) —
minimising MLM loss + NSP loss. The MLM head runs only at masked positions (a gather before
the 30k-way projection) instead of at every position: the same loss, far less work.

The output folder is a checkpoint: `save_pretrained` weights + tokenizer (so `Encoder.load`
and the coherence scorer take it), `training_state.pt` for exact resume, and
`pretraining.json` with the settings and evaluation history.
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import EmbedderError
from ..inputs import SpecialTokens, pack_inputs
from ..loading import load_pretrained, load_tokenizer, pick_device, quiet_hf_loading
from ..models import resolve_model_path
from ..packed import can_pack
from ..prefetch import prefetch
from .corpus import CorpusError, corpus_files, read_documents
from .loop import (
    adamw_with_schedule,
    autocast,
    bottom_layers,
    collate_pairs,
    optimizer_step,
    recover_folder,
    replace_folder,
    rng_state,
    seed_everything,
    set_rng_state,
    set_trainable,
)
from .lora import add_lora, lora_state, merged_state_dict, restore_lora, seed_lora
from .masking import IGNORE, mask_tokens
from .objectives import PACK_MIN_PADDING, packed_nsp_loss, padding_share, pretraining_loss
from .pairs import NegativeMix, NspPair, PairBuilder, hf_next_sentence_label

STATE_FILE = "training_state.pt"
INFO_FILE = "pretraining.json"


@dataclass
class ModelSize:
    """Size of a BERT trained from scratch."""

    hidden_size: int = 256
    layers: int = 4
    heads: int = 4
    intermediate_size: int = 1024


@dataclass
class PretrainConfig:
    """Everything a pretraining run depends on (saved with the checkpoint)."""

    corpus: str | list[str]  # one or several folders or text files
    out: str
    base_model: str | None = "default"  # None: from scratch with `size`
    size: ModelSize = field(default_factory=ModelSize)
    tokenizer: str = "default"  # where a from-scratch model takes its vocabulary
    steps: int = 1000
    batch_size: int = 32
    grad_accum: int = 1
    max_length: int = 128
    lr: float = 5e-5
    warmup: float = 0.1  # share of the steps spent warming the learning rate up
    weight_decay: float = 0.01
    clip: float = 1.0
    seed: int = 0
    mask_prob: float = 0.15
    max_predictions: int = 20
    short_seq_prob: float = 0.1
    negatives: NegativeMix = field(default_factory=NegativeMix)
    trim: str = "random"  # "continuation" keeps A's end and B's start (coherence)
    mlm: bool = True  # False: NSP only
    packed: bool = False  # NSP only: pairs packed end to end, no padding (a plain BERT) ...
    pack_min_padding: float = PACK_MIN_PADDING  # ... in batches where padding takes this
    freeze_layers: int = 0  # freeze the embeddings and this many bottom layers
    lora_rank: int = 0  # >0: train low-rank adapters of this rank on the frozen layers
    eval_every: int = 200
    eval_pairs: int = 512
    save_every: int = 500
    shuffle_buffer: int = 2000
    device: str | None = None

    def validate(self) -> None:
        checks = [
            (self.steps >= 1, "steps must be at least 1"),
            (self.batch_size >= 1, "batch size must be at least 1"),
            (self.grad_accum >= 1, "gradient accumulation must be at least 1"),
            (16 <= self.max_length <= 512, "max length must be between 16 and 512"),
            (self.lr > 0, "the learning rate must be positive"),
            (0 <= self.warmup < 1, "warmup is a share of the steps, from 0 to below 1"),
            (self.lora_rank >= 0, "the LoRA rank must be 0 (no adapters) or more"),
            (self.lora_rank == 0 or self.freeze_layers > 0,
             "LoRA adapters go on frozen layers: set freeze layers as well"),
        ]
        for ok, message in checks:
            if not ok:
                raise EmbedderError(message[0].upper() + message[1:] + ".")

    @classmethod
    def from_dict(cls, values: dict) -> PretrainConfig:
        values = dict(values)
        values["size"] = ModelSize(**values.get("size", {}))
        values["negatives"] = NegativeMix(**values.get("negatives", {}))
        return cls(**values)


@dataclass
class StepMetrics:
    step: int
    steps: int
    loss: float
    mlm_loss: float
    nsp_loss: float
    mlm_accuracy: float
    nsp_accuracy: float
    lr: float


@dataclass
class EvalMetrics:
    step: int
    pairs: int
    mlm_loss: float
    nsp_loss: float
    mlm_accuracy: float
    nsp_accuracy: float
    nsp_accuracy_by_kind: dict = field(default_factory=dict)


@dataclass
class PretrainResult:
    out: Path
    steps: int
    losses: list[float]
    evaluations: list[EvalMetrics]
    seconds: float


# -- model ----------------------------------------------------------------------------------

def load_for_pretraining(config: PretrainConfig, device: str):
    """A `BertForPreTraining` and its tokenizer: continued from `base_model` (a model folder,
    or a coherence delta whose LoRA factors seed the adapters) or new."""
    from transformers import BertConfig, BertForPreTraining

    from ..coherence import read_delta

    factors = {}
    if config.base_model is not None and _is_delta(config.base_model):
        model, tokenizer, _, factors = read_delta(Path(config.base_model).expanduser())
    elif config.base_model is not None:
        loaded = load_pretrained(resolve_model_path(config.base_model), BertForPreTraining)
        model, tokenizer = loaded.model, loaded.tokenizer
    else:
        tokenizer = load_tokenizer(resolve_model_path(config.tokenizer))
        size = config.size
        model = BertForPreTraining(BertConfig(
            vocab_size=len(tokenizer), hidden_size=size.hidden_size,
            num_hidden_layers=size.layers, num_attention_heads=size.heads,
            intermediate_size=size.intermediate_size,
            max_position_embeddings=max(512, config.max_length)))
    if config.freeze_layers:
        frozen = bottom_layers(config.freeze_layers)
        set_trainable(model, lambda name: not name.startswith(frozen))
    if config.lora_rank:
        add_lora(model, range(config.freeze_layers), config.lora_rank)
    if factors:
        _continue_adapters(model, factors, config)
    return model.to(device), tokenizer


def _continue_adapters(model, factors: dict, config: PretrainConfig) -> None:
    """Put a delta's low-rank factors into the fresh adapters, so the change keeps its rank."""
    rank = max(b.shape[1] for b, _ in factors.values())
    if config.lora_rank < rank:
        raise EmbedderError(
            f"'{config.base_model}' was trained with LoRA adapters of rank {rank}; "
            f"continue it with a LoRA rank of at least {rank}.")
    try:
        seed_lora(model, factors)
    except ValueError as exc:
        raise EmbedderError(f"Cannot continue '{config.base_model}': {exc}.") from exc


def _is_delta(model: str) -> bool:
    from ..coherence import DELTA_FILE

    return (Path(model).expanduser() / DELTA_FILE).is_file()


# -- data -----------------------------------------------------------------------------------

class PairStream:
    """An endless, deterministic stream of NSP pairs from one split of the corpus.

    The same config and split always give the same pairs in the same order, which is what
    makes resuming exact: a resumed run regenerates and skips the pairs already used.
    """

    def __init__(self, config: PretrainConfig, tokenizer, split: str = "train"):
        self.config = config
        self.tokenizer = tokenizer
        self.split = split

    def _tokenize(self, sentences: list[str]) -> list[list[int]]:
        return self.tokenizer(sentences, add_special_tokens=False, verbose=False)["input_ids"]

    def epoch(self, number: int) -> Iterator[NspPair]:
        config = self.config
        rng = random.Random(f"{config.seed}/{self.split}/{number}")
        builder = PairBuilder(self._tokenize, config.max_length, rng,
                              short_seq_prob=config.short_seq_prob,
                              negatives=config.negatives, trim=config.trim)
        held_out = self.split == "eval"
        documents = (d for d in read_documents(config.corpus, rng=random.Random(rng.random()))
                     if d.held_out == held_out)
        buffer: list[NspPair] = []
        for pair in builder.pairs(documents):
            if len(buffer) < config.shuffle_buffer:
                buffer.append(pair)
                continue
            slot = rng.randrange(len(buffer))
            yield buffer[slot]
            buffer[slot] = pair
        rng.shuffle(buffer)
        yield from buffer

    def __iter__(self) -> Iterator[NspPair]:
        number = 0
        while True:
            produced = 0
            for pair in self.epoch(number):
                produced += 1
                yield pair
            if not produced:
                raise CorpusError(
                    f"The corpus '{self.config.corpus}' gave no {self.split} pairs; it needs "
                    f"documents of at least two sentences (about 2 % of documents are held "
                    f"out for evaluation).")
            number += 1


def masked_batch(pairs: list[NspPair], tokenizer, config: PretrainConfig, index: int,
                 device: str) -> dict:
    """Collate and mask micro-batch number `index`; its masking seed depends only on that
    number, so a resumed run masks exactly as an uninterrupted one."""
    special = SpecialTokens.of(tokenizer)
    batch = collate_pairs(pairs, special, config.max_length)
    special_mask = batch.pop("special_mask")
    if config.mlm:
        generator = torch.Generator().manual_seed(config.seed * 1_000_003 + index)
        batch["input_ids"], batch["labels"] = mask_tokens(
            batch["input_ids"], special_mask, vocab_size=len(tokenizer), mask_id=special.mask,
            generator=generator, prob=config.mask_prob, max_predictions=config.max_predictions)
    else:
        batch["labels"] = torch.full_like(batch["input_ids"], IGNORE)
    return {k: v.to(device) for k, v in batch.items()}


# -- evaluation -----------------------------------------------------------------------------

def evaluation_batches(config: PretrainConfig, tokenizer, device: str) -> list[tuple]:
    """A fixed set of masked batches from held-out documents (empty if there are none)."""
    try:
        stream = iter(PairStream(config, tokenizer, split="eval"))
        pairs = [next(stream) for _ in range(config.eval_pairs)]
    except CorpusError:
        return []
    out = []
    for i in range(0, len(pairs), config.batch_size):
        chunk = pairs[i:i + config.batch_size]
        out.append((masked_batch(chunk, tokenizer, config, -1 - i, device),
                    [p.kind for p in chunk]))
    return out


@torch.no_grad()
def evaluate(model, batches: list[tuple], config: PretrainConfig, step: int) -> EvalMetrics:
    """Held-out MLM and NSP loss/accuracy, with NSP accuracy for each kind of pair."""
    was_training = model.training
    model.eval()
    totals = {"mlm_loss": 0.0, "nsp_loss": 0.0, "mlm_correct": 0, "mlm_total": 0,
              "nsp_correct": 0, "nsp_total": 0}
    by_kind: dict[str, list[int]] = {}
    for batch, kinds in batches:
        with autocast(str(batch["input_ids"].device)):
            _, stats = pretraining_loss(model, batch, mlm=config.mlm)
            out = model.bert(input_ids=batch["input_ids"],
                             attention_mask=batch["attention_mask"],
                             token_type_ids=batch["token_type_ids"])
            right = (model.cls.seq_relationship(out.pooler_output).argmax(-1)
                     == batch["next_sentence_label"]).tolist()
        for kind, ok in zip(kinds, right):
            by_kind.setdefault(kind, []).append(int(ok))
        for key in totals:
            totals[key] += stats[key] * (len(kinds) if key.endswith("loss") else 1)
    model.train(was_training)
    n = max(1, totals["nsp_total"])
    return EvalMetrics(
        step=step, pairs=totals["nsp_total"], mlm_loss=totals["mlm_loss"] / n,
        nsp_loss=totals["nsp_loss"] / n,
        mlm_accuracy=totals["mlm_correct"] / max(1, totals["mlm_total"]),
        nsp_accuracy=totals["nsp_correct"] / n,
        nsp_accuracy_by_kind={k: sum(v) / len(v) for k, v in sorted(by_kind.items())})


# -- the loop -------------------------------------------------------------------------------

def pretrain(config: PretrainConfig, *, resume: bool = False,
             progress: Callable[[StepMetrics], None] | None = None,
             on_eval: Callable[[EvalMetrics], None] | None = None) -> PretrainResult:
    """Train with MLM + NSP; checkpoints go to `config.out`.

    Args:
        config: the run's settings.
        resume: continue the run saved in `config.out` exactly where it stopped (its saved
            settings are used; only `steps` may be raised).
        progress: called after every optimiser step.
        on_eval: called after every evaluation on held-out documents.

    Raises:
        CorpusError: the corpus is missing, empty, or has a single document.
    """
    started = time.perf_counter()
    out = Path(config.out).expanduser()
    recover_folder(out)
    state = None
    if resume:
        config, state = _load_resume(config, out)
    config.validate()
    corpus_files(config.corpus)  # a clear error now, not at the first batch
    device = pick_device(config.device)
    seed_everything(config.seed)
    if state is None:
        model, tokenizer = load_for_pretraining(config, device)
    else:
        model, tokenizer = load_for_pretraining(
            dataclasses.replace(config, base_model=str(out)), device)
        if state.get("lora"):
            restore_lora(model, state["lora"])
    optimizer, scheduler = adamw_with_schedule(
        model, config.lr, config.weight_decay, config.steps, int(config.warmup * config.steps))
    step, history = 0, []
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, history = state["step"], state["history"]
    eval_batches = evaluation_batches(config, tokenizer, device)
    pairs = iter(PairStream(config, tokenizer))
    for _ in range(step * config.grad_accum * config.batch_size):
        next(pairs)  # skip what the interrupted run already used
    packed = config.packed and not config.mlm and can_pack(model.bert)
    batches = prefetch(_cpu_batches(pairs, tokenizer, config, step * config.grad_accum, packed))
    if state is not None:
        set_rng_state(state["rng"])  # dropout continues as if never interrupted

    model.train()
    losses: list[float] = []
    try:
        while step < config.steps:
            totals = _train_step(model, optimizer, scheduler, batches, config, device)
            step += 1
            losses.append(totals["loss"])
            if progress:
                progress(_step_metrics(step, config, totals, scheduler))
            if eval_batches and (step % config.eval_every == 0 or step == config.steps):
                metrics = evaluate(model, eval_batches, config, step)
                history.append(dataclasses.asdict(metrics))
                if on_eval:
                    on_eval(metrics)
            if step % config.save_every == 0 or step == config.steps:
                save_checkpoint(out, model, tokenizer, optimizer, scheduler, config, step, history)
    finally:
        batches.close()  # stops the prefetch thread, also when a step fails
    return PretrainResult(out, step, losses, [EvalMetrics(**h) for h in history],
                          time.perf_counter() - started)


def _cpu_batches(pairs: Iterator[NspPair], tokenizer, config: PretrainConfig,
                 first: int, packed: bool = False) -> Iterator[dict]:
    """Masked micro-batches numbered from `first`, collated on the CPU; with `packed`
    (NSP only) and padding taking at least `pack_min_padding` of a batch, its pairs'
    unpadded inputs and the NSP labels instead."""
    index = first
    special = SpecialTokens.of(tokenizer)
    while True:
        chunk = [next(pairs) for _ in range(config.batch_size)]
        inputs = [pack_inputs(p.ids_a, p.ids_b, special, config.max_length) for p in chunk]
        if packed and padding_share([len(i) for i in inputs]) >= config.pack_min_padding:
            yield {"inputs": inputs, "next_sentence_label": torch.tensor(
                [hf_next_sentence_label(p.is_next) for p in chunk])}
        else:
            yield masked_batch(chunk, tokenizer, config, index, "cpu")
        index += 1


def _train_step(model, optimizer, scheduler, batches, config, device) -> dict:
    totals = {"loss": 0.0, "mlm_loss": 0.0, "nsp_loss": 0.0, "mlm_correct": 0, "mlm_total": 0,
              "nsp_correct": 0, "nsp_total": 0}
    for _ in range(config.grad_accum):
        batch = next(batches)
        with autocast(device):
            if "inputs" in batch:  # packed, NSP only
                loss, stats = packed_nsp_loss(model, batch["inputs"],
                                              batch["next_sentence_label"], device)
                stats.update(mlm_loss=0.0, mlm_correct=0, mlm_total=0)
            else:
                batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
                loss, stats = pretraining_loss(model, batch, mlm=config.mlm)
        (loss / config.grad_accum).backward()
        totals["loss"] += loss.item() / config.grad_accum
        for key in ("mlm_loss", "nsp_loss"):
            totals[key] += stats[key] / config.grad_accum
        for key in ("mlm_correct", "mlm_total", "nsp_correct", "nsp_total"):
            totals[key] += stats[key]
    optimizer_step(model, optimizer, scheduler, config.clip)
    return totals


def _step_metrics(step, config, totals, scheduler) -> StepMetrics:
    return StepMetrics(
        step=step, steps=config.steps, loss=totals["loss"], mlm_loss=totals["mlm_loss"],
        nsp_loss=totals["nsp_loss"],
        mlm_accuracy=totals["mlm_correct"] / max(1, totals["mlm_total"]),
        nsp_accuracy=totals["nsp_correct"] / max(1, totals["nsp_total"]),
        lr=scheduler.get_last_lr()[0])


def save_checkpoint(out: Path, model, tokenizer, optimizer, scheduler, config, step,
                    history) -> None:
    """Weights + tokenizer (`save_pretrained`), optimiser/RNG state and the run's settings,
    swapped in atomically."""
    adapters = lora_state(model)

    def write(folder: Path) -> None:
        if adapters:  # a plain BERT folder, adapters folded in
            model.save_pretrained(folder, state_dict=merged_state_dict(model))
        else:
            model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        torch.save({"step": step, "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "rng": rng_state(),
                    "history": history, "lora": adapters}, folder / STATE_FILE)
        (folder / INFO_FILE).write_text(json.dumps(
            {"config": dataclasses.asdict(config), "step": step, "evaluations": history},
            indent=2))

    with quiet_hf_loading():
        replace_folder(out, write)


def _load_resume(config: PretrainConfig, out: Path) -> tuple[PretrainConfig, dict]:
    if not (out / STATE_FILE).is_file():
        raise EmbedderError(f"Nothing to resume in '{out}': it holds no {STATE_FILE}. Start "
                            f"a new run without --resume.")
    saved = PretrainConfig.from_dict(json.loads((out / INFO_FILE).read_text())["config"])
    saved = dataclasses.replace(saved, steps=max(config.steps, saved.steps),
                                device=config.device or saved.device)
    state = torch.load(out / STATE_FILE, weights_only=False)
    return saved, state
