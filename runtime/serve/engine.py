"""Continuous batching: requests are rows that join one running batch at the next step and leave
when done. The core of `charwright serve`, usable from Python without HTTP.

    engine = Engine(load(), max_batch=64, max_queue=64)
    engine.start()
    req = engine.submit(["ROMEO:"], n=2, max_chars=200, sampling=SamplingConfig(seed=7))
    for choice, piece, finish_reason in req.events_blocking(): ...
    req.completions()                      [Completion per choice]
    engine.cancel(req); engine.drain(); engine.abort_all("shutdown"); engine.close()

Threads. One scheduler thread owns the batch (a Generator) and the prompts being primed (a
Primer), and is the only one that steps either. Callers only validate, enqueue and relay:
submit() and cancel() post to the scheduler and return at once.

Each scheduler pass: commands first (cancels, aborts), then waiting requests that are primed and
fit join the batch (a request's rows all together; FIFO among primed requests, so a request still
priming holds back nobody), waiting requests start priming (FIFO, at most max_batch prompts
prime at once), then one batched step for every row, then priming for PRIME_SHARE of a step's
mean time (chunked prefill: vLLM's scheduler gives prefill a token budget per iteration for the
same reason), so a long prompt stretches the running streams' frames by about half a step,
whatever its length (it primes about a third as fast as alone meanwhile); with no row running,
priming runs in slices of PRIME_IDLE_SECONDS. Then the new text
of each request is appended to its events and `notify(touched requests)` is called once per pass
(the HTTP layer turns that into one wake-up of its event loop). A request cancelled while it
primes (its client went away) leaves the primer at the next pass.

Rows and seeds. A request of P prompts and n choices holds P x n rows; choice p*n + j is row
(seed, j) of prompt p, exactly the row `charwright generate PROMPT_p --num-samples n --seed S`
samples as sample j. Rows sampled with equal settings share one Sampler (the seed is per row), so
the batch is sampled in a few groups, whatever the number of requests.

Queue. At most max_batch rows run. A request that does not fit waits; if max_queue requests wait
already, submit raises QueueFull at once (HTTP 429): the queue is bounded, never a backlog. A
request whose prompts hold more than max_prompt_chars characters is refused (ConfigError).
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import deque
from dataclasses import replace

import numpy as np

from charwright.runtime.errors import CharwrightError, ConfigError
from charwright.runtime.generate.generator import Generator, Primer
from charwright.runtime.model import Completion
from charwright.runtime.sampling.config import Sampler, SamplingConfig, resolve_seed
from charwright.runtime.generate.text_stream import TextStream

STEP_SECONDS_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                        0.25, 1.0)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
TIMEOUT_CHECK_SECONDS = 0.1
PRIME_SHARE = 0.5  # priming per pass, as a fraction of the mean time of recent batched steps
PRIME_IDLE_SECONDS = 0.02  # priming per pass when no row runs (commands are read in between)
STEP_EWMA = 0.2  # weight of the newest step in the mean step time


class QueueFull(CharwrightError):
    """max_queue requests wait already: try again later (HTTP 429)."""


class Draining(CharwrightError):
    """The engine admits no more requests (it is shutting down; HTTP 503)."""


class Histogram:
    """Cumulative-free bucket counts, Prometheus style (le = upper bounds, +Inf last)."""

    def __init__(self, bounds):
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, x: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, x)] += 1
        self.sum += x
        self.count += 1

    def cumulative(self) -> list:
        """[(le, cumulative count)] with '+Inf' last."""
        out, total = [], 0
        for le, c in zip(list(self.bounds) + [float("inf")], self.counts):
            total += c
            out.append((le, total))
        return out


class Request:
    """One completion request: P prompts x n choices, i.e. P*n rows joining together.

    events: deque of (choice, piece, finish_reason or None), appended by the scheduler, drained by
    the caller. outcome: None while running, then "ok" (every choice finished), "cancelled",
    "timeout" or "shutdown", set after the last event. waker(): called (through the engine's
    notify) when events or the outcome changed."""

    def __init__(self, ids, n, max_chars, cfg, stop, deadline):
        self.ids = ids  # int32 array per distinct prompt
        self.n = n
        self.rows = len(ids) * n
        self.max_chars, self.cfg, self.stop, self.deadline = max_chars, cfg, stop, deadline
        self.prompt_chars = 0
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
        self._mark = -1
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


class Engine:
    """One scheduler over one loaded Model (see the module docstring)."""

    def __init__(self, model, max_batch: int = 64, max_queue: int = 64, notify=None,
                 max_prompt_chars: int | None = None):
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise ConfigError(f"max_batch {max_batch!r}: must be an integer >= 1")
        if isinstance(max_queue, bool) or not isinstance(max_queue, int) or max_queue < 0:
            raise ConfigError(f"max_queue {max_queue!r}: must be an integer >= 0")
        if max_prompt_chars is not None and (isinstance(max_prompt_chars, bool)
                                             or not isinstance(max_prompt_chars, int)
                                             or max_prompt_chars < 1):
            raise ConfigError(f"max_prompt_chars {max_prompt_chars!r}: must be an integer >= 1 "
                              "(or None: no limit)")
        self.model, self.max_batch, self.max_queue = model, max_batch, max_queue
        self.max_prompt_chars = max_prompt_chars
        self.notify = notify or _wake_each
        self._cond = threading.Condition()
        self._waiting: deque[Request] = deque()  # accepted, not yet in the batch (FIFO)
        self._commands: list = []
        self._running: list[Request] = []
        self._running_rows = 0
        self._draining = False
        self._stop = False
        self._threads: list[threading.Thread] = []
        self._gen = None
        self._primer = None
        self._priming: dict[int, tuple] = {}  # primer key -> (request, prompt index)
        self._row: dict[int, tuple] = {}  # key -> (request, choice, TextStream)
        self._samplers: dict = {}  # config without seed -> Sampler
        # statistics, written by the scheduler thread only (read anywhere: plain ints)
        self.steps = 0
        self.chars_generated = 0
        self.step_seconds = Histogram(STEP_SECONDS_BUCKETS)
        self.batch_size = Histogram(BATCH_SIZE_BUCKETS)
        self.prompt_ids_primed = 0  # prompt ids run through the step graph
        self.prime_seconds = 0.0  # time spent priming
        self.priming_requests = 0  # requests priming now
        self.prompt_ids_left = 0  # ids of prompts still to prime
        self._step_mean = 0.0  # mean time of recent batched steps (the priming budget's unit)
        self.last_error: BaseException | None = None

    # ---- public ---------------------------------------------------------------------------------

    def start(self) -> "Engine":
        t = threading.Thread(target=self._schedule, name="charwright-scheduler", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    @property
    def running_requests(self) -> int:
        return len(self._running)

    @property
    def running_rows(self) -> int:
        return self._running_rows

    @property
    def waiting_requests(self) -> int:
        return len(self._waiting)

    @property
    def draining(self) -> bool:
        return self._draining

    def idle(self) -> bool:
        return not self._running and not self._waiting

    def prepare(self, prompts, n: int = 1, max_chars: int = 200, sampling=None, stop=(),
                timeout: float | None = None) -> Request:
        """Validates a request (ConfigError naming the bad value) without queueing it."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"n {n!r}: must be an integer >= 1")
        if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 1:
            raise ConfigError(f"max_chars {max_chars!r}: must be an integer >= 1")
        prompts = list(prompts)
        if not prompts:
            raise ConfigError("no prompt: give at least one")
        chars = sum(len(p) for p in prompts)
        if self.max_prompt_chars is not None and chars > self.max_prompt_chars:
            raise ConfigError(f"prompt of {chars:,} characters: at most {self.max_prompt_chars:,} "
                              "are primed per request (max_prompt_chars)")
        rows = len(prompts) * n
        if rows > self.max_batch:
            raise ConfigError(f"{len(prompts)} prompt(s) x n={n} is {rows} rows; this engine "
                              f"runs at most {self.max_batch} (max_batch)")
        cfg = resolve_seed(sampling or SamplingConfig())
        ids = [self.model.encode_prompt(p) for p in prompts]
        deadline = None if not timeout else time.monotonic() + timeout
        req = Request(ids, n, max_chars, cfg, tuple(s for s in stop if s), deadline)
        req.prompt_chars = chars
        return req

    def submit(self, prompts, n: int = 1, max_chars: int = 200, sampling=None, stop=(),
               timeout: float | None = None, waker=None) -> Request:
        """Queues a request and returns it at once. Raises ConfigError (bad values), Draining
        (shutting down) or QueueFull (max_queue requests wait already)."""
        req = self.prepare(prompts, n, max_chars, sampling, stop, timeout)
        if waker is not None:
            req.waker = waker
        return self.enqueue(req)

    def enqueue(self, req: Request) -> Request:
        with self._cond:
            if self._draining or self._stop:
                raise Draining("the server is shutting down and admits no new requests")
            if self._must_wait(req) and self._blocked() >= self.max_queue:
                raise QueueFull(f"{len(self._waiting)} requests wait already (max_queue "
                                f"{self.max_queue}); retry shortly")
            self._waiting.append(req)
            self._cond.notify()
        return req

    def cancel(self, req: Request) -> None:
        """The request ends (its client went away): its rows leave before the next step."""
        if req.outcome is None:
            self._post(("cancel", req, "cancelled"))

    def drain(self) -> None:
        """Admit no more requests; those accepted run to their end."""
        with self._cond:
            self._draining = True

    def abort_all(self, reason: str = "shutdown") -> None:
        """Ends every running and waiting request now, with outcome `reason`."""
        self._post(("abort", None, reason))

    def close(self, timeout: float = 5.0) -> None:
        """Stops the threads (requests still running end with outcome "shutdown")."""
        self.drain()
        self.abort_all("shutdown")
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout)

    # ---- admission ------------------------------------------------------------------------------

    def _must_wait(self, req: Request) -> bool:
        """Whether req would wait behind what runs and waits now (called under the lock)."""
        taken = self._running_rows + sum(r.rows for r in self._waiting)
        return taken + req.rows > self.max_batch

    def _blocked(self) -> int:
        """Waiting requests that will not fit when every earlier one has joined."""
        free, blocked = self.max_batch - self._running_rows, 0
        for r in self._waiting:
            if r.rows <= free:
                free -= r.rows
            else:
                blocked += 1
                free = 0
        return blocked

    def _post(self, cmd) -> None:
        with self._cond:
            self._commands.append(cmd)
            self._cond.notify()

    # ---- the scheduler thread -------------------------------------------------------------------

    def _schedule(self) -> None:
        self._gen = Generator(self.model.backend)
        self._primer = Primer(self.model.backend)
        next_check = time.monotonic() + TIMEOUT_CHECK_SECONDS
        while True:
            with self._cond:
                # every waiting request primes, or can start priming, or waits for rows that a
                # running one will free: nothing to do only when nothing runs, primes or waits
                while (not self._commands and not self._gen.keys and not self._primer.keys
                       and not self._waiting and not self._stop):
                    self._cond.wait()
                if self._stop and not self._commands:
                    return
                commands, self._commands = self._commands, []
                admit, start = self._admit()
            touched: list = []
            try:
                for kind, req, reason in commands:
                    if kind == "cancel":
                        self._end(req, reason, touched)
                    else:
                        for r in list(self._running) + list(self._waiting):
                            self._end(r, reason, touched)
                for r in admit:
                    if r.outcome is None:
                        self._join(r)
                for r in start:
                    if r.outcome is None:
                        self._start_priming(r)
                now = time.monotonic()
                if now >= next_check:
                    next_check = now + TIMEOUT_CHECK_SECONDS
                    for r in list(self._running) + list(self._waiting):
                        if r.deadline is not None and now >= r.deadline:
                            self._end(r, "timeout", touched)
                if self._gen.keys:
                    self._step(touched)
            except Exception as e:  # noqa: BLE001 - a failed pass ends the batch, not the server
                self.last_error = e
                self._recover(touched)
            if self._primer.keys:
                self._prime(touched)
            if touched:
                self.notify(touched)

    def _admit(self) -> tuple[list, list]:
        """(requests that join the batch now, requests that start priming now); called under
        the lock. Primed requests join in FIFO order while they fit (one that does not fit holds
        back those behind it, so a large request is never starved); requests still priming are
        passed over. Waiting requests start priming in FIFO order while the primer has room."""
        admit, start = [], []
        free = self.max_batch - self._running_rows
        room = self.max_batch - len(self._primer.keys)
        blocked = False
        for r in list(self._waiting):
            if r.outcome is not None:
                self._waiting.remove(r)
            elif r.primed is not None:
                if blocked or r.rows > free:
                    blocked = True
                    continue
                self._waiting.remove(r)
                admit.append(r)
                free -= r.rows
                self._running_rows += r.rows
                self._running.append(r)
            elif not r.prime_keys and room >= 0:
                if len(r.ids) <= room:
                    start.append(r)
                    room -= len(r.ids)
                else:
                    room = -1  # FIFO: no later request starts before this one
        return admit, start

    def _start_priming(self, r: Request) -> None:
        r.prime_keys = self._primer.add(r.ids)
        for i, k in enumerate(r.prime_keys):
            self._priming[k] = (r, i)
        self.priming_requests += 1
        self.prompt_ids_left = self._primer.ids_left

    def _prime(self, touched: list) -> None:
        """Primes for PRIME_SHARE of the mean step (PRIME_IDLE_SECONDS with no row running); a
        request whose every prompt is primed gets `primed` and joins at a later pass. A backend
        failure ends the requests priming (outcome "error"), not the running batch."""
        budget = PRIME_SHARE * self._step_mean if self._gen.keys else PRIME_IDLE_SECONDS
        primer = self._primer
        before = primer.ids_primed
        t0 = time.perf_counter()
        try:
            done = primer.advance(budget)
        except Exception as e:  # noqa: BLE001 - a failing backend ends these requests only
            self.last_error = e
            for r in {r for r, _ in self._priming.values()}:
                self._end(r, "error", touched)
            self._primer = Primer(self.model.backend)
            self._priming = {}
            done = []
        self.prime_seconds += time.perf_counter() - t0
        self.prompt_ids_primed += primer.ids_primed - before
        for key, logits, state in done:
            r, i = self._priming.pop(key)
            r.prime_out[i] = (logits, state)
            if len(r.prime_out) == len(r.ids):
                rows = np.repeat(np.arange(len(r.ids)), r.n)  # choice p*n + j -> prompt p
                out = [r.prime_out[i] for i in range(len(r.ids))]
                r.primed = (np.stack([o[0] for o in out])[rows],
                            np.stack([o[1] for o in out])[rows])
                r.prime_keys, r.prime_out = [], {}
                self.priming_requests -= 1
        self.prompt_ids_left = self._primer.ids_left

    def _recover(self, touched: list) -> None:
        """After an exception inside a pass (a backend error, a sampler bug on odd logits): every
        running request ends with outcome "error" (the HTTP layer answers 500 or sends an error
        event), and the batch starts afresh, since the generator may be half-updated. Waiting
        requests are untouched: they join the new batch."""
        for r in list(self._running):
            r.primed = None
            self._finish(r, "error")
            touched.append(r)
        self._gen = Generator(self.model.backend)
        self._row = {}
        self._samplers = {}

    def _join(self, r: Request) -> None:
        cfg = r.cfg
        key = replace(cfg, seed=None)
        sampler = self._samplers.get(key)
        if sampler is None or sampler.rows == 0:  # one that left the batch is not reused
            sampler = self._samplers[key] = Sampler(cfg, self.model.vocab.size)
        prompts = [r.ids[c // r.n] for c in range(r.rows)]
        row_ids = [c % r.n for c in range(r.rows)]
        r.keys = self._gen.add(prompts, sampler, cfg.seed, row_ids, primed=r.primed)
        r.primed = None
        r.streams = [TextStream(self.model.vocab, r.max_chars, r.stop) for _ in range(r.rows)]
        r.started = time.monotonic()
        for c, k in enumerate(r.keys):
            self._row[k] = (r, c, r.streams[c])

    def _step(self, touched: list) -> None:
        t0 = time.perf_counter()
        keys, ids = self._gen.step()
        dt = time.perf_counter() - t0
        self._step_mean += STEP_EWMA * (dt - self._step_mean)
        n = len(keys)
        self.steps += 1
        self.chars_generated += n
        self.step_seconds.observe(dt)
        self.batch_size.observe(n)
        mark, row, done = self.steps, self._row, []
        for k, t in zip(keys, ids.tolist()):
            r, c, s = row[k]
            piece = s.push(t)
            fin = s.finish_reason
            if piece or fin is not None:
                r.events.append((c, piece, fin))
                if r._mark != mark:
                    r._mark = mark
                    touched.append(r)
                if fin is not None:
                    done.append(k)
                    r.left -= 1
                    if not r.left:
                        self._finish(r, "ok")
        if done:
            self._gen.remove(done)
            for k in done:
                del row[k]
            self._prune_samplers()

    def _prune_samplers(self) -> None:
        # a Sampler per distinct configuration: drop those whose rows all left, or clients that
        # vary temperature or top-p from request to request would grow this cache for ever
        self._samplers = {k: v for k, v in self._samplers.items() if v.rows}

    def _finish(self, r: Request, outcome: str) -> None:
        r.outcome = outcome
        with self._cond:
            if r in self._running:
                self._running.remove(r)
                self._running_rows -= r.rows
        r._done.set()

    def _end(self, r: Request, reason: str, touched: list) -> None:
        """Ends a request early: its rows leave, its outcome is `reason`."""
        if r.outcome is not None:
            return
        live = [k for k in r.keys if k in self._row]
        if live:
            self._gen.remove(live)
            for k in live:
                del self._row[k]
            self._prune_samplers()
        with self._cond:
            if r in self._waiting:
                self._waiting.remove(r)
        if r.prime_keys:  # it was priming: its prompts leave the primer at once
            self._primer.remove(r.prime_keys)
            for k in r.prime_keys:
                self._priming.pop(k, None)
            r.prime_keys, r.prime_out = [], {}
            self.priming_requests -= 1
            self.prompt_ids_left = self._primer.ids_left
        r.primed = None
        self._finish(r, reason)
        touched.append(r)


def _wake_each(requests) -> None:
    for r in requests:
        r.waker()
