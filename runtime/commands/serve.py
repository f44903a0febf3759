"""`charwright serve`: parse options, run the HTTP server (runtime.serve.server) until SIGTERM."""

from __future__ import annotations

import math

import click

from charwright.runtime.commands.options import (BACKEND_CHOICE, PRECISION_CHOICE,
                                                 PRECISION_HELP)
from charwright.runtime.serve.state import (DEFAULT_MAX_UNSENT_CHARS, DEFAULT_STREAM_INTERVAL,
                                            DEFAULT_WRITE_TIMEOUT, MAX_STREAM_INTERVAL)


class _Interval(click.ParamType):
    """--stream-interval: "auto" or seconds in 0..MAX_STREAM_INTERVAL."""

    name = "auto|seconds"

    def convert(self, value, param, ctx):
        if isinstance(value, float) or value == "auto":
            return value
        text = str(value).strip().lower()
        if text == "auto":
            return "auto"
        try:
            seconds = float(text)
        except ValueError:
            self.fail(f"{value!r} is not a valid float (seconds) nor 'auto'", param, ctx)
        if math.isnan(seconds):
            self.fail(f"{value} is not a number of seconds", param, ctx)
        if not 0 <= seconds <= MAX_STREAM_INTERVAL:
            self.fail(f"{value} is not in the range 0<=x<={MAX_STREAM_INTERVAL:g} (or 'auto')",
                      param, ctx)
        return seconds


@click.command("serve")
@click.option("-b", "--bundle", "bundles", multiple=True, type=click.Path(file_okay=False),
              help="Bundle directory (repeatable; each is served under its directory's name as "
              "`model`). Default: the demo model, as `demo`.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0: every interface).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="Port (0: any free one; the bound port is printed on stderr).")
@click.option("--backend", type=BACKEND_CHOICE, default="onnx", show_default=True)
@click.option("--precision", type=PRECISION_CHOICE, help=PRECISION_HELP)
@click.option("--threads", type=click.IntRange(1, 256), default=1, show_default=True,
              help="Intra-op threads of one batched step (the HTTP side needs a core too).")
@click.option("--max-batch", type=click.IntRange(1, 4096), default=64, show_default=True,
              help="Rows advanced together per step, per model (a request takes prompts x n).")
@click.option("--max-queue", type=click.IntRange(0, 100_000), default=64, show_default=True,
              help="Requests that may wait for rows; one more gets 429 at once.")
@click.option("--max-prompt-chars", type=click.IntRange(1, 100_000_000), default=100_000,
              show_default=True,
              help="Prompt characters one request may bring (its prompts together); more gets "
              "400. A prompt primes a slice per step, beside the running streams.")
@click.option("--stream-interval", type=_Interval(), default=DEFAULT_STREAM_INTERVAL,
              show_default=True,
              help="Seconds between two SSE frames of one stream, at least: its characters "
              "meanwhile go out in one frame (the first and last at once). 0: a frame whenever "
              "the stream has text and the server gets to it. auto: twice the batch's mean "
              "step (or compiled pass of steps) within 0.005..0.05 (0.005 for the demo).")
@click.option("--prompt-cache-mb", type=click.FloatRange(0, 1_000_000), default=64.0,
              show_default=True, callback=lambda ctx, p, v: _megabytes(p, v),
              help="Memory per model for the states of primed prompts, kept at every 256 "
              "characters along them (least recently used dropped first): a request that shares "
              "a prefix "
              "with an earlier one primes only the rest. 0: off. Only for batch-invariant "
              "files (`charwright info` says which).")
@click.option("--api-key", envvar="CHARWRIGHT_API_KEY", show_envvar=True,
              help="Require `Authorization: Bearer KEY` on /v1/* and /metrics (never logged).")
@click.option("--request-timeout", type=click.FloatRange(0), default=600.0, show_default=True,
              help="Seconds a request may take, waiting included (0: no limit).")
@click.option("--shutdown-timeout", type=click.FloatRange(0), default=30.0, show_default=True,
              help="On SIGTERM, seconds running requests get to finish before they are cut.")
@click.option("--write-timeout", type=click.FloatRange(0, 86_400), default=DEFAULT_WRITE_TIMEOUT,
              show_default=True, callback=lambda ctx, p, v: _finite(p, v),
              help="Seconds one write (an SSE frame, or a whole non-streaming answer) may wait "
              "for the client to take it; then the response is cut (499) and its connection "
              "closed. 0: no limit.")
@click.option("--max-unsent-chars", type=click.IntRange(1, 100_000_000),
              default=DEFAULT_MAX_UNSENT_CHARS, show_default=True,
              help="Characters a stream may pile up while its client does not read; more cuts "
              "the stream (499) and closes its connection.")
def serve(bundles, host, port, backend, precision, threads, max_batch, max_queue,
          max_prompt_chars, stream_interval, prompt_cache_mb, api_key, request_timeout,
          shutdown_timeout, write_timeout, max_unsent_chars):
    """Serve bundles over HTTP: OpenAI-compatible /v1/completions (SSE streaming), /v1/models,
    /health (503 while loading or draining) and Prometheus /metrics.

    Every request is a set of rows in one running batch per model: it joins at the next step
    and leaves when done. A full queue answers 429 at once; SIGTERM stops admission, lets
    streams finish within --shutdown-timeout, ends the rest with a final event and exits 0.

    \b
    charwright serve --port 8000
    curl -N localhost:8000/v1/completions -H 'Content-Type: application/json' \\
      -d '{"model": "demo", "prompt": "ROMEO:", "max_tokens": 200, "stream": true}'
    """
    # the server's modules first: a missing [serve] extra is named before anything else
    from charwright.runtime.serve.server import run_server
    from charwright.runtime.serve.state import ServeConfig, model_names
    from charwright.runtime.bundle.reader import load_bundle

    if api_key is not None and not api_key.strip():
        raise click.UsageError("--api-key is empty: give a key, or leave the option out")
    cfg = ServeConfig(bundles=tuple(bundles), backend=backend, precision=precision,
                      threads=threads, max_batch=max_batch, max_queue=max_queue,
                      api_key=api_key, request_timeout=request_timeout,
                      shutdown_timeout=shutdown_timeout, max_prompt_chars=max_prompt_chars,
                      stream_interval=stream_interval, prompt_cache_mb=prompt_cache_mb,
                      write_timeout=write_timeout, max_unsent_chars=max_unsent_chars)
    try:
        model_names(cfg.bundles)
    except Exception as e:  # noqa: BLE001 - a duplicate name is a usage error
        raise click.UsageError(str(e)) from None
    for b in cfg.bundles:  # a missing or damaged bundle fails here, before the port is bound
        load_bundle(b, verify=False)
    return run_server(cfg, host, port)


def _finite(param, value):
    """FloatRange lets 'nan' through (no comparison with it is true): refused like a bad range."""
    if value != value:
        raise click.BadParameter(f"{value} is not a number of seconds", param=param)
    return value


def _megabytes(param, value):
    """FloatRange lets 'nan' through: refused like a bad range."""
    if value != value:
        raise click.BadParameter(f"{value} is not a number of megabytes", param=param)
    return value
