"""One request in the engine (P prompts x n choices, i.e. P*n rows that join the batch together)
and the two ways the engine refuses one: QueueFull (HTTP 429) and Draining (HTTP 503).

A Request is written by the scheduler thread (events, outcome, streams) and read by the caller:
from a thread with events_blocking()/wait(), or from the HTTP event loop through `events` and
`waker`. Importable without the [serve] extra."""

from __future__ import annotations

import threading
import time
from collections import deque

from charwright.runtime.errors import CharwrightError
from charwright.runtime.generate.text_stream import TextStream
from charwright.runtime.model import Completion


class QueueFull(CharwrightError):
    """max_queue requests wait already: try again later (HTTP 429)."""


class Draining(CharwrightError):
    """The engine admits no more requests (it is shutting down; HTTP 503)."""


class Request:
    """One completion request: P prompts x n choices, i.e. P*n rows joining together.

    events: deque of (choice, piece, finish_reason or None), appended by the scheduler, drained by
    the caller. outcome: None while running, then "ok" (every choice finished), "cancelled",
    "timeout", "shutdown" or "error", set after the last event. waker(): called (through the
    engine's notify) when events or the outcome changed."""

    def __init__(self, ids, n, max_chars, cfg, stop, deadline, prompt_chars=0, cache_salt=None):
        self.ids = ids  # int32 array per distinct prompt
        self.n = n
        self.rows = len(ids) * n
        self.max_chars, self.cfg, self.stop, self.deadline = max_chars, cfg, stop, deadline
        self.prompt_chars = prompt_chars
        self.cache_salt = cache_salt  # str or None: keys its prompt cache entries (prefix_cache)
        self.events: deque = deque()
        self.outcome: str | None = None
        self.primed = None  # (logits [rows, V], state [rows, S]) once every prompt is primed
        self.prime_keys: list[int] = []  # its rows in the engine's Primer while it primes
        self.prime_out: dict = {}  # prompt index -> (logits [V], state [S]) primed so far
        self.streams: list[TextStream] = []
        self.keys: list[int] = []
        self.left = self.rows
        self.submitted = time.monotonic()
        self.started: float | None = None  # when its rows joined the batch
        self._mark = -1  # the last step that put it in `touched` (one notify per step)
        self._done = threading.Event()
        self._wake = threading.Event()
        self.waker = self._wake.set

    @property
    def seed(self) -> int:
        return self.cfg.seed

    def events_blocking(self, timeout: float | None = None):
        """Yields (choice, piece, finish_reason) until the request ends (for threads; the HTTP
        layer drains `events` from its event loop instead)."""
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            outcome = self.outcome
            while self.events:
                yield self.events.popleft()
            if outcome is not None:
                return
            left = None if end is None else end - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError("the request did not end in time")
            self._wake.wait(left)
            self._wake.clear()

    def wait(self, timeout: float | None = None) -> str | None:
        """Blocks until the request ended; returns its outcome (None on timeout)."""
        self._done.wait(timeout)
        return self.outcome

    def completions(self) -> list[Completion]:
        """The choices so far, in order (complete once outcome is "ok")."""
        return [Completion(s.text(), s.finish_reason or self.outcome or "", tuple(s.tokens))
                for s in self.streams]

    def generated_chars(self) -> int:
        return sum(len(s.tokens) for s in self.streams)
