"""Step backends, one per file format, behind one interface (base.StepBackend).

The registry is keyed by the manifest's `format`; backend modules import their runtime
(onnxruntime, ai_edge_litert) only when a backend is built.
"""

from __future__ import annotations

import importlib

from ..errors import ConfigError

# format -> (module, class)
REGISTRY = {
    "onnx": ("charwright.runtime.backends.onnx", "ONNXStep"),
    "tflite": ("charwright.runtime.backends.litert", "LiteRTStep"),
    "npz": ("charwright.runtime.backends.numpy", "NumpyStep"),
}


def backend_class(fmt: str):
    if fmt not in REGISTRY:
        raise ConfigError(f"no backend for format {fmt!r}; known: {', '.join(REGISTRY)}")
    module, name = REGISTRY[fmt]
    return getattr(importlib.import_module(module), name)


def open_backend(bundle, entry, threads: int = 1):
    """Builds the backend for one file entry of a loaded bundle."""
    return backend_class(entry.format).from_bundle(bundle, entry, threads=threads)
