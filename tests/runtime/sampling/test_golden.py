"""Sampling golden vectors: the Python runtime reproduces them; the demo bundle carries them."""

import json

import pytest
from click.testing import CliRunner

from charwright.runtime.bundle.reader import load_bundle
from charwright.runtime.errors import BundleError
from charwright.runtime.sampling.golden import check_golden, make_golden, read_golden
from charwright.runtime.model import DEMO_BUNDLE


def test_make_golden_is_reproduced_and_stable():
    doc = make_golden()
    assert check_golden(doc) == []
    assert json.loads(json.dumps(doc)) == make_golden()  # deterministic, JSON-exact
    names = {c["name"] for c in doc["cases"]}
    assert {"greedy", "categorical", "temperature-0.5", "top-k-3", "top-p-0.7", "min-p-0.3",
            "repetition-penalty", "typical-0.8", "chain", "top-p-0.8-10000",
            "repetition-penalty-positive", "greedy-penalty-inverse", "greedy-penalty-window",
            "repetition-once-per-id", "temperature-product-tie", "top-k-ties-kth",
            "min-p-boundary", "typical-near-tie", "all-masked", "chain-all"} <= names


def test_the_large_vocabulary_case_draws_the_last_id_of_the_nucleus():
    """llama.cpp's 10,000-id sampler-queue case (mirrored): top-p 0.8 keeps ids 0..5527 and the
    vector draws 5527, so a port whose nucleus stops short of p (as 2**-10 slack did: 0..5518)
    fails it; the kept mass 0.80004 >= 0.8 by the exact probabilities."""
    import numpy as np

    case = next(c for c in make_golden()["cases"] if c["name"] == "top-p-0.8-10000")
    assert len(case["logits"]) == 10_000 and case["sampling"] == {"top_p": 0.8}
    assert max(case["expected"]) == 5527 and case["expected"][37] == 5527
    p = np.arange(9_999, -1, -1, dtype=np.float64)
    assert p[:5528].sum() / p.sum() >= 0.8 > p[:5527].sum() / p.sum()


def test_a_changed_vector_is_reported():
    doc = make_golden()
    doc["cases"][1]["expected"][5] = (doc["cases"][1]["expected"][5] + 1) % 8
    assert check_golden(doc) == [f"case 'categorical': step 5 picks "
                                 f"{make_golden()['cases'][1]['expected'][5]}, expected "
                                 f"{doc['cases'][1]['expected'][5]}"]
    with pytest.raises(BundleError, match="not a charwright-sampling-golden"):
        check_golden({"format": "x"})


def test_demo_bundle_carries_the_current_vectors():
    doc = read_golden(load_bundle(DEMO_BUNDLE, verify=False))
    assert doc == json.loads(json.dumps(make_golden()))


def test_verify_reports_the_golden_vectors():
    from charwright.runtime.commands.verify import verify

    doc = make_golden()
    n = len(doc["cases"]) + len(doc["rng"])
    r = CliRunner().invoke(verify, [str(DEMO_BUNDLE), "--format", "onnx"])
    assert f"sampling golden vectors: {n} of {n} reproduced" in r.output, r.output
