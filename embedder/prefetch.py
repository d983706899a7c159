"""Producing items on a worker thread, a few ahead of the consumer.

The indexer reads, hashes and chunks the next files while the model embeds; pretraining
tokenises, masks and collates the next batches while the model steps.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from queue import Full, Queue

THREAD_NAME = "bertsearch-prefetch"


def prefetch(items: Iterator, depth: int = 4) -> Iterator:
    """Iterate `items` on a worker thread, up to `depth` ahead of the consumer.

    Order is kept. An exception raised while producing is re-raised to the consumer; once
    the consumer stops (closes this generator, or drops it), the worker stops too.
    """
    queue: Queue = Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                queue.put(entry, timeout=0.1)
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
            item, error = queue.get()
            if item is done:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
