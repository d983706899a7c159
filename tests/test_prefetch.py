"""The prefetch thread shared by indexing and pretraining: order, errors, stopping."""

import threading
import time

import pytest

from embedder.prefetch import THREAD_NAME, prefetch


def test_keeps_order():
    assert list(prefetch(iter(range(500)), depth=4)) == list(range(500))


def test_an_error_while_producing_reaches_the_consumer_after_what_came_before():
    def failing():
        yield 1
        raise ValueError("bad file")

    got = []
    with pytest.raises(ValueError, match="bad file"):
        for item in prefetch(failing()):
            got.append(item)
    assert got == [1]


def test_the_worker_stops_when_the_consumer_does():
    stream = prefetch(iter(int, 1), depth=2)  # int() forever
    assert next(stream) == 0
    stream.close()
    deadline = time.time() + 5
    while any(t.name == THREAD_NAME for t in threading.enumerate()) and time.time() < deadline:
        time.sleep(0.05)
    assert not [t for t in threading.enumerate() if t.name == THREAD_NAME]


def test_a_cost_budget_bounds_what_is_read_ahead():
    """Large items wait until the consumer takes the earlier ones (one always goes)."""
    produced = []

    def items():
        for size in (40, 40, 40, 5, 100):
            produced.append(size)
            yield size

    stream = prefetch(items(), depth=10, cost=lambda size: size, budget=50)
    assert next(stream) == 40
    time.sleep(0.3)
    assert produced == [40, 40, 40]  # the third would exceed the budget: it waits to go
    assert list(stream) == [40, 40, 5, 100]
