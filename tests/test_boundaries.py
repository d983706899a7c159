"""Dependencies point one way: cli -> server -> indexer -> embedder (HOUSE_STYLE.md)."""

import ast
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


def test_only_store_imports_sqlite_utils_and_only_vectors_imports_faiss():
    for path in sorted(REPO.glob("*/*.py")):
        if path.parts[-2] in {"tests", "bench"}:
            continue
        names = imported_packages(path)
        if "sqlite_utils" in names:
            assert path.name == "store.py", path
        if "faiss" in names:
            assert path.name == "vectors.py", path
