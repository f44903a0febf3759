"""charwright verify: every file gets its row, valid JSON, absent runtimes, defaults, Ctrl-C."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from charwright.runtime.cli import cli

from bundle_factory import copy_demo, edit, make_bundle

ONNX, TFLITE = "model.int8-dynamic.onnx", "model.int8-dynamic.tflite"
from charwright.runtime.model import DEMO_BUNDLE as DEMO

BLOCKED = r"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("ai_edge_litert", "tflite_micro"):
            raise ImportError("blocked: " + name)
        return None
sys.meta_path.insert(0, Block())
from charwright.runtime.cli import main
sys.exit(main(sys.argv[1:]))
"""


def run_cli(*args, script=BLOCKED):
    return subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True,
                          timeout=120)


def test_demo_by_default_and_files_without_their_runtime_are_not_checked():
    r = run_cli("verify")
    assert r.returncode == 0, r.stderr
    assert f"| {ONNX} |" in r.stdout and "| pass |" in r.stdout
    assert f"| {TFLITE} | - | - | - | - | - | - | not checked: ai_edge_litert.interpreter is " \
           "not installed |" in r.stdout
    n = sum(f["format"] == "tflite" for f in
            json.loads((DEMO / "manifest.json").read_text())["files"])
    notes = [line for line in r.stderr.splitlines() if line.strip()]
    assert n >= 1 and notes == [f"note: {n} tflite file{'s' * (n > 1)} not checked: ai_edge_litert "
                                "is not installed; install it with: pip install 'charwright[litert]'"]


def test_nothing_checked_is_a_failure():
    r = run_cli("verify", "--format", "tflite")
    assert r.returncode == 1
    assert r.stderr.splitlines()[-1].startswith("Error: ") and "nothing verified" in r.stderr


def test_format_selects_files(tmp_path):
    r = CliRunner().invoke(cli, ["verify", "--format", "onnx", "--json"])
    assert r.exit_code == 0, r.output
    assert [row["file"] for row in json.loads(r.stdout)] == [ONNX]


def test_json_is_valid_json_for_a_damaged_file(tmp_path):
    d = copy_demo(tmp_path / "b")
    p = d / ONNX
    p.write_bytes(p.read_bytes()[:-1] + b"\0")
    r = CliRunner().invoke(cli, ["verify", str(d), "--json"])
    assert r.exit_code == 1
    def refuse(c):
        raise ValueError(f"not JSON: {c}")
    rows = {x["file"]: x for x in json.loads(r.stdout, parse_constant=refuse)}
    assert rows[ONNX]["verdict"] == "FAIL" and rows[ONNX]["max_abs"] is None
    assert "sha256 mismatch" in rows[ONNX]["failures"][0]
    assert rows[TFLITE]["verdict"] in ("pass", "not checked")


def test_wrong_shape_weights_get_their_row(tmp_path):
    d = make_bundle(tmp_path / "b")
    shutil.copyfile(d / "weights.npz", d / "good.npz")
    m = json.loads((d / "manifest.json").read_text())
    m["files"].append(dict(m["files"][0], path="good.npz"))
    (d / "manifest.json").write_text(json.dumps(m))
    other = make_bundle(tmp_path / "other", units=6)
    shutil.copyfile(other / "weights.npz", d / "weights.npz")
    edit(d, lambda m: None)
    r = CliRunner().invoke(cli, ["verify", str(d)])
    assert r.exit_code == 1
    assert "| weights.npz | - | - | - | - | - | - | FAIL: " in r.stdout
    assert "array 'layer0.kernel' has shape (4, 18), expected (4, 24)" in r.stdout
    assert "| good.npz |" in r.stdout and "| pass |" in r.stdout
    assert "Traceback" not in r.output and "internal error" not in r.output


def _onnx_of_width(width: int, dynamic: bool) -> bytes:
    """A step graph of another model: token [b], state [b, width] -> logits [b, 65], new_state."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    dim = "s" if dynamic else width
    w = numpy_helper.from_array(np.zeros((width, 65), np.float32), "w")
    g = helper.make_graph(
        [helper.make_node("MatMul", ["state", "w"], ["logits"]),
         helper.make_node("Identity", ["state"], ["new_state"])], "other",
        [helper.make_tensor_value_info("token", TensorProto.INT32, ["b"]),
         helper.make_tensor_value_info("state", TensorProto.FLOAT, ["b", dim])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["b", 65]),
         helper.make_tensor_value_info("new_state", TensorProto.FLOAT, ["b", dim])], [w])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


@pytest.mark.parametrize("dynamic,message", [
    (False, "the file's state is 32 wide, the manifest's state.size is 512"),
    (True, "onnxruntime cannot run this file with the manifest's shapes (state 512"),
])
def test_swapped_model_file_of_another_shape_gets_its_row(tmp_path, dynamic, message):
    d = copy_demo(tmp_path / "b")
    (d / ONNX).write_bytes(_onnx_of_width(32, dynamic))
    edit(d, lambda m: None)
    r = CliRunner().invoke(cli, ["verify", "-b", str(d)])
    assert r.exit_code == 1
    assert f"| {ONNX} | - | - | - | - | - | - | FAIL: " in r.stdout and message in r.stdout
    assert f"| {TFLITE} |" in r.stdout  # the other file still gets its row
    assert r.stderr.splitlines()[-1].startswith(f"Error: {d}: outside tolerance: {ONNX}")


def test_state_size_that_does_not_match_the_files(tmp_path):
    d = copy_demo(tmp_path / "b")
    edit(d, lambda m: (m["state"].update(size=256), m["state"]["layout"][0].update(size=256),
                       m["architecture"].update(units=256),
                       [layer.update(units=256) for layer in m["architecture"].get("stack", [])]))
    r = CliRunner().invoke(cli, ["verify", str(d)])
    assert r.exit_code == 1
    assert f"{ONNX}: the file's state is 512 wide, the manifest's state.size is 256" in r.stdout
    files = json.loads((d / "manifest.json").read_text())["files"]
    for f in files:  # every file gets its row, and fails
        assert f"| {f['path']} | - | - | - | - | - | - | FAIL: " in r.stdout


def test_vocabulary_shorter_than_the_logits(tmp_path):
    d = copy_demo(tmp_path / "b")
    edit(d, lambda m: m["vocab"]["chars"].pop())
    r = CliRunner().invoke(cli, ["verify", str(d)])
    assert r.exit_code == 1
    assert r.stderr == (f"Error: {d / 'manifest.json'}: vocab.chars holds 64 ids (64 "
                        "characters) but architecture.vocab_size is 65; the manifest is "
                        "damaged or was edited by hand\n")


def test_empty_files_list_fails(tmp_path):
    d = make_bundle(tmp_path / "b")
    edit(d, lambda m: m.update(files=[]))
    r = CliRunner().invoke(cli, ["verify", str(d)])
    assert r.exit_code == 1 and "files must be a non-empty list" in r.stderr


def test_run_directory_and_two_bundles(tmp_path):
    (tmp_path / "run.json").write_text("{}")
    r = CliRunner().invoke(cli, ["verify", str(tmp_path)])
    assert r.exit_code == 1
    assert r.stderr == (f"Error: {tmp_path} is a training run directory, not a bundle; run "
                        f"`charwright export {tmp_path} -o BUNDLE_DIR` first\n")
    r = CliRunner().invoke(cli, ["verify", str(tmp_path), "-b", str(tmp_path / "x")])
    assert r.exit_code == 2 and "two bundles given" in r.stderr


INTERRUPT = r"""
import os, signal, sys
from charwright.runtime.backends.onnx import ONNXStep
def interrupted(self, *a, **k):
    os.kill(os.getpid(), signal.SIGINT)
    return ONNXStep.step(self, *a, **k)
ONNXStep.replay = interrupted
from charwright.runtime.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("args", [["verify"], ["score", "TEXT"]])
def test_ctrl_c_exits_130_quietly(tmp_path, args):
    text = tmp_path / "t.txt"
    text.write_text("First Citizen:\nBefore we proceed any further, hear me speak.\n")
    r = run_cli(*[str(text) if a == "TEXT" else a for a in args], script=INTERRUPT)
    assert r.returncode == 130, r.stderr
    assert r.stderr == "" and r.stdout == ""
