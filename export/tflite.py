"""TFLite conversion from the step SavedModel, per precision, plus metadata and an op list.

precision -> converter settings
    float32       none
    float16       weights stored as float16 (dequantized at load; the file is half the size)
    int8-dynamic  dynamic-range quantization: int8 weights, activations quantized on the fly
    int8          full integer quantization calibrated on real (token, state) pairs; inputs and
                  outputs stay float32/int32 so every file has the same signature and the
                  runtime keeps one loop and one float state buffer (the boundary quantize /
                  dequantize ops cost little next to the matmuls)
Only TFLITE_BUILTINS are allowed: a file that needs Flex (SELECT_TF_OPS) does not run on a device.
"""

from __future__ import annotations

import json

from charwright.runtime.errors import ExportError

# ops that break recurrent models on devices (tensorflow#46006, #58668, #97941)
FORBIDDEN_OPS = {"VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE", "WHILE", "CALL_ONCE"}
METADATA_NAME = "charwright"


def convert(saved_model_dir: str, precision: str, calibration=None) -> bytes:
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if precision == "float16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif precision == "int8-dynamic":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    elif precision == "int8":
        if not calibration:
            raise ExportError("full int8 needs calibration pairs")
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: (
            {"token": tok, "state": st} for tok, st in calibration
        )
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    elif precision != "float32":
        raise ExportError(f"TFLite precision {precision!r} is not supported")
    try:
        return bytes(conv.convert())
    except Exception as e:  # the converter raises ConverterError and plain exceptions
        raise ExportError(f"TFLite {precision} conversion failed: {str(e).splitlines()[0]}") from None


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
