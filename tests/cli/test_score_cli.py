"""charwright score: the figure itself, checked against an independent computation."""

import io
import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from charwright.runtime.bundle import load_bundle
from charwright.runtime.cli import cli
from charwright.runtime.model import DEMO_BUNDLE

ONNX = "model.int8-dynamic.onnx"


def _probe_text(tmp_path):
    b = load_bundle(DEMO_BUNDLE)
    tokens = b.probe()["tokens"]
    path = tmp_path / "probe.txt"
    path.write_text(b.vocab.decode(tokens), encoding="utf-8")
    return b, tokens, path


def _independent_bpc(bundle, backend_name, tokens):
    """One step() at a time (not parity.replay), log-softmax in float64."""
    from charwright.runtime.backends import open_backend

    entry = bundle.find({"onnx": "onnx", "litert": "tflite"}[backend_name])
    be = open_backend(bundle, entry)
    state, total = be.initial_state(1), 0.0
    for t, nxt in zip(tokens[:-1], tokens[1:]):
        logits, state = be.step(np.array([t], np.int32), state)
        z = logits[0].astype(np.float64)
        total += z[nxt] - (z.max() + math.log(np.exp(z - z.max()).sum()))
    return -total / (len(tokens) - 1) / math.log(2)


@pytest.mark.parametrize("backend", ["onnx", pytest.param("litert", marks=pytest.mark.litert)])
def test_score_equals_an_independent_computation(tmp_path, backend):
    b, tokens, path = _probe_text(tmp_path)
    r = CliRunner().invoke(cli, ["score", str(path), "--backend", backend, "--json"])
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    assert got["chars"] == len(tokens) - 1 == 1999
    # float32 logits summed in a different order: agree to ~1e-6 relative, never bit for bit
    assert got["bits_per_char"] == pytest.approx(_independent_bpc(b, backend, tokens), rel=1e-5)
    assert got["logprob"] == pytest.approx(-got["bits_per_char"] * 1999 * math.log(2), rel=1e-9)
    # the same figure export recorded for this file on another CPU (int8 kernels differ a little)
    recorded = {p["file"]: p["bpc"] for p in b.manifest["parity"]}[got["model"]]
    assert got["bits_per_char"] == pytest.approx(recorded, rel=2e-3)


def test_leading_bom_is_stripped_like_train_does(tmp_path):
    _, _, path = _probe_text(tmp_path)
    bom = tmp_path / "bom.txt"
    bom.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    a = CliRunner().invoke(cli, ["score", str(path), "--json"])
    c = CliRunner().invoke(cli, ["score", str(bom), "-b", str(DEMO_BUNDLE), "--json"])
    assert c.exit_code == 0, c.output
    assert json.loads(c.stdout)["bits_per_char"] == json.loads(a.stdout)["bits_per_char"]
    two = tmp_path / "two.txt"
    two.write_bytes(b"\xef\xbb\xbf\xef\xbb\xbfab")  # only one is a BOM; the second is text
    r = CliRunner().invoke(cli, ["score", str(two)])
    assert r.exit_code == 1
    assert "not in the model's vocabulary: '\\ufeff' at 0" in r.stderr


def test_stdout_carries_only_the_result(tmp_path):
    _, _, path = _probe_text(tmp_path)
    r = CliRunner().invoke(cli, ["score", str(path)])
    assert r.exit_code == 0
    assert r.stdout.count("\n") == 1 and r.stdout.endswith(f"over 1,999 characters ({ONNX})\n")
    assert r.stderr == ""  # a short run on a pipe prints no progress line


def test_progress_lines_on_a_pipe_and_in_place_on_a_terminal():
    from charwright.runtime.progress import Progress

    now = [0.0]
    out = io.StringIO()
    p = Progress("score", "chars", stream=out, interval=5.0, tty=False, clock=lambda: now[0])
    for t, done in ((1, 10), (4.9, 40), (5.1, 50), (6, 60), (10.2, 100)):
        now[0] = t
        p.update(done, 100)
    p.close()
    assert out.getvalue().splitlines() == [
        "score:  50.0% (50 / 100 chars, 10 chars/s, ~5 s left)",
        "score: 100.0% (100 / 100 chars, 10 chars/s)"]
    tty = io.StringIO()
    p = Progress("score", "chars", stream=tty, tty=True, clock=lambda: now[0])
    now[0] += 1
    p.update(10, 100)
    p.close()
    assert tty.getvalue().startswith("\r\x1b[2Kscore:  10.0%") and tty.getvalue().endswith(
        "\r\x1b[2K") and "\n" not in tty.getvalue()
