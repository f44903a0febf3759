"""TensorFlow Lite Micro ([micro] extra, tflite-micro): the export probes every .tflite file
under it (runs or why not, smallest arena, in a child process) and replays the probe on those it
runs; by index only, batch 1. Skipped without the extra, except under CI (it fails there)."""

import importlib.util
import json
import os
import subprocess

import numpy as np
import pytest

from tiny_models import export_quiet, train_tiny

from charwright.runtime.verify import micro
from charwright.runtime.bundle.reader import load_bundle

pytestmark = [pytest.mark.tf, pytest.mark.litert]

if importlib.util.find_spec("tflite_micro") is None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail("CI=true and tflite-micro is missing: install .[micro]",
                    pytrace=False)
    pytest.skip("tflite-micro missing: pip install 'charwright[micro]'", allow_module_level=True)


def _tflm_by_index(data: bytes, S: int, V: int, token: int, state: np.ndarray):
    from tflite_micro.python.tflite_micro import runtime

    it = runtime.Interpreter.from_bytes(data, arena_size=1 << 20)
    assert [list(it.get_input_details(i)["shape"]) for i in (0, 1)] == [[1], [1, S]]
    assert it.get_input_details(0)["dtype"] == np.int32
    assert it.get_input_details(1)["dtype"] == np.float32
    assert [list(it.get_output_details(i)["shape"]) for i in (0, 1)] == [[1, V], [1, S]]
    it.set_input(np.array([token], np.int32), 0)
    it.set_input(state, 1)
    it.invoke()
    return it.get_output(0), it.get_output(1)


def test_export_records_what_tflm_runs_and_replays_it(tiny_bundle):
    from charwright.export.formats.tflite import convert as tflite

    m = json.loads((tiny_bundle / "manifest.json").read_text())
    info = {f["precision"]: f["micro"] for f in m["files"] if f["format"] == "tflite"}
    for prec in ("float32", "int8"):
        assert info[prec]["runs"] is True and info[prec]["reason"] is None
        assert 2048 <= info[prec]["arena_bytes"] < 64 << 10
        assert info[prec]["runtime"].startswith("tflite-micro ")
    assert info["float16"]["runs"] is False and "DEQUANTIZE" in info["float16"]["reason"]
    assert info["int8-dynamic"]["runs"] is False
    assert "FULLY_CONNECTED" in info["int8-dynamic"]["reason"]  # no hybrid kernel in TFLM
    assert info["int16x8"]["runs"] is False and "GATHER" in info["int16x8"]["reason"]
    rows = {p["file"]: p for p in m["parity"] if p["backend"] == "tflm"}
    assert set(rows) == {"model.float32.tflite[tflm]", "model.int8.tflite[tflm]"}
    assert all(r["verdict"] == "pass" for r in rows.values()), rows
    assert rows["model.float32.tflite[tflm]"]["max_abs"] <= 1e-4

    # by index, as a device sees it: input 0 token, 1 state; output 0 logits, 1 new_state;
    # the names a device cannot see are the flatbuffer's, in the same order
    S, V = m["state"]["size"], m["architecture"]["vocab_size"]
    b = load_bundle(tiny_bundle)
    from charwright.runtime.backends import open_backend

    ref = open_backend(b, b.find("npz"))
    state = np.random.default_rng(0).uniform(-0.5, 0.5, (1, S)).astype(np.float32)
    want = ref.step(np.array([4], np.int32), state)
    data = (tiny_bundle / "model.float32.tflite").read_bytes()
    got = _tflm_by_index(data, S, V, 4, state)
    assert np.abs(got[0] - want[0]).max() <= 1e-4 and np.abs(got[1] - want[1]).max() <= 1e-4
    view = tflite.contract_of(data)
    assert [n for n, _ in view["inputs"]] == ["token", "state"]
    assert [n for n, _ in view["outputs"]] == ["logits", "new_state"]


def test_replay_micro_is_the_verify_hook(tiny_bundle):
    """replay_micro(bundle, entry) -> FileParity (what `charwright verify` calls); files TFLM
    does not run are "not checked", not failures."""
    b = load_bundle(tiny_bundle)
    res = {e.precision: micro.replay_micro(b, e) for e in b.files if e.format == "tflite"}
    assert res["float32"].passed and res["float32"].backend == "tflm"
    assert res["int8"].passed and res["int8"].top1 >= 0.97
    assert not res["float16"].checked and not res["int8-dynamic"].checked
    assert [r.file for r in micro.check_bundle(b)] == ["model.float32.tflite[tflm]",
                                                       "model.int8.tflite[tflm]"]


@pytest.mark.parametrize("cell,layers", [("lstm", 2), ("rnn", 1)])
def test_tflm_parity_on_each_cell(tmp_path, tiny_corpus, cell, layers):
    run = tmp_path / "run"
    train_tiny(run, tiny_corpus, cell=cell, layers=layers, units=16, epochs=1)
    m = export_quiet(run, tmp_path / "b", formats=["tflite", "numpy"],
                     precisions=["float32", "int8"])
    micro_rows = [p for p in m["parity"] if p["backend"] == "tflm"]
    assert len(micro_rows) == 2 and all(p["verdict"] == "pass" for p in micro_rows), micro_rows
    assert all(f["micro"]["runs"] for f in m["files"] if f["format"] == "tflite")


def test_probe_survives_a_crashing_child(tmp_path, monkeypatch):
    """The wrapper segfaults on tiny arenas: a child that dies mid-bisection costs one round,
    the size it died on counts as failing, and the search goes on in a new child."""
    calls = []

    def fake_run(cmd, **kw):
        lo, hi = int(cmd[-2]), int(cmd[-1])
        calls.append((lo, hi))
        if len(calls) == 1:  # ceiling ok, then dies trying 4096
            out = [{"try": hi}, {"ok": hi}, {"try": 8192}, {"ok": 8192}, {"try": 4096}]
            return subprocess.CompletedProcess(cmd, -11, "\n".join(map(json.dumps, out)), "")
        out = [{"try": hi}, {"ok": hi}, {"try": 6144}, {"fail": 6144, "reason": "too small"},
               {"try": 7168}, {"ok": 7168}, {"try": 6656}, {"fail": 6656, "reason": "x"},
               {"try": 6912}, {"ok": 6912}, {"try": 6784}, {"ok": 6784},
               {"try": 6720}, {"ok": 6720}, {"try": 6688}, {"fail": 6688, "reason": "x"},
               {"try": 6704}, {"ok": 6704}]
        return subprocess.CompletedProcess(cmd, 0, "\n".join(map(json.dumps, out)), "")

    monkeypatch.setattr(micro.subprocess, "run", fake_run)
    got = micro.probe_file(tmp_path / "m.tflite")
    assert got["runs"] is True and got["arena_bytes"] == 6704
    assert calls[1] == (4096, 8192)  # restarted above the size that crashed, from the best
