"""The README stays true: every command and route is documented, every command line in it
parses, every extra it names exists, and its Python recipes run as written."""

import re
import shlex

import click
import pytest
from conftest import REPO

from cli import main

README = (REPO / "README.md").read_text(encoding="utf-8")


def commands(group: click.Group, prefix: str = "bertsearch") -> dict[str, click.Command]:
    """Every command of the CLI by its full name, e.g. 'bertsearch coherence train'."""
    out = {}
    for name, command in group.commands.items():
        full = f"{prefix} {name}"
        out[full] = command
        if isinstance(command, click.Group):
            out.update(commands(command, full))
    return out


def test_every_command_is_in_the_readme():
    missing = [name for name, command in commands(main).items()
               if name not in README and not (name.endswith(" score") and
                                              name.rsplit(" ", 1)[0] in README)]
    assert not missing, f"commands missing from the README: {missing}"


def test_every_route_is_in_the_readme():
    from server import ServerSettings, create_app

    paths = create_app(ServerSettings()).openapi()["paths"]
    routes = [(method.upper(), path) for path, methods in paths.items() for method in methods]
    assert ("POST", "/search") in routes
    missing = [f"{m} {p}" for m, p in routes if not re.search(
        rf"`{m} {re.escape(p)}`", README)]
    assert not missing, f"routes missing from the README's table: {missing}"


def shell_lines() -> list[str]:
    """The `bertsearch ...` command lines of the README's sh blocks."""
    lines = []
    for block in re.findall(r"```sh\n(.*?)```", README, flags=re.S):
        text = block.replace("\\\n", " ")
        for line in text.splitlines():
            for part in re.split(r"&&|\|", line.split("  #")[0]):
                part = part.strip()
                if part.startswith("bertsearch "):
                    lines.append(part)
    return lines


@pytest.mark.parametrize("line", shell_lines())
def test_readme_command_lines_parse(line):
    """Each documented command names a real command and only options it has."""
    args = shlex.split(line)[1:]
    command, ctx_args = main, args
    while isinstance(command, click.Group) and ctx_args:
        name = ctx_args[0]
        if name not in command.commands:
            if getattr(command, "default_command", None) and not name.startswith("-"):
                name = command.default_command
                ctx_args = [name, *ctx_args]
            else:
                break
        command, ctx_args = command.commands[name], ctx_args[1:]
    if isinstance(command, click.Group):  # `bertsearch --help` and the like
        return
    known = {opt for param in command.params for opt in getattr(param, "opts", [])}
    known |= {"--help", "-h"}
    used = [a.split("=", 1)[0] for a in ctx_args if a.startswith("-") and a != "-"]
    unknown = [option for option in used if option not in known]
    assert not unknown, f"{line!r}: {command.name} has no option {unknown}"


def test_ci_runs_the_readme_test_command():
    command = re.search(r"Run the tests:\n\n```sh\n(.+?)\n```", README).group(1)
    assert "ruff check" in command and "pytest" in command
    assert command in (REPO / ".ci" / "run").read_text(encoding="utf-8")


def test_every_named_extra_exists():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    extras = set(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
                 ["optional-dependencies"])
    sources = [README] + [p.read_text(encoding="utf-8") for p in REPO.glob("*/*.py")]
    named = {m for text in sources for m in re.findall(r"bertsearch\[([a-z-]+)\]", text)}
    assert named <= extras, f"extras named but not defined: {named - extras}"


def python_blocks() -> list[str]:
    """The README's ```python blocks, in order (```python no-run ones need a server)."""
    return re.findall(r"```python\n(.*?)```", README, flags=re.S)


def test_python_recipes_run_as_written(tmp_path, monkeypatch):
    import shutil

    shutil.copytree(REPO / "samples", tmp_path / "samples")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BERTSEARCH_CACHE", str(tmp_path / "cache"))
    blocks = python_blocks()
    assert len(blocks) >= 4
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)
    assert (tmp_path / "sample-index" / "passages.db").exists()
    assert namespace["pair"].token_type_ids[:10] == [0, 0, 0, 0, 0, 0, 1, 1, 1, 1]
