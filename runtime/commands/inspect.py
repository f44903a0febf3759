"""The old home of `info`, `score` and `verify` (now commands/info.py, score.py, verify.py) and
of the shared options (now commands/options.py): re-exported for runtime/cli.py's COMMANDS table
and for the modules that still import them from here, until those point at the new modules."""

from charwright.runtime.commands.info import info
from charwright.runtime.commands.options import (BACKEND_CHOICE, PRECISION_CHOICE, bundle_option,
                                                 exit_130_on_interrupt, resolve_bundle)
from charwright.runtime.commands.score import score
from charwright.runtime.commands.verify import verify

__all__ = ["info", "score", "verify", "BACKEND_CHOICE", "PRECISION_CHOICE", "bundle_option",
           "exit_130_on_interrupt", "resolve_bundle"]
