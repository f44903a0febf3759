"""The restart of a two-worker cluster (issue 24): after the chief was killed while it recorded
the probe, both workers restarted with --resume finish the run (the chief finalizes, the other
has no step to share); after the run is complete, a worker restarted alone has nothing to do
and says so at once instead of waiting for a cluster that will never form."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tiny_models import make_text
from test_multiworker import ARGS, _finish, _start_workers, _tf_config

pytestmark = pytest.mark.tf


def _cli(*args):
    return [sys.executable, "-m", "charwright.runtime.cli", "train", *args]


def test_cluster_restart_finishes_a_run_killed_in_finalize_then_has_nothing_to_do(tmp_path):
    from charwright.trainer.interrupt import KILL_ENV

    corpus = tmp_path / "c.txt"
    corpus.write_text(make_text(6_000, seed=4))
    run = tmp_path / "run"
    r = subprocess.run(_cli(str(corpus), "-o", str(run), *ARGS), capture_output=True, text=True,
                       timeout=240, env={**os.environ, KILL_ENV: "finalize"})
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    assert json.loads((run / "run.json").read_text())["status"] == "training"

    (c_rc, _, c_err), (w_rc, _, w_err) = _finish(
        _start_workers(tmp_path, [str(corpus), "-o", str(run), *ARGS, "--resume"], "f"))
    assert c_rc == 0, c_err[-2000:]
    assert w_rc == 0, w_err[-2000:]
    assert "2 of 2 epochs done; finishing the run from the best weights" in c_err
    assert "worker 1 done: " in w_err
    done = json.loads((run / "run.json").read_text())
    assert done["status"] == "complete" and done["summary"]["epochs"] == 2
    with np.load(run / "probe.npz") as p:
        assert not p["tf32"]

    # the run is complete: worker 1 alone (its chief gone for good) exits at once
    env = dict(os.environ, TF_CONFIG=_tf_config(["127.0.0.1:1", "127.0.0.1:2"], 1),
               CHARWRIGHT_WORKER_TIMEOUT="60")
    t0 = time.monotonic()
    r = subprocess.run(_cli(str(corpus), "-o", str(run), *ARGS, "--resume"), env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stderr == f"nothing to do: {run} finished 2 of 2 epochs\n"
    assert time.monotonic() - t0 < 30  # no cluster formed (TensorFlow is not even imported)
    assert json.loads((run / "run.json").read_text()) == done
