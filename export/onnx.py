"""ONNX conversion (tf2onnx, opset 17) of the step SavedModel, int8 quantization, metadata.

precision -> how
    float32       tf2onnx from the serving_default signature
    int8-dynamic  onnxruntime quantize_dynamic: int8 weights, activations quantized per call
(static QDQ int8 was measured and dropped: see FILES in bundle_writer.py)
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

from charwright.runtime.errors import ExportError

OPSET = 17
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
    inputs = [i.name for i in proto.graph.input]
    outputs = [o.name for o in proto.graph.output]
    if inputs != ["token", "state"] or sorted(outputs) != ["logits", "new_state"]:
        raise ExportError(f"ONNX graph has inputs {inputs} and outputs {outputs}; expected "
                          "token, state -> logits, new_state")
    return proto.SerializeToString()


def quantize(model: bytes, precision: str) -> bytes:
    from onnxruntime.quantization import QuantType, quantize_dynamic

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
        return dst.read_bytes()


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
