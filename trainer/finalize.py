"""The end of a run: best weights -> step SavedModel + weights.npz + step.json, probe.npz, and
run.json marked complete with its summary."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np

from charwright.runtime.files.atomic import atomic_dir, atomic_path, write_json
from charwright.runtime.vocab import Vocabulary

from charwright.trainer import run_dir as rd
from charwright.trainer.config import ModelConfig, TrainConfig
from charwright.trainer.network import build_sequence_model, export_weights
from charwright.trainer.step_graph import build_step_function, run_steps, save_step_savedmodel

LN2 = math.log(2.0)


def step_info(model_cfg: ModelConfig, vocab_size: int, step_diff: float) -> dict:
    """step/step.json: the single step's signature, architecture and state layout."""
    S = model_cfg.state_size
    return {
        "inputs": [{"name": "token", "dtype": "int32", "shape": ["batch"]},
                   {"name": "state", "dtype": "float32", "shape": ["batch", S]}],
        "outputs": [{"name": "logits", "dtype": "float32", "shape": ["batch", vocab_size]},
                    {"name": "new_state", "dtype": "float32", "shape": ["batch", S]}],
        "architecture": model_cfg.architecture(),
        "state_size": S,
        "state_layout": model_cfg.state_layout(),
        "step_check_max_abs_diff": step_diff,
    }


def finalize(run_dir: Path, run: dict, model_cfg: ModelConfig, train_cfg: TrainConfig,
             vocab: Vocabulary, val_ids: np.ndarray, loop: dict,
             on_progress: Callable[[dict], None]) -> dict:
    """Writes step/, probe.npz and the completed run.json (in that order, each atomically, so
    that run.json says "complete" only once the rest is in place); returns run.json's dict.

    Everything comes from best.weights.h5 and `loop` (history, best epoch), so it can be run
    again from the files on disk (`--resume` of a run killed here). The step-graph check and
    the probe are computed with TF32 off (probe.exact_float32)."""
    from charwright.trainer.probe import exact_float32

    with exact_float32():
        return _finalize(run_dir, run, model_cfg, train_cfg, vocab, val_ids, loop, on_progress)


def _finalize(run_dir, run, model_cfg, train_cfg, vocab, val_ids, loop, on_progress) -> dict:
    import tensorflow as tf

    from charwright.trainer.interrupt import kill_point
    from charwright.trainer.probe import record_probe

    ref = build_sequence_model(model_cfg)  # batch-free, not stateful: the reference model
    ref.load_weights(str(run_dir / "best.weights.h5"))
    weights = export_weights(ref, model_cfg)
    module = build_step_function(weights, model_cfg)

    # self-check: the step graph replays the sequence model (also covered by the tests)
    check = np.asarray(val_ids[: min(200, len(val_ids))], np.int32)
    seq_logits = np.asarray(ref(check[None, :], training=False))[0]
    step_logits, _ = run_steps(module.step, check, np.zeros((1, model_cfg.state_size), np.float32))
    step_diff = float(np.max(np.abs(seq_logits - step_logits)))

    with atomic_dir(run_dir / "step", replace=True) as tmp:
        save_step_savedmodel(module, tmp / "saved_model")
        np.savez(tmp / "weights.npz", **weights)
        write_json(tmp / "step.json", step_info(model_cfg, vocab.size, step_diff))
    kill_point("finalize")

    on_progress({"event": "probe", "chars": int(min(train_cfg.probe_chars, len(val_ids)))})
    probe = record_probe(ref, module.step, val_ids, train_cfg.probe_chars, train_cfg.greedy_chars,
                         model_cfg.state_size, vocab.eos_id)
    with atomic_path(run_dir / "probe.npz", suffix=".npz") as tmp:
        np.savez(tmp, **probe)
        kill_point("probe-write")
    kill_point("complete")

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
        "tf32": bool(probe["tf32"]),
        "step_check_max_abs_diff": step_diff,
        "tensorflow": tf.__version__,
    }
    rd.write_run(run_dir, run)
    on_progress({"event": "done", **run["summary"]})
    return run
