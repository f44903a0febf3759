"""Killed runs resumed: kill -9 during epoch 2 finishes with an unbroken run's steps; a kill at
every phase (issue 24) is finished by the same --resume command, with the unkilled probe."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tiny_models import make_text

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


# --- issue 24 item 2: a kill at any phase, then the same --resume command -----------------------

KILL_ARGS = ["--units", "8", "--embedding-dim", "4", "--seq-len", "16", "--batch-size", "8",
             "--epochs", "2", "--checkpoint-every", "10", "--sample-chars", "0",
             "--probe-chars", "60", "--greedy-chars", "8", "--seed", "3"]


@pytest.fixture(scope="module")
def kill_corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("killcorpus") / "c.txt"
    path.write_text(make_text(8_000, seed=9))  # 56 steps per epoch at batch 8, seq-len 16
    return path


@pytest.fixture(scope="module")
def unkilled(tmp_path_factory, kill_corpus):
    run = tmp_path_factory.mktemp("unkilled") / "run"
    r = subprocess.run(_cli(str(kill_corpus), "-o", str(run), *KILL_ARGS), capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return run


def _probe(run_dir):
    import numpy as np

    with np.load(run_dir / "probe.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


@pytest.mark.parametrize("point", [
    "step@3",            # before the first checkpoint (every 10 steps)
    "step@75",           # mid-epoch 2: 5 steps after its checkpoint at step 70
    "between-epochs@1",  # epoch 1's checkpoint written, epoch 2 not begun
    "epoch-end@2",       # the last epoch's best weights written, its checkpoint not
    "finalize",          # step graph written, probe not (the case)
    "probe-write",       # probe.npz at its temp name, not renamed
])
def test_sigkill_at_every_phase_then_the_same_resume_command_finishes(tmp_path, kill_corpus,
                                                                       unkilled, point):
    """One command, run as a restart loop would: it starts the run (--resume of an empty
    RUN_DIR starts it), dies by SIGKILL at `point`, is run again unchanged and finishes the
    run with the unkilled run's probe, then again and has nothing to do."""
    import numpy as np

    from charwright.trainer.interrupt import KILL_ENV

    run = tmp_path / "run"
    cmd = _cli(str(kill_corpus), "-o", str(run), *KILL_ARGS, "--resume")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                       env={**os.environ, KILL_ENV: point})
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    assert json.loads((run / "run.json").read_text())["status"] == "training"
    assert not (run / "probe.npz").exists()
    if point == "probe-write":
        assert list(run.glob(".probe.npz.*.tmp*"))  # the half-done write is left behind

    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "warning" not in r.stderr  # the same options as the run's own: nothing to warn of
    done = json.loads((run / "run.json").read_text())
    ref = json.loads((unkilled / "run.json").read_text())
    assert done["status"] == "complete"
    for key in ("epochs", "optimizer_steps", "best_epoch", "best_val_loss", "tf32"):
        assert done["summary"][key] == ref["summary"][key], key
    got, want = _probe(run), _probe(unkilled)
    assert sorted(got) == sorted(want)
    for k in ("tokens", "logits", "prompt", "greedy", "tf32"):
        assert np.array_equal(got[k], want[k]), k
    hist = json.loads((run / "history.json").read_text())
    assert [h["epoch"] for h in hist] == [1, 2]
    assert not list(run.rglob("*.tmp*"))

    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stderr == f"nothing to do: {run} finished 2 of 2 epochs\n"
    assert json.loads((run / "run.json").read_text()) == done


def test_an_epoch_redone_after_a_kill_is_sampled_once(tmp_path, kill_corpus):
    """Killed after epoch 1 was sampled but before its checkpoint: the resumed run redoes the
    end of epoch 1 and samples it again; samples.txt keeps one entry per epoch."""
    from charwright.trainer.interrupt import KILL_ENV

    run = tmp_path / "run"
    args = list(KILL_ARGS)
    args[args.index("--sample-chars") + 1] = "20"
    cmd = _cli(str(kill_corpus), "-o", str(run), *args, "--resume")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                       env={**os.environ, KILL_ENV: "epoch-end@1"})
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    assert (run / "samples.txt").read_text().count("=== epoch 1 ") == 1
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    headers = [ln for ln in (run / "samples.txt").read_text().splitlines()
               if ln.startswith("=== epoch ")]
    assert [h.split()[2] for h in headers] == ["1", "2"], headers
