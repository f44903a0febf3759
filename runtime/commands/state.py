"""`charwright generate --save-state / --from-state`: one continuation through a Session
(generate/session.py), from and into a snapshot file (generate/snapshot.py)."""

from __future__ import annotations

from dataclasses import replace

import click

from charwright.runtime.commands.generate import (_given, _payload, _print_stream, _stdout,
                                                  _with_bundle_defaults)
from charwright.runtime.errors import BundleError, ConfigError
from charwright.runtime.generate.session import Session
from charwright.runtime.generate.snapshot import Snapshot, check_target
from charwright.runtime.sampling.config import describe, resolve_seed


def run_stateful(ctx, prompt, bundle, backend, precision, threads, max_chars, cfg, sampling,
                 stop, unknown, as_json, verbose, save_state, from_state) -> None:
    """generate's run when --save-state or --from-state is given (checked by generate)."""
    if save_state is not None:
        check_target(save_state)  # before the run: a file we may not replace
    model = _state_model(ctx, from_state, bundle, backend, precision, threads)
    session = Session(model)
    if from_state is not None:
        snap = Snapshot.load(from_state, model)
        session.restore(snap)
        if snap.sampling is not None:
            cfg = _state_config(ctx, snap, sampling)
    if from_state is None or snap.sampling is None:
        cfg = _with_bundle_defaults(ctx, cfg, model)
    if cfg.seed is None and session.seed is not None:
        cfg = replace(cfg, seed=session.seed)
    cfg = resolve_seed(cfg)
    if verbose:
        click.echo(f"{model!r}\n{describe(cfg)}", err=True)
    _stream_session(session, prompt, max_chars, cfg, stop, unknown, as_json,
                    save_state is not None)
    if save_state is not None:
        session.save(save_state)


def _stream_session(session, prompt, max_chars, cfg, stop, unknown, as_json, hold) -> None:
    """--from-state / --save-state: PROMPT is fed to the session (a fresh one: as a prompt),
    then one continuation is printed as _stream_one or _samples print it. hold (--save-state):
    at -n, text that may begin a --stop string is kept in the state, not printed; the
    --from-state run prints it first (before its PROMPT, if any)."""
    if prompt:
        session.feed(prompt, unknown)  # checks the prompt before the held text is taken
        held = session.take_held()
    else:
        held = ""
    shown = held + prompt
    out = _stdout()
    if as_json:
        c = session.complete(max_chars, cfg, stop, hold)
        out.write(_payload(shown, session.model, describe(cfg), cfg.seed, [
            {"text": c.text, "finish_reason": c.finish_reason, "logprob": None,
             "score": None}]) + "\n")
        return
    chunks = session.stream(max_chars, cfg, stop, hold)
    _print_stream(out, shown, chunks)  # Ctrl-C: the state is not saved


def _state_model(ctx, from_state, bundle, backend, precision, threads):
    """The model for --from-state: the snapshot's file unless --backend/--precision say."""
    from charwright.runtime.backends import spec_for_format
    from charwright.runtime.generate.snapshot import file_of
    from charwright.runtime.model import load

    if from_state and not _given(ctx, "backend") and not _given(ctx, "precision"):
        fmt, precision = file_of(from_state)
        try:
            backend = spec_for_format(fmt).name
        except ConfigError as e:
            raise BundleError(f"{from_state}: a snapshot of a {fmt!r} file: {e}") from None
    return load(bundle, backend=backend, precision=precision, threads=threads)


_CHAIN_OPTIONS = ("temperature", "top_k", "top_p", "min_p", "typical_p")


def _state_config(ctx, snap, sampling):
    """--from-state: the snapshot's sampling configuration, with the options given here. Not
    inherited: --regex and --choice (each call's text is one whole match of its own; give them
    again to constrain the continuation). A sampling option given without --greedy turns the
    snapshot's greedy off (--temperature 0 is greedy again)."""
    from dataclasses import replace

    from charwright.runtime.sampling.config import SamplingConfig

    base = SamplingConfig(**{**snap.sampling, "regex": None, "choices": None})
    given = {k: v for k, v in sampling.items() if _given(ctx, k)}
    if any(k in given for k in _CHAIN_OPTIONS) and "greedy" not in given:
        given["greedy"] = False
    try:
        return replace(base, **given)
    except ConfigError as e:
        raise click.UsageError(str(e)) from None
