"""The epoch loop: a compiled Keras model fitted epoch by epoch on the prepared data, with
checkpoints (callbacks.py), history.json, best weights, and a sampled line of text per epoch.

Runs on every worker of a cluster; only the chief's run_dir is RUN_DIR (train.py).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np

from charwright.runtime.files.atomic import atomic_path
from charwright.runtime.vocab import Vocabulary

from charwright.trainer import checkpoint as ckpt
from charwright.trainer import run_dir as rd
from charwright.trainer.callbacks import interrupted, loop_state, make_callbacks, save_checkpoint
from charwright.trainer.config import ModelConfig, TrainConfig
from charwright.trainer.data import to_dataset
from charwright.trainer.finalize import LN2
from charwright.trainer.interrupt import InterruptFlag, kill_point
from charwright.trainer.network import build_sequence_model, export_weights
from charwright.trainer.prepare import Prepared
from charwright.trainer.step_graph import build_step_function

Progress = Callable[[dict], None]


def _compile(keras, strategy, model_cfg: ModelConfig, train_cfg: TrainConfig):
    lines = train_cfg.mode == "lines"
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
    return model


def _restore(model, strategy, loop: dict, resume_from: Path | None, on_progress: Progress):
    """Loads resume_from's newest checkpoint (if any) into `model` and `loop`."""
    latest = ckpt.latest_checkpoint(resume_from) if resume_from is not None else None
    if latest is None:
        return
    with strategy.scope():
        saved = ckpt.restore_checkpoint(latest, model)
    loop.update(loop_state(saved))
    on_progress({"event": "resume", "path": str(latest), "epoch": loop["epoch"] + 1,
                 "step": loop["step_in_epoch"], "global_step": loop["global_step"]})


def fit(run_dir: Path, run: dict, prep: Prepared, model_cfg: ModelConfig,
        train_cfg: TrainConfig, strategy, strategy_name: str, resume_from: Path | None,
        on_progress: Progress, is_chief: bool = True) -> dict:
    """The epoch loop: writes checkpoints, history and best weights into run_dir, resuming
    from resume_from's newest checkpoint (run_dir itself, or the chief's RUN_DIR for another
    worker of a cluster). Returns the loop position at the end."""
    import keras

    keras.utils.set_random_seed(train_cfg.seed)
    model = _compile(keras, strategy, model_cfg, train_cfg)
    data, vocab = prep.data, prep.vocab
    loop = {"epoch": 0, "epochs": train_cfg.epochs, "step_in_epoch": 0, "global_step": 0,
            "history": [], "best_val_loss": None, "best_epoch": None, "intervals": [],
            "learning_rate": float(train_cfg.learning_rate), "is_chief": is_chief}
    _restore(model, strategy, loop, resume_from, on_progress)
    on_progress({"event": "start", "run_dir": str(run_dir), "strategy": strategy_name,
                 "params": int(model.count_params()), "steps_per_epoch": data.steps_per_epoch,
                 "vocab": vocab.size, "train_chars": int(len(prep.train_ids)),
                 "val_chars": int(len(prep.val_ids)), "mode": train_cfg.mode,
                 "truncated_lines": getattr(data, "truncated", 0)})

    stateful = train_cfg.mode == "stateful"
    val_ds = _shard(to_dataset(data.val_arrays(), train_cfg.batch_size, drop_remainder=stateful),
                    strategy)
    start_token = vocab.eos_id if train_cfg.mode == "lines" else int(prep.train_ids[0])
    with InterruptFlag() as flag:
        callbacks = make_callbacks(keras, loop, run_dir, model, train_cfg.checkpoint_every,
                                   on_progress, stateful, data.steps_per_epoch, flag)
        while loop["epoch"] < train_cfg.epochs:
            _epoch(run_dir, model, model_cfg, train_cfg, data, vocab, val_ds, callbacks, loop,
                   start_token, flag, on_progress)
            kill_point("epoch-end")
            save_checkpoint(run_dir, model, loop, on_progress)
            kill_point("between-epochs")
            if flag.requested:
                on_progress({"event": "interrupt"})
                raise interrupted(run_dir, loop)
    return loop


def _shard(ds, strategy):
    """Several workers: each takes its part of every global batch (AutoShardPolicy.DATA:
    every worker reads the same batches in the same order and keeps its slice of each), rather
    than tf.data's default of trying to split by file first, which in-memory data has not."""
    import tensorflow as tf

    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return ds
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)


def _epoch(run_dir, model, model_cfg, train_cfg, data, vocab, val_ds, callbacks, loop,
           start_token, flag, on_progress) -> None:
    """One epoch (or the rest of one): fit, history row, best weights, sample."""
    epoch, skip = loop["epoch"], loop["step_in_epoch"]
    train_ds = _shard(to_dataset(data.epoch_arrays(epoch), train_cfg.batch_size,
                                 skip_batches=skip), model.distribute_strategy)
    t0 = time.perf_counter()
    hist = model.fit(train_ds, epochs=1, verbose=0, validation_data=val_ds,
                     callbacks=callbacks, shuffle=False)
    row = _history_row(model, train_cfg, data, loop, hist, t0, skip)
    loop["history"].append(row)
    improved = loop["best_val_loss"] is None or row["val_loss"] < loop["best_val_loss"]
    if improved:
        loop["best_val_loss"], loop["best_epoch"] = row["val_loss"], epoch + 1
        with atomic_path(run_dir / "best.weights.h5", suffix=".weights.h5") as tmp:
            tmp.unlink()
            model.save_weights(str(tmp))
    loop["epoch"], loop["step_in_epoch"] = epoch + 1, 0
    rd.write_history(run_dir, loop["history"])
    on_progress({"event": "epoch", **row, "best": improved})
    if train_cfg.sample_chars and not flag.requested:
        step_mod = build_step_function(export_weights(model, model_cfg), model_cfg)
        text = _sample(step_mod.step, vocab, model_cfg.state_size, start_token,
                       train_cfg.sample_chars, train_cfg.seed + epoch)
        with open(run_dir / "samples.txt", "a", encoding="utf-8") as f:
            f.write(f"=== epoch {epoch + 1} (val {row['val_bpc']:.3f} bits/char)\n{text}\n")
        on_progress({"event": "sample", "epoch": epoch + 1, "text": text})


def _history_row(model, train_cfg, data, loop, hist, t0: float, skip: int) -> dict:
    """history.json's row of the epoch just fitted (from t0, after `skip` batches)."""
    t1 = time.perf_counter()
    h = {k: float(v[-1]) for k, v in hist.history.items()}
    train_time = (loop["t_train_end"] or t1) - loop["t_begin"]
    steps_this = data.steps_per_epoch - skip
    return {
        "epoch": loop["epoch"] + 1,
        "train_loss": h.get("ce", h["loss"]),
        "train_bpc": h.get("ce", h["loss"]) / LN2,
        "val_loss": h.get("val_ce", h.get("val_loss")),
        "val_bpc": h.get("val_ce", h.get("val_loss")) / LN2,
        "steps": steps_this,
        "global_step": loop["global_step"],
        "optimizer_steps": int(model.optimizer.iterations.numpy()),
        "learning_rate": _learning_rate(model),
        "train_seconds": round(train_time, 3),
        "epoch_seconds": round(t1 - t0, 3),
        "chars_per_second": round(steps_this * train_cfg.batch_size * data.T
                                  / max(train_time, 1e-9), 1),
        "resumed_mid_epoch": skip > 0,
    }


def _learning_rate(model) -> float:
    """The optimizer's current learning rate (a schedule's value at the current step)."""
    lr = model.optimizer.learning_rate
    try:
        return float(np.asarray(lr.numpy() if hasattr(lr, "numpy") else lr))
    except (TypeError, ValueError):
        return float("nan")


def _sample(step_fn, vocab: Vocabulary, state_size: int, start: int, n: int, seed: int,
            temperature: float = 0.8) -> str:
    """n characters sampled from the step graph at `temperature`, starting from id `start`."""
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
