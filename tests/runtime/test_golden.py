"""Sampling golden vectors: the Python runtime reproduces them; the demo bundle carries them."""

import json

import pytest
from click.testing import CliRunner

from charwright.runtime.bundle import load_bundle
from charwright.runtime.errors import BundleError
from charwright.runtime.golden import check_golden, make_golden, read_golden
from charwright.runtime.model import DEMO_BUNDLE


def test_make_golden_is_reproduced_and_stable():
    doc = make_golden()
    assert check_golden(doc) == []
    assert json.loads(json.dumps(doc)) == make_golden()  # deterministic, JSON-exact
    names = {c["name"] for c in doc["cases"]}
    assert {"greedy", "categorical", "temperature-0.5", "top-k-3", "top-p-0.7", "min-p-0.3",
            "repetition-penalty", "typical-0.8", "chain"} <= names


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
    from charwright.runtime.commands import verify

    r = CliRunner().invoke(verify, [str(DEMO_BUNDLE), "--format", "onnx"])
    assert "sampling golden vectors: 20 of 20 reproduced" in r.output, r.output
