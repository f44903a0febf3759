"""Checked reading of .npz archives: every array's shape and dtype is judged from its header
before a byte of it is loaded.

np.load trusts the archive: a 2 MB probe.npz can hold a compressed 2 GiB array and np.load will
allocate it. Here the caller first states what each array must be (`expect`), from facts the
manifest holds (token count, vocabulary size, architecture), and only arrays that passed are
loaded. Object arrays are refused (no pickle), and arrays nobody asked for are never read.

    npz = Npz(data, "BUNDLE/probe.npz")          # parses the zip directory and the .npy headers
    npz.expect("tokens", (2000,), "iu")          # BundleError naming the file and the array
    tokens = npz.load("tokens")
"""

from __future__ import annotations

import io
import zipfile
import zlib

import numpy as np

from charwright.runtime.errors import BundleError

MAX_MEMBERS = 4096
# numeric arrays written by np.savez (stored) or savez_compressed (deflate) unpack to about their
# stored size; a member that claims more than this ratio (plus 1 MiB of slack for tiny arrays) is
# a decompression bomb, whatever the manifest says, and so is an archive over MAX_UNPACKED
MAX_RATIO = 50
MAX_UNPACKED = 8 << 30
_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
_HEADER_MAX = 10_000  # numpy's own default limit on an .npy header


def zip_member_problem(info: zipfile.ZipInfo, max_ratio: int) -> str | None:
    """Why a zip member is not read (its compression method, or a decompression bomb: more
    than max_ratio x its packed size + 1 MiB), or None. Also used for imported .keras files."""
    if info.compress_type not in _METHODS:
        return (f"uses compression method {info.compress_type}; only stored and deflated "
                "members are read")
    if info.file_size > max_ratio * info.compress_size + (1 << 20):
        return (f"unpacks to {info.file_size:,} bytes from {info.compress_size:,}: a "
                "decompression bomb")
    return None


class Npz:
    """An .npz archive held in memory; `arrays` maps names to (shape, dtype) from the headers."""

    def __init__(self, data: bytes, where: str):
        self.where = where
        self._checked: set[str] = set()
        try:
            self._zip = zipfile.ZipFile(io.BytesIO(data))
            infos = self._zip.infolist()
            if len(infos) > MAX_MEMBERS:
                raise BundleError(f"{where}: {len(infos)} arrays; an npz here holds at most "
                                  f"{MAX_MEMBERS}")
            for i in infos:
                problem = zip_member_problem(i, MAX_RATIO)
                if problem:
                    raise BundleError(f"{where}: member {i.filename!r} {problem}")
            if sum(i.file_size for i in infos) > MAX_UNPACKED:
                raise BundleError(f"{where}: unpacks to more than {MAX_UNPACKED >> 30} GiB")
            self._info = {i.filename[:-4]: i for i in infos if i.filename.endswith(".npy")}
            self.arrays = {name: self._header(info) for name, info in self._info.items()}
        except BundleError:
            raise
        except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, OSError,
                zlib.error, NotImplementedError) as e:
            raise BundleError(f"{where}: not a readable npz archive ({e})") from None

    def _header(self, info: zipfile.ZipInfo) -> tuple[tuple, np.dtype]:
        with self._zip.open(info) as f:
            major, _ = np.lib.format.read_magic(f)
            read = (np.lib.format.read_array_header_1_0 if major == 1
                    else np.lib.format.read_array_header_2_0)
            shape, _, dtype = read(f, max_header_size=_HEADER_MAX)
            header_len = f.tell()
        if dtype.hasobject:
            raise BundleError(f"{self.where}: array {info.filename[:-4]!r} holds Python objects; "
                              "only numeric arrays are read")
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if header_len + nbytes > info.file_size:
            raise BundleError(f"{self.where}: array {info.filename[:-4]!r} is truncated")
        return tuple(int(d) for d in shape), dtype

    def expect(self, name: str, shape: tuple, kinds: str, optional: bool = False) -> bool:
        """Checks array `name` against `shape` (None: any length in that axis) and dtype kinds
        ("f" float, "iu" integers, "U" text). Returns False if optional and absent."""
        if name not in self.arrays:
            if optional:
                return False
            raise BundleError(f"{self.where}: lacks the array {name!r}")
        got, dtype = self.arrays[name]
        if len(got) != len(shape) or any(s is not None and s != g for s, g in zip(shape, got)):
            want = "(" + ", ".join("any" if s is None else str(s) for s in shape) + \
                (",)" if len(shape) == 1 else ")")
            raise BundleError(f"{self.where}: array {name!r} has shape {got}, expected {want}")
        if dtype.kind not in kinds or (dtype.kind == "f" and dtype.itemsize > 8):
            raise BundleError(f"{self.where}: array {name!r} has dtype {dtype}, expected "
                              f"{_KIND_NAMES.get(kinds, kinds)}")
        self._checked.add(name)
        return True

    def shape(self, name: str) -> tuple | None:
        return self.arrays[name][0] if name in self.arrays else None

    def load(self, name: str) -> np.ndarray:
        """One array whose header passed expect()."""
        if name not in self._checked:
            raise ValueError(f"{name!r} was not checked with expect() before load()")
        try:
            with self._zip.open(self._info[name]) as f:
                return np.lib.format.read_array(f, allow_pickle=False,
                                                max_header_size=_HEADER_MAX)
        except (zipfile.BadZipFile, ValueError, EOFError, OSError, zlib.error) as e:
            raise BundleError(f"{self.where}: cannot read array {name!r} ({e})") from None


_KIND_NAMES = {"f": "a float type", "iu": "an integer type", "U": "text"}
