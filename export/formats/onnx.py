"""ONNX conversion (tf2onnx, opset 17) of the step SavedModel, int8 quantization, metadata.

precision -> how
    float32       tf2onnx from the serving_default signature
    int8-dynamic  onnxruntime quantize_dynamic: int8 weights, activations quantized per call,
                  each batch row on its own (onnx_rows.py: quantize_dynamic's one scale per
                  tensor made a row's logits depend on its neighbours); Tanh and Sigmoid as a
                  table lookup of exact ops (onnx_exact.py: the same bits on every runtime)
(static QDQ int8 was measured and dropped: see FILES in export/writer.py)

The contract by index (DESIGN.md section 2): input 0 `token` int32 [batch], input 1 `state`
float32 [batch, S]; output 0 `logits`, output 1 `new_state`; the batch dimension of all four is
the one symbolic dimension `batch` (tf2onnx writes four unrelated names, unk__29..unk__32, and
onnxruntime-web's freeDimensionOverrides {batch: 1} would silently do nothing). apply_contract()
enforces it after conversion and after quantization.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

from charwright.export.formats import onnx_exact
from charwright.runtime.errors import ExportError

OPSET = 17
IR_VERSION_MAX = 8  # onnxruntime 1.13 (the first with opset 17) reads IR versions up to 8
CONTRACT_INPUTS = ("token", "state")
CONTRACT_OUTPUTS = ("logits", "new_state")
BATCH = "batch"
FORBIDDEN_OPS = {"Loop", "Scan"}  # a time loop in the graph: 5x slower than the step, or worse


def convert_float32(saved_model_dir: str, state_size: int) -> bytes:
    import tensorflow as tf
    import tf2onnx

    for name in ("tf2onnx", "tensorflow"):
        logging.getLogger(name).setLevel(logging.ERROR)
    sig = tf.saved_model.load(saved_model_dir).signatures["serving_default"]
    spec = [tf.TensorSpec([None], tf.int32, name="token"),
            tf.TensorSpec([None, state_size], tf.float32, name="state")]
    fn = tf.function(lambda token, state: sig(token=token, state=state))
    try:
        proto, _ = tf2onnx.convert.from_function(fn, input_signature=spec, opset=OPSET)
    except Exception as e:
        raise ExportError(f"ONNX conversion failed: {str(e).splitlines()[0]}") from None
    return apply_contract(proto.SerializeToString())


def apply_contract(model: bytes) -> bytes:
    """Inputs (token, state) and outputs (logits, new_state) in that order, and dimension 0 of
    each named `batch` (also wherever the old names appear in value_info). Idempotent."""
    import onnx

    m = onnx.load_from_string(model)
    g = m.graph
    ins, outs = {i.name: i for i in g.input}, {o.name: o for o in g.output}
    if set(ins) != set(CONTRACT_INPUTS) or set(outs) != set(CONTRACT_OUTPUTS):
        raise ExportError(f"ONNX graph has inputs {list(ins)} and outputs {list(outs)}; expected "
                          "token, state -> logits, new_state")
    order_in = [onnx.ValueInfoProto.FromString(ins[n].SerializeToString())
                for n in CONTRACT_INPUTS]
    order_out = [onnx.ValueInfoProto.FromString(outs[n].SerializeToString())
                 for n in CONTRACT_OUTPUTS]
    old = set()
    for v in order_in + order_out:
        dims = v.type.tensor_type.shape.dim
        if not dims:
            raise ExportError(f"ONNX {v.name} has no shape")
        if dims[0].dim_param:
            old.add(dims[0].dim_param)
        dims[0].ClearField("dim_value")
        dims[0].dim_param = BATCH
    for v in g.value_info:
        for d in v.type.tensor_type.shape.dim:
            if d.dim_param in old:
                d.dim_param = BATCH
    del g.input[:]
    g.input.extend(order_in)
    del g.output[:]
    g.output.extend(order_out)
    return m.SerializeToString()


def contract_of(model: bytes) -> dict:
    """Input and output names in index order with their dims (a symbolic dim as its name)."""
    import onnx

    g = onnx.load_from_string(model).graph

    def view(v):
        return v.name, [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]

    return {"inputs": [view(v) for v in g.input], "outputs": [view(v) for v in g.output]}


def min_runtime(model: bytes) -> dict:
    """The file's opset and IR version, and the onnxruntime that loaded and verified it here."""
    import onnx
    import onnxruntime

    m = onnx.load_from_string(model)
    opset = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), None)
    return {"runtime": "onnxruntime", "version": onnxruntime.__version__, "source": "verified",
            "opset": opset, "ir_version": int(m.ir_version),
            "domains": sorted({o.domain for o in m.opset_import
                               if o.domain not in ("", "ai.onnx")})}


def quantize(model: bytes, precision: str, rows: bool = True,
             activations: str | None = onnx_exact.DEFAULT) -> bytes:
    """The int8-dynamic file of float32 `model`: activations quantized per batch row
    (onnx_rows.per_row) and Tanh and Sigmoid replaced by exact ops (onnx_exact.exact,
    `activations` its method; None keeps the runtimes' own kernels), so that every runtime
    computes the same bits. Not `rows`: quantize_dynamic's file as it was before issue 20 (per
    tensor, the runtimes' Tanh and Sigmoid; kept for scripts/bench_onnx_int8.py's before)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from charwright.export.formats.onnx_rows import per_row

    if precision != "int8-dynamic":
        raise ExportError(f"ONNX precision {precision!r} is not supported")
    logging.getLogger("onnxruntime").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as d:
        src, dst = Path(d) / "in.onnx", Path(d) / "out.onnx"
        src.write_bytes(model)
        try:
            quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
        except Exception as e:
            raise ExportError(f"ONNX {precision} quantization failed: {e}") from None
        data = dst.read_bytes()
        if not rows:
            return apply_contract(data)
        data = per_row(data)
        return apply_contract(onnx_exact.exact(data, activations) if activations else data)


def op_names(model: bytes) -> list[str]:
    import onnx

    m = onnx.load_from_string(model)
    out = set()

    def walk(graph):
        for node in graph.node:
            out.add(node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}")
            for attr in node.attribute:
                if attr.g is not None and attr.g.node:
                    walk(attr.g)

    walk(m.graph)
    return sorted(out)


def deploy_problems(ops: list[str]) -> list[str]:
    return [o for o in ops if o in FORBIDDEN_OPS]


def add_metadata(model: bytes, meta: dict) -> bytes:
    """Stores the vocabulary and key facts in metadata_props (charwright.*)."""
    import onnx

    m = onnx.load_from_string(model)
    props = {p.key: p.value for p in m.metadata_props}
    props.update({f"charwright.{k}": json.dumps(v, sort_keys=True) for k, v in meta.items()})
    onnx.helper.set_model_props(m, props)
    m.producer_name = "charwright"
    return m.SerializeToString()


def read_metadata(model: bytes) -> dict:
    import onnx

    m = onnx.load_from_string(model)
    return {p.key[len("charwright."):]: json.loads(p.value) for p in m.metadata_props
            if p.key.startswith("charwright.")}


def write(job, precision: str, dest: Path, meta: dict):
    """Writes one .onnx file of the bundle (export/formats/job.py): float32 converted once per
    export (job.cache), then quantized per precision; returns its Converted record."""
    from charwright.export.formats.job import Converted

    if "onnx_float32" not in job.cache:
        job.cache["onnx_float32"] = convert_float32(job.saved_model, job.state_size)
    data = job.cache["onnx_float32"]
    if precision != "float32":
        data = quantize(data, precision)
    ops = op_names(data)
    job.save(dest, add_metadata(data, meta))
    return Converted(ops=ops, problems=deploy_problems(ops),
                     fields={"min_runtime": min_runtime(data)})
