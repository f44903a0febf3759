"""`charwright train`'s progress on stderr: one line per trainer event (train.py's
on_progress), the batch line redrawn in place on a tty and printed every 10 s otherwise."""

from __future__ import annotations

import math
import sys
import time

# event -> its line; "start", "batch" and "interrupt" are drawn by TrainProgress itself
LINES = {
    "resume": lambda ev: (f"resuming from {ev['path']} (epoch {ev['epoch']}, step {ev['step']}, "
                          f"{ev['global_step']} optimizer steps done)"),
    "epoch": lambda ev: (f"epoch {ev['epoch']}: train {ev['train_bpc']:.4f} bits/char, "
                         f"val {ev['val_bpc']:.4f} bits/char{' (best)' if ev['best'] else ''}, "
                         f"{ev['chars_per_second']:,.0f} chars/s, {ev['epoch_seconds']:.0f}s"),
    "sample": lambda ev: "sample: " + ev["text"].replace("\n", "\n        "),
    "probe": lambda ev: (f"recording the reference probe ({ev['chars']} chars) and the step "
                         "graph"),
    "nothing_to_do": lambda ev: (f"nothing to do: {ev['run_dir']} finished {ev['epochs']} of "
                                 f"{ev['of']} epochs"),
    "finish": lambda ev: (f"{ev['run_dir']}: {ev['epochs']} of {ev['of']} epochs done; "
                          f"finishing the run from the best weights (epoch {ev['best_epoch']})"),
    "new_run": lambda ev: f"nothing to resume in {ev['run_dir']}: starting a new run",
    "worker_done": lambda ev: (f"{ev['task_type']} {ev['task_index']} done: "
                               f"{ev['optimizer_steps']} optimizer steps; the chief writes "
                               f"{ev['run_dir']}"),
    "done": lambda ev: (f"done: best val {ev['best_val_bpc']:.4f} bits/char (epoch "
                        f"{ev['best_epoch']}), {ev['optimizer_steps']} optimizer steps, step "
                        f"graph max |diff| {ev['step_check_max_abs_diff']:.2e}, reference on "
                        f"{ev['device']}"),
}


class TrainProgress:
    """Turns trainer events into stderr output: a redrawn line on a tty, plain lines otherwise."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr  # looked up now, not at import
        self.tty = self.stream.isatty()
        self.last_line = 0.0

    def _out(self, text: str, transient: bool = False) -> None:
        if self.tty:
            self.stream.write("\r\033[K" + text + ("" if transient else "\n"))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def __call__(self, ev: dict) -> None:
        kind = ev["event"]
        if kind in LINES:
            self._out(LINES[kind](ev))
        elif kind == "start":
            self._start(ev)
        elif kind == "batch":
            self._batch(ev)
        elif kind == "interrupt" and self.tty:  # the resume line follows: end a redrawn line
            self.stream.write("\r\033[K")
            self.stream.flush()

    def _start(self, ev: dict) -> None:
        self._out(f"training {ev['params']:,} parameters, vocab {ev['vocab']}, "
                  f"{ev['train_chars']:,} train / {ev['val_chars']:,} val chars, "
                  f"{ev['steps_per_epoch']} steps/epoch, mode {ev['mode']}, "
                  f"strategy {ev['strategy']}")
        if ev.get("truncated_lines"):
            self._out(f"warning: {ev['truncated_lines']} lines longer than --seq-len were "
                      "truncated")

    def _batch(self, ev: dict) -> None:
        now = time.monotonic()
        if not self.tty and now - self.last_line < 10 and ev["step"] != ev["steps"]:
            return
        self.last_line = now
        width = 24
        done = int(width * ev["step"] / max(ev["steps"], 1))
        bar = "#" * done + "." * (width - done)
        self._out(f"epoch {ev['epoch']}/{ev['epochs']} [{bar}] {ev['step']}/{ev['steps']} "
                  f"loss {ev['loss']:.4f} ({ev['loss'] / math.log(2):.3f} bits/char) "
                  f"{ev['elapsed']:.0f}s", transient=True)
