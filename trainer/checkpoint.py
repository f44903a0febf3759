"""Checkpoints: model weights, optimizer slots and the loop position, written atomically.

    RUN_DIR/checkpoints/ckpt-000001234/{model.weights.h5, optimizer.npz, state.json}
    RUN_DIR/checkpoints/latest          name of the newest complete checkpoint

A checkpoint directory is built under a temp name and renamed into place; `latest` is replaced
atomically only after that. A run killed at any instant (kill -9 included) therefore resumes from
the last complete checkpoint, and a half-written one is never read. The two newest are kept.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from charwright.runtime.files.atomic import atomic_dir, write_json, write_text
from charwright.runtime.errors import RunDirError

KEEP = 2


def save_checkpoint(run_dir: Path, model, state: dict) -> Path:
    """Writes model + optimizer + `state` (epoch, step_in_epoch, global_step, ...)."""
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    name = f"ckpt-{state['global_step']:09d}"
    target = root / name
    with atomic_dir(target, replace=True) as tmp:
        model.save_weights(str(tmp / "model.weights.h5"))
        opt_vars = model.optimizer.variables
        np.savez(
            tmp / "optimizer.npz",
            **{f"v{i:04d}": np.asarray(v.numpy()) for i, v in enumerate(opt_vars)},
        )
        write_json(tmp / "state.json", dict(state, optimizer_variables=[v.path for v in opt_vars]))
    write_text(root / "latest", name + "\n")
    for old in sorted(p for p in root.glob("ckpt-*") if p.is_dir())[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def latest_checkpoint(run_dir: Path) -> Path | None:
    root = Path(run_dir) / "checkpoints"
    try:
        name = (root / "latest").read_text().strip()
    except FileNotFoundError:
        return None
    path = root / name
    if not (path / "state.json").is_file():
        raise RunDirError(f"{root / 'latest'} names {name}, which is missing; the run is damaged")
    return path


def epochs_done(run_dir: Path) -> int:
    """Epochs completed by the run in run_dir, from its newest checkpoint (0 without one)."""
    latest = latest_checkpoint(run_dir)
    return int(read_state(latest)["epoch"]) if latest is not None else 0


def restore_checkpoint(path: Path, model) -> dict:
    """Loads weights and optimizer slots into a compiled `model`; returns the saved state."""
    state = read_state(path)
    opt = model.optimizer
    # build the optimizer first: model.weights.h5 holds its slots too, and loading them into an
    # unbuilt optimizer makes Keras warn "Skipping variable loading for optimizer" on every resume
    opt.build(model.trainable_variables)
    model.load_weights(str(path / "model.weights.h5"))
    with np.load(path / "optimizer.npz", allow_pickle=False) as z:
        values = [z[k] for k in sorted(z.files)]
    if len(values) != len(opt.variables):
        raise RunDirError(
            f"{path}: checkpoint holds {len(values)} optimizer variables, the model has "
            f"{len(opt.variables)}; was the run's configuration changed?"
        )
    for var, val in zip(opt.variables, values):
        if tuple(var.shape) != val.shape:
            raise RunDirError(f"{path}: optimizer variable {var.path} has shape {val.shape}, "
                              f"expected {tuple(var.shape)}")
        var.assign(val)
    return state


def read_state(path: Path) -> dict:
    """The loop position a checkpoint holds (epoch = epochs completed, step_in_epoch, ...)."""
    try:
        return json.loads((Path(path) / "state.json").read_text())
    except (OSError, ValueError) as e:
        raise RunDirError(f"{path / 'state.json'}: unreadable ({e}); the run is damaged") from None
