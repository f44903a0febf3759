"""RUN_DIR -> BUNDLE_DIR: convert every selected (format, precision), check, write atomically.

The bundle is assembled in a temporary sibling directory: model files (each carrying the
vocabulary and key facts in its own metadata), weights.npz for the numpy backend, probe.npz, and
manifest.json. Every file's operators are checked for what breaks on devices, the probe is
replayed on every file (runtime/verify/parity.py), and only then is the directory renamed into place.
A failure anywhere leaves no bundle and the previous one untouched.

A file outside its parity tolerance is left out of the bundle and recorded in the manifest's
left_out[] (path, format, precision, reason, figures), unless its precision was asked for by
name (then the export is refused) or allow_mismatch keeps it; a bundle in which no file holds
parity is refused.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import time
from pathlib import Path, PurePosixPath
from typing import Callable

import numpy as np

from charwright.runtime.files.atomic import atomic_dir, write_json
from charwright.runtime.bundle.reader import BUNDLE_FORMAT, BUNDLE_VERSION, load_bundle, read_manifest
from charwright.runtime.files.safefile import sha256_of as sha256_file
from charwright.runtime.errors import BundleError, ConfigError, ExportError, ParityError, require
from charwright.runtime.backends import BACKENDS, FORMAT_ALIASES
from charwright.runtime.files.locking import hold
from charwright.runtime.bundle.manifest import PRECISIONS
from charwright.trainer import run_dir as rd
from charwright.runtime.verify.check import check_files
from charwright.runtime.verify.parity import TOLERANCES, raise_for_failures
from charwright.runtime.vocab import Vocabulary

# (format, precision) -> file name, in the order they are written, from the backend registry
# (runtime/backends: the one declaration of formats, precisions and file names). ONNX has no
# full-int8 file: static QDQ (onnxruntime quantize_static, calibrated like TFLite's) was
# measured 85x slower than dynamic int8 on the CPU provider (6.2 ms vs 73 us per step at GRU
# 1024) and less accurate (top-1 94.8% vs 97.4% at GRU 512), so dynamic int8 is ONNX's int8.
_WRITE_ORDER = ("npz", "onnx", "tflite")
FILES = {(spec.format, prec): name
         for spec in sorted(BACKENDS, key=lambda s: _WRITE_ORDER.index(s.format))
         for prec, name in spec.file_names.items()}
FORMAT_NAMES = FORMAT_ALIASES
SAMPLING_DEFAULTS = {"temperature": 0.8, "top_k": None, "top_p": None}


def _noop(event: dict) -> None:
    pass


def read_run_dir(run_dir: Path) -> dict:
    """run.json of a complete run (the format is trainer/run_dir.py's)."""
    return rd.read_complete_run(run_dir)


def listed_paths(manifest: dict) -> set[str]:
    """Every path a bundle's manifest accounts for, manifest.json included."""
    out = {"manifest.json"}
    for f in manifest.get("files") or []:
        if isinstance(f, dict) and isinstance(f.get("path"), str):
            out.add(f["path"])
    for key in ("probe", "golden"):  # the side files the manifest names
        entry = manifest.get(key)
        if isinstance(entry, dict) and isinstance(entry.get("path"), str):
            out.add(entry["path"])
    return out


def check_replaceable(bundle_dir: Path) -> None:
    """Refuses to replace BUNDLE_DIR unless it is a charwright bundle (format and version of
    its manifest checked) holding nothing its manifest does not list (user files are named)."""
    entries = list(bundle_dir.iterdir())
    if not entries:
        return
    if not (bundle_dir / "manifest.json").is_file():
        raise ExportError(f"{bundle_dir} is not empty and is not a bundle; refusing to replace "
                          "it (choose a new directory)")
    try:
        manifest = read_manifest(bundle_dir)
    except BundleError as e:
        raise ExportError(f"{bundle_dir} is not a charwright bundle ({e}); refusing to replace "
                          "it") from None
    listed = listed_paths(manifest)
    folders = {str(a) for p in listed for a in PurePosixPath(p).parents if str(a) != "."}
    extra: list[str] = []

    def walk(folder: Path) -> None:
        for p in sorted(folder.iterdir()):
            rel = p.relative_to(bundle_dir).as_posix()
            if rel in folders and p.is_dir() and not p.is_symlink():
                walk(p)
            elif rel not in listed:
                extra.append(rel)

    walk(bundle_dir)
    if extra:
        shown = ", ".join(extra[:5]) + (f" and {len(extra) - 5} more" if len(extra) > 5 else "")
        raise ExportError(f"{bundle_dir} holds files its manifest does not list ({shown}); "
                          "move them out, then export again")


def select(formats=None, precisions=None) -> list[tuple[str, str]]:
    fmts = {FORMAT_NAMES.get(f, f) for f in (formats or FORMAT_NAMES)}
    bad = fmts - set(FORMAT_NAMES.values())
    if bad:
        raise ConfigError(f"unknown format(s) {sorted(bad)}: use onnx, tflite, numpy")
    precs = set(precisions or PRECISIONS)
    if precs - set(PRECISIONS):
        raise ConfigError(f"unknown precision(s) {sorted(precs - set(PRECISIONS))}: use "
                          f"{', '.join(PRECISIONS)}")
    chosen = [k for k in FILES if k[0] in fmts and k[1] in precs]
    if not chosen:
        raise ConfigError(f"no file matches formats {sorted(fmts)} and precisions {sorted(precs)}")
    return chosen


def _calibration_ids(run: dict, vocab: Vocabulary, corpus, probe_tokens, on_progress):
    paths = [corpus] if corpus else run["corpus"]["paths"]
    try:
        text = "".join(Path(p).read_text(encoding="utf-8") for p in paths)
        train_chars = run["corpus"].get("train_chars") or len(text)
        return vocab.encode(text, unknown="skip")[:train_chars]
    except OSError:
        on_progress({"event": "warning", "message": "training corpus not found; calibrating on "
                     "the probe's validation text instead (pass --corpus to use the corpus)"})
        return probe_tokens


def _write_model_file(path: Path, data: bytes) -> None:
    path.write_bytes(data)


def export(run_dir, bundle_dir, formats=None, precisions=None, *, force: bool = False,
           allow_mismatch: bool = False, corpus=None, threads: int = 1,
           on_progress: Callable[[dict], None] | None = None) -> dict:
    """Writes BUNDLE_DIR from RUN_DIR and returns its manifest.

    Raises:
        RunDirError: RUN_DIR is not a complete run.
        ExportError: BUNDLE_DIR exists (without force), a conversion fails, or a file holds
            operators that do not run on devices.
        ParityError: a file of a precision named in `precisions` is outside its tolerance, no
            file holds parity, or nothing could be checked (unless allow_mismatch, which keeps
            failing files with the failure recorded in the manifest). Without allow_mismatch, a
            failing file of a precision not named is left out of the bundle and recorded in
            manifest["left_out"] (a "left_out" progress event each).
    """
    on_progress = on_progress or _noop
    run_dir, bundle_dir = Path(run_dir), Path(bundle_dir)
    chosen = select(formats, precisions)
    with contextlib.ExitStack() as stack:
        stack.enter_context(rd.lock_for_reading(run_dir))
        read_run_dir(run_dir)
        _check_target(bundle_dir, force)  # early, before the slow part
        bundle_dir.parent.mkdir(parents=True, exist_ok=True)
        # the target is swapped by rename, so its lock sits beside it
        stack.enter_context(hold(bundle_dir.parent / f".{bundle_dir.name}.lock", str(bundle_dir),
                                 ExportError, remove=True))
        _check_target(bundle_dir, force)  # again, under the lock
        return _export(run_dir, bundle_dir, chosen, force, allow_mismatch, corpus, threads,
                       on_progress, named=set(precisions or ()))


def _check_target(bundle_dir: Path, force: bool) -> None:
    if bundle_dir.exists() or bundle_dir.is_symlink():
        if not bundle_dir.is_dir() or bundle_dir.is_symlink():
            raise ExportError(f"{bundle_dir} exists and is not a directory; choose another path")
        if not force:
            raise ExportError(f"{bundle_dir} already exists; pass --force to replace it")
        check_replaceable(bundle_dir)


def _export(run_dir: Path, bundle_dir: Path, chosen, force: bool, allow_mismatch: bool, corpus,
            threads: int, on_progress, named: set) -> dict:
    run = read_run_dir(run_dir)
    tf = require("tensorflow", "train")
    vocab = Vocabulary.load(run_dir / "vocab.json")
    step_info = json.loads((run_dir / "step" / "step.json").read_text())
    arch, S = step_info["architecture"], int(step_info["state_size"])
    saved_model = str(run_dir / "step" / "saved_model")
    with np.load(run_dir / "probe.npz", allow_pickle=False) as z:
        probe_tokens = z["tokens"]

    calibration = None
    if any(p in ("int8", "int16x8") for _, p in chosen):  # both are calibrated
        from charwright.runtime.backends.numpy import NumpyStep

        from charwright.export.formats.tflite.calibration import gather_pairs

        with np.load(run_dir / "step" / "weights.npz", allow_pickle=False) as z:
            ref_step = NumpyStep({k: z[k] for k in z.files}, arch)
        ids = _calibration_ids(run, vocab, corpus, probe_tokens, on_progress)
        calibration = gather_pairs(ref_step, np.asarray(ids, np.int32))
        on_progress({"event": "calibration", "pairs": len(calibration)})

    facts = {
        "format": BUNDLE_FORMAT,
        "vocab": vocab.to_dict(),
        "architecture": arch,
        # the state every sequence starts from (README "Integrating a bundle"): all zeros
        "state": {"size": S, "layout": step_info["state_layout"], "initial": "zeros"},
        "inputs": step_info["inputs"],
        "outputs": step_info["outputs"],
    }
    t_all = time.perf_counter()
    files = []
    onnx_float32 = None  # converted once, then quantized per precision
    names = {"inputs": {"token": "token", "state": "state"},
             "outputs": {"logits": "logits", "new_state": "new_state"}}
    with atomic_dir(bundle_dir, replace=force) as tmp, \
            tempfile.TemporaryDirectory(prefix=".charwright-export-") as work:
        for fmt, prec in chosen:
            name = FILES[(fmt, prec)]
            t0 = time.perf_counter()
            on_progress({"event": "convert", "file": name})
            meta = dict(facts, precision=prec, file=name)
            if fmt == "npz":
                shutil.copyfile(run_dir / "step" / "weights.npz", tmp / name)
                ops, problems, per_file = [], [], {}
            elif fmt == "tflite":
                from charwright.export.formats.tflite import convert as tflite

                if prec == "int8":  # converted from its own graph (export/formats/tflite/int8.py)
                    data = tflite.convert_int8(_integer_model(run_dir, arch, work),
                                               _model_cfg(arch), calibration)
                else:
                    data = tflite.convert(saved_model, prec, calibration)
                ops = tflite.op_names(data)
                problems = tflite.deploy_problems(ops)
                _write_model_file(tmp / name, tflite.add_metadata(data, meta))
                per_file = {"min_runtime": tflite.min_runtime(data),
                            "micro": tflite.micro_check(tmp / name)}
                if prec == "int8":  # what its state buffer holds (README "Integrating")
                    from charwright.trainer.step_graph import state_encoding

                    per_file["state_encoding"] = state_encoding(_model_cfg(arch))
            else:
                from charwright.export.formats import onnx as onnx_export

                if onnx_float32 is None:
                    onnx_float32 = onnx_export.convert_float32(saved_model, S)
                data = onnx_float32
                if prec != "float32":
                    data = onnx_export.quantize(data, prec)
                ops = onnx_export.op_names(data)
                problems = onnx_export.deploy_problems(ops)
                _write_model_file(tmp / name, onnx_export.add_metadata(data, meta))
                per_file = {"min_runtime": onnx_export.min_runtime(data)}
            if problems:
                raise ExportError(f"{name} holds operators that do not run on devices: "
                                  f"{', '.join(problems)}")
            files.append({"path": name, "format": fmt, "precision": prec,
                          "sha256": sha256_file(tmp / name), "bytes": (tmp / name).stat().st_size,
                          **names, "ops": ops, **per_file})
            on_progress({"event": "converted", "file": name, "bytes": files[-1]["bytes"],
                         "seconds": round(time.perf_counter() - t0, 2)})
        shutil.copyfile(run_dir / "probe.npz", tmp / "probe.npz")
        from charwright.runtime.sampling.golden import write_golden

        golden = write_golden(tmp)  # sampling golden vectors, for ports (runtime/c/SAMPLING.md)
        summary = run.get("summary", {})
        manifest = {
            **facts,
            "format_version": BUNDLE_VERSION,
            "files": files,
            "probe": {"path": "probe.npz", "sha256": sha256_file(tmp / "probe.npz"),
                      "bytes": (tmp / "probe.npz").stat().st_size,
                      "tokens": int(len(probe_tokens)), "device": summary.get("device")},
            "golden": golden,
            "training": {"corpus_sha256": run["corpus"]["sha256"],
                         "corpus_chars": run["corpus"]["chars"], "epochs": summary.get("epochs"),
                         "optimizer_steps": summary.get("optimizer_steps"),
                         "best_val_bpc": summary.get("best_val_bpc"),
                         "device": summary.get("device"), "train": run["train"]},
            # keyword arguments of runtime.sampling.SamplingConfig (null: that processor is off)
            "sampling_defaults": dict(SAMPLING_DEFAULTS),
            "tolerances": {k: vars(v) for k, v in TOLERANCES.items()},
            "created_by": {"charwright": run.get("created_by", {}).get("charwright"),
                           "tensorflow": tf.__version__, "converters": _converter_versions()},
        }
        write_json(tmp / "manifest.json", manifest)

        on_progress({"event": "parity"})
        results = check_files(load_bundle(tmp), threads=threads,
                              on_result=lambda r: on_progress({"event": "parity_file",
                                                               "result": r}))
        seconds = round(time.perf_counter() - t_all, 2)
        failed = _failed_files(results, files)
        if not allow_mismatch:
            results = _leave_out(tmp, manifest, results, failed, named, on_progress)
        manifest["parity"] = [r.to_dict() for r in results]
        manifest["parity_failures_allowed"] = bool(failed) and allow_mismatch
        write_json(tmp / "manifest.json", manifest)
    on_progress({"event": "done", "bundle": str(bundle_dir), "seconds": seconds})
    return manifest


def _row_path(label: str, paths) -> str:
    """The bundle file a parity row measured (TFLite Micro's rows are labelled PATH[tflm])."""
    if label in paths:
        return label
    base = label.rsplit("[", 1)[0]
    return base if base in paths else label


def _failed_files(results, files) -> dict:
    """{path: [failing parity rows]} over every row of a file (its own backend's and TFLite
    Micro's); a file that was not checked here has not failed."""
    paths = {f["path"] for f in files}
    out: dict[str, list] = {}
    for r in results:
        if r.checked and not r.passed:
            out.setdefault(_row_path(r.file, paths), []).append(r)
    return out


def _leave_out(tmp: Path, manifest: dict, results: list, failed: dict, named: set,
               on_progress) -> list:
    """Drops the files outside their tolerance from the bundle being written (tmp), each
    recorded in manifest["left_out"] (path, format, precision, reason, figures: its failing
    parity rows) and announced by a "left_out" event; returns the parity rows of the files
    kept.

    Raises ParityError (nothing is written) when a failing file is of a precision the user
    asked for by name (`named`), when no kept file holds parity, or when nothing could be
    checked here at all."""
    def why(rows) -> str:
        return "; ".join(f"{r.file}: {', '.join(r.failures)}" for r in rows)

    precision = {f["path"]: f["precision"] for f in manifest["files"]}
    refused = {p: rows for p, rows in failed.items() if precision.get(p) in named}
    if refused:
        asked = ", ".join(sorted({precision[p] for p in refused}))
        raise ParityError(f"export refused: outside tolerance: "
                          f"{'; '.join(why(r) for r in refused.values())} (precision {asked} "
                          "was asked for with --precision: drop it to leave such files out, or "
                          "pass --allow-mismatch to keep them with the failure recorded in the "
                          "manifest)")
    kept = [r for r in results if _row_path(r.file, precision) not in failed]
    if failed and not any(r.checked and r.passed for r in kept):
        raise ParityError(f"export refused: no file holds parity: "
                          f"{'; '.join(why(r) for r in failed.values())} (pass --allow-mismatch "
                          "to keep them with the failure recorded in the manifest)")
    try:
        raise_for_failures(kept)  # here: nothing could be checked at all
    except ParityError as e:
        raise ParityError(f"export refused: {e}") from None
    left_out = []
    for f in list(manifest["files"]):
        rows = failed.get(f["path"])
        if rows is None:
            continue
        (tmp / f["path"]).unlink()
        manifest["files"].remove(f)
        entry = {"path": f["path"], "format": f["format"], "precision": f["precision"],
                 "reason": "outside tolerance: " + why(rows),
                 "figures": [r.to_dict() for r in rows]}
        left_out.append(entry)
        on_progress({"event": "left_out", **entry})
    if left_out:
        manifest["left_out"] = left_out
    return kept


def _model_cfg(arch: dict):
    from charwright.runtime.backends.numpy import layer_specs
    from charwright.trainer.config import ModelConfig

    return ModelConfig.from_stack(layer_specs(arch), int(arch.get("embedding_dim") or 0),
                                  int(arch["vocab_size"]))


def _integer_model(run_dir: Path, arch: dict, work: str) -> str:
    """The integer-form step graph (trainer/step_graph.py, integer=True) of the run's weights,
    saved once under `work`; returns its SavedModel directory."""
    path = Path(work) / "integer_saved_model"
    if not path.exists():
        from charwright.trainer.step_graph import build_step_function, save_step_savedmodel

        cfg = _model_cfg(arch)
        with np.load(run_dir / "step" / "weights.npz", allow_pickle=False) as z:
            weights = {k: z[k] for k in z.files}
        save_step_savedmodel(build_step_function(weights, cfg, integer=True), path)
    return str(path)


def _converter_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("tf2onnx", "onnx", "onnxruntime", "ai-edge-litert"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out
