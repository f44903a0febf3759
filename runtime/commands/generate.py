"""`charwright generate`: parse options, run the sampling loop or beam search, render the result.

Output on stdout, the payload only:
  - one continuation: the prompt, the text streamed as it is made, a newline;
  - several (--num-samples N, or --beam): each one after a line `--- sample i of N ---` (or
    `--- beam i of N: logprob L, score S ---`);
  - --json: one object of the same shape for samples and beams (see _payload).

--save-state / --from-state (one continuation through a Session) are commands/state.py.
"""

from __future__ import annotations

import json
import sys

import click

from charwright.runtime.commands.escapes import unescape
from charwright.runtime.commands.options import (backend_option, bundle_option, precision_option,
                                                 threads_option, unknown_option)
from charwright.runtime.errors import ConfigError
from charwright.runtime.sampling.config import PENALTY_MAX, PENALTY_MIN, SEED_MAX

# options that mean something only when sampling; --beam refuses them by name
_SAMPLING_ONLY = ("temperature", "top_k", "top_p", "min_p", "typical_p", "repetition_penalty",
                  "greedy", "seed", "stop", "num_samples")


def _given(ctx: click.Context, name: str) -> bool:
    return ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE


def _stdout():
    out = sys.stdout
    if out is None:  # started with fd 1 closed (`charwright generate >&-`)
        raise ConfigError("stdout is closed: there is nowhere to write the text")
    return out


def _check_prompt(prompt: str) -> None:
    """argv that is not valid UTF-8 reaches Python as lone surrogates (surrogateescape)."""
    for i, ch in enumerate(prompt):
        if "\udc80" <= ch <= "\udcff":
            raise ConfigError(f"the prompt is not valid UTF-8 (byte 0x{ord(ch) - 0xDC00:02x} at "
                              f"character {i}); pass UTF-8 text")


def _payload(prompt, model, chain, seed, completions) -> str:
    """The --json shape, one for samples and beams: completions[i] has text, finish_reason
    ("eos", "stop" or "length"), logprob and score (beams only; null when sampling)."""
    return json.dumps({"prompt": prompt, "file": model.entry.path, "chain": chain, "seed": seed,
                       "completions": completions}, indent=2, ensure_ascii=False)


def _stream_one(model, prompt, max_chars, cfg, stop, unknown) -> None:
    out = _stdout()
    chunks = model.stream(prompt, max_chars, cfg, stop, unknown)  # bad input raises here
    _print_stream(out, prompt, chunks)


def _print_stream(out, shown: str, chunks) -> None:
    """shown, then each chunk as it comes, then a newline. Ctrl-C keeps what was printed,
    ends the line and exits 130."""
    try:
        out.write(shown)
        out.flush()
        for chunk in chunks:
            out.write(chunk)
            out.flush()
        out.write("\n")
        out.flush()
    except KeyboardInterrupt:
        out.write("\n")
        out.flush()
        raise SystemExit(130) from None


def _samples(model, prompt, n, max_chars, cfg, stop, unknown, as_json) -> None:
    from charwright.runtime.sampling.config import describe

    done = model.complete([prompt] * n, max_chars, cfg, stop, unknown)
    out = _stdout()
    if as_json:
        out.write(_payload(prompt, model, describe(cfg), cfg.seed, [
            {"text": c.text, "finish_reason": c.finish_reason, "logprob": None, "score": None}
            for c in done]) + "\n")
        return
    for i, c in enumerate(done):
        if n > 1:
            out.write(f"--- sample {i + 1} of {n} ---\n")
        out.write(prompt + c.text + "\n")


def _beams(model, prompt, width, max_chars, length_penalty, unknown, as_json,
           pattern=None) -> None:
    if pattern is None:
        beams = model.beam_search(prompt, max_chars, width=width, length_penalty=length_penalty,
                                  unknown=unknown)
    else:  # --regex / --choice: each beam follows the pattern's automaton
        from charwright.runtime.generate.beam import beam_search
        from charwright.runtime.generate.priming import prime
        from charwright.runtime.sampling.constrain import dfa_for

        dfa = dfa_for(pattern, model.vocab)
        logits, state = prime(model.backend, [model.encode_prompt(prompt, unknown)])
        beams = beam_search(model.backend, model.vocab, logits, state, max_chars, width,
                            length_penalty, constraint=dfa)
    out = _stdout()
    if as_json:
        chain = f"beam(width={width}, length_penalty={length_penalty:g})"
        eos = model.vocab.eos_id
        out.write(_payload(prompt, model, chain, None, [
            {"text": b.text, "logprob": b.logprob, "score": b.score,
             "finish_reason": "length" if not b.finished else
             "eos" if b.tokens and b.tokens[-1] == eos else "stop"} for b in beams]) + "\n")
        return
    for i, b in enumerate(beams):
        out.write(f"--- beam {i + 1} of {len(beams)}: logprob {b.logprob:.3f}, score "
                  f"{b.score:.4f} ---\n{prompt}{b.text}\n")


def _with_bundle_defaults(ctx, cfg, model):
    """Options not given on the command line take the bundle's sampling_defaults, if any."""
    from dataclasses import replace

    from charwright.runtime.sampling.config import bundle_defaults

    defaults = bundle_defaults(model.bundle.manifest, f"{model.bundle.root}/manifest.json")
    return replace(cfg, **{k: v for k, v in defaults.items() if not _given(ctx, k)})


def _parse_stop(ctx, prompt, beam, max_chars, stop, no_escape) -> tuple:
    """The --stop strings as meant (escapes processed), once the prompt, the stops and the
    combination of options are known to be valid (UsageError otherwise)."""
    _check_prompt(prompt)
    for s in stop:
        _check_prompt(s)
    if beam:
        given = [n for n in _SAMPLING_ONLY if _given(ctx, n)]
        if given:
            flags = ", ".join("--" + n.replace("_", "-") for n in given)
            raise click.UsageError(f"--beam is deterministic and does not take {flags}")
        if max_chars == 0:
            raise click.UsageError("--beam needs -n/--max-chars >= 1")
    elif _given(ctx, "length_penalty"):
        raise click.UsageError("--length-penalty ranks beams: it needs --beam")
    if no_escape:
        if not stop:
            raise click.UsageError("--no-escape applies to --stop strings: give --stop too")
        return tuple(stop)
    try:
        return tuple(unescape(s) for s in stop)
    except ConfigError as e:
        raise click.UsageError(str(e)) from None


@click.command("generate")
@click.argument("prompt", required=False, default="")
@bundle_option(dest="bundle")
@backend_option
@precision_option()
@click.option("-n", "--max-chars", type=click.IntRange(0), default=300, show_default=True,
              help="Characters to generate.")
@click.option("--temperature", type=click.FloatRange(0, 1000), default=0.8, show_default=True,
              help="0 = greedy; otherwise 0.0001..1000. Sampling options not given here take "
              "the bundle's sampling_defaults.")
@click.option("--top-k", type=click.IntRange(1), help="Keep the K most likely characters.")
@click.option("--top-p", type=click.FloatRange(0, 1, min_open=True), help="Nucleus sampling.")
@click.option("--min-p", type=click.FloatRange(0, 1, max_open=True),
              help="Keep characters with p >= MIN_P x the top p.")
@click.option("--typical-p", type=click.FloatRange(0, 1, min_open=True),
              help="Locally typical sampling.")
@click.option("--repetition-penalty", type=click.FloatRange(PENALTY_MIN, int(PENALTY_MAX)),
              default=1.0, show_default=True,
              help="CTRL penalty on the last 64 characters (1 = off).")
@click.option("--greedy", is_flag=True, help="Always take the most likely character.")
@click.option("--beam", type=click.IntRange(1, 256), help="Beam search with this width (1..256); "
              "prints the best continuations with their log-probabilities.")
@click.option("--length-penalty", type=click.FloatRange(-10, 10), default=1.0, show_default=True,
              help="Beam ranking: logprob / length**PENALTY (0 = raw logprob).")
@click.option("--num-samples", type=click.IntRange(1, 4096), default=1, show_default=True,
              help="Independent continuations, advanced together in one batch.")
@click.option("--seed", type=click.IntRange(0, SEED_MAX),
              help="Makes the output reproducible (0..2**63-1).")
@click.option("--stop", multiple=True, help="Stop before this string (repeatable). Escapes "
              "are processed: \\n \\t \\r \\\\ \\\" \\' \\xNN \\uNNNN.")
@click.option("--no-escape", is_flag=True, help="Take --stop strings as typed (no escapes).")
@click.option("--regex", help="The generated text (after the prompt) matches this pattern in "
              "full, as Python's re.fullmatch reads it (the supported syntax: "
              "docs/generating.md). -n must leave room for the shortest match.")
@click.option("--choice", "choices", multiple=True, help="The generated text is one of these "
              "(repeatable; not with --regex).")
@unknown_option("Prompt characters outside the vocabulary.")
@threads_option()
@click.option("-v", "--verbose", is_flag=True, help="Print the file and the sampling chain to "
              "stderr.")
@click.option("--json", "as_json", is_flag=True, help="Print the result(s) as one JSON object.")
@click.option("--save-state", type=click.Path(dir_okay=False), help="Save the state after the "
              "run (prompt and text) to this snapshot file, to go on with --from-state. "
              "Replaces only a snapshot file; its directory must exist. After a --stop string "
              "the state includes that string (fed, not printed). At -n, text that may begin a "
              "--stop string is kept in the state, not printed: the --from-state run prints it "
              "first and, with the same --stop strings and no PROMPT, goes on matching it. A "
              "--regex match does not span runs.")
@click.option("--from-state", type=click.Path(dir_okay=False), help="Go on from this snapshot "
              "file: PROMPT (may be empty) is appended text; the snapshot's file, seed and "
              "sampling options are used unless given here (a sampling option without --greedy "
              "turns greedy off; --regex and --choice are not inherited).")
@click.pass_context
def generate(ctx, prompt, bundle, backend, precision, max_chars, beam, length_penalty,
             num_samples, stop, no_escape, unknown, threads, verbose, as_json, save_state,
             from_state, **sampling):
    """Generate text after PROMPT, streamed to stdout as it is made.

    Sampling chain, in this order: repetition-penalty -> temperature -> top-k -> top-p ->
    min-p -> typical -> pick (categorical, or argmax with --greedy or --temperature 0).
    --beam is deterministic and takes none of the sampling options. --stop strings take
    escapes as typed in a shell (\\n, \\t, \\xNN, \\uNNNN, ...; --no-escape: none).

    \b
    charwright generate "ROMEO:"
    charwright generate "ROMEO:" -b BUNDLE --backend litert --top-p 0.9 --seed 7
    charwright generate "KING" --greedy --stop "\\n\\n"
    """
    from charwright.runtime.model import load
    from charwright.runtime.sampling.config import SamplingConfig, describe, resolve_seed

    stop = _parse_stop(ctx, prompt, beam, max_chars, stop, no_escape)
    sampling["choices"] = sampling["choices"] or None  # not given: ()
    if sampling["regex"] is not None and sampling["choices"] is not None:
        raise click.UsageError("--regex and --choice together: give one (choices are a regex)")
    stateful = save_state is not None or from_state is not None
    if stateful and (beam or num_samples > 1):
        raise click.UsageError("--save-state and --from-state continue one text: not with "
                               "--beam or --num-samples")
    try:
        cfg = SamplingConfig(**sampling)
    except ConfigError as e:
        raise click.UsageError(str(e)) from None
    if stateful:
        from charwright.runtime.commands.state import run_stateful

        run_stateful(ctx, prompt, bundle, backend, precision, threads, max_chars, cfg, sampling,
                     stop, unknown, as_json, verbose, save_state, from_state)
        return
    model = load(bundle, backend=backend, precision=precision, threads=threads)
    cfg = resolve_seed(_with_bundle_defaults(ctx, cfg, model))
    if verbose:
        chain = f"beam(width={beam})" if beam else describe(cfg)
        click.echo(f"{model!r}\n{chain}", err=True)
    if beam:
        _beams(model, prompt, beam, max_chars, length_penalty, unknown, as_json, cfg.pattern)
    elif num_samples > 1 or as_json:
        _samples(model, prompt, num_samples, max_chars, cfg, stop, unknown, as_json)
    else:
        _stream_one(model, prompt, max_chars, cfg, stop, unknown)
