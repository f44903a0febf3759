"""TensorFlow Lite Micro backend (pip `tflite-micro`, the [micro] extra): a .tflite file as a
microcontroller runs it.

TFLM has no signatures (tensors by index only, see the contract in
export/formats/tflite/convert.py), runs batch 1 only (the file's static shape [1]) and keeps every
intermediate tensor in one fixed arena. Its Python wrapper segfaults when the arena is too small
(below about 1 KB): runtime/verify/micro.py finds the smallest arena that works in a child
process; MicroStep is then built with that size (plus a margin).

    step = MicroStep(data, state_size, vocab_size, precision, arena_bytes, path)
"""

from __future__ import annotations

import numpy as np

from charwright.runtime.backends import TFLM
from charwright.runtime.backends.base import StepBackend
from charwright.runtime.errors import BackendUnavailable, BundleError

ARENA_FLOOR = 2048  # never ask the wrapper for less (it segfaults under ~1 KB)
REPLAY_MARGIN = 1024  # replay with a little more than the smallest arena that worked
NOT_INSTALLED = f"TFLite Micro is not installed: {TFLM.install_hint}"


def runtime_version() -> str | None:
    """The installed tflite-micro version, or None."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tflite-micro")
    except PackageNotFoundError:
        return None


def interpreter(data: bytes, arena: int):
    """A TFLM interpreter over the flatbuffer `data` with an `arena`-byte tensor arena.

    Raises BackendUnavailable without the [micro] extra; TFLM's own RuntimeError/ValueError
    when the file does not load in that arena."""
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError:
        raise BackendUnavailable(NOT_INSTALLED) from None
    return runtime.Interpreter.from_bytes(data, arena_size=int(arena))


def input_shapes(it) -> list:
    """[(shape, dtype)] of inputs 0 (token) and 1 (state), by index."""
    out = []
    for i in range(2):
        d = it.get_input_details(i)
        out.append(([int(x) for x in d["shape"]], d["dtype"]))
    return out


class MicroStep(StepBackend):
    """A .tflite file under TFLM, by index: input 0 token, 1 state; output 0 logits, 1
    new_state (the contract). Batch 1 only."""

    name = TFLM.name
    thread_safe = TFLM.thread_safe

    def __init__(self, data: bytes, state_size: int, vocab_size: int, precision: str,
                 arena: int, path: str = "model.tflite"):
        super().__init__(state_size, vocab_size, precision, path)
        try:
            self.it = interpreter(data, max(int(arena), ARENA_FLOOR) + REPLAY_MARGIN)
        except (RuntimeError, ValueError) as e:
            raise BundleError(f"{path}: TFLite Micro cannot load this file: "
                              f"{' '.join(str(e).split())}") from None
        tok, st = input_shapes(self.it)
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
