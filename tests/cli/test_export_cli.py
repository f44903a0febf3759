"""charwright train and export through the command line, in real processes: stderr carries
charwright's own lines only (TensorFlow, the converters and onnxruntime are kept off it)."""

import json
import os
import re
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.tf]

# every line charwright itself writes to stderr during train and export
OWN = re.compile(
    r"training [\d,]+ parameters, .*|epoch \d+/\d+ \[[#.]+\] .*|epoch \d+: train .*|sample: .*"
    r"| {8}.*|recording the reference probe .*|done: best val .*"
    r"|calibration: \d+ \(token, state\) pairs.*|converting \S+ \.\.\. [\d,]+ bytes, [\d.]+s"
    r"|parity \(reference probe replayed on every file\):|  -\[[✓✗]\] \S+: top-1 .*"
    r"|bundle written to .*|warning: .*|left out \S+: outside tolerance: .*"
    r"|batch invariance \(a row alone vs in batches, bit for bit, this CPU\):"
    r"|  \S+: batch-invariant (yes|no \(max \|Δ\| \S+\)|not measured( \(.*\))?)"
)


def _run(*args, env=None):
    return subprocess.run([sys.executable, "-m", "charwright.runtime.cli", *args],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def test_stderr_holds_only_charwrights_lines(tmp_path, tiny_corpus):
    env = {"TF_CPP_MIN_LOG_LEVEL": "", "CHARWRIGHT_DEBUG": ""}  # as a user's shell has them
    run, bundle = tmp_path / "run", tmp_path / "bundle"
    r = _run("train", str(tiny_corpus), "-o", str(run), "--units", "8", "--embedding-dim", "4",
             "--epochs", "1", "--seq-len", "16", "--batch-size", "16", "--sample-chars", "20",
             "--probe-chars", "100", "--greedy-chars", "5", env=env)
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    assert lines and all(OWN.fullmatch(line) for line in lines), r.stderr
    r = _run("export", str(run), "-o", str(bundle), "--allow-mismatch", env=env)
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    assert sum(line.startswith("converting ") for line in lines) == 8  # int16x8 included
    assert all(OWN.fullmatch(line) for line in lines), r.stderr
    assert r.stdout.startswith("| file |")  # the parity table is the payload
    m = json.loads((bundle / "manifest.json").read_text())
    assert len(m["files"]) == 8
    # --verbose lets the third-party lines through
    r = _run("export", str(run), "-o", str(bundle), "--force", "--format", "tflite",
             "--precision", "int8", "-v", env=env)
    assert r.returncode in (0, 1)
    assert any(not OWN.fullmatch(line) and not line.startswith("Error: ")
               for line in r.stderr.splitlines()), r.stderr
