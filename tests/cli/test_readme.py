"""README.md's CLI reference is the real --help output, and its commands match .ci/run."""

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _module():
    spec = importlib.util.spec_from_file_location("cli_reference", REPO / "scripts" / "cli_reference.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_cli_reference_matches_help():
    mod = _module()
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert mod.splice(text, mod.render()) == text, (
        "README.md's CLI reference is out of date: run python scripts/cli_reference.py")


def test_ci_runs_the_readme_test_command():
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    test_cmd = ".venv/bin/python -m pytest -q"
    assert test_cmd in ci and test_cmd in readme
