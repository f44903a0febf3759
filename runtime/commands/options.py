"""The options the runtime's commands share, written once: the bundle (-b/--bundle, or the demo
bundle), --backend, --precision, --threads, --unknown, and Ctrl-C's exit status.

    @click.command("score")
    @bundle_option
    @backend_option
    @precision_option()
    @exit_130_on_interrupt
    def score(bundle_opt, backend, precision): ...
"""

from __future__ import annotations

import functools

import click

from charwright.runtime.backends import BACKENDS
from charwright.runtime.bundle.manifest import PRECISIONS

BACKEND_CHOICE = click.Choice([s.name for s in BACKENDS])
PRECISION_CHOICE = click.Choice(list(PRECISIONS))
UNKNOWN_CHOICE = click.Choice(["error", "skip", "replace"])  # Vocabulary.encode(unknown=...)


def exit_130_on_interrupt(fn):
    """Ctrl-C ends the command with status 130 (128 + SIGINT), quietly."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except KeyboardInterrupt:
            raise click.exceptions.Exit(130) from None

    return wrapper


def bundle_option(fn=None, *, dest: str = "bundle_opt"):
    """-b/--bundle DIRECTORY into the parameter `dest` (None: not given)."""
    option = click.option(
        "-b", "--bundle", dest, type=click.Path(file_okay=False),
        help="Bundle directory (default: the demo model shipped with charwright).")
    return option if fn is None else option(fn)


def resolve_bundle(positional, option):
    """The bundle directory from BUNDLE_DIR or -b (not both), else the demo bundle."""
    if positional is not None and option is not None and positional != option:
        raise click.UsageError(f"two bundles given ({positional} and -b {option}): give one")
    chosen = positional if positional is not None else option
    if chosen is None:
        from charwright.runtime.model import DEMO_BUNDLE

        return str(DEMO_BUNDLE)
    return chosen


backend_option = click.option("--backend", type=BACKEND_CHOICE, default="onnx",
                              show_default=True)


PRECISION_HELP = ("Model file precision (default: the fastest file whose parity passed, "
                  "batch-invariant ones first).")


def precision_option(help: str = PRECISION_HELP):
    return click.option("--precision", type=PRECISION_CHOICE, help=help)


def threads_option(help: str | None = None):
    return click.option("--threads", type=click.IntRange(1, 256), default=1, show_default=True,
                        help=help)


def unknown_option(help: str):
    return click.option("--unknown", type=UNKNOWN_CHOICE, default="error", show_default=True,
                        help=help)
