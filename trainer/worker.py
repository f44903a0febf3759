"""A worker of a cluster other than the chief (TF_CONFIG naming two or more tasks, see
strategy.py): the chief's configuration, vocabulary, data order and steps, nothing written to
RUN_DIR; and the one line a lost peer becomes (WorkerLost)."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from charwright.runtime.errors import RunDirError

from charwright.trainer import run_dir as rd
from charwright.trainer.fit import fit
from charwright.trainer.interrupt import WorkerLost
from charwright.trainer.prepare import prepare_new, prepare_resume, saved_loop
from charwright.trainer.strategy import make_strategy

Progress = Callable[[dict], None]


@contextlib.contextmanager
def cluster_errors(tf, run_dir: Path):
    """Turns a collective that failed because a peer died (the coordination service stops
    hearing its heartbeats: UnavailableError) or hung (CommunicationOptions timeout:
    DeadlineExceededError) into WorkerLost, naming the first line of TensorFlow's message."""
    lost = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError,
            tf.errors.AbortedError, tf.errors.CancelledError)
    try:
        yield
    except lost as e:
        raise WorkerLost(run_dir, lost_detail(e)) from None


def lost_detail(e) -> str:
    """One line from TensorFlow's multi-line collective error: the tasks that stopped sending
    heartbeats, else the first line that names a timeout, else the first line."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    for i, ln in enumerate(lines):
        if "unhealthy" in ln:
            tasks = [t for t in lines[i + 1:] if t.startswith("/job:")]
            return f"{', '.join(tasks) or 'a task'} stopped sending heartbeats"
    named = [ln for ln in lines if "timed out" in ln.lower() or "deadline" in ln.lower()]
    return f"{type(e).__name__}: {(named or lines or [''])[0]}"


def train_worker(tf, cluster, corpus_paths, run_dir: Path, model_cfg, train_cfg, resume: bool,
                 epochs, distribute: str, on_progress: Progress) -> dict:
    """A worker other than the chief: the same configuration, vocabulary, data order and
    steps as the chief, nothing written to RUN_DIR. Returns {"worker": {...}}."""
    if resume:
        if not rd.has_run(run_dir):
            raise RunDirError(f"nothing to resume: {run_dir} holds no run.json; every worker "
                              "reads the chief's RUN_DIR: give them all one shared path")
        run = rd.read_run(run_dir)  # read-only, no lock: the chief holds it
        model_cfg, train_cfg, done, prep = prepare_resume(
            run_dir, run, epochs, corpus_paths, "give every worker the same files")
    else:
        model_cfg, train_cfg, prep = prepare_new(corpus_paths, model_cfg, train_cfg)
        run, done = {}, 0
    strategy, strategy_name = make_strategy(tf, distribute, 0, train_cfg.mode, cluster)
    if done >= train_cfg.epochs:  # the chief only finalizes: no step for this worker to share
        loop = saved_loop(run_dir, train_cfg)
    else:
        scratch = Path(tempfile.mkdtemp(
            prefix=f"charwright-{cluster.task_type}{cluster.task_index}-"))
        try:
            loop = fit(scratch, run, prep, model_cfg, train_cfg, strategy, strategy_name,
                       run_dir if resume else None, on_progress, is_chief=False)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    last = loop["history"][-1] if loop["history"] else {}
    worker = {"task_type": cluster.task_type, "task_index": cluster.task_index,
              "run_dir": str(run_dir), "epochs": len(loop["history"]),
              "optimizer_steps": last.get("optimizer_steps")}
    on_progress({"event": "worker_done", **worker})
    return {"worker": worker}
