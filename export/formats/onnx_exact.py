"""Exact activations for the ONNX int8 file: the same bits on every conforming runtime (issue 20
item 3: "make the integer files the ones that hold everywhere").

In the per-row int8 file (onnx_rows.py) every op is exact (integer products, IEEE-754 + - * /,
rounding, reductions by max) except Tanh and Sigmoid, whose kernels differ between runtimes by an
ulp or two (onnxruntime's MLAS, onnxruntime-web's WASM build, onnx's numpy reference); at GRU 512
such an ulp crosses a quantization boundary within 25-100 characters and the text parts
(scripts/cross_runtime/explain.py). exact() replaces each Tanh and Sigmoid node by a subgraph of
ops that IEEE-754 rounds once, so every runtime gets the same bits:

    "table" (the default)  tanh(x) = T[i], T a table of tanh at 512 points a unit over [-8, 8]
        (8,193 float32, 32 KB), i = int(clip(x * 512 + 4096.5, 0, 8192)) the nearest point
        (Mul by a power of two, Add, Clip, Cast: truncation of a value >= 0, Clip of the
        integer against NaN, GatherElements on the flattened indices); sigmoid(x) =
        0.5 + 0.5 T[i] at half the points a unit (tanh(x / 2)). Within 2**-10 of tanh and
        2**-11 of sigmoid.
    "rational"  tanh as the emitted C runtime computes it (runtime/c/runtime.c cw_tanh,
        Eigen's rational form, the one TensorFlow's CPU kernels use): x clamped to
        +-7.90531111, p = odd polynomial of degree 13 and q = even polynomial of degree 6 in
        x^2 by Horner (one Mul and one Add a term, in that order), p / q, x itself where
        |x| < 0.0004; sigmoid(x) = 0.5 + 0.5 * tanh(0.5 * x). Within 7 ulp of tanh. The
        same bits as the C runtime's activations, but 30 ops an activation.

Measured on the demo (GRU 512, scripts/cross_runtime/exact_candidates.py, 300 steps, min of
alternating runs, onnxruntime 1.32 batch 1 one thread, a 2-core Xeon loaded by other jobs):
both give 0/300 steps whose bits differ on onnxruntime-web and on onnx.reference (the runtimes'
own Tanh/Sigmoid: 300/300). Tanh/Sigmoid 937,935 bytes, probe top-1 97.35%, +0.13% bits/char,
31.9 us/step; table 971,620 bytes, 97.45%, +0.13%, 38.8 us/step; rational 939,961 bytes,
97.30%, +0.12%, 56.1 us/step. The table is the default: the lower cost. At batch 8 and 64 the
table costs 60 -> 81 and 268 -> 388 us/step (the lookup, the gates' Concat/Split, the integer
Clip: GatherElements 55 of them at batch 64).

The activations of one kind whose inputs are ready at the same point (a GRU's update and reset
gates) are evaluated as one: Concat on axis 1, one subgraph, Split; fewer ops at batch 1, and a
row still depends on that row alone (batch-invariant). Nothing here can be fused into a
multiply-add by onnxruntime's graph optimizer (it has no elementwise Mul+Add fusion), which the
tests check by comparing bits with onnx's reference evaluator and onnxruntime-web.

PORTABLE_OPS lists the ops whose result every conforming runtime computes bit for bit (integer
arithmetic, IEEE-754 basic operations, data movement, max/min, rounding); portable() says
whether a file uses only those (the manifest's files[].portable).

(Just over 300 lines, one idea: the exact-activation rewrite and the evaluator that checks
it; apart, the graph rewrite would lose its oracle.)

(About 320 lines, one idea: rewriting the graph's activations into once-rounding ops; the
reference tanh and evaluator sit beside it because the tests and verify check one with the other.)
"""

from __future__ import annotations

import numpy as np

METHODS = ("table", "rational")
DEFAULT = "table"

# ops every conforming ONNX runtime computes bit for bit: integer arithmetic, IEEE-754 basic
# operations (+ - * / rounded once), data movement and indexing, max/min/abs, rounding, and
# the quantization ops (x / scale rounded half to even, saturated; scale * (q - zero point))
PORTABLE_OPS = frozenset({
    "MatMulInteger", "QuantizeLinear", "DequantizeLinear", "Gather", "GatherElements", "Cast",
    "Add", "Sub", "Mul",
    "Div", "Neg", "Abs", "ReduceMax", "ReduceMin", "Max", "Min", "Clip", "Floor", "Ceil", "Round",
    "Slice", "Shape", "ConstantOfShape", "Unsqueeze", "Squeeze", "Reshape", "Concat", "Split",
    "Where", "Less", "Greater", "Equal", "Identity", "Transpose", "Expand", "Constant",
})

# runtime/c/runtime.c cw_tanh's float32 constants, by bit pattern (the C literals' values)
CLAMP = 0x40FCF84F  # 7.90531111
P_TERMS = (0xA59F25C0, 0x2A61337E, 0xAEBD37FF, 0x335C0041, 0x3779434A, 0x3A270DED, 0x3BA059DC)
Q_TERMS = (0x35A0D3D8, 0x38F895D6, 0x3B14AA05, 0x3BA059DD)
SMALL = 0x39D1B717  # 0.0004f

TABLE_STEPS = 512  # points per unit of tanh's argument (a power of two)
TABLE_RANGE = 8  # tanh(8) = 1 - 2.3e-7


def _f32(bits: int) -> np.float32:
    return np.array([bits], np.uint32).view(np.float32)[0]


def portable(ops) -> bool:
    """True when every op (export/formats/onnx.op_names) is in PORTABLE_OPS."""
    return bool(ops) and all(o in PORTABLE_OPS for o in ops)


def reference_tanh(x: np.ndarray) -> np.ndarray:
    """cw_tanh in numpy float32, operation by operation (the tests' oracle)."""
    x = np.asarray(x, np.float32)
    c = np.clip(x, -_f32(CLAMP), _f32(CLAMP))
    x2 = c * c
    p = np.float32(_f32(P_TERMS[0])) * x2 + _f32(P_TERMS[1])
    for t in P_TERMS[2:]:
        p = p * x2 + _f32(t)
    p = p * c
    q = np.float32(_f32(Q_TERMS[0])) * x2 + _f32(Q_TERMS[1])
    for t in Q_TERMS[2:]:
        q = q * x2 + _f32(t)
    return np.where(np.abs(x) < _f32(SMALL), x, p / q).astype(np.float32)


def reference_evaluator(data: bytes):
    """onnx's ReferenceEvaluator (numpy, each op as the standard writes it: what a port that
    follows the graph computes) of the ONNX file `data`, at opset 19 or later (its
    DequantizeLinear starts there and reads int8 as opset 17 does), with GatherElements as the
    standard defines it: onnx's own kernel (np.choose) refuses a table of more than 64 entries.
    Data movement only: no arithmetic is replaced."""
    import onnx
    from onnx.reference import ReferenceEvaluator
    from onnx.reference.op_run import OpRun

    class GatherElements(OpRun):
        op_domain = ""

        def _run(self, data, indices, axis=None):
            axis = axis or 0
            idx = np.where(indices < 0, indices + data.shape[axis], indices).astype(np.int64)
            return (np.take_along_axis(data, idx, axis=axis),)

    m = onnx.load_from_string(data)
    for o in m.opset_import:
        if o.domain in ("", "ai.onnx"):
            o.version = max(o.version, 19)
    return ReferenceEvaluator(m, new_ops=[GatherElements])


def _constants(method: str) -> dict:
    c = {"xa.half": np.float32(0.5)}
    if method == "rational":
        c.update({"xa.lo": -_f32(CLAMP), "xa.hi": _f32(CLAMP), "xa.small": _f32(SMALL)})
        c.update({f"xa.p{i}": _f32(b) for i, b in enumerate(P_TERMS)})
        c.update({f"xa.q{i}": _f32(b) for i, b in enumerate(Q_TERMS)})
    else:
        x = np.arange(-TABLE_RANGE * TABLE_STEPS, TABLE_RANGE * TABLE_STEPS + 1,
                      dtype=np.float64) / TABLE_STEPS
        c["xa.table"] = np.tanh(x).astype(np.float32)
        c["xa.off"] = np.float32(TABLE_RANGE * TABLE_STEPS + 0.5)
        c["xa.last"] = np.float32(2 * TABLE_RANGE * TABLE_STEPS)
        c["xa.zero"] = np.float32(0)
        c["xa.flat"] = np.array([-1], np.int64)
        c["xa.izero"] = np.int32(0)
        c["xa.ilast"] = np.int32(2 * TABLE_RANGE * TABLE_STEPS)
        c["xa.Tanh.steps"] = np.float32(TABLE_STEPS)
        c["xa.Sigmoid.steps"] = np.float32(TABLE_STEPS / 2)  # tanh(x / 2): half the points
    return c


def _tanh_rational(x: str, y: str, p: str) -> list:
    from onnx import helper

    def node(op, ins, out):
        return helper.make_node(op, ins, [out])

    nodes = [node("Clip", [x, "xa.lo", "xa.hi"], p + "c"),
             node("Mul", [p + "c", p + "c"], p + "x2")]
    for name, terms in (("p", P_TERMS), ("q", Q_TERMS)):
        acc = f"xa.{name}0"
        for i in range(1, len(terms)):
            nodes += [node("Mul", [acc, p + "x2"], f"{p}{name}{i}m"),
                      node("Add", [f"{p}{name}{i}m", f"xa.{name}{i}"], f"{p}{name}{i}")]
            acc = f"{p}{name}{i}"
        if name == "p":
            nodes.append(node("Mul", [acc, p + "c"], p + "podd"))
    last_q = f"{p}q{len(Q_TERMS) - 1}"
    return nodes + [node("Div", [p + "podd", last_q], p + "r"),
                    node("Abs", [x], p + "abs"),
                    node("Less", [p + "abs", "xa.small"], p + "small"),
                    node("Where", [p + "small", x, p + "r"], y)]


def _table(op: str, x: str, y: str, p: str, shape: str | None = None) -> list:
    """tanh(x) = T[i], sigmoid(x) = 0.5 + 0.5 T[i] (= 0.5 + 0.5 tanh(x / 2)), i the index of the
    nearest point: x * steps + off (x * steps is exact: a power of two) clipped to the table,
    then truncated to an integer. `shape`: an initializer holding x's shape with -1 for the
    batch (else a Shape op reads it)."""
    from onnx import TensorProto, helper

    def node(op_type, ins, out, **kw):
        return helper.make_node(op_type, ins, [out], **kw)

    t = y if op == "Tanh" else p + "t"
    nodes = [node("Mul", [x, f"xa.{op}.steps"], p + "m"),
             node("Add", [p + "m", "xa.off"], p + "u"),
             node("Clip", [p + "u", "xa.zero", "xa.last"], p + "c"),
             # Cast of a value in [0, 8192] truncates: floor (no Floor op: onnxruntime's is
             # not vectorised, 19 us of a 412 us step at batch 64)
             node("Cast", [p + "c"], p + "i0", to=TensorProto.INT32),
             # a NaN (a state given from outside) casts to what the CPU makes of it: clipped
             # again as an integer it still indexes the table (only its own row is garbage)
             node("Clip", [p + "i0", "xa.izero", "xa.ilast"], p + "i"),
             # GatherElements on the flattened indices: onnxruntime's Gather copies element by
             # element (577 vs 86 us for the whole lookup of a [64, 1024] tensor, int32 index)
             node("Reshape", [p + "i", "xa.flat"], p + "i1"),
             node("GatherElements", ["xa.table", p + "i1"], p + "g", axis=0),
             *([] if shape else [node("Shape", [x], p + "shape")]),
             node("Reshape", [p + "g", shape or p + "shape"], t)]
    if op == "Sigmoid":
        nodes += [node("Mul", [t, "xa.half"], p + "th"), node("Add", [p + "th", "xa.half"], y)]
    return nodes


def _activation(op: str, method: str, x: str, y: str, p: str, shape: str | None) -> list:
    from onnx import helper

    if method == "table":
        return _table(op, x, y, p, shape)
    if op == "Tanh":
        return _tanh_rational(x, y, p)
    return [helper.make_node("Mul", [x, "xa.half"], [p + "h"]),
            *_tanh_rational(p + "h", p + "t", p),
            helper.make_node("Mul", [p + "t", "xa.half"], [p + "th"]),
            helper.make_node("Add", [p + "th", "xa.half"], [y])]


def exact(model: bytes, method: str = DEFAULT, merge: bool = True) -> bytes:
    """`model` with every Tanh and Sigmoid node replaced by exact ops (module docstring).
    Activations of [batch, n] tensors whose inputs are all ready together are merged."""
    import onnx
    from onnx import helper, numpy_helper

    from charwright.runtime.errors import ExportError

    if method not in METHODS:
        raise ExportError(f"exact activations: unknown method {method!r} (one of "
                          f"{', '.join(METHODS)})")
    m = onnx.load_from_string(model)
    g = m.graph
    acts = [n for n in g.node if n.op_type in ("Tanh", "Sigmoid") and n.domain in ("", "ai.onnx")]
    if not acts:
        return model
    have = {i.name for i in g.initializer}
    g.initializer.extend(numpy_helper.from_array(np.asarray(v), k)
                         for k, v in _constants(method).items() if k not in have)
    groups = _groups(g, acts) if merge else [[n] for n in acts]
    dims = {v.name: [d.dim_value if d.HasField("dim_value") else None
                     for d in v.type.tensor_type.shape.dim]
            for v in list(g.value_info) + list(g.input) + list(g.output)}

    def const(name, value):
        g.initializer.append(numpy_helper.from_array(np.array(value, np.int64), name))
        return name

    replaced, new = {id(n) for n in acts}, []
    for k, group in enumerate(groups):
        op, p = group[0].op_type, f"xa{k}."
        # widths known from the graph's shapes: constants instead of Shape ops (fewer ops)
        widths = [dims.get(n.input[0], [None, None])[1:] for n in group]
        known = all(len(w) == 1 and w[0] for w in widths)
        shape = const(p + "shape", [-1, sum(w[0] for w in widths)]) if known else None
        if len(group) == 1:
            new += _activation(op, method, group[0].input[0], group[0].output[0], p, shape)
            continue
        # one evaluation for the group: Concat on axis 1, the subgraph, Split by widths
        if known:
            split = const(p + "split", [w[0] for w in widths])
        else:
            split, names = p + "split", [f"{p}width{i}" for i in range(len(group))]
            new += [helper.make_node("Shape", [n.input[0]], [w], start=1, end=2)
                    for n, w in zip(group, names)]
            new.append(helper.make_node("Concat", names, [split], axis=0))
        new += [helper.make_node("Concat", [n.input[0] for n in group], [p + "in"], axis=1),
                *_activation(op, method, p + "in", p + "out", p, shape),
                helper.make_node("Split", [p + "out", split],
                                 [n.output[0] for n in group], axis=1)]
    nodes = [n for n in g.node if id(n) not in replaced] + new
    del g.node[:]
    g.node.extend(_topological(nodes, {i.name for i in g.input} | {
        i.name for i in g.initializer}))
    # the replaced nodes' outputs keep their names, shapes and types: value_info still holds
    onnx.checker.check_model(m)
    return m.SerializeToString()


def _groups(g, acts) -> list:
    """The activations split into groups of one op type that may be evaluated together: rank-2
    inputs where no member's input depends on another member's output."""
    producer = {o: n for n in g.node for o in n.output}

    def ancestors(name, seen):
        stack = [name]
        while stack:
            n = producer.get(stack.pop())
            if n is None or id(n) in seen:
                continue
            seen.add(id(n))
            stack.extend(n.input)
        return seen

    ranks = {v.name: len(v.type.tensor_type.shape.dim) for v in
             list(g.value_info) + list(g.input) + list(g.output)}
    groups: list = []
    for n in acts:
        up = ancestors(n.input[0], set())
        for group in groups:
            if group[0].op_type == n.op_type and ranks.get(n.input[0]) == 2 and all(
                    ranks.get(o.input[0]) == 2 and id(o) not in up and
                    id(n) not in ancestors(o.input[0], set()) for o in group):
                group.append(n)
                break
        else:
            groups.append([n])
    return groups


def _topological(nodes: list, ready: set) -> list:
    from charwright.runtime.errors import ExportError

    ready, out, pending = set(ready) | {""}, [], list(nodes)
    while pending:
        rest = []
        for n in pending:
            if all(i in ready for i in n.input):
                out.append(n)
                ready.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(pending):
            raise ExportError("exact activations: the rewritten ONNX graph has a cycle")
        pending = rest
    return out
