"""Operational metrics in the Prometheus text format, served at `GET /metrics`.

Counted here: requests by route template, method and status; latency histograms by route;
requests in flight. Read from the batcher and the index when scraped: texts per encoder
batch, texts waiting (queue depth), seconds the encoder was busy, documents and passages.
Route labels are templates (`/documents/{doc_id}`), never raw paths, so label values stay
few whatever clients send.
"""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Histogram:
    """Cumulative-bucket histogram, as Prometheus exposes one."""

    def __init__(self, buckets):
        self.buckets = tuple(buckets)
        self.counts = [0] * (len(self.buckets) + 1)  # the last: above every bound (+Inf)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value

    def lines(self, name: str, labels: str = "") -> list[str]:
        out, running = [], 0
        sep = "," if labels else ""
        for bound, count in zip((*self.buckets, float("inf")), self.counts):
            running += count
            le = "+Inf" if bound == float("inf") else f"{bound:g}"
            out.append(f'{name}_bucket{{{labels}{sep}le="{le}"}} {running}')
        braces = f"{{{labels}}}" if labels else ""
        out += [f"{name}_sum{braces} {self.sum:.6f}", f"{name}_count{braces} {running}"]
        return out


class Metrics:
    """What the server counts per request; thread-safe."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self.latency: dict[str, Histogram] = {}
        self.in_flight = 0

    def started(self) -> None:
        with self.lock:
            self.in_flight += 1

    def finished(self, route: str, method: str, status: int, seconds: float) -> None:
        with self.lock:
            self.in_flight -= 1
            self.requests[(route, method, status)] += 1
            self.latency.setdefault(route, Histogram(LATENCY_BUCKETS)).observe(seconds)

    def render(self, batcher=None, index_counts: tuple[int, int] | None = None) -> str:
        """The Prometheus text exposition of everything counted and read."""
        lines = ["# HELP bertsearch_requests_total Requests answered, by route, method and "
                 "status (499: the client went away).",
                 "# TYPE bertsearch_requests_total counter"]
        with self.lock:
            for (route, method, status), count in sorted(self.requests.items()):
                lines.append(f'bertsearch_requests_total{{route="{_label(route)}",'
                             f'method="{method}",status="{status}"}} {count}')
            lines += ["# HELP bertsearch_request_duration_seconds Time to answer, by route.",
                      "# TYPE bertsearch_request_duration_seconds histogram"]
            for route, histogram in sorted(self.latency.items()):
                lines += histogram.lines("bertsearch_request_duration_seconds",
                                         f'route="{_label(route)}"')
            lines += ["# HELP bertsearch_requests_in_flight Requests being answered.",
                      "# TYPE bertsearch_requests_in_flight gauge",
                      f"bertsearch_requests_in_flight {self.in_flight}"]
        if batcher is not None:
            lines += batcher_lines(batcher)
        if index_counts is not None:
            lines += ["# HELP bertsearch_index_documents Documents in the index.",
                      "# TYPE bertsearch_index_documents gauge",
                      f"bertsearch_index_documents {index_counts[0]}",
                      "# HELP bertsearch_index_passages Passages in the index.",
                      "# TYPE bertsearch_index_passages gauge",
                      f"bertsearch_index_passages {index_counts[1]}"]
        return "\n".join(lines) + "\n"


def batcher_lines(batcher) -> list[str]:
    return [
        "# HELP bertsearch_batch_texts Texts per encoder call (dynamic batching).",
        "# TYPE bertsearch_batch_texts histogram",
        *batcher.batch_sizes.lines("bertsearch_batch_texts"),
        "# HELP bertsearch_queue_texts Texts waiting for the encoder.",
        "# TYPE bertsearch_queue_texts gauge",
        f"bertsearch_queue_texts {batcher.queued_texts}",
        "# HELP bertsearch_encoder_busy_seconds_total Seconds the encoder spent embedding.",
        "# TYPE bertsearch_encoder_busy_seconds_total counter",
        f"bertsearch_encoder_busy_seconds_total {batcher.busy_seconds:.6f}",
        "# HELP bertsearch_abandoned_texts_total Texts dropped unembedded because their "
        "client went away.",
        "# TYPE bertsearch_abandoned_texts_total counter",
        f"bertsearch_abandoned_texts_total {batcher.abandoned_texts}",
    ]


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
