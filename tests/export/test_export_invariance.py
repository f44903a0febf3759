"""Export's batch-invariance record (issue 20 review, item 2): a file whose runtime is not
installed is not measured, so its entry leaves files[].batch_invariant out (never a false
"false"), and export prints one progress line per file."""

from __future__ import annotations

import io
import json
import sys

import pytest

from bundle_factory import copy_demo
from charwright.export.cli import _Progress
from charwright.export.writer import _record_invariance


def _no_litert(monkeypatch):
    for name in ("ai_edge_litert", "ai_edge_litert.interpreter"):
        monkeypatch.setitem(sys.modules, name, None)  # import raises ImportError


def test_a_file_not_measured_leaves_the_key_out_and_says_so(tmp_path, monkeypatch):
    d = copy_demo(tmp_path / "b")
    manifest = json.loads((d / "manifest.json").read_text())
    for f in manifest["files"]:
        f["batch_invariant"] = "stale"  # what export must overwrite or drop
    _no_litert(monkeypatch)
    events = []
    _record_invariance(d, manifest, events.append)
    by_path = {f["path"]: f for f in manifest["files"]}
    tflite = [p for p, f in by_path.items() if f["format"] == "tflite"]
    assert tflite, "the demo has LiteRT files"
    for p in tflite:
        assert "batch_invariant" not in by_path[p], p
    assert by_path["model.int8-dynamic.onnx"]["batch_invariant"] is True
    assert by_path["weights.npz"]["batch_invariant"] in (True, False)  # BLAS decides
    per_file = [e for e in events if e["event"] == "batch_invariance"]
    assert [e["file"] for e in per_file] == [f["path"] for f in manifest["files"]]
    assert all(e["invariant"] is None and "not installed" in e["reason"]
               for e in per_file if e["file"] in tflite)

    out = io.StringIO()
    progress = _Progress(out)
    for e in events:
        progress(e)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("batch invariance")
    assert "  model.int8-dynamic.onnx: batch-invariant yes" in lines
    for p in tflite:
        (line,) = [x for x in lines if x.startswith(f"  {p}: ")]
        assert line.startswith(f"  {p}: batch-invariant not measured (ai_edge_litert")
    assert len(lines) == 1 + len(manifest["files"])


@pytest.mark.litert
def test_every_file_measured_where_every_runtime_is_installed(tmp_path):
    d = copy_demo(tmp_path / "b")
    manifest = json.loads((d / "manifest.json").read_text())
    for f in manifest["files"]:
        f.pop("batch_invariant", None)
    events = []
    _record_invariance(d, manifest, events.append)
    assert all(type(f["batch_invariant"]) is bool for f in manifest["files"])
    assert all(e["invariant"] is not None for e in events if e["event"] == "batch_invariance")


def test_a_file_not_invariant_shows_its_largest_difference():
    out = io.StringIO()
    _Progress(out)({"event": "batch_invariance", "file": "weights.npz", "invariant": False,
                    "max_abs": 4.8e-6})
    assert out.getvalue() == "  weights.npz: batch-invariant no (max |Δ| 4.8e-06)\n"


BLOCK_LITERT = r"""
import runpy, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "ai_edge_litert":
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
sys.argv = ["rebuild_demo_onnx.py", sys.argv[1]]
runpy.run_path(SCRIPT, run_name="__main__")
"""


@pytest.mark.tf
def test_rebuild_demo_onnx_without_litert_keeps_its_records_and_no_traceback(tmp_path):
    """scripts/rebuild_demo_onnx.py where LiteRT is not installed: the LiteRT files are not
    measured (their batch_invariant stays), the ONNX file and a manifest naming its bytes are
    written, the bundle verifies."""
    import subprocess
    from pathlib import Path

    from charwright.runtime.bundle.reader import load_bundle

    script = Path(__file__).resolve().parents[2] / "scripts" / "rebuild_demo_onnx.py"
    d = copy_demo(tmp_path / "b")
    before = {f["path"]: f for f in json.loads((d / "manifest.json").read_text())["files"]}
    r = subprocess.run([sys.executable, "-c", BLOCK_LITERT.replace("SCRIPT", repr(str(script))),
                        str(d)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-2000:]
    after = {f["path"]: f for f in json.loads((d / "manifest.json").read_text())["files"]}
    for path, f in before.items():
        if f["format"] == "tflite":
            assert after[path].get("batch_invariant") == f.get("batch_invariant"), path
            assert f"{path}: batch invariance not measured" in r.stdout
    assert after["model.int8-dynamic.onnx"]["batch_invariant"] is True
    load_bundle(d)  # every sha256 and size the manifest names holds
    assert not list(d.glob(".*.tmp"))
