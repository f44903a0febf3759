"""README.md and docs/: the CLI reference is the real --help output, the test command is the
one .ci/run runs, the map names every package, and README stays short."""

import importlib.util
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"


def _module():
    spec = importlib.util.spec_from_file_location("cli_reference", REPO / "scripts" / "cli_reference.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_cli_reference_matches_help():
    mod = _module()
    text = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")
    assert mod.splice(text, mod.render()) == text, (
        "docs/cli.md is out of date: run python scripts/cli_reference.py")


def test_ci_runs_the_readme_test_command():
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    readme = README.read_text(encoding="utf-8")
    test_cmd = ".venv/bin/python -m pytest -q"
    assert test_cmd in ci and test_cmd in readme


def _packages() -> list[str]:
    """Every Python package folder (one with __init__.py) and every data folder under runtime/."""
    found = []
    for top in ("trainer", "export", "runtime"):
        for init in sorted((REPO / top).rglob("__init__.py")):
            rel = init.parent.relative_to(REPO).as_posix()
            if "__pycache__" not in rel:
                found.append(rel)
    found += [p.relative_to(REPO).as_posix() for p in sorted((REPO / "runtime").iterdir())
              if p.is_dir() and p.name in ("c", "demo")]
    return found


def test_map_names_every_package():
    readme = README.read_text(encoding="utf-8")
    section = readme.split("## Map of the repository", 1)[1].split("\n## ", 1)[0]
    missing = [p for p in _packages() if f"`{p}/`" not in section]
    assert not missing, f"README's map does not name {missing}"


def test_readme_is_short_and_its_links_resolve():
    readme = README.read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 250
    for doc in ("README.md", *[p.relative_to(REPO).as_posix() for p in (REPO / "docs").glob("*.md")]):
        text = (REPO / doc).read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):
            assert (REPO / doc).parent.joinpath(target).resolve().exists(), f"{doc} links {target}"
