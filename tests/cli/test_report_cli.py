"""charwright report: a tiny run and a bundle render to PNG (and HTML) that open and hold the
expected series (read from the file's own data chunk, not from pixels)."""

import json

import pytest
from click.testing import CliRunner

from charwright.runtime.cli import cli

pytestmark = [pytest.mark.tf, pytest.mark.report]


def _series_of_png(path):
    from PIL import Image

    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > 400
        return json.loads(im.text["charwright:series"])


def test_run_report_png(tmp_path, tiny_corpus):
    from conftest import train_tiny

    run = tmp_path / "run"
    train_tiny(run, tiny_corpus, units=8, epochs=2, checkpoint_every=10, probe_chars=50,
               greedy_chars=5)
    history = json.loads((run / "history.json").read_text())
    intervals = json.loads((run / "intervals.json").read_text())
    assert len(intervals) > len(history) == 2  # step checkpoints and epoch ends
    r = CliRunner().invoke(cli, ["report", str(run), "-o", str(tmp_path / "r.png")])
    assert r.exit_code == 0, r.output
    s = _series_of_png(tmp_path / "r.png")
    assert s["train_bpc_epoch"]["y"] == pytest.approx([h["train_bpc"] for h in history])
    assert s["val_bpc_epoch"]["y"] == pytest.approx([h["val_bpc"] for h in history])
    assert s["val_bpc_epoch"]["x"] == [h["global_step"] for h in history]
    assert s["train_bpc_interval"]["x"] == [i["global_step"] for i in intervals]
    assert s["learning_rate"]["y"] == pytest.approx([2e-3, 2e-3])
    # the interval means, weighted by their steps, give each epoch's training mean back
    steps_per_epoch = history[0]["steps"]
    first = [i for i in intervals if i["global_step"] <= steps_per_epoch]
    mean = sum(i["train_loss"] * i["steps"] for i in first) / sum(i["steps"] for i in first)
    assert mean == pytest.approx(history[0]["train_loss"], rel=1e-4)


def test_bundle_report_png_and_html(tmp_path, tiny_bundle):
    m = json.loads((tiny_bundle / "manifest.json").read_text())
    r = CliRunner().invoke(cli, ["report", str(tiny_bundle), "-o", str(tmp_path / "b.png")])
    assert r.exit_code == 0, r.output
    s = _series_of_png(tmp_path / "b.png")
    assert s["parity_top1"]["x"] == [p["file"] for p in m["parity"]]
    assert s["parity_top1"]["y"] == pytest.approx([p["top1"] for p in m["parity"]])
    assert s["parity_bpc"]["y"] == pytest.approx([p["bpc"] for p in m["parity"]])
    assert s["best_val_bpc"]["y"] == pytest.approx([m["training"]["best_val_bpc"]])
    r = CliRunner().invoke(cli, ["report", str(tiny_bundle), "-o", str(tmp_path / "b.html")])
    assert r.exit_code == 0, r.output
    page = (tmp_path / "b.html").read_text()
    assert "data:image/png;base64," in page and "model.int8.tflite" in page
    start = page.index("id='charwright-series'>") + len("id='charwright-series'>")
    assert json.loads(page[start : page.index("</script>", start)]) == s


def test_report_refuses_other_suffixes_and_directories(tmp_path, tiny_bundle):
    r = CliRunner().invoke(cli, ["report", str(tiny_bundle), "-o", str(tmp_path / "b.jpg")])
    assert r.exit_code == 1 and "a .png or an .html file" in r.output
    r = CliRunner().invoke(cli, ["report", str(tmp_path), "-o", str(tmp_path / "b.png")])
    assert r.exit_code == 1 and "neither a run directory" in r.output
