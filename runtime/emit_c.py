"""`charwright emit-c`: a dependency-free C99 project from a bundle (no TensorFlow).

    DIR/runtime.c     the hand-written step + sampler + generate loop + main (runtime/c/, verbatim)
    DIR/check.c       make check: the probe and the sampling golden vectors, replayed in C
    DIR/model.h       generated: sizes, static const weights (float32, or int8 + one float32
                      scale per output row), vocabulary as UTF-8, exp tables, the bundle's sha256
    DIR/check_data.h  generated: probe tokens + reference logits, tolerances, golden vectors
    DIR/Makefile, m4.ld, m4_start.c, SAMPLING.md

The weights come from the bundle's weights.npz (the numpy backend's file); int8 is quantized
here, per output row (scale = max|row| / 127, an all-zero row gets scale 0).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import click
import numpy as np

from .errors import BundleError, ConfigError

C_DIR = Path(__file__).resolve().parent / "c"
COPIED = ("runtime.c", "check.c", "Makefile", "m4.ld", "m4_start.c", "SAMPLING.md")
CELL_IDS = {"gru": "CW_GRU", "lstm": "CW_LSTM", "rnn": "CW_RNN"}
GATES = {"gru": 3, "lstm": 4, "rnn": 1}
MAX_PROBE = 2000  # probe tokens replayed by check (the first ones)
C_KNOBS = ("greedy", "temperature", "top_k", "top_p")


def layer_stack(arch: dict) -> list[dict]:
    """One dict per layer (cell, units, reset_after, activation, recurrent_activation), from the
    manifest's architecture: its optional `stack` when present (the truth), else the uniform
    cell x layers x units."""
    stack = arch.get("stack")
    if stack is None:
        stack = [{"cell": arch["cell"], "units": arch["units"]}] * int(arch["layers"])
    if not isinstance(stack, list) or not stack:
        raise BundleError("architecture.stack must be a non-empty list of layers")
    out = []
    for i, d in enumerate(stack):
        if not isinstance(d, dict) or d.get("cell") not in GATES or type(d.get("units")) is not int:
            raise BundleError(f"architecture.stack[{i}] must name a cell (gru, lstm, rnn) and units")
        out.append({"cell": d["cell"], "units": d["units"],
                    "reset_after": d.get("reset_after", arch.get("reset_after", True)),
                    "activation": d.get("activation", arch.get("activation", "tanh")),
                    "recurrent_activation": d.get("recurrent_activation",
                                                  arch.get("recurrent_activation", "sigmoid"))})
    return out


def check_supported(stack: list[dict]) -> None:
    for i, L in enumerate(stack):
        if L["activation"] != "tanh" or (L["cell"] != "rnn"
                                         and L["recurrent_activation"] != "sigmoid"):
            raise ConfigError(f"layer {i}: emit-c supports activation tanh and recurrent "
                              f"activation sigmoid only, the bundle has {L['activation']} / "
                              f"{L['recurrent_activation']}")
        if L["cell"] == "gru" and L["reset_after"] is not True:
            raise ConfigError(f"layer {i}: emit-c supports GRU reset_after=true only (Keras' "
                              "default); re-train with reset_after=true")


def _weights(bundle, stack) -> dict:
    from .npz import Npz

    try:
        entry = bundle.find("npz")
    except BundleError:
        raise ConfigError(f"{bundle.root} has no weights.npz, which emit-c reads (a bundle "
                          "of int8 model files only): re-export the run with "
                          "`charwright export RUN_DIR -o BUNDLE` to emit C") from None
    arch = bundle.manifest["architecture"]
    V = bundle.vocab_size
    E = int(arch.get("embedding_dim") or 0) or V
    npz = Npz(bundle.read(entry), str(bundle.path(entry)))
    shapes = {"embedding": (V, E), "dense.kernel": (stack[-1]["units"], V), "dense.bias": (V,)}
    inp = E
    for i, L in enumerate(stack):
        G, H = GATES[L["cell"]], L["units"]
        shapes[f"layer{i}.kernel"] = (inp, G * H)
        shapes[f"layer{i}.recurrent_kernel"] = (H, G * H)
        shapes[f"layer{i}.bias"] = (2, G * H) if L["cell"] == "gru" else (G * H,)
        inp = H
    for name, shape in shapes.items():
        npz.expect(name, shape, "f")
    return {name: npz.load(name).astype(np.float32) for name in shapes}


def quantize_rows(w: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """int8 [d, n], float32 scales [d], max |error|: one scale per row, max|row| / 127."""
    w = np.asarray(w, np.float32)
    amax = np.abs(w).max(axis=1)
    scale = (amax / np.float32(127)).astype(np.float32)
    safe = np.where(scale > 0, scale, np.float32(1))
    q = np.clip(np.rint(w / safe[:, None]), -127, 127).astype(np.int8)
    err = float(np.abs(q.astype(np.float32) * scale[:, None] - w).max()) if w.size else 0.0
    return q, scale, err


def _floats(a) -> str:
    a = np.asarray(a, np.float32).ravel().astype(np.float64)
    parts = []
    for v in a.tolist():
        if v != v or v in (float("inf"), float("-inf")):
            parts.append("(-INFINITY)" if v < 0 else "INFINITY" if v > 0 else "NAN")
        else:
            parts.append(v.hex() + "f")
    return _wrap(parts)


def _ints(a) -> str:
    return _wrap([str(int(v)) for v in np.asarray(a).ravel().tolist()])


def _wrap(parts: list[str], width: int = 100) -> str:
    lines, line = [], ""
    for p in parts:
        if len(line) + len(p) + 2 > width:
            lines.append(line)
            line = ""
        line += p + ", "
    lines.append(line)
    return "\n    ".join(lines)


def _c_string(s: str) -> str:
    out = []
    for b in s.encode("utf-8"):
        c = chr(b)
        out.append(c if 32 <= b < 127 and c not in '"\\?' else f"\\{b:03o}")
    return '"' + "".join(out) + '"'


class _Header:
    def __init__(self):
        self.lines: list[str] = []

    def define(self, name, value):
        self.lines.append(f"#define {name} {value}")

    def array(self, ctype, name, data: str, n: int):
        self.lines.append(f"static const {ctype} {name}[{max(n, 1)}] = {{\n    {data}\n}};")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _matrix(h: _Header, name: str, w_out_in: np.ndarray, int8: bool, errors: dict) -> tuple:
    """Emits W [d][n] (row-major, float32 or int8 + scales); returns (weight, scale) C names."""
    if int8:
        q, s, err = quantize_rows(w_out_in)
        errors[name] = err
        h.array("signed char", name, _ints(q), q.size)
        h.array("float", name + "_S", _floats(s), s.size)
        return name, name + "_S"
    h.array("float", name, _floats(w_out_in), w_out_in.size)
    return name, "NULL"


_NEUTRAL = {"min_p": (None, 0), "typical_p": (None, 1), "repetition_penalty": (None, 1),
            "greedy": (None, False)}


def _defaults(manifest: dict) -> dict:
    d = manifest.get("sampling_defaults") or {}
    if not isinstance(d, dict):
        raise BundleError("sampling_defaults must be an object")
    # a setting C does not implement is fine only at its own neutral value (the window only
    # matters with a penalty)
    penalty_off = d.get("repetition_penalty") in (None, 1)
    extra = {k: v for k, v in d.items() if k not in C_KNOBS
             and not (v in _NEUTRAL.get(k, ()) or (k == "repetition_window" and penalty_off))}
    if extra:
        raise ConfigError(f"the bundle's sampling_defaults use {', '.join(sorted(extra))}, which "
                          "the C runtime does not implement (it has temperature, top-k, top-p)")
    top_k = d.get("top_k") or 0
    top_p = 1.0 if d.get("top_p") is None else float(d["top_p"])
    return {"temperature": float(d.get("temperature", 0.8)), "top_k": int(top_k), "top_p": top_p}


def model_header(bundle, precision: str, stack, w) -> tuple[str, dict]:
    """The text of model.h and the max quantization error per tensor (int8)."""
    from .rng import exp_tables

    int8 = precision == "int8"
    V, vocab = bundle.vocab_size, bundle.vocab
    b0 = w["layer0.bias"]
    table = w["embedding"].astype(np.float64) @ w["layer0.kernel"].astype(np.float64)
    table0 = (table + (b0[0] if stack[0]["cell"] == "gru" else b0)).astype(np.float32)
    sha = hashlib.sha256((bundle.root / "manifest.json").read_bytes()).hexdigest()
    d = _defaults(bundle.manifest)
    h, errors = _Header(), {}
    h.lines += [f"/* Generated by charwright emit-c from {bundle.root.name}: do not edit. */",
                "#ifndef CW_MODEL_H", "#define CW_MODEL_H"]
    h.define("CW_BUNDLE_SHA256", f'"{sha}" /* sha256 of the bundle\'s manifest.json */')
    h.define("CW_PRECISION", f'"{precision}"')
    h.define("CW_INT8", int(int8))
    h.define("CW_WEIGHT", "signed char" if int8 else "float")
    h.define("CW_VOCAB", V)
    h.define("CW_LAYERS", len(stack))
    h.define("CW_STATE", sum((2 if L["cell"] == "lstm" else 1) * L["units"] for L in stack))
    h.define("CW_MAX_GATES", max(GATES[L["cell"]] * L["units"] for L in stack))
    h.define("CW_MAX_IN", max([L["units"] for L in stack]))
    # the widest input of a layer after the first (1 when there is none): int8 scratch
    h.define("CW_MAX_LAYER_IN", max([L["units"] for L in stack[:-1]] or [1]))
    h.define("CW_LAST_UNITS", stack[-1]["units"])
    h.define("CW_EOS_ID", vocab.eos_id if vocab.eos else -1)
    h.define("CW_DEFAULT_TEMPERATURE", repr(d["temperature"]))
    h.define("CW_DEFAULT_TOP_K", f"{d['top_k']}u")
    h.define("CW_DEFAULT_TOP_P", repr(d["top_p"]))
    names = [_c_string(c) for c in vocab.chars] + (["NULL"] if vocab.eos else [])
    h.lines.append("static const char *const cw_vocab[CW_VOCAB] = {\n    "
                   + _wrap(names) + "\n};")
    hi, lo = exp_tables()
    h.array("float", "CW_EXP_HI", _floats(hi), 512)
    h.array("float", "CW_EXP_LO", _floats(lo), 256)
    if int8:
        q, s, errors["table0"] = quantize_rows(table0)
        h.array("signed char", "CW_TABLE0", _ints(q), q.size)
        h.array("float", "CW_TABLE0_SCALE", _floats(s), s.size)
    else:
        h.array("float", "CW_TABLE0", _floats(table0), table0.size)
    rows = []
    for i, L in enumerate(stack):
        gru = L["cell"] == "gru"
        bias = w[f"layer{i}.bias"]
        if i > 0:
            wi, si = _matrix(h, f"CW_W_IN{i}", w[f"layer{i}.kernel"].T, int8, errors)
            h.array("float", f"CW_B_IN{i}", _floats(bias[0] if gru else bias), bias.shape[-1])
            bi, in_dim = f"CW_B_IN{i}", stack[i - 1]["units"]
        else:
            wi, si, bi, in_dim = "NULL", "NULL", "NULL", 0
        wr, sr = _matrix(h, f"CW_W_REC{i}", w[f"layer{i}.recurrent_kernel"].T, int8, errors)
        br = "NULL"
        if gru:
            h.array("float", f"CW_B_REC{i}", _floats(bias[1]), bias.shape[-1])
            br = f"CW_B_REC{i}"
        rows.append(f"{{{CELL_IDS[L['cell']]}, {L['units']}, {in_dim}, {wi}, {si}, {bi}, {wr}, "
                    f"{sr}, {br}}}")
    h.define("CW_LAYER_TABLE", ", ".join(rows))
    dw, ds = _matrix(h, "CW_DENSE_W", w["dense.kernel"].T, int8, errors)
    h.define("CW_DENSE_SCALE", ds)
    h.array("float", "CW_DENSE_B", _floats(w["dense.bias"]), V)
    h.lines.append("#endif")
    return h.text(), errors


def check_header(bundle, precision: str) -> str:
    from .golden import make_golden
    from .parity import TOLERANCES

    probe = bundle.probe()
    n = min(len(probe["tokens"]), MAX_PROBE)
    tol = TOLERANCES["float32" if precision == "float32" else "int8"]
    h = _Header()
    h.lines.append("/* Generated by charwright emit-c: the probe and the golden vectors. */")
    h.define("CW_PROBE_N", n)
    h.define("CW_TOL_MAX_ABS", repr(tol.max_abs or 0.0))
    h.define("CW_TOL_MIN_TOP1", repr(tol.min_top1 or 0.0))
    h.define("CW_TOL_MAX_BPC_REL", repr(tol.max_bpc_rel or 0.0))
    h.array("int", "CW_PROBE_TOKENS", _ints(probe["tokens"][:n]), n)
    h.array("float", "CW_PROBE_LOGITS", _floats(probe["logits"][:n]), n * bundle.vocab_size)
    cases = [c for c in _golden_doc(bundle, make_golden)["cases"]
             if set(c["sampling"]) <= set(C_KNOBS)]
    h.lines.append("typedef struct { const char *name; int vocab; const float *logits; "
                   "double temperature; int top_k; double top_p; int greedy; "
                   "unsigned long long seed, row; long steps; const int *expected; } cw_golden;")
    rows = []
    for i, c in enumerate(cases):
        from .golden import from_hex

        z = from_hex(c["logits"])
        h.array("float", f"CW_G{i}_Z", _floats(z), len(z))
        h.array("int", f"CW_G{i}_IDS", _ints(c["expected"]), len(c["expected"]))
        s = c["sampling"]
        t = 1.0 if s.get("temperature") is None else s["temperature"]
        rows.append(f"{{{_c_string(c['name'])}, {len(z)}, CW_G{i}_Z, {t!r}, "
                    f"{s.get('top_k') or 0}, {1.0 if s.get('top_p') is None else s['top_p']!r}, "
                    f"{int(bool(s.get('greedy')))}, {c['seed']}u, {c['row']}u, {c['steps']}, "
                    f"CW_G{i}_IDS}}")
    h.define("CW_GOLDEN_N", len(rows))
    h.define("CW_GOLDEN_MAX_V", max(len(c["logits"]) for c in cases))
    h.lines.append("static const cw_golden cw_golden_cases[CW_GOLDEN_N] = {\n    "
                   + ",\n    ".join(rows) + "\n};")
    return h.text()


def _golden_doc(bundle, make):
    """The bundle's golden.json if it has one (checked by `verify`), else this runtime's."""
    entry = bundle.manifest.get("golden")
    if isinstance(entry, dict) and isinstance(entry.get("path"), str):
        from .golden import read_golden

        return read_golden(bundle)
    return make()


def emit(bundle_dir, out_dir, precision: str = "float32", on_note=None) -> dict:
    """Writes the C project for `bundle_dir` into `out_dir` (created; existing files of the
    same names are replaced). Returns {"files": [...], "quantization_error": {...}}."""
    from .bundle import load_bundle

    bundle = load_bundle(bundle_dir, verify=False)
    stack = layer_stack(bundle.manifest["architecture"])
    check_supported(stack)
    w = _weights(bundle, stack)
    model_h, errors = model_header(bundle, precision, stack, w)
    check_h = check_header(bundle, precision)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    for name in COPIED:
        shutil.copyfile(C_DIR / name, out / name)
    (out / "model.h").write_text(model_h, encoding="utf-8")
    (out / "check_data.h").write_text(check_h, encoding="utf-8")
    return {"files": list(COPIED) + ["model.h", "check_data.h"], "quantization_error": errors}


@click.command("emit-c")
@click.argument("bundle_dir", type=click.Path(file_okay=False))
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Directory for the C project (created).")
@click.option("--precision", type=click.Choice(["float32", "int8"]), default="float32",
              show_default=True, help="Weights in model.h: float32, or int8 with one scale "
              "per output row.")
def emit_c(bundle_dir, out_dir, precision):
    """Emit a dependency-free C99 runtime for BUNDLE_DIR into DIR: `make -C DIR` builds
    DIR/cw_generate, `make -C DIR check` replays the probe and the sampling golden vectors,
    `make -C DIR cortex-m4` builds Cortex-M4 ELF files for qemu-system-arm.

    \b
    charwright emit-c BUNDLE -o DIR [--precision int8]
    make -C DIR && DIR/cw_generate --seed 1 -n 200 ROMEO:
    """
    res = emit(bundle_dir, out_dir, precision)
    if res["quantization_error"]:
        worst = max(res["quantization_error"].items(), key=lambda kv: kv[1])
        click.echo(f"int8: max |weight error| {worst[1]:.3g} (in {worst[0]})", err=True)
    click.echo(f"wrote {out_dir}: {', '.join(res['files'])}; build with: make -C {out_dir}",
               err=True)
    sys.stdout.flush()
