"""The lecture's input construction: [CLS] A [SEP] B [SEP], segments, positions, padding."""

import random

import pytest

from embedder import InvalidInputError, build_pair_inputs, truncate_longest_first
from embedder.inputs import SpecialTokens, pack_inputs


@pytest.fixture(scope="module")
def tokenizer(encoder):
    return encoder.tokenizer


@pytest.mark.parametrize(
    "a, b, tokens, segments",
    [
        ("my dog is cute", "he likes playing",
         "[CLS] my dog is cute [SEP] he likes playing [SEP]",
         [0, 0, 0, 0, 0, 0, 1, 1, 1, 1]),
        ("My name is Dave", "I live in Toronto",
         "[CLS] my name is dave [SEP] i live in toronto [SEP]",
         [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1]),
        ("he likes studying medicine", "my dog is cute",
         "[CLS] he likes studying medicine [SEP] my dog is cute [SEP]",
         [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1]),
    ],
)
def test_pair_tokens_and_segments_are_the_lectures(tokenizer, a, b, tokens, segments):
    packed = build_pair_inputs(tokenizer, a, b, max_length=16)
    n = len(segments)
    assert " ".join(packed.tokens[:n]) == tokens
    assert packed.token_type_ids[:n] == segments
    # zero padding to the fixed length, masked out, segment 0
    assert packed.tokens[n:] == ["[PAD]"] * (16 - n)
    assert packed.input_ids[n:] == [0] * (16 - n)
    assert packed.attention_mask == [1] * n + [0] * (16 - n)
    assert packed.token_type_ids[n:] == [0] * (16 - n)
    assert packed.position_ids == list(range(16))
    assert packed.tokens_removed == 0


def test_golden_ids_for_my_dog_is_cute(tokenizer):
    packed = build_pair_inputs(tokenizer, "my dog is cute", "he likes playing", pad=False)
    assert packed.input_ids == [101, 2026, 3899, 2003, 10140, 102, 2002, 7777, 2652, 102]


def test_single_text_has_one_segment(tokenizer):
    packed = build_pair_inputs(tokenizer, "my dog is cute", max_length=8)
    assert packed.tokens == ["[CLS]", "my", "dog", "is", "cute", "[SEP]", "[PAD]", "[PAD]"]
    assert packed.token_type_ids == [0] * 8


def test_matches_the_tokenizers_own_pair_encoding(tokenizer):
    a, b = "The quick brown fox jumps.", "Over the lazy dog, twice!"
    ours = build_pair_inputs(tokenizer, a, b, pad=False)
    theirs = tokenizer(a, b)
    assert ours.input_ids == theirs["input_ids"]
    assert ours.token_type_ids == theirs["token_type_ids"]


def test_longest_first_truncation_trims_the_longer_segment(tokenizer):
    long_a = "one two three four five six seven eight nine ten"
    packed = build_pair_inputs(tokenizer, long_a, "he likes playing", max_length=12)
    # 12 - 3 specials = 9 content tokens: B (3 tokens) is kept, A is cut to 6
    assert packed.tokens == ["[CLS]", "one", "two", "three", "four", "five", "six", "[SEP]",
                             "he", "likes", "playing", "[SEP]"]
    assert packed.tokens_removed == 4


@pytest.mark.parametrize("la, lb, budget, expect", [
    (10, 2, 8, (6, 2)), (2, 10, 8, (2, 6)), (7, 7, 8, (4, 4)), (3, 3, 8, (3, 3)), (9, 8, 5, (3, 2)),
])
def test_truncate_longest_first_lengths(la, lb, budget, expect):
    a, b, removed = truncate_longest_first(list(range(la)), list(range(lb)), budget)
    assert (len(a), len(b)) == expect
    assert removed == la + lb - sum(expect)
    assert a == list(range(len(a))) and b == list(range(len(b)))  # cut from the end


def test_random_end_truncation_keeps_a_contiguous_span():
    a, b, _ = truncate_longest_first(list(range(20)), [], 10, rng=random.Random(0))
    assert len(a) == 10 and a == list(range(a[0], a[0] + 10))
    assert a[0] > 0  # with this seed some tokens came off the front


def test_bad_lengths_are_clear_errors():
    special = SpecialTokens(cls=101, sep=102, pad=0)
    with pytest.raises(InvalidInputError, match="max_length"):
        pack_inputs([1], [2], special, max_length=3)
    with pytest.raises(InvalidInputError, match="pad_to"):
        pack_inputs([1, 2, 3], None, special, max_length=10, pad_to=4)
