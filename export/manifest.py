"""The bundle's manifest.json, assembled: the step's facts (also written into every model
file's metadata), one record per file, the probe, training summary, sampling defaults,
tolerances, who made it, and the files left out for failing parity.

The format is runtime/bundle (reader.py, manifest.py): this module only fills it in.
"""

from __future__ import annotations

from pathlib import Path

from charwright.export.formats.job import Converted
from charwright.runtime.bundle.reader import BUNDLE_FORMAT, BUNDLE_VERSION
from charwright.runtime.files.safefile import sha256_of
from charwright.runtime.verify.parity import TOLERANCES

# keyword arguments of runtime.sampling.SamplingConfig (null: that processor is off)
SAMPLING_DEFAULTS = {"temperature": 0.8, "top_k": None, "top_p": None}
# every file's tensors by contract name (DESIGN.md section 2): the same in every format
NAMES = {"inputs": {"token": "token", "state": "state"},
         "outputs": {"logits": "logits", "new_state": "new_state"}}
CONVERTERS = ("tf2onnx", "onnx", "onnxruntime", "ai-edge-litert")


def facts(vocab_dict: dict, step_info: dict) -> dict:
    """What the bundle and each of its model files say about the step (step.json's facts)."""
    return {
        "format": BUNDLE_FORMAT,
        "vocab": vocab_dict,
        "architecture": step_info["architecture"],
        # the state every sequence starts from (README "Integrating a bundle"): all zeros
        "state": {"size": int(step_info["state_size"]), "layout": step_info["state_layout"],
                  "initial": "zeros"},
        "inputs": step_info["inputs"],
        "outputs": step_info["outputs"],
    }


def file_record(path: Path, fmt: str, precision: str, converted: Converted) -> dict:
    """files[] entry of the written file `path`. `portable`: an ONNX file whose every op every
    conforming runtime computes bit for bit (export/formats/onnx_exact.PORTABLE_OPS), so that a
    seed gives the same text on onnxruntime, onnxruntime-web and a port that follows the graph;
    false for every other file (float sums, Tanh, Sigmoid, TFLite's requantization)."""
    from charwright.export.formats.onnx_exact import portable

    return {"path": path.name, "format": fmt, "precision": precision,
            "sha256": sha256_of(path), "bytes": path.stat().st_size, **NAMES,
            "ops": converted.ops, "portable": fmt == "onnx" and portable(converted.ops),
            **converted.fields}


def probe_record(path: Path, tokens: int, device) -> dict:
    return {"path": path.name, "sha256": sha256_of(path), "bytes": path.stat().st_size,
            "tokens": int(tokens), "device": device}


def training(run: dict) -> dict:
    """The training summary, from RUN_DIR's run.json."""
    summary = run.get("summary", {})
    return {"corpus_sha256": run["corpus"]["sha256"], "corpus_chars": run["corpus"]["chars"],
            "epochs": summary.get("epochs"), "optimizer_steps": summary.get("optimizer_steps"),
            "best_val_bpc": summary.get("best_val_bpc"), "device": summary.get("device"),
            "train": run["train"]}


def created_by(run: dict, tensorflow_version: str) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    converters = {}
    for pkg in CONVERTERS:
        try:
            converters[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return {"charwright": run.get("created_by", {}).get("charwright"),
            "tensorflow": tensorflow_version, "converters": converters}


def assemble(facts: dict, files: list, probe: dict, golden: dict, run: dict,
             tensorflow_version: str) -> dict:
    """manifest.json before parity (export adds parity[], and left_out[] if any)."""
    return {
        **facts,
        "format_version": BUNDLE_VERSION,
        "files": files,
        "probe": probe,
        "golden": golden,
        "training": training(run),
        "sampling_defaults": dict(SAMPLING_DEFAULTS),
        "tolerances": {k: vars(v) for k, v in TOLERANCES.items()},
        "created_by": created_by(run, tensorflow_version),
    }


def left_out_entry(record: dict, rows: list) -> dict:
    """left_out[] entry of a file dropped for failing parity: `rows` are its failing rows."""
    return {"path": record["path"], "format": record["format"],
            "precision": record["precision"], "reason": "outside tolerance: " + why(rows),
            "figures": [r.to_dict() for r in rows]}


def why(rows) -> str:
    """Parity rows' failures, one clause per row."""
    return "; ".join(f"{r.file}: {', '.join(r.failures)}" for r in rows)
