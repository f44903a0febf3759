"""The formats a manifest may name are the bundle's facts; the backend registry refers to them
(the flow runs bundle -> backends, never back)."""

import subprocess
import sys

from charwright.runtime.backends import BACKENDS
from charwright.runtime.bundle.formats import DEFAULT_PRECISION, FILE_FORMATS, FORMATS
from charwright.runtime.bundle.manifest import PRECISIONS


def test_formats_and_their_precisions():
    assert FORMATS == ("onnx", "tflite", "npz")
    for f in FILE_FORMATS.values():
        assert set(f.precisions) <= set(PRECISIONS) and set(f.file_names) <= set(f.precisions)
        assert DEFAULT_PRECISION[f.name] == f.precisions
    names = [n for f in FILE_FORMATS.values() for n in f.file_names.values()]
    assert len(names) == len(set(names))


def test_each_backend_takes_its_formats_facts():
    for spec in BACKENDS:
        assert spec.precisions == FILE_FORMATS[spec.format].precisions
        assert spec.file_names == FILE_FORMATS[spec.format].file_names


def test_the_bundle_reader_imports_no_backend():
    code = ("import sys; import charwright.runtime.bundle.reader; "
            "print(sorted(m for m in sys.modules if m.startswith('charwright.runtime.backends')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
