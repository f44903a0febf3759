"""charwright export / verify / info through the command line."""

import json
import shutil

import pytest
from click.testing import CliRunner

from charwright.runtime.cli import cli

pytestmark = [pytest.mark.tf, pytest.mark.litert]


def test_export_prints_parity_table_and_writes_bundle(tmp_path, tiny_run):
    r = CliRunner().invoke(cli, ["export", str(tiny_run), "-o", str(tmp_path / "b"),
                                 "--format", "onnx", "--format", "numpy"])
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("| file | max abs Δlogit")
    assert "model.int8-dynamic.onnx" in r.stdout and "tflite" not in r.stdout
    assert "converting model.float32.onnx" in r.stderr  # progress goes to stderr
    r2 = CliRunner().invoke(cli, ["export", str(tiny_run), "-o", str(tmp_path / "b")])
    assert r2.exit_code == 1
    assert r2.stderr.strip().splitlines()[-1] == (
        f"Error: {tmp_path / 'b'} already exists; pass --force to replace it")


def test_verify_passes_then_names_a_flipped_file(tmp_path, tiny_bundle):
    d = tmp_path / "b"
    shutil.copytree(tiny_bundle, d)
    r = CliRunner().invoke(cli, ["verify", str(d), "--json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    m = json.loads((d / "manifest.json").read_text())
    tflm = [f["path"] for f in m["files"] if (f.get("micro") or {}).get("runs")]
    assert [x["file"] for x in rows] == [f["path"] for f in m["files"]] + [
        f"{p}[tflm]" for p in tflm]  # each file, then TFLite Micro's replays of those it runs
    assert all(x["verdict"] == "pass" for x in rows)
    assert {"max_abs", "mean_abs", "top1", "kl", "bpc", "ref_bpc", "greedy_first_diff"} <= set(rows[0])
    p = d / "model.float16.tflite"
    data = bytearray(p.read_bytes())
    data[100] ^= 0x01
    p.write_bytes(bytes(data))
    r = CliRunner().invoke(cli, ["verify", str(d)])
    assert r.exit_code == 1
    assert "| model.float16.tflite | - |" in r.stdout
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: ") and "model.float16.tflite" in last and "sha256 mismatch" in last
    assert "Traceback" not in r.output


def test_info(tiny_bundle):
    r = CliRunner().invoke(cli, ["info", str(tiny_bundle)])
    assert r.exit_code == 0, r.output
    assert "GRU 1x24" in r.stdout and "model.int8.tflite" in r.stdout and "pass" in r.stdout


def test_bad_bundle_is_one_line(tmp_path):
    r = CliRunner().invoke(cli, ["verify", str(tmp_path)])
    assert r.exit_code == 1
    assert r.stderr == f"Error: {tmp_path / 'manifest.json'}: missing; {tmp_path} is not a charwright bundle\n"


def test_export_leaves_out_a_failing_file_and_the_bundle_verifies(tmp_path, tiny_run,
                                                                  monkeypatch):
    """Issue 24 item 8: one stderr line per left-out file, exit 0, verify and info agree; a
    failing precision named with --precision refuses in one line and writes nothing."""
    from charwright.runtime.verify import parity

    monkeypatch.setitem(parity.TOLERANCES, "int8-dynamic", parity.Tolerance(min_top1=1.01))
    b = tmp_path / "b"
    r = CliRunner().invoke(cli, ["export", str(tiny_run), "-o", str(b), "--format", "onnx"])
    assert r.exit_code == 0, r.output
    [line] = [x for x in r.stderr.splitlines() if x.startswith("left out ")]
    assert line.startswith("left out model.int8-dynamic.onnx: outside tolerance: "
                           "model.int8-dynamic.onnx: top-1 agreement ")
    assert line.endswith("< 101.0% (pass --allow-mismatch to keep it)")
    assert "model.float32.onnx" in r.stdout and "int8-dynamic" not in r.stdout
    assert sorted(p.name for p in b.iterdir()) == ["golden.json", "manifest.json",
                                                   "model.float32.onnx", "probe.npz"]
    v = CliRunner().invoke(cli, ["verify", str(b)])
    assert v.exit_code == 0, v.output
    i = CliRunner().invoke(cli, ["info", str(b)])
    assert i.exit_code == 0, i.output
    assert "left out (outside their parity tolerance at export)" in i.stdout
    assert "model.int8-dynamic.onnx      onnx   int8-dynamic outside tolerance: " in i.stdout
    r = CliRunner().invoke(cli, ["export", str(tiny_run), "-o", str(tmp_path / "c"),
                                 "--format", "onnx", "--precision", "int8-dynamic"])
    assert r.exit_code == 1
    last = r.stderr.splitlines()[-1]
    assert last.startswith("Error: export refused: outside tolerance: model.int8-dynamic.onnx")
    assert "--precision: drop it" in last and "Traceback" not in r.output
    assert not (tmp_path / "c").exists()
