"""Shared fixtures: the real default encoder, the shared data sets, a seeded tiny BERT."""

from __future__ import annotations

import os
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
