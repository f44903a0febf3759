"""emit-web: a tiny bundle -> charwright.wasm + charwright.js; `npm test` passes in the emitted
directory, and the text for 7 settings x 300 characters is the numpy backend's and the host C
build's, in Node and in headless Chromium (the demo page's form included, with a screenshot).

Tools: clang + wasm-ld + wasi-libc, node (>= 18), make + cc; Chromium (/usr/bin/chromium) and
playwright-core (npm ci --prefix tests/js). Without them the tests skip, unless CI is set.
Helpers and the module fixtures `bundle` and `web`: web_support.py."""

import json
import shutil
import subprocess
from pathlib import Path

from web_support import (CHROMIUM, JS, N, bundle, c_texts, expected_cases, need, node_texts,
                         npm_test, web)

__all__ = ["bundle", "web"]  # fixtures, used by name


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
    out = npm_test(web)
    assert "ok 1 - golden rng streams" in out
    assert "texts equal charwright generate --backend numpy" in out


def test_seven_settings_equal_numpy_and_host_c(web, bundle, tmp_path):
    """expected.json holds the numpy backend's texts (written by emit-web); the wasm in Node and
    the host C build make the same 7 x 300 characters."""
    from charwright.runtime.model import load
    from charwright.runtime.sampling.config import SamplingConfig

    cases = expected_cases(web)
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
    assert node_texts(web, cases, tmp_path) == want
    assert c_texts(bundle, "float32", cases, tmp_path) == want


def test_stop_strings_and_finish_as_python(web, bundle, tmp_path):
    """Random stop strings (pieces of the unstopped text, overlapping ones, strangers) on 40
    seeds: charwright.js emits what Python's TextStream emits."""
    import random

    from charwright.runtime.model import load
    from charwright.runtime.sampling.config import SamplingConfig

    model = load(bundle, backend="numpy")
    prompt, rnd, cases, want = expected_cases(web)[0]["prompt"], random.Random(5), [], []
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
    assert node_texts(web, cases, tmp_path) == want


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
    assert node_texts(d, cases, tmp_path) == want


def test_int8_wasm_equals_the_host_c_int8_build(bundle, web, tmp_path):
    from charwright.runtime.emit_c.web import emit_web

    d = tmp_path / "int8"
    res = emit_web(bundle, d, "int8")
    assert "test/expected.json" not in res["files"]  # numpy is float32: int8 is judged by C
    assert json.loads((d / "model.json").read_text())["precision"] == "int8"
    npm_test(d)
    cases = expected_cases(web)
    want = c_texts(bundle, "int8", cases, tmp_path)
    assert node_texts(d, cases, tmp_path) == want
    # the scalar kernels (emit-web --no-simd) write the same text
    d = tmp_path / "int8-scalar"
    emit_web(bundle, d, "int8", simd=False)
    assert node_texts(d, cases, tmp_path, kernel="scalar") == want


def test_chromium_same_text_and_demo_page_screenshot(web, tmp_path):
    need(Path(CHROMIUM).is_file(), f"Chromium ({CHROMIUM}; apt-get install chromium)")
    need((JS / "node_modules" / "playwright-core").is_dir(),
          "playwright-core (npm ci --prefix tests/js)")
    cases = expected_cases(web)
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
