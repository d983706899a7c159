"""The `bertsearch` command line: a thin layer over the embedder and indexer libraries.

Each command parses its options, calls one library function and prints the result. Library
errors become one clear line on stderr and exit status 1 (see `BertsearchGroup`).
"""

from __future__ import annotations

import json
import sys
from importlib.metadata import PackageNotFoundError, version

import click

from embedder.errors import BertsearchError
from indexer.limits import DEFAULT_GROUP, DEFAULT_MODE, GROUPS, MAX_K, MODES


def _version() -> str:
    try:
        return version("bertsearch")
    except PackageNotFoundError:  # running from a checkout that was never installed
        return "0+unknown"


class BertsearchGroup(click.Group):
    """Maps every library error to a one-line `Error: ...` and a non-zero exit, in one place."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except BertsearchError as exc:
            raise click.ClickException(str(exc)) from None
        except OSError as exc:  # a file the user named cannot be read or written
            message = f"{exc.strerror or exc}: {exc.filename or ''}".strip()
            raise click.ClickException(message) from None


backend_option = click.option(
    "--backend", type=click.Choice(["torch", "onnx", "onnx-int8"]), default=None,
    envvar="BERTSEARCH_BACKEND",
    help="Inference backend: torch (exact), onnx (fp32) or onnx-int8 (fastest on CPU); "
         "default: torch, or what the index was built with.")

model_option = click.option(
    "--model", "-m", default="default", envvar="BERTSEARCH_MODEL", show_default=True,
    help="Encoder: 'default' (the packaged all-MiniLM-L6-v2) or a local model folder.",
)


@click.group(cls=BertsearchGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(_version(), "--version", "-V", prog_name="bertsearch")
def main():
    """bertsearch: BERT embeddings, vector search over your documents, and NSP coherence.

    \b
    Quick start:
      bertsearch index samples/docs --index ./my-index
      bertsearch query "how do I pretrain BERT?" --index ./my-index
    """


@main.command()
@click.argument("texts", nargs=-1)
@model_option
@click.option("--pooling", type=click.Choice(["mean", "cls"]), default=None,
              help="Pool token vectors by mean or take [CLS]; default: the model's own.")
@click.option("--no-normalize", is_flag=True, help="Return raw vectors, not L2-normalised.")
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=1))
@backend_option
def embed(texts, model, pooling, no_normalize, batch_size, backend):
    """Print the embedding of each TEXT as a JSON line {"text", "embedding"}.

    Use - to read one text per line from stdin.

    \b
    Example:
      bertsearch embed "my dog is cute" "he likes playing"
      cat sentences.txt | bertsearch embed -
    """
    texts = _read_texts(texts)
    from embedder.resolver import resolve_encoder

    encoder = resolve_encoder(model, backend)
    result = encoder.encode_detailed(texts, pooling=pooling, normalize=not no_normalize,
                                     batch_size=batch_size)
    for text, vector in zip(texts, result.embeddings):
        click.echo(json.dumps({"text": text, "embedding": vector.tolist()}))
    if result.truncated:
        click.echo(f"warning: {len(result.truncated)} text(s) exceeded {encoder.max_seq_length} "
                   f"tokens and were truncated.", err=True)


index_option = click.option(
    "--index", "-i", "index_dir", default="bertsearch-index", envvar="BERTSEARCH_INDEX",
    show_default=True, type=click.Path(file_okay=False),
    help="The index directory, or a postgresql:// URL.")


@main.command()
@click.argument("folder", type=click.Path(file_okay=False))
@index_option
@click.option("--model", "-m", default=None, envvar="BERTSEARCH_MODEL",
              help="Encoder for a new index ('default' or a local model folder); an existing "
                   "index keeps its own unless --rebuild.")
@click.option("--include", multiple=True, metavar="GLOB", help="Only index matching files.")
@click.option("--exclude", multiple=True, metavar="GLOB", help="Leave matching files out.")
@click.option("--rebuild", is_flag=True,
              help="Drop what the index holds and re-embed everything (e.g. a new model).")
@click.option("--chunk-tokens", default=200, show_default=True, type=int,
              help="Most tokens per passage.")
@click.option("--overlap", default=32, show_default=True, type=int,
              help="Tokens a passage repeats from the previous one.")
@click.option("--index-type", type=click.Choice(["auto", "flat", "hnsw"]), default="auto",
              show_default=True, help="Exact (flat) or approximate (hnsw) search; auto by size.")
@click.option("--max-file-mb", default=10.0, show_default=True, type=float,
              help="Skip larger files.")
@click.option("--batch-size", default=None, type=click.IntRange(min=1),
              help="Passages embedded and committed together; a crash loses at most one "
                   "batch. Default 256 (16,384 with --ray).")
@click.option("--context", type=click.Choice(["headings", "plain"]), default=None,
              help="Embed each passage with its document's title and section headings, or "
                   "its text alone (a change re-embeds everything on the next sync). "
                   "Default: what the index records; plain for a new index.")
@click.option("--wait", is_flag=True,
              help="If another indexer is writing this index, wait for it instead of failing.")
@click.option("--ray", "ray_address", is_flag=False, flag_value="local", default=None,
              metavar="[local|auto|ADDRESS]",
              help="Embed on Ray: 'local' (the default when given bare) starts Ray here, "
                   "'auto' or an address joins a running cluster. Needs bertsearch[ray].")
@click.option("--ray-actors", default=1, show_default=True, type=click.IntRange(min=1),
              help="With --ray: actors embedding at once (each loads the model once).")
@click.option("--ray-gpus-per-actor", default=0.0, show_default=True,
              type=click.FloatRange(min=0), help="With --ray: a GPU share for each actor.")
@backend_option
@click.option("--quiet", "-q", is_flag=True, help="No progress bar and no list of skipped files.")
def index(folder, index_dir, model, include, exclude, rebuild, chunk_tokens, overlap,
          index_type, max_file_mb, batch_size, context, wait, ray_address, ray_actors,
          ray_gpus_per_actor, backend, quiet):
    """Index the documents in FOLDER (.txt .md .rst .html .pdf), or sync the index with it.

    Re-running on the same folder embeds only new and changed files and drops deleted ones.

    \b
    Example:
      bertsearch index ~/notes --index ~/notes-index
      bertsearch index docs/ --include '*.md' --exclude 'drafts/*'
      bertsearch index corpus/ --index postgresql://db/search --ray auto --ray-actors 8
    """
    from indexer.documents import check_folder

    check_folder(folder)  # before loading anything heavy: a typo is answered at once
    from indexer import ChunkSettings, build_index, encoder_for_index

    encoder = encoder_for_index(index_dir, model, backend, rebuild=rebuild)
    progress = _progress_bar(quiet)
    try:
        with _stop_on_sigterm(), progress:
            report = build_index(
                folder, index_dir, encoder, chunk=ChunkSettings(chunk_tokens, overlap),
                include=list(include), exclude=list(exclude), rebuild=rebuild,
                index_type=index_type, max_file_bytes=int(max_file_mb * 1024 * 1024),
                batch_passages=batch_size, context=context, wait=wait, progress=progress,
                ray=ray_address, ray_actors=ray_actors, ray_gpus_per_actor=ray_gpus_per_actor)
    except KeyboardInterrupt:
        raise click.ClickException(_interrupted(progress.state, batch_size or 256)) from None
    if getattr(encoder, "backend_name", "") == "torch" and encoder.device == "cpu":
        from embedder.backends import onnx_cached

        if not onnx_cached("onnx", encoder.fingerprint) and not quiet:
            click.echo("Building the fast path for single queries (an ONNX export of the "
                       "model, once; cached)...", err=True)
        encoder.fast_small_calls(export=True)
    if report.recipe_change:
        old, new = report.recipe_change
        click.echo(f"The passage recipe changed ({old} -> {new}): every document was "
                   f"re-embedded.", err=True)
    click.echo(f"Indexed {report.folder} into {report.index}: {report.summary()}.")
    if not quiet:
        for skipped in report.skipped:
            click.echo(f"  skipped {skipped.relpath}: {skipped.reason}", err=True)


@main.command()
@click.argument("text")
@index_option
@click.option("-k", "--top", "k", default=10, show_default=True, type=click.IntRange(1, MAX_K),
              help="How many passages to show.")
@click.option("--mode", type=click.Choice(MODES), default=None,
              help=f"hybrid (meaning and keywords fused), dense (meaning) or keyword (BM25); "
                   f"default: {DEFAULT_MODE}.")
@click.option("--group", type=click.Choice(GROUPS), default=None,
              help=f"documents (one hit per document) or passages (the best passages, several "
                   f"per document if they rank); default: {DEFAULT_GROUP}.")
@click.option("--where", multiple=True, metavar="KEY=VALUE",
              help="Only documents whose metadata matches (also !=, >, >=, <, <=); "
                   "repeatable, all must hold. E.g. --where year>=2020 --where tag=faq")
@click.option("--path", "path_glob", metavar="GLOB",
              help="Only documents whose path in the folder matches, e.g. 'api/*.md'.")
@click.option("--filter", "filter_json", metavar="JSON",
              help='A whole filter, e.g. \'{"$or": [{"tag": "faq"}, {"year": 2025}]}\'.')
@click.option("--json", "as_json", is_flag=True,
              help="Print the answer as JSON, as POST /search returns it.")
@click.option("--coherence", "with_coherence", is_flag=True,
              help="Also score how the hits follow one another (NSP) and suggest an order.")
@click.option("--server", metavar="URL", envvar="BERTSEARCH_SERVER",
              help="Ask a running `bertsearch serve` (e.g. http://127.0.0.1:8000) instead of "
                   "opening the index here: answers in a fraction of a second.")
@click.option("--api-key", default=None, envvar="BERTSEARCH_API_KEY",
              help="With --server: the server's API key.")
def query(text, index_dir, k, mode, group, where, path_glob, filter_json, as_json,
          with_coherence, server, api_key):
    """Show the indexed passages that best answer TEXT, its words highlighted.

    \b
    Example:
      bertsearch query "how is BERT pretrained?" --index my-index -k 5
      bertsearch query "EADDRINUSE" --mode keyword --path 'networking/*'
      bertsearch query "printer jams" --where year>=2024 --where team=ops
      bertsearch query "printer jams" --server http://127.0.0.1:8000
    """
    from indexer.filters import filter_from_options

    spec = filter_from_options(where, path_glob, filter_json)
    if server:
        from server.client import remote_search

        result = remote_search(server, {"query": text, "k": k, "mode": mode, "group": group,
                                        "filter": spec, "coherence": with_coherence}, api_key)
    else:
        from indexer.answers import answer

        result = answer(index_dir, text, k, mode=mode, group=group, filter=spec,
                        coherence=with_coherence)
    if as_json:
        click.echo(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        _print_answer(result, filtered=spec is not None)


def _print_answer(result: dict, filtered: bool) -> None:
    """Hits with their place, score and snippet; the coherence chain if asked for."""
    hits = result["hits"]
    if not hits:
        click.echo("No passages match." if filtered else "No passages in the index.")
    for rank, hit in enumerate(hits, 1):
        headings = f"  ({' > '.join(hit['headings'])})" if hit.get("headings") else ""
        click.echo(f"{rank:>2}. {hit['score']:.3f}  {_shown_path(hit['file'])}:"
                   f"{hit['line_start']}-{hit['line_end']}{headings}")
        click.echo(f"    {_snippet(hit)}")
    chain, order = result.get("coherence"), result.get("reading_order")
    if chain:
        click.echo(f"\nCoherence of consecutive hits (P(next); d = known from the document): "
                   f"{_links_text(chain)}")
        click.echo(f"  mean {chain['mean']:.2f}; weakest link {chain['weakest_link'] + 1}->"
                   f"{chain['weakest_link'] + 2} ({chain['weakest_score']:.2f})")
    if order:
        click.echo(f"Suggested reading order: {', '.join(str(i + 1) for i in order['order'])}"
                   f" (one file's hits in its order, files by P(next); links "
                   f"{_links_text(order)})")


def _links_text(scored: dict) -> str:
    """Link scores of a chain or order, those known from the document marked `d`
    ('0.62 1.00d 0.31'); a server without links gives plain scores."""
    links = scored.get("links") or [{"kind": "scored", "score": s}
                                    for s in scored["pair_scores"]]
    return " ".join(f"{link['score']:.2f}{'d' if link['kind'] == 'document' else ''}"
                    for link in links) or "-"


@main.command()
@index_option
@click.option("--repair", is_flag=True,
              help="Mend what is wrong: rebuild derived data, recompute damaged vectors, "
                   "salvage a damaged database (the damaged file is kept).")
def check(index_dir, repair):
    """Verify an index: database pages, keyword index, stored vectors, the vector file.

    Exits 0 when the index is sound (or was mended), 1 when problems remain.

    \b
    Example:
      bertsearch check --index my-index
      bertsearch check --index my-index --repair
    """
    from indexer.check import check_index

    report = check_index(index_dir, repair=repair)
    for problem in report.problems:
        click.echo(f"problem: {problem}")
    for repair_made in report.repairs:
        click.echo(f"repaired: {repair_made}")
    if not report.problems:
        click.echo(f"{report.location}: sound.")
    elif not report.ok:
        raise click.ClickException(
            f"{report.location} has problems; run `bertsearch check --index {index_dir} "
            f"--repair`." if not repair else f"{report.location} still has problems.")


@main.group()
def documents():
    """Add, read and delete documents by id (the documents API), without a folder.

    \b
    Example:
      bertsearch documents put ticket-42 --text "Printer on floor 3 jams" --meta year=2025
      bertsearch documents put notes/today --file today.md --meta tag=journal
      bertsearch documents get ticket-42
      bertsearch documents delete ticket-42
    """


@documents.command("put")
@click.argument("doc_id", metavar="ID")
@index_option
@click.option("--text", help="The document's text.")
@click.option("--file", "path", type=click.File(encoding="utf-8"),
              help="Read the text from a file (- for stdin).")
@click.option("--meta", multiple=True, metavar="KEY=VALUE",
              help="A metadata field (VALUE read as JSON when it is one); repeatable.")
@click.option("--metadata", "metadata_json", metavar="JSON", help="All metadata as JSON.")
def documents_put(doc_id, index_dir, text, path, meta, metadata_json):
    """Add or replace document ID (an index is created if there is none).

    The text is chunked and embedded as a file's would be; the same text again embeds
    nothing, and new metadata alone is only recorded.
    """
    from indexer import Index
    from indexer.index import metadata_from_options

    if (text is None) == (path is None):
        raise click.ClickException("Give the text with --text or --file (one of them).")
    metadata = metadata_from_options(meta, metadata_json)
    with Index.open(index_dir, create=True) as index:
        result = index.upsert(doc_id, text if path is None else path.read(), metadata)
    click.echo(f"{result.id}: {result.action} ({result.passages} passages).")


@documents.command("get")
@click.argument("doc_id", metavar="ID")
@index_option
@click.option("--json", "as_json", is_flag=True, help="Print the document as JSON.")
def documents_get(doc_id, index_dir, as_json):
    """Print document ID: its metadata and text."""
    from indexer import Index

    with Index.open(index_dir) as index:
        document = index.get(doc_id)
    if document is None:
        raise click.ClickException(f"No document with id '{doc_id}' in the index.")
    if as_json:
        click.echo(json.dumps(document.to_dict(), indent=2, ensure_ascii=False))
        return
    click.echo(f"id: {document.id} ({document.origin}, {document.passages} passages)")
    click.echo(f"metadata: {json.dumps(document.metadata, ensure_ascii=False)}\n")
    click.echo(document.text if document.text is not None else "(text not kept)")


@documents.command("delete")
@click.argument("doc_id", metavar="ID")
@index_option
def documents_delete(doc_id, index_dir):
    """Delete document ID (added with `documents put`) with every trace of it."""
    from indexer import Index

    with Index.open(index_dir) as index:
        if not index.delete(doc_id):
            raise click.ClickException(f"No document with id '{doc_id}' in the index.")
    click.echo(f"{doc_id}: deleted.")


@main.command()
@click.option("--index", "-i", "index_dir", default="bertsearch-index", envvar="BERTSEARCH_INDEX",
              show_default=True,
              help="The index to search, a folder or a postgresql:// URL (it may come later).")
@click.option("--host", default="127.0.0.1", show_default=True, envvar="BERTSEARCH_HOST",
              help="Address to listen on; the default takes connections from this machine only.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535),
              envvar="BERTSEARCH_PORT")
@click.option("--model", "-m", default=None, envvar="BERTSEARCH_MODEL",
              help="Encoder for /embed and /v1/embeddings; default: the index's own.")
@click.option("--api-key", default=None, envvar="BERTSEARCH_API_KEY",
              help="Require 'Authorization: Bearer KEY' on every route but /health.")
@click.option("--coherence-model", default=None, envvar="BERTSEARCH_COHERENCE_MODEL",
              help="NSP model for /coherence; default: the packaged coherence model.")
@click.option("--classifier", default=None, type=click.Path(file_okay=False),
              help="A `bertsearch finetune` output folder to serve on /classify.")
@backend_option
@click.option("--strict-model-names", is_flag=True,
              help="On /v1/embeddings accept only the served model's own names (by default "
                   "any name means the served model, as OpenAI clients send their own).")
@click.option("--read-timeout", default=30.0, show_default=True, type=click.FloatRange(1, 3600),
              help="Seconds a client has to send a request's headers, and again its body.")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
@click.option("--no-access-log", is_flag=True,
              help="No JSON line per request on stderr (also off at --log-level warning+).")
def serve(index_dir, host, port, model, api_key, coherence_model, classifier, backend,
          strict_model_names, read_timeout, log_level, no_access_log):
    """Serve search, embeddings and coherence over HTTP (OpenAPI docs at /docs).

    \b
    Example:
      bertsearch serve --index my-index --port 8000
      curl -s localhost:8000/search -H 'content-type: application/json' \\
           -d '{"query": "how is BERT pretrained?", "k": 3}'
    """
    from server import ServerSettings, serve

    settings = ServerSettings(index_dir=index_dir, model=model, api_key=api_key,
                              coherence_model=coherence_model, classifier=classifier,
                              backend=backend, strict_model_names=strict_model_names,
                              header_timeout_s=read_timeout, body_timeout_s=read_timeout)
    serve(settings, host=host, port=port, log_level=log_level, access_log=not no_access_log)


@main.command()
@click.argument("corpus", nargs=-1, required=True, type=click.Path())
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False),
              help="Checkpoint folder (usable as --model afterwards).")
@click.option("--objective", type=click.Choice(["mlm+nsp", "nsp"]), default="mlm+nsp",
              show_default=True, help="Train both heads, or next-sentence prediction only.")
@click.option("--negatives", type=click.Choice(["random", "hard"]), default="random",
              show_default=True, help="NotNext pairs: other documents only (BERT), or also "
                                      "same-document and swapped pairs (for coherence).")
@click.option("--trim", type=click.Choice(["random", "continuation"]), default="random",
              show_default=True, help="Trim long pairs at random ends (BERT), or keep the "
                                      "end of A and the start of B (coherence).")
@click.option("--freeze-layers", default=0, show_default=True, type=click.IntRange(min=0),
              help="Freeze the embeddings and this many bottom layers.")
@click.option("--lora-rank", default=0, show_default=True, type=click.IntRange(min=0),
              help="Train the frozen layers through low-rank adapters of this rank "
                   "(needs --freeze-layers; the checkpoint has them folded in).")
@click.option("--steps", default=1000, show_default=True, type=click.IntRange(min=1))
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=1))
@click.option("--grad-accum", default=1, show_default=True, type=click.IntRange(min=1),
              help="Micro-batches per optimiser step.")
@click.option("--max-length", default=128, show_default=True, type=click.IntRange(16, 512))
@click.option("--lr", default=5e-5, show_default=True, type=float)
@click.option("--warmup", default=0.1, show_default=True, type=float,
              help="Share of the steps spent warming up the learning rate.")
@click.option("--from", "base_model", default="default", show_default=True,
              help="Continue from this encoder ('default' or a model folder), or from a "
                   "coherence model folder (its LoRA factors train on).")
@click.option("--from-scratch", is_flag=True, help="Start from random weights instead.")
@click.option("--hidden-size", default=256, show_default=True, help="With --from-scratch.")
@click.option("--layers", default=4, show_default=True, help="With --from-scratch.")
@click.option("--heads", default=4, show_default=True, help="With --from-scratch.")
@click.option("--resume", is_flag=True, help="Continue the run saved in --out exactly.")
@click.option("--seed", default=0, show_default=True)
@click.option("--eval-every", default=200, show_default=True)
@click.option("--save-every", default=500, show_default=True)
@click.option("--device", default=None, help="cpu, cuda, ...; default: CUDA when present.")
def pretrain(corpus, out, objective, negatives, trim, freeze_layers, lora_rank, steps,
             batch_size, grad_accum, max_length, lr, warmup, base_model, from_scratch,
             hidden_size, layers, heads, resume, seed, eval_every, save_every, device):
    """Pretrain BERT on CORPUS (folders of text files) with MLM + next-sentence prediction.

    Continues the packaged MiniLM by default (its MLM and NSP heads start fresh). The output
    folder works anywhere a model is accepted, and its NSP head can score coherence.

    \b
    Example:
      bertsearch pretrain ~/texts --out my-bert --steps 2000
      bertsearch pretrain ~/texts --out tiny-bert --from-scratch --layers 2 --steps 500
      bertsearch pretrain ~/texts --out my-bert --steps 4000 --resume
    """
    from embedder.training.pairs import HARD_NEGATIVES, NegativeMix
    from embedder.training.pretrain import ModelSize, PretrainConfig
    from embedder.training.pretrain import pretrain as run_pretraining

    config = PretrainConfig(
        corpus=list(corpus), out=out, mlm=objective == "mlm+nsp", trim=trim,
        negatives=HARD_NEGATIVES if negatives == "hard" else NegativeMix(),
        freeze_layers=freeze_layers, lora_rank=lora_rank,
        base_model=None if from_scratch else base_model,
        size=ModelSize(hidden_size, layers, heads, 4 * hidden_size), steps=steps,
        batch_size=batch_size, grad_accum=grad_accum, max_length=max_length, lr=lr,
        warmup=warmup, seed=seed, eval_every=eval_every, save_every=save_every, device=device)
    with _training_bar(steps) as bar:
        result = run_pretraining(config, resume=resume, progress=bar.step, on_eval=bar.evaluated)
    click.echo(f"Saved {result.out} after {result.steps} steps in {result.seconds:.0f}s.")
    if result.evaluations:
        last = result.evaluations[-1]
        click.echo(f"Held-out: MLM accuracy {last.mlm_accuracy:.3f}, NSP accuracy "
                   f"{last.nsp_accuracy:.3f} ({last.pairs} pairs).")


class _training_bar:
    """A tqdm bar over optimiser steps showing loss and accuracies; evaluations as lines."""

    def __init__(self, total: int):
        from tqdm import tqdm

        self.bar = tqdm(total=total, unit="step", dynamic_ncols=True, file=sys.stderr,
                        disable=not sys.stderr.isatty())

    def __enter__(self):
        return self

    def step(self, metrics) -> None:
        self.bar.n = metrics.step
        self.bar.set_postfix(loss=f"{metrics.loss:.3f}", mlm_acc=f"{metrics.mlm_accuracy:.2f}",
                             nsp_acc=f"{metrics.nsp_accuracy:.2f}", refresh=True)

    def plain_step(self, step: int, steps: int, loss: float) -> None:
        self.bar.n = step
        self.bar.set_postfix(loss=f"{loss:.3f}", refresh=True)

    def epoch_done(self, report) -> None:
        self.bar.write(f"epoch {report.epoch}: train loss {report.train_loss:.4f}, eval loss "
                       f"{report.eval_loss:.4f}, accuracy {report.accuracy:.3f}, macro-F1 "
                       f"{report.macro_f1:.3f}", file=sys.stderr)

    def evaluated(self, metrics) -> None:
        by_kind = ", ".join(f"{k} {v:.2f}" for k, v in metrics.nsp_accuracy_by_kind.items())
        self.bar.write(f"step {metrics.step}: held-out MLM acc {metrics.mlm_accuracy:.3f}, "
                       f"NSP acc {metrics.nsp_accuracy:.3f} ({by_kind})", file=sys.stderr)

    def __exit__(self, *exc):
        self.bar.close()


class DefaultCommandGroup(click.Group):
    """A group whose first argument, when it is not a subcommand, goes to `default_command`:
    `bertsearch coherence A B` scores, `bertsearch coherence train ...` trains."""

    default_command = "score"

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)


@main.group(cls=DefaultCommandGroup)
def coherence():
    """Score how plausibly passages follow one another (next-sentence prediction).

    \b
    Example:
      bertsearch coherence "My dog is cute." "He likes playing."
      bertsearch coherence --file passages.txt      # passages separated by blank lines
      bertsearch coherence train --index my-index   # adapt the model to an index
    """


@coherence.command("score")
@click.argument("texts", nargs=-1)
@click.option("--file", "path", type=click.File(encoding="utf-8"),
              help="Read passages from a file, separated by blank lines (- for stdin).")
@click.option("--model", "-m", default=None, envvar="BERTSEARCH_COHERENCE_MODEL",
              help="An NSP model folder; default: the packaged coherence model.")
@click.option("--index", "-i", "index_dir", default=None,
              help="Use this index's adapted coherence model, if it has one.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def coherence_score(texts, path, model, index_dir, as_json):
    """Print P(next) for each consecutive pair of TEXTS, and a suggested reading order.

    \b
    Example:
      bertsearch coherence "My dog is cute." "He likes playing." "He likes studying medicine."
    """
    from indexer.coherence import coherence_scorer_for

    passages = list(texts)
    if path is not None:
        passages += [p.strip() for p in path.read().split("\n\n") if p.strip()]
    if len(passages) < 2:
        raise click.ClickException("Give at least two passages (as arguments or --file).")
    chain, order = coherence_scorer_for(index_dir, model).read(passages)
    if as_json:
        click.echo(json.dumps({"coherence": chain.to_dict(),
                               "reading_order": order and order.to_dict()}, indent=2))
        return
    for i, score in enumerate(chain.pair_scores):
        click.echo(f"{i + 1} -> {i + 2}: P(next) = {score:.3f}")
    click.echo(f"mean {chain.mean:.3f}; weakest link {chain.weakest_link + 1} -> "
               f"{chain.weakest_link + 2}")
    if order:
        click.echo(f"suggested order: {', '.join(str(i + 1) for i in order.order)} "
                   f"(mean P(next) {order.mean:.3f})")


@coherence.command("train")
@index_option
@click.option("--steps", default=300, show_default=True, type=click.IntRange(min=1))
@click.option("--batch-size", default=16, show_default=True, type=click.IntRange(min=1))
@click.option("--lr", default=5e-5, show_default=True, type=float)
@click.option("--seed", default=0, show_default=True)
def coherence_train(index_dir, steps, batch_size, lr, seed):
    """Adapt the coherence model to the documents of an index, and keep it with the index.

    Adjacent passages are positives; other documents' passages, non-adjacent and swapped
    pairs are negatives. Held-out documents are scored before and after.

    \b
    Example:
      bertsearch coherence train --index my-index --steps 300
    """
    from embedder.training.coherence import train_coherence
    from indexer.coherence import coherence_training_set

    data = coherence_training_set(index_dir, seed=seed)
    with _training_bar(steps) as bar:
        result = train_coherence(data.train, data.held_out, data.out, base=data.base,
                                 steps=steps, batch_size=batch_size, lr=lr, seed=seed,
                                 progress=bar.plain_step)
    click.echo(f"Adapted on {result.train_pairs} pairs in {result.seconds:.0f}s; saved to "
               f"{data.keep()}.")
    for kind in result.after:
        click.echo(f"  held-out accuracy, {kind}: {result.before.get(kind, 0):.3f} -> "
                   f"{result.after[kind]:.3f}")


@main.command()
@click.argument("data", type=click.Path())
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False),
              help="Where the classifier is saved (the best epoch).")
@model_option
@click.option("--text-column", default="text", show_default=True)
@click.option("--label-column", default="label", show_default=True)
@click.option("--epochs", default=3, show_default=True, type=click.IntRange(min=1))
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=1))
@click.option("--lr", default=5e-5, show_default=True, type=float)
@click.option("--max-length", default=128, show_default=True, type=click.IntRange(8, 512))
@click.option("--eval", "eval_path", default=None, type=click.Path(),
              help="Labelled evaluation data; default: hold out --eval-split of DATA.")
@click.option("--eval-split", default=0.1, show_default=True, type=click.FloatRange(0.01, 0.5))
@click.option("--freeze-encoder", is_flag=True, help="Train only the [CLS] head.")
@click.option("--seed", default=0, show_default=True)
@click.option("--device", default=None, help="cpu, cuda, ...; default: CUDA when present.")
def finetune(data, out, model, text_column, label_column, epochs, batch_size, lr, max_length,
             eval_path, eval_split, freeze_encoder, seed, device):
    """Fine-tune a text classifier on DATA (CSV/TSV with a header, or JSONL).

    The [CLS] token's representation feeds a small classification head; the whole encoder is
    fine-tuned unless --freeze-encoder. Reports loss, accuracy and macro-F1 each epoch and
    keeps the best epoch.

    \b
    Example:
      bertsearch finetune reviews.csv --out sentiment --text-column review --label-column stars
      bertsearch classify --model sentiment "What a lovely day!"
    """
    from embedder.training.finetune import FinetuneConfig, read_labelled, split_data
    from embedder.training.finetune import finetune as run_finetune

    labelled = read_labelled(data, text_column, label_column)
    if eval_path:
        train, evaluation = labelled, read_labelled(eval_path, text_column, label_column)
    else:
        train, evaluation = split_data(labelled, eval_split, seed)
    config = FinetuneConfig(out=out, model=model, epochs=epochs, batch_size=batch_size, lr=lr,
                            max_length=max_length, freeze_encoder=freeze_encoder, seed=seed,
                            device=device)
    steps = epochs * -(-len(train.texts) // batch_size)
    with _training_bar(steps) as bar:
        result = run_finetune(train, evaluation, config, progress=bar.plain_step,
                              on_epoch=bar.epoch_done)
    best = result.epochs[result.best_epoch - 1]
    click.echo(f"Saved {result.out} (epoch {best.epoch}: accuracy {best.accuracy:.3f}, "
               f"macro-F1 {best.macro_f1:.3f}; labels: {', '.join(result.labels)}).")


@main.command()
@click.argument("texts", nargs=-1)
@click.option("--model", "-m", required=True, type=click.Path(file_okay=False),
              help="A `bertsearch finetune` output folder.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
def classify(texts, model, as_json):
    """Print the predicted label and probabilities of each TEXT (- reads lines from stdin).

    \b
    Example:
      bertsearch classify --model sentiment "Great phone, terrible battery."
    """
    from embedder.classifier import Classifier

    texts = _read_texts(texts)
    classifier = Classifier.load(model)
    for text, prediction in zip(texts, classifier.predict(texts)):
        if as_json:
            click.echo(json.dumps({"text": text, "label": prediction.label,
                                   "probabilities": prediction.probabilities}))
        else:
            probabilities = " ".join(f"{k}={v:.3f}" for k, v in prediction.probabilities.items())
            click.echo(f"{prediction.label}\t{probabilities}\t{text}")


def _shown_path(path: str) -> str:
    """A path relative to the working directory when it lies below it."""
    import os

    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def _snippet(hit: dict) -> str:
    """The passage flattened to one line around its first matched word, the query's words
    in bold (click drops the styling when the output is not a terminal)."""
    from indexer.keywords import mark, snippet

    line, spans = snippet(hit["text"] or "", [tuple(s) for s in hit["highlights"]],
                          width=160)
    return mark(line, spans, "\x1b[1m", "\x1b[22m")


class _progress_bar:
    """Indexing progress: a bar over the bytes to embed (rate, time left) on a terminal; a
    plain line at least every `LOG_EVERY_S` seconds otherwise (cron, logs, `tee`)."""

    LOG_EVERY_S = 10.0

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.terminal = sys.stderr.isatty()
        self.bar = None
        self.last_line = 0.0
        self.state = None

    def __enter__(self):
        return self

    def __call__(self, progress) -> None:
        import time

        self.state = progress
        if self.quiet:
            return
        if self.terminal:
            self._draw(progress)
        elif time.monotonic() - self.last_line >= self.LOG_EVERY_S:
            self.last_line = time.monotonic()
            click.echo(f"indexing: {_progress_line(progress)}", err=True)

    def _draw(self, progress) -> None:
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(total=max(progress.bytes_total, 1), unit="B", unit_scale=True,
                            dynamic_ncols=True, file=sys.stderr, smoothing=0.05)
        self.bar.n = min(progress.bytes_done, self.bar.total)
        self.bar.set_postfix_str(f"{progress.files_done}/{progress.files_total} files, "
                                 f"{progress.passages} passages, "
                                 f"{progress.passages_per_second:.1f} passages/s",
                                 refresh=True)

    def __exit__(self, kind, *exc):
        if self.bar is not None:
            self.bar.close()
        if kind is None and not self.terminal and not self.quiet and self.state:
            click.echo(f"indexing: done, {_progress_line(self.state)}", err=True)


def _progress_line(progress) -> str:
    share = progress.bytes_done / progress.bytes_total if progress.bytes_total else 1.0
    left = progress.seconds_left
    eta = "" if left is None else f", about {_duration(left)} left"
    return (f"{progress.files_done}/{progress.files_total} files, {share:.0%} of "
            f"{progress.bytes_total / 1e6:.1f} MB to read, {progress.passages} passages at "
            f"{progress.passages_per_second:.1f}/s{eta}")


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def _interrupted(progress, batch_size: int) -> str:
    done = progress.passages if progress else 0
    return (f"Interrupted after embedding {done} passages in this run. Everything committed "
            f"is kept (at most the batch in flight, up to {batch_size} passages, is lost); "
            f"run the same command again to continue where it stopped.")


class _stop_on_sigterm:
    """SIGTERM (a service manager stopping the job) ends indexing as Ctrl-C does: with a
    line saying what was kept, instead of silently."""

    def __enter__(self):
        import signal

        def interrupt(signum, frame):
            raise KeyboardInterrupt

        self.previous = signal.signal(signal.SIGTERM, interrupt)
        return self

    def __exit__(self, *exc):
        import signal

        signal.signal(signal.SIGTERM, self.previous)


def _read_texts(texts: tuple[str, ...]) -> list[str]:
    """TEXT arguments, with `-` standing for the non-empty lines of stdin."""
    out: list[str] = []
    for text in texts:
        if text == "-":
            out.extend(line.rstrip("\r\n") for line in sys.stdin if line.strip())
        else:
            out.append(text)
    if not out:
        raise click.ClickException(
            "No input: give at least one TEXT, or - to read texts from stdin.")
    return out


if __name__ == "__main__":
    main()
