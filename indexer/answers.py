"""A search answered as the HTTP API answers it, for the CLI and programs alike:
`{query, mode, hits, coherence, reading_order}`, hits as dictionaries."""

from __future__ import annotations

import os
from dataclasses import asdict

from .index import Index, check_group, check_mode


def answer(location: str | os.PathLike, query: str, k: int = 10, *, mode: str | None = None,
           group: str | None = None, filter: dict | None = None,
           coherence: bool = False) -> dict:
    """Search the index at `location`; with `coherence`, also how the hits follow one
    another and the suggested reading order (one document's hits in its order, NSP between
    documents: `coherence.read_hits`)."""
    with Index.open(location) as index:
        hits = index.search(query, k, filter=filter, mode=mode, group=group)
    result = {"query": query, "mode": check_mode(mode), "group": check_group(group),
              "hits": [h.to_dict() for h in hits], "coherence": None, "reading_order": None}
    if coherence and len(hits) >= 2:
        from .coherence import coherence_scorer_for, read_hits

        chain, order = read_hits(coherence_scorer_for(location), hits)
        result["coherence"] = asdict(chain)
        result["reading_order"] = order and asdict(order)
    return result
