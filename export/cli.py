"""`charwright export`: parse options, call export.writer.export, print the parity table."""

from __future__ import annotations

import json
import sys

import click

from charwright.export.writer import FORMAT_CHOICES, PRECISIONS


class _Progress:
    """Turns export events into stderr lines on `stream` (the real stderr; see runtime/quiet.py)."""

    def __init__(self, stream):
        self.stream = stream

    def _echo(self, text: str, nl: bool = True) -> None:
        click.echo(text, file=self.stream, nl=nl)

    def __call__(self, ev: dict) -> None:
        kind = ev["event"]
        if kind == "convert":
            self._echo(f"converting {ev['file']} ...", nl=False)
        elif kind == "converted":
            self._echo(f" {ev['bytes']:,} bytes, {ev['seconds']:.1f}s")
        elif kind == "calibration":
            self._echo(f"calibration: {ev['pairs']} (token, state) pairs, teacher-forced and "
                       "free-running")
        elif kind == "parity_file":
            r = ev["result"]
            mark = "✓" if r.passed else "✗"
            self._echo(f"  -[{mark}] {r.file}: top-1 {r.top1:.2%}, max |Δ| {r.max_abs:.2e}, "
                       f"bits/char {r.bpc:.4f} vs {r.ref_bpc:.4f}"
                       + ("" if r.passed else f" ({'; '.join(r.failures)})"))
        elif kind == "parity":
            self._echo("parity (reference probe replayed on every file):")
        elif kind == "left_out":
            self._echo(f"left out {ev['path']}: {ev['reason']} (pass --allow-mismatch to keep "
                       "it)")
        elif kind == "batch_invariance":
            inv = ev["invariant"]
            self._echo(f"  {ev['file']}: batch-invariant " + (
                "not measured" + (f" ({ev['reason']})" if ev.get("reason") else "")
                if inv is None else "yes" if inv else
                f"no (max |Δ| {ev['max_abs']:.2g})"))
        elif kind == "batch_invariance_start":
            self._echo("batch invariance (a row alone vs in batches, bit for bit, this CPU):")
        elif kind == "warning":
            self._echo("warning: " + ev["message"])
        elif kind == "done":
            self._echo(f"bundle written to {ev['bundle']} in {ev['seconds']:.1f}s")


@click.command("export")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("-o", "--output", "bundle_dir", required=True, type=click.Path(file_okay=False),
              help="Bundle directory to write (it appears whole or not at all).")
@click.option("--format", "formats", multiple=True,
              type=click.Choice(FORMAT_CHOICES),
              help="Formats to write (repeatable; default: all).")
@click.option("--precision", "precisions", multiple=True, type=click.Choice(PRECISIONS),
              help="Precisions to write (repeatable; default: all that the format supports). "
                   "A precision named here must hold parity, or the export is refused.")
@click.option("--corpus", type=click.Path(dir_okay=False, exists=True),
              help="Text to calibrate int8 on, if the run's corpus is not at its recorded path.")
@click.option("--force", is_flag=True, help="Replace an existing bundle.")
@click.option("--allow-mismatch", is_flag=True,
              help="Keep files outside their parity tolerance, on purpose (the failure is "
                   "recorded in the manifest); without it they are left out.")
@click.option("--threads", type=click.IntRange(1, 256), default=1, show_default=True,
              help="Threads for the parity replay.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
@click.option("-v", "--verbose", is_flag=True,
              help="Also show the converters' own log lines and warnings on stderr.")
def export(run_dir, bundle_dir, formats, precisions, corpus, force, allow_mismatch, threads,
           as_json, verbose):
    """Export RUN_DIR (made by charwright train) to a self-describing bundle.

    Writes TFLite (float32, float16, int8-dynamic, full int8, int16x8) and ONNX (float32,
    int8-dynamic) files, weights.npz for the numpy backend, the probe, the sampling golden
    vectors and manifest.json, then replays the probe on every file (and under TFLite Micro for
    the files it runs, with the [micro] extra). A file outside its tolerance is left out, with
    one line on stderr and an entry in the manifest's left_out[]; the export is refused (exit
    1, nothing written) if that file's precision was named with --precision, or if no file
    holds parity. --allow-mismatch keeps failing files on purpose.

    \b
    charwright export RUN -o BUNDLE
    charwright export RUN -o BUNDLE --format tflite --precision int8-dynamic
    """
    from charwright.runtime.verify.parity import FileParity, format_table

    from charwright.runtime.quiet import quiet_stderr

    from charwright.export.writer import export as run_export

    with quiet_stderr(verbose) as err:
        manifest = run_export(run_dir, bundle_dir, formats or None, precisions or None,
                              force=force, allow_mismatch=allow_mismatch, corpus=corpus,
                              threads=threads, on_progress=_Progress(err))
    if as_json:
        click.echo(json.dumps(manifest, indent=2, sort_keys=True))
    else:
        fields = FileParity.__dataclass_fields__
        rows = [FileParity(**{k: v for k, v in d.items() if k in fields})
                for d in manifest["parity"]]
        click.echo(format_table(rows))
    sys.stdout.flush()
