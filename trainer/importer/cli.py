"""`charwright import`: parse options, call importer.convert.import_model, render on stderr."""

from __future__ import annotations

import json

import click

from charwright.runtime.errors import ConfigError


class _Progress:
    def __init__(self, stream):
        self.stream = stream

    def __call__(self, ev: dict) -> None:
        kind = ev["event"]
        if kind == "parsed":
            layers = " -> ".join(
                f"{d['cell'].upper()}{'' if d['reset_after'] is not False else '(reset_after=False)'}"
                f" {d['units']}" for d in ev["specs"])
            click.echo(f"model: {layers}, vocabulary {ev['vocab']} characters", file=self.stream)
            if ev["skipped"]:
                click.echo(f"warning: {ev['skipped']} character(s) of the probe text are not in "
                           "the vocabulary; skipped", file=self.stream)
        elif kind == "probe":
            click.echo(f"recording the reference probe ({ev['chars']} chars) on this machine",
                       file=self.stream)
        elif kind == "done":
            diff = ev["import_diff"]
            click.echo(f"imported into {ev['run_dir']}: probe {ev['probe_bpc']:.4f} bits/char, "
                       f"step graph max |diff| {ev['step_check_max_abs_diff']:.2e}"
                       + ("" if diff is None else f", rebuild vs original {diff:.1e}")
                       + f", reference on {ev['device']}", file=self.stream)


@click.command("import")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("-o", "--output", "run_dir", required=True, type=click.Path(file_okay=False),
              help="Run directory to write (export, verify and generate work on it).")
@click.option("--vocab", "vocab", required=True, type=click.Path(dir_okay=False),
              help="The model's vocabulary, id order: a JSON list of characters, a text file "
                   "with one per line (\\n \\t \\r \\\\ escapes), or a StringLookup vocabulary "
                   "([UNK] first).")
@click.option("--probe-text", type=click.Path(dir_okay=False),
              help="Text to record the reference probe over (required: a few thousand "
                   "characters like the training text).")
@click.option("--stack", help="For a weights-only file: the layers bottom-up as CELL:UNITS, "
                              "e.g. gru:1024 or lstm:64,gru:32 (gru-v1 = reset_after false).")
@click.option("--probe-chars", type=click.IntRange(2, 10**7), default=2000, show_default=True,
              help="Characters of the probe text recorded with reference logits.")
@click.option("--greedy-chars", type=click.IntRange(1, 10**6), default=500, show_default=True,
              help="Length of the reference greedy continuation.")
@click.option("--force", is_flag=True, help="Replace the run in RUN_DIR.")
@click.option("--json", "as_json", is_flag=True, help="Print run.json to stdout at the end.")
@click.option("-v", "--verbose", is_flag=True,
              help="Also show TensorFlow's own log lines and warnings on stderr.")
def import_model(model, run_dir, vocab, probe_text, stack, probe_chars, greedy_chars, force,
                 as_json, verbose):
    """Turn a Keras MODEL trained elsewhere (.keras, legacy .h5, or a weights-only .weights.h5
    with --stack) into RUN_DIR.

    \b
    charwright import model.keras --vocab vocab.json --probe-text sample.txt -o RUN
    charwright import ckpt.weights.h5 --stack gru:1024 --vocab vocab.txt \\
        --probe-text shakespeare.txt -o RUN
    charwright export RUN -o BUNDLE
    """
    from charwright.runtime.quiet import quiet_stderr

    from charwright.trainer.importer.convert import import_model as run_import

    if probe_text is None:
        raise ConfigError("give --probe-text FILE: the reference probe is recorded from the "
                          "imported model over a text you choose (a few thousand characters "
                          "like its training text); charwright does not invent one")
    with quiet_stderr(verbose) as err:
        run = run_import(model, run_dir, vocab, probe_text, stack=stack, probe_chars=probe_chars,
                         greedy_chars=greedy_chars, force=force, on_progress=_Progress(err))
    if as_json:
        click.echo(json.dumps(run, indent=2, sort_keys=True))
