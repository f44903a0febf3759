"""The run directory format: what charwright writes into RUN_DIR, reading it, replacing it.

    RUN_DIR/
      run.json            format, version, model + train config, corpus identity, status, summary
      vocab.json          the vocabulary (runtime/vocab.py format)
      history.json/.csv   one row per epoch: loss, bits/char (train, validation), learning
                          rate, chars/s, steps
      intervals.json      one row per checkpoint: mean training loss and bits/char since the
                          previous checkpoint, optimizer steps, learning rate (version 2)
      checkpoints/        see checkpoint.py
      best.weights.h5     weights of the epoch with the lowest validation loss
      samples.txt         the sample generated after each epoch
      step/               saved_model/ (serving_default = the single step), weights.npz,
                          step.json (architecture, state layout, inputs, outputs)
      probe.npz           see probe.py
      .charwright.lock    flock held by the process writing the run (see runtime/files/locking.py)

This is the one module that knows the format: the trainer writes it through here and export
reads it through here. No TensorFlow.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import shutil
from pathlib import Path

from charwright.runtime.files.atomic import write_json, write_text
from charwright.runtime.errors import RunDirError
from charwright.runtime.files.locking import check_free as _check_free, hold

RUN_FORMAT = "charwright-run"
# 2: architecture.stack (a cell, size and activations per layer), intervals.json, the
# learning rate in history rows, imported runs (run.json "import"). Version 1 runs still load:
# everything version 2 added is optional to readers.
RUN_VERSION = 2
READS_VERSIONS = (1, 2)
LOCK_NAME = ".charwright.lock"
# every entry charwright writes at the top of RUN_DIR; nothing else is ever deleted
ENTRIES = ("run.json", "vocab.json", "history.json", "history.csv", "intervals.json",
           "checkpoints", "best.weights.h5", "samples.txt", "step", "probe.npz", LOCK_NAME)
# what export needs from a complete run
EXPORT_NEEDS = ("vocab.json", "probe.npz", "step/step.json", "step/weights.npz",
                "step/saved_model/saved_model.pb")


def _is_temp(name: str) -> bool:
    """A temp entry of charwright's atomic writes (runtime/files/atomic.py): '.NAME.tmp...'/'.old-'."""
    return name.startswith(".") and (".tmp" in name or ".old-" in name) and any(
        name[1:].startswith(e) for e in ENTRIES)


def read_run(run_dir: str | Path) -> dict:
    """run.json of RUN_DIR after checking its format and version.

    Raises:
        RunDirError: no run.json, malformed JSON, another format, or an unknown version.
    """
    path = Path(run_dir) / "run.json"
    try:
        run = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunDirError(f"{run_dir} holds no charwright run (no run.json)") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise RunDirError(f"{path}: malformed JSON ({e})") from None
    if not isinstance(run, dict) or run.get("format") != RUN_FORMAT:
        raise RunDirError(f"{path}: not a {RUN_FORMAT} file")
    if type(run.get("version")) is not int or run.get("version") not in READS_VERSIONS:
        raise RunDirError(f"{path}: {RUN_FORMAT} version {run.get('version')!r} is not "
                          f"supported (this charwright reads version {RUN_VERSION}); upgrade "
                          "charwright")
    return run


def read_complete_run(run_dir: str | Path) -> dict:
    """run.json of a finished run, after checking that the files export needs are there."""
    run_dir = Path(run_dir)
    run = read_run(run_dir)
    if run.get("status") != "complete":
        raise RunDirError(f"{run_dir}: training has not finished (status {run.get('status')!r}); "
                          f"finish it with charwright train -o {run_dir} --resume")
    for rel in EXPORT_NEEDS:
        if not (run_dir / rel).is_file():
            raise RunDirError(f"{run_dir / rel}: missing; the run directory is incomplete")
    return run


def write_run(run_dir: Path, run: dict) -> None:
    write_json(Path(run_dir) / "run.json", run)


def has_run(run_dir: Path) -> bool:
    return (Path(run_dir) / "run.json").is_file()


def foreign_entries(run_dir: Path) -> list[str]:
    """Top-level names in RUN_DIR that charwright did not write (sorted)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    return sorted(p.name for p in run_dir.iterdir()
                  if p.name not in ENTRIES and not _is_temp(p.name))


def never_checkpointed(run_dir: Path, run: dict) -> bool:
    """A run that stopped before its first checkpoint: nothing in it is worth resuming."""
    return run.get("status") == "training" and not (
        Path(run_dir) / "checkpoints" / "latest").is_file()


def check_target(run_dir: Path, force: bool, locked: bool = False) -> dict | None:
    """Checks that a new run may be written into RUN_DIR; returns the run it will replace.

    Allowed: a missing or empty directory; a charwright run with force; a run that never reached
    its first checkpoint (a failed start must not block a plain re-run). Refused: a file, a
    directory with entries charwright did not write (named, with or without force), another
    run without force. Read-only: call it again under the lock (locked=True) before writing.
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"{run_dir} exists and is not a directory")
    if not locked:  # a live trainer first (under our own lock, flock would see ours)
        _check_free(run_dir / LOCK_NAME, str(run_dir), RunDirError)
    foreign = foreign_entries(run_dir)
    if not has_run(run_dir):
        if foreign:
            raise RunDirError(f"{run_dir} is not empty and holds no charwright run "
                              f"({', '.join(foreign[:5])}); choose a new directory")
        return None
    old = read_run(run_dir)  # only ever replace what is recognisably a run of ours
    if foreign:
        raise RunDirError(f"{run_dir} holds files charwright did not write "
                          f"({', '.join(foreign[:5])}); move them out first")
    if not force and not never_checkpointed(run_dir, old):
        raise RunDirError(f"{run_dir} already holds a run; pass --resume to continue it or "
                          "--force to replace it")
    return old


def clear_run(run_dir: Path) -> None:
    """Deletes charwright's own entries of RUN_DIR (not the lock); leaves anything else."""
    run_dir = Path(run_dir)
    for name in ENTRIES:
        if name == LOCK_NAME:
            continue
        p = run_dir / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()
    sweep_temps(run_dir)


# what charwright's atomic writes leave behind in checkpoints/ and step/ when killed
_SUB_TEMPS = {"checkpoints": (".ckpt-", ".latest."),
              "step": (".step.json.", ".weights.npz.", ".saved_model.")}


def _own_temp(folder: str, name: str) -> bool:
    if not (name.startswith(".") and (".tmp" in name or ".old-" in name)):
        return False
    if folder == "":
        return _is_temp(name)
    return name.startswith(_SUB_TEMPS[folder])


def sweep_temps(run_dir: Path) -> None:
    """Removes what a killed run was writing: only names that charwright's atomic writes make
    (runtime/files/atomic.py), never a user's file that merely looks like one, and links are removed
    as links (never followed)."""
    run_dir = Path(run_dir)
    for folder in ("", *_SUB_TEMPS):
        where = run_dir / folder
        if where.is_symlink() or not where.is_dir():
            continue
        for p in where.iterdir():
            if not _own_temp(folder, p.name):
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)


def check_free(run_dir: Path) -> None:
    """Raises RunDirError naming the process that holds RUN_DIR's lock, if one does."""
    _check_free(Path(run_dir) / LOCK_NAME, str(run_dir), RunDirError)


def lock(run_dir: Path, shared: bool = False):
    """Context manager: holds RUN_DIR's lock (exclusive for training, shared for reading)."""
    return hold(Path(run_dir) / LOCK_NAME, str(run_dir), RunDirError, shared=shared)


@contextlib.contextmanager
def lock_for_reading(run_dir: Path):
    """A shared lock on RUN_DIR while export reads it: a run being trained is refused, naming
    its trainer. No lock where there is no run (nothing to protect, and no lock file is left in
    a directory that is not ours) or where RUN_DIR is read-only (nobody can train there)."""
    if not has_run(run_dir):
        yield
        return
    try:
        cm = lock(run_dir, shared=True)
        cm.__enter__()
    except OSError:  # read-only directory or file system (RunDirError is no OSError)
        yield
        return
    try:
        yield
    finally:
        cm.__exit__(None, None, None)


def trim_samples(run_dir: Path, done: int) -> None:
    """Drops the samples of epochs after `done` from samples.txt: an epoch that a killed run
    sampled but did not checkpoint is sampled again when it is redone."""
    path = run_dir / "samples.txt"
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, UnicodeDecodeError):
        return
    m = re.search(rf"^=== epoch {done + 1} \(val [^\n]* bits/char\)$", text, re.MULTILINE)
    if m is not None:
        write_text(path, text[:m.start()])


def write_history(run_dir: Path, history: list[dict]) -> None:
    write_json(Path(run_dir) / "history.json", history)
    buf = io.StringIO()
    if history:
        # the union of the rows' keys, in order of appearance: a run of version 1 resumed by
        # this version gains columns from its next row on
        names = list(dict.fromkeys(k for row in history for k in row))
        w = csv.DictWriter(buf, fieldnames=names, restval="")
        w.writeheader()
        w.writerows(history)
    write_text(Path(run_dir) / "history.csv", buf.getvalue())
