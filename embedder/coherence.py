"""Coherence: how plausibly one passage follows another, from a next-sentence-prediction head.

`CoherenceScorer.load()` gives the packaged default (all-MiniLM-L6-v2 with its top layers,
pooler and NSP head trained by this project on prose and technical docs, its lower layers
through LoRA adapters, shipped as a small fp16 delta over the packaged encoder: full tensors
for the top layers, two thin factors for each adapted weight), or any folder with an NSP
head (a `bertsearch pretrain` output). Scores are P(B follows A) in [0, 1].

A pair is trimmed longest-first to the model's limit keeping the *end* of A and the *start*
of B, where the evidence of continuity is.

Scores are calibrated: a model's `info.json` may carry a temperature (and bias) fitted on
held-out pairs of sources it never trained on (`embedder.training.calibration`), which the
scorer applies to the NSP head's log-odds, so that 0.5 means even odds beyond the training
text too.

Reading order uses what is known before it guesses: passages given with their `Position`
(document and ordinal, as search hits have) keep their document's order, and NSP only
decides where one document's run of passages goes relative to another's. Each link of a
chain or an order says which it was: `document` (known) or `scored` (NSP).
"""

from __future__ import annotations

import functools
import itertools
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .backends import TorchBackend
from .encoder import pooled_vectors
from .errors import InvalidInputError, ModelLoadError
from .inputs import PairInputs, SpecialTokens, pack_inputs, truncate_for_continuation
from .loading import load_pretrained, pick_device
from .models import (
    DEFAULT_MODEL,
    is_packaged_alias,
    resolve_model_path,
    weights_fingerprint,
)

PACKAGED_COHERENCE = Path(__file__).parent / "coherence_model"
DELTA_FILE = "delta.safetensors"
LORA_A, LORA_B = ".lora_A", ".lora_B"  # suffixes of the low-rank factors of a weight's change
INFO_FILE = "info.json"
MAX_ORDER_PASSAGES = 12  # reading order is exact (Held-Karp) up to this many runs of passages
# the lecture's label y: 1 when B follows A. Hugging Face's `next_sentence_label` is the
# opposite (0 = B follows A); `embedder.training.pairs.hf_next_sentence_label` converts.
IS_NEXT, NOT_NEXT = 1, 0


@dataclass(frozen=True)
class TextPair:
    """A labelled passage pair: `is_next` is 1 when B follows A (the lecture's y)."""

    a: str
    b: str
    is_next: int
    kind: str  # "next", "random", "same_document" or "swapped"


DOCUMENT, SCORED = "document", "scored"  # how a link's score is known


@dataclass(frozen=True)
class Position:
    """Where a passage lies: its document and its place in it (a search hit's `document_id`
    and `ordinal`)."""

    document: str
    ordinal: int


@dataclass(frozen=True)
class Link:
    """One step A -> B of a chain or an order, and how its score is known.

    `document`: A and B lie in one document, so the order is known: 1.0 when B comes after A
    there, 0.0 when before. `scored`: A and B are from different documents (or have no
    position), and the score is the model's calibrated P(B follows A).
    """

    kind: str  # DOCUMENT or SCORED
    score: float


@dataclass
class Chain:
    """Coherence of passages in the order given."""

    pair_scores: list[float]  # P(passage i+1 follows passage i): the links' scores
    mean: float
    weakest_link: int | None  # i of the least plausible step i -> i+1
    weakest_score: float | None
    links: list[Link] = field(default_factory=list)  # step i -> i+1: known or scored

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Order:
    """The most plausible reading order and the scores along it."""

    order: list[int]
    pair_scores: list[float]
    mean: float
    links: list[Link] = field(default_factory=list)  # each step of the order

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Calibration:
    """P(next) = sigmoid(log_odds / temperature + bias), from the NSP head's log-odds
    (temperature scaling, Guo et al. 2017, with an optional Platt bias). The identity
    (1, 0) leaves the head's own probabilities."""

    temperature: float = 1.0
    bias: float = 0.0

    def probability(self, log_odds: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(np.asarray(log_odds) / self.temperature + self.bias)))

    @classmethod
    def of(cls, info: dict) -> Calibration:
        """The calibration a model's `info.json` records (the identity if none)."""
        fitted = info.get("calibration") or {}
        return cls(float(fitted.get("temperature", 1.0)), float(fitted.get("bias", 0.0)))


class CoherenceScorer:
    """Scores P(B follows A) with a BERT next-sentence-prediction head."""

    def __init__(self, model, tokenizer, *, name: str, max_length: int = 128,
                 device: str = "cpu", calibration: Calibration = Calibration()):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.special = SpecialTokens.of(tokenizer)
        self.name = name
        self.max_length = max_length
        self.device = device
        self.calibration = calibration
        self._runner = TorchBackend(self.model.bert, device)

    @classmethod
    def load(cls, model: str | os.PathLike | None = None, *, device: str | None = None,
             max_length: int | None = None, calibrated: bool = True) -> CoherenceScorer:
        """The packaged default (`None` / `default`) or a folder with an NSP head.

        Args:
            calibrated: apply the calibration the model's `info.json` records (False: the
                NSP head's own probabilities, e.g. to fit a new calibration).

        Raises:
            ModelNotFoundError: no such folder.
            ModelLoadError: the folder's model has no trained NSP head.
        """
        device = pick_device(device)
        info: dict = {}
        if model is None or is_packaged_alias(model):
            net, tokenizer, info = load_delta(PACKAGED_COHERENCE)
            limit, name = info.get("max_length", 128), "bertsearch-coherence-minilm"
        elif (Path(model) / DELTA_FILE).is_file():
            net, tokenizer, info = load_delta(Path(model))
            limit, name = info.get("max_length", 128), str(model)
        else:
            loaded = read_nsp_model(resolve_model_path(model))
            net, tokenizer = loaded.model, loaded.tokenizer
            limit, name = 128, str(model)
        return cls(net.to(device), tokenizer, name=name, max_length=max_length or limit,
                   device=device, calibration=Calibration.of(info) if calibrated
                   else Calibration())

    def scores(self, pairs: Sequence[tuple[str, str]], batch_size: int = 32) -> np.ndarray:
        """P(B follows A) for each (A, B) pair, float64 in [0, 1], in input order
        (calibrated when the model carries a calibration)."""
        return self.calibration.probability(self.log_odds(pairs, batch_size))

    def log_odds(self, pairs: Sequence[tuple[str, str]], batch_size: int = 32) -> np.ndarray:
        """The NSP head's log-odds that B follows A, log P(next) - log P(not next), before
        calibration: what a calibration is fitted on."""
        import torch

        pairs = _check_pairs(pairs)
        if not pairs:
            return np.zeros(0)
        texts = sorted({t for pair in pairs for t in pair})
        ids = dict(zip(texts, self.tokenizer(texts, add_special_tokens=False,
                                             verbose=False)["input_ids"]))
        packed = []
        for a, b in pairs:
            ids_a, ids_b, _ = truncate_for_continuation(ids[a], ids[b], self.max_length - 3)
            packed.append(pack_inputs(ids_a, ids_b, self.special, self.max_length))
        order = sorted(range(len(packed)), key=lambda i: -len(packed[i]))
        out = np.zeros(len(packed))
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            with torch.inference_mode():
                logits = self.model.cls.seq_relationship(
                    self._pooled([packed[i] for i in chunk])).double()
            # Hugging Face's NSP label 0 means "B follows A"
            out[chunk] = (logits[:, 0] - logits[:, 1]).cpu().numpy()
        return out

    def _pooled(self, inputs: list[PairInputs]):
        """The pooler's output (tanh of a dense layer over `[CLS]`) for each input, from the
        encoder's forward pass (packed without padding for a plain BERT)."""
        first = pooled_vectors(self._runner, inputs, "cls", self.special.pad, self.device)
        pooler = self.model.bert.pooler
        return pooler.activation(pooler.dense(first))

    def score_matrix(self, passages: Sequence[str]) -> np.ndarray:
        """`m[i, j]` = P(passage j follows passage i); the diagonal is NaN."""
        passages = _check_passages(passages, minimum=1)
        k = len(passages)
        cells = [(i, j) for i in range(k) for j in range(k) if i != j]
        scores = self.scores([(passages[i], passages[j]) for i, j in cells])
        matrix = np.full((k, k), np.nan)
        for (i, j), s in zip(cells, scores):
            matrix[i, j] = s
        return matrix

    def chain_coherence(self, passages: Sequence[str],
                        positions: Sequence[Position] | None = None) -> Chain:
        """Scores of each consecutive pair, their mean and the weakest link; pairs of one
        document are known from their `positions`, not scored."""
        passages = _check_passages(passages, minimum=2)
        places = _check_positions(positions, len(passages))
        steps = list(zip(range(len(passages)), range(1, len(passages))))
        return _chain(_links(steps, places, self._scored(passages, places, steps)))

    def read(self, passages: Sequence[str], positions: Sequence[Position] | None = None,
             ) -> tuple[Chain, Order | None]:
        """The chain's coherence in the order given and the reading order, scoring each
        ordered pair once.

        With `positions`, passages of one document are read in their document's order and
        NSP only orders the documents' runs; the order is computed for up to
        `MAX_ORDER_PASSAGES` runs (each passage is its own run without positions), else
        it is None.
        """
        passages = _check_passages(passages, minimum=2)
        places = _check_positions(positions, len(passages))
        runs = document_runs(places)
        steps = list(zip(range(len(passages)), range(1, len(passages))))
        ordering = len(runs) <= MAX_ORDER_PASSAGES
        between = [(x[-1], y[0]) for x in runs for y in runs if x is not y] if ordering else []
        scores = self._scored(passages, places, steps + between)
        chain = _chain(_links(steps, places, scores))
        return chain, (_order(runs, places, scores) if ordering else None)

    def coherent_order(self, passages: Sequence[str],
                       positions: Sequence[Position] | None = None) -> Order:
        """The order in which each passage most plausibly follows the last.

        Passages of one document (by `positions`) keep their document's order; the runs of
        different documents (each passage, without positions) are ordered to maximise the
        product of P(next) over the steps between them: exactly (Held-Karp) for up to 12.
        """
        passages = _check_passages(passages, minimum=1)
        places = _check_positions(positions, len(passages))
        runs = document_runs(places)
        if len(runs) > MAX_ORDER_PASSAGES:
            raise InvalidInputError(
                f"Reading order is computed for at most {MAX_ORDER_PASSAGES} passages, or "
                f"runs of one document's passages (it scores every ordered pair of them); "
                f"got {len(runs)}.")
        between = [(x[-1], y[0]) for x in runs for y in runs if x is not y]
        return _order(runs, places, self._scored(passages, places, between))

    def _scored(self, passages: list[str], places: list[Position],
                steps: list[tuple[int, int]]) -> dict[tuple[int, int], float]:
        """P(b follows a) for the steps between different documents, each pair scored once
        (steps within a document are known, not scored)."""
        wanted = sorted({(a, b) for a, b in steps
                         if places[a].document != places[b].document})
        scores = self.scores([(passages[a], passages[b]) for a, b in wanted])
        return dict(zip(wanted, scores.tolist()))


def document_runs(places: Sequence[Position]) -> list[list[int]]:
    """Passage indices grouped by document, each group in its document's order (by
    ordinal, then as given), the groups in order of first appearance."""
    runs: dict[str, list[int]] = {}
    for i, place in enumerate(places):
        runs.setdefault(place.document, []).append(i)
    return [sorted(run, key=lambda i: places[i].ordinal) for run in runs.values()]


def _links(steps: list[tuple[int, int]], places: list[Position],
           scores: dict[tuple[int, int], float]) -> list[Link]:
    """Each step's link: known from the document when both passages lie in one, else
    the score NSP gave it."""
    out = []
    for a, b in steps:
        if places[a].document == places[b].document:
            out.append(Link(DOCUMENT, 1.0 if places[b].ordinal >= places[a].ordinal else 0.0))
        else:
            out.append(Link(SCORED, scores[(a, b)]))
    return out


def _chain(links: list[Link]) -> Chain:
    scores = [link.score for link in links]
    weakest = int(np.argmin(scores))
    return Chain(scores, float(np.mean(scores)), weakest, scores[weakest], links)


def _order(runs: list[list[int]], places: list[Position],
           scores: dict[tuple[int, int], float]) -> Order:
    """The most probable sequence of runs by the P(next) of their junctions (the last
    passage of one, the first of the next), each run kept in its own order."""
    k = len(runs)
    matrix = np.full((k, k), np.nan)
    for x in range(k):
        for y in range(k):
            if x != y:
                matrix[x, y] = scores[(runs[x][-1], runs[y][0])]
    path = best_path(np.log(np.clip(matrix, 1e-9, 1.0))) if k > 1 else [0]
    order = [i for x in path for i in runs[x]]
    links = _links(list(zip(order, order[1:])), places, scores)
    steps = [link.score for link in links]
    return Order(order, steps, float(np.mean(steps)) if steps else 1.0, links)


def _check_positions(positions, count: int) -> list[Position]:
    """The passages' positions; without any, each passage is its own document."""
    if positions is None:
        return [Position(f"#{i}", 0) for i in range(count)]
    positions = list(positions)
    if len(positions) != count or not all(isinstance(p, Position) for p in positions):
        raise InvalidInputError(f"Give one Position per passage: {count} passages, "
                                f"{len(positions)} positions.")
    return positions


def best_path(weights: np.ndarray) -> list[int]:
    """The Hamiltonian path with the largest sum of `weights[a, b]` (Held-Karp, O(2^k k^2))."""
    k = len(weights)
    best: dict[tuple[int, int], tuple[float, int]] = {}
    for i in range(k):
        best[(1 << i, i)] = (0.0, -1)
    for size in range(2, k + 1):
        for subset in itertools.combinations(range(k), size):
            mask = sum(1 << i for i in subset)
            for last in subset:
                rest = mask ^ (1 << last)
                best[(mask, last)] = max(
                    (best[(rest, prev)][0] + weights[prev, last], prev)
                    for prev in subset if prev != last)
    full = (1 << k) - 1
    last = max(range(k), key=lambda i: best[(full, i)][0])
    path, mask = [], full
    while last != -1:
        path.append(last)
        last, mask = best[(mask, last)][1], mask ^ (1 << last)
    return path[::-1]


# -- module-level conveniences over the default scorer -------------------------------------

@functools.lru_cache(maxsize=1)
def default_scorer() -> CoherenceScorer:
    """The packaged coherence model, loaded once per process on first use."""
    return CoherenceScorer.load()


def coherence_scores(pairs: Sequence[tuple[str, str]],
                     scorer: CoherenceScorer | None = None) -> np.ndarray:
    """P(B follows A) for each (A, B) pair, in [0, 1]."""
    return (scorer or default_scorer()).scores(pairs)


def chain_coherence(passages: Sequence[str], scorer: CoherenceScorer | None = None,
                    positions: Sequence[Position] | None = None) -> Chain:
    """Consecutive-pair scores of passages, their mean and the weakest link."""
    return (scorer or default_scorer()).chain_coherence(passages, positions)


def coherent_order(passages: Sequence[str], scorer: CoherenceScorer | None = None,
                   positions: Sequence[Position] | None = None) -> Order:
    """The most plausible reading order of passages (one document's in its own order)."""
    return (scorer or default_scorer()).coherent_order(passages, positions)


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


# -- loading ----------------------------------------------------------------------------------

def read_nsp_model(path: Path):
    """A `BertForPreTraining` folder whose NSP head was trained (a `bertsearch pretrain`
    output), as `Loaded` (model, tokenizer).

    Raises:
        ModelLoadError: the folder cannot be loaded, or its NSP head was never trained.
    """
    from transformers import BertForPreTraining

    loaded = load_pretrained(path, BertForPreTraining)
    if any(key.startswith("cls.seq_relationship") for key in loaded.missing_keys):
        raise ModelLoadError(
            f"'{path}' has no trained next-sentence-prediction head. Train one with "
            f"`bertsearch pretrain CORPUS --out DIR`, or use the default coherence model.")
    return loaded


def load_delta(folder: Path):
    """The default encoder with a saved delta (top layers, pooler, NSP head, LoRA changes)
    applied: a `BertForPreTraining` ready to score, its tokenizer and the delta's info."""
    import torch

    model, tokenizer, info, factors = read_delta(folder)
    state = model.state_dict()
    with torch.no_grad():
        for name, (b, a) in factors.items():  # LoRA-trained weights: base + B @ A
            state[name].add_(b @ a)
    return model, tokenizer, info


def read_delta(folder: Path):
    """The default encoder with a delta's full tensors applied, and its low-rank factors
    kept apart: `(model, tokenizer, info, {weight name: (B, A)})`, float32. Training that
    continues from a delta puts the factors back into LoRA adapters
    (`embedder.training.pretrain`).
    """
    import torch
    from safetensors.torch import load_file

    if not (folder / DELTA_FILE).is_file():
        raise ModelLoadError(f"No coherence model in '{folder}' (no {DELTA_FILE}).")
    base, tokenizer = load_base()
    info = json.loads((folder / INFO_FILE).read_text())
    if weights_fingerprint(base.bert) != info["base_fingerprint"]:
        raise ModelLoadError(
            f"The coherence model in '{folder}' was trained over another version of the "
            f"default encoder; reinstall bertsearch or retrain it.")
    delta = load_file(str(folder / DELTA_FILE))
    state = base.state_dict()
    low_rank = {name[:-len(LORA_B)] for name in delta if name.endswith(LORA_B)}
    unknown = set(delta) - set(state) - {n + part for n in low_rank for part in (LORA_A, LORA_B)}
    if unknown or not low_rank <= set(state):
        raise ModelLoadError(f"The coherence model in '{folder}' has unexpected tensors: "
                             f"{sorted(unknown or low_rank - set(state))[:3]}")
    with torch.no_grad():
        for name, tensor in delta.items():
            if name in state:
                state[name].copy_(tensor.to(torch.float32))
    factors = {name: (delta[name + LORA_B].float(), delta[name + LORA_A].float())
               for name in sorted(low_rank)}
    return base, tokenizer, info, factors


def load_base():
    """The packaged default encoder as a `BertForPreTraining` (NSP head untrained) and its
    tokenizer."""
    from transformers import BertForPreTraining

    loaded = load_pretrained(resolve_model_path(DEFAULT_MODEL), BertForPreTraining)
    return loaded.model, loaded.tokenizer


def _check_pairs(pairs) -> list[tuple[str, str]]:
    out = []
    for i, pair in enumerate(pairs):
        if (not isinstance(pair, (tuple, list)) or len(pair) != 2
                or not all(isinstance(t, str) for t in pair)):
            raise InvalidInputError(f"Pair {i} must be two strings (A, B).")
        if not pair[0].strip() or not pair[1].strip():
            raise InvalidInputError(f"Pair {i} has an empty passage.")
        out.append((pair[0], pair[1]))
    return out


def _check_passages(passages, minimum: int) -> list[str]:
    if isinstance(passages, str):
        raise InvalidInputError("Pass a list of passages, not a single string.")
    passages = list(passages)
    if len(passages) < minimum:
        raise InvalidInputError(f"Give at least {minimum} passages; got {len(passages)}.")
    for i, passage in enumerate(passages):
        if not isinstance(passage, str) or not passage.strip():
            raise InvalidInputError(f"Passage {i} must be a non-empty string.")
    return passages


