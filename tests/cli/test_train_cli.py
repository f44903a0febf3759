"""charwright train through the command line."""

import json
import re
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from tiny_models import make_text

from charwright.runtime.cli import cli

pytestmark = [pytest.mark.tf]

FAST = ["--seq-len", "32", "--batch-size", "16", "--embedding-dim", "4", "--sample-chars", "0",
        "--probe-chars", "50", "--greedy-chars", "5"]


def test_config_file_and_flags(tmp_path, tiny_corpus):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"units": 12, "epochs": 1, "cell": "lstm"}))
    r = CliRunner().invoke(cli, ["train", str(tiny_corpus), "-o", str(tmp_path / "r"),
                                 "--config", str(cfg), "--cell", "rnn", "--json", *FAST])
    assert r.exit_code == 0, r.output
    run = json.loads(r.stdout)  # stdout is only the payload
    assert run["model"]["units"] == 12 and run["model"]["cell"] == "rnn"  # the flag wins
    assert "epoch 1: train" in r.stderr

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"unitz": 3}))
    r = CliRunner().invoke(cli, ["train", str(tiny_corpus), "-o", str(tmp_path / "r2"),
                                 "--config", str(bad)])
    assert r.exit_code == 2 and "unknown option(s) unitz" in r.stderr


def test_errors_are_one_line(tmp_path, tiny_corpus):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"ok\n\xc3\x28 broken")
    r = CliRunner().invoke(cli, ["train", str(bad), "-o", str(tmp_path / "r")])
    assert r.exit_code == 1
    assert r.stderr == f"Error: {bad}: invalid UTF-8 at byte offset 3 (invalid continuation byte); convert the file to UTF-8 first\n"
    r = CliRunner().invoke(cli, ["train", "-o", str(tmp_path / "r")])
    assert r.exit_code == 2 and "give at least one CORPUS file" in r.stderr
    r = CliRunner().invoke(cli, ["train", str(tiny_corpus), "-o", str(tmp_path / "r"),
                                 "--units", "0"])
    assert r.exit_code == 2 and "'--units': 0 is not in the range 1<=x<=8192" in r.stderr
    r = CliRunner().invoke(cli, ["train", str(tiny_corpus), "-o", str(tmp_path / "r"),
                                 "--lines", "--stateful"])
    assert r.exit_code == 1 and "pass one" in r.stderr
    assert not (tmp_path / "r").exists()


def test_existing_run_is_refused_and_resume_needs_a_run(tmp_path, tiny_run):
    r = CliRunner().invoke(cli, ["train", "x.txt", "-o", str(tiny_run)])
    assert r.exit_code == 1
    assert r.stderr.strip() == (f"Error: {tiny_run} already holds a run; pass --resume to "
                                "continue it or --force to replace it")
    r = CliRunner().invoke(cli, ["train", "-o", str(tmp_path / "none"), "--resume"])
    assert r.exit_code == 1 and "nothing to resume" in r.stderr


@pytest.mark.parametrize("cfg,msg", [
    ('{"clipnorm": 1e400}', "--clipnorm must be a finite number, not inf"),
    ('{"learning_rate": NaN}', "--learning-rate must be a finite number, not nan"),
    ('{"units": 12.5}', "--units must be an integer, not 12.5"),
    ('{"epochs": true}', "--epochs must be an integer, not True"),
    ('{"lines": "yes"}', "--lines must be true or false, not 'yes'"),
    ('{"output": "elsewhere"}', "unknown option(s) output"),
])
def test_config_values_are_checked(tmp_path, tiny_corpus, cfg, msg):
    f = tmp_path / "cfg.json"
    f.write_text(cfg)
    r = CliRunner().invoke(cli, ["train", str(tiny_corpus), "-o", str(tmp_path / "r"),
                                 "--config", str(f)])
    assert r.exit_code == 2 and msg in r.stderr, r.stderr
    assert not (tmp_path / "r").exists()


def test_absurd_flags_are_usage_errors(tmp_path, tiny_corpus):
    for flag, value, msg in (("--seed", "-1", "-1 is not in the range 0<=x<=4294967295"),
                             ("--learning-rate", "nan", "'nan' is not a finite number"),
                             ("--clipnorm", "inf", "'inf' is not a finite number"),
                             ("--epochs", "0", "0 is not in the range x>=1")):
        r = CliRunner().invoke(cli, ["train", str(tiny_corpus), "-o", str(tmp_path / "r"),
                                     flag, value])
        assert r.exit_code == 2 and msg in r.stderr, (flag, r.stderr)
    assert not (tmp_path / "r").exists()


def _charwright(*args):
    return [sys.executable, "-m", "charwright.runtime.cli", *args]


def _latest(run_dir):
    try:
        name = (run_dir / "checkpoints" / "latest").read_text().strip()
        return json.loads((run_dir / "checkpoints" / name / "state.json").read_text())
    except (OSError, ValueError):
        return None


def test_second_trainer_is_locked_out_and_ctrl_c_saves_a_checkpoint(tmp_path):
    """Two real `charwright train` processes on one RUN_DIR; then SIGINT to the first."""
    corpus = tmp_path / "c.txt"
    corpus.write_text(make_text(60_000, seed=2))
    run = tmp_path / "run"
    args = ["--units", "8", "--embedding-dim", "4", "--seq-len", "16", "--batch-size", "4",
            "--epochs", "50", "--checkpoint-every", "40", "--sample-chars", "0"]
    first = subprocess.Popen(_charwright("train", str(corpus), "-o", str(run), *args),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while _latest(run) is None and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.05)
        assert first.poll() is None, first.stderr.read()
        for extra in ([], ["--force"]):
            r = subprocess.run(_charwright("train", str(corpus), "-o", str(run), *args, *extra),
                               capture_output=True, text=True, timeout=120)
            assert r.returncode == 1
            assert re.fullmatch(rf"Error: {run} is in use by pid {first.pid} \(charwright train "
                                rf".*, since [-0-9: ]+\); wait for it to finish or stop it, then "
                                r"run again\n", r.stderr), r.stderr
        assert first.poll() is None  # the second one did not disturb the first
        first.send_signal(signal.SIGINT)
        _, err = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 130, err
    state = _latest(run)
    lines = err.strip().splitlines()
    assert lines[-1] == (f"interrupted in epoch {state['epoch'] + 1} after step "
                         f"{state['step_in_epoch']} ({state['global_step']} optimizer steps "
                         f"saved); resume with: charwright train -o {run} --resume")
    assert "Aborted" not in err and "Traceback" not in err
    assert json.loads((run / "run.json").read_text())["status"] == "training"
    assert not (run / "probe.npz").exists()


def test_resume_of_a_complete_run_is_nothing_to_do(tiny_run, tiny_corpus):
    """The same command again (a restart loop) exits 0 in one line; only options that differ
    from the run's saved configuration are warned about (tiny_run: GRU 24, seq-len 32)."""
    before = (tiny_run / "run.json").read_text()
    r = CliRunner().invoke(cli, ["train", str(tiny_corpus), "-o", str(tiny_run), "--resume",
                                 "--epochs", "2", "--units", "24", "--seq-len", "32"])
    assert r.exit_code == 0, r.output
    assert r.stderr == f"nothing to do: {tiny_run} finished 2 of 2 epochs\n"
    r = CliRunner().invoke(cli, ["train", "-o", str(tiny_run), "--resume", "--units", "24",
                                 "--cell", "lstm", "--stateful", "--json"])
    assert r.exit_code == 0, r.output
    assert r.stderr == ("warning: --resume uses the run's saved configuration; ignoring --cell, "
                        f"--stateful\nnothing to do: {tiny_run} finished 2 of 2 epochs\n")
    assert json.loads(r.stdout)["status"] == "complete"
    r = CliRunner().invoke(cli, ["train", "-o", str(tiny_run), "--resume", "--epochs", "1"])
    assert r.exit_code == 1 and r.stderr == (
        "Error: --epochs 1: the run has already done 2 epochs; pass more than 2 to train "
        "further\n")
    assert (tiny_run / "run.json").read_text() == before
