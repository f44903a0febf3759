"""Step backends, one per file format, behind one interface (base.StepBackend).

BACKENDS below is the one declaration of what each backend is; every other table of backends is
derived from it (the CLI's --backend and --format choices, Model's thread-safety rule, the
export's file names). What a file format may hold (precisions fastest first, file names) is the
bundle's fact (runtime/bundle/formats.py): a spec takes it from its format unless it says
otherwise. Backend modules import their runtime (onnxruntime, ai_edge_litert) only when a backend
is built, so importing this is free.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass

from charwright.runtime.bundle.formats import FILE_FORMATS
from charwright.runtime.errors import ConfigError


@dataclass(frozen=True)
class BackendSpec:
    """One backend.

    name: the CLI's --backend value; format: files[].format in the manifest; module/cls: where
    the StepBackend lives; thread_safe: one instance may serve several threads (else Model gives
    each thread its own); precisions: the precisions it runs, fastest first (the default order
    when none is asked for); runtime: the module it imports; extra: the install extra that
    brings that module (None: a base dependency); file_names: precision -> file name export writes.
    precisions and file_names default to the format's (bundle.formats.FILE_FORMATS).
    """

    name: str
    format: str
    module: str
    cls: str
    thread_safe: bool
    runtime: str
    extra: str | None
    precisions: tuple | None = None
    file_names: dict | None = None

    def __post_init__(self):
        fmt = FILE_FORMATS[self.format]
        if self.precisions is None:
            object.__setattr__(self, "precisions", fmt.precisions)
        if self.file_names is None:
            object.__setattr__(self, "file_names", fmt.file_names)

    def file_name(self, precision: str) -> str:
        return self.file_names[precision]

    def available(self) -> bool:
        """Whether its runtime module can be imported (without importing it)."""
        try:
            return importlib.util.find_spec(self.runtime) is not None
        except (ImportError, ValueError):
            return False

    @property
    def install_hint(self) -> str:
        if self.extra is None:
            return "pip install --force-reinstall charwright"
        return f"pip install 'charwright[{self.extra}]'"


BACKENDS = (
    BackendSpec("onnx", "onnx", "charwright.runtime.backends.onnx", "ONNXStep",
                thread_safe=True, runtime="onnxruntime", extra=None),
    BackendSpec("litert", "tflite", "charwright.runtime.backends.litert", "LiteRTStep",
                thread_safe=False, runtime="ai_edge_litert", extra="litert"),
    BackendSpec("numpy", "npz", "charwright.runtime.backends.numpy", "NumpyStep",
                thread_safe=True, runtime="numpy", extra=None),
)
# TensorFlow Lite Micro runs some .tflite files as a microcontroller would (batch 1, a fixed
# arena): `verify` and export replay the probe under it; it is not a --backend choice, nor the
# backend a format opens with, so it stays out of BACKENDS and the tables derived from it.
TFLM = BackendSpec("tflm", "tflite", "charwright.runtime.backends.tflm", "MicroStep",
                   thread_safe=False, precisions=("int8", "float32"), runtime="tflite_micro",
                   extra="micro", file_names={})
BY_NAME = {s.name: s for s in BACKENDS}
BY_FORMAT = {s.format: s for s in BACKENDS}
# the names a user may give for a format: the manifest's and the backend's (--format tflite|litert)
FORMAT_ALIASES = {**{s.format: s.format for s in BACKENDS}, **{s.name: s.format for s in BACKENDS}}


def spec_for_format(fmt: str) -> BackendSpec:
    if fmt not in BY_FORMAT:
        raise ConfigError(f"no backend for format {fmt!r}; known: {', '.join(BY_FORMAT)}")
    return BY_FORMAT[fmt]


def spec_for_backend(name: str) -> BackendSpec:
    if name not in BY_NAME:
        raise ConfigError(f"backend {name!r}: use one of {', '.join(BY_NAME)}")
    return BY_NAME[name]


def backend_class(fmt: str):
    spec = spec_for_format(fmt)
    return getattr(importlib.import_module(spec.module), spec.cls)


def open_backend(bundle, entry, threads: int = 1):
    """Builds the backend for one file entry of a loaded bundle.

    Raises BackendUnavailable if the runtime is not installed, BundleError if the file cannot be
    loaded or its inputs and outputs do not match the manifest."""
    be = backend_class(entry.format).from_bundle(bundle, entry, threads=threads)
    be.batch_invariant = bool(getattr(entry, "batch_invariant", False))  # the manifest's word
    return be
