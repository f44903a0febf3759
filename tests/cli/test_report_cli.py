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
    from tiny_models import train_tiny

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


# ---- hand-made run and bundle files (no training): bounds, types, the page's script -------

_RUN = {"format": "charwright-run", "version": 2, "status": "complete",
        "train": {"learning_rate": 0.002},
        "summary": {"best_val_bpc": 2.1, "best_epoch": 2, "optimizer_steps": 40, "device": "cpu"}}
_HIST = [{"epoch": i, "global_step": 20 * i, "train_bpc": 3 - 0.1 * i, "val_bpc": 3.1 - 0.1 * i,
          "learning_rate": 0.002, "optimizer_steps": 20 * i} for i in (1, 2)]
_MANIFEST = {"format": "charwright-bundle", "format_version": "1.0",
             "architecture": {"cell": "gru", "layers": 1, "units": 8, "vocab_size": 30},
             "training": {"epochs": 2, "optimizer_steps": 40, "best_val_bpc": 2.1,
                          "device": "cpu", "history": _HIST, "train": {"learning_rate": 0.002}},
             "parity": [{"file": "model.float32.onnx", "top1": 1.0, "bpc": 2.0, "ref_bpc": 2.0,
                         "verdict": "pass"}]}


def _run_dir(d, run=_RUN, history=_HIST, intervals=()):
    d.mkdir()
    (d / "run.json").write_text(json.dumps(run))
    (d / "history.json").write_text(history if isinstance(history, str) else json.dumps(history))
    (d / "intervals.json").write_text(json.dumps(list(intervals)))
    return d


def _bundle_dir(d, manifest=_MANIFEST):
    d.mkdir()
    (d / "manifest.json").write_text(json.dumps(manifest))
    return d


def _series_of_html(path):
    page = path.read_text(encoding="utf-8")
    start = page.index("id='charwright-series'>") + len("id='charwright-series'>")
    return page, json.loads(page[start : page.index("</script>", start)])


def test_html_script_escapes_lt_gt_amp(tmp_path):
    """A file name holding '<!--<script>' or '</script>' stays data: the page has one script
    element, which ends where it should, and its JSON reads back the name unchanged."""
    evil = "</script><!--<script>&amp;x.onnx"
    m = dict(_MANIFEST, parity=[dict(_MANIFEST["parity"][0], file=evil)])
    b = _bundle_dir(tmp_path / "b", m)
    r = CliRunner().invoke(cli, ["report", str(b), "-o", str(tmp_path / "b.html")])
    assert r.exit_code == 0, r.output
    page, s = _series_of_html(tmp_path / "b.html")
    script = page[page.index("<script") :]
    assert page.count("<script") == 1 and script.count("</script>") == 1
    assert script.rstrip().endswith("</script>") and "<!--" not in page
    body = script[script.index(">") + 1 : script.index("</script>")]
    assert not set("<>&") & set(body) and "\\u003c!--\\u003cscript\\u003e\\u0026amp;" in body
    assert s["parity_top1"]["x"] == [evil]
    assert "&lt;/script&gt;&lt;!--&lt;script&gt;&amp;amp;x.onnx" in page  # the table's cell


@pytest.mark.parametrize("kind,edit,line", [
    ("run", {"run": dict(_RUN, train=5)}, r"run\.json: train must be an object, got 5"),
    ("run", {"run": dict(_RUN, summary=[1])}, r"run\.json: summary must be an object, got \[1\]"),
    ("run", {"run": dict(_RUN, **{"import": "x"})}, r"run\.json: import must be an object"),
    ("run", {"run": dict(_RUN, **{"import": {"source": 5, "kind": "keras"}})},
     r"run\.json: import\.source must be a name of 1 to 255 characters, got 5"),
    ("run", {"history": {"a": 1}}, r"history\.json: must be a list of objects, got \{'a': 1\}"),
    ("run", {"history": 5}, r"history\.json: must be a list of objects, got 5"),
    ("run", {"history": [1, 2]}, r"history\.json: row 0 must be an object, got 1"),
    ("run", {"intervals": ["x"]}, r"intervals\.json: row 0 must be an object, got 'x'"),
    ("run", {"history": "[" * 100_000 + "]" * 100_000},
     r"history\.json: malformed JSON \(nested too deeply\)"),
    ("run", {"history": "[{]"}, r"history\.json: malformed JSON"),
    ("bundle", dict(_MANIFEST, architecture=[1]),
     r"manifest\.json: architecture must be an object, got \[1\]"),
    ("bundle", dict(_MANIFEST, training=5), r"manifest\.json: training must be an object"),
    ("bundle", dict(_MANIFEST, parity=5), r"manifest\.json: parity must be a list of objects"),
    ("bundle", dict(_MANIFEST, parity=[{"file": 5, "top1": 1.0}]),
     r"manifest\.json: parity\[0\]\.file must be a name of 1 to 255 characters, got 5"),
    ("bundle", dict(_MANIFEST, parity=[{"file": "x" * 300}]), r"parity\[0\]\.file must be a name"),
    ("bundle", dict(_MANIFEST, parity=[{"file": f"m{i}"} for i in range(300)]),
     r"manifest\.json: parity holds 300 rows, more than the 256 files a bundle holds"),
    ("bundle", dict(_MANIFEST, training=dict(_MANIFEST["training"], history=[1])),
     r"manifest\.json: training\.history\[0\] must be an object, got 1"),
    ("bundle", dict(_MANIFEST, training=dict(_MANIFEST["training"], train=5)),
     r"manifest\.json: training\.train must be an object, got 5"),
])
@pytest.mark.parametrize("suffix", [".png", ".html"])
def test_malformed_files_get_one_line_naming_the_field(tmp_path, kind, edit, line, suffix):
    import re

    if kind == "run":
        src = _run_dir(tmp_path / "src", edit.get("run", _RUN), edit.get("history", _HIST),
                       edit.get("intervals", ()))
    else:
        src = _bundle_dir(tmp_path / "src", edit)
    out = tmp_path / f"r{suffix}"
    r = CliRunner().invoke(cli, ["report", str(src), "-o", str(out)])
    msg = r.output.strip()
    assert r.exit_code == 1 and "\n" not in msg and "internal error" not in msg, msg
    assert re.search(line, msg), msg
    assert not out.exists()


def test_values_that_are_not_plottable_numbers_are_skipped(tmp_path):
    """An int beyond float range, Infinity, strings and booleans are dropped from the series;
    a '$' formula in a name is drawn as text."""
    hist = [{"global_step": 10**400, "train_bpc": 1.0}, {"global_step": 5, "train_bpc": 1e999},
            {"global_step": "7", "train_bpc": True}, {"global_step": 9, "train_bpc": 2.5}]
    run = dict(_RUN, summary=dict(_RUN["summary"], device="$\\frac{$"), status="$\\undefined$")
    src = _run_dir(tmp_path / "run", run, hist)
    r = CliRunner().invoke(cli, ["report", str(src), "-o", str(tmp_path / "r.png")])
    assert r.exit_code == 0, r.output
    assert _series_of_png(tmp_path / "r.png")["train_bpc_epoch"] == {"x": [9.0], "y": [2.5]}


def test_long_history_is_downsampled(tmp_path):
    """10,000 epochs: each series holds at most MAX_POINTS points (the first, the last, the
    lowest and the highest among them) and says how many rows it stood for."""
    from charwright.trainer.report.collect import MAX_POINTS

    n = 10_000
    hist = [{"global_step": i, "train_bpc": 3.0 - i * 1e-4, "val_bpc": 3.0 + (i % 97) * 1e-3}
            for i in range(1, n + 1)]
    hist[4321]["val_bpc"] = 0.5  # one spike down: the best epoch must stay visible
    src = _run_dir(tmp_path / "run", _RUN, hist)
    r = CliRunner().invoke(cli, ["report", str(src), "-o", str(tmp_path / "r.html")])
    assert r.exit_code == 0, r.output
    page, s = _series_of_html(tmp_path / "r.html")
    for key in ("train_bpc_epoch", "val_bpc_epoch", "learning_rate"):
        v = s[key]
        assert v["rows"] == n and len(v["x"]) == len(v["y"]) <= MAX_POINTS
        assert v["x"][0] == 1 and v["x"][-1] == n and v["x"] == sorted(set(v["x"]))
    assert 4322 in s["val_bpc_epoch"]["x"] and min(s["val_bpc_epoch"]["y"]) == 0.5
    assert max(s["val_bpc_epoch"]["y"]) == pytest.approx(3.096)
    assert "val_bpc_epoch: 10,000 points, drawn as" in page
    assert len(page) < 1_000_000


def test_history_read_is_bounded(tmp_path, monkeypatch):
    """A history.json over the bound is refused before it is parsed; a FIFO (which would block
    the read for ever) or a directory in its place is refused too."""
    import os

    from charwright.trainer.report import collect as report

    monkeypatch.setattr(report, "MAX_TABLE_BYTES", 1 << 20)
    src = _run_dir(tmp_path / "run", _RUN, "[" + ",".join(["{}"] * 400_000) + "]")
    r = CliRunner().invoke(cli, ["report", str(src), "-o", str(tmp_path / "r.png")])
    assert r.exit_code == 1 and "history.json: 1,200,001 bytes, more than the 1 MiB a report " \
        "reads" in r.output, r.output
    (src / "history.json").unlink()
    os.mkfifo(src / "history.json")
    r = CliRunner().invoke(cli, ["report", str(src), "-o", str(tmp_path / "r.png")])
    assert r.exit_code == 1 and "history.json: not a regular file" in r.output, r.output
    (src / "history.json").unlink()
    (src / "history.json").mkdir()
    r = CliRunner().invoke(cli, ["report", str(src), "-o", str(tmp_path / "r.png")])
    assert r.exit_code == 1 and "history.json: not a regular file" in r.output, r.output
