"""Reading a bundle: manifest.json, checksums, safe paths. No TensorFlow.

    BUNDLE_DIR/manifest.json   the truth: format + version, vocabulary, architecture, state
                               layout, files[] (path, format, precision, sha256, bytes, inputs,
                               outputs, ops), training summary, parity figures
    BUNDLE_DIR/probe.npz       reference tokens + logits (allow_pickle=False)
    BUNDLE_DIR/model.*.onnx|tflite, weights.npz

Every problem is a BundleError naming the file: unknown major version, malformed JSON or a
manifest value of the wrong type (runtime/bundle/manifest.py), missing file, size or sha256 mismatch,
an absolute path, one with '..', one that links outside the bundle or is not a regular file
(runtime/files/safefile.py), a probe whose arrays do not fit the manifest (checked from the npz
headers before loading, runtime/files/npz.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from charwright.runtime.bundle.architecture import weight_shapes
from charwright.runtime.bundle.formats import DEFAULT_PRECISION, FORMATS
from charwright.runtime.errors import BundleError, ConfigError
from charwright.runtime.bundle.manifest import (BUNDLE_FORMAT, BUNDLE_VERSION, MAX_PROBE_TOKENS, PRECISIONS,  # noqa: F401
                       check_file_entry, check_model_facts, check_probe_entry, failed_parity,
                       read_manifest)
from charwright.runtime.files.npz import Npz
from charwright.runtime.files.safefile import check_file, read_checked, resolve_inside, safe_relpath
from charwright.runtime.vocab import Vocabulary

MAX_PROBE_ARRAY = 1_000_000  # prompt and greedy ids in the probe


@dataclass(frozen=True)
class FileEntry:
    """One model file of a bundle (see the manifest's files[])."""

    path: str
    format: str
    precision: str
    sha256: str
    bytes: int
    inputs: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)
    ops: tuple = ()
    batch_invariant: bool = False  # a row's logits the same bit for bit in any batch (measured)
    portable: bool = False  # only ops every runtime computes bit for bit (the same text anywhere)
    extra: dict = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.format}:{self.precision}"


@dataclass
class Bundle:
    """A validated bundle: its directory, manifest, vocabulary and file entries."""

    root: Path
    manifest: dict
    vocab: Vocabulary
    files: list[FileEntry]

    @property
    def state_size(self) -> int:
        return int(self.manifest["state"]["size"])

    @property
    def vocab_size(self) -> int:
        return self.vocab.size

    @property
    def where(self) -> str:
        return str(self.root / "manifest.json")

    def read(self, entry: FileEntry) -> bytes:
        """The file's bytes, checked against the manifest's size and sha256 (read once)."""
        return read_checked(self.path(entry), entry.bytes, entry.sha256)

    def path(self, entry: FileEntry) -> Path:
        """The entry's file with symlinks resolved; BundleError if it leaves the bundle or is
        not a regular file."""
        return resolve_inside(self.root, safe_relpath(self.root, entry.path, self.where))

    def find(self, fmt: str, precision: str | None = None) -> FileEntry:
        """The file of `fmt` ("onnx", "tflite", "npz") and `precision`.

        Without a precision: among the files whose parity, as recorded at export, did not fail,
        a batch-invariant one (files[].batch_invariant: a seed then fixes the text in any
        batch) before one that is not, then the first in the format's speed order
        (formats.DEFAULT_PRECISION). An explicit precision is returned whatever its parity."""
        have = [f for f in self.files if f.format == fmt]
        if not have:
            kinds = ", ".join(sorted({f.format for f in self.files})) or "none"
            raise BundleError(f"{self.root}: no {fmt} file in this bundle (it has: {kinds})")
        if precision is None:
            failed = failed_parity(self.manifest)
            order = {p: i for i, p in enumerate(DEFAULT_PRECISION[fmt])}
            good = sorted((f for f in have if f.path not in failed),
                          key=lambda f: (not f.batch_invariant,
                                         order.get(f.precision, len(order))))
            if not good:
                raise BundleError(
                    f"{self.root}: every {fmt} file failed parity at export "
                    f"({', '.join(f.path for f in have)}); pass a precision to use one anyway")
            return good[0]
        for f in have:
            if f.precision == precision:
                return f
        got = ", ".join(f.precision for f in have)
        raise BundleError(f"{self.root}: no {fmt} file in precision {precision!r} (have: {got})")

    def weights(self, entry: FileEntry) -> dict:
        """weights.npz's arrays (the numpy backend's file, emit-c's input): name -> float array,
        each checked from its header against architecture.weight_shapes before it is loaded."""
        npz = Npz(self.read(entry), str(self.path(entry)))
        shapes = weight_shapes(self.manifest["architecture"])
        for name, shape in shapes.items():
            npz.expect(name, shape, "f")
        return {name: npz.load(name) for name in shapes}

    def probe(self) -> dict:
        """The reference probe's arrays: tokens int [N], logits float32 [N, V], prompt and
        greedy int [n], device (text, optional). Shapes and dtypes are checked from the npz
        headers against the manifest before anything is loaded."""
        entry = check_probe_entry(self.manifest, self.where)
        if entry is None:
            raise BundleError(f"{self.root}: this bundle carries no probe")
        path = resolve_inside(self.root, safe_relpath(self.root, entry["path"], self.where))
        npz = Npz(read_checked(path, entry["bytes"], entry["sha256"]), str(path))
        n = entry["tokens"]
        if n is None:  # older manifests: bounded by the header itself
            npz.expect("tokens", (None,), "iu")
            n = npz.shape("tokens")[0]
            if n > MAX_PROBE_TOKENS:
                raise BundleError(f"{path}: {n:,} probe tokens; at most {MAX_PROBE_TOKENS:,} "
                                  "are read")
        npz.expect("tokens", (n,), "iu")
        npz.expect("logits", (n, self.vocab_size), "f")
        for name in ("prompt", "greedy"):
            npz.expect(name, (None,), "iu")
            if not 0 < npz.shape(name)[0] <= MAX_PROBE_ARRAY:
                raise BundleError(f"{path}: array {name!r} holds {npz.shape(name)[0]:,} ids; "
                                  f"1 to {MAX_PROBE_ARRAY:,} are read")
        out = {k: npz.load(k) for k in ("tokens", "logits", "prompt", "greedy")}
        for k in ("tokens", "prompt", "greedy"):
            a = out[k]
            if len(a) and (a.min() < 0 or a.max() >= self.vocab_size):
                raise BundleError(f"{path}: array {k!r} holds ids outside 0..{self.vocab_size - 1}")
            out[k] = a.astype(np.int32)
        out["logits"] = out["logits"].astype(np.float32, copy=False)
        device = npz.arrays.get("device")
        if device and device[0] == () and device[1].kind == "U" and device[1].itemsize <= 4096:
            npz.expect("device", (), "U")
            out["device"] = npz.load("device")
        return out


def load_bundle(root: str | Path, verify: bool = True) -> Bundle:
    """Reads and validates a bundle.

    Args:
        root: the bundle directory.
        verify: check size and sha256 of every model file.
    Raises:
        BundleError: see the module docstring.
    """
    root = Path(root)
    manifest = read_manifest(root)
    where = str(root / "manifest.json")
    check_model_facts(manifest, where)
    try:
        vocab = Vocabulary.from_dict(manifest["vocab"], where)
    except ConfigError as e:
        raise BundleError(f"malformed manifest: {e}") from None
    raw_files = manifest.get("files")
    if not isinstance(raw_files, list) or not raw_files:
        raise BundleError(f"{where}: files must be a non-empty list of model files, got "
                          f"{'nothing' if not raw_files else type(raw_files).__name__}; the "
                          "bundle holds no model to run or verify")
    files = []
    for i, d in enumerate(raw_files):
        fields = check_file_entry(d, i, where, FORMATS)
        entry = FileEntry(**fields, extra={k: v for k, v in d.items()
                                           if k not in FileEntry.__dataclass_fields__})
        safe_relpath(root, entry.path, where)
        files.append(entry)
    check_probe_entry(manifest, where)
    bundle = Bundle(root=root, manifest=manifest, vocab=vocab, files=files)
    if verify:
        for entry in files:
            check_file(bundle.path(entry), entry.bytes, entry.sha256)
    return bundle
