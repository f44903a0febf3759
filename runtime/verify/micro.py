"""TensorFlow Lite Micro's check of a bundle: which .tflite files it runs, the smallest tensor
arena that works, and the probe replayed under it (backends/tflm.py runs the file).

TFLM has no hybrid kernel (int8 weights with float activations: the int8-dynamic files) and no
float16 DEQUANTIZE, so it runs the float32 and full-integer files.

Its Python wrapper segfaults when an arena is too small (below about 1 KB), so probe_file() finds
the smallest arena in a child process: the child bisects and reports each size before it tries
it; if the child dies, the size it was trying is counted as failing and a new child continues.

    probe_file(path) -> {"runs", "reason", "arena_bytes", "runtime"}   (export records it)
    replay_micro(bundle, entry) -> FileParity                          (verify calls it)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from charwright.runtime.backends import TFLM
from charwright.runtime.backends.tflm import (ARENA_FLOOR, NOT_INSTALLED, MicroStep,
                                              input_shapes, interpreter, runtime_version)
from charwright.runtime.errors import BackendUnavailable, CharwrightError
from charwright.runtime.verify.parity import FileParity, compare

ARENA_CEILING = 64 << 20
ARENA_STEP = 16  # TFLM aligns arena allocations to 16 bytes: the bisection stops at this
ROUNDS = 32  # children at most; a crash only ends a round


def available() -> bool:
    """Whether tflite-micro is installed (without importing it)."""
    return TFLM.available()


def _try(data: bytes, arena: int) -> str | None:
    """None if the file loads and runs one step from zeros in `arena` bytes (what a device's
    first step does), else TFLM's reason."""
    try:
        it = interpreter(data, arena)
        for i, (shape, dtype) in enumerate(input_shapes(it)):
            it.set_input(np.zeros(shape, dtype), i)
        it.invoke()
        return None
    except (RuntimeError, ValueError) as e:
        return " ".join(str(e).split()) or type(e).__name__


def _child(path: str, lo: int, hi: int) -> None:
    """Child process: lo fails (or is the floor), hi is to be tried first. Prints one JSON line
    before each attempt ({"try": n}) and after it ({"ok": n} / {"fail": n, "reason": ...})."""
    data = Path(path).read_bytes()

    def attempt(n):
        print(json.dumps({"try": n}), flush=True)
        reason = _try(data, n)
        print(json.dumps({"ok": n} if reason is None else {"fail": n, "reason": reason}),
              flush=True)
        return reason is None

    if not attempt(hi):
        return
    while hi - lo > ARENA_STEP:
        mid = (lo + hi) // 2 // ARENA_STEP * ARENA_STEP
        if mid <= lo:
            break
        if attempt(mid):
            hi = mid
        else:
            lo = mid


def _run_child(path, lo: int, hi: int, timeout: float):
    cmd = [sys.executable, "-c", "import sys; from charwright.runtime.verify.micro import _child; "
           "_child(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))", str(path), str(lo), str(hi)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def _last_line(r) -> str:
    return (r.stderr.strip().splitlines() or [f"exit status {r.returncode}"])[-1]


def _record(best: int | None, reason: str | None) -> dict:
    """files[].micro as export records it."""
    return {"runs": best is not None, "reason": None if best is not None else reason,
            "arena_bytes": best, "runtime": f"tflite-micro {runtime_version()}"}


class _Bisection:
    """What the children have said so far: `lo` fails (or is the floor), `best` runs (None: no
    size yet), `reason` why the ceiling itself fails."""

    def __init__(self):
        self.lo, self.best, self.reason = ARENA_FLOOR, None, None

    def hear(self, r) -> tuple[bool, int | None]:
        """Reads one child's events: (whether it said anything, the size it died on or None)."""
        trying, heard = None, False
        for line in r.stdout.splitlines():
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if not isinstance(ev, dict):
                continue
            heard = True
            if "try" in ev:
                trying = ev["try"]
            elif "ok" in ev:
                self.best = ev["ok"] if self.best is None else min(self.best, ev["ok"])
                trying = None
            elif "fail" in ev:
                self.lo, trying = max(self.lo, ev["fail"]), None
                if self.best is None:  # the ceiling itself fails: TFLM cannot run the file
                    said = " ".join(ln.strip() for ln in r.stderr.splitlines() if ln.strip())
                    self.reason = ev["reason"] + (f": {said[:400]}" if said else "")
        return heard, trying


def probe_file(path, timeout: float = 120.0) -> dict:
    """Whether TFLM runs the .tflite file at `path` (loads, allocates, invokes one batch-1 step
    from zeros), why not, and the smallest arena (bytes, to ARENA_STEP) that works.

    Raises BackendUnavailable when tflite-micro is not installed."""
    if not available():
        raise BackendUnavailable(NOT_INSTALLED)
    s = _Bisection()
    for _ in range(ROUNDS):
        try:
            r = _run_child(path, s.lo, ARENA_CEILING if s.best is None else s.best, timeout)
        except subprocess.TimeoutExpired:
            return _record(None, f"probe timed out after {timeout:g}s")
        heard, died_on = s.hear(r)
        if not heard:  # the child failed before its first attempt (it could not import, ...)
            return _record(None, f"the TFLM probe failed to start: {_last_line(r)[:400]}")
        if died_on is not None:  # the child died on this size (the wrapper's segfault)
            if s.best is None and died_on >= ARENA_CEILING:
                return _record(None, f"TFLM crashed: {_last_line(r)}")
            s.lo = max(s.lo, died_on)
            continue
        if (s.best is None or s.reason is not None or s.best - s.lo <= ARENA_STEP
                or r.returncode == 0):
            break
    return _record(s.best, s.reason)


def micro_info(entry) -> dict | None:
    """The manifest's files[].micro for a file entry (recorded at export), or None."""
    extra = getattr(entry, "extra", None) or {}
    info = extra.get("micro")
    return info if isinstance(info, dict) else None


def replay_micro(bundle, entry):
    """Replays the bundle's probe on one .tflite file under TFLM (parity.compare, the same
    figures and tolerances as every other backend). Returns a FileParity; "not checked" when
    tflite-micro is missing or the manifest records that TFLM does not run the file."""
    label = f"{entry.path}[tflm]"  # no space: one token in tables and logs
    if not available():
        return FileParity.unmeasured(entry, NOT_INSTALLED, checked=False)
    info = micro_info(entry)
    if info is not None and not info.get("runs"):
        return FileParity.unmeasured(entry, f"TFLite Micro does not run this file: "
                                            f"{info.get('reason')}", checked=False)
    try:
        data = bundle.read(entry)  # checksum verified
        arena = (info or {}).get("arena_bytes") or probe_file(bundle.path(entry))["arena_bytes"]
        if not arena:
            return FileParity.unmeasured(entry, "TFLite Micro does not run this file",
                                         checked=False)
        backend = MicroStep(data, bundle.state_size, bundle.vocab_size, entry.precision, arena,
                            entry.path)
        res = compare(backend, bundle.probe(), label)
    except CharwrightError as e:
        res = FileParity.unmeasured(entry, str(e))
        res.file = label
    res.backend = TFLM.name
    return res


def check_bundle(bundle, entries=None, on_result=None) -> list:
    """replay_micro() on every .tflite file (or `entries`) that the manifest records as running
    under TFLM; files it does not run get no row. Nothing (an empty list) without the extra."""
    if not available():
        return []
    out = []
    for entry in entries if entries is not None else bundle.files:
        info = micro_info(entry)
        if entry.format != TFLM.format or not (info and info.get("runs")):
            continue
        res = replay_micro(bundle, entry)
        out.append(res)
        if on_result:
            on_result(res)
    return out
