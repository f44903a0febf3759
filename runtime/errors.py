"""The exception types of charwright: one base class and a few subclasses.

Library code raises these with a one-line message that names the bad value and says what to do;
only the CLI (runtime/cli.py) turns them into exit codes.
"""


class CharwrightError(Exception):
    """Base class of every error charwright raises on purpose."""

    exit_code = 1


class ConfigError(CharwrightError, ValueError):
    """A bad option or configuration value (a temperature of -1, a missing corpus file...)."""


class CorpusError(ConfigError):
    """A corpus that cannot be used: invalid UTF-8, empty, too short for one window."""


class VocabularyError(ConfigError):
    """Text with characters the model's vocabulary does not hold."""


class RunDirError(CharwrightError):
    """A run directory that is missing, incomplete, or holds another run."""


class BundleError(CharwrightError):
    """A bundle that cannot be trusted: missing file, bad checksum, unknown version, bad path."""


class ParityError(CharwrightError):
    """An exported file whose outputs are outside the tolerance for its precision."""


class ExportError(CharwrightError):
    """A conversion or quantization step that failed."""


class BackendUnavailable(CharwrightError, ImportError):
    """An optional dependency (an install extra) is missing. The CLI exits with status 2."""

    exit_code = 2


def require(module: str, extra: str | None):
    """Imports `module` or raises BackendUnavailable naming the extra that provides it
    (extra=None: a base dependency, reinstalling charwright brings it back).

    Example: `tf = require("tensorflow", "train")`.
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        fix = f"pip install 'charwright[{extra}]'" if extra else "pip install --force-reinstall charwright"
        raise BackendUnavailable(f"{module} is not installed ({e}); install it with: {fix}") from None
