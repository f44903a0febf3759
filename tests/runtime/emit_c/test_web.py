"""emit-web: a tiny bundle -> charwright.wasm + charwright.js; `npm test` passes in the emitted
directory, and the text for 5 settings x 300 characters is the numpy backend's and the host C
build's, in Node and in headless Chromium (the demo page's form included, with a screenshot).

Tools: clang + wasm-ld + wasi-libc, node (>= 18), make + cc; Chromium (/usr/bin/chromium) and
playwright-core (npm ci --prefix tests/js). Without them the tests skip, unless CI is set."""

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


def _need(ok: bool, what: str):
    if not ok:
        if CI:
            pytest.fail(f"CI=true: {what} is required")
        pytest.skip(f"{what} not installed")


def _wasm_tools():
    from charwright.runtime.emit_c.web import toolchain

    try:
        toolchain()
        ok = shutil.which("wasm-ld") is not None
    except ConfigError:
        ok = False
    _need(ok, "clang + lld + wasi-libc (apt-get install clang lld wasi-libc libclang-rt-dev-wasm32)")
    _need(shutil.which("node") is not None, "node")


def _cases(web: Path) -> list[dict]:
    return json.loads((web / "test" / "expected.json").read_text())["cases"]


def _node_texts(web: Path, cases, tmp: Path, kernel="WASM SIMD128") -> list[str]:
    spec = tmp / "cases.json"
    spec.write_text(json.dumps({"cases": cases}))
    r = subprocess.run(["node", str(JS / "generate.mjs"), str(web), str(spec)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["kernel"] == kernel
    return out["texts"]


def _c_texts(bundle: Path, precision: str, cases, tmp: Path) -> list[str]:
    """The host C build's text (cw_generate) for each case."""
    from charwright.runtime.emit_c.project import emit

    _need(shutil.which("make") is not None and shutil.which("cc") is not None, "make + cc")
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
def web(bundle, tmp_path_factory):
    _wasm_tools()
    from charwright.runtime.emit_c.web import emit_web

    out = tmp_path_factory.mktemp("web-out") / "pkg"
    res = emit_web(bundle, out, "float32")
    assert {"charwright.wasm", "charwright.js", "charwright.d.ts", "package.json", "README.md",
            "index.html", "model.json", "golden.json", "test/expected.json"} <= set(res["files"])
    return out


def _npm_test(d: Path) -> str:
    r = subprocess.run(["node", "--test", "test/charwright.test.js"], cwd=d, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0 and "# fail 0" in r.stdout, r.stdout[-4000:] + r.stderr
    return r.stdout


def test_package_json_wasm_imports_nothing_and_npm_test_passes(web):
    pkg = json.loads((web / "package.json").read_text())
    assert "charwright" in pkg["name"] and pkg["type"] == "module"
    assert pkg["scripts"]["test"].startswith("node --test")
    js = ("import {readFileSync} from 'node:fs';"
          "const m = new WebAssembly.Module(readFileSync(process.argv[1]));"
          "console.log(JSON.stringify(WebAssembly.Module.imports(m)))")
    r = subprocess.run(["node", "--input-type=module", "-e", js, str(web / "charwright.wasm")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and json.loads(r.stdout) == [], r.stdout + r.stderr
    out = _npm_test(web)
    assert "ok 1 - golden rng streams" in out
    assert "texts equal charwright generate --backend numpy" in out


def test_seven_settings_equal_numpy_and_host_c(web, bundle, tmp_path):
    """expected.json holds the numpy backend's texts (written by emit-web); the wasm in Node and
    the host C build make the same 7 x 300 characters."""
    from charwright.runtime.model import load
    from charwright.runtime.sampling.config import SamplingConfig

    cases = _cases(web)
    assert len(cases) == 7  # 5 of temperature, top-k and top-p; 2 with the rest of the chain
    assert all(c["options"]["maxChars"] == N for c in cases)
    assert len({c["text"] for c in cases}) == len(cases)  # the settings write different text
    # expected.json really is numpy's: recompute one sampled case here
    c = cases[2]
    o = c["options"]
    cfg = SamplingConfig(temperature=o["temperature"], top_k=o["topK"], top_p=o["topP"],
                         seed=int(o["seed"]))
    assert load(bundle, backend="numpy").generate(c["prompt"], N, cfg) == c["text"]
    want = [c["text"] for c in cases]
    assert _node_texts(web, cases, tmp_path) == want
    assert _c_texts(bundle, "float32", cases, tmp_path) == want


def test_stop_strings_and_finish_as_python(web, bundle, tmp_path):
    """Random stop strings (pieces of the unstopped text, overlapping ones, strangers) on 40
    seeds: charwright.js emits what Python's TextStream emits."""
    import random

    from charwright.runtime.model import load
    from charwright.runtime.sampling.config import SamplingConfig

    model = load(bundle, backend="numpy")
    prompt, rnd, cases, want = _cases(web)[0]["prompt"], random.Random(5), [], []
    for seed in range(40):
        cfg = SamplingConfig(temperature=1.0, seed=seed)
        full = model.generate(prompt, 80, cfg)
        i = rnd.randrange(len(full) - 3)
        stops = [full[i + 1:i + 3], full[i:i + 3]] if seed % 3 == 0 else []  # same end: longest
        for _ in range(rnd.randint(1, 4)):
            i, n = rnd.randrange(len(full)), rnd.randint(1, 5)
            stops.append(full[i:i + n] if rnd.random() < 0.7 else full[i:i + n] + "\u2603")
        want.append(model.generate(prompt, 80, cfg, stop=stops))
        cases.append({"prompt": prompt, "options": {"seed": str(seed), "temperature": 1.0,
                                                     "maxChars": 80, "stop": stops}})
    assert any(w != model.generate(prompt, 80, SamplingConfig(temperature=1.0, seed=s))
               for s, w in enumerate(want))  # some stops did stop
    assert _node_texts(web, cases, tmp_path) == want


def test_bundle_sampling_defaults_apply_as_in_charwright_generate(bundle, web, tmp_path):
    """Options not given take the bundle's sampling_defaults, as `charwright generate` does:
    the same text from `generate --backend numpy --seed S -n N` and from {seed, maxChars}."""
    from click.testing import CliRunner

    from bundle_factory import edit
    from charwright.runtime.cli import cli
    from charwright.runtime.emit_c.web import emit_web

    b = tmp_path / "defaults"
    shutil.copytree(bundle, b)
    edit(b, lambda m: m.update(sampling_defaults={
        "temperature": 0.7, "top_k": 5, "top_p": 0.95, "min_p": 0.02,
        "repetition_penalty": 1.2, "repetition_window": 8}))
    d = tmp_path / "pkg"
    emit_web(b, d, "float32", expected_chars=0)
    meta = json.loads((d / "model.json").read_text())
    assert meta["defaults"] == {"temperature": 0.7, "topK": 5, "topP": 0.95, "minP": 0.02,
                                "repetitionPenalty": 1.2, "repetitionWindow": 8}
    prompt, cases, want = ".ab", [], []
    for seed in (3, 4):
        r = CliRunner().invoke(cli, ["generate", prompt, "-b", str(b), "--backend", "numpy",
                                     "--seed", str(seed), "-n", str(N)])
        assert r.exit_code == 0, r.output
        want.append(r.output[len(prompt):-1])
        cases.append({"prompt": prompt, "options": {"seed": str(seed), "maxChars": N}})
    assert _node_texts(d, cases, tmp_path) == want


def test_int8_wasm_equals_the_host_c_int8_build(bundle, web, tmp_path):
    from charwright.runtime.emit_c.web import emit_web

    d = tmp_path / "int8"
    res = emit_web(bundle, d, "int8")
    assert "test/expected.json" not in res["files"]  # numpy is float32: int8 is judged by C
    assert json.loads((d / "model.json").read_text())["precision"] == "int8"
    _npm_test(d)
    cases = _cases(web)
    want = _c_texts(bundle, "int8", cases, tmp_path)
    assert _node_texts(d, cases, tmp_path) == want
    # the scalar kernels (emit-web --no-simd) write the same text
    d = tmp_path / "int8-scalar"
    emit_web(bundle, d, "int8", simd=False)
    assert _node_texts(d, cases, tmp_path, kernel="scalar") == want


def test_refuses_a_non_empty_directory_and_writes_nothing_on_failure(bundle, web, tmp_path,
                                                                     monkeypatch):
    from click.testing import CliRunner

    from charwright.runtime.cli import cli as main

    runner = CliRunner()
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    for force in ([], ["--force"]):  # --force replaces only what emit-web wrote
        r = runner.invoke(main, ["emit-web", str(bundle), "-o", str(busy), *force])
        assert r.exit_code == 1 and "is not empty" in r.output
        assert len(r.output.strip().splitlines()) == 1 and "Traceback" not in r.output
        assert [p.name for p in busy.iterdir()] == ["keep.txt"]
    f = tmp_path / "a-file"
    f.write_text("x")
    link = tmp_path / "link"
    link.symlink_to(web, target_is_directory=True)
    for target, text in ((f, "is not a directory"), (link, "is a symbolic link")):
        r = runner.invoke(main, ["emit-web", str(bundle), "-o", str(target), "--force"])
        assert r.exit_code == 1 and text in r.output, r.output
    assert f.read_text() == "x" and link.resolve() == web.resolve()
    # an empty directory is filled; --force then replaces that directory as a whole
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    r = runner.invoke(main, ["emit-web", str(bundle), "-o", str(fresh)])
    assert r.exit_code == 0 and (fresh / "charwright.wasm").is_file(), r.output
    (fresh / "stray.txt").write_text("old")
    r = runner.invoke(main, ["emit-web", str(bundle), "-o", str(fresh)])
    assert r.exit_code == 1 and "--force" in r.output
    r = runner.invoke(main, ["emit-web", str(bundle), "-o", str(fresh), "--force"])
    assert r.exit_code == 0, r.output
    assert not (fresh / "stray.txt").exists() and (fresh / "charwright.wasm").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left
    # no toolchain, no output: one line naming what to install
    for env, text in ((("CHARWRIGHT_WASM_CC", str(tmp_path / "no-clang")), "needs clang"),
                      (("WASI_SYSROOT", str(tmp_path)), "needs wasi-libc")):
        monkeypatch.setenv(*env)
        out = tmp_path / f"new-{env[0]}"
        r = runner.invoke(main, ["emit-web", str(bundle), "-o", str(out)])
        assert r.exit_code == 1 and text in r.output and "apt-get install" in r.output
        assert len(r.output.strip().splitlines()) == 1 and "internal error" not in r.output
        assert not out.exists()
        monkeypatch.delenv(env[0])


def test_a_hostile_bundle_name_stays_data(tmp_path, web):
    """The bundle's directory name reaches model.json (JSON data) and package.json's name
    (reduced to [a-z0-9._-]); the page shows it with textContent."""
    from charwright.runtime.emit_c.web import emit_web

    b = make_bundle(tmp_path / 'Evil"<img src=x onerror=alert(1)>\\', units=4)
    d = tmp_path / "pkg"
    emit_web(b, d, "float32", expected_chars=0)
    assert json.loads((d / "model.json").read_text())["name"] == b.name
    assert json.loads((d / "package.json").read_text())["name"] == (
        "charwright-evil-img-src-x-onerror-alert-1")
    assert "innerHTML" not in (d / "demo.js").read_text()
    assert not (d / "test" / "expected.json").exists()


def _line_mode_bundle(d: Path) -> Path:
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


def test_line_mode_lstm_two_layers(tmp_path, web):
    """A line-mode 2-layer LSTM: npm test (its lines end at the end-of-sequence id) and the
    texts of numpy and the host C build."""
    from charwright.runtime.emit_c.web import emit_web

    b = _line_mode_bundle(tmp_path / "lines")
    d = tmp_path / "pkg"
    emit_web(b, d, "float32")
    out = _npm_test(d)
    assert "line mode: a row ends" in out and "# SKIP not a line-mode" not in out
    cases = _cases(d)
    assert any(len(c["text"]) < N for c in cases)  # some end at EOS
    assert _c_texts(b, "float32", cases, tmp_path) == [c["text"] for c in cases]


def test_chromium_same_text_and_demo_page_screenshot(web, tmp_path):
    _need(Path(CHROMIUM).is_file(), f"Chromium ({CHROMIUM}; apt-get install chromium)")
    _need((JS / "node_modules" / "playwright-core").is_dir(),
          "playwright-core (npm ci --prefix tests/js)")
    cases = _cases(web)
    spec = tmp_path / "cases.json"
    spec.write_text(json.dumps({"cases": cases, "ui": 2}))
    png = tmp_path / "demo.png"
    r = subprocess.run(["node", str(JS / "browser.mjs"), str(web), str(spec), "--screenshot",
                        str(png)], capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-4000:]
    out = json.loads(r.stdout)
    assert out["texts"] == [c["text"] for c in cases]
    assert out["uiPrompt"] == cases[2]["prompt"] and out["uiText"] == cases[2]["text"]
    assert out["error"] == "" and out["errors"] == [] and "finish: length" in out["status"]
    name = json.loads((web / "model.json").read_text())["name"]
    assert out["filesInfo"].startswith(f"{name} · float32 · ") and out["filesError"] == ""
    assert out["filesInfo"].endswith("WASM SIMD128")
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    try:
        shutil.copyfile(png, "/tmp/charwright-demo.png")  # for a person to look at
    except OSError:
        pass
