"""A progress display for long CLI runs, on stderr only (stdout carries the payload).

On a terminal, one line redrawn in place at most ten times a second and erased at the end; when
stderr is a file or a pipe, a plain line at most every `interval` seconds (none at all for a run
shorter than that), so logs stay short.

    with Progress("score", "chars") as p:
        for done in ...:
            p.update(done, total)

ReadProgress does the same in bytes read, for a text whose length may be unknown.
"""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, label: str, unit: str, stream=None, interval: float = 5.0,
                 tty: bool | None = None, clock=time.monotonic):
        self.label, self.unit = label, unit
        self.stream = stream if stream is not None else sys.stderr
        if tty is None:
            isatty = getattr(self.stream, "isatty", None)
            tty = bool(isatty and isatty())
        self.tty, self.clock = tty, clock
        self.every = 0.1 if tty else interval
        self.start = self.last = clock()
        self.drawn = False

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def line(self, done: int, total: int) -> str:
        elapsed = max(self.clock() - self.start, 1e-9)
        rate = done / elapsed
        left = f", ~{(total - done) / rate:.0f} s left" if 0 < done < total and rate > 0 else ""
        pct = 100.0 * done / total if total else 100.0
        return (f"{self.label}: {pct:5.1f}% ({done:,} / {total:,} {self.unit}, "
                f"{rate:,.0f} {self.unit}/s{left})")

    def update(self, done: int, total: int) -> None:
        now = self.clock()
        if now - self.last < self.every:
            return
        self.last = now
        if self.tty:
            self.stream.write("\r\x1b[2K" + self.line(done, total))
            self.drawn = True
        else:
            self.stream.write(self.line(done, total) + "\n")
        self.stream.flush()

    def close(self) -> None:
        """Erases the terminal line (the result is printed on stdout after it)."""
        if self.drawn:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
            self.drawn = False


class ReadProgress:
    """Progress in bytes read, for a text whose length may be unknown (a pipe, stdin, a
    device): then it shows how much was read and how fast."""

    def __init__(self, label: str, total: int | None):
        self.label, self.total = label, total
        self.p = Progress(label, "bytes")
        if total is None:
            self.p.line = self._open_line

    def _open_line(self, done: int, total) -> str:
        elapsed = max(self.p.clock() - self.p.start, 1e-9)
        return f"{self.label}: {done:,} bytes read ({done / elapsed:,.0f} bytes/s)"

    def update(self, done: int) -> None:
        self.p.update(done, self.total if self.total is not None else done)

    def __enter__(self) -> "ReadProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.p.close()
