"""`charwright report RUN_DIR|BUNDLE_DIR -o FILE.png|.html`: training you can see.

Panels: bits/char (training and validation per epoch, training per checkpoint interval from
intervals.json), the learning rate, and for a bundle each file's parity (top-1 agreement and
bits/char against the reference). No TensorFlow; matplotlib is the [report] extra. The click
command only: collect.py reads, figure.py draws, render.py writes.
"""

from __future__ import annotations

import click

from charwright.trainer.report.render import render


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
