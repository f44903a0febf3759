"""The backend registry is the one declaration; backends honour the manifest's tensor names."""

import os
import subprocess
import sys

import pytest

from charwright.runtime.bundle import reader as bundle
from charwright.runtime.backends import BACKENDS, backend_class
from charwright.runtime.commands.options import BACKEND_CHOICE, PRECISION_CHOICE
from charwright.runtime.errors import BundleError

from bundle_factory import copy_demo, edit


@pytest.mark.parametrize("spec", BACKENDS, ids=lambda s: s.name)
def test_every_table_derives_from_the_registry(spec):
    cls = backend_class(spec.format)
    assert cls.name == spec.name and cls.thread_safe is spec.thread_safe
    assert spec.format in bundle.FORMATS
    assert bundle.DEFAULT_PRECISION[spec.format] == spec.precisions
    assert spec.name in BACKEND_CHOICE.choices
    assert set(spec.file_names) <= set(PRECISION_CHOICE.choices) == set(bundle.PRECISIONS)


def test_litert_is_the_one_that_is_not_thread_safe():
    assert {s.name for s in BACKENDS if not s.thread_safe} == {"litert"}


@pytest.mark.litert
def test_litert_looks_up_the_manifests_names(tmp_path):
    from charwright.runtime.backends import open_backend

    d = copy_demo(tmp_path / "b")
    edit(d, lambda m: [f.update(inputs={"token": "tok", "state": "state"}) for f in m["files"]
                       if f["path"] == "model.int8-dynamic.tflite"])
    b = bundle.load_bundle(d)
    with pytest.raises(BundleError, match=r"model.int8-dynamic.tflite: no serving_default "
                                          r"signature with inputs 'tok', 'state'"):
        open_backend(b, b.find("tflite"))


SILENT = r"""
import sys
from charwright.runtime.bundle.reader import load_bundle
from charwright.runtime.backends import open_backend
from charwright.runtime.model import DEMO_BUNDLE
import numpy as np
b = load_bundle(DEMO_BUNDLE)
be = open_backend(b, b.find("tflite"))
be.step(np.zeros(3, np.int32), be.initial_state(3))
print("ok", file=sys.stderr)
"""


@pytest.mark.litert
def test_litert_native_chatter_is_silenced_unless_debugging():
    env = {k: v for k, v in os.environ.items() if k != "CHARWRIGHT_DEBUG"}
    r = subprocess.run([sys.executable, "-c", SILENT], capture_output=True, text=True,
                       timeout=60, env=env)
    assert r.returncode == 0 and r.stderr == "ok\n"
    r = subprocess.run([sys.executable, "-c", SILENT], capture_output=True, text=True,
                       timeout=60, env={**env, "CHARWRIGHT_DEBUG": "1"})
    assert "XNNPACK delegate" in r.stderr


def test_onnx_replay_equals_stepping_one_call_at_a_time():
    import numpy as np

    from charwright.runtime.backends import open_backend
    from charwright.runtime.model import DEMO_BUNDLE
    from charwright.runtime.verify.score import replay

    b = bundle.load_bundle(DEMO_BUNDLE)
    be = open_backend(b, b.find("onnx"))
    tokens = b.probe()["tokens"][:300]
    state, rows = be.initial_state(1), []
    for t in tokens:
        logits, state = be.step(np.array([t], np.int32), state)
        rows.append(logits[0])
    got, got_state = replay(be, tokens[:120])
    got2, got_state = replay(be, tokens[120:], got_state)  # chunks carry the state
    np.testing.assert_allclose(np.concatenate([got, got2]), np.array(rows), rtol=0, atol=1e-6)
    np.testing.assert_allclose(got_state, state, rtol=0, atol=1e-6)
