"""BUNDLE_DIR read and validated: the manifest's typed checks, every file's size and sha256, the
probe, the formats a manifest may name, the one architecture parser. `load_bundle(path)` is the
entry point. The names below load on first use, so that bundle.formats and bundle.architecture
import without the reader (the backend registry imports formats)."""

import importlib

_EXPORTS = {"Bundle": "reader", "FileEntry": "reader", "load_bundle": "reader"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
