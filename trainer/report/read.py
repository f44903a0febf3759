"""Bounded reads of the JSON files a report draws from (a run or bundle made elsewhere): each is
read only if it is a regular file under its size bound, and every value used is checked for its
type first, so a wrong one ends in one line naming the file and the field."""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path

from charwright.runtime.bundle.manifest import show
from charwright.runtime.errors import RunDirError

MAX_NAME_CHARS = 255
DAMAGED = "the file is damaged or was edited by hand"


def finite(v):
    """A finite float from a JSON number, else None (null, a string, true, 1e999, 10**400)."""
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except OverflowError:  # an int beyond float range
        return None
    return f if math.isfinite(f) else None


def read_json(path: Path, default, max_bytes: int, error=RunDirError):
    """JSON of a regular file of at most max_bytes bytes (`default` if it does not exist)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return default
    except OSError as e:
        raise error(f"{path}: cannot open ({e.strerror or e})") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise error(f"{path}: not a regular file (a directory, device, FIFO or socket)")
    with os.fdopen(fd, "rb") as f:
        if st.st_size > max_bytes:
            raise error(f"{path}: {st.st_size:,} bytes, more than the {max_bytes >> 20} MiB a "
                        f"report reads; {DAMAGED}")
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise error(f"{path}: more than the {max_bytes >> 20} MiB a report reads; {DAMAGED}")
    try:
        return json.loads(data.decode("utf-8"))
    except RecursionError:
        raise error(f"{path}: malformed JSON (nested too deeply)") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise error(f"{path}: malformed JSON ({e})") from None


def object_field(d: dict, key: str, where: str, error) -> dict:
    """d[key] as an object ({} when absent or null); `key` is the field's dotted name."""
    v = d.get(key.rpartition(".")[2])
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise error(f"{where}: {key} must be an object, got {show(v)}; {DAMAGED}")
    return v


def object_rows(v, where: str, field: str | None, error) -> list:
    """A list of objects (history and interval rows, parity entries); field None: the file's
    top level."""
    if v is None:
        return []
    if not isinstance(v, list):
        name = f"{field} must be" if field else "must be"
        raise error(f"{where}: {name} a list of objects, got {show(v)}; {DAMAGED}")
    for i, r in enumerate(v):
        if not isinstance(r, dict):
            name = f"{field}[{i}]" if field else f"row {i}"
            raise error(f"{where}: {name} must be an object, got {show(r)}; {DAMAGED}")
    return v


def name_field(v, where: str, error) -> str:
    if not isinstance(v, str) or not v or len(v) > MAX_NAME_CHARS:
        raise error(f"{where} must be a name of 1 to {MAX_NAME_CHARS} characters, got "
                    f"{show(v)}; {DAMAGED}")
    return v


def shown(v) -> str:
    """A value of the file for a fact line: short, whatever its type."""
    return v if isinstance(v, str) and len(v) <= 80 else show(v)


def fmt(v, spec=".4f"):
    return format(v, spec) if finite(v) is not None else "-"
