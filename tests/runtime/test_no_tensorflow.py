"""charwright.runtime imports and generates with TensorFlow, Keras and tf2onnx blocked."""

import json
import subprocess
import sys

import pytest

SCRIPT = r"""
import sys, json
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "keras", "tf2onnx", "tf_keras"):
            raise ImportError("blocked: " + name)
        return None
sys.meta_path.insert(0, Block())
import charwright.runtime as rt
from charwright.runtime.cli import cli  # the CLI group and its runtime commands load too
import charwright.runtime.commands.info, charwright.runtime.commands.score, charwright.runtime.commands.verify
out = {}
for backend in sys.argv[2].split(","):
    m = rt.load(sys.argv[1] if sys.argv[1] != "-" else None, backend=backend)
    out[backend] = m.generate("T", 40, rt.SamplingConfig(seed=1, top_k=5))
bad = sorted(k for k in sys.modules if k.split(".")[0] in ("tensorflow", "keras", "tf2onnx"))
print(json.dumps({"texts": out, "tf_modules": bad}))
"""


def _run(bundle, backends):
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(bundle), backends],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.tf
@pytest.mark.litert
def test_generates_from_an_exported_bundle_without_tensorflow(tiny_bundle):
    res = _run(tiny_bundle, "onnx,litert,numpy")
    assert res["tf_modules"] == []
    assert all(len(t) == 40 for t in res["texts"].values())


def test_generates_from_the_demo_bundle_without_tensorflow():
    from charwright.runtime.model import DEMO_BUNDLE

    if not (DEMO_BUNDLE / "manifest.json").is_file():
        pytest.fail("the demo bundle is missing from the package (runtime/demo/manifest.json)")
    res = _run("-", "onnx")
    assert res["tf_modules"] == [] and len(res["texts"]["onnx"]) == 40
