"""Splitting a batch of texts into groups that are each run padded to their longest member.

Shared by the padded forward pass (ONNX backends: each group is one forward pass) and the
packed one (`packed.py`: each group is one attention call). A group costs a fixed overhead
plus its padded tokens; one group for everything wastes much of it on padding when lengths
vary, one group per text pays the overhead every time. Dynamic programming over the texts,
longest first, finds the cheapest split.
"""

from __future__ import annotations


def plan_batches(order: list[int], counts: list[int], batch_size: int, max_tokens: int,
                 limit: int, overhead: float) -> list[list[int]]:
    """Split `order` (indices, best sorted longest first) into consecutive groups.

    A group costs `overhead` plus its padded tokens (texts x its longest text, each count
    capped at `limit`). Groups hold at most `batch_size` texts and `max_tokens` padded tokens
    (a text longer than the budget goes alone). O(len(order) x batch_size).

    Returns:
        The groups, in `order`'s order; every index exactly once.
    """
    widths = [min(counts[i], limit) for i in order]
    n = len(widths)
    cost = [0.0] + [float("inf")] * n  # cost[j]: cheapest plan for the first j texts
    start = [0] * (n + 1)
    for j in range(1, n + 1):
        width = 0
        for i in range(j - 1, max(0, j - batch_size) - 1, -1):
            width = max(width, widths[i])  # the longest of order[i:j]
            if j - i > 1 and (j - i) * width > max_tokens:
                break  # wider groups only grow from here
            total = cost[i] + overhead + (j - i) * width
            if total < cost[j]:
                cost[j], start[j] = total, i
    plan, j = [], n
    while j > 0:
        plan.append(order[start[j]:j])
        j = start[j]
    return plan[::-1]


def fill_batches(order: list[int], counts: list[int], batch_size: int, max_tokens: int,
                 limit: int) -> list[list[int]]:
    """Consecutive groups of `order` filled up to `batch_size` texts and `max_tokens` real
    (unpadded) tokens each: the fewest passes when a pass costs its real tokens, as a packed
    forward pass does."""
    plan, group, tokens = [], [], 0
    for i in order:
        width = min(counts[i], limit)
        if group and (len(group) == batch_size or tokens + width > max_tokens):
            plan.append(group)
            group, tokens = [], 0
        group.append(i)
        tokens += width
    if group:
        plan.append(group)
    return plan
