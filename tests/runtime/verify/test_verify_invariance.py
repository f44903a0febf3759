"""`charwright verify` measures batch invariance (issue 20 review, item 1): a manifest that calls a
file batch-invariant when a row's logits move with its batch on this CPU fails verify (one line
naming the batch and max |Δ|); a file called not invariant that is invariant is only a note; the
server checks a row at batch 1 vs 3 before it trusts the claim with its prompt cache."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from bundle_factory import edit, make_bundle
from charwright.runtime import load
from charwright.runtime.backends.numpy import NumpyStep
from charwright.runtime.bundle.reader import load_bundle
from charwright.runtime.cli import cli
from charwright.runtime.serve.engine import Engine
from charwright.runtime.verify.invariance import check_bundle


def _leaky(monkeypatch, delta=1e-3):
    """NumpyStep whose logits move with the batch size (what one activation scale per tensor
    does); a row alone is unchanged, so the probe's parity still passes."""
    step = NumpyStep.step

    def leaky(self, tokens, state):
        logits, new_state = step(self, tokens, state)
        return logits + np.float32(delta) * (len(tokens) > 1), new_state

    monkeypatch.setattr(NumpyStep, "step", leaky)


def _bundle(tmp_path, claim):
    d = make_bundle(tmp_path / "b", units=16)

    def mark(m):
        if claim is None:
            m["files"][0].pop("batch_invariant", None)
        else:
            m["files"][0]["batch_invariant"] = claim
    edit(d, mark)
    return d


def test_a_false_claim_of_invariance_fails_verify_naming_batch_and_difference(tmp_path,
                                                                             monkeypatch):
    d = _bundle(tmp_path, True)
    _leaky(monkeypatch)
    r = CliRunner().invoke(cli, ["verify", str(d)])
    assert r.exit_code == 1, r.output
    assert "| weights.npz |" in r.stdout and "| pass |" in r.stdout  # parity itself holds
    (line,) = [x for x in r.stdout.splitlines() if x.strip().startswith("weights.npz:")]
    assert line.strip() == ("weights.npz: FAIL: the manifest says batch-invariant, measured here "
                            "not (batch 2, max |Δ| 0.001)")
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: ") and "batch invariance" in last and "batch 2" in last


def test_the_same_bundle_passes_when_its_rows_do_not_move(tmp_path):
    d = _bundle(tmp_path, True)
    r = CliRunner().invoke(cli, ["verify", str(d)])
    assert r.exit_code == 0, r.output
    assert "  weights.npz: batch-invariant yes" in r.stdout.splitlines()


@pytest.mark.parametrize("claim, said", [(False, "says not batch-invariant"),
                                         (None, "does not record it")])
def test_a_file_invariant_beyond_its_claim_is_a_note(tmp_path, claim, said):
    d = _bundle(tmp_path, claim)
    r = CliRunner().invoke(cli, ["verify", str(d)])
    assert r.exit_code == 0, r.output
    assert f"  weights.npz: batch-invariant yes (note: the manifest {said})" in r.stdout


@pytest.mark.parametrize("claim", [False, None])
def test_a_file_not_claimed_invariant_may_vary_with_the_batch(tmp_path, monkeypatch, claim):
    d = _bundle(tmp_path, claim)
    _leaky(monkeypatch)
    r = CliRunner().invoke(cli, ["verify", str(d)])
    assert r.exit_code == 0, r.output
    assert "  weights.npz: batch-invariant no (batch 2, max |Δ| 0.001)" in r.stdout


def test_json_carries_the_measure(tmp_path, monkeypatch):
    d = _bundle(tmp_path, True)
    _leaky(monkeypatch)
    r = CliRunner().invoke(cli, ["verify", str(d), "--json"])
    assert r.exit_code == 1
    (row,) = json.loads(r.stdout)
    inv = row["batch_invariance"]
    assert inv["manifest"] is True and inv["measured"] is False and inv["batch"] == 2
    assert inv["verdict"] == "FAIL" and inv["max_abs"] == pytest.approx(1e-3, rel=1e-3)


def test_a_larger_batch_is_measured_too(tmp_path, monkeypatch):
    """A kernel that changes only from batch 8 up (BLAS blocking) is caught."""
    d = _bundle(tmp_path, True)
    step = NumpyStep.step
    monkeypatch.setattr(NumpyStep, "step", lambda self, t, s: (
        lambda out: (out[0] + np.float32(1e-4) * (len(t) >= 8), out[1]))(step(self, t, s)))
    (res,) = check_bundle(load_bundle(d))
    assert res.failed and res.measured.batch == 8


def test_serve_checks_the_claim_before_it_turns_the_prompt_cache_on(tmp_path, monkeypatch):
    d = _bundle(tmp_path, True)
    e = Engine(load(d, backend="numpy"), prompt_cache_bytes=1 << 20)
    assert e.prompt_cache is not None and "checked here at batch 1, 3" in e.prompt_cache_note
    e.close()
    _leaky(monkeypatch)
    e = Engine(load(d, backend="numpy"), prompt_cache_bytes=1 << 20)
    assert e.prompt_cache is None
    assert e.prompt_cache_note == ("prompt cache off: the manifest says weights.npz is "
                                   "batch-invariant but a row differs at batch 3 here "
                                   "(max |Δ| 0.001)")
    e.close()


def test_serve_says_when_a_bundle_records_nothing(tmp_path):
    e = Engine(load(_bundle(tmp_path, None), backend="numpy"), prompt_cache_bytes=1 << 20)
    assert e.prompt_cache is None and "batch invariance is not recorded" in e.prompt_cache_note
    e.close()


@pytest.mark.parametrize("command", ["generate", "score", "serve"])
def test_precision_help_names_the_default_as_it_is(command):
    """The default file is a batch-invariant one first (Bundle.find), not simply the fastest."""
    r = CliRunner().invoke(cli, [command, "--help"], terminal_width=200)
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    assert "Model file precision (default: the fastest file whose parity passed, " \
           "batch-invariant ones first)." in text
    assert "(default: fastest)" not in text
