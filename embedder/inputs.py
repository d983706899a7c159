"""BERT input construction: `[CLS] A [SEP] B [SEP]` with segment and position ids.

This is the lecture's recipe (and BERT's): a `[CLS]` token first, whose final hidden state
feeds sentence-level heads (NSP, classification); a `[SEP]` after each segment; segment ids
that mark every token up to and including the first `[SEP]` as the first sentence and every
token after it as the second; position ids 0..n-1; zero padding to a fixed length with an
attention mask that hides the padding.

The lecture numbers the segments 1 and 2; BERT's `token_type_ids` (and so every checkpoint
we load) number them 0 and 1. We use 0 and 1 throughout.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from .errors import InvalidInputError


@dataclass(frozen=True)
class SpecialTokens:
    """The ids of the special tokens a tokenizer uses."""

    cls: int
    sep: int
    pad: int
    mask: int | None = None

    @classmethod
    def of(cls, tokenizer) -> SpecialTokens:
        return cls(
            cls=tokenizer.cls_token_id,
            sep=tokenizer.sep_token_id,
            pad=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0,
            mask=tokenizer.mask_token_id,
        )


@dataclass
class PairInputs:
    """One model input: lists of equal length, ready to be stacked into a batch."""

    input_ids: list[int]
    token_type_ids: list[int]
    position_ids: list[int]
    attention_mask: list[int]
    tokens_removed: int = 0  # how many content tokens longest-first truncation dropped
    tokens: list[str] = field(default_factory=list)  # filled by build_pair_inputs only

    def __len__(self) -> int:
        return len(self.input_ids)


def truncate_longest_first(
    ids_a: list[int], ids_b: list[int], max_tokens: int, rng: random.Random | None = None
) -> tuple[list[int], list[int], int]:
    """Trim a pair to at most `max_tokens` content tokens, always from the longer segment.

    BERT's `truncate_seq_pair`: shortening the longer side first keeps as much of each
    segment as possible. Without `rng` tokens go from the end; with one, from the front or
    the end at random (as pretraining does, to avoid a bias towards sentence starts).

    Returns:
        The trimmed copies of both segments and the number of tokens removed.
    """
    a, b = list(ids_a), list(ids_b)
    removed = 0
    while len(a) + len(b) > max_tokens:
        longer = a if len(a) > len(b) else b  # ties trim B, as BERT does
        if rng is not None and rng.random() < 0.5:
            del longer[0]
        else:
            longer.pop()
        removed += 1
    return a, b, removed


def truncate_for_continuation(ids_a: list[int], ids_b: list[int],
                              max_tokens: int) -> tuple[list[int], list[int], int]:
    """Longest-first trimming that keeps the *end* of A and the *start* of B.

    Whether B follows A is decided where they meet, so for next-sentence prediction and
    coherence scoring the tokens far from the junction are the ones to drop: A loses tokens
    from its front, B from its back, always the longer one first.
    """
    a, b = list(ids_a), list(ids_b)
    removed = 0
    while len(a) + len(b) > max_tokens:
        if len(a) > len(b):
            del a[0]
        else:
            b.pop()
        removed += 1
    return a, b, removed


def pack_inputs(
    ids_a: list[int],
    ids_b: list[int] | None,
    special: SpecialTokens,
    max_length: int,
    pad_to: int | None = None,
    rng: random.Random | None = None,
) -> PairInputs:
    """Assemble `[CLS] A [SEP]` or `[CLS] A [SEP] B [SEP]` from token ids.

    Args:
        ids_a, ids_b: content token ids (no special tokens); `ids_b=None` for one text.
        special: the tokenizer's special token ids.
        max_length: the most tokens the packed input may hold, special tokens included.
        pad_to: pad with zeros (`special.pad`) to this length; None leaves it unpadded.
        rng: passed to `truncate_longest_first` (pretraining trims at random ends).

    Raises:
        InvalidInputError: `max_length` leaves no room for content, or `pad_to` is too short.
    """
    n_special = 2 if ids_b is None else 3
    if max_length <= n_special:
        raise InvalidInputError(f"max_length must be more than {n_special}; got {max_length}.")
    a, b, removed = truncate_longest_first(ids_a, ids_b or [], max_length - n_special, rng)
    input_ids = [special.cls, *a, special.sep]
    token_type_ids = [0] * len(input_ids)  # [CLS] A [SEP] -> segment 0, inclusive of [SEP]
    if ids_b is not None:
        input_ids += [*b, special.sep]
        token_type_ids += [1] * (len(b) + 1)  # B [SEP] -> segment 1
    n = len(input_ids)
    attention_mask = [1] * n
    if pad_to is not None:
        if pad_to < n:
            raise InvalidInputError(f"pad_to={pad_to} is shorter than the input ({n} tokens).")
        padding = pad_to - n
        input_ids += [special.pad] * padding
        token_type_ids += [0] * padding
        attention_mask += [0] * padding
    return PairInputs(
        input_ids=input_ids,
        token_type_ids=token_type_ids,
        position_ids=list(range(len(input_ids))),
        attention_mask=attention_mask,
        tokens_removed=removed,
    )


def build_pair_inputs(
    tokenizer, text_a: str, text_b: str | None = None, max_length: int = 128, pad: bool = True
) -> PairInputs:
    """Tokenize a sentence (pair) into BERT inputs, the lecture's way.

    Example: ("my dog is cute", "he likes playing") with the MiniLM tokenizer gives tokens
    `[CLS] my dog is cute [SEP] he likes playing [SEP]`, segment ids `0 0 0 0 0 0 1 1 1 1`,
    then zero padding up to `max_length`.

    Args:
        tokenizer: a Hugging Face WordPiece tokenizer (e.g. `Encoder.tokenizer`).
        text_a: the first sentence. text_b: the second, or None for a single text.
        max_length: fixed length of the result; longer pairs are trimmed longest-first.
        pad: pad with zeros to `max_length` (False: leave the input at its own length).

    Returns:
        A `PairInputs` with `tokens` filled in, for display and tests.
    """
    for text in (text_a, text_b):
        if text is not None and not isinstance(text, str):
            raise InvalidInputError(f"Texts must be strings; got {type(text).__name__}.")
    ids_a = tokenizer(text_a, add_special_tokens=False)["input_ids"]
    ids_b = None if text_b is None else tokenizer(text_b, add_special_tokens=False)["input_ids"]
    packed = pack_inputs(
        ids_a, ids_b, SpecialTokens.of(tokenizer), max_length, pad_to=max_length if pad else None
    )
    packed.tokens = tokenizer.convert_ids_to_tokens(packed.input_ids)
    return packed
