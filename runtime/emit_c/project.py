"""`charwright emit-c`: a dependency-free C99 project from a bundle (no TensorFlow).

    DIR/runtime.c     the hand-written step + sampler + generate loop + main (runtime/c/, verbatim)
    DIR/check.c       make check: the probe and the sampling golden vectors, replayed in C
    DIR/model.h       generated: sizes, static const weights (float32, or int8 + one float32
                      scale per output row), vocabulary as UTF-8 with each entry's byte length,
                      exp tables, the bundle's sha256
    DIR/check_data.h  generated: probe tokens + reference logits, tolerances, golden vectors
    DIR/Makefile, m4.ld, m4_start.c, SAMPLING.md (verbatim: nothing of the bundle in them)

The weights come from the bundle's weights.npz (the numpy backend's file); int8 is quantized
here, per output row (scale = max|row| / 127, an all-zero row gets scale 0).

A bundle may come from anyone, and its integrator compiles what this writes. So nothing of the
bundle reaches the generated headers as text: every value is checked by type and range first
(a one-line BundleError naming the field otherwise) and then written by the literal writers
below, which can only produce C literals. _Header takes nothing else.
"""

from __future__ import annotations

import hashlib
import math
import re
import sys
from pathlib import Path

import click
import numpy as np

from charwright.runtime.errors import BundleError, ConfigError
from charwright.runtime.sampling.golden import MAX_GOLDEN_STEPS
from charwright.runtime.bundle.architecture import GATES, layer_specs, weight_shapes
from charwright.runtime.bundle.manifest import show

C_DIR = Path(__file__).resolve().parent.parent / "c"
COPIED = ("runtime.c", "check.c", "Makefile", "m4.ld", "m4_start.c", "SAMPLING.md")
CELL_IDS = {"gru": "CW_GRU", "lstm": "CW_LSTM", "rnn": "CW_RNN"}
PRECISIONS = ("float32", "int8")
MAX_PROBE = 2000  # probe tokens replayed by check (the first ones)
C_KNOBS = ("greedy", "temperature", "top_k", "top_p")
DEFAULT_TEMPERATURE = 0.8  # charwright generate's default
MAX_GOLDEN_V = 1 << 16  # logits per golden case (make_golden writes at most 65)
MAX_GOLDEN_NAME = 200  # characters of a golden case's name
INT32_MAX, INT63_MAX = 2**31 - 1, 2**63 - 1


# ---- literal writers: the only text of the bundle's values that reaches generated C -------------

class _C(str):
    """Text that is C by construction: made only by the writers below from checked values."""


_IDENT = re.compile(r"CW_[A-Z0-9_]+|cw_[a-z0-9_]+|NULL")
_CTYPES = ("float", "signed char", "unsigned char", "int")


def _ident(name: str) -> _C:
    """One of the emitter's own names (never a bundle's)."""
    if not _IDENT.fullmatch(name):
        raise ValueError(f"emit-c: {name!r} is not a name the emitter makes")
    return _C(name)


def _lit_int(v, lo: int, hi: int, suffix: str = "") -> _C:
    """A decimal integer literal from an int in lo..hi (suffix "" or "u")."""
    if isinstance(v, np.integer):
        v = int(v)
    if type(v) is not int or not lo <= v <= hi or suffix not in ("", "u"):
        raise ValueError(f"emit-c: {show(v)} is not an integer in {lo}..{hi}")
    return _C(f"{v}{suffix}")


def _lit_double(v) -> _C:
    """A double literal from a finite real: repr of a finite float is a C literal."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ValueError(f"emit-c: {show(v)} is not a finite number")
    return _C(repr(float(v)))


def _lit_string(s: str) -> _C:
    """A string literal holding the UTF-8 of s byte for byte: printable ASCII as is except
    " \\ and ? (trigraphs), every other byte as a 3-digit octal escape, so no quote, backslash,
    newline, NUL, comment or trigraph can end the literal or change what it holds."""
    if not isinstance(s, str):
        raise ValueError(f"emit-c: {show(s)} is not a string")
    out = []
    for b in s.encode("utf-8"):
        c = chr(b)
        out.append(c if 32 <= b < 127 and c not in '"\\?' else f"\\{b:03o}")
    return _C('"' + "".join(out) + '"')


def _floats(a) -> _C:
    """float32 values as hex-float literals (exact), INFINITY / NAN for the rest."""
    a = np.asarray(a, np.float32).ravel().astype(np.float64)
    parts = []
    for v in a.tolist():
        if v != v or v in (float("inf"), float("-inf")):
            parts.append("(-INFINITY)" if v < 0 else "INFINITY" if v > 0 else "NAN")
        else:
            parts.append(v.hex() + "f")
    return _wrap(parts)


def _ints(a) -> _C:
    a = np.asarray(a)
    if a.size and a.dtype.kind not in "iu":
        raise ValueError("emit-c: integer array expected")
    return _wrap([str(int(v)) for v in a.ravel().tolist()])


def _wrap(parts: list[str], width: int = 100) -> _C:
    lines, line = [], ""
    for p in parts:
        if len(line) + len(p) + 2 > width:
            lines.append(line)
            line = ""
        line += p + ", "
    lines.append(line)
    return _C("\n    ".join(lines))


def _join(parts, sep: str = ", ") -> _C:
    """Literals and names joined (an initializer's fields, a table's rows)."""
    if sep not in (", ", ",\n    ") or not all(isinstance(p, _C) for p in parts):
        raise ValueError("emit-c: only literals and names join")
    return _C(sep.join(parts))


class _Header:
    """A generated header: #define NAME literal, static const arrays of literals, and fixed text
    written by the emitter itself; anything else is refused."""

    def __init__(self):
        self.lines: list[str] = []

    def fixed(self, line: str):  # the emitter's own text: no value may reach it
        self.lines.append(line)

    def define(self, name: str, value: _C):
        if not isinstance(value, _C):
            raise ValueError(f"emit-c: {name}: not a literal")
        self.lines.append(f"#define {_ident(name)} {value}")

    def table(self, declaration: str, data: _C):
        """`declaration = { data };`: the declaration is the emitter's own text."""
        if not isinstance(data, _C):
            raise ValueError(f"emit-c: {declaration}: not literals")
        self.lines.append(f"{declaration} = {{\n    {data}\n}};")

    def array(self, ctype: str, name: str, data: _C, n: int):
        if ctype not in _CTYPES or not isinstance(data, _C):
            raise ValueError(f"emit-c: {name}: not an array of literals")
        size = _lit_int(max(n, 1), 1, 1 << 40)
        self.lines.append(f"static const {ctype} {_ident(name)}[{size}] = {{\n    {data}\n}};")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


# ---- the model ----------------------------------------------------------------------------------

def check_supported(stack: list[dict]) -> None:
    for i, L in enumerate(stack):
        if L["activation"] != "tanh" or (L["cell"] != "rnn"
                                         and L["recurrent_activation"] != "sigmoid"):
            raise ConfigError(f"layer {i}: emit-c supports activation tanh and recurrent "
                              f"activation sigmoid only, the bundle has {show(L['activation'])} "
                              f"/ {show(L['recurrent_activation'])}")
        if L["cell"] == "gru" and L["reset_after"] is not True:
            raise ConfigError(f"layer {i}: emit-c supports GRU reset_after=true only (Keras' "
                              f"default), the bundle has {show(L['reset_after'])}; re-train "
                              "with reset_after=true")


def _weights(bundle, stack) -> dict:
    from charwright.runtime.files.npz import Npz

    try:
        entry = bundle.find("npz")
    except BundleError:
        raise ConfigError(f"{bundle.root} has no weights.npz, which emit-c reads (a bundle "
                          "of int8 model files only): re-export the run with "
                          "`charwright export RUN_DIR -o BUNDLE` to emit C") from None
    npz = Npz(bundle.read(entry), str(bundle.path(entry)))
    shapes = weight_shapes(bundle.manifest["architecture"])
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


def _matrix(h: _Header, name: str, w_out_in: np.ndarray, int8: bool, errors: dict) -> tuple:
    """Emits W [d][n] (row-major, float32 or int8 + scales); returns (weight, scale) C names."""
    if int8:
        q, s, err = quantize_rows(w_out_in)
        errors[name] = err
        h.array("signed char", name, _ints(q), q.size)
        h.array("float", name + "_S", _floats(s), s.size)
        return _ident(name), _ident(name + "_S")
    h.array("float", name, _floats(w_out_in), w_out_in.size)
    return _ident(name), _ident("NULL")


_NEUTRAL = {"min_p": (None, 0), "typical_p": (None, 1), "repetition_penalty": (None, 1)}


def _defaults(bundle) -> dict:
    """The bundle's sampling_defaults for the C main: checked exactly as `generate` checks them
    (sampling.bundle_defaults), then limited to what C implements."""
    from charwright.runtime.sampling.config import bundle_defaults

    d = bundle_defaults(bundle.manifest, bundle.where)
    # a setting C does not implement is fine only at its own neutral value (the window only
    # matters with a penalty)
    penalty_off = d.get("repetition_penalty") in (None, 1)
    extra = {k for k, v in d.items() if k not in C_KNOBS
             and not (v in _NEUTRAL.get(k, ()) or (k == "repetition_window" and penalty_off))}
    if extra:
        raise ConfigError(f"the bundle's sampling_defaults use {', '.join(sorted(extra))}, which "
                          "the C runtime does not implement (it has temperature, top-k, top-p)")
    t = d.get("temperature", DEFAULT_TEMPERATURE)
    # top-k at or above the vocabulary keeps every id, as in Python: C holds it as an int
    top_k = min(d.get("top_k") or 0, bundle.vocab_size)
    top_p = 1.0 if d.get("top_p") is None else d["top_p"]
    return {"temperature": float(t), "top_k": top_k, "top_p": float(top_p)}


def model_header(bundle, precision: str, stack, w) -> tuple[str, dict]:
    """The text of model.h and the max quantization error per tensor (int8)."""
    from charwright.runtime.sampling.rng import exp_tables

    int8 = precision == "int8"
    V, vocab = bundle.vocab_size, bundle.vocab
    b0 = w["layer0.bias"]
    table = w["embedding"].astype(np.float64) @ w["layer0.kernel"].astype(np.float64)
    table0 = (table + (b0[0] if stack[0]["cell"] == "gru" else b0)).astype(np.float32)
    sha = hashlib.sha256((bundle.root / "manifest.json").read_bytes()).hexdigest()
    d = _defaults(bundle)
    h, errors = _Header(), {}
    h.fixed("/* Generated by charwright emit-c from the bundle CW_BUNDLE_NAME: do not edit. */")
    h.fixed("#ifndef CW_MODEL_H")
    h.fixed("#define CW_MODEL_H")
    h.define("CW_BUNDLE_NAME", _lit_string(bundle.root.resolve().name))
    h.define("CW_BUNDLE_SHA256", _lit_string(sha))  # sha256 of the bundle's manifest.json
    h.define("CW_PRECISION", _lit_string(precision))
    h.define("CW_INT8", _lit_int(int(int8), 0, 1))
    h.define("CW_WEIGHT", _C("signed char") if int8 else _C("float"))
    h.define("CW_VOCAB", _lit_int(V, 1, INT32_MAX))
    h.define("CW_LAYERS", _lit_int(len(stack), 1, INT32_MAX))
    h.define("CW_STATE", _lit_int(sum((2 if L["cell"] == "lstm" else 1) * L["units"]
                                      for L in stack), 1, INT32_MAX))
    h.define("CW_MAX_GATES", _lit_int(max(GATES[L["cell"]] * L["units"] for L in stack), 1,
                                      INT32_MAX))
    h.define("CW_MAX_IN", _lit_int(max(L["units"] for L in stack), 1, INT32_MAX))
    # the widest input of a layer after the first (1 when there is none): int8 scratch
    h.define("CW_MAX_LAYER_IN", _lit_int(max([L["units"] for L in stack[:-1]] or [1]), 1,
                                         INT32_MAX))
    h.define("CW_LAST_UNITS", _lit_int(stack[-1]["units"], 1, INT32_MAX))
    h.define("CW_EOS_ID", _lit_int(vocab.eos_id if vocab.eos else -1, -1, INT32_MAX))
    h.define("CW_DEFAULT_TEMPERATURE", _lit_double(d["temperature"]))
    h.define("CW_DEFAULT_TOP_K", _lit_int(d["top_k"], 0, INT32_MAX, "u"))
    h.define("CW_DEFAULT_TOP_P", _lit_double(d["top_p"]))
    # each entry's UTF-8 and its byte length: an entry may be U+0000, so C prints by length
    names = [_lit_string(c) for c in vocab.chars] + ([_ident("NULL")] if vocab.eos else [])
    sizes = [_lit_int(len(c.encode("utf-8")), 1, 4) for c in vocab.chars]
    h.table("static const char *const cw_vocab[CW_VOCAB]", _wrap(names))
    h.fixed("/* the byte length of each entry (0: the end-of-sequence id, never printed) */")
    h.array("unsigned char", "cw_vocab_len", _wrap(sizes + [_C("0")] * vocab.eos), V)
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
        null = _ident("NULL")
        if i > 0:
            wi, si = _matrix(h, f"CW_W_IN{i}", w[f"layer{i}.kernel"].T, int8, errors)
            h.array("float", f"CW_B_IN{i}", _floats(bias[0] if gru else bias), bias.shape[-1])
            bi, in_dim = _ident(f"CW_B_IN{i}"), stack[i - 1]["units"]
        else:
            wi, si, bi, in_dim = null, null, null, 0
        wr, sr = _matrix(h, f"CW_W_REC{i}", w[f"layer{i}.recurrent_kernel"].T, int8, errors)
        br = null
        if gru:
            h.array("float", f"CW_B_REC{i}", _floats(bias[1]), bias.shape[-1])
            br = _ident(f"CW_B_REC{i}")
        fields = [_ident(CELL_IDS[L["cell"]]), _lit_int(L["units"], 1, INT32_MAX),
                  _lit_int(in_dim, 0, INT32_MAX), wi, si, bi, wr, sr, br]
        rows.append(_C("{" + _join(fields) + "}"))
    h.define("CW_LAYER_TABLE", _join(rows))
    dw, ds = _matrix(h, "CW_DENSE_W", w["dense.kernel"].T, int8, errors)
    h.define("CW_DENSE_SCALE", ds)
    h.array("float", "CW_DENSE_B", _floats(w["dense.bias"]), V)
    h.fixed("#endif")
    return h.text(), errors


# ---- the probe and the golden vectors -----------------------------------------------------------

def check_header(bundle, precision: str) -> str:
    from charwright.runtime.verify.parity import TOLERANCES

    probe = bundle.probe()
    n = min(len(probe["tokens"]), MAX_PROBE)
    tol = TOLERANCES["float32" if precision == "float32" else "int8"]
    cases = golden_cases(bundle)
    h = _Header()
    h.fixed("/* Generated by charwright emit-c: the probe and the golden vectors. */")
    h.define("CW_PROBE_N", _lit_int(n, 1, MAX_PROBE))
    h.define("CW_TOL_MAX_ABS", _lit_double(tol.max_abs or 0.0))
    h.define("CW_TOL_MIN_TOP1", _lit_double(tol.min_top1 or 0.0))
    h.define("CW_TOL_MAX_BPC_REL", _lit_double(tol.max_bpc_rel or 0.0))
    h.array("int", "CW_PROBE_TOKENS", _ints(probe["tokens"][:n]), n)
    h.array("float", "CW_PROBE_LOGITS", _floats(probe["logits"][:n]), n * bundle.vocab_size)
    h.fixed("typedef struct { const char *name; int vocab; const float *logits; "
            "double temperature; int top_k; double top_p; int greedy; "
            "unsigned long long seed, row; long steps; const int *expected; } cw_golden;")
    rows = []
    for i, c in enumerate(cases):
        z, ids = _ident(f"CW_G{i}_Z"), _ident(f"CW_G{i}_IDS")
        h.array("float", z, _floats(c["logits"]), len(c["logits"]))
        h.array("int", ids, _ints(np.asarray(c["expected"], np.int64)), len(c["expected"]))
        fields = [_lit_string(c["name"]), _lit_int(len(c["logits"]), 1, MAX_GOLDEN_V), z,
                  _lit_double(c["temperature"]), _lit_int(c["top_k"], 0, MAX_GOLDEN_V),
                  _lit_double(c["top_p"]), _lit_int(c["greedy"], 0, 1),
                  _lit_int(c["seed"], 0, INT63_MAX, "u"), _lit_int(c["row"], 0, INT63_MAX, "u"),
                  _lit_int(c["steps"], 1, MAX_GOLDEN_STEPS), ids]
        rows.append(_C("{" + _join(fields) + "}"))
    h.define("CW_GOLDEN_N", _lit_int(len(rows), 1, INT32_MAX))
    h.define("CW_GOLDEN_MAX_V", _lit_int(max(len(c["logits"]) for c in cases), 1, MAX_GOLDEN_V))
    h.table("static const cw_golden cw_golden_cases[CW_GOLDEN_N]", _join(rows, ",\n    "))
    return h.text()


_HEX32 = re.compile(r"[0-9a-f]{8}")


def golden_cases(bundle) -> list[dict]:
    """The golden cases C replays (those that use only temperature, top-k, top-p, greedy), each
    checked by type and range: {name, logits float32 [V], temperature, top_k, top_p, greedy,
    seed, row, steps, expected}. From the bundle's golden.json when its manifest names one (the
    manifest's sha256 and size checked), else from this runtime's make_golden().

    Raises BundleError naming golden.json and the field for anything else."""
    from charwright.runtime.sampling.golden import FORMAT, VERSION, make_golden, read_golden
    from charwright.runtime.sampling.config import SamplingConfig

    if bundle.manifest.get("golden") is None:  # a bundle from before golden.json
        doc, where = make_golden(), "charwright's golden vectors"
    else:
        doc = read_golden(bundle)
        where = str(bundle.root / str(bundle.manifest["golden"]["path"]))

    def bad(field: str, problem: str, v):
        raise BundleError(f"{where}: {field} {problem}, got {show(v)}; the file is damaged or "
                          "was edited by hand")

    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("version") != VERSION:
        raise BundleError(f"{where}: not a {FORMAT} document of version {VERSION}")
    cases = doc.get("cases")
    if not isinstance(cases, list):
        bad("cases", "must be a list", cases)
    out = []
    for i, c in enumerate(cases):
        at = f"cases[{i}]"
        if not isinstance(c, dict):
            bad(at, "must be an object", c)
        s = c.get("sampling")
        if not isinstance(s, dict):
            bad(f"{at}.sampling", "must be an object", s)
        if not set(s) <= set(C_KNOBS):
            continue  # min-p, typical, repetition penalty: the C runtime has none
        name = c.get("name")
        if not isinstance(name, str) or not 0 < len(name) <= MAX_GOLDEN_NAME:
            bad(f"{at}.name", f"must be a string of 1 to {MAX_GOLDEN_NAME} characters", name)
        logits = c.get("logits")
        if (not isinstance(logits, list) or not 0 < len(logits) <= MAX_GOLDEN_V
                or not all(isinstance(x, str) and _HEX32.fullmatch(x) for x in logits)):
            bad(f"{at}.logits", f"must be a list of 1 to {MAX_GOLDEN_V} float32 bit patterns "
                "(8 lowercase hex digits each)", logits)
        for key, lo, hi in (("seed", 0, INT63_MAX), ("row", 0, INT63_MAX),
                            ("steps", 1, MAX_GOLDEN_STEPS)):
            v = c.get(key)
            if type(v) is not int or not lo <= v <= hi:
                bad(f"{at}.{key}", f"must be an integer in {lo}..{hi}", v)
        expected = c.get("expected")
        if (not isinstance(expected, list) or len(expected) != c["steps"]
                or not all(type(x) is int and 0 <= x < len(logits) for x in expected)):
            bad(f"{at}.expected", f"must be a list of {c['steps']} ids (steps) in "
                f"0..{len(logits) - 1}", expected)
        for key, v in s.items():
            number = not isinstance(v, bool) and isinstance(v, (int, float))
            ok = v is None or (type(v) is bool if key == "greedy" else
                               type(v) is int if key == "top_k" else number)
            if not ok:
                bad(f"{at}.sampling.{key}", "must be a JSON " + (
                    "boolean" if key == "greedy" else "integer" if key == "top_k" else "number"),
                    v)
        try:
            SamplingConfig(seed=c["seed"], **{k: v for k, v in s.items() if v is not None})
        except ConfigError as e:
            raise BundleError(f"{where}: {at}.sampling: {e}") from None
        z = np.array([int(x, 16) for x in logits], np.uint32).view(np.float32)
        out.append({"name": name, "logits": z,
                    "temperature": 1.0 if s.get("temperature") is None else float(s["temperature"]),
                    "top_k": min(s.get("top_k") or 0, len(logits)),
                    "top_p": 1.0 if s.get("top_p") is None else float(s["top_p"]),
                    "greedy": int(s.get("greedy") is True), "seed": c["seed"], "row": c["row"],
                    "steps": c["steps"], "expected": expected})
    if not out:
        raise BundleError(f"{where}: no case uses only temperature, top-k and top-p: nothing "
                          "for the C runtime's make check to replay")
    return out


# ---- the project --------------------------------------------------------------------------------

def emit(bundle_dir, out_dir, precision: str = "float32", on_note=None) -> dict:
    """Writes the C project for `bundle_dir` into `out_dir` (created; existing files of the
    same names are replaced, each atomically). Returns {"files": [...], "quantization_error":
    {...}}. Every value is checked before anything is written."""
    from charwright.runtime.files.atomic import write_bytes
    from charwright.runtime.bundle.reader import load_bundle

    if precision not in PRECISIONS:
        raise ConfigError(f"precision {show(precision)}: emit-c writes "
                          f"{' or '.join(PRECISIONS)}")
    bundle = load_bundle(bundle_dir, verify=False)
    stack = layer_specs(bundle.manifest["architecture"])
    check_supported(stack)
    w = _weights(bundle, stack)
    model_h, errors = model_header(bundle, precision, stack, w)
    check_h = check_header(bundle, precision)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    for name in COPIED:
        write_bytes(out / name, (C_DIR / name).read_bytes())
    write_bytes(out / "model.h", model_h.encode("ascii"))
    write_bytes(out / "check_data.h", check_h.encode("ascii"))
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
