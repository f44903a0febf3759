"""The runtime's inspection subcommands: info, score, verify. Thin: parse, call, render."""

from __future__ import annotations

import json

import click

from .errors import ParityError


@click.command("verify")
@click.argument("bundle_dir", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--threads", type=click.IntRange(1, 256), default=1, show_default=True)
def verify(bundle_dir, as_json, threads):
    """Replay the reference probe on every model file of BUNDLE_DIR.

    Prints one row per file: max and mean |Δlogit|, top-1 agreement, KL(reference‖file),
    bits/char of the file vs the reference, the first step at which the file's greedy text
    differs from the reference's, and the verdict. Exits 1 if any file is outside its
    tolerance, or damaged (size or sha256 mismatch). Needs no TensorFlow.
    """
    from .bundle import load_bundle
    from .parity import check_bundle, format_table, raise_for_failures

    bundle = load_bundle(bundle_dir, verify=False)  # per-file checks happen in check_bundle
    results = check_bundle(bundle, threads=threads)
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in results], indent=2, sort_keys=True))
    else:
        click.echo(format_table(results))
    try:
        raise_for_failures(results)
    except ParityError as e:
        raise ParityError(f"{bundle_dir}: {e}") from None


@click.command("info")
@click.argument("bundle_dir", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
def info(bundle_dir, as_json):
    """Show what BUNDLE_DIR holds: vocabulary, architecture, files, training, parity."""
    from .bundle import load_bundle

    b = load_bundle(bundle_dir, verify=False)
    m = b.manifest
    if as_json:
        click.echo(json.dumps(m, indent=2, sort_keys=True))
        return
    a = m["architecture"]
    t = m.get("training", {})
    parity = {p["file"]: p for p in m.get("parity", [])}
    chars = "".join(b.vocab.chars)
    click.echo(f"bundle      {b.root} ({m['format']} {m['format_version']})")
    click.echo(f"model       {a['cell'].upper()} {a['layers']}x{a['units']}, embedding "
               f"{a['embedding_dim'] or 'one-hot'}, vocab {b.vocab.size}"
               + (" (with end-of-sequence)" if b.vocab.eos else ""))
    click.echo(f"state       float32 [batch, {b.state_size}]: "
               + ", ".join(f"{s['name']}[{s['size']}]" for s in m["state"]["layout"]))
    click.echo(f"vocabulary  {json.dumps(chars, ensure_ascii=False)}")
    if t:
        bpc = t.get("best_val_bpc")
        click.echo(f"training    {t.get('epochs')} epochs, {t.get('optimizer_steps')} steps, "
                   f"val {bpc:.4f} bits/char, on {t.get('device')}" if bpc is not None else
                   f"training    {t}")
    click.echo("files")
    for f in b.files:
        p = parity.get(f.path)
        verdict = "" if p is None else (
            f"  top-1 {p['top1']:.2%}, bits/char {p['bpc']:.4f}, {p['verdict']}")
        click.echo(f"  {f.path:28s} {f.format:6s} {f.precision:12s} {f.bytes:>12,} bytes{verdict}")


BACKEND_CHOICE = click.Choice(["onnx", "litert", "numpy"])
PRECISION_CHOICE = click.Choice(["float32", "float16", "int8-dynamic", "int8"])


@click.command("score")
@click.argument("bundle_dir", type=click.Path(file_okay=False))
@click.argument("text_file", type=click.Path(dir_okay=False))
@click.option("--backend", type=BACKEND_CHOICE, default="onnx", show_default=True)
@click.option("--precision", type=PRECISION_CHOICE)
@click.option("--unknown", type=click.Choice(["error", "skip", "replace"]), default="error",
              show_default=True)
@click.option("--json", "as_json", is_flag=True)
def score(bundle_dir, text_file, backend, precision, unknown, as_json):
    """Bits per character of TEXT_FILE (UTF-8) under the model in BUNDLE_DIR."""
    from .errors import ConfigError
    from .model import load

    try:
        with open(text_file, "rb") as f:
            text = f.read().decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{text_file}: invalid UTF-8 at byte offset {e.start}") from None
    model = load(bundle_dir, backend=backend, precision=precision)
    s = model.score(text, unknown=unknown)
    if as_json:
        click.echo(json.dumps({"file": text_file, "bits_per_char": s.bits_per_char,
                               "logprob": s.logprob, "chars": s.chars,
                               "model": model.entry.path}))
    else:
        click.echo(f"{s.bits_per_char:.4f} bits/char over {s.chars:,} characters "
                   f"({model.entry.path})")
