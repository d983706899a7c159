"""Shared fixtures: the real default encoder, the shared data sets, a seeded tiny BERT."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def encoder():
    """The real packaged all-MiniLM-L6-v2, loaded once per test run."""
    from embedder import Encoder

    return Encoder.load("default", device="cpu")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """`../shared/data` (or $BERTSEARCH_SHARED_DATA); tests that need it skip without it."""
    path = Path(os.environ.get("BERTSEARCH_SHARED_DATA", REPO.parent / "shared" / "data"))
    if not path.is_dir():
        pytest.skip(f"shared data sets not found at {path} (set BERTSEARCH_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def sample_docs() -> Path:
    """The small document folder that ships with the repository."""
    return REPO / "samples" / "docs"


@pytest.fixture(scope="session")
def toy_corpus(tmp_path_factory):
    """Twelve documents of patterned sentences: learnable in a few dozen steps."""
    rng = random.Random(0)
    animals = ["cat", "dog", "fox", "owl", "bee", "ant", "cow", "pig"]
    folder = tmp_path_factory.mktemp("corpus")
    for d in range(12):
        sentences = []
        for i in range(30):
            a = animals[(d + i) % len(animals)]
            sentences.append(f"The {a} sees the {animals[(d + i + 1) % len(animals)]} "
                             f"number {rng.randint(1, 3)}.")
        (folder / f"doc{d}.txt").write_text(" ".join(sentences))
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, encoder):
    """A seeded, randomly initialised 2-layer BERT with pretraining heads and MiniLM's
    tokenizer: a second, different model for fast tests."""
    import torch
    from transformers import BertConfig, BertForPreTraining

    torch.manual_seed(0)
    config = BertConfig(vocab_size=encoder.tokenizer.vocab_size, hidden_size=32,
                        num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=128)
    path = tmp_path_factory.mktemp("tiny-bert")
    BertForPreTraining(config).save_pretrained(path)
    encoder.tokenizer.save_pretrained(path)
    return path


def cosine_rows(reference, other):
    """Row-wise cosine similarity of two embedding matrices."""
    import numpy as np

    a = reference / np.linalg.norm(reference, axis=1, keepdims=True)
    b = other / np.linalg.norm(other, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


def write_corpus(folder: Path, n_docs: int, paragraphs: int = 3, seed: int = 0) -> Path:
    """`n_docs` distinct multi-paragraph text files made of seeded pseudo-sentences."""
    import random

    rng = random.Random(seed)
    words = ["river", "mountain", "engine", "violin", "protein", "harbour", "glacier",
             "lantern", "orbit", "copper", "meadow", "circuit", "falcon", "thunder", "quartz",
             "bakery", "compass", "saddle", "tunnel", "velvet"]
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n_docs):
        paras = []
        for p in range(paragraphs):
            sentences = [" ".join(rng.choice(words) for _ in range(rng.randint(6, 14))) + "."
                         for _ in range(rng.randint(2, 4))]
            paras.append(f"Document {i} part {p}. " + " ".join(sentences))
        (folder / f"doc{i:03d}.txt").write_text("\n\n".join(paras), encoding="utf-8")
    return folder


STORES = ["sqlite", "postgresql"]  # PostgreSQL skips, with the reason, without its extra


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL with pgvector for this test session (tests/pg_server.py), stopped
    and deleted at the end; skipped with the reason when its packages are missing."""
    import pg_server

    reason = pg_server.missing()
    if reason:
        pytest.skip(reason)
    server = pg_server.TestServer()
    yield server
    server.stop()


@pytest.fixture(scope="session", params=STORES)
def store_kind(request):
    if request.param == "postgresql":
        request.getfixturevalue("postgres")  # skips here without PostgreSQL
    return request.param


@pytest.fixture(scope="session")
def new_location(store_kind, request, tmp_path_factory):
    """Makes a fresh, empty index location of the kind under test: a folder path, or the
    URL of a new database (dropped at the end of the session)."""
    if store_kind == "sqlite":
        return lambda: tmp_path_factory.mktemp("index") / "idx"
    server = request.getfixturevalue("postgres")
    return server.new_database


@pytest.fixture
def index_location(new_location, store_kind, request):
    """A fresh index location (folder or database URL) for one test."""
    location = new_location()
    yield location
    if store_kind == "postgresql":
        request.getfixturevalue("postgres").drop(location)


@pytest.fixture(scope="session")
def store_factory(store_kind, new_location):
    """Opens a store of the kind under test at a location (a folder path; for PostgreSQL,
    each path stands for a database of its own), ready for 16-dim vectors."""
    databases: dict[str, str] = {}

    def open_at(location):
        from indexer.store import open_store

        if store_kind == "postgresql":
            location = databases.setdefault(str(location), new_location())
        store = open_store(location, create=True)
        if not store.settings().get("dimension"):
            store.save_settings({"dimension": 16, "index_type": "flat"})
        return store

    return open_at


@pytest.fixture
def store_location(tmp_path):
    return tmp_path / "index"


@pytest.fixture
def store(store_factory, store_location, store_kind, request):
    s = store_factory(store_location)
    yield s
    s.close()
    if store_kind == "postgresql":
        request.getfixturevalue("postgres").drop(s.url)


@pytest.fixture(scope="session")
def vocabulary(store_kind):
    """The words a store's keyword index holds (to prove a deletion left none behind)."""

    def sqlite_terms(store):
        rows = store.db.execute("SELECT term FROM passages_fts_vocab").fetchall()
        return {r[0] for r in rows}

    def postgres_terms(store):
        return {r[0] for r in store._query("SELECT word FROM ts_stat('SELECT terms FROM "
                                           "passages')")}

    return {"sqlite": sqlite_terms, "postgresql": postgres_terms}[store_kind]


class CountingEncoder:
    """The real encoder, counting the texts it is asked to embed."""

    def __init__(self, encoder):
        self.inner, self.texts = encoder, 0

    def encode(self, texts, **options):
        self.texts += len(texts)
        return self.inner.encode(texts, **options)

    def __getattr__(self, name):
        return getattr(self.inner, name)
