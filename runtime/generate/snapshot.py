"""The snapshot file of a Session (generate/session.py): Snapshot (load, save, check), and the
checks a snapshot file passes before anything in it is used.

    snap = session.snapshot(); snap.save("romeo.npz")
    snap = Snapshot.load("romeo.npz", model)      BundleError naming the file when it is not one
    file_of("romeo.npz")                          (format, precision) before the model is loaded
    check_target("romeo.npz")                     ConfigError unless save() may write there

The snapshot file (save/load) is a small npz, version 1, read without pickle and checked like a
bundle file (size bound, zip members, every array's shape and dtype, ids in the vocabulary):

    meta      text, JSON: format "charwright-snapshot", version 1, manifest_sha256 (of the
              bundle's manifest, canonical JSON), file (format:precision) and file_sha256 (the
              model file the state came from), position, seed, row, coins, sampling (the last
              config's fields or null), extra (sampler row state: "dfa"), stop (null, or
              the held text: stops, kmp, held, go_on; _check_stop)
    state     float32 [state_size]
    logits    float32 [vocab] (absent before the first feed)
    history   int32 [<= 65536], the last ids fed, oldest first

A snapshot of another bundle or another file is refused with one line (BundleError): states of
two files differ in their last bits, and an int8 file's state is not a float file's.

(About 310 lines, one idea: the file and the checks it passes before anything in it is used.)
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import zipfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from charwright.runtime.errors import BundleError, ConfigError
from charwright.runtime.files.atomic import write_bytes
from charwright.runtime.files.npz import Npz
from charwright.runtime.files.safefile import read_bytes
from charwright.runtime.sampling.config import SEED_MAX, WINDOW_MAX, SamplingConfig

FORMAT = "charwright-snapshot"
VERSION = 1
MAX_HISTORY = WINDOW_MAX
MAX_META_CHARS = 1 << 16


def manifest_sha256(bundle) -> str:
    """sha256 of the bundle's manifest as canonical JSON (sorted keys, compact): what ties a
    snapshot to its bundle."""
    text = json.dumps(bundle.manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Snapshot:
    """A session at one moment (see the module docstring); arrays are the snapshot's own."""

    manifest_sha256: str
    file: str  # the model file's "format:precision"
    file_sha256: str
    state: np.ndarray  # float32 [S]
    logits: np.ndarray | None  # float32 [V]; None before the first feed
    history: np.ndarray  # int32 [<= MAX_HISTORY]
    position: int
    seed: int | None
    row: int
    coins: int
    sampling: dict | None = None
    extra: dict = field(default_factory=dict)
    stop: dict | None = None  # text held at a length limit (Session.held): see _check_stop

    def save(self, path) -> None:
        """Writes the snapshot to `path` atomically. Refuses (ConfigError) to replace anything
        but a snapshot file: a directory, a link, a device, or another file."""
        _check_target(path)
        path = Path(path)
        meta = {"format": FORMAT, "version": VERSION, "manifest_sha256": self.manifest_sha256,
                "file": self.file, "file_sha256": self.file_sha256, "position": self.position,
                "seed": self.seed, "row": self.row, "coins": self.coins,
                "sampling": self.sampling, "extra": self.extra, "stop": self.stop}
        try:
            text = json.dumps(meta, sort_keys=True)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"this session's state cannot be saved ({e})") from None
        arrays = {"meta": np.array(text),
                  "state": np.asarray(self.state, np.float32),
                  "history": np.asarray(self.history, np.int32)}
        if self.logits is not None:
            arrays["logits"] = np.asarray(self.logits, np.float32)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        try:
            write_bytes(path, buf.getvalue())
        except OSError as e:
            raise ConfigError(f"{path}: cannot write the snapshot ({e.strerror or e})") from None

    @classmethod
    def load(cls, path, model) -> Snapshot:
        """Reads a snapshot file for `model` (its bundle and file). Raises BundleError, one
        line naming the file: not a snapshot, damaged, another version, another bundle or
        file, bad shapes, dtypes or values."""
        path = Path(path)
        S, V = model.bundle.state_size, model.vocab.size
        npz, meta = _read(path, 4 * (S + V + MAX_HISTORY) + 4 * MAX_META_CHARS + (1 << 16))
        _check_origin(path, meta, model)
        npz.expect("state", (S,), "f")
        npz.expect("history", (None,), "iu")
        n = npz.shape("history")[0]
        if n > MAX_HISTORY:
            raise BundleError(f"{path}: a history of {n:,} ids; at most {MAX_HISTORY:,}")
        has_logits = npz.expect("logits", (V,), "f", optional=True)
        state = npz.load("state").astype(np.float32)
        logits = npz.load("logits").astype(np.float32) if has_logits else None
        history = npz.load("history")
        if n and (history.min() < 0 or history.max() >= V):
            raise BundleError(f"{path}: the history holds ids outside 0..{V - 1}")
        snap = cls(state=state, logits=logits, history=history.astype(np.int32),
                   **_check_meta(path, meta, n, has_logits))
        snap.check(model, str(path))
        return snap

    def check(self, model, where: str = "Session.restore") -> None:
        """BundleError (one line starting with `where`) unless this snapshot continues `model`:
        its bundle and file, the state's and logits' shapes, dtypes and finiteness, history ids
        in the vocabulary, position, seed, row and coins integers that agree with the history
        and logits, a valid sampling configuration, a sampler state of integers. Snapshot.load
        and Session.restore both check with it."""
        _check_origin(where, {"manifest_sha256": self.manifest_sha256, "file": self.file,
                              "file_sha256": self.file_sha256}, model)
        S, V = model.bundle.state_size, model.vocab.size
        bad = f"{where}: a damaged snapshot"
        state, logits, history = self.state, self.logits, self.history
        if not (isinstance(state, np.ndarray) and state.shape == (S,) and state.dtype.kind == "f"):
            raise BundleError(f"{bad} (its state must be a float array of {S} values)")
        if logits is not None and not (isinstance(logits, np.ndarray) and logits.shape == (V,)
                                       and logits.dtype.kind == "f"):
            raise BundleError(f"{bad} (its logits must be a float array of {V} values)")
        if not np.isfinite(state).all() or (logits is not None and not np.isfinite(logits).all()):
            raise BundleError(f"{where}: the state or logits hold NaN or infinity")
        if not (isinstance(history, np.ndarray) and history.ndim == 1
                and history.dtype.kind in "iu" and len(history) <= MAX_HISTORY):
            raise BundleError(f"{bad} (its history must be at most {MAX_HISTORY:,} integer ids)")
        if len(history) and (history.min() < 0 or history.max() >= V):
            raise BundleError(f"{where}: the history holds ids outside 0..{V - 1}")
        _check_meta(where, {"manifest_sha256": self.manifest_sha256, "file": self.file,
                            "file_sha256": self.file_sha256, "position": self.position,
                            "seed": self.seed, "row": self.row, "coins": self.coins,
                            "sampling": self.sampling, "extra": self.extra,
                            "stop": self.stop},
                    len(history), logits is not None)


def _read(path: Path, limit: int) -> tuple[Npz, dict]:
    """The checked archive and its meta (format and version checked)."""
    try:
        mode = os.stat(path).st_mode
        if stat.S_ISDIR(mode):
            raise BundleError(f"{path}: a directory, not a snapshot file")
        if not stat.S_ISREG(mode):
            raise BundleError(f"{path}: not a regular file (a FIFO or a device); a snapshot is "
                              "a file that --save-state or Session.save wrote")
    except FileNotFoundError:
        raise BundleError(f"{path}: no such snapshot file") from None
    except OSError as e:
        raise BundleError(f"{path}: cannot read ({e.strerror or e})") from None
    npz = Npz(read_bytes(path, limit), str(path))
    where = f"{path}: not a {FORMAT} file"
    if "meta" not in npz.arrays:
        raise BundleError(where)
    shape, dtype = npz.arrays["meta"]
    if shape != () or dtype.kind != "U" or dtype.itemsize > 4 * MAX_META_CHARS:
        raise BundleError(f"{where} (its meta is not one short text)")
    npz.expect("meta", (), "U")
    try:
        meta = json.loads(str(npz.load("meta")))
    except (ValueError, RecursionError):  # RecursionError: JSON nested thousands deep
        raise BundleError(f"{where} (its meta is not JSON)") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise BundleError(where)
    version = meta.get("version")
    if type(version) is not int or version != VERSION:  # true == 1 in Python: not a version
        raise BundleError(f"{path}: snapshot version {version!r}; this charwright "
                          f"reads version {VERSION}")
    return npz, meta


PEEK_LIMIT = 64 << 20  # a snapshot file read before its model is known (file_of)


def file_of(path) -> tuple[str, str]:
    """The (format, precision) of the model file a snapshot file was made with, read before
    the model is loaded (the CLI picks the backend from it). BundleError as Snapshot.load."""
    path = Path(path)
    _, meta = _read(path, PEEK_LIMIT)
    key = meta.get("file")
    if not isinstance(key, str) or key.count(":") != 1:
        raise BundleError(f"{path}: a damaged snapshot (its file is not FORMAT:PRECISION)")
    fmt, precision = key.split(":")
    return fmt, precision


def check_target(path) -> None:
    """ConfigError unless `path` is absent or a snapshot file that save() may replace (a CLI
    checks before it generates)."""
    _check_target(path)


def _check_target(path) -> None:
    if not str(path):
        raise ConfigError("an empty path: name the snapshot file to write")
    path = Path(path)
    parent = path.parent
    if not parent.is_dir():
        raise ConfigError(f"{path}: the directory {str(parent)!r} does not exist (it is not "
                          "created: make it first)")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as e:
        raise ConfigError(f"{path}: cannot write the snapshot ({e.strerror or e})") from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{path} exists and is not a regular file; refusing to replace it "
                          "with a snapshot")
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            ok = "meta.npy" in names and "state.npy" in names
            if ok:
                head = z.open("meta.npy").read(4096).decode("latin-1")
                ok = FORMAT in head.replace("\x00", "")
    except (zipfile.BadZipFile, OSError, ValueError, KeyError):
        ok = False
    if not ok:
        raise ConfigError(f"{path} exists and is not a charwright snapshot; refusing to "
                          "overwrite it (remove it or choose another name)")


def _check_origin(path, meta: dict, model) -> None:
    if meta.get("manifest_sha256") != manifest_sha256(model.bundle):
        raise BundleError(f"{path}: a snapshot of another bundle (or of another version of "
                          f"this one); it continues only with the bundle it was made with")
    entry = model.entry
    if meta.get("file") != entry.key or meta.get("file_sha256") != entry.sha256:
        raise BundleError(f"{path}: a snapshot of file {meta.get('file')!r}, not of "
                          f"{entry.key!r}; load the bundle with that backend and precision")


def _is_int(x, lo=0, hi=SEED_MAX) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and lo <= x <= hi


def _check_meta(path, meta: dict, n_history: int, has_logits: bool) -> dict:
    bad = f"{path}: a damaged snapshot"
    pos, seed, row, coins = (meta.get(k) for k in ("position", "seed", "row", "coins"))
    if not (_is_int(pos) and _is_int(row) and _is_int(coins) and (seed is None or _is_int(seed))):
        raise BundleError(f"{bad} (position, seed, row and coins must be integers)")
    if n_history > pos or (pos > 0) != has_logits or (pos > 0 and n_history == 0):
        raise BundleError(f"{bad} (its position, history and logits disagree)")
    sampling = meta.get("sampling")
    if sampling is not None:
        try:
            sampling = asdict(_config_from(sampling))
        except (ConfigError, TypeError, RecursionError):
            raise BundleError(f"{bad} (its sampling configuration is not valid)") from None
    extra = meta.get("extra")
    if not isinstance(extra, dict) or not all(isinstance(k, str) and _is_int(v)
                                              for k, v in extra.items()):
        raise BundleError(f"{bad} (its sampler state is not a map of integers)")
    stop = meta.get("stop")
    if stop is not None and not _check_stop(stop):
        raise BundleError(f"{bad} (its held stop-string text is not consistent)")
    return {"manifest_sha256": meta["manifest_sha256"], "file": meta["file"],
            "file_sha256": meta["file_sha256"], "position": pos, "seed": seed, "row": row,
            "coins": coins, "sampling": sampling, "extra": extra,
            "stop": None if stop is None else {**stop, "stops": list(stop["stops"]),
                                               "kmp": list(stop["kmp"])}}


MAX_STOPS = 256


def _check_stop(d) -> bool:
    """{"stops": [str], "kmp": [int], "held": str, "go_on": bool}: the stop strings of the call
    that held text at its length limit, each one's matched prefix length (Knuth-Morris-Pratt
    state: 0 <= k < its length), the text held (the longest of those prefixes, which each is a
    suffix of), and whether the next call may go on matching (no text fed since)."""
    if not isinstance(d, dict) or set(d) != {"stops", "kmp", "held", "go_on"}:
        return False
    stops, kmp, held, go_on = d["stops"], d["kmp"], d["held"], d["go_on"]
    if not (isinstance(stops, (list, tuple)) and isinstance(kmp, (list, tuple))
            and isinstance(held, str) and isinstance(go_on, bool)
            and 1 <= len(stops) <= MAX_STOPS and len(kmp) == len(stops)):
        return False
    if not all(isinstance(x, str) and x for x in stops):
        return False
    if not all(_is_int(k, 0, len(x) - 1) for k, x in zip(kmp, stops)):
        return False
    return 0 < len(held) == max(kmp) and all(held.endswith(x[:k]) for k, x in zip(kmp, stops))


def _config_from(d) -> SamplingConfig:
    if not isinstance(d, dict):
        raise ConfigError("not an object")
    names = {f.name for f in fields(SamplingConfig)}
    if set(d) - names:
        raise ConfigError(f"unknown keys {sorted(set(d) - names)}")
    return SamplingConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})
