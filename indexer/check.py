"""`bertsearch check`: verify an index, and with `--repair`, mend it.

What is derived is rebuilt from the source of truth (the FAISS copy of the vectors, the
keyword index, passage counts); damaged stored vectors are recomputed from their passages'
text with the index's own encoder; a database with damaged pages is salvaged — every
readable document copied whole into a new file, the unreadable ones dropped (a folder's
files come back on its next sync) and named in the report. Nothing is deleted without a
copy: the damaged file stays beside the new one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from .errors import IndexCorruptError
from .passages import embedding_inputs
from .settings import IndexSettings
from .store import NewPassage, is_database_url, open_store


@dataclass
class CheckReport:
    location: str
    problems: list[str] = field(default_factory=list)
    repairs: list[str] = field(default_factory=list)
    repaired: bool = False  # --repair was asked for

    @property
    def ok(self) -> bool:
        """Sound now: nothing was wrong, or everything wrong was mended."""
        return not self.problems or (self.repaired and len(self.repairs) >= len(self.problems)
                                     and not any("left" in r for r in self.repairs))


def check_index(location: str | os.PathLike, repair: bool = False) -> CheckReport:
    """Check the index at `location` (folder or URL); mend it with `repair`.

    Raises:
        IndexNotFoundError: no index there.
        IndexBusyError: `repair` while another writer holds the index.
    """
    report = CheckReport(str(location), repaired=repair)
    try:
        store = open_store(location)  # read-only by itself where it cannot be written
    except IndexCorruptError as exc:
        report.problems.append(str(exc))
        if repair and not is_database_url(location):
            report.repairs.append(_start_over(Path(location).expanduser()))
        return report
    report.location = store.location  # a database URL without its password
    with store:
        lock = store.writer_lock("bertsearch check --repair") if repair else \
            contextlib.nullcontext()
        with lock:
            problems, repairs = store.check(repair, _reembedder(store) if repair else None)
    report.problems += problems
    report.repairs += repairs
    return report


def _reembedder(store):
    """Recomputes stored vectors from passage rows with the index's recorded encoder
    (loaded only if a vector needs it)."""

    def reembed(rows):
        from embedder.resolver import resolve_encoder

        settings = IndexSettings.from_dict(store.settings())
        encoder = resolve_encoder(record=settings.record)
        passages = [NewPassage(r.ordinal, r.start, r.end, r.line_start, r.line_end,
                               len(encoder.tokenize([r.text])[0]), r.text, r.headings)
                    for r in rows]
        return encoder.encode(embedding_inputs(passages, encoder, settings.context))

    return reembed


def _start_over(folder: Path) -> str:
    """An index whose database is gone (truncated to nothing): its files move aside to
    `damaged-<time>/` and the folder is empty for the next `bertsearch index`."""
    aside = folder / f"damaged-{time.strftime('%Y%m%d-%H%M%S')}"
    aside.mkdir()
    for path in list(folder.iterdir()):
        if path != aside and not path.name.startswith("damaged-"):
            shutil.move(str(path), aside / path.name)
    return (f"the index could not be saved; its files were moved to {aside} and the folder "
            f"is ready for `bertsearch index` to start it over")

