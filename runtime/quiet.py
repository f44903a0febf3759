"""Keep third-party chatter off stderr: TensorFlow, XLA, the TFLite converter, onnxruntime.

TensorFlow and the converters write from C++ straight to file descriptor 2 (the banner, oneDNN
and cuInit lines, "fully_quantize: 0 ..."), which no Python setting reaches; Python warnings
and absl logging add their own lines. `quiet_stderr()` points fd 2 at /dev/null for the block
and hands back a stream on the real stderr for charwright's own lines:

    with quiet_stderr(verbose) as err:
        ...  # progress is written to `err`; everything else that writes to stderr is dropped

With verbose (or CHARWRIGHT_DEBUG set) nothing is redirected and `err` is sys.stderr.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import threading
import warnings
from typing import Iterator, TextIO

THIRD_PARTY_LOGGERS = ("tensorflow", "absl", "tf2onnx", "onnx", "onnxruntime", "keras", "h5py")
# fd 2, the warning filters and the loggers are process-wide: one block at a time (re-entrant, so
# a quiet export may open quiet LiteRT interpreters), else two threads could restore each other's
# /dev/null and lose stderr for good
_LOCK = threading.RLock()


def debug_enabled() -> bool:
    return os.environ.get("CHARWRIGHT_DEBUG", "") not in ("", "0")


@contextlib.contextmanager
def quiet_stderr(verbose: bool = False) -> Iterator[TextIO]:
    """Yields a text stream on the real stderr; fd 2 goes to /dev/null inside the block."""
    if verbose or debug_enabled():
        yield sys.stderr
        return
    with _LOCK:
        with _quiet() as err:
            yield err


@contextlib.contextmanager
def _quiet() -> Iterator[TextIO]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before TensorFlow is imported
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
    levels = {name: logging.getLogger(name).level for name in THIRD_PARTY_LOGGERS}
    for name in THIRD_PARTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    with contextlib.ExitStack() as stack:
        stack.enter_context(warnings.catch_warnings())
        warnings.simplefilter("ignore")
        # our stream: sys.stderr itself when it is not fd 2 (click's CliRunner), else a dup of 2
        try:
            own_fd = sys.stderr.fileno() == 2
        except (AttributeError, OSError, io.UnsupportedOperation):
            own_fd = False
        sys.stderr.flush()
        saved = os.dup(2)
        if own_fd:
            err = open(os.dup(saved), "w", buffering=1, encoding=sys.stderr.encoding or "utf-8",
                       errors=getattr(sys.stderr, "errors", None) or "backslashreplace",
                       closefd=True)
            stack.callback(err.close)
        else:
            err = sys.stderr
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
        try:
            yield err
        finally:
            err.flush()
            with contextlib.suppress(Exception):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            for name, level in levels.items():
                logging.getLogger(name).setLevel(level)
