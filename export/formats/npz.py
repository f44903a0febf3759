"""weights.npz for the numpy backend: RUN_DIR's step/weights.npz, copied as it is (its arrays
are the weights.npz contract, runtime/bundle/architecture.py weight_shapes)."""

from __future__ import annotations

import shutil
from pathlib import Path

from charwright.export.formats.job import Converted, ExportJob


def write(job: ExportJob, precision: str, dest: Path, meta: dict) -> Converted:
    """Copies the run's float32 weights to `dest` (an npz file has no metadata of its own)."""
    shutil.copyfile(job.run_dir / "step" / "weights.npz", dest)
    return Converted(ops=[], problems=[], fields={})
