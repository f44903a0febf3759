"""Writes one .tflite file of the bundle: the float step SavedModel converted per precision, or,
for full int8, the integer-form graph (int8_graph.py) built once from the run's weights; the
contract and metadata applied, its operators listed, TFLite Micro's verdict recorded."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from charwright.export.formats.job import Converted, ExportJob
from charwright.export.formats.tflite import convert as tflite


def write(job: ExportJob, precision: str, dest: Path, meta: dict) -> Converted:
    if precision == "int8":  # converted from its own graph (int8.py says why)
        data = tflite.convert_int8(integer_saved_model(job), job.arch, job.layout,
                                   job.calibration)
    else:
        data = tflite.convert(job.saved_model, precision, job.calibration)
    ops = tflite.op_names(data)
    job.save(dest, tflite.add_metadata(data, meta))
    fields = {"min_runtime": tflite.min_runtime(data), "micro": tflite.micro_check(dest)}
    if precision == "int8":  # what its state buffer holds (README "Integrating")
        from charwright.export.formats.tflite.int8_graph import state_encoding

        fields["state_encoding"] = state_encoding(job.layout)
    return Converted(ops=ops, problems=tflite.deploy_problems(ops), fields=fields)


def integer_saved_model(job: ExportJob) -> str:
    """The integer-form step graph of the run's weights, saved once under job.work; returns its
    SavedModel directory."""
    from charwright.export.formats.tflite.int8_graph import save_integer_step

    path = job.work / "integer_saved_model"
    if not path.exists():
        with np.load(job.run_dir / "step" / "weights.npz", allow_pickle=False) as z:
            weights = {k: z[k] for k in z.files}
        save_integer_step(weights, job.arch, path)
    return str(path)
