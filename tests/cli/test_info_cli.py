"""charwright info: the demo bundle by default, -b, and odd manifest values that are not fatal."""

import json

from click.testing import CliRunner

from charwright.runtime.cli import cli
from charwright.runtime.model import DEMO_BUNDLE

from bundle_factory import copy_demo, edit


def test_info_defaults_to_the_demo_bundle():
    a = CliRunner().invoke(cli, ["info"])
    b = CliRunner().invoke(cli, ["info", "-b", str(DEMO_BUNDLE)])
    c = CliRunner().invoke(cli, ["info", str(DEMO_BUNDLE)])
    assert a.exit_code == 0, a.output
    assert a.stdout == b.stdout == c.stdout
    assert "GRU 1x512, embedding 64, vocab 65" in a.stdout
    m = json.loads((DEMO_BUNDLE / "manifest.json").read_text())
    for row in m["parity"]:  # every file's recorded parity, as the manifest holds it
        assert f"top-1 {row['top1']:.2%}, bits/char {row['bpc']:.4f}, pass" in a.stdout


def test_info_survives_free_form_fields(tmp_path):
    d = copy_demo(tmp_path / "b")
    edit(d, lambda m: (m["training"].update(best_val_bpc="n/a"),
                       m["parity"][0].update(top1=None, verdict="not checked")))
    r = CliRunner().invoke(cli, ["info", str(d)])
    assert r.exit_code == 0, r.output
    bpc = json.loads((d / "manifest.json").read_text())["parity"][0]["bpc"]
    assert "val ? bits/char" in r.stdout and f"top-1 -, bits/char {bpc:.4f}, not checked" \
        in r.stdout


def test_help_shows_the_bundle_option():
    for cmd in ("info", "verify", "score"):
        r = CliRunner().invoke(cli, [cmd, "--help"])
        assert r.exit_code == 0 and "-b, --bundle" in r.stdout and "demo" in r.stdout


def test_info_json_is_valid_json_when_the_manifest_holds_nan(tmp_path):
    import json

    d = copy_demo(tmp_path / "b")
    text = (d / "manifest.json").read_text()
    (d / "manifest.json").write_text(text.replace("{", '{"nan_here": NaN, ', 1))
    r = CliRunner().invoke(cli, ["info", str(d), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["nan_here"] is None  # strict JSON: no NaN token
    assert "NaN" not in r.stdout
