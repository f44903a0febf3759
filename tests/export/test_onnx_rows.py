"""export/formats/onnx_rows.py: the per-row rewrite of quantize_dynamic's graph, on a hand-made
float graph (x @ W + b): onnxruntime's result equals a numpy reference of the documented
quantization bit for bit, rows never see each other, and graphs it cannot rewrite are refused."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = [pytest.mark.tf]  # onnx comes with the [train] extra

K, N = 48, 20


def float_graph(seed=0) -> bytes:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w = rng.normal(0, 0.3, (K, N)).astype(np.float32)
    b = rng.normal(0, 0.1, N).astype(np.float32)
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["xw"]),
         helper.make_node("Add", ["xw", "b"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", K])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", N])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m.SerializeToString()


def quantized(per_row: bool) -> bytes:
    import tempfile
    from pathlib import Path

    from onnxruntime.quantization import QuantType, quantize_dynamic

    from charwright.export.formats.onnx_rows import per_row as rewrite

    with tempfile.TemporaryDirectory() as d:
        src, dst = Path(d) / "f.onnx", Path(d) / "q.onnx"
        src.write_bytes(float_graph())
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
        data = dst.read_bytes()
    return rewrite(data) if per_row else data


def session(data: bytes):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])


def reference(data: bytes, x: np.ndarray) -> np.ndarray:
    """The documented per-row quantization in numpy, from the file's own int8 weights."""
    import onnx
    from onnx import numpy_helper

    from charwright.export.formats.onnx_rows import TINY

    init = {i.name: numpy_helper.to_array(i) for i in onnx.load_from_string(data).graph.initializer}
    wq, ws = init["w_quantized"], init["w_scale"]  # quantize_dynamic's names for weight "w"
    assert wq.dtype == np.int8 and init["w_zero_point"] == 0
    scale = np.maximum(np.abs(x).max(axis=1) / np.float32(127), np.float32(TINY))
    q = np.rint(x / scale[:, None]).astype(np.int64)  # half to even, as QuantizeLinear
    assert np.abs(q).max() <= 127
    acc = (q @ wq.astype(np.int64)).astype(np.float32)
    return (acc * np.float32(ws)) * scale[:, None].astype(np.float32) + init["b"]


def test_per_row_matches_the_numpy_reference_bit_for_bit():
    data = quantized(per_row=True)
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, (9, K)).astype(np.float32)
    x[2] = 0.0  # the initial state: scale floored, q = 0, y = b
    x[3] *= 1e-30  # tiny values still quantize on their own scale
    x[4] *= 1e6
    y = session(data).run(None, {"x": x})[0]
    want = reference(data, x)
    assert np.array_equal(y.view(np.uint32), want.view(np.uint32))
    assert np.isfinite(y).all()


def test_rows_never_see_each_other_but_did_per_tensor():
    rng = np.random.default_rng(2)
    x = rng.normal(0, 1, (64, K)).astype(np.float32)
    x[5:] *= 40.0  # loud neighbours
    for per_row, invariant in ((True, True), (False, False)):
        s = session(quantized(per_row))
        batch = s.run(None, {"x": x})[0]
        alone = np.concatenate([s.run(None, {"x": x[i:i + 1]})[0] for i in range(len(x))])
        assert np.array_equal(batch.view(np.uint32), alone.view(np.uint32)) is invariant


def test_a_graph_it_cannot_rewrite_is_refused():
    import onnx
    from onnx import helper

    from charwright.export.formats.onnx_rows import per_row
    from charwright.runtime.errors import ExportError

    m = onnx.load_from_string(quantized(per_row=False))
    dql = next(n for n in m.graph.node if n.op_type == "DynamicQuantizeLinear")
    # the quantized activation also leaves the graph through an op the rewrite does not know
    m.graph.node.append(helper.make_node("Cast", [dql.output[0]], ["leak"], to=1))
    m.graph.output.append(helper.make_tensor_value_info("leak", 1, None))
    with pytest.raises(ExportError, match="per-row quantization cannot rewrite"):
        per_row(m.SerializeToString())


def test_a_graph_without_dynamic_quantization_is_returned_as_it_is():
    from charwright.export.formats.onnx_rows import per_row

    data = float_graph()
    assert per_row(data) == data
