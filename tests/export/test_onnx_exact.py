"""export/formats/onnx_exact.py: Tanh and Sigmoid replaced by exact ops, on a hand-made graph
shaped like a GRU's gates (two sigmoids whose inputs are ready together, a tanh that depends on
one of them): onnxruntime and onnx's reference evaluator give the same bits, equal to a numpy
oracle of the documented formula, close to tanh/sigmoid, rows independent, absurd inputs
handled; the manifest's `portable` rule."""

from __future__ import annotations

import numpy as np
import pytest

from charwright.export.formats import onnx_exact
from charwright.runtime.errors import ExportError

pytestmark = [pytest.mark.tf]  # onnx comes with the [train] extra

N = 40


def gate_graph(width_known: bool = True) -> bytes:
    """z = sigmoid(a), r = sigmoid(b), h = tanh(c + r * a): outputs z, r, h; the width N
    recorded in the graph or a symbolic dimension (exact() then reads it with Shape ops)."""
    from onnx import TensorProto, helper

    def vi(name):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT,
                                             ["batch", N if width_known else "n"])

    g = helper.make_graph(
        [helper.make_node("Sigmoid", ["a"], ["z"]), helper.make_node("Sigmoid", ["b"], ["r"]),
         helper.make_node("Mul", ["r", "a"], ["ra"]), helper.make_node("Add", ["c", "ra"], ["u"]),
         helper.make_node("Tanh", ["u"], ["h"])],
        "g", [vi("a"), vi("b"), vi("c")], [vi("z"), vi("r"), vi("h")],
        value_info=[vi("ra"), vi("u")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m.SerializeToString()


def run_ort(data: bytes, feeds: dict) -> list:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"]).run(None, feeds)


def run_reference(data: bytes, feeds: dict) -> list:
    return onnx_exact.reference_evaluator(data).run(None, feeds)


def table_tanh(x, steps=onnx_exact.TABLE_STEPS):
    """The documented lookup in numpy: T[clip(floor(clip(x * steps + 4096.5, 0, 8192)))]."""
    r, s = onnx_exact.TABLE_RANGE, onnx_exact.TABLE_STEPS
    t = np.tanh(np.arange(-r * s, r * s + 1, dtype=np.float64) / s).astype(np.float32)
    u = np.asarray(x, np.float32) * np.float32(steps) + np.float32(r * s + 0.5)
    i = np.floor(np.clip(u, np.float32(0), np.float32(2 * r * s))).astype(np.int64)
    return t[i]


def oracle(method: str, a, b, c) -> list:
    half = np.float32(0.5)
    if method == "table":
        def sig(x):
            return table_tanh(x, onnx_exact.TABLE_STEPS // 2) * half + half
        tanh = table_tanh
    else:
        def sig(x):
            return onnx_exact.reference_tanh(x * half) * half + half
        tanh = onnx_exact.reference_tanh
    z, r = sig(a), sig(b)
    return [z, r, tanh(c + r * a)]


def feeds(batch: int, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    f = {k: (rng.normal(0, 4, (batch, N))).astype(np.float32) for k in "abc"}
    f["a"][0, :8] = [0.0, -0.0, 1e-30, -3e-5, 7.9, -7.95, 40.0, -1e6]
    return f


@pytest.mark.parametrize("method, width_known", [("table", True), ("table", False),
                                                 ("rational", True)])
def test_every_runtime_the_same_bits_as_the_formula(method, width_known):
    data = onnx_exact.exact(gate_graph(width_known), method)
    ops = {n.op_type for n in __import__("onnx").load_from_string(data).graph.node}
    assert not ops & {"Tanh", "Sigmoid"} and onnx_exact.portable(sorted(ops))
    f = feeds(9)
    got, ref, want = run_ort(data, f), run_reference(data, f), oracle(method, *f.values())
    for g, r, w in zip(got, ref, want):
        assert g.dtype == np.float32 and g.shape == (9, N)
        assert np.array_equal(g, r) and np.array_equal(g, w)
    tol = 2.0 ** -10 + 1e-6 if method == "table" else 1e-6
    with np.errstate(over="ignore"):
        exact_f = [1 / (1 + np.exp(-f["a"].astype(np.float64))),
                   1 / (1 + np.exp(-f["b"].astype(np.float64)))]
    exact_f.append(np.tanh(f["c"] + got[1] * f["a"]).astype(np.float64))
    for g, e in zip(got, exact_f):
        assert np.abs(g - e).max() <= tol


def test_rows_never_see_each_other_and_absurd_values_stay_in_their_row():
    data = onnx_exact.exact(gate_graph())
    f = feeds(6, seed=1)
    f["a"][2] = np.nan
    f["b"][3] = np.inf
    f["c"][4] = -np.inf
    batch = run_ort(data, f)
    for row in range(6):
        alone = run_ort(data, {k: v[row:row + 1] for k, v in f.items()})
        for x, y in zip(batch, alone):
            assert np.array_equal(x[row], y[0], equal_nan=True)
    # sigmoid(inf), tanh(-inf): the table's ends, tanh(+-8)
    assert np.all(np.abs(batch[1][3] - 1) < 2e-7) and np.all(np.abs(batch[2][4] + 1) < 3e-7)
    assert np.all(np.abs(batch[0][2]) <= 1)  # NaN: some table value, no error


def test_merged_gates_and_a_graph_without_activations():
    import onnx

    m = onnx.load_from_string(onnx_exact.exact(gate_graph()))
    kinds = [n.op_type for n in m.graph.node]
    assert kinds.count("GatherElements") == 2  # both sigmoids in one lookup, then the tanh
    assert kinds.count("Split") == 1
    plain = onnx.load_from_string(gate_graph())
    keep = [n for n in plain.graph.node if n.op_type not in ("Tanh", "Sigmoid")]
    del plain.graph.node[:]
    plain.graph.node.extend(keep)
    data = plain.SerializeToString()
    assert onnx_exact.exact(data) == data
    with pytest.raises(ExportError, match="unknown method"):
        onnx_exact.exact(gate_graph(), "cubic")


def test_portable_rule():
    assert onnx_exact.portable(["MatMulInteger", "QuantizeLinear", "GatherElements", "Add"])
    assert not onnx_exact.portable(["MatMulInteger", "Tanh"])
    assert not onnx_exact.portable(["MatMul", "Add"])  # float sums: order is the kernel's
    assert not onnx_exact.portable([])  # weights.npz: no graph to judge
