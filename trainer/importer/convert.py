"""`charwright import`: a Keras model trained elsewhere -> RUN_DIR (format: run_dir.py).

The file is judged before Keras reads it (archive.py), parsed layer by layer (keras.py; a
weights-only file with the stack given as options: weights.py), rebuilt as charwright's own
sequence model with ids permuted to charwright's vocabulary (rebuild.py, vocab.py), checked
against the original on the probe text, and that rebuild is the reference the probe is
recorded from, on this machine, as at the end of a training run.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable

import numpy as np

from charwright.runtime.errors import ConfigError, require
from charwright.runtime.files.atomic import atomic_dir, write_json
from charwright.runtime.files.locking import hold
from charwright.runtime.files.safefile import sha256_of
from charwright.runtime.version import package_version

from charwright.trainer import run_dir as rd
from charwright.trainer.config import config_to_dict
from charwright.trainer.finalize import step_info
from charwright.trainer.importer.archive import ImportRefused, check_model_file
from charwright.trainer.importer.keras import load_keras_model, parse_model
from charwright.trainer.importer.rebuild import (bits_per_char, check_against_original, rebuild,
                                                 to_charwright)
from charwright.trainer.importer.vocab import load_import_vocab, read_text_bounded
from charwright.trainer.importer.weights import parse_stack_option, parse_weights_file
from charwright.trainer.step_graph import build_step_function, run_steps, save_step_savedmodel

CHECK_TOLERANCE = 1e-4  # max |Δ probability| between the original model and its rebuild
MAX_PROBE_TEXT_BYTES = 64 << 20  # the probe records 2,000 characters by default


def import_model(model_path, run_dir, vocab_path, probe_text=None, *, stack: str | None = None,
                 probe_chars: int = 2000, greedy_chars: int = 500, force: bool = False,
                 on_progress: Callable[[dict], None] | None = None) -> dict:
    """Writes RUN_DIR from a Keras model file; returns its run.json.

    Raises:
        ImportRefused: a layer charwright cannot run (named), a vocabulary that does not fit.
        ConfigError: no --probe-text, an unreadable model or vocabulary.
        RunDirError: RUN_DIR holds another run (without force) or files charwright did not write.
    """
    on_progress = on_progress or (lambda ev: None)
    model_path, run_dir = Path(model_path), Path(run_dir)
    iv, text, ids = _read_inputs(model_path, vocab_path, probe_text)
    skipped = len(text) - len(ids)
    rd.check_target(run_dir, force)
    weights_only = model_path.name.endswith(".weights.h5") or stack is not None
    if not weights_only:
        check_model_file(model_path)  # the archive's bounds and the config's sizes, first

    tf = require("tensorflow", "train")
    import keras

    parsed, original, kind = _parse(model_path, stack, weights_only)
    cfg, weights = to_charwright(parsed, iv, str(model_path))
    on_progress({"event": "parsed", "cell": cfg.cell, "specs": cfg.layer_specs(),
                 "vocab": iv.vocab.size, "skipped": skipped})
    ref = rebuild(cfg, weights)
    check_ids = np.asarray(ids[: min(len(ids), max(probe_chars, 200))], np.int32)
    import_diff = _check_rebuild(model_path, original, ref, iv, check_ids, parsed)
    module = build_step_function(weights, cfg)
    step_diff = _step_diff(ref, module, check_ids[:200], cfg.state_size)

    from charwright.trainer.probe import record_probe

    on_progress({"event": "probe", "chars": int(min(probe_chars, len(ids)))})
    probe = record_probe(ref, module.step, ids, probe_chars, greedy_chars, cfg.state_size, None)
    run = {
        "format": rd.RUN_FORMAT, "version": rd.RUN_VERSION, "status": "complete",
        "model": config_to_dict(cfg),
        "train": None,  # not trained by charwright
        "corpus": _probe_corpus(probe_text, text, ids),
        "state_layout": cfg.state_layout(),
        "created_by": {"charwright": package_version(), "tensorflow": tf.__version__,
                       "keras": keras.__version__},
        "import": {"source": str(model_path.resolve()), "sha256": sha256_of(model_path),
                   "kind": kind, "layers": parsed["names"], "softmax_output": parsed["softmax"],
                   "one_hot": parsed["one_hot"], "mask_zero": parsed["mask_zero"],
                   "vocab": iv.describe(), "probe_text_skipped_chars": skipped,
                   "import_check_max_abs_prob_diff": import_diff},
        "summary": {"epochs": None, "optimizer_steps": None, "best_epoch": None,
                    "best_val_loss": None, "best_val_bpc": None, "final_train_bpc": None,
                    "probe_bpc": bits_per_char(probe["logits"], probe["tokens"]),
                    "device": str(probe["device"]), "step_check_max_abs_diff": step_diff,
                    "tensorflow": tf.__version__},
    }
    _write(run_dir, force, iv.vocab, module, weights, step_info(cfg, iv.vocab.size, step_diff),
           probe, run)
    on_progress({"event": "done", "run_dir": str(run_dir), **run["summary"],
                 "import_diff": import_diff})
    return run


def _read_inputs(model_path: Path, vocab_path, probe_text):
    """(ImportedVocab, the probe text, its ids in charwright's vocabulary; characters outside
    it skipped), each checked before anything heavier is read."""
    if probe_text is None:
        raise ConfigError("give --probe-text FILE: the reference probe is recorded from the "
                          "imported model over a text you choose (a few thousand characters "
                          "like its training text); charwright does not invent one")
    if not model_path.is_file():
        raise ConfigError(f"{model_path}: no such model file")
    iv = load_import_vocab(Path(vocab_path))
    text = read_text_bounded(Path(probe_text), MAX_PROBE_TEXT_BYTES, "--probe-text")
    ids = iv.vocab.encode(text, unknown="skip")
    if len(ids) < 2:
        raise ConfigError(f"--probe-text {probe_text}: fewer than two of its characters are in "
                          "the model's vocabulary; give a text like the model's training text")
    return iv, text, ids


def _parse(model_path: Path, stack: str | None, weights_only: bool):
    """(parse_model's dict, the Keras model or None for a weights-only file, run.json's
    import.kind)."""
    if weights_only:
        if stack is None:
            raise ConfigError(f"{model_path} holds weights only (no architecture); give the "
                              "stack with --stack, e.g. --stack gru:1024")
        return parse_weights_file(model_path, parse_stack_option(stack)), None, "keras-weights"
    original = load_keras_model(model_path)
    return parse_model(original), original, "h5" if model_path.suffix == ".h5" else "keras"


def _check_rebuild(model_path: Path, original, ref, iv, ids: np.ndarray, parsed: dict):
    """max |Δ probability| between the original and the rebuild (None for a weights-only
    file, which has no original to run); refused over CHECK_TOLERANCE."""
    if original is None:
        return None
    diff = check_against_original(original, ref, iv, ids, parsed["softmax"] is not None)
    if diff > CHECK_TOLERANCE:
        raise ImportRefused(f"{model_path}: the rebuilt model differs from the original by "
                            f"{diff:.2e} in probability (over {CHECK_TOLERANCE}); a "
                            "layer behaves in a way charwright does not reproduce")
    return diff


def _step_diff(ref, module, ids: np.ndarray, state_size: int) -> float:
    """max |Δ logit| between the sequence model and the step graph over `ids`."""
    seq_logits = np.asarray(ref(ids[None, :], training=False))[0]
    step_logits, _ = run_steps(module.step, ids, np.zeros((1, state_size), np.float32))
    return float(np.max(np.abs(seq_logits - step_logits)))


def _probe_corpus(probe_text, text: str, ids) -> dict:
    """run.json's corpus of an imported run: the probe text (the training corpus is unknown)."""
    sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
    path = str(Path(probe_text).resolve())
    return {"paths": [path], "sha256": sha, "chars": len(text), "files": [[path, sha]],
            "train_chars": int(len(ids)), "val_chars": 0,
            "role": "the probe text (the model's training corpus is unknown)"}


def _write(run_dir: Path, force: bool, vocab, module, weights: dict, step: dict, probe: dict,
           run: dict) -> None:
    """RUN_DIR written whole (a temporary sibling renamed into place), under a lock."""
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    with hold(run_dir.parent / f".{run_dir.name}.lock", str(run_dir), ConfigError, remove=True):
        rd.check_target(run_dir, force)  # again, under the lock
        with atomic_dir(run_dir, replace=run_dir.exists()) as tmp:
            write_json(tmp / "vocab.json", vocab.to_dict())
            (tmp / "step").mkdir()
            save_step_savedmodel(module, tmp / "step" / "saved_model")
            np.savez(tmp / "step" / "weights.npz", **weights)
            write_json(tmp / "step" / "step.json", step)
            np.savez(tmp / "probe.npz", **probe)
            write_json(tmp / "run.json", run)
