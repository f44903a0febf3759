"""emit-web's refusals (a non-empty or foreign directory, a file, a symbolic link, no
toolchain: one line, nothing written), a hostile bundle name kept as data, and a line-mode
2-layer LSTM bundle (npm test; numpy's and the host C build's texts). Helpers: web_support.py."""

import json

from bundle_factory import make_bundle
from web_support import (N, bundle, c_texts, expected_cases, line_mode_bundle, npm_test,
                         wasm_tools)

__all__ = ["bundle", "wasm_tools"]  # fixtures, used by name


def test_refuses_a_non_empty_directory_and_writes_nothing_on_failure(bundle, wasm_tools,
                                                                     tmp_path, monkeypatch):
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
    link, real = tmp_path / "link", tmp_path / "real"
    real.mkdir()
    link.symlink_to(real, target_is_directory=True)
    for target, text in ((f, "is not a directory"), (link, "is a symbolic link")):
        r = runner.invoke(main, ["emit-web", str(bundle), "-o", str(target), "--force"])
        assert r.exit_code == 1 and text in r.output, r.output
    assert f.read_text() == "x" and link.resolve() == real.resolve() and not any(real.iterdir())
    # an empty directory is filled; --force then replaces what emit-web wrote, and only that
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    r = runner.invoke(main, ["emit-web", str(bundle), "-o", str(fresh)])
    assert r.exit_code == 0 and (fresh / "charwright.wasm").is_file(), r.output
    (fresh / "stray.txt").write_text("old")
    r = runner.invoke(main, ["emit-web", str(bundle), "-o", str(fresh)])
    assert r.exit_code == 1 and "--force" in r.output
    r = runner.invoke(main, ["emit-web", str(bundle), "-o", str(fresh), "--force"])
    assert r.exit_code == 1 and "did not write (stray.txt)" in r.output, r.output
    assert (fresh / "stray.txt").read_text() == "old"  # --force never deletes a user's file
    (fresh / "stray.txt").unlink()
    (fresh / "charwright.js").write_text("old")
    r = runner.invoke(main, ["emit-web", str(bundle), "-o", str(fresh), "--force"])
    assert r.exit_code == 0, r.output
    assert (fresh / "charwright.js").read_text() != "old"
    assert (fresh / "charwright.wasm").is_file()
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


def test_a_hostile_bundle_name_stays_data(tmp_path, wasm_tools):
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


def test_line_mode_lstm_two_layers(tmp_path, wasm_tools):
    """A line-mode 2-layer LSTM: npm test (its lines end at the end-of-sequence id) and the
    texts of numpy and the host C build."""
    from charwright.runtime.emit_c.web import emit_web

    b = line_mode_bundle(tmp_path / "lines")
    d = tmp_path / "pkg"
    emit_web(b, d, "float32")
    out = npm_test(d)
    assert "line mode: a row ends" in out and "# SKIP not a line-mode" not in out
    cases = expected_cases(d)
    assert any(len(c["text"]) < N for c in cases)  # some end at EOS
    assert c_texts(b, "float32", cases, tmp_path) == [c["text"] for c in cases]


def test_force_replaces_only_what_emit_web_wrote(bundle, wasm_tools, tmp_path):
    """--force refuses a directory holding anything emit-web does not write (a user's file, a
    link, a folder, the source bundle itself) and a model.json that is a FIFO, a link or huge;
    nothing is deleted and nothing hangs."""
    import os
    import shutil

    import pytest

    from charwright.runtime.emit_c.web import emit_web
    from charwright.runtime.errors import ConfigError

    d = tmp_path / "pkg"
    emit_web(bundle, d, "float32", expected_chars=0)
    written = sorted(p.name for p in d.iterdir())

    def refused(text, src=bundle):
        before = sorted(str(p.relative_to(d)) for p in d.rglob("*"))
        with pytest.raises(ConfigError, match=text):
            emit_web(src, d, "float32", force=True, expected_chars=0)
        assert sorted(str(p.relative_to(d)) for p in d.rglob("*")) == before

    (d / "app.js").write_text("my app")
    refused(r"did not write \(app\.js\)")
    (d / "app.js").unlink()
    (d / "test" / "more.test.js").write_text("x")
    refused(r"test/more\.test\.js")
    (d / "test" / "more.test.js").unlink()
    (d / "golden.json").unlink()
    (d / "golden.json").symlink_to(d / "model.json")
    refused(r"golden\.json")
    (d / "golden.json").unlink()
    (d / "golden.json").mkdir()
    refused(r"golden\.json")
    (d / "golden.json").rmdir()
    inner = d / "mybundle"
    shutil.copytree(bundle, inner)
    refused("is inside", inner)
    assert (inner / "manifest.json").is_file()
    shutil.rmtree(inner)
    # model.json itself: a FIFO (would block a read), a link, more than 1 MB
    meta = (d / "model.json").read_text()
    (d / "model.json").unlink()
    os.mkfifo(d / "model.json")
    refused("no charwright-web model.json")
    (d / "model.json").unlink()
    (tmp_path / "elsewhere.json").write_text(meta)
    (d / "model.json").symlink_to(tmp_path / "elsewhere.json")
    refused("no charwright-web model.json")
    (d / "model.json").unlink()
    (d / "model.json").write_text(meta[:-2] + " " * (1 << 20) + "}\n")
    refused("no charwright-web model.json")
    (d / "model.json").write_text(meta)
    emit_web(bundle, d, "float32", force=True, expected_chars=0)  # what it wrote: replaced
    assert sorted(p.name for p in d.iterdir()) == written


def test_no_simd_builds_for_webassembly_1_0(monkeypatch, tmp_path):
    """--no-simd asks clang for the MVP feature set (clang 19+ enables post-MVP features by
    default), with the scalar kernels."""
    import subprocess

    from charwright.runtime.emit_c import web

    seen = []

    def fake_run(cmd, **kw):
        seen.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(web.subprocess, "run", fake_run)
    web.build_wasm(tmp_path, tmp_path / "x.wasm", "clang", "/usr", simd=False)
    web.build_wasm(tmp_path, tmp_path / "y.wasm", "clang", "/usr", simd=True)
    assert "-mcpu=mvp" in seen[0] and "-DCW_SCALAR" in seen[0]
    assert not any(f.startswith("-m") and f != "-mcpu=mvp" and "exec-model" not in f
                   for f in seen[0])
    assert "-msimd128" in seen[1] and "-mcpu=mvp" not in seen[1]


HOSTILE_C = r"""
#define E(n) __attribute__((export_name(#n)))
static char sha[65] = "0000000000000000000000000000000000000000000000000000000000000000";
static int regs[9]; static float in[16]; static int ids[16];
E(cw_web_abi) int a(void) { return 2; }
E(cw_web_vocab_size) int b(void) { return VOCAB; }
E(cw_web_eos_id) int c(void) { return -1; }
E(cw_web_vocab_ptr) int d(int i) { return PTR; }
E(cw_web_vocab_len) int e(int i) { return 1; }
E(cw_web_regions) int *f(int w) { return regs; }
E(cw_web_reset) int g(void) { return 0; }
E(cw_web_step) int h(int t) { return 0; }
E(cw_web_sampler_init) int i_(int w) { return 0; }
E(cw_web_sample) int j(void) { return 0; }
E(cw_web_input) float *k(void) { return in; }
E(cw_web_pick) int l(int n) { return 0; }
E(cw_web_max_v) int m(void) { return 0x7fffffff; }
E(cw_web_bundle_sha256) char *n(void) { return sha; }
E(cw_web_ids) int *o(void) { return ids; }
E(cw_web_max_window) int p(void) { return 0x7fffffff; }
E(cw_web_rng_u64) unsigned long long q(unsigned long long a) { return 0; }
E(cw_web_int8) int r(void) { return 0; }
"""


def test_a_hostile_module_is_refused_with_charwright_error(tmp_path, wasm_tools):
    """charwright.js on a hand-made charwright.wasm whose model.json agrees with it: a vocabulary
    of 200,000,000 (was: a heap out of memory after seconds) and a vocabulary pointer past the end
    of memory (was: RangeError) reject load() with CharwrightError at once; a file: URL string
    loads in Node like a file: URL object."""
    import subprocess
    import time

    from charwright.runtime.emit_c.web import toolchain
    from web_support import REPO

    cc, _ = toolchain()
    (tmp_path / "h.c").write_text(HOSTILE_C)
    for name, vocab, ptr in (("huge", 200_000_000, 100), ("oob", 3, 0x7FFFFFF0)):
        d = tmp_path / name
        d.mkdir()
        r = subprocess.run([cc, "--target=wasm32", "-nostdlib", "-O2", "-Wl,--no-entry",
                            f"-DVOCAB={vocab}", f"-DPTR={ptr}", "-o", str(d / "charwright.wasm"),
                            str(tmp_path / "h.c")], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        (d / "model.json").write_text(json.dumps({
            "format": "charwright-web", "version": 1, "name": "x", "sha256": "0" * 64,
            "precision": "float32", "vocabSize": vocab, "defaults": {}}))
    script = """
import { load, CharwrightError } from %s;
const out = {};
for (const [key, arg] of [['huge', %s], ['oob', %s], ['url', %s]]) {
  try { await load(arg); out[key] = 'loaded'; }
  catch (e) { out[key] = [e instanceof CharwrightError, e.constructor.name, e.message]; }
}
console.log(JSON.stringify(out));
""" % tuple(json.dumps(x) for x in (
        (REPO / "runtime" / "js" / "charwright.js").as_uri(), str(tmp_path / "huge"),
        str(tmp_path / "oob"), (tmp_path / "huge").as_uri()))
    t0 = time.monotonic()
    r = subprocess.run(["node", "--input-type=module", "--max-old-space-size=256", "-e", script],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert time.monotonic() - t0 < 30
    out = json.loads(r.stdout)
    assert out["huge"][:2] == [True, "CharwrightError"] and "vocabulary size" in out["huge"][2]
    assert out["oob"][:2] == [True, "CharwrightError"] and "outside its memory" in out["oob"][2]
    assert out["url"] == out["huge"]  # the file: URL string read the same directory
