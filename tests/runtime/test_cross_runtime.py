"""scripts/cross_runtime.py on a tiny bundle: onnxruntime-web (Node, WASM) against native
onnxruntime, the same file, the same seeded settings.

Needs node and onnxruntime-web (`npm ci --prefix scripts/cross_runtime`): skipped without them,
failed instead under CI=true."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

import pytest

from charwright.runtime.bundle.reader import load_bundle

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "cross_runtime.py"
MODULES = REPO / "scripts" / "cross_runtime"
CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _script():
    spec = importlib.util.spec_from_file_location("cross_runtime", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("cross_runtime", mod)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def cross():
    missing = [what for what, ok in (
        ("node", shutil.which("node") is not None),
        ("onnxruntime-web (npm ci --prefix scripts/cross_runtime)",
         (MODULES / "node_modules" / "onnxruntime-web").is_dir())) if not ok]
    if missing:
        if CI:
            pytest.fail(f"CI=true: {', '.join(missing)} required")
        pytest.skip(f"{', '.join(missing)} not installed")
    return _script()


@pytest.mark.tf
def test_integer_onnx_text_on_onnxruntime_web_equals_native(cross, tiny_bundle):
    b = load_bundle(tiny_bundle)
    entries = [e for e in b.files if e.format == "onnx" and e.precision.startswith("int8")]
    assert entries, "the tiny bundle has no integer ONNX file"
    settings = cross.SETTINGS[:2]
    for e in entries:
        native = cross.python_runtime(b, e, settings, 60)
        web = cross.web_runtime(b, e, settings, 60)
        assert all(len(t) == 60 for t in native)
        assert web == native, e.path


@pytest.mark.tf
def test_the_node_step_returns_the_runtime_numbers(cross, tiny_bundle):
    """The pipe carries float32 bits unchanged: a state sent and the logits that come back are
    those of one onnxruntime-web step, within float rounding of native onnxruntime's."""
    import numpy as np

    from charwright.runtime.backends import open_backend

    b = load_bundle(tiny_bundle)
    e = b.find("onnx", "float32")
    step = cross.NodeStep(b, e, MODULES)
    try:
        native = open_backend(b, e)
        rng = np.random.default_rng(0)
        state = rng.uniform(-1, 1, (3, b.state_size)).astype(np.float32)
        tokens = np.array([0, 3, b.vocab_size - 1], np.int32)
        got, want = step.step(tokens, state), native.step(tokens, state)
        for g, w in zip(got, want):
            assert g.dtype == np.float32 and g.shape == w.shape
            np.testing.assert_allclose(g, w, rtol=0, atol=1e-5)
    finally:
        step.close()
    assert step.proc.returncode == 0


@pytest.mark.tf
def test_the_table_names_every_file_and_its_runtimes(cross, tiny_bundle, capsys):
    assert cross.main([str(tiny_bundle), "--settings", "1", "--chars", "20", "--runtimes",
                       "onnxruntime-web"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| model.") or
            line.startswith("| weights")]
    for e in load_bundle(tiny_bundle).files:
        assert any(line.startswith(f"| {e.path} |") for line in rows), e.path
    web = [line for line in rows if "| onnxruntime-web |" in line]
    assert len(web) == sum(e.format == "onnx" for e in load_bundle(tiny_bundle).files)
    assert all("1/1 same" in line or "0/1 same: @" in line for line in web)
    assert cross.cpu_name() in out


def test_first_divergence(cross):
    assert cross.first_divergence("abc", "abc") is None
    assert cross.first_divergence("abc", "abd") == 2
    assert cross.first_divergence("ab", "abc") == 2
    assert cross.compare(["abc", "xyz"], ["abc", "xyy"]) == "1/2 same: same, @2"
    assert cross.compare("node not installed", ["a"]) == "not run: node not installed"


@pytest.mark.tf
def test_exact_activations_make_the_integer_onnx_file_the_same_bits_everywhere(cross, tiny_bundle,
                                                                               tmp_path):
    """The finding of scripts/cross_runtime/explain.py: in the integer ONNX file only Tanh and
    Sigmoid give other bits on onnxruntime-web than native (and on onnx's numpy reference
    evaluator); with them as an interpolated table of IEEE-exact ops (the prototype
    exact_activations.py) every step is bit-identical on all three."""
    import numpy as np

    sys.path.insert(0, str(MODULES))
    import explain

    b = load_bundle(tiny_bundle)
    e = next(e for e in b.files if e.format == "onnx" and e.precision.startswith("int8"))
    tokens = b.probe()["tokens"][:30].astype(np.int32)
    b2, e2 = explain.with_rewritten(b, e, tmp_path)
    from charwright.runtime.backends import open_backend

    exported_exact = not {"Tanh", "Sigmoid"} & set(e.ops)  # export may adopt the tables
    for bundle, entry, exact in ((b, e, exported_exact), (b2, e2, True)):
        nat = open_backend(bundle, entry)
        web = cross.NodeStep(bundle, entry, MODULES)
        try:
            def native(t, s):
                return nat.step(np.array([t], np.int32), s)

            def on_web(t, s):
                return web.step(np.array([t], np.int32), s)
            vs_web = explain.per_step(native, on_web, tokens, b.state_size)[0]
        finally:
            web.close()
        vs_ref = explain.per_step(native, explain.reference_evaluator(bundle.read(entry)),
                                  tokens, b.state_size)[0]
        if exact:
            assert vs_web == vs_ref == f"0/{len(tokens)}"
        else:
            assert vs_ref != f"0/{len(tokens)}"  # numpy's tanh and exp are not MLAS's
