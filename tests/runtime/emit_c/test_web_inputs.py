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
