"""Batch invariance (issue 20): a row's logits and new state, bit for bit, alone and in batches
of 1/2/8/64 beside random other rows, on every file of a tiny bundle whose manifest says it is
invariant; export measures and records it; readers default to an invariant file."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from bundle_factory import edit, make_bundle
from charwright.runtime.backends import open_backend
from charwright.runtime.bundle.reader import load_bundle
from charwright.runtime.model import load
from charwright.runtime.sampling.config import SamplingConfig

BATCHES = (1, 2, 8, 64)


def rows(step, n, rng):
    """n (token, state) rows the model reaches from zero by a few random steps."""
    state = step.initial_state(n)
    for _ in range(5):
        _, state = step.step(rng.integers(0, step.vocab_size, n).astype(np.int32), state)
    return rng.integers(0, step.vocab_size, n).astype(np.int32), np.array(state, np.float32)


def differences(step, seed=0) -> list:
    """(batch, row, max |Δ|) of every target row whose logits or new state differ in a batch
    from the same row stepped alone."""
    rng = np.random.default_rng(seed)
    tok, st = rows(step, 6, rng)
    st[0] = 0.0  # a row at the initial state
    out = []
    for i in range(len(tok)):
        alone_l, alone_s = step.step(tok[i:i + 1], st[i:i + 1].copy())
        for b in BATCHES:
            t, s = rows(step, b, rng)
            at = int(rng.integers(0, b))
            t[at], s[at] = tok[i], st[i]
            got_l, got_s = step.step(t, s)
            for got, want in ((got_l[at], alone_l[0]), (got_s[at], alone_s[0])):
                g, w = np.asarray(got, np.float32), np.asarray(want, np.float32)
                if not np.array_equal(g.view(np.uint32), w.view(np.uint32)):
                    out.append((b, i, float(np.abs(g - w).max())))
    return out


@pytest.mark.tf
@pytest.mark.litert
def test_every_file_marked_invariant_is_invariant_bit_for_bit(tiny_bundle):
    b = load_bundle(tiny_bundle)
    marks = {}
    for entry in b.files:
        marks[entry.path] = entry.batch_invariant
        if entry.batch_invariant:
            assert differences(open_backend(b, entry)) == [], entry.path
    # the int8 ONNX file quantizes each row on its own now: it must be one of them
    assert marks["model.int8-dynamic.onnx"] is True, marks
    raw = json.loads((tiny_bundle / "manifest.json").read_text())
    assert all(type(f["batch_invariant"]) is bool for f in raw["files"])


@pytest.mark.tf
def test_per_tensor_quantization_is_not_invariant_and_per_row_is(tiny_bundle, tmp_path):
    """The check above can fail: quantize_dynamic's one scale per tensor moves a row's logits
    with its neighbours; the per-row file of the same weights does not."""
    from charwright.export.formats import onnx as ox
    from charwright.export.invariance import measure
    from charwright.runtime.backends.onnx import ONNXStep

    b = load_bundle(tiny_bundle)
    f32 = b.read(b.find("onnx", "float32"))
    S, V = b.state_size, b.vocab_size
    old = ONNXStep("per-tensor", S, V, "int8-dynamic", data=ox.quantize(f32, "int8-dynamic",
                                                                        rows=False))
    new = ONNXStep("per-row", S, V, "int8-dynamic", data=ox.quantize(f32, "int8-dynamic"))
    assert differences(old) != []
    assert not measure(old).invariant
    assert differences(new) == []
    assert measure(new).invariant


@pytest.mark.tf
def test_generate_defaults_to_the_invariant_file_and_its_text_ignores_the_batch(tiny_bundle):
    m = load(tiny_bundle)
    assert m.entry.batch_invariant and m.entry.path == "model.int8-dynamic.onnx"
    cfg = SamplingConfig(temperature=1.0, seed=3)
    alone = m.generate("The ", 80, cfg)
    # row 0 of a batch is seeded like the single row (runtime/model.py complete())
    assert m.complete(["The "] * 8, 80, cfg)[0].text == alone


def _mark(d, invariant: dict):
    def fn(m):
        for f in m["files"]:
            if f["path"] in invariant:
                f["batch_invariant"] = invariant[f["path"]]
            else:
                f.pop("batch_invariant", None)
    edit(d, fn)


@pytest.mark.tf
def test_find_prefers_an_invariant_file_over_a_faster_one(tiny_bundle, tmp_path):
    d = tmp_path / "b"
    shutil.copytree(tiny_bundle, d)
    _mark(d, {"model.int8-dynamic.onnx": False, "model.float32.onnx": True})
    assert load_bundle(d).find("onnx").path == "model.float32.onnx"
    assert load(d).entry.path == "model.float32.onnx"
    # an explicit precision is still honoured
    assert load_bundle(d).find("onnx", "int8-dynamic").path == "model.int8-dynamic.onnx"
    # an old manifest (no key anywhere): the speed order, as before
    _mark(d, {})
    assert load_bundle(d).find("onnx").path == "model.int8-dynamic.onnx"
    assert not any(f.batch_invariant for f in load_bundle(d).files)


@pytest.mark.parametrize("bad", ["true", 1, None, [True]])
def test_batch_invariant_must_be_a_json_boolean(tmp_path, bad):
    from charwright.runtime.errors import BundleError

    d = make_bundle(tmp_path / "b")
    edit(d, lambda m: m["files"][0].update(batch_invariant=bad))
    with pytest.raises(BundleError, match=r"files\[0\]\.batch_invariant"):
        load_bundle(d)



@pytest.mark.parametrize("value, shown", [(True, "; batch-invariant"),
                                          (False, "; not batch-invariant"),
                                          (None, "; batch invariance not recorded")])
def test_info_shows_what_the_manifest_records(tmp_path, value, shown):
    from click.testing import CliRunner

    from charwright.runtime.cli import cli

    d = make_bundle(tmp_path / "b")
    if value is not None:
        edit(d, lambda m: m["files"][0].update(batch_invariant=value))
    r = CliRunner().invoke(cli, ["info", str(d)])
    assert r.exit_code == 0, r.output
    line = next(x for x in r.output.splitlines() if x.strip().startswith("weights.npz"))
    assert line.endswith(shown)
