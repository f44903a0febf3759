"""`charwright emit-c`: parse, call emit_c.project.emit, render (what it wrote on stderr)."""

from __future__ import annotations

import sys

import click

from charwright.runtime.emit_c.project import PRECISIONS, emit


@click.command("emit-c")
@click.argument("bundle_dir", type=click.Path(file_okay=False))
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Directory for the C project (created).")
@click.option("--precision", type=click.Choice(list(PRECISIONS)), default="float32",
              show_default=True, help="Weights in model.h: float32, or int8 with one scale "
              "per output row.")
@click.option("--regex", help="Bake this pattern's DFA into model.h: cw_generate's text then "
              "matches it in full (re.fullmatch; the syntax: docs/generating.md).")
def emit_c(bundle_dir, out_dir, precision, regex):
    """Emit a dependency-free C99 runtime for BUNDLE_DIR into DIR: `make -C DIR` builds
    DIR/cw_generate, `make -C DIR check` replays the probe and the sampling golden vectors,
    `make -C DIR cortex-m4` builds Cortex-M4 ELF files for qemu-system-arm. `make` builds
    for this machine's CPU (-march=native); for a binary that runs on other x86-64 CPUs:
    `make -C DIR CW_ARCH=` (portable) or `CW_ARCH=-mavx2`.

    \b
    charwright emit-c BUNDLE -o DIR [--precision int8]
    make -C DIR && DIR/cw_generate --seed 1 -n 200 ROMEO:
    """
    res = emit(bundle_dir, out_dir, precision, regex=regex)
    if res["regex"]:
        r = res["regex"]
        click.echo(f"regex: {r['states']} DFA states x {r['classes']} character classes, "
                   f"{r['flash_bytes']:,} bytes of tables", err=True)
    if res["quantization_error"]:
        worst = max(res["quantization_error"].items(), key=lambda kv: kv[1])
        click.echo(f"int8: max |weight error| {worst[1]:.3g} (in {worst[0]})", err=True)
    click.echo(f"wrote {out_dir}: {', '.join(res['files'])}; build with: make -C {out_dir} "
               "(for this CPU; CW_ARCH= for a binary that runs on any x86-64)", err=True)
    sys.stdout.flush()
