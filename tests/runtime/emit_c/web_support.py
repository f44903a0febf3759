"""Shared by test_web*.py (emit-web): tool checks with the CI rule, the tiny bundle and its
emitted package (module fixtures), texts from Node, from the host C build and from `npm test`,
and a hand-made line-mode bundle. Importable beside the tests (pytest puts this folder on
sys.path), like kernel_builds.py."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from charwright.runtime.errors import ConfigError

from bundle_factory import make_bundle

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
REPO = Path(__file__).resolve().parents[3]
JS = REPO / "tests" / "js"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
N = 300


def need(ok: bool, what: str):
    if not ok:
        if CI:
            pytest.fail(f"CI=true: {what} is required")
        pytest.skip(f"{what} not installed")


def check_wasm_tools():
    from charwright.runtime.emit_c.web import toolchain

    try:
        toolchain()
        ok = shutil.which("wasm-ld") is not None
    except ConfigError:
        ok = False
    need(ok, "clang + lld + wasi-libc (apt-get install clang lld wasi-libc "
          "libclang-rt-dev-wasm32)")
    need(shutil.which("node") is not None, "node")


def expected_cases(web: Path) -> list[dict]:
    return json.loads((web / "test" / "expected.json").read_text())["cases"]


def node_texts(web: Path, cases, tmp: Path, kernel="WASM SIMD128") -> list[str]:
    spec = tmp / "cases.json"
    spec.write_text(json.dumps({"cases": cases}))
    r = subprocess.run(["node", str(JS / "generate.mjs"), str(web), str(spec)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["kernel"] == kernel
    return out["texts"]


def c_texts(bundle: Path, precision: str, cases, tmp: Path) -> list[str]:
    """The host C build's text (cw_generate) for each case."""
    from charwright.runtime.emit_c.project import emit

    need(shutil.which("make") is not None and shutil.which("cc") is not None, "make + cc")
    d = tmp / f"c-{precision}"
    emit(bundle, d, precision)
    r = subprocess.run(["make", "-s", "-C", str(d)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    texts = []
    for c in cases:
        o, args = c["options"], ["-n", str(c["options"]["maxChars"])]
        if o.get("greedy"):
            args.append("--greedy")
        for key, flag in (("seed", "--seed"), ("temperature", "--temperature"),
                          ("topK", "--top-k"), ("topP", "--top-p"), ("minP", "--min-p"),
                          ("typicalP", "--typical-p"), ("repetitionPenalty",
                                                        "--repetition-penalty"),
                          ("repetitionWindow", "--repetition-window")):
            if key in o:
                args += [flag, str(o[key])]
        r = subprocess.run([str(d / "cw_generate"), *args, "--", c["prompt"]],
                           capture_output=True, timeout=60)
        assert r.returncode == 0, r.stderr
        out = r.stdout.decode()
        assert out.startswith(c["prompt"]) and out.endswith("\n")
        texts.append(out[len(c["prompt"]):-1])
    return texts


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("web") / "tiny", units=16, tokens=40)


@pytest.fixture(scope="module")
def wasm_tools():
    check_wasm_tools()


@pytest.fixture(scope="module")
def web(bundle, tmp_path_factory):
    check_wasm_tools()
    from charwright.runtime.emit_c.web import emit_web

    out = tmp_path_factory.mktemp("web-out") / "pkg"
    res = emit_web(bundle, out, "float32")
    assert {"charwright.wasm", "charwright.js", "charwright.d.ts", "package.json", "README.md",
            "index.html", "model.json", "golden.json", "test/expected.json"} <= set(res["files"])
    return out


def npm_test(d: Path) -> str:
    r = subprocess.run(["node", "--test", "test/charwright.test.js"], cwd=d, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0 and "# fail 0" in r.stdout, r.stdout[-4000:] + r.stderr
    return r.stdout


def line_mode_bundle(d: Path) -> Path:
    """A hand-made line-mode bundle (vocab.eos: its last id ends a line), like make_bundle's."""
    import numpy as np

    from bundle_factory import weights, write_manifest
    from charwright.runtime.backends.numpy import NumpyStep
    from charwright.runtime.verify.score import greedy_rollout, teacher_forced

    d.mkdir(parents=True)
    chars = sorted(" abcdefgh.")
    arch = {"cell": "lstm", "layers": 2, "units": 8, "vocab_size": len(chars) + 1,
            "embedding_dim": 4}
    w = weights(arch, seed=3)
    w["dense.bias"][-1] -= 1.5  # lines of some length
    np.savez(d / "weights.npz", **w)
    step = NumpyStep(w, arch)
    ids = np.random.default_rng(4).integers(0, len(chars) + 1, 40).astype(np.int32)
    np.savez(d / "probe.npz", tokens=ids, logits=teacher_forced(step, ids), prompt=ids[:5],
             greedy=greedy_rollout(step, ids[:5], 10), device=np.array("test"))
    layout = [{"name": f"layer{i}.{p}", "layer": i, "part": p, "offset": 0, "size": 8}
              for i in range(2) for p in ("h", "c")]
    write_manifest(d, {
        "format": "charwright-bundle", "format_version": "1.0",
        "vocab": {"format": "charwright-vocab", "version": 1, "chars": chars, "eos": True},
        "architecture": arch, "state": {"size": 32, "layout": layout},
        "files": [{"path": "weights.npz", "format": "npz", "precision": "float32",
                   "inputs": {"token": "token", "state": "state"},
                   "outputs": {"logits": "logits", "new_state": "new_state"}}],
        "probe": {"path": "probe.npz", "tokens": 40}})
    return d
