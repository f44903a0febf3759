"""Reading a bundle: manifest.json, checksums, safe paths. No TensorFlow.

    BUNDLE_DIR/manifest.json   the truth: format + version, vocabulary, architecture, state
                               layout, files[] (path, format, precision, sha256, bytes, inputs,
                               outputs, ops), training summary, parity figures
    BUNDLE_DIR/probe.npz       reference tokens + logits (allow_pickle=False)
    BUNDLE_DIR/model.*.onnx|tflite, weights.npz

Every problem is a BundleError naming the file: unknown major version, malformed JSON, missing
file, size or sha256 mismatch, an absolute path or one with '..'.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from .errors import BundleError, ConfigError
from .vocab import Vocabulary

BUNDLE_FORMAT = "charwright-bundle"
BUNDLE_VERSION = "1.0"  # readers accept any 1.x; a new major version is refused
FORMATS = ("onnx", "tflite", "npz")
PRECISIONS = ("float32", "float16", "int8-dynamic", "int8")
BACKEND_FORMATS = {"onnx": "onnx", "litert": "tflite", "numpy": "npz"}
# which precision a backend uses when none is asked for: the fastest that passed parity
DEFAULT_PRECISION = {
    "onnx": ("int8-dynamic", "int8", "float32"),
    "tflite": ("int8-dynamic", "int8", "float32", "float16"),
    "npz": ("float32",),
}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def safe_relpath(root: Path, rel: str, what: str) -> Path:
    """root/rel, refusing absolute paths, '..' and anything that leaves root."""
    if not isinstance(rel, str) or not rel:
        raise BundleError(f"{what}: a file entry has no path")
    p = PurePosixPath(rel)
    if p.is_absolute() or rel.startswith(("/", "\\")) or ":" in p.parts[0]:
        raise BundleError(f"{what}: absolute path {rel!r} is not allowed in a bundle")
    if ".." in p.parts or "\\" in rel:
        raise BundleError(f"{what}: path {rel!r} leaves the bundle directory")
    return root.joinpath(*p.parts)


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
    extra: dict = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.format}:{self.precision}"


@dataclass
class Bundle:
    """A verified bundle: its directory, manifest, vocabulary and file entries."""

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

    def path(self, entry: FileEntry) -> Path:
        return safe_relpath(self.root, entry.path, str(self.root / "manifest.json"))

    def find(self, fmt: str, precision: str | None = None) -> FileEntry:
        """The file of `fmt` ("onnx", "tflite", "npz") and `precision` (default: see above)."""
        have = [f for f in self.files if f.format == fmt]
        if not have:
            kinds = ", ".join(sorted({f.format for f in self.files})) or "none"
            raise BundleError(f"{self.root}: no {fmt} file in this bundle (it has: {kinds})")
        if precision is None:
            for p in DEFAULT_PRECISION[fmt]:
                for f in have:
                    if f.precision == p:
                        return f
            return have[0]
        for f in have:
            if f.precision == precision:
                return f
        got = ", ".join(f.precision for f in have)
        raise BundleError(f"{self.root}: no {fmt} file in precision {precision!r} (have: {got})")

    def probe(self) -> dict:
        """The reference probe's arrays (tokens, logits, prompt, greedy, device)."""
        entry = self.manifest.get("probe")
        if not entry:
            raise BundleError(f"{self.root}: this bundle carries no probe")
        path = safe_relpath(self.root, entry["path"], str(self.root / "manifest.json"))
        verify_file(path, entry.get("bytes"), entry.get("sha256"))
        try:
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError) as e:
            raise BundleError(f"{path}: cannot read the probe: {e}") from None


def verify_file(path: Path, size, digest) -> None:
    """Raises BundleError unless `path` exists with this size and sha256 (None: not checked)."""
    if not path.is_file():
        raise BundleError(f"{path}: file listed in the manifest is missing")
    if size is not None and path.stat().st_size != int(size):
        raise BundleError(
            f"{path}: size {path.stat().st_size} bytes, manifest says {size}; the file is "
            "damaged or was replaced"
        )
    if digest is not None and sha256_file(path) != digest:
        raise BundleError(f"{path}: sha256 mismatch; the file is damaged or was modified")


def read_manifest(root: str | Path) -> dict:
    root = Path(root)
    path = root / "manifest.json"
    if not root.is_dir():
        raise BundleError(f"{root}: bundle directory not found")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError(f"{path}: missing; {root} is not a charwright bundle") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise BundleError(f"{path}: malformed JSON ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{path}: not a {BUNDLE_FORMAT} manifest")
    version = str(manifest.get("format_version", ""))
    if version.split(".")[0] != BUNDLE_VERSION.split(".")[0]:
        raise BundleError(
            f"{path}: format version {version!r} is not supported (this charwright reads "
            f"{BUNDLE_VERSION.split('.')[0]}.x); upgrade charwright"
        )
    return manifest


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
    try:
        vocab = Vocabulary.from_dict(manifest["vocab"], where)
        state_size = int(manifest["state"]["size"])
        raw_files = manifest["files"]
    except (KeyError, TypeError, ValueError, ConfigError) as e:
        raise BundleError(f"{where}: malformed manifest ({e})") from None
    if state_size < 1 or not isinstance(raw_files, list):
        raise BundleError(f"{where}: malformed manifest (state size or files)")
    files = []
    for d in raw_files:
        try:
            entry = FileEntry(
                path=d["path"], format=d["format"], precision=d["precision"],
                sha256=d["sha256"], bytes=int(d["bytes"]), inputs=d.get("inputs", {}),
                outputs=d.get("outputs", {}), ops=tuple(d.get("ops", ())),
                extra={k: v for k, v in d.items() if k not in FileEntry.__dataclass_fields__},
            )
        except (KeyError, TypeError, ValueError) as e:
            raise BundleError(f"{where}: malformed file entry {d!r} ({e})") from None
        if entry.format not in FORMATS:
            raise BundleError(f"{where}: unknown file format {entry.format!r} for {entry.path}")
        safe_relpath(root, entry.path, where)
        files.append(entry)
    bundle = Bundle(root=root, manifest=manifest, vocab=vocab, files=files)
    if verify:
        for entry in files:
            verify_file(bundle.path(entry), entry.bytes, entry.sha256)
    return bundle
