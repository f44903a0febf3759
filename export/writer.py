"""RUN_DIR -> BUNDLE_DIR: convert every selected (format, precision), check, write atomically.

The bundle is assembled in a temporary sibling directory: model files (each carrying the
vocabulary and key facts in its own metadata), weights.npz for the numpy backend, probe.npz, and
manifest.json (manifest.py). Each format has its writer (WRITERS: export/formats/), every
file's operators are checked for what breaks on devices, the probe is replayed on every file
(runtime/verify/check.py, the check `charwright verify` runs), and only then is the directory
renamed into place. A failure anywhere leaves no bundle and the previous one untouched.

A file outside its parity tolerance is left out of the bundle and recorded in the manifest's
left_out[] (path, format, precision, reason, figures), unless its precision was asked for by
name (then the export is refused) or allow_mismatch keeps it; a bundle in which no file holds
parity is refused (left_out.py).
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

from charwright.export import manifest as manifest_
from charwright.export.formats import npz, onnx
from charwright.export.formats.job import ExportJob
from charwright.export.formats.tflite import write as tflite
from charwright.export.left_out import failed_files, leave_out
from charwright.runtime.backends import BACKENDS, FORMAT_ALIASES
from charwright.runtime.bundle.manifest import PRECISIONS
from charwright.runtime.bundle.reader import load_bundle, read_manifest
from charwright.runtime.errors import BundleError, ConfigError, ExportError, require
from charwright.runtime.files.atomic import atomic_dir, write_json
from charwright.runtime.files.locking import hold
from charwright.runtime.verify.check import check_files
from charwright.runtime.vocab import Vocabulary
from charwright.trainer import run_dir as rd

# (format, precision) -> file name, in the order they are written, from the backend registry
# (runtime/backends: the one declaration of formats, precisions and file names). ONNX has no
# full-int8 file: static QDQ (onnxruntime quantize_static, calibrated like TFLite's) was
# measured 85x slower than dynamic int8 on the CPU provider (6.2 ms vs 73 us per step at GRU
# 1024) and less accurate (top-1 94.8% vs 97.4% at GRU 512), so dynamic int8 is ONNX's int8.
# One writer per file format, in the order they are written:
# write(job, precision, dest, meta) -> Converted (export/formats/job.py).
WRITERS = {"npz": npz.write, "onnx": onnx.write, "tflite": tflite.write}
FILES = {(spec.format, prec): name
         for spec in sorted(BACKENDS, key=lambda s: list(WRITERS).index(s.format))
         for prec, name in spec.file_names.items()}
FORMAT_NAMES = FORMAT_ALIASES
# the --format choices: each backend's manifest format, except npz, which users call numpy
FORMAT_CHOICES = tuple({"npz": "numpy"}.get(s.format, s.format) for s in BACKENDS)


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
        raise ConfigError(f"unknown format(s) {sorted(bad)}: use {', '.join(FORMAT_CHOICES)}")
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
    with np.load(run_dir / "probe.npz", allow_pickle=False) as z:
        probe_tokens = z["tokens"]
    calibration = _calibration(run, run_dir, step_info["architecture"], vocab, chosen, corpus,
                               probe_tokens, on_progress)
    facts = manifest_.facts(vocab.to_dict(), step_info)
    t_all = time.perf_counter()
    with atomic_dir(bundle_dir, replace=force) as tmp, \
            tempfile.TemporaryDirectory(prefix=".charwright-export-") as work:
        job = ExportJob(run_dir=run_dir, saved_model=str(run_dir / "step" / "saved_model"),
                        arch=step_info["architecture"], layout=step_info["state_layout"],
                        state_size=int(step_info["state_size"]), calibration=calibration,
                        work=Path(work), save=_write_model_file)
        files = [_write_file(job, tmp, fmt, prec, facts, on_progress) for fmt, prec in chosen]
        shutil.copyfile(run_dir / "probe.npz", tmp / "probe.npz")
        from charwright.runtime.sampling.golden import write_golden

        golden = write_golden(tmp)  # sampling golden vectors, for ports (runtime/c/SAMPLING.md)
        probe = manifest_.probe_record(tmp / "probe.npz", len(probe_tokens),
                                       run.get("summary", {}).get("device"))
        manifest = manifest_.assemble(facts, files, probe, golden, run, tf.__version__)
        write_json(tmp / "manifest.json", manifest)
        _check_parity(tmp, manifest, allow_mismatch, named, threads, on_progress)
        _record_invariance(tmp, manifest, on_progress)
        seconds = round(time.perf_counter() - t_all, 2)
        write_json(tmp / "manifest.json", manifest)
    on_progress({"event": "done", "bundle": str(bundle_dir), "seconds": seconds})
    return manifest


def _calibration(run: dict, run_dir: Path, arch: dict, vocab: Vocabulary, chosen, corpus,
                 probe_tokens, on_progress):
    """(token, state) pairs from the float reference (the numpy step of the run's weights) when
    a calibrated file (int8, int16x8) is chosen; None otherwise."""
    if not any(p in ("int8", "int16x8") for _, p in chosen):
        return None
    from charwright.export.formats.tflite.calibration import gather_pairs
    from charwright.runtime.backends.numpy import NumpyStep

    with np.load(run_dir / "step" / "weights.npz", allow_pickle=False) as z:
        ref_step = NumpyStep({k: z[k] for k in z.files}, arch)
    ids = _calibration_ids(run, vocab, corpus, probe_tokens, on_progress)
    pairs = gather_pairs(ref_step, np.asarray(ids, np.int32))
    on_progress({"event": "calibration", "pairs": len(pairs)})
    return pairs


def _write_file(job: ExportJob, tmp: Path, fmt: str, prec: str, facts: dict,
                on_progress) -> dict:
    """Writes one model file of the bundle by its format's writer; returns its files[] entry.
    Raises ExportError if it holds operators that do not run on devices."""
    name = FILES[(fmt, prec)]
    t0 = time.perf_counter()
    on_progress({"event": "convert", "file": name})
    converted = WRITERS[fmt](job, prec, tmp / name, dict(facts, precision=prec, file=name))
    if converted.problems:
        raise ExportError(f"{name} holds operators that do not run on devices: "
                          f"{', '.join(converted.problems)}")
    record = manifest_.file_record(tmp / name, fmt, prec, converted)
    on_progress({"event": "converted", "file": name, "bytes": record["bytes"],
                 "seconds": round(time.perf_counter() - t0, 2)})
    return record


def _check_parity(tmp: Path, manifest: dict, allow_mismatch: bool, named: set, threads: int,
                  on_progress) -> None:
    """Replays the probe on every file of the bundle being written (runtime/verify/check.py),
    leaves failing files out (left_out.py) unless allow_mismatch, and records parity[]."""
    on_progress({"event": "parity"})
    results = check_files(load_bundle(tmp), threads=threads,
                          on_result=lambda r: on_progress({"event": "parity_file", "result": r}))
    failed = failed_files(results, manifest["files"])
    if not allow_mismatch:
        results = leave_out(tmp, manifest, results, failed, named, on_progress)
    manifest["parity"] = [r.to_dict() for r in results]
    manifest["parity_failures_allowed"] = bool(failed) and allow_mismatch


def _record_invariance(tmp: Path, manifest: dict, on_progress) -> None:
    """files[].batch_invariant: whether each kept file gives a row the same logits, bit for bit,
    alone and in any batch, as measured here (runtime/verify/invariance.py); a file whose
    runtime is not installed here is not measured and its entry leaves the key out (readers:
    not recorded, counted as not invariant; `charwright verify` measures it where it runs).
    One progress event per file (invariant None: not measured)."""
    from charwright.export.invariance import measure_file
    from charwright.runtime.errors import BackendUnavailable

    bundle = load_bundle(tmp, verify=False)
    entries = {e.path: e for e in bundle.files}
    on_progress({"event": "batch_invariance_start"})
    for record in manifest["files"]:
        try:
            result = measure_file(bundle, entries[record["path"]])
        except BackendUnavailable as e:
            record.pop("batch_invariant", None)
            on_progress({"event": "batch_invariance", "file": record["path"], "invariant": None,
                         "max_abs": None, "reason": str(e).splitlines()[0]})
            continue
        record["batch_invariant"] = result.invariant
        on_progress({"event": "batch_invariance", "file": record["path"],
                     "invariant": result.invariant, "max_abs": result.max_abs})
