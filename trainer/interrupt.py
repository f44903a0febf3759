"""Ctrl-C and SIGTERM during training: finish the current step, save a checkpoint, stop.

The first signal only sets a flag (and puts the previous handlers back, so a second Ctrl-C
aborts at once); the training loop checks the flag after every optimizer step, saves a
checkpoint there and raises TrainingInterrupted, which the CLI turns into one line saying how
to resume, and exit status 130.
"""

from __future__ import annotations

import os
import signal
import threading

from charwright.runtime.errors import CharwrightError

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(CharwrightError):
    """Training stopped on a signal after saving a checkpoint; `--resume` continues it."""

    exit_code = 130

    def __init__(self, run_dir, epoch: int, step: int, global_step: int):
        self.run_dir, self.epoch, self.step, self.global_step = run_dir, epoch, step, global_step
        super().__init__(
            f"interrupted in epoch {epoch} after step {step} ({global_step} optimizer steps "
            f"saved); resume with: charwright train -o {run_dir} --resume"
        )


class InterruptFlag:
    """Installs the handlers for the `with` block (main thread only; elsewhere a no-op)."""

    def __init__(self, on_signal=None):
        self.requested = False
        self.signum = None
        self._previous = {}
        self._on_signal = on_signal

    def _handle(self, signum, frame):
        self.requested, self.signum = True, signum
        self._restore()  # a second signal takes the default path (KeyboardInterrupt / exit)
        if self._on_signal is not None:
            self._on_signal(signum)

    def _restore(self):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        self._restore()
        return False


class WorkerLost(CharwrightError):
    """A multi-worker run stopped because another task of its cluster died or stopped
    answering; every worker must be restarted with `--resume` (exit status 75, EX_TEMPFAIL:
    a launcher may restart on it)."""

    exit_code = 75

    def __init__(self, run_dir, detail: str):
        self.run_dir = run_dir
        super().__init__(
            f"the training cluster lost a worker ({detail}); stop every worker, then start them "
            f"all again with: charwright train -o {run_dir} --resume"
        )


# --- a test hook: dying at a named point -------------------------------------------------------

KILL_ENV = "CHARWRIGHT_TEST_KILL_AT"
KILL_POINTS = ("step", "epoch-end", "between-epochs", "finalize", "probe-write", "complete")
_reached: dict[str, int] = {}


def kill_point(name: str) -> None:
    """Test hook (never set in normal use): with CHARWRIGHT_TEST_KILL_AT=NAME or NAME@N, the
    process SIGKILLs itself the Nth time (default the first) it reaches the point NAME, so a
    test can kill a real `charwright train` at an exact phase. The points (KILL_POINTS):

        step            after an optimizer step (and its checkpoint, if one falls there)
        epoch-end       an epoch's history row and best weights written, its checkpoint not yet
        between-epochs  after the epoch-end checkpoint, before the next epoch or finalize
        finalize        the step graph written, the probe not yet
        probe-write     probe.npz written to its temp name, not yet renamed into place
        complete        probe.npz in place, run.json not yet marked complete

    Unset, this is one dictionary lookup."""
    spec = os.environ.get(KILL_ENV)
    if not spec:
        return
    want, _, nth = spec.partition("@")
    if want != name:
        return
    _reached[name] = _reached.get(name, 0) + 1
    if _reached[name] == (int(nth) if nth.isdigit() else 1):
        os.kill(os.getpid(), signal.SIGKILL)
