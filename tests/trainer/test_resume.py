"""kill -9 during epoch 2 of a 3-epoch run; --resume finishes it with an unbroken run's steps."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import make_text

pytestmark = pytest.mark.tf

ARGS = ["--units", "8", "--embedding-dim", "4", "--seq-len", "16", "--batch-size", "4",
        "--epochs", "3", "--checkpoint-every", "25", "--sample-chars", "0", "--probe-chars", "50",
        "--greedy-chars", "5", "--seed", "7"]


def _cli(*args):
    return [sys.executable, "-m", "charwright.runtime.cli", "train", *args]


def _latest_state(run_dir):
    try:
        name = (run_dir / "checkpoints" / "latest").read_text().strip()
        return json.loads((run_dir / "checkpoints" / name / "state.json").read_text())
    except (OSError, ValueError):
        return None


def test_sigkill_in_epoch_two_then_resume(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text(make_text(60_000, seed=5))
    killed, unbroken = tmp_path / "killed", tmp_path / "unbroken"

    proc = subprocess.Popen(_cli(str(corpus), "-o", str(killed), *ARGS),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    state, deadline = None, time.monotonic() + 240
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            state = _latest_state(killed)
            if state and state["epoch"] == 1 and state["step_in_epoch"] > 0:
                break  # a mid-epoch-2 checkpoint exists: epoch 2 is under way
            time.sleep(0.01)
        assert proc.poll() is None, "the run ended before it could be killed: " + proc.stderr.read()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert json.loads((killed / "run.json").read_text())["status"] == "training"

    r = subprocess.run(_cli("-o", str(killed), "--resume"), capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resuming from" in r.stderr

    r = subprocess.run(_cli(str(corpus), "-o", str(unbroken), *ARGS), capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]

    a = json.loads((killed / "run.json").read_text())["summary"]
    b = json.loads((unbroken / "run.json").read_text())["summary"]
    assert a["epochs"] == b["epochs"] == 3
    assert a["optimizer_steps"] == b["optimizer_steps"]
    hist = json.loads((killed / "history.json").read_text())
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    assert hist[1]["resumed_mid_epoch"] and hist[1]["steps"] < hist[0]["steps"]
    assert not list(killed.rglob("*.tmp*"))
