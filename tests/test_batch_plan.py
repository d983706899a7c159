"""Planning forward passes: every text once, within the budgets, padding traded for passes."""

import random

from embedder.encoder import FORWARD_OVERHEAD_TOKENS
from embedder.planning import plan_batches


def plan(counts, batch_size=64, max_tokens=1024, limit=256):
    order = sorted(range(len(counts)), key=lambda i: -counts[i])
    return order, plan_batches(order, counts, batch_size, max_tokens, limit,
                               overhead=FORWARD_OVERHEAD_TOKENS)


def padded_cost(batches, counts, limit=256):
    return sum(FORWARD_OVERHEAD_TOKENS + len(b) * min(counts[b[0]], limit) for b in batches)


def test_every_text_once_in_order_and_within_budgets():
    rng = random.Random(7)
    counts = [rng.randint(3, 300) for _ in range(500)]
    order, batches = plan(counts, batch_size=16, max_tokens=1024)
    assert [i for b in batches for i in b] == order
    for b in batches:
        assert len(b) <= 16
        width = min(counts[b[0]], 256)
        assert len(b) == 1 or len(b) * width <= 1024


def test_a_long_text_is_not_packed_with_short_ones():
    counts = [120] + [8] * 31
    _, batches = plan(counts)
    assert batches[0] == [0]
    assert sorted(i for b in batches[1:] for i in b) == list(range(1, 32))


def test_equal_lengths_share_one_pass():
    _, batches = plan([20] * 40)
    assert len(batches) == 1


def test_beats_filling_each_pass_greedily():
    rng = random.Random(3)
    counts = [rng.choice([6, 9, 12, 14, 18, 26, 41]) for _ in range(32)]
    order, batches = plan(counts)
    greedy, batch = [], []
    for i in order:  # fill a pass until the token budget is reached
        if batch and (len(batch) + 1) * counts[batch[0]] > 1024:
            greedy.append(batch)
            batch = []
        batch.append(i)
    greedy.append(batch)
    assert padded_cost(batches, counts) < padded_cost(greedy, counts)


def test_empty():
    assert plan([])[1] == []
