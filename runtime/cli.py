"""The `charwright` command: one click group whose subcommands load lazily.

COMMANDS below says where each lives: `train`, `import` and `report` in charwright.trainer,
`export` in charwright.export, the rest in charwright.runtime.commands (there is no `bench`
command: benchmarks are scripts in scripts/). Loading a subcommand imports only its module, so
`charwright generate` never imports TensorFlow, and `charwright train` without the [train] extra
exits with status 2 and one line naming the extra.

Errors: a CharwrightError becomes one line on stderr and its exit code (1, or 2 for a missing
extra); CHARWRIGHT_DEBUG=1 shows the traceback instead. Bad flags are click usage errors (2).
"""

from __future__ import annotations

import signal
import sys


def _early_interrupt(signum, frame):  # Ctrl-C while the CLI is still starting: quiet, 130
    raise SystemExit(130)


signal.signal(signal.SIGINT, _early_interrupt)

import importlib  # noqa: E402
import os  # noqa: E402

import click  # noqa: E402

from charwright.runtime.errors import CharwrightError
from charwright.runtime.version import package_version

# command name -> (module, attribute, one-line help shown without importing the module)
COMMANDS = {
    "train": ("charwright.trainer.cli", "train", "Train a model on UTF-8 corpus files into RUN_DIR."),
    "export": ("charwright.export.cli", "export", "Export RUN_DIR to a bundle (TFLite, ONNX)."),
    "verify": ("charwright.runtime.commands.verify", "verify", "Replay the probe on every file of a bundle."),
    "generate": ("charwright.runtime.commands.generate", "generate", "Generate text from a bundle."),
    "info": ("charwright.runtime.commands.info", "info", "Show what a bundle holds."),
    "score": ("charwright.runtime.commands.score", "score", "Bits per character of a text file."),
    "serve": ("charwright.runtime.commands.serve", "serve",
              "Serve bundles over HTTP (OpenAI-compatible completions)."),
    "emit-c": ("charwright.runtime.commands.emit_c", "emit_c",
               "Emit a dependency-free C99 runtime for a bundle."),
    "emit-web": ("charwright.runtime.commands.emit_web", "emit_web", "Emit WebAssembly + a JS package."),
    "import": ("charwright.trainer.importer.cli", "import_model",
               "Turn a Keras model trained elsewhere into RUN_DIR."),
    "report": ("charwright.trainer.report.cli", "report",
               "Plot a run's or a bundle's training and parity (PNG or HTML)."),
}


class _CLIError(click.ClickException):
    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class _ReaderGone(Exception):
    """stdout's reader closed the pipe (`charwright generate | head`)."""


class LazyGroup(click.Group):
    """Imports a subcommand's module only when that subcommand runs (click docs/complex.md)."""

    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[name]
        try:
            return getattr(importlib.import_module(module), attr)
        except ImportError as e:  # a missing module of ours is a packaging bug: say so plainly
            raise _CLIError(f"cannot load command {name!r}: {e}", 2) from None

    def format_commands(self, ctx, formatter):
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except CharwrightError as e:
            if os.environ.get("CHARWRIGHT_DEBUG"):
                raise
            raise _CLIError(str(e), e.exit_code) from None
        except BrokenPipeError:  # click would sys.exit(1); the reader went away, not an error
            raise _ReaderGone() from None
        except (click.ClickException, click.exceptions.Exit, click.Abort, KeyboardInterrupt):
            raise
        except OSError as e:
            if os.environ.get("CHARWRIGHT_DEBUG"):
                raise
            raise _CLIError(f"{e.strerror or e}: {e.filename or ''}".rstrip(": "), 1) from None
        except Exception as e:  # a bug of ours: still one line, the traceback on request
            if os.environ.get("CHARWRIGHT_DEBUG"):
                raise
            first = str(e).splitlines()[0] if str(e) else ""
            raise _CLIError(f"internal error: {type(e).__name__}: {first} (set "
                            "CHARWRIGHT_DEBUG=1 for the traceback)", 1) from None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_version(), prog_name="charwright")
def cli():
    """Train character-level recurrent text generators, export them, run them anywhere.

    \b
    charwright generate "ROMEO:"                 sample from the built-in demo model
    charwright train corpus.txt -o RUN --epochs 5
    charwright export RUN -o BUNDLE
    charwright verify BUNDLE
    """


def _silence_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null so that the interpreter's final flush does
    not fail again with 'Exception ignored ... BrokenPipeError'."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, AttributeError, ValueError):
        pass


def main(argv=None) -> int:
    """The console script. Exit codes: 0 ok, 1 error, 2 usage or missing extra, 75 a
    multi-worker training run lost a worker, 130 Ctrl-C, 141 stdout closed by its reader
    (`charwright generate | head`), as for a SIGPIPE."""
    signal.signal(signal.SIGINT, signal.default_int_handler)  # from here, KeyboardInterrupt
    try:
        rv = cli.main(args=argv, prog_name="charwright", standalone_mode=False)
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except (click.Abort, KeyboardInterrupt):
        return 130
    except (_ReaderGone, BrokenPipeError):
        _silence_stdout()
        return 141
    return rv if isinstance(rv, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
