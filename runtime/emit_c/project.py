"""`charwright emit-c`'s library half: a dependency-free C99 project from a bundle (no TensorFlow).

    DIR/runtime.c     the hand-written step + sampler + generate loop + main (runtime/c/, verbatim)
    DIR/sampler.h     the sampler (runtime/c/, verbatim; the CPython extension compiles it too)
    DIR/check.c       make check: the probe and the sampling golden vectors, replayed in C
    DIR/model.h       generated (model_header.py): sizes, static const weights (float32, or int8 +
                      one float32 scale per output row), vocabulary as UTF-8 with each entry's byte
                      length, exp tables, the bundle's sha256
    DIR/check_data.h  generated (check_header.py): probe tokens + reference logits, tolerances,
                      golden vectors
    DIR/Makefile, m4.ld, m4_start.c, SAMPLING.md (verbatim: nothing of the bundle in them)

The weights come from the bundle's weights.npz (the numpy backend's file); int8 is quantized
here. Nothing of the bundle reaches the generated headers as text: every value is checked by type
and range first (a one-line BundleError naming the field otherwise) and then written by the
literal writers of literals.py, which can only produce C literals. Every value is checked before
anything is written; each file is written atomically.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from charwright.runtime.bundle.architecture import layer_specs
from charwright.runtime.bundle.manifest import show
from charwright.runtime.emit_c.check_header import check_header
from charwright.runtime.emit_c.model_header import check_supported, model_header
from charwright.runtime.errors import BundleError, ConfigError

C_DIR = Path(__file__).resolve().parent.parent / "c"
COPIED = ("runtime.c", "sampler.h", "check.c", "Makefile", "m4.ld", "m4_start.c", "SAMPLING.md",
          "kernels.h", "kernels_x86.h", "kernels_neon.h", "kernels_dsp.h", "kernels_wasm.h")
PRECISIONS = ("float32", "int8")


def _weights(bundle) -> dict:
    """weights.npz's arrays as float32, each checked against the architecture from its header."""
    try:
        entry = bundle.find("npz")
    except BundleError:
        raise ConfigError(f"{bundle.root} has no weights.npz, which emit-c reads (a bundle "
                          "of int8 model files only): re-export the run with "
                          "`charwright export RUN_DIR -o BUNDLE` to emit C") from None
    return {name: a.astype(np.float32) for name, a in bundle.weights(entry).items()}


def emit(bundle_dir, out_dir, precision: str = "float32", on_note=None, regex=None) -> dict:
    """Writes the C project for `bundle_dir` into `out_dir` (created; existing files of the
    same names are replaced, each atomically). Returns {"files": [...], "quantization_error":
    {...}, "regex": None or the DFA's sizes}. Every value is checked before anything is written.
    regex: a pattern whose DFA model.h carries (emit_c/regex_header.py): cw_generate's text
    then matches it in full."""
    from charwright.runtime.files.atomic import write_bytes
    from charwright.runtime.bundle.reader import load_bundle

    if precision not in PRECISIONS:
        raise ConfigError(f"precision {show(precision)}: emit-c writes "
                          f"{' or '.join(PRECISIONS)}")
    bundle = load_bundle(bundle_dir, verify=False)
    stack = layer_specs(bundle.manifest["architecture"])
    check_supported(stack)
    w = _weights(bundle)
    model_h, errors = model_header(bundle, precision, stack, w)
    regex_info = None
    if regex is not None:
        from charwright.runtime.emit_c.regex_header import regex_tables
        from charwright.runtime.sampling.constrain import compile_dfa

        dfa = compile_dfa(regex, bundle.vocab.chars, bundle.vocab.eos_id)
        tables, regex_info = regex_tables(dfa)
        end = model_h.rindex("#endif")  # inside the include guard
        model_h = model_h[:end] + tables + model_h[end:]
    check_h = check_header(bundle, precision)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    for name in COPIED:
        write_bytes(out / name, (C_DIR / name).read_bytes())
    write_bytes(out / "model.h", model_h.encode("ascii"))
    write_bytes(out / "check_data.h", check_h.encode("ascii"))
    return {"files": list(COPIED) + ["model.h", "check_data.h"], "quantization_error": errors,
            "regex": regex_info}
