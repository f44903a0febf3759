"""What every format writer is given (ExportJob: the run's step, facts and calibration) and
what it returns (Converted: the file's operators and its own manifest fields).

A writer is `write(job, precision, dest, meta) -> Converted`: it writes the file `dest` (model
bytes through job.save, so that the whole bundle is written one way), with `meta` (the
vocabulary and key facts) in the file's own metadata where the format has any.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable


@dataclass
class ExportJob:
    """One export's inputs, shared by every file written.

    run_dir: RUN_DIR; saved_model: its float step SavedModel (str); arch: the architecture;
    layout: the state layout (step.json's state_layout); state_size: S; calibration: (token,
    state) pairs from the float reference, or None when no calibrated file is written; work: a
    scratch directory that lives as long as the export; save(path, data): writes model bytes;
    cache: what one writer converts once for several precisions (ONNX float32)."""

    run_dir: Path
    saved_model: str
    arch: dict
    layout: list
    state_size: int
    calibration: list | None
    work: Path
    save: Callable[[Path, bytes], None]
    cache: dict = field(default_factory=dict)


@dataclass
class Converted:
    """ops: the file's sorted operator names; problems: those that do not run on devices (the
    export refuses the file); fields: files[] entries of this format (min_runtime, micro,
    state_encoding)."""

    ops: list
    problems: list
    fields: dict
