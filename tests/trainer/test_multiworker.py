"""Training across machines: two `charwright train` processes on 127.0.0.1 under TF_CONFIG
(MultiWorkerMirroredStrategy). They train to the end like one machine, only the chief writes
RUN_DIR, and a worker SIGKILLed mid-run is survived by restarting both with --resume."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from charwright.runtime.errors import ConfigError
from charwright.trainer.strategy import cluster_from_env
from tiny_models import make_text

ARGS = ["--units", "8", "--embedding-dim", "4", "--seq-len", "16", "--batch-size", "8",
        "--epochs", "2", "--checkpoint-every", "10", "--sample-chars", "0", "--probe-chars", "50",
        "--greedy-chars", "5", "--seed", "7"]


def _tf_config(workers, index):
    return json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})


def test_cluster_from_tf_config():
    two = ["127.0.0.1:1", "127.0.0.1:2"]
    assert cluster_from_env({}) is None
    assert cluster_from_env({"TF_CONFIG": _tf_config(two[:1], 0)}) is None  # one task: local
    w0 = cluster_from_env({"TF_CONFIG": _tf_config(two, 0)})
    w1 = cluster_from_env({"TF_CONFIG": _tf_config(two, 1), "CHARWRIGHT_WORKER_TIMEOUT": "9"})
    assert (w0.tasks, w0.is_chief, w1.is_chief, w1.task_index, w1.timeout) == (2, True, False,
                                                                               1, 9.0)
    chief = {"chief": ["h:1"], "worker": ["h:2"]}
    c = cluster_from_env({"TF_CONFIG": json.dumps({"cluster": chief,
                                                   "task": {"type": "chief", "index": 0}})})
    w = cluster_from_env({"TF_CONFIG": json.dumps({"cluster": chief,
                                                   "task": {"type": "worker", "index": 0}})})
    assert c.is_chief and not w.is_chief  # worker 0 is not the chief where a chief is named
    bad = ["{", json.dumps({"cluster": {"worker": two}}), _tf_config(two, 2),
           json.dumps({"cluster": {"worker": two, "ps": ["h:3"]},
                       "task": {"type": "worker", "index": 0}})]
    for raw in bad:
        with pytest.raises(ConfigError, match="TF_CONFIG"):
            cluster_from_env({"TF_CONFIG": raw})
    with pytest.raises(ConfigError, match="CHARWRIGHT_WORKER_TIMEOUT"):
        cluster_from_env({"TF_CONFIG": _tf_config(two, 0), "CHARWRIGHT_WORKER_TIMEOUT": "-1"})


def test_distribute_none_under_a_cluster_is_refused(tmp_path, monkeypatch):
    from charwright.trainer.train import train

    monkeypatch.setenv("TF_CONFIG", _tf_config(["127.0.0.1:1", "127.0.0.1:2"], 0))
    with pytest.raises(ConfigError, match="--distribute none"):
        train([tmp_path / "c.txt"], tmp_path / "run", distribute="none")
    assert not (tmp_path / "run").exists()


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _start_workers(tmp_path, cmd_args, tag):
    """Two worker processes on fresh loopback ports; each has its own TMPDIR (checked empty
    at the end: a worker's scratch directory is gone when it stops)."""
    workers = [f"127.0.0.1:{p}" for p in _free_ports(2)]
    procs = []
    for i in range(2):
        tmp = tmp_path / f"tmp-{tag}-{i}"
        tmp.mkdir()
        env = dict(os.environ, TF_CONFIG=_tf_config(workers, i), TMPDIR=str(tmp),
                   CHARWRIGHT_WORKER_TIMEOUT="60")
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "charwright.runtime.cli", "train", *cmd_args],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return procs


def _finish(procs, timeout=240):
    outs = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=timeout)
            outs.append((p.returncode, out, err))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=30)
    return outs


def _latest_state(run_dir):
    try:
        name = (run_dir / "checkpoints" / "latest").read_text().strip()
        return json.loads((run_dir / "checkpoints" / name / "state.json").read_text())
    except (OSError, ValueError):
        return None


@pytest.fixture(scope="module")
def corpus_and_unbroken(tmp_path_factory):
    """The corpus and the same run on one machine, unbroken (one process, one device)."""
    pytest.importorskip("tensorflow")
    root = tmp_path_factory.mktemp("multiworker")
    corpus = root / "c.txt"
    corpus.write_text(make_text(12_000, seed=5))
    r = subprocess.run([sys.executable, "-m", "charwright.runtime.cli", "train", str(corpus),
                        "-o", str(root / "single"), *ARGS, "--distribute", "none"],
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-2000:]
    return corpus, root / "single"


@pytest.mark.tf
def test_two_workers_on_loopback_train_like_one_machine(tmp_path, corpus_and_unbroken):
    corpus, single = corpus_and_unbroken
    run = tmp_path / "run"
    (c_rc, c_out, c_err), (w_rc, w_out, w_err) = _finish(
        _start_workers(tmp_path, [str(corpus), "-o", str(run), *ARGS, "--json"], "a"))
    assert c_rc == 0, c_err[-2000:]
    assert w_rc == 0, w_err[-2000:]
    assert "multi-worker mirrored over 2 workers" in c_err and "the chief" in c_err
    assert "worker 1 done: " in w_err and "not the chief" in w_err
    assert json.loads(w_out) == {"worker": {"task_type": "worker", "task_index": 1,
                                            "run_dir": str(run), "epochs": 2,
                                            "optimizer_steps": json.loads(c_out)["summary"][
                                                "optimizer_steps"]}}
    a = json.loads((run / "run.json").read_text())
    b = json.loads((single / "run.json").read_text())
    assert a["status"] == "complete"
    assert a["summary"]["optimizer_steps"] == b["summary"]["optimizer_steps"]
    # the global batch is split between the workers and the gradients summed: one machine's
    # training, up to float32 summation order
    assert a["summary"]["best_val_loss"] == pytest.approx(b["summary"]["best_val_loss"], rel=1e-3)
    assert sorted(p.name for p in run.iterdir()) == sorted(p.name for p in single.iterdir())
    assert not any((tmp_path / "tmp-a-1").iterdir())  # the worker's scratch is gone


@pytest.mark.tf
def test_sigkill_one_worker_then_resume_both(tmp_path, corpus_and_unbroken):
    corpus, single = corpus_and_unbroken
    run = tmp_path / "run"
    chief, worker = _start_workers(tmp_path, [str(corpus), "-o", str(run), *ARGS], "b")
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and worker.poll() is None:
            state = _latest_state(run)
            if state and state["epoch"] == 0 and state["global_step"] >= 20:
                break  # two step checkpoints of epoch 1 are written: mid-run
            time.sleep(0.01)
        assert worker.poll() is None, "the run ended before the kill: " + worker.stderr.read()
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)
        # the chief notices (heartbeats stop) and stops with one line, rather than hanging
        _, err = chief.communicate(timeout=120)
    finally:
        for p in (chief, worker):
            if p.poll() is None:
                p.kill()
                p.wait(timeout=30)
    assert worker.returncode == -signal.SIGKILL
    assert chief.returncode == 75, err[-2000:]
    # which of TensorFlow's errors names the loss first (a heartbeat report, a reset connection)
    # depends on timing; test_lost_worker_message_names_the_silent_task covers the parsing
    assert "Error: the training cluster lost a worker (" in err and "--resume" in err
    assert json.loads((run / "run.json").read_text())["status"] == "training"
    saved = _latest_state(run)
    assert saved["epoch"] == 0 and 0 < saved["global_step"]

    (c_rc, _, c_err), (w_rc, _, w_err) = _finish(
        _start_workers(tmp_path, ["-o", str(run), "--resume"], "c"))
    assert c_rc == 0, c_err[-2000:]
    assert w_rc == 0, w_err[-2000:]
    assert "resuming from" in c_err and "resuming from" in w_err
    a = json.loads((run / "run.json").read_text())["summary"]
    b = json.loads((single / "run.json").read_text())["summary"]
    assert a["epochs"] == b["epochs"] == 2
    assert a["optimizer_steps"] == b["optimizer_steps"]
    hist = json.loads((run / "history.json").read_text())
    assert [h["epoch"] for h in hist] == [1, 2]
    assert hist[0]["resumed_mid_epoch"] and hist[0]["steps"] < hist[1]["steps"]
    assert not list(run.rglob("*.tmp*"))
    assert not any((tmp_path / "tmp-c-1").iterdir())


def test_lost_worker_message_names_the_silent_task():
    from charwright.trainer.worker import lost_detail

    class UnavailableError(Exception):
        pass

    tf_text = ("Graph execution error:\n\nDetected at node CollectiveReduceV2\n\n"
               "Collective ops is aborted by: Error reported from /job:worker/task:1: The "
               "following tasks are unhealthy (stopped sending heartbeats):\n"
               "/job:worker/replica:0/task:1\nThe tasks have crashed. Check the task logs.")
    assert lost_detail(UnavailableError(tf_text)) == (
        "/job:worker/replica:0/task:1 stopped sending heartbeats")
    assert lost_detail(UnavailableError("x\nCollective timed out after 30s\n")) == (
        "UnavailableError: Collective timed out after 30s")
