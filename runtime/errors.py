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

    A Ctrl-C during the import is held until the import is over and then raised as usual:
    some packages (onnxruntime) catch it inside their import and fail as if not installed.

    Example: `tf = require("tensorflow", "train")`.
    """
    import importlib

    with _interrupts_deferred() as interrupted:
        try:
            mod = importlib.import_module(module)
            err = None
        except ImportError as e:
            mod, err = None, e
    if interrupted:
        raise KeyboardInterrupt
    if err is not None:
        fix = f"pip install 'charwright[{extra}]'" if extra else "pip install --force-reinstall charwright"
        raise BackendUnavailable(f"{module} is not installed ({err}); install it with: {fix}")
    return mod


class _interrupts_deferred:
    """Records SIGINT instead of raising it (main thread only); truthy once one arrived."""

    def __enter__(self):
        import signal
        import threading

        self._got, self._old = [], None
        if threading.current_thread() is threading.main_thread():
            try:
                self._old = signal.signal(signal.SIGINT, lambda *a: self._got.append(1))
            except ValueError:  # not the main interpreter
                self._old = None
        return self._got

    def __exit__(self, *exc):
        import signal

        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
        return False
