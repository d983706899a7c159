"""Fusing ranked lists into one: reciprocal-rank fusion (Cormack et al., SIGIR 2009).

Each list votes `weight / (constant + rank)` for each of its passages (rank from 1); a
passage's fused score is the sum of its votes. Ranks, not scores, are fused, so BM25 and
cosine scales never need calibrating against each other; a passage both lists rank highly
beats one that only a single list found.
"""

from __future__ import annotations

from dataclasses import dataclass, field

RRF_CONSTANT = 60  # Cormack et al.'s k (the fusions below use constants measured here)


@dataclass(frozen=True)
class Fusion:
    """Which ranked lists hybrid search fuses, with what weights and constant."""

    lists: tuple[str, ...]  # "dense", "keyword", "first" (documents' first passages)
    weights: dict[str, float] = field(default_factory=dict)
    constant: float = RRF_CONSTANT


def fusion_for(identifier: bool, group: str) -> Fusion:
    """The fusion hybrid search uses, chosen by measurement (bench/search.py; figures in
    bench/RESULTS.md, "Search modes"): a query that names something exactly trusts the
    keyword ranking three times over; a question ranked by documents also hears the
    documents' first passages (where a page says what it is about)."""
    if identifier:
        return Fusion(("dense", "keyword"), {"keyword": 3.0}, 10)
    if group == "documents":
        return Fusion(("dense", "keyword", "first"), {"first": 1.5}, 20)
    return Fusion(("dense", "keyword"), {}, 10)


def reciprocal_rank_fusion(rankings: dict[str, list[int]], k: int,
                           weights: dict[str, float] | None = None,
                           constant: float = RRF_CONSTANT) -> list[tuple[int, float]]:
    """The top `k` of the fused ranking: `[(id, fused score), ...]`, best first; ties go to
    the id ranked first by the earliest list.

    Args:
        rankings: each list's ids, best first (an id at most once per list).
        weights: each list's weight (default 1).
        constant: damps the advantage of the very first ranks.
    """
    scores: dict[int, float] = {}
    first_seen: dict[int, tuple[int, int]] = {}
    for position, (name, ids) in enumerate(rankings.items()):
        weight = 1.0 if weights is None else weights.get(name, 1.0)
        for rank, item in enumerate(ids, 1):
            scores[item] = scores.get(item, 0.0) + weight / (constant + rank)
            first_seen.setdefault(item, (rank, position))
    ranked = sorted(scores.items(), key=lambda kv: (-kv[1], first_seen[kv[0]]))
    return ranked[:k]
