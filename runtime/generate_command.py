"""`charwright generate`: parse options, run the sampling loop, render text or JSON."""

from __future__ import annotations

import json

import click

from .commands import BACKEND_CHOICE, PRECISION_CHOICE


@click.command("generate")
@click.argument("prompt", required=False, default="")
@click.option("-b", "--bundle", type=click.Path(file_okay=False),
              help="Bundle directory (default: the demo model shipped with charwright).")
@click.option("--backend", type=BACKEND_CHOICE, default="onnx", show_default=True)
@click.option("--precision", type=PRECISION_CHOICE, help="Model file precision (default: fastest).")
@click.option("-n", "--max-chars", type=click.IntRange(0), default=300, show_default=True,
              help="Characters to generate.")
@click.option("--temperature", type=click.FloatRange(0, min_open=True), default=0.8,
              show_default=True)
@click.option("--top-k", type=click.IntRange(1), help="Keep the K most likely characters.")
@click.option("--top-p", type=click.FloatRange(0, 1, min_open=True), help="Nucleus sampling.")
@click.option("--min-p", type=click.FloatRange(0, 1, max_open=True),
              help="Keep characters with p >= MIN_P x the top p.")
@click.option("--typical-p", type=click.FloatRange(0, 1, min_open=True),
              help="Locally typical sampling.")
@click.option("--repetition-penalty", type=click.FloatRange(0, min_open=True), default=1.0,
              show_default=True, help="CTRL penalty on the last 64 characters (1 = off).")
@click.option("--greedy", is_flag=True, help="Always take the most likely character.")
@click.option("--beam", type=click.IntRange(1), help="Beam search with this width; prints the "
              "best continuations with their log-probabilities.")
@click.option("--length-penalty", type=float, default=1.0, show_default=True,
              help="Beam ranking: logprob / length**PENALTY.")
@click.option("--num-samples", type=click.IntRange(1, 4096), default=1, show_default=True,
              help="Independent continuations, advanced together in one batch.")
@click.option("--seed", type=int, help="Makes the output reproducible.")
@click.option("--stop", multiple=True, help="Stop before this string (repeatable).")
@click.option("--unknown", type=click.Choice(["error", "skip", "replace"]), default="error",
              show_default=True, help="Prompt characters outside the vocabulary.")
@click.option("--threads", type=click.IntRange(1, 256), default=1, show_default=True)
@click.option("-v", "--verbose", is_flag=True, help="Print the sampling chain to stderr.")
@click.option("--json", "as_json", is_flag=True, help="Print the result(s) as JSON.")
def generate(prompt, bundle, backend, precision, max_chars, temperature, top_k, top_p, min_p,
             typical_p, repetition_penalty, greedy, beam, length_penalty, num_samples, seed,
             stop, unknown, threads, verbose, as_json):
    """Generate text after PROMPT, streamed to stdout as it is made.

    Sampling chain, in this order: repetition-penalty -> temperature -> top-k -> top-p ->
    min-p -> typical -> pick (categorical, or argmax with --greedy).

    \b
    charwright generate "ROMEO:"
    charwright generate "ROMEO:" -b BUNDLE --backend litert --top-p 0.9 --seed 7
    charwright generate "KING" --greedy --stop "\n\n"
    """
    import sys

    from .model import load
    from .sampling import SamplingConfig, describe, resolve_seed

    cfg = SamplingConfig(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
                         typical_p=typical_p, repetition_penalty=repetition_penalty,
                         greedy=greedy, seed=seed)
    model = load(bundle, backend=backend, precision=precision, threads=threads)
    if beam:
        beams = model.beam_search(prompt, max_chars or 1, width=beam,
                                  length_penalty=length_penalty, unknown=unknown)
        if as_json:
            click.echo(json.dumps([{"text": b.text, "logprob": b.logprob, "score": b.score,
                                    "finished": b.finished} for b in beams], indent=2))
            return
        for i, b in enumerate(beams):
            click.echo(f"[beam {i + 1}] logprob {b.logprob:.3f} (score {b.score:.4f})", err=True)
            click.echo(prompt + b.text)
        return
    seed = resolve_seed(cfg)
    from dataclasses import replace

    cfg = replace(cfg, seed=seed)
    if verbose:
        click.echo(f"{model!r}\n{describe(cfg, seed)}", err=True)
    if num_samples > 1 or as_json:
        texts = model.generate_batch([prompt] * num_samples, max_chars, cfg, stop, unknown)
        if as_json:
            click.echo(json.dumps({"prompt": prompt, "samples": texts, "seed": seed,
                                   "chain": describe(cfg, seed), "file": model.entry.path},
                                  indent=2, ensure_ascii=False))
        else:
            for i, t in enumerate(texts):
                click.echo(f"--- sample {i + 1} of {num_samples}", err=True)
                click.echo(prompt + t)
        return
    out = sys.stdout
    try:
        text_iter = model.stream(prompt, max_chars, cfg, stop, unknown)
        out.write(prompt)
        for chunk in text_iter:
            out.write(chunk)
            out.flush()
        out.write("\n")
        out.flush()
    except KeyboardInterrupt:  # Ctrl-C keeps what was printed and exits cleanly
        out.write("\n")
        out.flush()
        raise SystemExit(130)
