"""TensorFlow Lite Micro (pip `tflite-micro`, the [micro] extra): which .tflite files it runs, the
smallest tensor arena that works, and the probe replayed under it.

TFLM is what a microcontroller runs: no signatures (tensors by index only, see the contract in
export/formats/tflite/convert.py), batch 1 only (the file's static shape [1]), and a fixed arena for every
intermediate tensor. It has no hybrid kernel (int8 weights with float activations: the
int8-dynamic files) and no float16 DEQUANTIZE, so it runs the float32 and full-integer files.

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

from charwright.runtime.backends.base import StepBackend
from charwright.runtime.errors import BackendUnavailable, BundleError, CharwrightError

MODULE = "tflite_micro"
EXTRA = "micro"
ARENA_FLOOR = 2048  # never ask the wrapper for less (it segfaults under ~1 KB)
ARENA_CEILING = 64 << 20
ARENA_STEP = 16  # TFLM aligns arena allocations to 16 bytes: the bisection stops at this
REPLAY_MARGIN = 1024  # replay in-process with a little more than the smallest arena


def available() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(MODULE) is not None
    except (ImportError, ValueError):
        return False


def version() -> str | None:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as v

    try:
        return v("tflite-micro")
    except PackageNotFoundError:
        return None


def _interpreter(data: bytes, arena: int):
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError:
        raise BackendUnavailable(f"TFLite Micro is not installed: pip install "
                                 f"'charwright[{EXTRA}]'") from None
    return runtime.Interpreter.from_bytes(data, arena_size=int(arena))


def _one_step(it, data_shapes) -> None:
    """Sets zeros on every input by index and invokes (what a device's first step does)."""
    for i, (shape, dtype) in enumerate(data_shapes):
        it.set_input(np.zeros(shape, dtype), i)
    it.invoke()


def _shapes(it) -> list:
    out = []
    for i in range(2):
        d = it.get_input_details(i)
        out.append(([int(x) for x in d["shape"]], d["dtype"]))
    return out


def _try(data: bytes, arena: int) -> str | None:
    """None if the file loads and runs one step in `arena` bytes, else TFLM's reason."""
    try:
        it = _interpreter(data, arena)
        _one_step(it, _shapes(it))
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


def probe_file(path, timeout: float = 120.0) -> dict:
    """Whether TFLM runs the .tflite file at `path` (loads, allocates, invokes one batch-1 step
    from zeros), why not, and the smallest arena (bytes, to ARENA_STEP) that works.

    Raises BackendUnavailable when tflite-micro is not installed."""
    if not available():
        raise BackendUnavailable(f"TFLite Micro is not installed: pip install "
                                 f"'charwright[{EXTRA}]'")
    lo, hi, best, reason = ARENA_FLOOR, ARENA_CEILING, None, None
    for _ in range(32):  # each round is one child; a crash only ends a round
        cmd = [sys.executable, "-c", "import sys; from charwright.runtime.verify.micro import _child; "
               "_child(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))", str(path), str(lo),
               str(hi if best is None else best)]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"runs": False, "reason": f"probe timed out after {timeout:g}s",
                    "arena_bytes": None, "runtime": f"tflite-micro {version()}"}
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
                best, trying = ev["ok"] if best is None else min(best, ev["ok"]), None
            elif "fail" in ev:
                lo, trying = max(lo, ev["fail"]), None
                if best is None:  # the ceiling itself fails: TFLM cannot run the file
                    said = " ".join(ln.strip() for ln in r.stderr.splitlines() if ln.strip())
                    reason = ev["reason"] + (f": {said[:400]}" if said else "")
        if not heard:  # the child failed before its first attempt (it could not import, ...)
            err = (r.stderr.strip().splitlines() or [f"exit status {r.returncode}"])[-1]
            return {"runs": False, "reason": f"the TFLM probe failed to start: {err[:400]}",
                    "arena_bytes": None, "runtime": f"tflite-micro {version()}"}
        if trying is not None:  # the child died on this size (the wrapper's segfault)
            if best is None and trying >= hi:
                err = (r.stderr.strip().splitlines() or [f"exit status {r.returncode}"])[-1]
                return {"runs": False, "reason": f"TFLM crashed: {err}", "arena_bytes": None,
                        "runtime": f"tflite-micro {version()}"}
            lo = max(lo, trying)
            continue
        if best is None or reason is not None or best - lo <= ARENA_STEP:
            break
        if r.returncode != 0:
            continue
        break
    return {"runs": best is not None, "reason": None if best is not None else reason,
            "arena_bytes": best, "runtime": f"tflite-micro {version()}"}


class MicroStep(StepBackend):
    """A .tflite file under TFLM, by index: input 0 token, 1 state; output 0 logits, 1
    new_state (the contract). Batch 1 only."""

    name = "tflm"
    thread_safe = False

    def __init__(self, data: bytes, state_size: int, vocab_size: int, precision: str,
                 arena: int, path: str = "model.tflite"):
        super().__init__(state_size, vocab_size, precision, path)
        try:
            self.it = _interpreter(data, max(int(arena), ARENA_FLOOR) + REPLAY_MARGIN)
        except (RuntimeError, ValueError) as e:
            raise BundleError(f"{path}: TFLite Micro cannot load this file: "
                              f"{' '.join(str(e).split())}") from None
        tok, st = _shapes(self.it)
        if tok[0] != [1] or st[0] != [1, state_size]:
            raise BundleError(f"{path}: under TFLite Micro the inputs are token {tok[0]} and "
                              f"state {st[0]}; the contract says [1] and [1, {state_size}]")

    def step(self, tokens: np.ndarray, state: np.ndarray):
        if tokens.shape[0] != 1:
            raise BundleError(f"{self.path}: TFLite Micro runs batch 1 only")
        self.it.set_input(np.ascontiguousarray(tokens, np.int32), 0)
        self.it.set_input(np.ascontiguousarray(state, np.float32), 1)
        self.it.invoke()
        return self.it.get_output(0).copy(), self.it.get_output(1).copy()


def micro_info(entry) -> dict | None:
    """The manifest's files[].micro for a file entry (recorded at export), or None."""
    extra = getattr(entry, "extra", None) or {}
    info = extra.get("micro")
    return info if isinstance(info, dict) else None


def replay_micro(bundle, entry):
    """Replays the bundle's probe on one .tflite file under TFLM (parity.compare, the same
    figures and tolerances as every other backend). Returns a FileParity; "not checked" when
    tflite-micro is missing or the manifest records that TFLM does not run the file."""
    from charwright.runtime.verify.parity import FileParity, compare

    label = f"{entry.path}[tflm]"  # no space: one token in tables and logs
    if not available():
        return FileParity.unmeasured(entry, f"TFLite Micro is not installed: pip install "
                                            f"'charwright[{EXTRA}]'", checked=False)
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
    res.backend = "tflm"
    return res


def check_bundle(bundle, entries=None, on_result=None) -> list:
    """replay_micro() on every .tflite file (or `entries`) that the manifest records as running
    under TFLM; files it does not run get no row. Nothing (an empty list) without the extra."""
    if not available():
        return []
    out = []
    for entry in entries if entries is not None else bundle.files:
        info = micro_info(entry)
        if entry.format != "tflite" or not (info and info.get("runs")):
            continue
        res = replay_micro(bundle, entry)
        out.append(res)
        if on_result:
            on_result(res)
    return out
