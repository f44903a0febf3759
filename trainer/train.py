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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from charwright.runtime.files.atomic import write_json
from charwright.runtime.errors import ConfigError, RunDirError
from charwright.runtime.version import package_version

from charwright.trainer import run_dir as rd
from charwright.trainer.config import ModelConfig, TrainConfig, config_to_dict
from charwright.trainer.finalize import finalize
from charwright.trainer.fit import fit
from charwright.trainer.prepare import (Prepared, nothing_to_do, prepare_new, prepare_resume,
                                        saved_loop)
from charwright.trainer.strategy import DISTRIBUTE, check_cluster, cluster_from_env, import_tf, make_strategy
from charwright.trainer.worker import cluster_errors, train_worker

Progress = Callable[[dict], None]


def _noop(event: dict) -> None:
    pass


@dataclass
class _Start:
    """Where the chief starts, with RUN_DIR locked: run.json's dict, the prepared corpus, the
    configuration, the strategy and the epochs already done (`finished`: nothing to do)."""

    run: dict
    prep: Prepared | None = None
    model_cfg: ModelConfig | None = None
    train_cfg: TrainConfig | None = None
    strategy: object = None
    strategy_name: str = ""
    done: int = 0
    finished: bool = False


def train(  # over 60 lines only by its docstring: the API contract (body ~45 lines)
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
    _check_options(distribute, resume, force, epochs)
    cluster = cluster_from_env()
    if resume:
        # before TensorFlow: a finished run costs nothing, and a worker restarted after the
        # chief finished must not wait for a cluster that will never form
        finished, resume, epochs, model_cfg, train_cfg = _resume_or_new(
            run_dir, cluster, corpus_paths, model_cfg, train_cfg, epochs, on_progress)
        if finished is not None:
            return finished
    check_cluster(cluster, distribute, train_cfg.mode if train_cfg else "windows")
    # first: a missing extra must not cost a corpus read (and a cluster's strategy must start
    # before any other TensorFlow work)
    tf = import_tf(cpu_devices, cluster)
    import keras

    if cluster is not None and not cluster.is_chief:
        with cluster_errors(tf, run_dir):
            return train_worker(tf, cluster, corpus_paths, Path(run_dir), model_cfg, train_cfg,
                                resume, epochs, distribute, on_progress)

    def new_strategy(cfg: TrainConfig):
        return make_strategy(tf, distribute, cpu_devices, cfg.mode, cluster)

    with contextlib.ExitStack() as stack:
        if resume:
            start = _start_resume(stack, run_dir, corpus_paths, epochs, new_strategy,
                                  on_progress)
            if start.finished:
                return start.run
        else:
            start = _start_new(stack, run_dir, corpus_paths, model_cfg, train_cfg, force,
                               new_strategy, (tf.__version__, keras.__version__))
        if cluster is not None:
            stack.enter_context(cluster_errors(tf, run_dir))
        loop = _loop(run_dir, start, resume, on_progress)
        return finalize(run_dir, start.run, start.model_cfg, start.train_cfg, start.prep.vocab,
                        start.prep.val_ids, loop, on_progress)


def _check_options(distribute: str, resume: bool, force: bool, epochs: int | None) -> None:
    if distribute not in DISTRIBUTE:
        raise ConfigError(f"distribute {distribute!r}: use {', '.join(DISTRIBUTE)}")
    if resume and force:
        raise ConfigError("--resume and --force contradict each other; pass one")
    if epochs is not None and not resume:
        raise ConfigError("epochs= sets a new total for --resume; for a new run set "
                          "TrainConfig.epochs")


def _finished(run_dir: Path, run: dict, epochs: int | None, on_progress: Progress) -> bool:
    """True (and the "nothing_to_do" event) where --resume has nothing left to do."""
    done = nothing_to_do(run_dir, run, epochs)
    if done is None:
        return False
    on_progress({"event": "nothing_to_do", "run_dir": str(run_dir), "epochs": done,
                 "of": run["train"]["epochs"]})
    return True


def _resume_or_new(run_dir: Path, cluster, corpus_paths, model_cfg, train_cfg, epochs,
                   on_progress: Progress):
    """--resume, before TensorFlow: (run.json's dict where there is nothing to do, else None;
    resume, epochs, model_cfg, train_cfg as they now stand). No run in RUN_DIR with a corpus
    and configuration given: a new run (event "new_run")."""
    if rd.has_run(run_dir):
        if cluster is None or cluster.is_chief:
            rd.check_free(run_dir)
        run = rd.read_run(run_dir)
        if _finished(run_dir, run, epochs, on_progress):
            return run, True, epochs, model_cfg, train_cfg
        return None, True, epochs, None, None  # the run's own configuration is used
    if corpus_paths and model_cfg is not None and train_cfg is not None:
        on_progress({"event": "new_run", "run_dir": str(run_dir)})
        if epochs is not None:
            train_cfg = replace(train_cfg, epochs=epochs)
        return None, False, None, model_cfg, train_cfg
    return None, True, epochs, model_cfg, train_cfg


def _start_resume(stack: contextlib.ExitStack, run_dir: Path, corpus_paths, epochs,
                  new_strategy, on_progress: Progress) -> _Start:
    """Locks RUN_DIR and reads the run to resume; marks it "training" again."""
    if not rd.has_run(run_dir):
        raise RunDirError(f"nothing to resume: {run_dir} holds no run.json")
    stack.enter_context(rd.lock(run_dir))
    run = rd.read_run(run_dir)
    if _finished(run_dir, run, epochs, on_progress):  # again, under the lock
        return _Start(run, finished=True)
    model_cfg, train_cfg, done, prep = prepare_resume(run_dir, run, epochs, corpus_paths,
                                                      "resume with the same files")
    strategy, strategy_name = new_strategy(train_cfg)
    rd.sweep_temps(run_dir)
    rd.trim_samples(run_dir, done)
    if run["train"] != config_to_dict(train_cfg) or run.get("status") != "training":
        run = dict(run, train=config_to_dict(train_cfg), status="training")
        rd.write_run(run_dir, run)
    return _Start(run, prep, model_cfg, train_cfg, strategy, strategy_name, done)


def _start_new(stack: contextlib.ExitStack, run_dir: Path, corpus_paths, model_cfg, train_cfg,
               force: bool, new_strategy, versions: tuple[str, str]) -> _Start:
    """Checks the target and the corpus, then (only then) locks, clears and starts RUN_DIR."""
    rd.check_target(run_dir, force)  # read-only, early: refuse before reading a corpus
    model_cfg, train_cfg, prep = prepare_new(corpus_paths, model_cfg, train_cfg)
    strategy, strategy_name = new_strategy(train_cfg)
    # the new run can start: only now is RUN_DIR touched
    run_dir.mkdir(parents=True, exist_ok=True)
    stack.enter_context(rd.lock(run_dir))
    rd.check_target(run_dir, force, locked=True)  # again, under the lock
    rd.clear_run(run_dir)
    run = _new_run(run_dir, prep, model_cfg, train_cfg, *versions)
    return _Start(run, prep, model_cfg, train_cfg, strategy, strategy_name)


def _loop(run_dir: Path, start: _Start, resume: bool, on_progress: Progress) -> dict:
    """The epochs left fitted (or, every epoch done, the newest checkpoint's position)."""
    if resume and start.done >= start.train_cfg.epochs:  # only finalize is left
        loop = saved_loop(run_dir, start.train_cfg)
        on_progress({"event": "finish", "run_dir": str(run_dir), "epochs": start.done,
                     "of": start.train_cfg.epochs, "best_epoch": loop["best_epoch"]})
        return loop
    return fit(run_dir, start.run, start.prep, start.model_cfg, start.train_cfg, start.strategy,
               start.strategy_name, run_dir if resume else None, on_progress)


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
