"""Training: corpus -> RUN_DIR with checkpoints, history, best weights, step graph and probe.

    RUN_DIR/
      run.json            format, model + train config, corpus identity, status, summary
      vocab.json          the vocabulary (runtime/vocab.py format)
      history.json/.csv   one row per epoch: loss, bits/char (train, validation), chars/s, steps
      checkpoints/        see checkpoint.py
      best.weights.h5     weights of the epoch with the lowest validation loss
      samples.txt         the sample generated after each epoch
      step/               saved_model/ (serving_default = the single step), weights.npz,
                          step.json (architecture, state layout, inputs, outputs)
      probe.npz           see probe.py

Progress goes to `on_progress(event: dict)`; this module never prints.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np

from charwright.runtime.atomic import atomic_dir, atomic_path, write_json, write_text
from charwright.runtime.errors import ConfigError, CorpusError, RunDirError, require
from charwright.runtime.version import package_version
from charwright.runtime.vocab import Vocabulary

from . import checkpoint as ckpt
from .config import ModelConfig, TrainConfig, config_from_dict, config_to_dict
from .corpus import read_corpus
from .data import make_data, split_ids, to_dataset
from .model import build_sequence_model, export_weights
from .step_graph import STEP_INPUTS, STEP_OUTPUTS, build_step_function, run_steps, save_step_savedmodel

RUN_FORMAT = "charwright-run"
RUN_VERSION = 1
LN2 = math.log(2.0)

Progress = Callable[[dict], None]


def _noop(event: dict) -> None:
    pass


# ---- the run directory ----------------------------------------------------------------------


def read_run(run_dir: Path) -> dict:
    path = Path(run_dir) / "run.json"
    try:
        run = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunDirError(f"{run_dir} holds no charwright run (no run.json)") from None
    except ValueError as e:
        raise RunDirError(f"{path} is not valid JSON: {e}") from None
    if run.get("format") != RUN_FORMAT or int(run.get("version", 0)) != RUN_VERSION:
        raise RunDirError(f"{path}: not a {RUN_FORMAT} v{RUN_VERSION} file")
    return run


def _prepare_run_dir(run_dir: Path, resume: bool, force: bool) -> dict | None:
    """Checks what RUN_DIR holds; returns the existing run when resuming."""
    has_run = (run_dir / "run.json").is_file()
    if resume and force:
        raise ConfigError("--resume and --force contradict each other; pass one")
    if resume:
        if not has_run:
            raise RunDirError(f"nothing to resume: {run_dir} holds no run.json")
        run = read_run(run_dir)
        _sweep_temps(run_dir)
        return run
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"{run_dir} exists and is not a directory")
    if has_run:
        if not force:
            raise RunDirError(
                f"{run_dir} already holds a run; pass --resume to continue it or --force to "
                "replace it"
            )
        read_run(run_dir)  # only ever delete what is recognisably a run of ours
        shutil.rmtree(run_dir)
    elif run_dir.is_dir() and any(run_dir.iterdir()):
        raise RunDirError(
            f"{run_dir} is not empty and holds no charwright run; choose a new directory"
        )
    return None


def _sweep_temps(run_dir: Path) -> None:
    """Removes what a killed run was writing (atomic writes use dot-names with '.tmp')."""
    for folder in (run_dir, run_dir / "checkpoints"):
        for p in folder.glob(".*.tmp*") if folder.is_dir() else ():
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        for p in folder.glob(".*.old-*") if folder.is_dir() else ():
            shutil.rmtree(p, ignore_errors=True)


# ---- TensorFlow setup -----------------------------------------------------------------------


def _import_tf(cpu_devices: int):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    tf = require("tensorflow", "train")
    require("keras", "train")
    if cpu_devices > 1:
        cpus = tf.config.list_physical_devices("CPU")
        try:
            tf.config.set_logical_device_configuration(
                cpus[0], [tf.config.LogicalDeviceConfiguration()] * cpu_devices
            )
        except RuntimeError:
            # already initialised with the same split (a second run in one process) is fine
            if len(tf.config.list_logical_devices("CPU")) != cpu_devices:
                raise ConfigError(
                    "cannot split the CPU into logical devices after TensorFlow started; "
                    "run in a fresh process"
                ) from None
    return tf


def _strategy(tf, distribute: str, cpu_devices: int, mode: str):
    gpus = tf.config.list_logical_devices("GPU")
    if distribute == "none":
        return tf.distribute.get_strategy(), "default"
    if len(gpus) > 1:
        devices = [d.name for d in gpus]
    elif cpu_devices > 1:
        devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    else:
        devices = []
    if distribute == "mirrored" and len(devices) < 2:
        raise ConfigError("--distribute mirrored needs two or more devices (GPUs or --cpu-devices)")
    if len(devices) >= 2:
        if mode == "stateful":
            raise ConfigError("stateful training runs on one device; pass --distribute none")
        return tf.distribute.MirroredStrategy(devices), f"mirrored over {len(devices)} devices"
    return tf.distribute.get_strategy(), "default"


# ---- Keras callbacks -------------------------------------------------------------------------


def _callbacks(keras, loop: dict, run_dir: Path, model, every: int, on_progress: Progress,
               stateful: bool, steps_per_epoch: int):
    """Progress, step checkpoints, stateful resets. `loop` is the live loop position."""

    class Loop(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            loop["t_begin"] = time.perf_counter()
            loop["t_train_end"] = None
            loop["t_last"] = 0.0
            if stateful:
                _reset_states(model)

        def on_train_batch_end(self, batch, logs=None):
            loop["step_in_epoch"] += 1
            loop["global_step"] += 1
            now = time.perf_counter()
            if now - loop["t_last"] >= 0.5 or loop["step_in_epoch"] == steps_per_epoch:
                loop["t_last"] = now
                on_progress({"event": "batch", "epoch": loop["epoch"] + 1,
                             "epochs": loop["epochs"], "step": loop["step_in_epoch"],
                             "steps": steps_per_epoch, "loss": float((logs or {}).get("loss", 0)),
                             "elapsed": now - loop["t_begin"]})
            if every and loop["global_step"] % every == 0 and loop["step_in_epoch"] < steps_per_epoch:
                path = ckpt.save_checkpoint(run_dir, model, _loop_state(loop))
                on_progress({"event": "checkpoint", "path": str(path),
                             "global_step": loop["global_step"]})

        def on_test_begin(self, logs=None):
            if loop["t_train_end"] is None:
                loop["t_train_end"] = time.perf_counter()
            if stateful:
                _reset_states(model)

    return [Loop()]


def _reset_states(model):
    for layer in model.layers:
        if getattr(layer, "stateful", False):
            layer.reset_state()


def _loop_state(loop: dict) -> dict:
    keys = ("epoch", "step_in_epoch", "global_step", "history", "best_val_loss", "best_epoch")
    return {k: loop[k] for k in keys}


# ---- sampling at the end of each epoch -----------------------------------------------------------


def _sample(step_fn, vocab: Vocabulary, state_size: int, start: int, n: int, seed: int,
            temperature: float = 0.8) -> str:
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    state = tf.zeros([1, state_size])
    tok, out = start, []
    for _ in range(n):
        r = step_fn(tf.constant([tok], tf.int32), state)
        state = r["new_state"]
        z = r["logits"].numpy()[0].astype(np.float64) / temperature
        p = np.exp(z - z.max())
        tok = int(rng.choice(len(p), p=p / p.sum()))
        out.append(tok)
    return vocab.decode(out)


# ---- the training run ------------------------------------------------------------------------


def train(
    corpus_paths,
    run_dir,
    model_cfg: ModelConfig | None = None,
    train_cfg: TrainConfig | None = None,
    *,
    resume: bool = False,
    force: bool = False,
    cpu_devices: int = 0,
    distribute: str = "auto",
    on_progress: Progress | None = None,
) -> dict:
    """Trains a model and writes RUN_DIR (see the module docstring). Returns run.json's dict.

    With `resume`, the saved configuration is used and training continues from the newest
    checkpoint: the remaining batches of the interrupted epoch, in the order an unbroken run
    would have used, so the run ends with the same number of optimizer steps.

    Raises:
        RunDirError: RUN_DIR holds another run (without resume/force) or is not a run directory.
        CorpusError: unreadable, invalid UTF-8, empty or too-short corpus.
        ConfigError: bad configuration values.
        BackendUnavailable: TensorFlow is not installed (the [train] extra).
    """
    on_progress = on_progress or _noop
    run_dir = Path(run_dir)
    if distribute not in ("auto", "mirrored", "none"):
        raise ConfigError(f"distribute {distribute!r}: use auto, mirrored or none")
    tf = _import_tf(cpu_devices)  # first: a missing extra must not cost a corpus read
    import keras

    existing = _prepare_run_dir(run_dir, resume, force)
    if existing is not None:
        model_cfg = config_from_dict(ModelConfig, existing["model"])
        train_cfg = config_from_dict(TrainConfig, existing["train"])
        corpus_paths = corpus_paths or existing["corpus"]["paths"]
    model_cfg = model_cfg or ModelConfig()
    train_cfg = train_cfg or TrainConfig()

    corpus = read_corpus(corpus_paths)
    if existing is not None and existing["corpus"]["sha256"] != corpus.sha256:
        raise CorpusError(
            "the corpus differs from the one this run was trained on (sha256 mismatch); resume "
            "with the same files"
        )
    lines = train_cfg.mode == "lines"
    vocab = Vocabulary.from_text(corpus.text, eos=lines)
    if existing is not None:
        vocab = Vocabulary.load(run_dir / "vocab.json")
    model_cfg = replace(model_cfg, vocab_size=vocab.size)
    text = corpus.text
    ids = vocab.encode(text)
    min_val = 2 if lines else train_cfg.seq_len + 1
    if lines:  # split on a line boundary
        train_ids, val_ids = split_ids(ids, train_cfg.val_fraction, min_val)
        cut = len(train_ids)
        eos_pos = np.flatnonzero(ids[:cut] == vocab.eos_id)
        if len(eos_pos) == 0:
            raise CorpusError("line mode needs a corpus of several lines")
        cut = int(eos_pos[-1])
        train_ids, val_ids = ids[:cut], ids[cut:]
    else:
        train_ids, val_ids = split_ids(ids, train_cfg.val_fraction, min_val)
    data = make_data(train_cfg.mode, train_ids, val_ids, train_cfg.seq_len, train_cfg.batch_size,
                     train_cfg.seed, vocab.eos_id)

    strategy, strategy_name = _strategy(tf, distribute, cpu_devices, train_cfg.mode)
    if existing is None:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / "vocab.json", vocab.to_dict())
        run = {
            "format": RUN_FORMAT,
            "version": RUN_VERSION,
            "status": "training",
            "model": config_to_dict(model_cfg),
            "train": config_to_dict(train_cfg),
            "corpus": {"paths": [f[0] for f in corpus.files], "sha256": corpus.sha256,
                       "chars": len(text), "files": [list(f) for f in corpus.files],
                       "train_chars": int(len(train_ids)), "val_chars": int(len(val_ids))},
            "state_layout": model_cfg.state_layout(),
            "created_by": {"charwright": package_version(), "tensorflow": tf.__version__,
                           "keras": keras.__version__},
        }
        write_json(run_dir / "run.json", run)
    else:
        run = existing

    keras.utils.set_random_seed(train_cfg.seed)
    stateful = train_cfg.mode == "stateful"
    with strategy.scope():
        model = build_sequence_model(model_cfg, batch_size=train_cfg.batch_size if stateful else None,
                                     stateful=stateful)
        reduction = "mean_with_sample_weight" if lines else "sum_over_batch_size"
        ce = keras.metrics.SparseCategoricalCrossentropy(from_logits=True, name="ce")
        model.compile(
            optimizer=keras.optimizers.Adam(train_cfg.learning_rate,
                                            clipnorm=train_cfg.clipnorm or None),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=reduction),
            weighted_metrics=[ce] if lines else None,
            metrics=None if lines else [ce],
        )

    loop = {"epoch": 0, "epochs": train_cfg.epochs, "step_in_epoch": 0, "global_step": 0,
            "history": [], "best_val_loss": None, "best_epoch": None}
    latest = ckpt.latest_checkpoint(run_dir) if existing is not None else None
    if latest is not None:
        with strategy.scope():
            saved = ckpt.restore_checkpoint(latest, model)
        loop.update(_loop_state(saved))
        on_progress({"event": "resume", "path": str(latest), "epoch": loop["epoch"] + 1,
                     "step": loop["step_in_epoch"], "global_step": loop["global_step"]})

    on_progress({"event": "start", "run_dir": str(run_dir), "strategy": strategy_name,
                 "params": int(model.count_params()), "steps_per_epoch": data.steps_per_epoch,
                 "vocab": vocab.size, "train_chars": int(len(train_ids)),
                 "val_chars": int(len(val_ids)), "mode": train_cfg.mode,
                 "truncated_lines": getattr(data, "truncated", 0)})

    B = train_cfg.batch_size
    val_ds = to_dataset(data.val_arrays(), B, drop_remainder=stateful)
    callbacks = _callbacks(keras, loop, run_dir, model, train_cfg.checkpoint_every, on_progress,
                           stateful, data.steps_per_epoch)
    start_token = vocab.eos_id if lines else int(train_ids[0])
    while loop["epoch"] < train_cfg.epochs:
        epoch = loop["epoch"]
        skip = loop["step_in_epoch"]
        arrays = data.epoch_arrays(epoch)
        train_ds = to_dataset(arrays, B, skip_batches=skip)
        steps_this = data.steps_per_epoch - skip
        t0 = time.perf_counter()
        hist = model.fit(train_ds, epochs=1, verbose=0, validation_data=val_ds,
                         callbacks=callbacks, shuffle=False)
        t1 = time.perf_counter()
        h = {k: float(v[-1]) for k, v in hist.history.items()}
        train_time = (loop["t_train_end"] or t1) - loop["t_begin"]
        row = {
            "epoch": epoch + 1,
            "train_loss": h.get("ce", h["loss"]),
            "train_bpc": h.get("ce", h["loss"]) / LN2,
            "val_loss": h.get("val_ce", h.get("val_loss")),
            "val_bpc": h.get("val_ce", h.get("val_loss")) / LN2,
            "steps": steps_this,
            "global_step": loop["global_step"],
            "optimizer_steps": int(model.optimizer.iterations.numpy()),
            "train_seconds": round(train_time, 3),
            "epoch_seconds": round(t1 - t0, 3),
            "chars_per_second": round(steps_this * B * data.T / max(train_time, 1e-9), 1),
            "resumed_mid_epoch": skip > 0,
        }
        loop["history"].append(row)
        improved = loop["best_val_loss"] is None or row["val_loss"] < loop["best_val_loss"]
        if improved:
            loop["best_val_loss"], loop["best_epoch"] = row["val_loss"], epoch + 1
            with atomic_path(run_dir / "best.weights.h5", suffix=".weights.h5") as tmp:
                tmp.unlink()
                model.save_weights(str(tmp))
        loop["epoch"], loop["step_in_epoch"] = epoch + 1, 0
        _write_history(run_dir, loop["history"])
        on_progress({"event": "epoch", **row, "best": improved})
        if train_cfg.sample_chars:
            step_mod = build_step_function(export_weights(model, model_cfg), model_cfg)
            text_s = _sample(step_mod.step, vocab, model_cfg.state_size, start_token,
                             train_cfg.sample_chars, train_cfg.seed + epoch)
            with open(run_dir / "samples.txt", "a", encoding="utf-8") as f:
                f.write(f"=== epoch {epoch + 1} (val {row['val_bpc']:.3f} bits/char)\n{text_s}\n")
            on_progress({"event": "sample", "epoch": epoch + 1, "text": text_s})
        path = ckpt.save_checkpoint(run_dir, model, _loop_state(loop))
        on_progress({"event": "checkpoint", "path": str(path), "global_step": loop["global_step"]})

    summary = finalize(run_dir, run, model_cfg, train_cfg, vocab, val_ids, loop, on_progress)
    return summary


def finalize(run_dir: Path, run: dict, model_cfg: ModelConfig, train_cfg: TrainConfig,
             vocab: Vocabulary, val_ids: np.ndarray, loop: dict, on_progress: Progress) -> dict:
    """Best weights -> step SavedModel + weights.npz + step.json, probe.npz, run.json complete."""
    import tensorflow as tf

    from .probe import record_probe

    ref = build_sequence_model(model_cfg)  # batch-free, not stateful: the reference model
    ref.load_weights(str(run_dir / "best.weights.h5"))
    weights = export_weights(ref, model_cfg)
    module = build_step_function(weights, model_cfg)

    # self-check: the step graph replays the sequence model (also covered by the tests)
    check = np.asarray(val_ids[: min(200, len(val_ids))], np.int32)
    seq_logits = np.asarray(ref(check[None, :], training=False))[0]
    step_logits, _ = run_steps(module.step, check, np.zeros((1, model_cfg.state_size), np.float32))
    step_diff = float(np.max(np.abs(seq_logits - step_logits)))

    step_info = {
        "inputs": [{"name": "token", "dtype": "int32", "shape": ["batch"]},
                   {"name": "state", "dtype": "float32", "shape": ["batch", model_cfg.state_size]}],
        "outputs": [{"name": "logits", "dtype": "float32", "shape": ["batch", vocab.size]},
                    {"name": "new_state", "dtype": "float32",
                     "shape": ["batch", model_cfg.state_size]}],
        "architecture": config_to_dict(model_cfg),
        "state_size": model_cfg.state_size,
        "state_layout": model_cfg.state_layout(),
        "step_check_max_abs_diff": step_diff,
    }
    with atomic_dir(run_dir / "step", replace=True) as tmp:
        save_step_savedmodel(module, tmp / "saved_model")
        np.savez(tmp / "weights.npz", **weights)
        write_json(tmp / "step.json", step_info)

    on_progress({"event": "probe", "chars": int(min(train_cfg.probe_chars, len(val_ids)))})
    probe = record_probe(ref, module.step, val_ids, train_cfg.probe_chars, train_cfg.greedy_chars,
                         model_cfg.state_size, vocab.eos_id)
    with atomic_path(run_dir / "probe.npz", suffix=".npz") as tmp:
        np.savez(tmp, **probe)

    last = loop["history"][-1] if loop["history"] else {}
    run = dict(run)
    run["status"] = "complete"
    run["summary"] = {
        "epochs": len(loop["history"]),
        "optimizer_steps": last.get("optimizer_steps"),
        "best_epoch": loop["best_epoch"],
        "best_val_loss": loop["best_val_loss"],
        "best_val_bpc": loop["best_val_loss"] / LN2 if loop["best_val_loss"] is not None else None,
        "final_train_bpc": last.get("train_bpc"),
        "device": str(probe["device"]),
        "step_check_max_abs_diff": step_diff,
        "tensorflow": tf.__version__,
    }
    write_json(run_dir / "run.json", run)
    on_progress({"event": "done", **run["summary"]})
    return run


def _write_history(run_dir: Path, history: list[dict]) -> None:
    write_json(run_dir / "history.json", history)
    buf = io.StringIO()
    if history:
        w = csv.DictWriter(buf, fieldnames=list(history[0]))
        w.writeheader()
        w.writerows(history)
    write_text(run_dir / "history.csv", buf.getvalue())
