"""`charwright report RUN_DIR|BUNDLE_DIR -o FILE.png|.html`: training you can see.

Panels: bits/char (training and validation per epoch, training per checkpoint interval from
intervals.json), the learning rate, and for a bundle each file's parity (top-1 agreement and
bits/char against the reference). No TensorFlow; matplotlib is the [report] extra.

The figures plotted are also written into the file as data: a PNG carries them in a tEXt chunk
named "charwright:series" (JSON: {name: {"x": [...], "y": [...]}}), an HTML page in a
<script type="application/json" id="charwright-series"> element beside the embedded PNG and a
table, so tests and scripts read what was drawn instead of pixels.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path

import click

from charwright.runtime.atomic import atomic_path
from charwright.runtime.errors import ConfigError, require

SERIES_KEY = "charwright:series"
FORMATS = (".png", ".html")


def _num(v):
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and \
        math.isfinite(v) else None


def _read_json(path: Path, default):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return default
    except ValueError as e:
        raise ConfigError(f"{path}: malformed JSON ({e})") from None


def collect(source: str | Path) -> dict:
    """The figures of a run or a bundle: {"kind", "title", "series": {name: {x, y}}, "parity":
    [rows], "facts": [lines]}."""
    source = Path(source)
    if (source / "run.json").is_file():
        return _collect_run(source)
    if (source / "manifest.json").is_file():
        return _collect_bundle(source)
    raise ConfigError(f"{source}: neither a run directory (run.json) nor a bundle "
                      "(manifest.json)")


def _collect_run(run_dir: Path) -> dict:
    from . import run_dir as rd

    run = rd.read_run(run_dir)
    history = _read_json(run_dir / "history.json", [])
    intervals = _read_json(run_dir / "intervals.json", [])
    train = run.get("train") or {}
    series: dict = {}

    def add(name, rows, xkey, ykey, fallback=None):
        pts = [(_num(r.get(xkey)), _num(r.get(ykey, fallback))) for r in rows]
        pts = [(x, y) for x, y in pts if x is not None and y is not None]
        if pts:
            series[name] = {"x": [p[0] for p in pts], "y": [p[1] for p in pts]}

    add("train_bpc_epoch", history, "global_step", "train_bpc")
    add("val_bpc_epoch", history, "global_step", "val_bpc")
    add("train_bpc_interval", intervals, "global_step", "train_bpc")
    add("learning_rate", history, "global_step", "learning_rate",
        fallback=train.get("learning_rate"))
    s = run.get("summary") or {}
    facts = [f"run {run_dir} ({run.get('status')})"]
    if run.get("import"):
        imp = run["import"]
        facts.append(f"imported from {Path(imp['source']).name} ({imp['kind']}); probe "
                     f"{_fmt(s.get('probe_bpc'))} bits/char; no training history")
    if history:
        facts.append(f"{len(history)} epochs, {s.get('optimizer_steps') or history[-1].get('optimizer_steps')} "
                     f"optimizer steps, best val {_fmt(s.get('best_val_bpc'))} bits/char "
                     f"(epoch {s.get('best_epoch')})")
    if s.get("device"):
        facts.append(f"reference on {s['device']}")
    return {"kind": "run", "title": f"charwright run: {run_dir.name}", "series": series,
            "parity": [], "facts": facts, "epochs": [r.get("epoch") for r in history]}


def _collect_bundle(bundle_dir: Path) -> dict:
    from charwright.runtime.manifest import read_manifest

    m = read_manifest(bundle_dir)
    t = m.get("training") if isinstance(m.get("training"), dict) else {}
    series: dict = {}
    parity = [p for p in m.get("parity") or () if isinstance(p, dict) and p.get("file")]
    if parity:
        series["parity_top1"] = {"x": [p["file"] for p in parity],
                                 "y": [_num(p.get("top1")) for p in parity]}
        series["parity_bpc"] = {"x": [p["file"] for p in parity],
                                "y": [_num(p.get("bpc")) for p in parity]}
        series["parity_ref_bpc"] = {"x": [p["file"] for p in parity],
                                    "y": [_num(p.get("ref_bpc")) for p in parity]}
    history = t.get("history") if isinstance(t.get("history"), list) else []
    if history:
        for key in ("train_bpc", "val_bpc"):
            pts = [(_num(r.get("global_step")), _num(r.get(key))) for r in history]
            pts = [p for p in pts if None not in p]
            if pts:
                series[f"{key}_epoch"] = {"x": [p[0] for p in pts], "y": [p[1] for p in pts]}
    train = t.get("train") if isinstance(t.get("train"), dict) else {}
    if _num(train.get("learning_rate")) is not None and _num(t.get("optimizer_steps")):
        series["learning_rate"] = {"x": [0.0, float(t["optimizer_steps"])],
                                   "y": [float(train["learning_rate"])] * 2}
    if _num(t.get("best_val_bpc")) is not None:
        series["best_val_bpc"] = {"x": [_num(t.get("optimizer_steps")) or 0.0],
                                  "y": [float(t["best_val_bpc"])]}
    a = m.get("architecture") or {}
    facts = [f"bundle {bundle_dir} ({m.get('format')} {m.get('format_version')})",
             f"model {str(a.get('cell')).upper()} {a.get('layers')}x{a.get('units')}, vocab "
             f"{a.get('vocab_size')}",
             f"training: {t.get('epochs')} epochs, {t.get('optimizer_steps')} optimizer steps, "
             f"best val {_fmt(t.get('best_val_bpc'))} bits/char, on {t.get('device')}"]
    return {"kind": "bundle", "title": f"charwright bundle: {bundle_dir.name}",
            "series": series, "parity": parity, "facts": facts}


def _fmt(v, spec=".4f"):
    return format(v, spec) if _num(v) is not None else "-"


def _figure(data: dict):
    plt = require("matplotlib", "report")
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    s = data["series"]
    panels = ["bpc", "lr"] + (["parity"] if data["parity"] else [])
    fig = Figure(figsize=(9, 3.2 * len(panels) + 0.8), layout="constrained")
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    fig.suptitle(data["title"] + "\n" + " | ".join(data["facts"][1:3]), fontsize=9)
    ax = axes[0]
    styles = {"train_bpc_interval": dict(color="tab:blue", alpha=0.45, lw=1,
                                         label="training, per checkpoint interval"),
              "train_bpc_epoch": dict(color="tab:blue", marker="o", lw=2,
                                      label="training, per epoch"),
              "val_bpc_epoch": dict(color="tab:orange", marker="o", lw=2,
                                    label="validation, per epoch"),
              "best_val_bpc": dict(color="tab:orange", marker="*", ms=14, ls="none",
                                   label="best validation (training summary)")}
    drawn = False
    for name, st in styles.items():
        if name in s:
            ax.plot(s[name]["x"], s[name]["y"], **st)
            drawn = True
    if not drawn:
        ax.text(0.5, 0.5, "no training history (" + "; ".join(data["facts"][1:2]) + ")",
                ha="center", va="center", transform=ax.transAxes, fontsize=9)
    ax.set_ylabel("bits/char")
    ax.set_xlabel("optimizer step")
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend(fontsize=8)
    ax = axes[1]
    if "learning_rate" in s:
        ax.plot(s["learning_rate"]["x"], s["learning_rate"]["y"], color="tab:green",
                marker=".", label="learning rate")
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no learning rate recorded", ha="center", va="center",
                transform=ax.transAxes, fontsize=9)
    ax.set_ylabel("learning rate")
    ax.set_xlabel("optimizer step")
    ax.grid(alpha=0.3)
    if data["parity"]:
        ax = axes[2]
        rows = data["parity"]
        names = [r["file"] for r in rows]
        top1 = [(_num(r.get("top1")) or 0.0) * 100 for r in rows]
        colors = ["tab:green" if r.get("verdict", "pass") == "pass" or r.get("passed")
                  else "tab:red" for r in rows]
        bars = ax.barh(range(len(rows)), top1, color=colors)
        ax.set_yticks(range(len(rows)), names, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(min(90.0, min(top1) - 1), 100.5)
        ax.axvline(97.0, color="grey", ls="--", lw=1)
        ax.set_xlabel("top-1 agreement with the reference (%)   [labels: bits/char file vs "
                      "reference]")
        for b, r in zip(bars, rows):
            ax.text(b.get_width() - 0.1, b.get_y() + b.get_height() / 2,
                    f"{top1[bars.index(b)]:.2f}%  {_fmt(r.get('bpc'))} vs {_fmt(r.get('ref_bpc'))}"
                    f"  {r.get('verdict', '')}",
                    ha="right", va="center", fontsize=8, color="white")
        ax.set_title("parity per file (measured at export)", fontsize=9)
    del plt
    return fig


def render(source, out) -> dict:
    """Writes the report of a run or bundle to `out` (.png or .html); returns collect()'s dict.
    The file is written atomically."""
    out = Path(out)
    if out.suffix.lower() not in FORMATS:
        raise ConfigError(f"-o {out}: the report is a .png or an .html file")
    data = collect(source)
    fig = _figure(data)
    series_json = json.dumps(data["series"], sort_keys=True)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={SERIES_KEY: series_json,
                                                      "Software": "charwright report"})
    png = buf.getvalue()
    if out.suffix.lower() == ".html":
        payload = _html(data, png, series_json).encode("utf-8")
    else:
        payload = png
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out, suffix=out.suffix) as tmp:
        tmp.write_bytes(payload)
    return data


def _html(data: dict, png: bytes, series_json: str) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(r['file'])}</td><td>{_fmt(r.get('top1'), '.2%')}</td>"
        f"<td>{_fmt(r.get('bpc'))}</td><td>{_fmt(r.get('ref_bpc'))}</td>"
        f"<td>{html.escape(str(r.get('verdict', '')))}</td></tr>" for r in data["parity"])
    table = ("<table><tr><th>file</th><th>top-1</th><th>bits/char</th><th>reference</th>"
             f"<th>verdict</th></tr>{rows}</table>") if rows else ""
    facts = "".join(f"<li>{html.escape(f)}</li>" for f in data["facts"])
    safe_json = series_json.replace("</", "<\\/")
    return (f"<!doctype html><meta charset='utf-8'><title>{html.escape(data['title'])}</title>"
            f"<h1>{html.escape(data['title'])}</h1><ul>{facts}</ul>"
            f"<img alt='report' src='data:image/png;base64,{base64.b64encode(png).decode()}'>"
            f"{table}<script type='application/json' id='charwright-series'>{safe_json}"
            "</script>\n")


@click.command("report")
@click.argument("source", type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--output", "out", required=True, type=click.Path(dir_okay=False),
              help="The report file: FILE.png or FILE.html (the PNG embedded, with a table).")
def report(source, out):
    """Plot a run's or a bundle's training (bits/char per epoch and per checkpoint interval,
    learning rate) and, for a bundle, each file's parity.

    \b
    charwright report RUN -o run.png
    charwright report BUNDLE -o bundle.html
    """
    render(source, out)
    click.echo(f"report written to {out}", err=True)
