"""`charwright verify`: parse options, run the bundle's one check (runtime.verify.check), render
the parity table (or JSON), a note per format whose runtime is not installed, and the golden
vectors' line; exit 1 when anything fails."""

from __future__ import annotations

import json
import math

import click

from charwright.runtime.backends import BY_FORMAT, FORMAT_ALIASES
from charwright.runtime.commands.options import (bundle_option, exit_130_on_interrupt,
                                                 resolve_bundle, threads_option)
from charwright.runtime.errors import ParityError


@click.command("verify")
@click.argument("bundle_dir", required=False, type=click.Path(file_okay=False))
@bundle_option
@click.option("--format", "formats", multiple=True, type=click.Choice(sorted(FORMAT_ALIASES)),
              help="Check only files of this format (repeatable; tflite = litert, npz = numpy).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@threads_option()
@exit_130_on_interrupt
def verify(bundle_dir, bundle_opt, formats, as_json, threads):
    """Replay the reference probe on every model file of BUNDLE_DIR (default: the demo bundle).

    Prints one row per file: max and mean |Δlogit|, top-1 agreement, KL(reference‖file),
    bits/char of the file vs the reference, the first step at which the file's greedy text
    differs from the reference's, and the verdict. A file whose runtime is not installed here
    (ai-edge-litert for .tflite) is "not checked", with one line on stderr naming the extra.
    Then measures each checked file's batch invariance here (a row stepped alone and at a random
    place in batches of 1, 2, 8 and 64: the same logits and state bit for bit?), one line per
    file. Exits 1 if any checked file is outside its tolerance or damaged (size or sha256
    mismatch), if a file the manifest calls batch-invariant is not on this CPU (a file it calls
    not invariant that is invariant here is only a note), or if no file could be checked at all.
    Needs no TensorFlow.

    \b
    charwright verify BUNDLE
    charwright verify -b BUNDLE --format onnx --json
    """
    from charwright.runtime.bundle.reader import load_bundle
    from charwright.runtime.verify.check import (check_files, check_golden_vectors,
                                                 files_of_formats, not_checked, raise_for_check)
    from charwright.runtime.verify.invariance import VERIFY_BATCHES
    from charwright.runtime.verify.invariance import check_bundle as check_invariance
    from charwright.runtime.verify.parity import format_table

    root = resolve_bundle(bundle_dir, bundle_opt)
    bundle = load_bundle(root, verify=False)  # per-file checks happen in check_files
    entries = files_of_formats(bundle, {FORMAT_ALIASES[f] for f in formats}, root)
    results = check_files(bundle, entries, threads=threads)
    ran = {r.file for r in results if r.checked and math.isfinite(r.max_abs)}  # loaded and ran
    invariance = check_invariance(bundle, [e for e in entries if e.path in ran], threads=threads)
    if as_json:
        by_file = {i.file: i.to_dict() for i in invariance}
        click.echo(json.dumps([dict(r.to_dict(), **({"batch_invariance": by_file[r.file]}
                                                     if r.file in by_file else {}))
                               for r in results], indent=2, sort_keys=True, allow_nan=False))
    else:
        click.echo(format_table(results))
        if invariance:
            click.echo(f"batch invariance here (a row alone vs in batches of "
                       f"{', '.join(map(str, VERIFY_BATCHES[1:]))}):")
            for i in invariance:
                click.echo(f"  {i.line()}")
    for fmt, files in not_checked(results, entries).items():
        spec = BY_FORMAT[fmt]
        click.echo(f"note: {len(files)} {fmt} file{'s' * (len(files) > 1)} not checked: "
                   f"{spec.runtime} is not installed; install it with: {spec.install_hint}",
                   err=True)
    golden = check_golden_vectors(bundle)
    if golden is not None:  # stdout, or stderr beside --json
        click.echo(f"sampling golden vectors: {golden.reproduced} of {golden.total} reproduced"
                   + ("" if not golden.failures else f" (FAIL: {golden.failures[0]})"),
                   err=as_json)
    false_claims = [i.line() for i in invariance if i.failed]
    try:
        raise_for_check(root, results, golden)
    except ParityError as e:
        if false_claims:
            raise ParityError(f"{e}; batch invariance: {'; '.join(false_claims)}") from None
        raise
    if false_claims:
        raise ParityError(f"{root}: batch invariance: {'; '.join(false_claims)}")
