"""`charwright generate` as a real process: pipes that close, Ctrl-C at any moment, bad argv bytes,
a closed stdout. Runs on the demo bundle (no TensorFlow needed)."""

import os
import signal
import subprocess
import sys
import time

import pytest

CLI = [sys.executable, "-m", "charwright.runtime.cli"]


def _start(args, **kw):
    return subprocess.Popen(CLI + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def test_a_reader_that_closes_the_pipe_ends_it_quietly():
    p = subprocess.run(" ".join([f"'{c}'" for c in CLI]) + " generate ROMEO: -n 100000 --seed 1 "
                       "| head -c 20; exit ${PIPESTATUS[0]}", shell=True, executable="/bin/bash",
                       capture_output=True, timeout=120)
    assert p.stdout == "ROMEO:\n".encode() + p.stdout[7:20] and len(p.stdout) == 20
    assert p.returncode == 141  # as for SIGPIPE: the reader went away, not an error of ours
    assert p.stderr == b""


def _interrupt_after(args, delay):
    p = _start(args)
    time.sleep(delay)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    return p.returncode, out, err


@pytest.mark.parametrize("delay", [0.15, 0.25, 0.4, 0.6])
def test_ctrl_c_while_starting_is_quiet(delay):
    """Start-up imports click, numpy and onnxruntime (onnxruntime would swallow a Ctrl-C in its
    import and report itself missing): wherever the signal lands, exit 130 and say nothing.
    (Before the first line of charwright runs, ~20 ms of the interpreter's own start-up, a
    Ctrl-C is Python's: that window is not ours to close, and it is not tested.)"""
    rc, _, err = _interrupt_after(["generate", "ROMEO:", "-n", "100000"], delay)
    assert rc == 130, err
    assert err.strip() == b""


@pytest.mark.parametrize("mode", [[], ["--num-samples", "64"], ["--json"], ["--beam", "256"]])
def test_ctrl_c_while_generating_exits_130_quietly(mode):
    args = ["generate", "ROMEO:", "-n", "200000", *mode]
    if "--beam" not in mode:
        args += ["--seed", "1"]
    p = _start(args)
    first = b""
    if not mode:  # streaming: wait until text flows, so the signal lands mid-generation
        while len(first) < 30:
            first += p.stdout.read1(64)
    else:  # the batch modes print nothing before the end: give them time to be generating
        time.sleep(2.0)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    out = first + out
    assert p.returncode == 130, err
    assert err.strip() == b"", err
    if not mode:  # streaming keeps what it printed and ends the line
        assert out.startswith(b"ROMEO:") and out.endswith(b"\n") and len(out) > 30


@pytest.mark.parametrize("extra", [[], ["--unknown", "skip"]])
def test_a_prompt_that_is_not_utf8_is_one_line(extra):
    p = subprocess.run(CLI + ["generate", b"AB\xffC".decode("utf-8", "surrogateescape"),
                              "-n", "5", *extra], capture_output=True, timeout=60)
    assert p.returncode == 1 and p.stdout == b""
    assert p.stderr.decode() == ("Error: the prompt is not valid UTF-8 (byte 0xff at character "
                                 "2); pass UTF-8 text\n")


def test_closed_stdout_is_one_line():
    p = subprocess.run(" ".join([f"'{c}'" for c in CLI]) + " generate A -n 5 >&-", shell=True,
                       capture_output=True, timeout=60)
    assert p.returncode == 1
    assert p.stderr.decode() == "Error: stdout is closed: there is nowhere to write the text\n"


def test_help_runs_without_numpy_import():
    """The root help and the lazy package import load no numpy (a fast start, so Ctrl-C
    and --help never wait for it)."""
    code = ("import sys; from charwright.runtime.cli import main; "
            "rc = main(['--help']); assert 'numpy' not in sys.modules, 'numpy imported'; "
            "sys.exit(rc)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60,
                       env={**os.environ, "COLUMNS": "100"})
    assert p.returncode == 0, p.stderr
    assert b"charwright generate" in p.stdout


def test_many_samples_stay_bounded_in_time_and_memory():
    """4,096 rows join at once (one concatenation, not one per row) and the sampling noise stays
    within its budget: 800 MB (and 58 s) before rows joined in bulk, ~260 MB now."""
    # VmHWM, not ru_maxrss: the latter survives exec and would report the forking pytest's peak
    code = ("import charwright.runtime as cw; m = cw.load(); "
            "c = m.complete(['ROMEO:'] * 4096, 3, cw.SamplingConfig(seed=1)); "
            "assert len(c) == 4096 and all(len(x.text) == 3 for x in c); "
            "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert int(p.stdout) < 600_000  # KB; the old per-row joins peaked at ~800 MB
