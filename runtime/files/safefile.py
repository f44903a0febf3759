"""Bounded reads of the files a bundle lists: inside the bundle, regular, never more than asked.

A bundle comes from elsewhere (a download, a shared drive), so its manifest decides nothing about
where we read or how much:
    resolve_inside(root, path)   follows symlinks, then refuses a target outside the bundle
                                 directory or one that is not a regular file (a FIFO would hang
                                 the reader, /dev/zero would never end)
    read_bytes(path, max_bytes)  opens with O_NONBLOCK (a FIFO swapped in after the check cannot
                                 block), checks fstat on the open descriptor, reads at most
                                 max_bytes
    sha256_of(path)              the same checks, hashed in 1 MiB chunks, up to the fstat size
                                 (the one file hasher: bundles, exports, imported models)
    read_checked(path, n, sha)   read_bytes, then the size and sha256 the manifest gives
    check_file(path, n, sha)     the same checks without keeping the bytes (hashed in chunks)
    safe_relpath(root, rel)      root/rel for a manifest path: no absolute paths, no '..'
Every problem is a BundleError naming the file.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path, PurePosixPath

from charwright.runtime.errors import BundleError

_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(
    os, "O_NOCTTY", 0)


def resolve_inside(root: Path, path: Path) -> Path:
    """`path` with every symlink resolved; BundleError unless it is a regular file in `root`."""
    try:
        real_root = Path(root).resolve(strict=True)
        real = Path(path).resolve(strict=True)
    except FileNotFoundError:
        raise BundleError(f"{path}: file listed in the manifest is missing") from None
    except (OSError, RuntimeError) as e:  # a symlink loop is RuntimeError before Python 3.13
        raise BundleError(f"{path}: cannot be resolved ({e})") from None
    if not real.is_relative_to(real_root) or real == real_root:
        raise BundleError(f"{path}: points outside the bundle directory (to {real}); a bundle "
                          "must hold its files itself: copy the file in instead of linking it")
    _require_regular(path, real.stat().st_mode)
    return real


def _require_regular(path, mode: int) -> None:
    if not stat.S_ISREG(mode):
        raise BundleError(f"{path}: not a regular file (a directory, device, FIFO or socket); "
                          "replace it with the file the manifest lists")


def _open(path: Path) -> tuple[int, int]:
    try:
        fd = os.open(path, _FLAGS)
    except FileNotFoundError:
        raise BundleError(f"{path}: file listed in the manifest is missing") from None
    except OSError as e:
        raise BundleError(f"{path}: cannot open ({e.strerror or e})") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        _require_regular(path, st.st_mode)
    return fd, st.st_size


def read_bytes(path: Path, max_bytes: int) -> bytes:
    """The whole of a regular file of at most max_bytes bytes."""
    fd, size = _open(path)
    with os.fdopen(fd, "rb") as f:
        if size > max_bytes:
            raise BundleError(f"{path}: {size:,} bytes, more than the {max_bytes:,} expected; "
                              "the file is damaged or was replaced")
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:  # grew while we read it
        raise BundleError(f"{path}: more than the {max_bytes:,} bytes expected; the file is "
                          "damaged or was replaced")
    return data


def _size_mismatch(path, got: int, want) -> BundleError:
    return BundleError(f"{path}: size {got} bytes, manifest says {want}; the file is damaged or "
                       "was replaced")


def _check_digest(path, got: str, want: str | None) -> None:
    if want is not None and got != want:
        raise BundleError(f"{path}: sha256 mismatch; the file is damaged or was modified")


def read_checked(path: Path, size: int, digest: str) -> bytes:
    """The bytes of a regular file the manifest lists with this size and sha256 (a bounded
    read, then both checked): what is used is exactly what was checked, read once."""
    data = read_bytes(Path(path), int(size))
    if len(data) != size:
        raise _size_mismatch(path, len(data), size)
    _check_digest(path, hashlib.sha256(data).hexdigest(), digest)
    return data


def check_file(path: Path, size, digest) -> None:
    """BundleError unless `path` is a regular file with this size and sha256 (None: not
    checked; manifests always carry both)."""
    got = sha256_of(Path(path), expected_size=None if size is None else int(size))
    _check_digest(path, got, digest)


def sha256_of(path: Path, expected_size: int | None = None) -> str:
    """sha256 hex of a regular file; with expected_size, BundleError first if it differs (and
    never more than that many bytes are read)."""
    fd, size = _open(path)
    h = hashlib.sha256()
    with os.fdopen(fd, "rb") as f:
        if expected_size is not None and size != expected_size:
            raise _size_mismatch(path, size, expected_size)
        left = size
        while left > 0:
            chunk = f.read(min(left, 1 << 20))
            if not chunk:
                break
            h.update(chunk)
            left -= len(chunk)
    return h.hexdigest()


def safe_relpath(root: Path, rel: str, what: str) -> Path:
    """root/rel, refusing absolute paths, '..' and the bundle directory itself (lexically; see
    Bundle.path for symlinks)."""
    if not isinstance(rel, str) or not rel:
        raise BundleError(f"{what}: a file entry has no path")
    p = PurePosixPath(rel)
    if p.is_absolute() or rel.startswith(("/", "\\")) or (p.parts and ":" in p.parts[0]):
        raise BundleError(f"{what}: absolute path {rel!r} is not allowed in a bundle")
    if ".." in p.parts or "\\" in rel:
        raise BundleError(f"{what}: path {rel!r} leaves the bundle directory")
    if not p.parts:
        raise BundleError(f"{what}: path {rel!r} names the bundle directory, not a file")
    return root.joinpath(*p.parts)
