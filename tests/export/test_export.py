"""Export tiny GRU, LSTM and SimpleRNN models to every format and precision, and check them."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tiny_models import export_quiet, train_tiny

from charwright.runtime.bundle.reader import load_bundle
from charwright.runtime.errors import ExportError, ParityError, RunDirError
from charwright.runtime.verify.parity import check_bundle

pytestmark = [pytest.mark.tf, pytest.mark.litert]

ALL_FILES = {"weights.npz", "model.float32.onnx", "model.int8-dynamic.onnx",
             "model.float32.tflite", "model.float16.tflite", "model.int8-dynamic.tflite",
             "model.int8.tflite", "model.int16x8.tflite"}


@pytest.mark.parametrize("cell,layers", [("gru", 1), ("gru", 2), ("lstm", 1), ("lstm", 2),
                                         ("rnn", 1), ("rnn", 2)])
def test_every_cell_exports_and_verifies(tmp_path, tiny_corpus, cell, layers):
    run = tmp_path / "run"
    train_tiny(run, tiny_corpus, cell=cell, layers=layers, units=24, epochs=2)
    manifest = export_quiet(run, tmp_path / "b")
    assert {f["path"] for f in manifest["files"]} == ALL_FILES
    assert all(p["verdict"] == "pass" for p in manifest["parity"]), manifest["parity"]
    b = load_bundle(tmp_path / "b")
    results = check_bundle(b)  # the runtime's own replay, no TensorFlow involved
    assert all(r.passed for r in results)
    f32 = [r for r in results if r.precision == "float32"]
    assert len(f32) == 3 and all(r.max_abs <= 1e-4 and r.top1 == 1.0 for r in f32)
    for entry in manifest["files"]:  # the operator list the deploy check passed is recorded
        assert not {"WHILE", "READ_VARIABLE", "VAR_HANDLE", "Loop", "Scan"} & set(entry["ops"])
        assert "deployable" not in entry  # a file that is not deployable is never written


def test_manifest_and_file_metadata(tiny_bundle):
    m = json.loads((tiny_bundle / "manifest.json").read_text())
    assert m["format"] == "charwright-bundle" and m["format_version"] == "1.0"
    assert m["state"]["size"] == 24 and m["architecture"]["cell"] == "gru"
    assert [i["name"] for i in m["inputs"]] == ["token", "state"]
    assert m["training"]["epochs"] == 2 and m["probe"]["tokens"] == 300
    assert all(len(f["sha256"]) == 64 and f["bytes"] > 0 for f in m["files"])
    # sampling defaults are SamplingConfig's own keyword arguments, null meaning "off"
    from charwright.runtime.sampling.config import SamplingConfig

    assert m["sampling_defaults"] == {"temperature": 0.8, "top_k": None, "top_p": None}
    SamplingConfig(**m["sampling_defaults"])
    assert not {"export_seconds", "deployable", "convert_seconds"} & (
        set(m) | {k for f in m["files"] for k in f})
    from charwright.export.formats import onnx as onnx_export
    from charwright.export.formats.tflite import convert as tflite

    tmeta = tflite.read_metadata((tiny_bundle / "model.int8.tflite").read_bytes())
    assert tmeta["vocab"]["chars"] == m["vocab"]["chars"] and tmeta["precision"] == "int8"
    ometa = onnx_export.read_metadata((tiny_bundle / "model.float32.onnx").read_bytes())
    assert ometa["vocab"]["chars"] == m["vocab"]["chars"]
    assert ometa["state"]["size"] == 24
    assert not list(tiny_bundle.parent.glob(".*tmp*"))


def test_files_take_any_batch(tiny_bundle):
    """A row's result does not depend on its batch-mates, except in ONNX dynamic int8, whose
    DynamicQuantizeLinear picks one activation scale for the whole batch tensor (documented)."""
    from charwright.runtime.backends import open_backend

    b = load_bundle(tiny_bundle)
    tokens = np.array([3, 1, 4, 1, 5], np.int32)
    for entry in b.files:
        be = open_backend(b, entry)
        logits5, state5 = be.step(tokens, be.initial_state(5))
        for i in (0, 4):
            l1, s1 = be.step(tokens[i : i + 1], be.initial_state(1))
            tol = 0.2 if entry.path == "model.int8-dynamic.onnx" else 1e-4  # float32 BLAS
            assert np.abs(l1[0] - logits5[i]).max() <= tol, entry.path
        assert logits5.shape == (5, b.vocab_size) and state5.shape == (5, 24)


def test_subset_selection(tmp_path, tiny_run):
    m = export_quiet(tiny_run, tmp_path / "b", formats=["tflite"], precisions=["int8-dynamic"])
    assert [f["path"] for f in m["files"]] == ["model.int8-dynamic.tflite"]


def test_refuses_existing_bundle_and_incomplete_run(tmp_path, tiny_run, tiny_bundle):
    with pytest.raises(ExportError, match="already exists; pass --force"):
        export_quiet(tiny_run, tiny_bundle)
    with pytest.raises(RunDirError, match="holds no charwright run"):
        export_quiet(tmp_path, tmp_path / "b")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("x")
    with pytest.raises(ExportError, match="not a bundle; refusing"):
        export_quiet(tiny_run, mine, force=True)
    assert (mine / "keep.txt").read_text() == "x"


def test_interrupted_export_leaves_previous_bundle_untouched(tmp_path, tiny_run, monkeypatch):
    from charwright.export import writer

    target = tmp_path / "b"
    export_quiet(tiny_run, target, formats=["numpy", "onnx"], precisions=["float32"])
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    real, calls = writer._write_model_file, []

    def failing(path, data):
        calls.append(path.name)
        if len(calls) == 3:
            raise RuntimeError("injected failure")
        real(path, data)

    monkeypatch.setattr(writer, "_write_model_file", failing)
    with pytest.raises(RuntimeError, match="injected failure"):
        export_quiet(tiny_run, target, force=True)
    assert len(calls) == 3
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]  # no temp directory left
    calls.clear()
    with pytest.raises(RuntimeError, match="injected failure"):
        export_quiet(tiny_run, tmp_path / "new")
    assert not (tmp_path / "new").exists()


def test_parity_failure_refuses_unless_allowed(tmp_path, tiny_run, monkeypatch):
    from charwright.runtime.verify import parity

    monkeypatch.setitem(parity.TOLERANCES, "float32", parity.Tolerance(max_abs=0.0))
    with pytest.raises(ParityError, match=r"export refused: .*model.float32.onnx: max"):
        export_quiet(tiny_run, tmp_path / "b", formats=["onnx"], precisions=["float32"])
    assert not (tmp_path / "b").exists()
    m = export_quiet(tiny_run, tmp_path / "b", formats=["onnx"], precisions=["float32"],
                     allow_mismatch=True)
    assert m["parity_failures_allowed"] is True and m["parity"][0]["verdict"] == "FAIL"


def test_deploy_check_flags_device_breaking_ops():
    from charwright.export.formats import onnx as onnx_export
    from charwright.export.formats.tflite import convert as tflite

    assert tflite.deploy_problems(["FULLY_CONNECTED", "WHILE", "READ_VARIABLE",
                                   "CUSTOM:FlexTensorListReserve"]) == [
        "WHILE", "READ_VARIABLE", "CUSTOM:FlexTensorListReserve"]
    assert tflite.deploy_problems(["GATHER", "TANH"]) == []
    assert onnx_export.deploy_problems(["MatMul", "Loop"]) == ["Loop"]


def test_force_replaces_only_a_bundle_and_never_user_files(tmp_path, tiny_run):
    app = tmp_path / "app"  # a directory that merely holds a file named manifest.json
    app.mkdir()
    (app / "manifest.json").write_text('{"name": "my app"}')
    (app / "index.html").write_text("<html></html>")
    with pytest.raises(ExportError, match=r"app is not a charwright bundle \(.*not a "
                                          r"charwright-bundle manifest\); refusing"):
        export_quiet(tiny_run, app, force=True, formats=["numpy"])
    assert sorted(p.name for p in app.iterdir()) == ["index.html", "manifest.json"]

    b = tmp_path / "b"
    export_quiet(tiny_run, b, formats=["numpy"])
    (b / "notes.txt").write_text("mine")
    (b / "extra").mkdir()
    (b / "extra" / "keep.bin").write_bytes(b"1")
    with pytest.raises(ExportError, match=r"holds files its manifest does not list "
                                          r"\(extra, notes.txt\); move them out"):
        export_quiet(tiny_run, b, force=True, formats=["numpy"])
    assert (b / "notes.txt").read_text() == "mine" and (b / "extra" / "keep.bin").is_file()
    (b / "notes.txt").unlink()
    shutil.rmtree(b / "extra")
    m = export_quiet(tiny_run, b, force=True, formats=["numpy", "onnx"], precisions=["float32"])
    assert sorted(f["path"] for f in m["files"]) == ["model.float32.onnx", "weights.npz"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app", "b"]  # no lock, no temp left


def test_deploy_problem_refuses_the_export(tmp_path, tiny_run, monkeypatch):
    from charwright.export.formats.tflite import convert as tflite

    monkeypatch.setattr(tflite, "deploy_problems", lambda ops: ["WHILE"])
    with pytest.raises(ExportError, match=r"model.float32.tflite holds operators that do not "
                                          r"run on devices: WHILE"):
        export_quiet(tiny_run, tmp_path / "b", formats=["tflite"], precisions=["float32"])
    assert not (tmp_path / "b").exists()


def test_second_exporter_is_refused_naming_the_first(tmp_path, tiny_run):
    """Two real processes: one holds the target's lock, the export is turned away."""
    target = tmp_path / "b"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(tmp_path / ".b.lock"), str(target)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ExportError, match=rf"{target} is in use by pid {holder.pid} "
                                              r"\(.*, since .*\); wait for it"):
            export_quiet(tiny_run, target, formats=["numpy"])
    finally:
        holder.kill()
        holder.wait()
    assert not target.exists()
    export_quiet(tiny_run, target, formats=["numpy"])  # the lock died with its holder


def test_export_refuses_a_run_being_trained(tmp_path, tiny_run):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(run / ".charwright.lock"), str(run)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        from charwright.runtime.errors import RunDirError as E

        with pytest.raises(E, match=rf"{run} is in use by pid {holder.pid}"):
            export_quiet(run, tmp_path / "b", formats=["numpy"])
    finally:
        holder.kill()
        holder.wait()


HOLD_LOCK = """
import sys, time
from charwright.runtime.errors import CharwrightError
from charwright.runtime.files.locking import hold
with hold(sys.argv[1], sys.argv[2], CharwrightError):
    print("locked", flush=True)
    time.sleep(120)
"""


# --- files that do not hold parity are left out, not the whole bundle (issue 24, item 8) ---

def _fail_int8_dynamic(monkeypatch):
    from charwright.runtime.verify import parity

    monkeypatch.setitem(parity.TOLERANCES, "int8-dynamic", parity.Tolerance(min_top1=1.01))


def test_a_failing_file_is_left_out_and_the_rest_written(tmp_path, tiny_run, monkeypatch):
    from charwright.runtime.bundle.reader import load_bundle as load
    from charwright.runtime.bundle.manifest import check_left_out

    _fail_int8_dynamic(monkeypatch)
    events = []
    m = export_quiet(tiny_run, tmp_path / "b", formats=["numpy", "onnx"],
                     on_progress=events.append)
    assert [f["path"] for f in m["files"]] == ["weights.npz", "model.float32.onnx"]
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == [
        "golden.json", "manifest.json", "model.float32.onnx", "probe.npz", "weights.npz"]
    [out] = m["left_out"]
    assert (out["path"], out["format"], out["precision"]) == (
        "model.int8-dynamic.onnx", "onnx", "int8-dynamic")
    assert out["reason"].startswith("outside tolerance: model.int8-dynamic.onnx: top-1 "
                                    "agreement ") and out["reason"].endswith("< 101.0%")
    [fig] = out["figures"]
    assert fig["file"] == "model.int8-dynamic.onnx" and fig["verdict"] == "FAIL"
    assert 0.5 < fig["top1"] <= 1.0 and fig["bpc"] > 0
    assert [p["file"] for p in m["parity"]] == ["weights.npz", "model.float32.onnx"]
    assert m["parity_failures_allowed"] is False
    assert [e["path"] for e in events if e["event"] == "left_out"] == ["model.int8-dynamic.onnx"]
    on_disk = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert on_disk["left_out"] == m["left_out"]
    # the bundle reads and verifies as it is, with no TensorFlow
    b = load(tmp_path / "b")
    assert all(r.passed for r in check_bundle(b))
    assert check_left_out(b.manifest, "m") == m["left_out"]


def test_a_named_precision_that_fails_refuses_the_export(tmp_path, tiny_run, monkeypatch):
    _fail_int8_dynamic(monkeypatch)
    with pytest.raises(ParityError, match=r"^export refused: outside tolerance: "
                                          r"model.int8-dynamic.onnx: top-1 agreement .* "
                                          r"\(precision int8-dynamic was asked for with "
                                          r"--precision: drop it .*--allow-mismatch"):
        export_quiet(tiny_run, tmp_path / "b", formats=["onnx"],
                     precisions=["float32", "int8-dynamic"])
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written, no temp left
    # a named precision that holds parity is written; the unnamed failing one is left out
    m = export_quiet(tiny_run, tmp_path / "b", formats=["onnx"], precisions=["float32"])
    assert [f["path"] for f in m["files"]] == ["model.float32.onnx"] and "left_out" not in m


def test_allow_mismatch_keeps_the_failing_file(tmp_path, tiny_run, monkeypatch):
    _fail_int8_dynamic(monkeypatch)
    m = export_quiet(tiny_run, tmp_path / "b", formats=["onnx"], allow_mismatch=True)
    assert [f["path"] for f in m["files"]] == ["model.float32.onnx", "model.int8-dynamic.onnx"]
    assert "left_out" not in m and m["parity_failures_allowed"] is True
    assert [p["verdict"] for p in m["parity"]] == ["pass", "FAIL"]


def test_every_file_failing_refuses_the_export(tmp_path, tiny_run, monkeypatch):
    from charwright.runtime.verify import parity

    _fail_int8_dynamic(monkeypatch)
    monkeypatch.setitem(parity.TOLERANCES, "float32", parity.Tolerance(max_abs=-1.0))
    with pytest.raises(ParityError, match=r"^export refused: no file holds parity: weights.npz: "
                                          r"max .*; model.float32.onnx: .*; "
                                          r"model.int8-dynamic.onnx: top-1 .*--allow-mismatch"):
        export_quiet(tiny_run, tmp_path / "b", formats=["numpy", "onnx"])
    assert not (tmp_path / "b").exists()
