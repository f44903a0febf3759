"""Training: corpus -> RUN_DIR (format: run_dir.py) with checkpoints, history, best weights,
then the step graph and probe (finalize.py).

Order of work, so that a bad input costs nothing and destroys nothing: TensorFlow is imported,
the corpus read and the data windows cut (every check that can fail on the input) before
RUN_DIR is touched; only then is RUN_DIR locked, checked again under the lock, cleared of
charwright's own entries (with --force) and written.

Progress goes to `on_progress(event: dict)`; this module never prints.

Several machines (TF_CONFIG naming two or more tasks, see strategy.py): every worker runs this
same code on the same global batches (same corpus, configuration and seed give the same order),
tf.data hands each worker its share of every global batch, and the gradients are all-reduced.
The chief alone writes RUN_DIR. The other workers read RUN_DIR only to --resume (the chief's
configuration, vocabulary and newest checkpoint: RUN_DIR must be one shared path) and write
their own checkpoint and weight files, whose writes take part in the same steps as the chief's,
into a private temp directory deleted when they stop. A worker that dies makes the others fail
with WorkerLost instead of hanging; all are restarted with --resume.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from charwright.runtime.files.atomic import atomic_path, write_json
from charwright.runtime.errors import ConfigError, CorpusError, RunDirError
from charwright.runtime.version import package_version
from charwright.runtime.vocab import Vocabulary

from charwright.trainer import checkpoint as ckpt
from charwright.trainer import run_dir as rd
from charwright.trainer.callbacks import interrupted, loop_state, make_callbacks, save_checkpoint
from charwright.trainer.config import ModelConfig, TrainConfig, config_from_dict, config_to_dict
from charwright.trainer.corpus import read_corpus
from charwright.trainer.data import make_data, split_ids, to_dataset
from charwright.trainer.finalize import LN2, finalize
from charwright.trainer.interrupt import InterruptFlag, WorkerLost, kill_point
from charwright.trainer.network import build_sequence_model, export_weights
from charwright.trainer.step_graph import build_step_function
from charwright.trainer.strategy import DISTRIBUTE, check_cluster, cluster_from_env, import_tf, make_strategy

Progress = Callable[[dict], None]


def _noop(event: dict) -> None:
    pass


@dataclass
class Prepared:
    """The corpus, cut for training: everything checked before RUN_DIR is touched."""

    corpus: object
    vocab: Vocabulary
    train_ids: np.ndarray
    val_ids: np.ndarray
    data: object


def _prepare(corpus_paths, train_cfg: TrainConfig, vocab: Vocabulary | None) -> Prepared:
    corpus = read_corpus(corpus_paths)
    lines = train_cfg.mode == "lines"
    vocab = vocab or Vocabulary.from_text(corpus.text, eos=lines)
    if vocab.size < 2:
        raise CorpusError(f"the corpus holds a single distinct character "
                          f"({''.join(vocab.chars)!r}); a model needs at least two to choose "
                          "between: give a real text")
    ids = vocab.encode(corpus.text)
    if lines:  # split on a line boundary
        train_ids, _ = split_ids(ids, train_cfg.val_fraction, 2)
        eos_pos = np.flatnonzero(train_ids == vocab.eos_id)
        if len(eos_pos) == 0:
            raise CorpusError("line mode needs a corpus of several lines")
        cut = int(eos_pos[-1])
        train_ids, val_ids = ids[:cut], ids[cut:]
    else:
        train_ids, val_ids = split_ids(ids, train_cfg.val_fraction, train_cfg.seq_len + 1)
    data = make_data(train_cfg.mode, train_ids, val_ids, train_cfg.seq_len, train_cfg.batch_size,
                     train_cfg.seed, vocab.eos_id)
    return Prepared(corpus, vocab, train_ids, val_ids, data)


def _check_trained(run_dir: Path, run: dict) -> None:
    if not isinstance(run.get("train"), dict):
        raise RunDirError(f"{run_dir}: this run was imported (charwright import), not trained "
                          "by charwright; there is nothing to resume")


def _nothing_to_do(run_dir: Path, run: dict, epochs: int | None) -> int | None:
    """The epochs done where --resume (with `epochs`, None: the run's own total) has nothing
    left to do: a complete run that `epochs` does not extend. None where there is work."""
    _check_trained(run_dir, run)
    if run.get("status") != "complete":
        return None
    done = ckpt.epochs_done(run_dir)
    if epochs is None or epochs == done:
        return done
    if epochs < done:
        raise ConfigError(f"--epochs {epochs}: the run has already done {done} epochs; pass "
                          f"more than {done} to train further")
    return None


def _resume_config(run_dir: Path, run: dict, epochs: int | None):
    """(model_cfg, train_cfg, epochs done) of the run to resume, with `epochs` to extend it.

    A run whose epochs are all done but which is not complete (killed while it recorded the
    step graph and probe) resumes too: only its finalize is left."""
    _check_trained(run_dir, run)
    model_cfg = config_from_dict(ModelConfig, run["model"])
    train_cfg = config_from_dict(TrainConfig, run["train"])
    done = ckpt.epochs_done(run_dir)
    if epochs is None:
        return model_cfg, train_cfg, done
    if epochs < done:
        raise ConfigError(f"--epochs {epochs}: the run has already done {done} epochs; pass "
                          f"more than {done} to train further")
    return model_cfg, replace(train_cfg, epochs=epochs), done


def _saved_loop(run_dir: Path, train_cfg: TrainConfig) -> dict:
    """The loop position of the newest checkpoint, for a run whose epochs are all done."""
    latest = ckpt.latest_checkpoint(run_dir)
    if latest is None:
        raise RunDirError(f"{run_dir}: no checkpoint to finish the run from; the run is damaged")
    loop = dict(loop_state(ckpt.read_state(latest)), epochs=train_cfg.epochs)
    if not loop.get("history") or not (run_dir / "best.weights.h5").is_file():
        raise RunDirError(f"{run_dir / 'best.weights.h5'}: missing; the run is damaged")
    return loop


def train(
    corpus_paths,
    run_dir,
    model_cfg: ModelConfig | None = None,
    train_cfg: TrainConfig | None = None,
    *,
    resume: bool = False,
    force: bool = False,
    epochs: int | None = None,
    cpu_devices: int = 0,
    distribute: str = "auto",
    on_progress: Progress | None = None,
) -> dict:
    """Trains a model and writes RUN_DIR (see run_dir.py). Returns run.json's dict.

    With `resume`, the saved configuration is used and training continues from the newest
    checkpoint: the remaining batches of the interrupted epoch, in the order an unbroken run
    would have used, so the run ends with the same number of optimizer steps. `epochs` (resume
    only) sets a new total, which also extends a finished run.

    Resuming is idempotent, so that a restart loop can run one command again and again: a
    run killed at any point (before its first checkpoint, mid-epoch, between epochs, while it
    records the step graph and probe) is finished from what is on disk, and a complete run
    that `epochs` does not extend is left alone (progress event "nothing_to_do", run.json's
    dict returned). With `resume`, no run in RUN_DIR and `corpus_paths` and `model_cfg`
    given, a new run starts (event "new_run").

    With `force`, a previous run in RUN_DIR is replaced, but only once this one can start, and
    only charwright's own entries are deleted (RUN_DIR holding anything else is refused).

    Raises:
        RunDirError: RUN_DIR holds another run (without resume/force), files charwright did not
            write, or is in use by another process (named).
        CorpusError: unreadable, invalid UTF-8, empty or too-short corpus.
        ConfigError: bad configuration values.
        TrainingInterrupted: SIGINT/SIGTERM; a checkpoint was saved first.
        BackendUnavailable: TensorFlow is not installed (the [train] extra).
        WorkerLost: (several machines) another worker died or stopped answering.
    """
    on_progress = on_progress or _noop
    run_dir = Path(run_dir)
    if distribute not in DISTRIBUTE:
        raise ConfigError(f"distribute {distribute!r}: use {', '.join(DISTRIBUTE)}")
    if resume and force:
        raise ConfigError("--resume and --force contradict each other; pass one")
    if epochs is not None and not resume:
        raise ConfigError("epochs= sets a new total for --resume; for a new run set "
                          "TrainConfig.epochs")
    cluster = cluster_from_env()
    if resume:
        # before TensorFlow: a finished run costs nothing, and a worker restarted after the
        # chief finished must not wait for a cluster that will never form
        if rd.has_run(run_dir):
            if cluster is None or cluster.is_chief:
                rd.check_free(run_dir)
            run = rd.read_run(run_dir)
            done = _nothing_to_do(run_dir, run, epochs)
            if done is not None:
                on_progress({"event": "nothing_to_do", "run_dir": str(run_dir), "epochs": done,
                             "of": run["train"]["epochs"]})
                return run
            model_cfg = train_cfg = None  # the run's own configuration is used
        elif corpus_paths and model_cfg is not None and train_cfg is not None:
            on_progress({"event": "new_run", "run_dir": str(run_dir)})
            if epochs is not None:
                train_cfg = replace(train_cfg, epochs=epochs)
            resume, epochs = False, None
    check_cluster(cluster, distribute, train_cfg.mode if train_cfg else "windows")
    # first: a missing extra must not cost a corpus read (and a cluster's strategy must start
    # before any other TensorFlow work)
    tf = import_tf(cpu_devices, cluster)
    import keras

    if cluster is not None and not cluster.is_chief:
        with _cluster_errors(tf, run_dir):
            return _train_worker(tf, cluster, corpus_paths, Path(run_dir), model_cfg, train_cfg,
                                 resume, epochs, distribute, on_progress)
    with contextlib.ExitStack() as stack:
        if resume:
            if not rd.has_run(run_dir):
                raise RunDirError(f"nothing to resume: {run_dir} holds no run.json")
            stack.enter_context(rd.lock(run_dir))
            run = rd.read_run(run_dir)
            done = _nothing_to_do(run_dir, run, epochs)  # again, under the lock
            if done is not None:
                on_progress({"event": "nothing_to_do", "run_dir": str(run_dir), "epochs": done,
                             "of": run["train"]["epochs"]})
                return run
            model_cfg, train_cfg, done = _resume_config(run_dir, run, epochs)
            corpus_paths = corpus_paths or run["corpus"]["paths"]
            prep = _prepare(corpus_paths, train_cfg, Vocabulary.load(run_dir / "vocab.json"))
            if run["corpus"]["sha256"] != prep.corpus.sha256:
                raise CorpusError(
                    "the corpus differs from the one this run was trained on (sha256 mismatch); "
                    "resume with the same files"
                )
            model_cfg = replace(model_cfg, vocab_size=prep.vocab.size)
            strategy, strategy_name = make_strategy(tf, distribute, cpu_devices, train_cfg.mode,
                                                    cluster)
            rd.sweep_temps(run_dir)
            rd.trim_samples(run_dir, done)
            if run["train"] != config_to_dict(train_cfg) or run.get("status") != "training":
                run = dict(run, train=config_to_dict(train_cfg), status="training")
                rd.write_run(run_dir, run)
        else:
            model_cfg = model_cfg or ModelConfig()
            train_cfg = train_cfg or TrainConfig()
            rd.check_target(run_dir, force)  # read-only, early: refuse before reading a corpus
            prep = _prepare(corpus_paths, train_cfg, None)
            # every new run records its stack (one spec per layer: run format version 2)
            model_cfg = replace(model_cfg, vocab_size=prep.vocab.size,
                                stack=tuple(model_cfg.layer_specs()))
            strategy, strategy_name = make_strategy(tf, distribute, cpu_devices, train_cfg.mode,
                                                    cluster)
            # the new run can start: only now is RUN_DIR touched
            run_dir.mkdir(parents=True, exist_ok=True)
            stack.enter_context(rd.lock(run_dir))
            rd.check_target(run_dir, force, locked=True)  # again, under the lock
            rd.clear_run(run_dir)
            run = _new_run(run_dir, prep, model_cfg, train_cfg, tf.__version__,
                           keras.__version__)
        if cluster is not None:
            stack.enter_context(_cluster_errors(tf, run_dir))
        if resume and done >= train_cfg.epochs:  # every epoch done: only finalize is left
            loop = _saved_loop(run_dir, train_cfg)
            on_progress({"event": "finish", "run_dir": str(run_dir), "epochs": done,
                         "of": train_cfg.epochs, "best_epoch": loop["best_epoch"]})
        else:
            loop = _fit(run_dir, run, prep, model_cfg, train_cfg, strategy, strategy_name,
                        run_dir if resume else None, on_progress)
        return finalize(run_dir, run, model_cfg, train_cfg, prep.vocab, prep.val_ids, loop,
                        on_progress)


@contextlib.contextmanager
def _cluster_errors(tf, run_dir: Path):
    """Turns a collective that failed because a peer died (the coordination service stops
    hearing its heartbeats: UnavailableError) or hung (CommunicationOptions timeout:
    DeadlineExceededError) into WorkerLost, naming the first line of TensorFlow's message."""
    lost = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError,
            tf.errors.AbortedError, tf.errors.CancelledError)
    try:
        yield
    except lost as e:
        raise WorkerLost(run_dir, _lost_detail(e)) from None


def _lost_detail(e) -> str:
    """One line from TensorFlow's multi-line collective error: the tasks that stopped sending
    heartbeats, else the first line that names a timeout, else the first line."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    for i, ln in enumerate(lines):
        if "unhealthy" in ln:
            tasks = [t for t in lines[i + 1:] if t.startswith("/job:")]
            return f"{', '.join(tasks) or 'a task'} stopped sending heartbeats"
    named = [ln for ln in lines if "timed out" in ln.lower() or "deadline" in ln.lower()]
    return f"{type(e).__name__}: {(named or lines or [''])[0]}"


def _train_worker(tf, cluster, corpus_paths, run_dir: Path, model_cfg, train_cfg, resume: bool,
                  epochs, distribute: str, on_progress: Progress) -> dict:
    """A worker other than the chief: the same configuration, vocabulary, data order and
    steps as the chief, nothing written to RUN_DIR. Returns {"worker": {...}}."""
    if resume:
        if not rd.has_run(run_dir):
            raise RunDirError(f"nothing to resume: {run_dir} holds no run.json; every worker "
                              "reads the chief's RUN_DIR: give them all one shared path")
        run = rd.read_run(run_dir)  # read-only, no lock: the chief holds it
        model_cfg, train_cfg, done = _resume_config(run_dir, run, epochs)
        corpus_paths = corpus_paths or run["corpus"]["paths"]
        prep = _prepare(corpus_paths, train_cfg, Vocabulary.load(run_dir / "vocab.json"))
        if run["corpus"]["sha256"] != prep.corpus.sha256:
            raise CorpusError("the corpus differs from the one this run was trained on (sha256 "
                              "mismatch); give every worker the same files")
        model_cfg = replace(model_cfg, vocab_size=prep.vocab.size)
    else:
        model_cfg = model_cfg or ModelConfig()
        train_cfg = train_cfg or TrainConfig()
        prep = _prepare(corpus_paths, train_cfg, None)
        model_cfg = replace(model_cfg, vocab_size=prep.vocab.size,
                            stack=tuple(model_cfg.layer_specs()))
        run, done = {}, 0
    strategy, strategy_name = make_strategy(tf, distribute, 0, train_cfg.mode, cluster)
    if done >= train_cfg.epochs:  # the chief only finalizes: no step for this worker to share
        loop = _saved_loop(run_dir, train_cfg)
    else:
        scratch = Path(tempfile.mkdtemp(
            prefix=f"charwright-{cluster.task_type}{cluster.task_index}-"))
        try:
            loop = _fit(scratch, run, prep, model_cfg, train_cfg, strategy, strategy_name,
                        run_dir if resume else None, on_progress, is_chief=False)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    last = loop["history"][-1] if loop["history"] else {}
    worker = {"task_type": cluster.task_type, "task_index": cluster.task_index,
              "run_dir": str(run_dir), "epochs": len(loop["history"]),
              "optimizer_steps": last.get("optimizer_steps")}
    on_progress({"event": "worker_done", **worker})
    return {"worker": worker}


def _new_run(run_dir: Path, prep: Prepared, model_cfg: ModelConfig, train_cfg: TrainConfig,
             tf_version: str, keras_version: str) -> dict:
    write_json(run_dir / "vocab.json", prep.vocab.to_dict())
    c = prep.corpus
    run = {
        "format": rd.RUN_FORMAT,
        "version": rd.RUN_VERSION,
        "status": "training",
        "model": config_to_dict(model_cfg),
        "train": config_to_dict(train_cfg),
        "corpus": {"paths": [f[0] for f in c.files], "sha256": c.sha256,
                   "chars": len(c.text), "files": [list(f) for f in c.files],
                   "train_chars": int(len(prep.train_ids)), "val_chars": int(len(prep.val_ids))},
        "state_layout": model_cfg.state_layout(),
        "created_by": {"charwright": package_version(), "tensorflow": tf_version,
                       "keras": keras_version},
    }
    rd.write_run(run_dir, run)
    return run


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


def _fit(run_dir: Path, run: dict, prep: Prepared, model_cfg: ModelConfig,
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
    latest = ckpt.latest_checkpoint(resume_from) if resume_from is not None else None
    if latest is not None:
        with strategy.scope():
            saved = ckpt.restore_checkpoint(latest, model)
        loop.update(loop_state(saved))
        on_progress({"event": "resume", "path": str(latest), "epoch": loop["epoch"] + 1,
                     "step": loop["step_in_epoch"], "global_step": loop["global_step"]})

    on_progress({"event": "start", "run_dir": str(run_dir), "strategy": strategy_name,
                 "params": int(model.count_params()), "steps_per_epoch": data.steps_per_epoch,
                 "vocab": vocab.size, "train_chars": int(len(prep.train_ids)),
                 "val_chars": int(len(prep.val_ids)), "mode": train_cfg.mode,
                 "truncated_lines": getattr(data, "truncated", 0)})

    B = train_cfg.batch_size
    stateful = train_cfg.mode == "stateful"
    val_ds = _shard(to_dataset(data.val_arrays(), B, drop_remainder=stateful), strategy)
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
    B = train_cfg.batch_size
    epoch = loop["epoch"]
    skip = loop["step_in_epoch"]
    train_ds = _shard(to_dataset(data.epoch_arrays(epoch), B, skip_batches=skip),
                      model.distribute_strategy)
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
        "learning_rate": _learning_rate(model),
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
    rd.write_history(run_dir, loop["history"])
    on_progress({"event": "epoch", **row, "best": improved})
    if train_cfg.sample_chars and not flag.requested:
        step_mod = build_step_function(export_weights(model, model_cfg), model_cfg)
        text = _sample(step_mod.step, vocab, model_cfg.state_size, start_token,
                       train_cfg.sample_chars, train_cfg.seed + epoch)
        with open(run_dir / "samples.txt", "a", encoding="utf-8") as f:
            f.write(f"=== epoch {epoch + 1} (val {row['val_bpc']:.3f} bits/char)\n{text}\n")
        on_progress({"event": "sample", "epoch": epoch + 1, "text": text})


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

