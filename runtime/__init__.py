"""charwright.runtime: load a bundle and generate text, without TensorFlow.

Module-level imports here are the standard library only, and the public names load on first use
(PEP 562), so `charwright` starts fast and a Ctrl-C during start-up is handled by the CLI;
numpy is imported by the modules that need it, onnxruntime and ai_edge_litert inside the backends.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "BackendUnavailable": "errors", "BundleError": "errors", "CharwrightError": "errors",
    "ConfigError": "errors", "CorpusError": "errors", "ExportError": "errors",
    "ParityError": "errors", "RunDirError": "errors", "VocabularyError": "errors",
    "Vocabulary": "vocab",
    "Model": "model", "Completion": "model", "Score": "model", "load": "model",
    "SamplingConfig": "sampling",
    "Session": "generate.session", "Snapshot": "generate.session",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
