"""charwright train through the command line."""

import json

import pytest
from click.testing import CliRunner

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
