"""`charwright info`: read a bundle's manifest (files not verified) and render what it holds:
vocabulary, architecture, state layout, training, files with their parity, left-out files; or
the manifest as JSON."""

from __future__ import annotations

import json
import math

import click

from charwright.runtime.commands.options import bundle_option, exit_130_on_interrupt, resolve_bundle


def _finite(obj):
    """obj with every non-finite float replaced by None (valid JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def _fmt(v, spec: str, default: str = "?") -> str:
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
        return format(v, spec)
    return default


@click.command("info")
@click.argument("bundle_dir", required=False, type=click.Path(file_okay=False))
@bundle_option
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
@exit_130_on_interrupt
def info(bundle_dir, bundle_opt, as_json):
    """Show what BUNDLE_DIR (default: the demo bundle) holds: vocabulary, architecture, files,
    training, parity."""
    from charwright.runtime.bundle.reader import load_bundle

    b = load_bundle(resolve_bundle(bundle_dir, bundle_opt), verify=False)
    m = b.manifest
    if as_json:  # a manifest may hold NaN (older parity rows): JSON has no NaN, null it
        click.echo(json.dumps(_finite(m), indent=2, sort_keys=True, allow_nan=False))
        return
    _render_model(b)
    _render_files(b)


def _render_model(b) -> None:
    """What the model is: format, architecture, state layout, vocabulary, training."""
    m = b.manifest
    a = m["architecture"]
    t = m.get("training") if isinstance(m.get("training"), dict) else {}
    chars = "".join(b.vocab.chars)
    click.echo(f"bundle      {b.root} ({m['format']} {m['format_version']})")
    click.echo(f"model       {a['cell'].upper()} {a['layers']}x{a['units']}, embedding "
               f"{a.get('embedding_dim') or 'one-hot'}, vocab {b.vocab.size}"
               + (" (with end-of-sequence)" if b.vocab.eos else ""))
    click.echo(f"state       float32 [batch, {b.state_size}]: "
               + ", ".join(f"{s['name']}[{s['size']}]" for s in m["state"]["layout"]))
    click.echo(f"vocabulary  {json.dumps(chars, ensure_ascii=False)}")
    from charwright.runtime.sampling.compiled import core_in_use

    click.echo(f"sampler     {core_in_use()}")
    if t:
        click.echo(f"training    {t.get('epochs')} epochs, {t.get('optimizer_steps')} steps, "
                   f"val {_fmt(t.get('best_val_bpc'), '.4f')} bits/char, on {t.get('device')}")


def _render_files(b) -> None:
    """One line per file with its parity at export, then the files export left out."""
    m = b.manifest
    parity = {p.get("file"): p for p in m.get("parity") or () if isinstance(p, dict)}
    click.echo("files")
    for f, raw in zip(b.files, m["files"]):
        p = parity.get(f.path)
        verdict = "" if p is None else (
            f"  top-1 {_fmt(p.get('top1'), '.2%', '-')}, bits/char "
            f"{_fmt(p.get('bpc'), '.4f', '-')}, {p.get('verdict', '?')}")
        click.echo(f"  {f.path:28s} {f.format:6s} {f.precision:12s} {f.bytes:>12,} bytes{verdict}"
                   + ("; batch-invariant" if f.batch_invariant else "; not batch-invariant"
                      if "batch_invariant" in raw else "; batch invariance not recorded")
                   + ("; portable (same bits on every runtime)" if f.portable else ""))
    left_out = m.get("left_out") or []
    if left_out:
        click.echo("left out (outside their parity tolerance at export)")
    for d in left_out:
        click.echo(f"  {d['path']:28s} {d['format']:6s} {d['precision']:12s} {d['reason']}")
