"""Full int8 (export/formats/tflite/int8.py): measured ranges, clamps and the fixed state range are what the
quantized file actually carries, and the calibrator's in-place corruption is undone."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from charwright.export.formats.tflite import convert as tflite, int8  # noqa: E402


def _tensors_by_op(model: bytes):
    """{op name: [(input scales), (output scales)]} per operator, from the quantized file."""
    m, producer, consumers = int8._graph(model)
    schema, _ = int8._schema()
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    sg = m.subgraphs[0]

    def scale(i):
        q = sg.tensors[i].quantization
        return None if q is None or q.scale is None or len(q.scale) != 1 else float(q.scale[0])

    out = []
    for op in sg.operators:
        oc = m.operatorCodes[op.opcodeIndex]
        out.append((names[max(oc.builtinCode, oc.deprecatedBuiltinCode)],
                    [scale(int(i)) for i in op.inputs if i >= 0],
                    [scale(int(i)) for i in op.outputs]))
    return out


def test_int8_file_carries_the_clamped_and_fixed_ranges(tiny_bundle):
    """Sigmoid inputs span at most +-6 and tanh inputs +-3 (scale <= 12/255, 6/255); the GRU
    state enters and leaves on the fixed [-1, 1] range (scale 2/255); the update is the
    h + u * (n - h) form (a SUB of n - h, no 1 - z)."""
    data = (tiny_bundle / "model.int8.tflite").read_bytes()
    ops = _tensors_by_op(data)
    logistic = [ins[0] for name, ins, _ in ops if name == "LOGISTIC"]
    tanh = [ins[0] for name, ins, _ in ops if name == "TANH"]
    assert len(logistic) == 2 and len(tanh) == 1  # one GRU layer: u and r gates, candidate
    assert all(s <= 12 / 255 + 1e-6 for s in logistic), logistic
    assert all(s <= 6 / 255 + 1e-6 for s in tanh), tanh
    quantize_in = [outs[0] for name, _, outs in ops if name == "QUANTIZE"]
    assert quantize_in and abs(quantize_in[0] - 2 / 255) < 1e-6  # the state, fixed [-1, 1]
    dequant = [ins[0] for name, ins, _ in ops if name == "DEQUANTIZE"]
    assert any(abs(s - 2 / 255) < 1e-6 for s in dequant)  # new_state on the same range
    assert [n for n, _, _ in ops].count("SUB") == 1


def test_measure_replaces_the_corrupted_calibration(tiny_run, tmp_path):
    """The converter's calibrated model records a gate's slice with its consumer's (in-place)
    range; measure() gives every tensor its own values' range: a sigmoid's output [0, 1]."""
    from charwright.export.formats.tflite.calibration import gather_pairs
    from charwright.runtime.backends.numpy import NumpyStep

    arch = json.loads((tiny_run / "step" / "step.json").read_text())["architecture"]
    with np.load(tiny_run / "step" / "weights.npz") as z:
        w = {k: z[k] for k in z.files}
    with np.load(tiny_run / "probe.npz") as z:
        ids = z["tokens"].astype(np.int32)
    pairs = gather_pairs(NumpyStep(w, arch), ids, keep=100)
    cal = int8.calibrate(str(tiny_run / "step" / "saved_model"), pairs)
    fixed = int8.measure(cal, pairs, state_bounded=True, vocab_size=arch["vocab_size"])

    def ranges(model):
        m, producer, _ = int8._graph(model)
        sg = m.subgraphs[0]
        return {i: (float(sg.tensors[i].quantization.min[0]),
                    float(sg.tensors[i].quantization.max[0]))
                for i in int8._ranged(sg)}, producer

    before, producer = ranges(cal)
    after, _ = ranges(fixed)
    sig_out = [i for i, p in producer.items() if p == "LOGISTIC"]
    assert sig_out
    for i in sig_out:  # a sigmoid's values lie in [0, 1] whatever the calibrator recorded
        assert 0.0 <= after[i][0] and after[i][1] <= 1.0
    # the corruption this undoes is there in the converter's own record (TF 2.21): some
    # sigmoid output was recorded with its in-place consumer's range
    assert any(before[i][0] < -0.01 or before[i][1] > 1.01 for i in sig_out), \
        "the calibrator no longer corrupts in-place ranges: recheck export/formats/tflite/int8.py's rule 1"


def test_int8_holds_parity_and_runs_by_index(tiny_bundle):
    """The file export wrote passes its tolerance and keeps the contract by index."""
    m = json.loads((tiny_bundle / "manifest.json").read_text())
    row = next(p for p in m["parity"] if p["file"] == "model.int8.tflite")
    assert row["verdict"] == "pass" and row["top1"] >= 0.97 and row["bpc_rel"] <= 0.02
    view = tflite.contract_of((tiny_bundle / "model.int8.tflite").read_bytes())
    assert [n for n, _ in view["inputs"]] == ["token", "state"]
    assert [n for n, _ in view["outputs"]] == ["logits", "new_state"]
