"""The server's log: one line per event on stderr, `charwright serve: ...`, never a traceback
(CHARWRIGHT_DEBUG=1 shows it). log() writes the server's own lines; LOG_CONFIG sends uvicorn's
and asyncio's loggers through the same one-line form."""

from __future__ import annotations

import logging
import os
import sys


def log(message: str) -> None:
    print(f"charwright serve: {message}", file=sys.stderr, flush=True)


class OneLine(logging.Formatter):
    """`charwright serve: LEVEL: message` on one line; an exception adds its type and message,
    never its traceback (CHARWRIGHT_DEBUG=1 shows it)."""

    def format(self, record) -> str:
        msg = record.getMessage()
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None:
            if os.environ.get("CHARWRIGHT_DEBUG") == "1":
                msg += "\n" + self.formatException(record.exc_info)
                return f"charwright serve: {record.levelname.lower()}: {msg}"
            msg = f"{msg}: {type(exc).__name__}: {exc}"
        return f"charwright serve: {record.levelname.lower()}: {' '.join(msg.split())}"


class Handled(logging.Filter):
    """Drops uvicorn's bare "Invalid HTTP request received." (server.py logs the event with its
    client and reason)."""

    def filter(self, record) -> bool:
        return record.msg != "Invalid HTTP request received."


LOG_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"one_line": {"()": OneLine}},
    "filters": {"handled": {"()": Handled}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr",
                            "formatter": "one_line", "filters": ["handled"]}},
    "loggers": {name: {"handlers": ["stderr"], "level": "WARNING", "propagate": False}
                for name in ("uvicorn", "uvicorn.access", "asyncio")},
}
