"""`charwright score`: parse options, score a text read in pieces (runtime.verify.score), render
bits per character (or JSON); progress on stderr."""

from __future__ import annotations

import json

import click

from charwright.runtime.commands.options import (backend_option, bundle_option,
                                                 exit_130_on_interrupt, precision_option,
                                                 resolve_bundle, unknown_option)


@click.command("score")
@click.argument("text_file", type=click.Path(dir_okay=False, allow_dash=True))
@bundle_option
@backend_option
@precision_option()
@unknown_option("Characters outside the vocabulary.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@exit_130_on_interrupt
def score(text_file, bundle_opt, backend, precision, unknown, as_json):
    """Bits per character of TEXT_FILE (UTF-8; one leading byte-order mark is ignored, as
    `train` does) under the model in -b BUNDLE (default: the demo bundle). TEXT_FILE may be
    `-` (standard input) or a pipe: the text is read and scored in pieces, so memory stays
    flat however long it is.

    The first character is given; each following one is predicted from all before it, from a
    zero state. Progress goes to stderr (redrawn on a terminal, a line every 5 s otherwise).

    \b
    charwright score text.txt
    charwright score text.txt -b BUNDLE --backend litert --json
    cat *.txt | charwright score -
    """
    from charwright.runtime.commands.progress import ReadProgress
    from charwright.runtime.model import load
    from charwright.runtime.verify.score import bits_of, score_text
    from charwright.runtime.verify.text_source import open_text, read_text_pieces

    stream, size = ((click.get_binary_stream("stdin"), None) if text_file == "-"
                    else open_text(text_file))
    try:
        model = load(resolve_bundle(None, bundle_opt), backend=backend, precision=precision)
        with ReadProgress("score", size) as progress:
            pieces = read_text_pieces(stream, text_file, on_bytes=progress.update)
            logprob, n = score_text(model.backend, model.vocab, pieces, unknown, text_file)
    finally:
        if text_file != "-":
            stream.close()
    bpc = bits_of(logprob, n)
    if as_json:
        click.echo(json.dumps({"file": text_file, "bits_per_char": bpc, "logprob": logprob,
                               "chars": n, "model": model.entry.path}))
    else:
        click.echo(f"{bpc:.4f} bits/char over {n:,} characters ({model.entry.path})")
