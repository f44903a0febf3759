"""The Keras callback of the training loop: progress, step checkpoints, stateful resets, signals.

`loop` is the live loop position (a dict shared with trainer/fit.py): epoch, step_in_epoch,
global_step, history, best_val_loss, best_epoch and timing marks. A checkpoint stores
`loop_state(loop)`, which is what resume needs to replay the rest of an epoch.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from charwright.trainer import checkpoint as ckpt
from charwright.trainer.interrupt import InterruptFlag, TrainingInterrupted, kill_point

LOOP_KEYS = ("epoch", "step_in_epoch", "global_step", "history", "best_val_loss", "best_epoch",
             "intervals")


def loop_state(loop: dict) -> dict:
    """What a checkpoint stores (intervals: absent from checkpoints of version 1 runs)."""
    return {k: loop.get(k, [] if k == "intervals" else None) for k in LOOP_KEYS}


def close_interval(loop: dict) -> None:
    """Appends the mean training loss since the previous checkpoint to loop["intervals"].

    Keras's logs["loss"] is the running mean since this fit began, so the interval's sum is
    the difference of (mean x steps) at its two ends."""
    n, total = loop.get("fit_steps", 0), loop.get("fit_loss_sum", 0.0)
    n0, total0 = loop.get("mark_steps", 0), loop.get("mark_loss_sum", 0.0)
    if n > n0:
        mean = (total - total0) / (n - n0)
        loop.setdefault("intervals", []).append({
            "global_step": loop["global_step"], "epoch": loop["epoch"] + 1,
            "steps": n - n0, "train_loss": mean, "train_bpc": mean / 0.6931471805599453,
            "learning_rate": loop.get("learning_rate")})
    loop["mark_steps"], loop["mark_loss_sum"] = n, total


def reset_states(model) -> None:
    for layer in model.layers:
        if getattr(layer, "stateful", False):
            layer.reset_state()


def save_checkpoint(run_dir: Path, model, loop: dict, on_progress: Callable[[dict], None]):
    close_interval(loop)
    if loop.get("is_chief", True):
        from charwright.runtime.files.atomic import write_json

        write_json(Path(run_dir) / "intervals.json", loop.get("intervals") or [])
    path = ckpt.save_checkpoint(run_dir, model, loop_state(loop))
    on_progress({"event": "checkpoint", "path": str(path), "global_step": loop["global_step"]})
    return path


def interrupted(run_dir: Path, loop: dict) -> TrainingInterrupted:
    return TrainingInterrupted(run_dir, loop["epoch"] + 1, loop["step_in_epoch"],
                               loop["global_step"])


def make_callbacks(keras, loop: dict, run_dir: Path, model, every: int,
                   on_progress: Callable[[dict], None], stateful: bool, steps_per_epoch: int,
                   flag: InterruptFlag):
    """[the loop callback]. Stateful models are reset before each epoch and before validation;
    a signal (flag.requested) saves a checkpoint after the current step and raises
    TrainingInterrupted (at an epoch's last step the epoch is finished first: see fit.py)."""

    class Loop(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            loop["fit_steps"], loop["fit_loss_sum"] = 0, 0.0
            loop["mark_steps"], loop["mark_loss_sum"] = 0, 0.0

        def on_epoch_begin(self, epoch, logs=None):
            loop["t_begin"] = time.perf_counter()
            loop["t_train_end"] = None
            loop["t_last"] = 0.0
            if stateful:
                reset_states(model)

        def on_train_batch_end(self, batch, logs=None):
            loop["step_in_epoch"] += 1
            loop["global_step"] += 1
            logs = logs or {}
            loop["fit_steps"] = loop.get("fit_steps", 0) + 1
            loop["fit_loss_sum"] = float(logs.get("ce", logs.get("loss", 0.0))) * loop["fit_steps"]
            now = time.perf_counter()
            last = loop["step_in_epoch"] == steps_per_epoch
            if now - loop["t_last"] >= 0.5 or last:
                loop["t_last"] = now
                on_progress({"event": "batch", "epoch": loop["epoch"] + 1,
                             "epochs": loop["epochs"], "step": loop["step_in_epoch"],
                             "steps": steps_per_epoch, "loss": float((logs or {}).get("loss", 0)),
                             "elapsed": now - loop["t_begin"]})
            if last:
                kill_point("step")
                return
            if flag.requested:
                on_progress({"event": "interrupt"})
                save_checkpoint(run_dir, model, loop, on_progress)
                raise interrupted(run_dir, loop)
            if every and loop["global_step"] % every == 0:
                save_checkpoint(run_dir, model, loop, on_progress)
            kill_point("step")

        def on_test_begin(self, logs=None):
            if loop["t_train_end"] is None:
                loop["t_train_end"] = time.perf_counter()
            if stateful:
                reset_states(model)

    return [Loop()]
