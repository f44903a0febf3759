"""export reads RUN_DIR through the trainer's format reader and nothing else of the trainer:
every module under export/ is parsed, and any import of charwright.trainer other than
charwright.trainer.run_dir fails (the integer step graph lives in export/formats/tflite)."""

import ast
from pathlib import Path

EXPORT = Path(__file__).resolve().parents[2] / "export"
ALLOWED = {"charwright.trainer.run_dir"}


def _trainer_imports(tree: ast.AST) -> list[str]:
    """Every charwright.trainer module a file imports, at any depth (functions included)."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "charwright.trainer":  # `from charwright.trainer import run_dir`
                out += [f"charwright.trainer.{a.name}" for a in node.names]
            else:
                out.append(node.module)
    return [m for m in out if m == "charwright.trainer" or m.startswith("charwright.trainer.")]


def test_export_imports_only_the_run_dir_reader_from_the_trainer():
    files = sorted(EXPORT.rglob("*.py"))
    assert len(files) > 5
    found = {}
    for path in files:
        bad = [m for m in _trainer_imports(ast.parse(path.read_text(), str(path)))
               if m not in ALLOWED]
        if bad:
            found[str(path.relative_to(EXPORT))] = bad
    assert not found, f"export imports the trainer beyond its RUN_DIR reader: {found}"


def test_the_check_sees_a_forbidden_import():
    tree = ast.parse("def f():\n    from charwright.trainer.step_graph import x\n"
                     "import charwright.trainer.config\nfrom charwright.trainer import run_dir\n")
    assert sorted(_trainer_imports(tree)) == ["charwright.trainer.config",
                                              "charwright.trainer.run_dir",
                                              "charwright.trainer.step_graph"]
