"""Producing items on a worker thread, a few ahead of the consumer.

The indexer reads, hashes and chunks the next files while the model embeds; pretraining
tokenises, masks and collates the next batches while the model steps.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from queue import Full, Queue

THREAD_NAME = "bertsearch-prefetch"


def prefetch(items: Iterator, depth: int = 4, cost=None, budget: int = 0) -> Iterator:
    """Iterate `items` on a worker thread, up to `depth` ahead of the consumer.

    With `cost` (item -> size, e.g. bytes held) the worker also waits while the items ahead
    cost more than `budget` in all (one item always goes, whatever its cost), so a few
    large items cannot fill memory. Order is kept. An exception raised while producing is
    re-raised to the consumer; once the consumer stops (closes this generator, or drops
    it), the worker stops too.
    """
    queue: Queue = Queue(maxsize=depth)
    stop = threading.Event()
    done = object()
    held = [0]  # the cost of the items queued
    room = threading.Condition()

    def put(entry) -> bool:
        weight = cost(entry[0]) if cost and entry[0] is not done else 0
        with room:
            room.wait_for(lambda: stop.is_set() or not held[0] or held[0] + weight <= budget)
            held[0] += weight
        while not stop.is_set():
            try:
                queue.put((*entry, weight), timeout=0.1)
                return True
            except Full:
                continue
        return False

    def produce():
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((done, None))
        except BaseException as exc:  # handed over to the consumer, not swallowed
            put((done, exc))

    threading.Thread(target=produce, name=THREAD_NAME, daemon=True).start()
    try:
        while True:
            item, error, weight = queue.get()
            with room:
                held[0] -= weight
                room.notify_all()
            if item is done:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        with room:
            room.notify_all()
