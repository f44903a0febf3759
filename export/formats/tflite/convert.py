"""TFLite conversion from the step SavedModel, per precision, plus metadata and an op list.

precision -> converter settings
    float32       none
    float16       weights stored as float16 (dequantized at load; the file is half the size)
    int8-dynamic  dynamic-range quantization: int8 weights, activations quantized on the fly
    int16x8       full integer with int8 weights and int16 activations (the recurrent path's
                  8-bit per-tensor activations are what costs full int8 its parity on trained
                  models), calibrated like int8; same float32 inputs and outputs
    int8          full integer quantization calibrated on real (token, state) pairs; inputs and
                  outputs stay float32/int32 so every file has the same signature and the
                  runtime keeps one loop and one float state buffer (the boundary quantize /
                  dequantize ops cost little next to the matmuls)
Only TFLITE_BUILTINS are allowed: a file that needs Flex (SELECT_TF_OPS) does not run on a device.

The contract by index (DESIGN.md section 2, README "Integrating a bundle"): the converter orders a
SavedModel's inputs and outputs by its own rules ((state, token) -> (new_state, logits)) and names
the raw tensors `serving_default_state:0`, `PartitionedCall:1`; only the signature maps the real
names, and interpreters without signatures (TFLite Micro, the C APIs) see only indices.
apply_contract() rewrites every converted file so that input 0 is `token`, input 1 `state`,
output 0 `logits`, output 1 `new_state`, and the raw tensors carry exactly those names (the
signature keeps pointing at the same tensors, so signature runners see no change).
"""

from __future__ import annotations

import json

import numpy as np

from charwright.runtime.errors import ExportError

# ops that break recurrent models on devices (tensorflow#46006, #58668, #97941)
FORBIDDEN_OPS = {"VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE", "WHILE", "CALL_ONCE"}
METADATA_NAME = "charwright"
CONTRACT_INPUTS = ("token", "state")
CONTRACT_OUTPUTS = ("logits", "new_state")


def convert(saved_model_dir: str, precision: str, calibration=None) -> bytes:
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if precision == "float16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif precision == "int8-dynamic":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    elif precision in ("int8", "int16x8"):  # calibrated: integer activations (8 or 16 bits)
        if not calibration:
            raise ExportError(f"{precision} needs calibration pairs")
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: (
            {"token": tok, "state": st} for tok, st in calibration
        )
        conv.target_spec.supported_ops = [
            tf.lite.OpsSet.TFLITE_BUILTINS_INT8 if precision == "int8" else
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    elif precision != "float32":
        raise ExportError(f"TFLite precision {precision!r} is not supported")
    try:
        data = bytes(conv.convert())
    except Exception as e:  # the converter raises ConverterError and plain exceptions
        raise ExportError(f"TFLite {precision} conversion failed: {str(e).splitlines()[0]}") from None
    return apply_contract(data)


def convert_int8(saved_model_dir: str, arch: dict, layout: list[dict], calibration) -> bytes:
    """The full-int8 file from the integer-form step graph (int8_graph.py) of architecture
    `arch` with state layout `layout` (step.json's), with measured and clamped ranges (int8.py
    says why and what each rule gained)."""
    from charwright.export.formats.tflite import int8
    from charwright.export.formats.tflite.int8_graph import state_bounded, state_encoding
    from charwright.runtime.bundle.architecture import layer_specs

    if not calibration:
        raise ExportError("int8 needs calibration pairs")
    calibration = encode_states(calibration, layout, state_encoding(layout))
    try:
        data = int8.convert_int8(saved_model_dir, calibration, state_bounded(layer_specs(arch)),
                                 int(arch["vocab_size"]))
    except ExportError:
        raise
    except Exception as e:  # the converter raises ConverterError and plain exceptions
        raise ExportError(f"TFLite int8 conversion failed: {str(e).splitlines()[0]}") from None
    return apply_contract(data)


def encode_states(pairs, layout: list[dict], encoding: list[dict]):
    """Calibration pairs with their states as the integer-form file holds them (the parts in
    `encoding` divided by their scale, clamped): the pairs come from the float reference."""
    scales = {e["part"]: e["scale"] for e in encoding}
    parts = [(e["offset"], e["size"], scales[e["name"]]) for e in layout if e["name"] in scales]
    if not parts:
        return pairs
    out = []
    for tok, st in pairs:
        st = np.array(st, np.float32, copy=True)
        for off, size, scale in parts:
            st[:, off:off + size] = np.clip(st[:, off:off + size] / scale, -1.0, 1.0)
        out.append((tok, st))
    return out


def _schema():
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    return schema, flatbuffer_utils


def op_names(model: bytes) -> list[str]:
    """Sorted operator names of a .tflite file (custom ops as CUSTOM:<code>)."""
    schema, fu = _schema()
    m = fu.convert_bytearray_to_object(bytearray(model))
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    out = set()
    for oc in m.operatorCodes:
        code = max(oc.builtinCode, oc.deprecatedBuiltinCode)
        if oc.customCode:
            cc = oc.customCode.decode() if isinstance(oc.customCode, bytes) else oc.customCode
            out.add(f"CUSTOM:{cc}")
        else:
            out.add(names.get(code, f"BUILTIN_{code}"))
    return sorted(out)


def deploy_problems(ops: list[str]) -> list[str]:
    probs = [o for o in ops if o in FORBIDDEN_OPS]
    probs += [o for o in ops if o.startswith("CUSTOM:")]  # Flex ops are custom ops "Flex..."
    return probs


def add_metadata(model: bytes, meta: dict) -> bytes:
    """Embeds `meta` as JSON in the flatbuffer's metadata table under the name 'charwright'."""
    import numpy as np

    schema, fu = _schema()
    m = fu.convert_bytearray_to_object(bytearray(model))
    buf = schema.BufferT()
    buf.data = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), np.uint8)
    m.buffers.append(buf)
    md = schema.MetadataT()
    md.name = METADATA_NAME
    md.buffer = len(m.buffers) - 1
    m.metadata = (m.metadata or []) + [md]
    return bytes(fu.convert_object_to_bytearray(m))


def read_metadata(model: bytes) -> dict | None:
    _, fu = _schema()
    m = fu.convert_bytearray_to_object(bytearray(model))
    for md in m.metadata or []:
        name = md.name.decode() if isinstance(md.name, bytes) else md.name
        if name == METADATA_NAME:
            return json.loads(bytes(m.buffers[md.buffer].data).decode())
    return None


def _name(v) -> str:
    return v.decode() if isinstance(v, bytes) else (v or "")


def apply_contract(model: bytes) -> bytes:
    """Reorders the subgraph's inputs to (token, state) and outputs to (logits, new_state), and
    renames those four tensors to exactly these names, from the serving_default signature's map
    (signature names -> tensor indices; the indices themselves do not move). Idempotent.

    Raises ExportError if the file has no such signature or another tensor already holds one of
    the names (the contract's names must be unambiguous)."""
    _, fu = _schema()
    m = fu.convert_bytearray_to_object(bytearray(model))
    if len(m.subgraphs or []) != 1 or len(m.signatureDefs or []) != 1:
        raise ExportError("TFLite file: expected one subgraph and one signature, got "
                          f"{len(m.subgraphs or [])} and {len(m.signatureDefs or [])}")
    sg, sig = m.subgraphs[0], m.signatureDefs[0]
    ins = {_name(t.name): t for t in sig.inputs}
    outs = {_name(t.name): t for t in sig.outputs}
    if set(ins) != set(CONTRACT_INPUTS) or set(outs) != set(CONTRACT_OUTPUTS):
        raise ExportError(f"TFLite signature has inputs {sorted(ins)} and outputs {sorted(outs)}; "
                          "expected token, state -> logits, new_state")
    order_in = [ins[n].tensorIndex for n in CONTRACT_INPUTS]
    order_out = [outs[n].tensorIndex for n in CONTRACT_OUTPUTS]
    if sorted(order_in) != sorted(int(i) for i in sg.inputs) or \
            sorted(order_out) != sorted(int(i) for i in sg.outputs):
        raise ExportError("TFLite signature does not name the subgraph's own inputs and outputs")
    mine = dict(zip(order_in + order_out, CONTRACT_INPUTS + CONTRACT_OUTPUTS))
    for i, t in enumerate(sg.tensors):
        if i not in mine and _name(t.name) in mine.values():
            raise ExportError(f"TFLite tensor {i} is already named {_name(t.name)!r}")
    for i, name in mine.items():
        sg.tensors[i].name = name
    sg.inputs, sg.outputs = order_in, order_out
    sig.inputs = [ins[n] for n in CONTRACT_INPUTS]
    sig.outputs = [outs[n] for n in CONTRACT_OUTPUTS]
    return bytes(fu.convert_object_to_bytearray(m))


def contract_of(model: bytes) -> dict:
    """The raw view an interpreter without signatures has: input and output tensor names in
    index order, with their shape signatures ({"inputs": [(name, shape)], "outputs": [...]})."""
    _, fu = _schema()
    sg = fu.convert_bytearray_to_object(bytearray(model)).subgraphs[0]

    def view(idx):
        t = sg.tensors[idx]
        shape = t.shapeSignature if t.shapeSignature is not None else t.shape
        return _name(t.name), [int(x) for x in (shape if shape is not None else [])]

    return {"inputs": [view(i) for i in sg.inputs], "outputs": [view(i) for i in sg.outputs]}


def min_runtime_version(model: bytes) -> str | None:
    """The file's own `min_runtime_version` metadata (the oldest TFLite that has every operator
    version it uses, written by the converter), e.g. "2.17.0"; None if absent."""
    _, fu = _schema()
    m = fu.convert_bytearray_to_object(bytearray(model))
    for md in m.metadata or []:
        if _name(md.name) == "min_runtime_version":
            return bytes(m.buffers[md.buffer].data).split(b"\0")[0].decode() or None
    return None


def min_runtime(model: bytes) -> dict:
    """files[].min_runtime of a .tflite file: the oldest TFLite/LiteRT runtime that loads it,
    as the file itself says (its min_runtime_version metadata, from the operator versions)."""
    return {"runtime": "tflite", "version": min_runtime_version(model), "source": "file"}


def micro_check(path) -> dict:
    """files[].micro: whether TensorFlow Lite Micro runs the file, why not, and the smallest
    arena that works (runtime/verify/micro.py probes it in a child process). Without the [micro]
    extra: runs null and the reason."""
    from charwright.runtime.verify import micro

    if not micro.available():
        return {"runs": None, "reason": "not checked: tflite-micro is not installed "
                "(pip install 'charwright[micro]')", "arena_bytes": None, "runtime": None}
    return micro.probe_file(path)
