"""pyproject.toml lists every package folder (a plain `pip install .` ships only what it lists)."""

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_listed_with_its_directory():
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed, dirs = set(cfg["packages"]), cfg["package-dir"]
    found = {"charwright.runtime.demo", "charwright.runtime.c"}
    for top in ("trainer", "export", "runtime"):
        for init in (REPO / top).rglob("__init__.py"):
            folder = init.parent.relative_to(REPO)
            found.add("charwright." + ".".join(folder.parts))
    assert listed == found
    for name in found:
        assert dirs[name] == name.removeprefix("charwright.").replace(".", "/")
