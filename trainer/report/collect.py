"""The figures of a run or a bundle, collected for `charwright report`: series of (x, y) points
(bits/char per epoch and per checkpoint interval, the learning rate, each file's parity), the
parity rows and one-line facts. Every file is read through read.py's bounded, typed readers.

A series longer than MAX_POINTS is kept downsampled (the first and last point and each bucket's
lowest and highest, so spikes and the best value stay visible) and then carries "rows", its
length before downsampling.
"""

from __future__ import annotations

from pathlib import Path

from charwright.runtime.errors import BundleError, ConfigError, RunDirError

from charwright.trainer.report.read import (DAMAGED, finite, fmt, name_field, object_field,
                                             object_rows, read_json, shown)

# history.json holds ~300 bytes per epoch and intervals.json ~200 per checkpoint: 32 MiB is
# over 100,000 rows, far beyond any run; json.loads needs ~6x the file in memory
MAX_TABLE_BYTES = 32 << 20
MAX_RUN_JSON_BYTES = 16 << 20
MAX_POINTS = 2000  # per series, drawn and embedded; longer ones are downsampled
MAX_PARITY_ROWS = 256  # a bundle holds about ten files


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


def _add(series: dict, key: str, rows: list, xkey: str, ykey: str, fallback=None) -> None:
    """series[key] from the rows' finite (x, y) pairs, if there are any."""
    pts = [(finite(r.get(xkey)), finite(r.get(ykey, fallback))) for r in rows]
    pts = [(x, y) for x, y in pts if x is not None and y is not None]
    if pts:
        series[key] = _series(pts)


def _downsampled(series: dict) -> list[str]:
    """A fact line per series drawn downsampled."""
    return [f"{key}: {v['rows']:,} points, drawn as {len(v['x']):,} (each bucket's lowest "
            "and highest)" for key, v in series.items() if "rows" in v]


def _read_run(run_dir: Path) -> tuple[dict, list, list]:
    """(run.json, history.json's rows, intervals.json's rows), each read bounded."""
    from charwright.trainer import run_dir as rd

    path = run_dir / "run.json"
    try:
        size = path.stat().st_size
    except OSError:
        size = 0  # read_run says what is wrong
    if size > MAX_RUN_JSON_BYTES:
        raise RunDirError(f"{path}: {size:,} bytes, more than the {MAX_RUN_JSON_BYTES >> 20} "
                          f"MiB a report reads; {DAMAGED}")
    run = rd.read_run(run_dir)
    tables = [object_rows(read_json(run_dir / f, [], MAX_TABLE_BYTES), str(run_dir / f), None,
                          RunDirError) for f in ("history.json", "intervals.json")]
    return run, *tables


def _collect_run(run_dir: Path) -> dict:
    run, history, intervals = _read_run(run_dir)
    path = run_dir / "run.json"
    train = object_field(run, "train", str(path), RunDirError)
    s = object_field(run, "summary", str(path), RunDirError)
    imp = object_field(run, "import", str(path), RunDirError)
    series: dict = {}
    _add(series, "train_bpc_epoch", history, "global_step", "train_bpc")
    _add(series, "val_bpc_epoch", history, "global_step", "val_bpc")
    _add(series, "train_bpc_interval", intervals, "global_step", "train_bpc")
    _add(series, "learning_rate", history, "global_step", "learning_rate",
         fallback=train.get("learning_rate"))
    facts = [f"run {run_dir} ({shown(run.get('status'))})"]
    if imp:
        source = name_field(imp.get("source"), f"{path}: import.source", RunDirError)
        facts.append(f"imported from {Path(source).name} ({shown(imp.get('kind'))}); probe "
                     f"{fmt(s.get('probe_bpc'))} bits/char; no training history")
    if history:
        steps = s.get("optimizer_steps") or history[-1].get("optimizer_steps")
        facts.append(f"{len(history)} epochs, {shown(steps)} optimizer steps, best val "
                     f"{fmt(s.get('best_val_bpc'))} bits/char (epoch "
                     f"{shown(s.get('best_epoch'))})")
    if s.get("device"):
        facts.append(f"reference on {shown(s['device'])}")
    return {"kind": "run", "title": f"charwright run: {run_dir.name}", "series": series,
            "parity": [], "facts": facts + _downsampled(series),
            "epochs": [r.get("epoch") for r in history]}


def _collect_bundle(bundle_dir: Path) -> dict:
    from charwright.runtime.bundle.manifest import read_manifest

    m = read_manifest(bundle_dir)
    where = str(bundle_dir / "manifest.json")
    t = object_field(m, "training", where, BundleError)
    parity = _parity(m, where)
    series: dict = {f"parity_{key}": {"x": [p["file"] for p in parity],
                                      "y": [finite(p.get(key)) for p in parity]}
                    for key in (("top1", "bpc", "ref_bpc") if parity else ())}
    history = object_rows(t.get("history"), where, "training.history", BundleError)
    for key in ("train_bpc", "val_bpc"):
        _add(series, f"{key}_epoch", history, "global_step", key)
    train = object_field(t, "training.train", where, BundleError)
    if finite(train.get("learning_rate")) is not None and finite(t.get("optimizer_steps")):
        series["learning_rate"] = {"x": [0.0, float(t["optimizer_steps"])],
                                   "y": [float(train["learning_rate"])] * 2}
    if finite(t.get("best_val_bpc")) is not None:
        series["best_val_bpc"] = {"x": [finite(t.get("optimizer_steps")) or 0.0],
                                  "y": [float(t["best_val_bpc"])]}
    a = object_field(m, "architecture", where, BundleError)
    facts = [f"bundle {bundle_dir} ({m.get('format')} {shown(m.get('format_version'))})",
             f"model {shown(a.get('cell')).upper()} {shown(a.get('layers'))}x"
             f"{shown(a.get('units'))}, vocab {shown(a.get('vocab_size'))}",
             f"training: {shown(t.get('epochs'))} epochs, {shown(t.get('optimizer_steps'))} "
             f"optimizer steps, best val {fmt(t.get('best_val_bpc'))} bits/char, on "
             f"{shown(t.get('device'))}"]
    return {"kind": "bundle", "title": f"charwright bundle: {bundle_dir.name}",
            "series": series, "parity": parity, "facts": facts + _downsampled(series)}


def _parity(m: dict, where: str) -> list[dict]:
    """The manifest's parity rows, bounded, each naming its file."""
    parity = object_rows(m.get("parity"), where, "parity", BundleError)
    if len(parity) > MAX_PARITY_ROWS:
        raise BundleError(f"{where}: parity holds {len(parity):,} rows, more than the "
                          f"{MAX_PARITY_ROWS} files a bundle holds; {DAMAGED}")
    for i, p in enumerate(parity):
        name_field(p.get("file"), f"{where}: parity[{i}].file", BundleError)
    return parity
