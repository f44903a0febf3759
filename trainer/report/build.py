"""`charwright report RUN_DIR|BUNDLE_DIR -o FILE.png|.html`: training you can see.

Panels: bits/char (training and validation per epoch, training per checkpoint interval from
intervals.json), the learning rate, and for a bundle each file's parity (top-1 agreement and
bits/char against the reference). No TensorFlow; matplotlib is the [report] extra.

The figures plotted are also written into the file as data: a PNG carries them in a tEXt chunk
named "charwright:series" (JSON: {name: {"x": [...], "y": [...]}}), an HTML page in a
<script type="application/json" id="charwright-series"> element beside the embedded PNG and a
table, so tests and scripts read what was drawn instead of pixels. A series longer than
MAX_POINTS is drawn and embedded downsampled (the first and last point and each bucket's lowest
and highest, so spikes and the best value stay visible) and then carries "rows", its length
before downsampling.

The files read come from a run or bundle made elsewhere: each is read only if it is a regular
file under its size bound, every value used is checked for its type first, and a wrong one ends
in one line naming the file and the field. The JSON embedded in the HTML page escapes <, > and &
(Django's json_script rule), so no string in it can end the <script> element or open a comment.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import stat
from pathlib import Path

import click

from charwright.runtime.files.atomic import atomic_path
from charwright.runtime.errors import BundleError, ConfigError, RunDirError, require
from charwright.runtime.bundle.manifest import show

SERIES_KEY = "charwright:series"
FORMATS = (".png", ".html")
# history.json holds ~300 bytes per epoch and intervals.json ~200 per checkpoint: 32 MiB is
# over 100,000 rows, far beyond any run; json.loads needs ~6x the file in memory
MAX_TABLE_BYTES = 32 << 20
MAX_RUN_JSON_BYTES = 16 << 20
MAX_POINTS = 2000  # per series, drawn and embedded; longer ones are downsampled
MAX_PARITY_ROWS = 256  # a bundle holds about ten files
MAX_NAME_CHARS = 255
_DAMAGED = "the file is damaged or was edited by hand"


def _num(v):
    """A finite float from a JSON number, else None (null, a string, true, 1e999, 10**400)."""
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except OverflowError:  # an int beyond float range
        return None
    return f if math.isfinite(f) else None


def _read_json(path: Path, default, max_bytes: int, error=RunDirError):
    """JSON of a regular file of at most max_bytes bytes (`default` if it does not exist)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return default
    except OSError as e:
        raise error(f"{path}: cannot open ({e.strerror or e})") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise error(f"{path}: not a regular file (a directory, device, FIFO or socket)")
    with os.fdopen(fd, "rb") as f:
        if st.st_size > max_bytes:
            raise error(f"{path}: {st.st_size:,} bytes, more than the {max_bytes >> 20} MiB a "
                        f"report reads; {_DAMAGED}")
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise error(f"{path}: more than the {max_bytes >> 20} MiB a report reads; {_DAMAGED}")
    try:
        return json.loads(data.decode("utf-8"))
    except RecursionError:
        raise error(f"{path}: malformed JSON (nested too deeply)") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise error(f"{path}: malformed JSON ({e})") from None


def _obj(d: dict, key: str, where: str, error) -> dict:
    """d[key] as an object ({} when absent or null); `key` is the field's dotted name."""
    v = d.get(key.rpartition(".")[2])
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise error(f"{where}: {key} must be an object, got {show(v)}; {_DAMAGED}")
    return v


def _rows(v, where: str, field: str | None, error) -> list:
    """A list of objects (history and interval rows, parity entries); field None: the file's
    top level."""
    if v is None:
        return []
    if not isinstance(v, list):
        name = f"{field} must be" if field else "must be"
        raise error(f"{where}: {name} a list of objects, got {show(v)}; {_DAMAGED}")
    for i, r in enumerate(v):
        if not isinstance(r, dict):
            name = f"{field}[{i}]" if field else f"row {i}"
            raise error(f"{where}: {name} must be an object, got {show(r)}; {_DAMAGED}")
    return v


def _name(v, where: str, error) -> str:
    if not isinstance(v, str) or not v or len(v) > MAX_NAME_CHARS:
        raise error(f"{where} must be a name of 1 to {MAX_NAME_CHARS} characters, got "
                    f"{show(v)}; {_DAMAGED}")
    return v


def _shown(v) -> str:
    """A value of the file for a fact line: short, whatever its type."""
    return v if isinstance(v, str) and len(v) <= 80 else show(v)


def _downsample(x: list, y: list, limit: int = MAX_POINTS) -> tuple[list, list]:
    """At most `limit` points of the series: the first and the last, and in each of
    (limit - 2) // 2 buckets of consecutive points its lowest and its highest y, in order."""
    n = len(x)
    if n <= limit:
        return x, y
    keep = {0, n - 1}
    buckets = (limit - 2) // 2
    edges = [1 + (n - 2) * k // buckets for k in range(buckets + 1)]
    for a, b in zip(edges[:-1], edges[1:]):
        if b > a:
            seg = y[a:b]
            keep.add(a + min(range(b - a), key=seg.__getitem__))
            keep.add(a + max(range(b - a), key=seg.__getitem__))
    idx = sorted(keep)
    return [x[i] for i in idx], [y[i] for i in idx]


def _series(pts: list) -> dict:
    """{"x", "y"} of (x, y) pairs, downsampled to MAX_POINTS (then with "rows": the length)."""
    x, y = [p[0] for p in pts], [p[1] for p in pts]
    if len(pts) <= MAX_POINTS:
        return {"x": x, "y": y}
    x, y = _downsample(x, y)
    return {"x": x, "y": y, "rows": len(pts)}


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
    from charwright.trainer import run_dir as rd

    path = run_dir / "run.json"
    try:
        size = path.stat().st_size
    except OSError:
        size = 0  # read_run says what is wrong
    if size > MAX_RUN_JSON_BYTES:
        raise RunDirError(f"{path}: {size:,} bytes, more than the {MAX_RUN_JSON_BYTES >> 20} "
                          f"MiB a report reads; {_DAMAGED}")
    run = rd.read_run(run_dir)
    history = _rows(_read_json(run_dir / "history.json", [], MAX_TABLE_BYTES),
                    str(run_dir / "history.json"), None, RunDirError)
    intervals = _rows(_read_json(run_dir / "intervals.json", [], MAX_TABLE_BYTES),
                      str(run_dir / "intervals.json"), None, RunDirError)
    train = _obj(run, "train", str(path), RunDirError)
    s = _obj(run, "summary", str(path), RunDirError)
    imp = _obj(run, "import", str(path), RunDirError)
    series: dict = {}

    def add(name, rows, xkey, ykey, fallback=None):
        pts = [(_num(r.get(xkey)), _num(r.get(ykey, fallback))) for r in rows]
        pts = [(x, y) for x, y in pts if x is not None and y is not None]
        if pts:
            series[name] = _series(pts)

    add("train_bpc_epoch", history, "global_step", "train_bpc")
    add("val_bpc_epoch", history, "global_step", "val_bpc")
    add("train_bpc_interval", intervals, "global_step", "train_bpc")
    add("learning_rate", history, "global_step", "learning_rate",
        fallback=train.get("learning_rate"))
    facts = [f"run {run_dir} ({_shown(run.get('status'))})"]
    if imp:
        source = _name(imp.get("source"), f"{path}: import.source", RunDirError)
        facts.append(f"imported from {Path(source).name} ({_shown(imp.get('kind'))}); probe "
                     f"{_fmt(s.get('probe_bpc'))} bits/char; no training history")
    if history:
        steps = s.get("optimizer_steps") or history[-1].get("optimizer_steps")
        facts.append(f"{len(history)} epochs, {_shown(steps)} optimizer steps, best val "
                     f"{_fmt(s.get('best_val_bpc'))} bits/char (epoch "
                     f"{_shown(s.get('best_epoch'))})")
    if s.get("device"):
        facts.append(f"reference on {_shown(s['device'])}")
    facts += [f"{name}: {v['rows']:,} points, drawn as {len(v['x']):,} (each bucket's lowest "
              "and highest)" for name, v in series.items() if "rows" in v]
    return {"kind": "run", "title": f"charwright run: {run_dir.name}", "series": series,
            "parity": [], "facts": facts, "epochs": [r.get("epoch") for r in history]}


def _collect_bundle(bundle_dir: Path) -> dict:
    from charwright.runtime.bundle.manifest import read_manifest

    m = read_manifest(bundle_dir)
    where = str(bundle_dir / "manifest.json")
    t = _obj(m, "training", where, BundleError)
    series: dict = {}
    parity = _rows(m.get("parity"), where, "parity", BundleError)
    if len(parity) > MAX_PARITY_ROWS:
        raise BundleError(f"{where}: parity holds {len(parity):,} rows, more than the "
                          f"{MAX_PARITY_ROWS} files a bundle holds; {_DAMAGED}")
    for i, p in enumerate(parity):
        _name(p.get("file"), f"{where}: parity[{i}].file", BundleError)
    if parity:
        series["parity_top1"] = {"x": [p["file"] for p in parity],
                                 "y": [_num(p.get("top1")) for p in parity]}
        series["parity_bpc"] = {"x": [p["file"] for p in parity],
                                "y": [_num(p.get("bpc")) for p in parity]}
        series["parity_ref_bpc"] = {"x": [p["file"] for p in parity],
                                    "y": [_num(p.get("ref_bpc")) for p in parity]}
    history = _rows(t.get("history"), where, "training.history", BundleError)
    if history:
        for key in ("train_bpc", "val_bpc"):
            pts = [(_num(r.get("global_step")), _num(r.get(key))) for r in history]
            pts = [p for p in pts if None not in p]
            if pts:
                series[f"{key}_epoch"] = _series(pts)
    train = _obj(t, "training.train", where, BundleError)
    if _num(train.get("learning_rate")) is not None and _num(t.get("optimizer_steps")):
        series["learning_rate"] = {"x": [0.0, float(t["optimizer_steps"])],
                                   "y": [float(train["learning_rate"])] * 2}
    if _num(t.get("best_val_bpc")) is not None:
        series["best_val_bpc"] = {"x": [_num(t.get("optimizer_steps")) or 0.0],
                                  "y": [float(t["best_val_bpc"])]}
    a = _obj(m, "architecture", where, BundleError)
    facts = [f"bundle {bundle_dir} ({m.get('format')} {_shown(m.get('format_version'))})",
             f"model {_shown(a.get('cell')).upper()} {_shown(a.get('layers'))}x"
             f"{_shown(a.get('units'))}, vocab {_shown(a.get('vocab_size'))}",
             f"training: {_shown(t.get('epochs'))} epochs, {_shown(t.get('optimizer_steps'))} "
             f"optimizer steps, best val {_fmt(t.get('best_val_bpc'))} bits/char, on "
             f"{_shown(t.get('device'))}"]
    facts += [f"{name}: {v['rows']:,} points, drawn as {len(v['x']):,} (each bucket's lowest "
              "and highest)" for name, v in series.items() if "rows" in v]
    return {"kind": "bundle", "title": f"charwright bundle: {bundle_dir.name}",
            "series": series, "parity": parity, "facts": facts}


def _fmt(v, spec=".4f"):
    return format(v, spec) if _num(v) is not None else "-"


def _plain(text: str) -> str:
    """Text drawn as is: matplotlib reads $...$ as mathtext, and a bad formula is an error."""
    return text.replace("$", r"\$")


def _figure(data: dict):
    plt = require("matplotlib", "report")
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    s = data["series"]
    panels = ["bpc", "lr"] + (["parity"] if data["parity"] else [])
    fig = Figure(figsize=(9, 3.2 * len(panels) + 0.8), layout="constrained")
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    fig.suptitle(_plain(data["title"] + "\n" + " | ".join(data["facts"][1:3])), fontsize=9)
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
        ax.text(0.5, 0.5, _plain("no training history (" + "; ".join(data["facts"][1:2]) + ")"),
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
        names = [_plain(r["file"]) for r in rows]
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
                    _plain(f"{top1[bars.index(b)]:.2f}%  {_fmt(r.get('bpc'))} vs "
                           f"{_fmt(r.get('ref_bpc'))}  {_shown(r.get('verdict', ''))}"),
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


def json_script_text(text: str) -> str:
    """JSON text made safe inside <script>: <, > and & as \\u escapes (Django's json_script), so
    no string in it can close the element or start "<!--" (which, followed by "<script", makes
    the parser swallow the rest of the page); JSON readers decode it unchanged."""
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def _html(data: dict, png: bytes, series_json: str) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(r['file'])}</td><td>{_fmt(r.get('top1'), '.2%')}</td>"
        f"<td>{_fmt(r.get('bpc'))}</td><td>{_fmt(r.get('ref_bpc'))}</td>"
        f"<td>{html.escape(str(r.get('verdict', '')))}</td></tr>" for r in data["parity"])
    table = ("<table><tr><th>file</th><th>top-1</th><th>bits/char</th><th>reference</th>"
             f"<th>verdict</th></tr>{rows}</table>") if rows else ""
    facts = "".join(f"<li>{html.escape(f)}</li>" for f in data["facts"])
    safe_json = json_script_text(series_json)
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
