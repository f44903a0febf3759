"""The model-file formats a bundle's manifest may name (files[].format), and what each may hold:
its precisions, fastest first (the file a reader takes when none is asked for, Bundle.find), and
the file name export writes for each precision (names are suggestions: the manifest is the truth).

A bundle is read without knowing which backends exist: the backend registry (runtime/backends)
refers to these facts, in the flow's direction bundle -> backends.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FileFormat:
    name: str  # files[].format
    precisions: tuple  # fastest first
    file_names: dict  # precision -> the file name export writes


FILE_FORMATS = {f.name: f for f in (
    FileFormat("onnx", ("int8-dynamic", "int8", "float32"),
               {"float32": "model.float32.onnx", "int8-dynamic": "model.int8-dynamic.onnx"}),
    FileFormat("tflite", ("int8-dynamic", "int8", "int16x8", "float32", "float16"),
               {"float32": "model.float32.tflite", "float16": "model.float16.tflite",
                "int8-dynamic": "model.int8-dynamic.tflite", "int8": "model.int8.tflite",
                "int16x8": "model.int16x8.tflite"}),
    FileFormat("npz", ("float32",), {"float32": "weights.npz"}),
)}
FORMATS = tuple(FILE_FORMATS)
# which precision a reader takes when none is asked for: the fastest whose parity passed
DEFAULT_PRECISION = {name: f.precisions for name, f in FILE_FORMATS.items()}
