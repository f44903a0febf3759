"""Per-row activation quantization for the ONNX int8 file: a row's logits never depend on the
other rows of its batch (DESIGN.md section 3: a seed fixes the text, alone or in any batch).

onnxruntime's quantize_dynamic quantizes each MatMul's activation with DynamicQuantizeLinear,
which takes ONE scale and zero point for the whole [batch, K] tensor: a row's uint8 values, so
its logits, move with its neighbours (issue 20: up to 0.045 on the demo's logits). per_row()
rewrites every such node into a quantization of each row on its own:

    m     = ReduceMax(Abs(x), axis 1)                  float32 [batch]
    scale = Max(m / 127, FLT_MIN)                      (an all-zero row, the initial state: q = 0)
    q     = QuantizeLinear(x, scale, 128, axis 0)      uint8: round-half-even(x / scale) + 128

symmetric, so that the zero point is the constant 128 (onnxruntime's CPU MatMulInteger takes
only a scalar a_zero_point: a per-row one is refused; and its uint8 x int8 kernels are the fast
ones: int8 x int8 measured 25x slower at GRU 1024). |x / scale| <= 127, so q is in 1..255. The
rest of quantize_dynamic's graph stays: the same int8 weights with their per-tensor scale, and
y = (float(int32 product) * scale_w) * scale_row (_scale_last: why the row's scale comes last).
Every op is elementwise or reduces within one row and the integer product is exact, so a row's
result is a function of that row alone: the same bit for bit in any batch (measured at export,
runtime/verify/invariance.py; tests/runtime/test_batch_invariance.py; scripts/batch_invariance.py).
One caveat, the CPU's: on x86 without AVX-512 VNNI / AVX-VNNI, onnxruntime's uint8 x int8
kernel adds pairs of products in int16 with saturation (as for the per-tensor file); that is
still per row, but the product is then not exact.
A state row must be finite for this: with a NaN in it, the row's own result depends on its
place in the batch (onnxruntime's ReduceMax keeps or skips the NaN by the row's alignment when
state_size % 4 != 0: NaN logits alone, finite ones in a batch); the other rows are unaffected.
The runtime does not refuse such a state (ONNXStep: np.isfinite on the state costs ~3% of a demo
step at batch 1); every state the model reaches from the zero state is finite.
"""

from __future__ import annotations

import numpy as np

from charwright.runtime.errors import ExportError

ZERO_POINT = 128  # uint8 zero point of the symmetric [-127, 127] range
LEVELS = 127.0
TINY = float(np.finfo(np.float32).tiny)  # smallest normal float32: the scale of an all-zero row


def per_row(model: bytes) -> bytes:
    """`model` (quantize_dynamic's output) with every DynamicQuantizeLinear replaced by the
    per-row quantization above. Raises ExportError if a quantized activation is used other than
    by MatMulInteger (A and its zero point) and a scale product."""
    import onnx
    from onnx import helper, numpy_helper

    m = onnx.load_from_string(model)
    g = m.graph
    dql = [n for n in g.node
           if n.op_type == "DynamicQuantizeLinear" and n.domain in ("", "ai.onnx")]
    if not dql:
        return model
    consts = {"rows.levels": np.float32(LEVELS), "rows.tiny": np.float32(TINY),
              "rows.zero_point": np.uint8(ZERO_POINT), "rows.axis1": np.array([1], np.int64)}
    have = {i.name for i in g.initializer}
    g.initializer.extend(numpy_helper.from_array(np.array(v), k) for k, v in consts.items()
                         if k not in have)
    consumers: dict = {}
    for n in g.node:
        for i, name in enumerate(n.input):
            consumers.setdefault(name, []).append((n, i))
    new_nodes = []
    for n in g.node:
        if n not in dql:
            new_nodes.append(n)
            continue
        x, (y, scale, zp) = n.input[0], n.output
        _check_uses(consumers, y, scale, zp)
        p = f"{y}.rows"
        new_nodes += [
            helper.make_node("Abs", [x], [f"{p}.abs"]),
            helper.make_node("ReduceMax", [f"{p}.abs"], [f"{p}.max"], axes=[1], keepdims=0),
            helper.make_node("Div", [f"{p}.max", "rows.levels"], [f"{p}.scale0"]),
            helper.make_node("Max", [f"{p}.scale0", "rows.tiny"], [f"{p}.scale"]),
            helper.make_node("Shape", [f"{p}.scale"], [f"{p}.shape"]),
            helper.make_node("ConstantOfShape", [f"{p}.shape"], [f"{p}.zp"],
                             value=numpy_helper.from_array(np.array([ZERO_POINT], np.uint8))),
            helper.make_node("QuantizeLinear", [x, f"{p}.scale", f"{p}.zp"], [y], axis=0),
            helper.make_node("Unsqueeze", [f"{p}.scale", "rows.axis1"], [scale]),
        ]
        for node, i in consumers.get(zp, ()):
            node.input[i] = "rows.zero_point"
    scales = {n.output[1] for n in dql}
    del g.node[:]
    g.node.extend(_scale_last(new_nodes, scales))
    # shapes recorded for the old per-tensor outputs (a scalar scale) no longer hold
    rewritten = {o for n in dql for o in n.output}
    kept = [v for v in g.value_info if v.name not in rewritten]
    del g.value_info[:]
    g.value_info.extend(kept)
    return m.SerializeToString()


def _check_uses(consumers: dict, y: str, scale: str, zp: str) -> None:
    for name, allowed in ((y, {("MatMulInteger", 0)}), (zp, {("MatMulInteger", 2)}),
                          (scale, {("Mul", 0), ("Mul", 1)})):
        for node, i in consumers.get(name, ()):
            if (node.op_type, i) not in allowed:
                raise ExportError(f"ONNX int8: the quantized activation {name!r} feeds "
                                  f"{node.op_type} input {i}; per-row quantization cannot "
                                  "rewrite this graph")


def _scale_last(nodes: list, scales: set) -> list:
    """quantize_dynamic scales a product as y = float(int) * (scale_a * scale_w); this applies
    the row's scale last, y = (float(int) * scale_w) * scale_row. Why: onnxruntime fuses
    MatMulInteger -> Cast -> Mul(scale_a * scale_w) into MatMulIntegerToFloat, whose a_scale is
    per tensor or per column of A, never per row: with a [batch, 1] scale its result was wrong
    (max |d logit| 0.49 vs 0.15 unfused, demo, onnxruntime 1.32). With the row's scale in a Mul
    of its own the pattern does not match and the product runs unfused (the cost of per-row
    files: scripts/bench_onnx_int8.py)."""
    from onnx import helper

    products = {}  # scale_a * scale_w output -> (row scale, weight scale)
    for n in nodes:
        if n.op_type == "Mul" and (n.input[0] in scales) != (n.input[1] in scales):
            row = n.input[0] if n.input[0] in scales else n.input[1]
            products[n.output[0]] = (row, n.input[1] if row == n.input[0] else n.input[0])
    out = []
    for n in nodes:
        if n.output and n.output[0] in products:
            continue  # the product is no longer used
        out.append(n)
        for j, name in enumerate(n.input):
            if n.op_type == "Mul" and name in products:
                row, weight = products[name]
                final = n.output[0]
                n.input[j], n.output[0] = weight, f"{final}.by_weight_scale"
                out.append(helper.make_node("Mul", [n.output[0], row], [final]))
                break
    used = {i for n in out for i in n.input}
    missing = [p for p in products if p in used]
    if missing:
        raise ExportError(f"ONNX int8: the scale product {missing[0]!r} feeds an op other than "
                          "Mul; per-row quantization cannot rewrite this graph")
    return out
