"""The encoder: texts in, L2-normalised float32 embeddings out, pooled by mean or `[CLS]`.

A thin, fast layer over a Hugging Face `BertModel`: inputs are tokenized once (in Rust),
sorted by token length, run without autograd — packed end to end without padding on the
torch backend (`packed.py`), padded in batches of similar length on ONNX Runtime — pooled,
normalised and put back in the caller's order. Texts longer than the model's limit
are truncated and *reported* (`encode_detailed().truncated`, and a `TruncationWarning`
from `encode`), never silently.
"""

from __future__ import annotations

import copy
import os
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .backends import DEFAULT_BACKEND, check_backend, make_backend
from .errors import InvalidInputError
from .inputs import PairInputs, SpecialTokens, pack_inputs
from .loading import load_pretrained, pick_device
from .models import (
    DEFAULT_MODEL,
    is_packaged_alias,
    read_sentence_transformer_settings,
    resolve_model_path,
    weights_fingerprint,
)
from .packed import PackedBatch, pool_packed
from .planning import fill_batches, plan_batches

POOLINGS = ("mean", "cls")


# tokens per forward pass; see `Encoder.encode`
MAX_BATCH_TOKENS = 1024
# what one padded forward pass costs beyond its tokens, in tokens' worth of compute: ~10 ms
# against ~0.16 ms a token for the default encoder on CPU (torch padded; ONNX Runtime int8
# ~2.5 / 0.07)
FORWARD_OVERHEAD_TOKENS = 48
SMALL_CALL = 4  # texts; see Encoder.fast_small_calls


class TruncationWarning(UserWarning):
    """Some inputs were longer than the model's max sequence length and were cut."""


@dataclass
class Encoded:
    """The result of `Encoder.encode_detailed`."""

    embeddings: np.ndarray  # (n, dimension) float32
    token_counts: list[int]  # tokens per input before truncation, [CLS]/[SEP] included
    truncated: list[int]  # indices of the inputs that were cut to max_seq_length


class Encoder:
    """A BERT encoder that turns texts into embeddings.

    Load with `Encoder.load("default")` (the packaged all-MiniLM-L6-v2) or with the path of
    any local sentence-transformers or Hugging Face BERT folder (a `bertsearch pretrain`
    output works too). Satisfies the small interface the indexer needs:
    `encode(texts) -> float32 (n, d)` and `dimension`.
    """

    def __init__(self, model, tokenizer, *, name: str, source: str, max_seq_length: int,
                 pooling: str = "mean", normalize: bool = True, device: str = "cpu",
                 backend: str = DEFAULT_BACKEND):
        _check_pooling(pooling)
        self.model = model.eval()
        self.backend_name = check_backend(backend)
        self.tokenizer = tokenizer
        # its own copy for token_spans: the indexer chunks on one thread while it encodes on
        # another, and a Rust tokenizer must not be used by two threads at once
        self._span_tokenizer = copy.deepcopy(tokenizer)
        self._span_lock = threading.Lock()  # and chunking itself may run on two threads
        self.name = name  # for people: "all-MiniLM-L6-v2" or the folder's name
        self.source = source  # for machines: what Encoder.load takes to load it again
        self.max_seq_length = max_seq_length
        self.pooling = pooling
        self.normalize = normalize
        self.device = device
        self.special = SpecialTokens.of(tokenizer)
        self._small_runner = None  # ONNX fp32 for small calls, see fast_small_calls
        self._runner = make_backend(backend, self.model,
                                    self.fingerprint if backend != "torch" else "", device,
                                    self.model.config)

    @classmethod
    def load(cls, model: str | os.PathLike = DEFAULT_MODEL, *, device: str | None = None,
             pooling: str | None = None, max_seq_length: int | None = None,
             backend: str = DEFAULT_BACKEND) -> Encoder:
        """Load an encoder from an alias or a local folder, strictly offline.

        Args:
            model: `default` / `all-MiniLM-L6-v2`, or a local model folder.
            device: `cpu`, `cuda`, ...; default: CUDA when present, else CPU.
            pooling: default pooling for `encode`; default: what the folder's
                sentence-transformers config says, else `mean`.
            max_seq_length: token limit per text; default: the folder's setting, else the
                model's position limit.
            backend: `torch` (exact), `onnx` (fp32 ONNX Runtime) or `onnx-int8`
                (quantised; built and cached on first use).

        Raises:
            ModelNotFoundError: no such alias or folder.
            ModelLoadError: the folder is not a loadable BERT-style model.
        """
        path = resolve_model_path(model)
        settings = read_sentence_transformer_settings(path)
        device = pick_device(device)
        loaded = load_pretrained(path)
        net, tokenizer = loaded.model, loaded.tokenizer
        limit = max_seq_length or settings.max_seq_length or min(
            getattr(net.config, "max_position_embeddings", 512), tokenizer.model_max_length
        )
        packaged = is_packaged_alias(model)
        return cls(
            net.to(device), tokenizer, name="all-MiniLM-L6-v2" if packaged else path.name,
            source=DEFAULT_MODEL if packaged else str(path), max_seq_length=int(limit),
            pooling=pooling or settings.pooling or "mean", device=device, backend=backend,
        )

    @property
    def dimension(self) -> int:
        """Length of each embedding vector."""
        return int(self.model.config.hidden_size)

    @cached_property
    def fingerprint(self) -> str:
        """A short hash of the weights: indexes record it to refuse vectors of another model."""
        return weights_fingerprint(self.model)

    # -- tokenization ---------------------------------------------------------------------

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Content token ids of each text (no special tokens, not truncated)."""
        texts = _check_texts(texts)
        if not texts:
            return []
        return self.tokenizer(
            texts, add_special_tokens=False, return_attention_mask=False,
            return_token_type_ids=False, verbose=False,
        )["input_ids"]

    def token_spans(self, texts: Sequence[str]) -> list[list[tuple[int, int]]]:
        """The (start, end) character span of each content token of each text.

        What token-bounded chunking needs: cutting between two tokens' spans gives passages
        whose token count is known before they are embedded.
        """
        texts = _check_texts(texts)
        if not texts:
            return []
        with self._span_lock:
            mapping = self._span_tokenizer(
                texts, add_special_tokens=False, return_offsets_mapping=True,
                return_attention_mask=False, return_token_type_ids=False, verbose=False,
            )["offset_mapping"]
        return [[tuple(span) for span in spans] for spans in mapping]

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens each text would occupy as model input, `[CLS]` and `[SEP]` included."""
        return [len(ids) + 2 for ids in self.tokenize(texts)]

    # -- encoding -------------------------------------------------------------------------

    def encode(self, texts: Sequence[str], *, pooling: str | None = None,
               normalize: bool | None = None, batch_size: int = 64,
               max_batch_tokens: int = MAX_BATCH_TOKENS, on_batch=None) -> np.ndarray:
        """Embed texts.

        Args:
            texts: the texts to embed (a list; a lone string is refused, to catch a common
                slip that would embed each character).
            pooling: `mean` (average of token vectors) or `cls` (the `[CLS]` vector);
                default: the encoder's.
            normalize: L2-normalise each vector (default: yes), so inner product = cosine.
            batch_size: most texts per forward pass.
            max_batch_tokens: most tokens per forward pass (real tokens when packed, padded
                ones on ONNX Runtime): texts are sorted by length, so short texts go in
                large batches and long ones in small. The default, 1,024, was fastest on
                CPU for every backend when all were padded (bench/embed.py --budgets):
                larger batches of long texts fall out of cache. Padded passes are split
                further where padding would cost more than another pass (`plan_batches`).
            on_batch: called with the number of texts embedded after each forward pass
                (progress bars).

        Returns:
            float32 array `(len(texts), dimension)` in the input order.

        Warns:
            TruncationWarning: when any text exceeded `max_seq_length` tokens.
        """
        result = self.encode_detailed(texts, pooling=pooling, normalize=normalize,
                                      batch_size=batch_size, max_batch_tokens=max_batch_tokens,
                                      on_batch=on_batch)
        if result.truncated:
            warnings.warn(
                f"{len(result.truncated)} of {len(result.token_counts)} texts were longer than "
                f"{self.max_seq_length} tokens and were truncated; split long texts into "
                f"passages (the indexer does) to embed all of them.",
                TruncationWarning, stacklevel=2,
            )
        return result.embeddings

    def encode_detailed(self, texts: Sequence[str], *, pooling: str | None = None,
                        normalize: bool | None = None, batch_size: int = 64,
                        max_batch_tokens: int = MAX_BATCH_TOKENS, on_batch=None) -> Encoded:
        """Like `encode`, but also returns token counts and which texts were truncated."""
        return self.encode_token_ids(self.tokenize(_check_not_blank(texts)), pooling=pooling,
                                     normalize=normalize, batch_size=batch_size,
                                     max_batch_tokens=max_batch_tokens, on_batch=on_batch)

    def encode_token_ids(self, token_ids: Sequence[Sequence[int]], *,
                         pooling: str | None = None, normalize: bool | None = None,
                         batch_size: int = 64, max_batch_tokens: int = MAX_BATCH_TOKENS,
                         on_batch=None) -> Encoded:
        """Embed texts given as token ids of this model's vocabulary, without `[CLS]` and
        `[SEP]` (they are added; ids that already begin with `[CLS]` and end with `[SEP]`
        are taken as they are).

        Raises:
            InvalidInputError: an id outside the vocabulary, or an empty sequence.
        """
        pooling = pooling or self.pooling
        _check_pooling(pooling)
        normalize = self.normalize if normalize is None else normalize
        if batch_size < 1:
            raise InvalidInputError(f"batch_size must be at least 1; got {batch_size}.")
        token_ids = [self._content_ids(ids, i) for i, ids in enumerate(token_ids)]
        counts = [len(ids) + 2 for ids in token_ids]
        out = np.zeros((len(token_ids), self.dimension), dtype=np.float32)
        order = sorted(range(len(token_ids)), key=lambda i: -counts[i])  # longest first
        runner = self._small_runner if len(token_ids) <= SMALL_CALL and \
            self._small_runner is not None else self._runner
        for batch in self._plan(runner, order, counts, batch_size, max_batch_tokens):
            inputs = [pack_inputs(token_ids[i], None, self.special, self.max_seq_length)
                      for i in batch]
            out[batch] = self._forward(runner, inputs, pooling, normalize)
            if on_batch is not None:
                on_batch(len(batch))
        truncated = [i for i, n in enumerate(counts) if n > self.max_seq_length]
        return Encoded(out, counts, truncated)

    def _content_ids(self, ids: Sequence[int], i: int) -> list[int]:
        ids = list(ids)
        vocabulary = self.vocabulary_size
        if any(isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < vocabulary
               for t in ids):
            raise InvalidInputError(f"Token ids of input {i} must be whole numbers from 0 to "
                                    f"{vocabulary - 1} (this model's vocabulary).")
        if len(ids) >= 2 and ids[0] == self.special.cls and ids[-1] == self.special.sep:
            ids = ids[1:-1]
        return ids

    @property
    def vocabulary_size(self) -> int:
        return int(self.model.config.vocab_size)

    def fast_small_calls(self, export: bool = True) -> bool:
        """Run calls of at most `SMALL_CALL` texts (a query) on ONNX Runtime fp32 while big
        ones stay on packed torch: the same vectors (fp32 both; max difference ~1e-7), and a
        single query ~2x faster, ~5 ms instead of ~12 on 2 CPU cores (bench/RESULTS.md,
        "Query latency"). With `export`, the ONNX file is built now if it is not cached yet
        (once per model, some seconds); without, only a cached one is used. True when on.
        """
        if self.backend_name != "torch" or not self.device.startswith("cpu"):
            return False
        if self._small_runner is None:
            from .backends import OnnxBackend, onnx_cached, onnx_file

            if not export and not onnx_cached("onnx", self.fingerprint):
                return False
            self._small_runner = OnnxBackend(
                onnx_file("onnx", self.model, self.fingerprint, self.model.config), "onnx",
                spin=True)
        return True

    def _plan(self, runner, order: list[int], counts: list[int], batch_size: int,
              max_tokens: int) -> list[list[int]]:
        """Forward passes: packed ones cost their real tokens, so each is filled to the
        budgets; padded ones are split where padding would cost more than another pass."""
        if runner.packs:
            return fill_batches(order, counts, batch_size, max_tokens, self.max_seq_length)
        return plan_batches(order, counts, batch_size, max_tokens, self.max_seq_length,
                            overhead=FORWARD_OVERHEAD_TOKENS)

    def _forward(self, runner, inputs: list[PairInputs], pooling: str,
                 normalize: bool) -> np.ndarray:
        import torch

        with torch.inference_mode():
            vectors = pooled_vectors(runner, inputs, pooling, self.special.pad, self.device)
            if normalize:
                vectors = torch.nn.functional.normalize(vectors, p=2, dim=1)
        return vectors.float().cpu().numpy()

    # -- RAG frameworks ------------------------------------------------------------------

    def as_langchain(self):
        """This encoder as a LangChain `Embeddings` (needs `bertsearch[langchain]`)."""
        from .frameworks import langchain_embeddings

        return langchain_embeddings(self)

    def as_llama_index(self):
        """This encoder as a LlamaIndex `BaseEmbedding` (needs `bertsearch[llamaindex]`)."""
        from .frameworks import llama_index_embedding

        return llama_index_embedding(self)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed documents as lists of floats (what vector stores take)."""
        return self.encode(list(texts)).tolist() if texts else []

    def embed_query(self, text: str) -> list[float]:
        """Embed one query as a list of floats."""
        if not isinstance(text, str):
            raise InvalidInputError(f"embed_query takes one string; got {type(text).__name__}.")
        return self.encode([text])[0].tolist()

    def __repr__(self) -> str:
        return (f"Encoder(name={self.name!r}, dimension={self.dimension}, "
                f"pooling={self.pooling!r}, max_seq_length={self.max_seq_length}, "
                f"backend={self.backend_name!r})")


def pooled_vectors(runner, inputs: list[PairInputs], pooling: str, pad_id: int,
                   device: str):
    """One pooled vector per input from a backend's last hidden states: packed without
    padding when the backend can (`runner.packs`), else as one padded batch."""
    if runner.packs:
        batch = PackedBatch.of(inputs, device)
        return pool_packed(runner.packed(batch), batch, pooling)
    tensors = collate(inputs, max(len(p) for p in inputs), pad_id)
    hidden = runner(**tensors)  # (batch, seq, hidden)
    return pool(hidden, tensors["attention_mask"].to(hidden.device), pooling)


def collate(packed: list[PairInputs], width: int, pad_id: int, device: str = "cpu") -> dict:
    """Stack inputs into padded `(batch, width)` tensors for a BERT forward pass."""
    import torch

    def column(values, fill):
        return [row + [fill] * (width - len(row)) for row in values]

    return {
        "input_ids": torch.tensor(column([p.input_ids for p in packed], pad_id), device=device),
        "token_type_ids": torch.tensor(column([p.token_type_ids for p in packed], 0),
                                       device=device),
        "attention_mask": torch.tensor(column([p.attention_mask for p in packed], 0),
                                       device=device),
    }


def pool(hidden, attention_mask, pooling: str):
    """Reduce token vectors `(batch, seq, hidden)` to one vector per input.

    `mean` averages the vectors of real tokens (special tokens included, padding excluded),
    as sentence-transformers does; `cls` takes the final `[CLS]` vector.
    """
    if pooling == "cls":
        return hidden[:, 0]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (batch, seq, 1)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


def _check_pooling(pooling: str) -> None:
    if pooling not in POOLINGS:
        raise InvalidInputError(f"pooling must be one of {', '.join(POOLINGS)}; got {pooling!r}.")


def _check_texts(texts) -> list[str]:
    if isinstance(texts, str):
        raise InvalidInputError("Pass a list of texts, not a single string: encode([text]).")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise InvalidInputError(f"Text {i} is a {type(text).__name__}, not a string.")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidInputError(f"Text {i} has an unpaired surrogate at position "
                                    f"{exc.start}; pass valid Unicode text.") from None
    return texts


def _check_not_blank(texts) -> list[str]:
    """One rule with the CLI and HTTP: an empty or whitespace-only text is refused."""
    texts = _check_texts(texts)
    for i, text in enumerate(texts):
        if not text.strip():
            raise InvalidInputError(f"Text {i} is empty (or only whitespace): there is nothing "
                                    f"to embed.")
    return texts

