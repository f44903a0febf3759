"""manifest.json: read it within bounds and check every value the runtime uses, before use.

A manifest comes with a bundle from elsewhere; any value it holds must end in a one-line
BundleError naming the field, never in a TypeError three calls later. Types are exact: sizes are
ints (not Infinity, not "512", not true), flags are real booleans ("false" is not false),
checksums are 64 hex characters (a null sha256 does not switch the check off), names are
strings. The facts that must agree do agree: the vocabulary's size and the architecture's, the
state size and the architecture (layers x units, x2 for LSTM) and the state layout.

(Just over 300 lines, one idea: the manifest's typed checks, field by field; splitting them by
section would scatter one format's rules over several files.)

(About 310 lines, one idea: every check of manifest.json before any value is used; Fields
and the checks share one error voice, which a split would only pass around.)
"""

from __future__ import annotations

import json
import re
import reprlib
from pathlib import Path

from charwright.runtime.bundle.architecture import ACTIVATIONS, STATE_PARTS
from charwright.runtime.errors import BundleError
from charwright.runtime.files.safefile import read_bytes, resolve_inside

BUNDLE_FORMAT = "charwright-bundle"
BUNDLE_VERSION = "1.0"  # readers accept any 1.x; a new major version is refused
PRECISIONS = ("float32", "float16", "int8-dynamic", "int8", "int16x8")
MIXED = "mixed"  # architecture.cell of a stack whose layers differ in kind (stack[] says which)
MAX_MANIFEST_BYTES = 16 << 20  # the demo's is 6 KB; a 100k-character vocabulary is ~1 MB
MAX_PROBE_TOKENS = 10_000_000
_SHA256 = re.compile(r"[0-9a-f]{64}")
_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = 40


def show(value) -> str:
    """A short repr of a manifest value for an error message."""
    return _repr.repr(value)


def read_manifest(root: str | Path) -> dict:
    """The parsed manifest.json of bundle directory `root`, format and major version checked.

    Raises BundleError: not a directory, a training run directory, a missing, linked-out, non-
    regular or oversized manifest, malformed or too deeply nested JSON, unknown format/version.
    """
    root = Path(root)
    path = root / "manifest.json"
    if not root.is_dir():
        raise BundleError(f"{root}: bundle directory not found")
    if not path.exists() and not path.is_symlink():
        if (root / "run.json").is_file():
            raise BundleError(f"{root} is a training run directory, not a bundle; run "
                              f"`charwright export {root} -o BUNDLE_DIR` first")
        raise BundleError(f"{path}: missing; {root} is not a charwright bundle")
    data = read_bytes(resolve_inside(root, path), MAX_MANIFEST_BYTES)
    try:
        manifest = json.loads(data.decode("utf-8"))
    except RecursionError:
        raise BundleError(f"{path}: malformed JSON (nested too deeply)") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise BundleError(f"{path}: malformed JSON ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{path}: not a {BUNDLE_FORMAT} manifest")
    version = manifest.get("format_version")
    if not isinstance(version, str) or version.split(".")[0] != BUNDLE_VERSION.split(".")[0]:
        raise BundleError(
            f"{path}: format version {show(version)} is not supported (this charwright reads "
            f"{BUNDLE_VERSION.split('.')[0]}.x); upgrade charwright"
        )
    check_left_out(manifest, str(path))
    return manifest


class Fields:
    """Typed access to one JSON object of the manifest; every failure names `where`.`key`."""

    def __init__(self, where: str, prefix: str, d):
        self.where, self.prefix = where, prefix
        if not isinstance(d, dict):
            self.fail(f"must be an object, got {show(d)}", key=None)
        self.d = d

    def fail(self, problem: str, key: str | None):
        name = self.prefix if key is None else f"{self.prefix}.{key}" if self.prefix else key
        raise BundleError(f"{self.where}: {name or 'the manifest'} {problem}; the manifest is "
                          "damaged or was edited by hand")

    def get(self, key, default=...):
        if key not in self.d:
            if default is ...:
                self.fail("is missing", key)
            return default
        return self.d[key]

    def int(self, key, minimum=0, default=..., maximum=None) -> int:
        v = self.get(key, default)
        if v is default and default is not ...:
            return v
        if type(v) is not int or v < minimum or (maximum is not None and v > maximum):
            bound = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum}"
            self.fail(f"must be an integer {bound}, got {show(v)}", key)
        return v

    def str(self, key, default=..., choices=None) -> str:
        v = self.get(key, default)
        if v is default and default is not ...:
            return v
        if not isinstance(v, str) or (choices is not None and v not in choices):
            want = f"one of {', '.join(choices)}" if choices is not None else "a string"
            self.fail(f"must be {want}, got {show(v)}", key)
        return v

    def bool(self, key, default=...) -> bool:
        v = self.get(key, default)
        if type(v) is not bool:
            self.fail(f"must be true or false (a JSON boolean), got {show(v)}", key)
        return v

    def sha256(self, key) -> str:
        v = self.get(key)
        if not isinstance(v, str) or not _SHA256.fullmatch(v):
            self.fail(f"must be 64 lowercase hex characters, got {show(v)}", key)
        return v

    def names(self, key) -> dict:
        """A {logical name: tensor name} map of strings (files[].inputs / outputs)."""
        v = self.get(key, {})
        if not isinstance(v, dict) or not all(isinstance(k, str) and isinstance(x, str)
                                              for k, x in v.items()):
            self.fail(f"must map names to tensor names (an object of strings), got {show(v)}", key)
        return v

    def obj(self, key, default=...) -> "Fields":
        return Fields(self.where, f"{self.prefix}.{key}" if self.prefix else key,
                      self.get(key, default))

    def list(self, key, default=...) -> list:
        v = self.get(key, default)
        if not isinstance(v, list):
            self.fail(f"must be a list, got {show(v)}", key)
        return v


MAX_LAYERS, MAX_UNITS, MAX_VOCAB = 64, 65_536, 1_114_112  # the last: every Unicode code point
INITIAL_STATES = ("zeros",)  # state.initial: what every sequence starts from


def check_model_facts(m: dict, where: str) -> None:
    """Vocabulary, architecture and state: typed, and in agreement with each other."""
    top = Fields(where, "", m)
    vocab = top.obj("vocab")
    chars = vocab.list("chars")
    if not all(isinstance(c, str) for c in chars):
        vocab.fail("must be a list of strings", "chars")
    eos = vocab.bool("eos", default=False)
    arch = top.obj("architecture")
    cell = arch.str("cell", choices=(*STATE_PARTS, MIXED))
    # bounds far above any model charwright trains (8 layers, 8,192 units), so that absurd
    # values are refused before anything is sized from them
    layers = arch.int("layers", 1, maximum=MAX_LAYERS)
    units = arch.int("units", 1, maximum=MAX_UNITS)
    stack = arch.get("stack", None)
    if stack is None:
        if cell == MIXED:
            arch.fail("is 'mixed' but there is no stack saying what each layer is", "cell")
        want = layers * STATE_PARTS[cell] * units
        described = f"a {cell.upper()} of {layers} x {units}"
    else:
        want = check_stack(arch, stack, cell, layers, units)
        described = f"its stack of {layers} layers"
    V = arch.int("vocab_size", 1, maximum=MAX_VOCAB)
    if arch.get("embedding_dim", None) is not None:
        arch.int("embedding_dim", 0)
    if len(chars) + eos != V:
        vocab.fail(f"holds {len(chars) + eos} ids ({len(chars)} characters"
                   f"{' + end-of-sequence' if eos else ''}) but architecture.vocab_size is {V}",
                   "chars")
    state = top.obj("state")
    size = state.int("size", 1)
    state.str("initial", default="zeros", choices=INITIAL_STATES)  # older manifests: zeros
    if size != want:
        state.fail(f"is {size}, but {described} carries {want}", "size")
    layout = state.list("layout")
    total = 0
    for i, part in enumerate(layout):
        p = Fields(where, f"state.layout[{i}]", part)
        p.str("name")
        total += p.int("size", 1)
    if total != size:
        state.fail(f"sizes add up to {total}, not state.size {size}", "layout")


def check_stack(arch: "Fields", stack, cell: str, layers: int, units: int) -> int:
    """architecture.stack: one typed spec per layer, agreeing with cell, layers and units (the
    largest layer); returns the state size it carries."""
    if not isinstance(stack, list) or len(stack) != layers:
        arch.fail(f"must be a list of {layers} layer specs (architecture.layers), got "
                  f"{show(stack)}", "stack")
    size, kinds = 0, set()
    for i, d in enumerate(stack):
        f = Fields(arch.where, f"{arch.prefix}.stack[{i}]", d)
        kind = f.str("cell", choices=tuple(STATE_PARTS))
        kinds.add(kind)
        h = f.int("units", 1, maximum=MAX_UNITS)
        f.str("activation", default="tanh", choices=ACTIVATIONS)
        if kind != "rnn":
            f.str("recurrent_activation", default="sigmoid", choices=ACTIVATIONS)
        if kind == "gru":
            f.bool("reset_after", default=True)
        size += STATE_PARTS[kind] * h
    if max(int(d["units"]) for d in stack) != units:
        arch.fail(f"is {units}, but the stack's largest layer has "
                  f"{max(int(d['units']) for d in stack)}", "units")
    if cell != (next(iter(kinds)) if len(kinds) == 1 else MIXED):
        arch.fail(f"is {show(cell)}, but the stack holds {', '.join(sorted(kinds))} layers",
                  "cell")
    return size


def check_file_entry(d, i: int, where: str, formats) -> dict:
    """files[i], typed; returns the fields FileEntry takes."""
    f = Fields(where, f"files[{i}]", d)
    check_runtime_facts(f)
    return dict(path=f.str("path"), format=f.str("format", choices=tuple(formats)),
                precision=f.str("precision", choices=PRECISIONS), sha256=f.sha256("sha256"),
                bytes=f.int("bytes", 0), inputs=f.names("inputs"), outputs=f.names("outputs"),
                ops=tuple(f.list("ops", [])),
                # measured at export (runtime/verify/invariance.py); older manifests: false
                batch_invariant=f.bool("batch_invariant", default=False),
                # every op exact on every conforming runtime (export/formats/onnx_exact.py)
                portable=f.bool("portable", default=False))


def _str_or_null(f: "Fields", key: str) -> None:
    v = f.get(key, None)
    if v is not None and not isinstance(v, str):
        f.fail(f"must be a string or null, got {show(v)}", key)


def check_runtime_facts(f: "Fields") -> None:
    """files[].min_runtime (the oldest runtime that loads the file) and files[].micro (whether
    TensorFlow Lite Micro runs it, and in how large an arena): typed when present."""
    if f.get("min_runtime", None) is not None:
        mr = f.obj("min_runtime")
        mr.str("runtime")
        _str_or_null(mr, "version")
        for key in ("opset", "ir_version"):
            if mr.get(key, None) is not None:
                mr.int(key, 1)
    if f.get("micro", None) is not None:
        mc = f.obj("micro")
        runs = mc.get("runs", None)
        if runs is not None and type(runs) is not bool:
            mc.fail(f"must be true, false or null, got {show(runs)}", "runs")
        _str_or_null(mc, "reason")
        _str_or_null(mc, "runtime")
        if mc.get("arena_bytes", None) is not None:
            mc.int("arena_bytes", 1, maximum=1 << 40)
        elif runs is True:
            mc.fail("is missing: a file that runs under TFLite Micro has its arena size",
                    "arena_bytes")


def check_probe_entry(m: dict, where: str) -> dict | None:
    """The manifest's probe entry (path, sha256, bytes, tokens), typed; None if absent."""
    if m.get("probe") is None:
        return None
    p = Fields(where, "probe", m["probe"])
    return dict(path=p.str("path"), sha256=p.sha256("sha256"), bytes=p.int("bytes", 0),
                tokens=p.int("tokens", 2, default=None))


def check_left_out(m: dict, where: str) -> list:
    """left_out[]: the files export left out because they did not hold parity (absent in
    older manifests and when nothing was left out). Each entry is typed (path, format,
    precision, reason, figures: the failing parity rows) and names no file the bundle holds;
    returns the entries."""
    top = Fields(where, "", m)
    entries = top.list("left_out", default=[])
    held = {f.get("path") for f in m.get("files") or () if isinstance(f, dict)}
    for i, d in enumerate(entries):
        f = Fields(where, f"left_out[{i}]", d)
        path = f.str("path")
        if not path:
            f.fail("must be a non-empty string (the left-out file's name)", "path")
        if path in held:
            f.fail(f"names {show(path)}, a file the bundle holds (files[]); a left-out file is "
                   "not in the bundle", "path")
        f.str("format")
        f.str("precision", choices=PRECISIONS)
        f.str("reason")
        if not all(isinstance(r, dict) for r in f.list("figures", default=[])):
            f.fail("must be a list of parity rows (objects)", "figures")
    return entries


def failed_parity(m: dict) -> set:
    """Paths of the files whose parity, recorded at export, failed (verdict FAIL; a file that
    was "not checked" there has not failed)."""
    out = set()
    parity = m.get("parity")
    for p in parity if isinstance(parity, list) else ():
        if not isinstance(p, dict) or not isinstance(p.get("file"), str):
            continue
        verdict = p.get("verdict")
        if verdict == "FAIL" or (verdict is None and p.get("passed") is False):
            out.add(p["file"])
    return out
