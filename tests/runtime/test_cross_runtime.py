"""scripts/cross_runtime.py on a tiny bundle: onnxruntime-web (Node, WASM) against native
onnxruntime, the same file, the same seeded settings; the exported int8 ONNX file's bits on
onnxruntime, onnx.reference and onnxruntime-web; the manifest's files[].portable.

Needs node and onnxruntime-web (`npm ci --prefix scripts/cross_runtime`): skipped without them,
failed instead under CI=true."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

import numpy as np
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


def _steps(step, tokens, state):
    """Logits and states of len(tokens) steps, each row's state carried on."""
    out = []
    for t in tokens:
        logits, state = step(t, state)
        out.append((np.asarray(logits), np.asarray(state)))
    return out


def _token_rows(bundle, batch: int, steps: int):
    """steps x batch tokens: the probe's, each row shifted (rows differ)."""
    ids = bundle.probe()["tokens"].astype(np.int32)
    return [np.array([ids[(i + 7 * r) % len(ids)] for r in range(batch)], np.int32)
            for i in range(steps)]


def _differing(a, b) -> int:
    return sum(not (np.array_equal(la, lb) and np.array_equal(sa, sb))
               for (la, sa), (lb, sb) in zip(a, b))


def _with_file(bundle, entry, data: bytes, d: Path):
    """A copy of the bundle whose `entry` file is `data` (sha256 and bytes updated)."""
    import hashlib
    import json

    shutil.copytree(bundle.root, d)
    (d / entry.path).write_bytes(data)
    m = json.loads((d / "manifest.json").read_text())
    for f in m["files"]:
        if f["path"] == entry.path:
            f["sha256"], f["bytes"] = hashlib.sha256(data).hexdigest(), len(data)
    (d / "manifest.json").write_text(json.dumps(m))
    b = load_bundle(d)
    return b, next(e for e in b.files if e.path == entry.path)


@pytest.mark.tf
@pytest.mark.parametrize("batch", [1, 8])
def test_the_integer_onnx_file_gives_the_same_bits_on_onnxruntime_and_onnx_reference(
        tiny_bundle, tmp_path, batch):
    """Exported int8 ONNX (exact activations, export/formats/onnx_exact.py): every step's logits
    and state identical bit for bit on onnxruntime (as charwright runs it) and on onnx's numpy
    reference; the same file quantized with the runtimes' own Tanh/Sigmoid is not."""
    from charwright.export.formats import onnx as ox
    from charwright.export.formats.onnx_exact import reference_evaluator
    from charwright.runtime.backends import open_backend

    b = load_bundle(tiny_bundle)
    e = b.find("onnx", "int8-dynamic")
    assert e.portable and not {"Tanh", "Sigmoid"} & set(e.ops)
    tokens = _token_rows(b, batch, 25)
    start = np.zeros((batch, b.state_size), np.float32)

    def both(bundle, entry):
        nat, ref = open_backend(bundle, entry), reference_evaluator(bundle.read(entry))
        return (_steps(lambda t, s: nat.step(t, s), tokens, start),
                _steps(lambda t, s: ref.run(["logits", "new_state"],
                                            {"token": t, "state": s}), tokens, start))

    native, reference = both(b, e)
    assert _differing(native, reference) == 0
    assert len({la.tobytes() for la, _ in native}) == len(native)  # the steps move
    old = ox.quantize(b.read(b.find("onnx", "float32")), "int8-dynamic", activations=None)
    assert {"Tanh", "Sigmoid"} & set(ox.op_names(old))
    native_old, reference_old = both(*_with_file(b, e, old, tmp_path / "old"))
    assert _differing(native_old, reference_old) > 0  # numpy's tanh and exp are not MLAS's


@pytest.mark.tf
def test_the_integer_onnx_file_gives_the_same_bits_on_onnxruntime_web(cross, tiny_bundle):
    """The same, on onnxruntime-web (Node, WASM) at batch 1 and 8."""
    from charwright.runtime.backends import open_backend

    b = load_bundle(tiny_bundle)
    e = b.find("onnx", "int8-dynamic")
    nat, web = open_backend(b, e), cross.NodeStep(b, e, MODULES)
    try:
        for batch in (1, 8):
            tokens = _token_rows(b, batch, 25)
            start = np.zeros((batch, b.state_size), np.float32)
            assert _differing(_steps(nat.step, tokens, start),
                              _steps(web.step, tokens, start)) == 0, batch
    finally:
        web.close()


@pytest.mark.tf
def test_the_manifest_says_which_files_are_portable(tiny_bundle):
    from click.testing import CliRunner

    from charwright.runtime.cli import cli

    b = load_bundle(tiny_bundle)
    for e in b.files:
        assert e.portable == (e.format == "onnx" and e.precision == "int8-dynamic"), e.path
    r = CliRunner().invoke(cli, ["info", str(tiny_bundle)])
    assert r.exit_code == 0, r.output
    shown = [line.split()[0] for line in r.output.splitlines() if "portable" in line]
    assert shown == ["model.int8-dynamic.onnx"]


@pytest.mark.parametrize("bad", ["true", 1, None])
def test_portable_must_be_a_json_boolean_and_defaults_to_false(tmp_path, bad):
    from bundle_factory import edit, make_bundle

    from charwright.runtime.errors import BundleError

    d = make_bundle(tmp_path / "b")
    assert not any(f.portable for f in load_bundle(d).files)  # an older manifest: no key
    edit(d, lambda m: m["files"][0].update(portable=bad))
    with pytest.raises(BundleError, match=r"files\[0\]\.portable"):
        load_bundle(d)
