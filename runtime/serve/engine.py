"""Continuous batching: requests are rows that join one running batch at the next step and leave
when done. The core of `charwright serve`, usable from Python without HTTP.

    engine = Engine(load(), max_batch=64, max_queue=64)
    engine.start()
    req = engine.submit(["ROMEO:"], n=2, max_chars=200, sampling=SamplingConfig(seed=7))
    for choice, piece, finish_reason in req.events_blocking(): ...
    req.completions()                      [Completion per choice]
    engine.cancel(req); engine.drain(); engine.abort_all("shutdown"); engine.close()

Threads. One scheduler thread owns the batch (batch.py: a Generator and its rows) and the
prompts being primed (priming.py: a Primer and its owners), and is the only one that steps
either. Callers only validate, enqueue and relay:
submit() and cancel() post to the scheduler and return at once.

Each scheduler pass: commands first (cancels, aborts), then waiting requests that are primed and
fit join the batch (a request's rows all together; FIFO among primed requests, so a request still
priming holds back nobody), waiting requests start priming (FIFO, at most max_batch prompts
prime at once), then one batched step for every row, then priming for PRIME_SHARE of a step's
mean time (chunked prefill: vLLM's scheduler gives prefill a token budget per iteration for the
same reason), so a long prompt stretches the running streams' frames by about half a step,
whatever its length (it primes about a third as fast as alone meanwhile); with no row running,
priming runs in slices of PRIME_IDLE_SECONDS. Where the batch takes it (one compiled sampler for
every row, a backend with fused_io: onnxruntime or LiteRT), the "one batched step"
is several, run in one compiled call (Generator.advance, batch.py): about batch.PASS_SECONDS of
them (3 ms), so joins, cancels and timeouts wait at most that long; a pass that rows just
joined is one step, so their first text goes out at once. Then the new text of each request is appended to
its events and `notify(touched requests)` is called once per pass (the HTTP layer turns that
into one wake-up of its event loop). A request cancelled while it
primes (its client went away) leaves the primer at the next pass.

Rows and seeds. Choice p*n + j of a request is row (seed, j) of prompt p, exactly the row
`charwright generate PROMPT_p --num-samples n --seed S` samples as sample j (batch.py).

Prompt cache (prefix_cache.py, prompt_cache_bytes > 0, `serve --prompt-cache-mb`): the state
after each primed prompt and every 256 ids along it is kept (LRU, bounded in bytes), and a
prompt that shares a prefix with an earlier one primes only the rest; on only for a
batch-invariant file, where a cached state is bit for bit the one priming afresh gives.

Queue (admission.py). At most max_batch rows run. A request that does not fit waits; if
max_queue requests wait already, submit raises QueueFull at once (HTTP 429): the queue is
bounded, never a backlog. A request whose prompts hold more than max_prompt_chars characters is
refused (ConfigError).

(About 420 lines, one idea: the scheduler thread and its pass; the next split is the prompt
cache's glue.)
"""

from __future__ import annotations

import threading
import time

from charwright.runtime.errors import ConfigError
from charwright.runtime.sampling.config import SamplingConfig, resolve_seed
from charwright.runtime.serve.admission import Admission
from charwright.runtime.serve.batch import Batch
from charwright.runtime.serve.priming import Priming
from charwright.runtime.serve.request import Draining, Request

TIMEOUT_CHECK_SECONDS = 0.1
YIELD_SECONDS = 0.005  # the scheduler hands the GIL to the event loop at least this often
PRIME_SHARE = 0.5  # priming per pass, as a fraction of the mean time of recent batched steps
PRIME_IDLE_SECONDS = 0.02  # priming per pass when no row runs (commands are read in between)


def _figure(part: str, name: str, doc: str) -> property:
    """A read-only figure of the batch or of the priming, as an Engine attribute."""
    return property(lambda self: getattr(getattr(self, part), name), doc=doc)


class Engine:
    """One scheduler over one loaded Model (see the module docstring)."""

    def __init__(self, model, max_batch: int = 64, max_queue: int = 64, notify=None,
                 max_prompt_chars: int | None = None, prompt_cache_bytes: int = 0):
        _check_int("max_batch", max_batch, 1)
        _check_int("max_queue", max_queue, 0)
        if max_prompt_chars is not None:
            _check_int("max_prompt_chars", max_prompt_chars, 1, " (or None: no limit)")
        _check_int("prompt_cache_bytes", prompt_cache_bytes, 0, " (0: no prompt cache)")
        # the prompt cache (serve/prefix_cache.py), for batch-invariant files only
        self.prompt_cache, self.prompt_cache_note = _prompt_cache(model, prompt_cache_bytes)
        self.model, self.max_batch, self.max_queue = model, max_batch, max_queue
        self.max_prompt_chars = max_prompt_chars
        self.notify = notify or _wake_each
        self._cond = threading.Condition()  # guards _queue, _commands, _draining, _stop
        self._queue = Admission(max_batch, max_queue)
        self._commands: list = []
        self._draining = False
        self._stop = False
        self._threads: list[threading.Thread] = []
        self._batch = Batch(model)  # the rows stepping; opened on the scheduler thread
        self._priming = Priming(self.prompt_cache)  # the prompts priming; likewise
        self.step_seconds = self._batch.step_seconds  # Histograms, filled by the scheduler
        self.batch_size = self._batch.batch_size
        self.last_error: BaseException | None = None

    # ---- public ---------------------------------------------------------------------------------

    def start(self) -> Engine:
        t = threading.Thread(target=self._schedule, name="charwright-scheduler", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    running_requests = property(lambda self: len(self._queue.running))
    running_rows = property(lambda self: self._queue.running_rows)
    waiting_requests = property(lambda self: len(self._queue.waiting))
    draining = property(lambda self: self._draining)
    steps = _figure("_batch", "steps", "Batched steps run.")
    passes = _figure("_batch", "passes", "Scheduler passes that stepped the batch.")
    pass_seconds = _figure("_batch", "pass_mean", "Mean time of recent passes (one batched "
                           "step, or the steps of one compiled call).")
    chars_generated = _figure("_batch", "chars_generated", "Characters (ids) generated.")
    prompt_ids_primed = _figure("_priming", "ids_primed", "Prompt ids run through the graph.")
    prime_seconds = _figure("_priming", "seconds", "Time spent priming.")
    priming_requests = _figure("_priming", "requests", "Requests priming now.")
    prompt_ids_left = _figure("_priming", "ids_left", "Ids of prompts still to prime.")
    prompt_cache_hits = _figure("_cache_figures", "hits", "Prompts that began from a cache hit.")
    prompt_cache_misses = _figure("_cache_figures", "misses", "Prompts primed from the start.")
    prompt_cache_evictions = _figure("_cache_figures", "evictions", "Cache entries evicted.")
    prompt_cache_bytes = _figure("_cache_figures", "bytes", "Bytes the prompt cache holds.")
    prompt_cache_max_bytes = _figure("_cache_figures", "max_bytes", "Its bound (0: off).")
    prompt_cache_ids_reused = _figure("_cache_figures", "ids_reused",
                                      "Prompt ids not primed thanks to the cache.")

    @property
    def _cache_figures(self):
        return self.prompt_cache if self.prompt_cache is not None else _NO_CACHE

    def idle(self) -> bool:
        return not self._queue.running and not self._queue.waiting

    def prepare(self, prompts, n: int = 1, max_chars: int = 200, sampling=None, stop=(),
                timeout: float | None = None, cache_salt: str | None = None) -> Request:
        """Validates a request (ConfigError naming the bad value) without queueing it.
        cache_salt: its prompts share prompt-cache entries only with requests of the same
        salt (vLLM's cache_salt), so other clients cannot time a hit on its prompts."""
        _check_int("n", n, 1)
        _check_int("max_chars", max_chars, 1)
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
        if cache_salt is not None and (not isinstance(cache_salt, str) or not cache_salt):
            raise ConfigError("cache_salt must be a non-empty string")
        return Request(ids, n, max_chars, cfg, tuple(s for s in stop if s), deadline, chars,
                       cache_salt)

    def submit(self, prompts, n: int = 1, max_chars: int = 200, sampling=None, stop=(),
               timeout: float | None = None, waker=None, cache_salt: str | None = None) -> Request:
        """Queues a request and returns it at once. Raises ConfigError (bad values), Draining
        (shutting down) or QueueFull (max_queue requests wait already)."""
        req = self.prepare(prompts, n, max_chars, sampling, stop, timeout, cache_salt)
        if waker is not None:
            req.waker = waker
        return self.enqueue(req)

    def enqueue(self, req: Request) -> Request:
        with self._cond:
            if self._draining or self._stop:
                raise Draining("the server is shutting down and admits no new requests")
            self._queue.accept(req)
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

    # ---- commands to the scheduler -------------------------------------------------------------

    def _post(self, cmd) -> None:
        with self._cond:
            self._commands.append(cmd)
            self._cond.notify()

    # ---- the scheduler thread -------------------------------------------------------------------

    def _schedule(self) -> None:
        self._batch.open()
        self._priming.open(self.model.backend)
        next_check = time.monotonic() + TIMEOUT_CHECK_SECONDS
        next_yield = time.monotonic() + YIELD_SECONDS
        while True:
            work = self._next_pass()
            if work is None:
                return
            commands, admit, start = work
            touched: list = []
            try:
                self._run_commands(commands, touched)
                for r in admit:
                    if r.outcome is None:
                        self._join(r, touched)
                for r in start:
                    if r.outcome is None:
                        self._priming.start(r)
                next_check = self._expire(next_check, touched)
                if self._batch.rows:
                    self._batch.step(touched, on_done=lambda r: self._finish(r, "ok"))
            except Exception as e:  # noqa: BLE001 - a failed pass ends the batch, not the server
                self.last_error = e
                self._recover(touched)
            if self._priming.rows:
                self._prime(touched)
                # hand the GIL to the event loop once per priming slice: a step that holds it
                # (numpy, small models) makes the loop wait the 5 ms switch interval for each
                # of its GIL round trips, and /health took 1.9 s while a long prompt primed
                # (now < 0.1 s; the sleep costs ~50 us, once per slice, only while priming)
                time.sleep(0)
            if touched:
                self.notify(touched)
                if admit:
                    # rows joined this pass, and their first text is now the event loop's to
                    # write: hand it the GIL before the next pass (a compiled call of up to
                    # PASS_SECONDS that takes the GIL straight back after each step)
                    time.sleep(0)
            now = time.monotonic()
            if now >= next_yield:
                # and once every few ms while rows run: a scheduler stepping flat out (a small
                # model, the compiled sampler) takes the GIL straight back after each short
                # release, and the event loop thread waited up to 0.1 s for it (frames piled
                # up); ~50 us per 5 ms, about 1%
                time.sleep(0)
                next_yield = now + YIELD_SECONDS

    def _next_pass(self):
        """Waits for work; returns (commands, requests that join, requests that start priming),
        or None when the engine stops."""
        if self._batch.rows and not (self._commands or self._queue.waiting or self._stop):
            # the common pass while rows run: nothing to take, no lock (what another thread
            # posts meanwhile is taken at the next pass, one step later)
            return (), (), ()
        with self._cond:
            # every waiting request primes, or can start priming, or waits for rows that a
            # running one will free: nothing to do only when nothing runs, primes or waits
            while (not self._commands and not self._batch.rows and not self._priming.rows
                   and not self._queue.waiting and not self._stop):
                self._cond.wait()
            if self._stop and not self._commands:
                return None
            commands, self._commands = self._commands, []
            return (commands, *self._queue.admit(self._priming.rows))

    def _run_commands(self, commands, touched: list) -> None:
        for kind, req, reason in commands:
            if kind == "cancel":
                self._end(req, reason, touched)
            else:
                for r in self._queue.everyone():
                    self._end(r, reason, touched)

    def _expire(self, next_check: float, touched: list) -> float:
        """Ends requests past their deadline (every TIMEOUT_CHECK_SECONDS); the next check."""
        now = time.monotonic()
        if now < next_check:
            return next_check
        for r in self._queue.everyone():
            if r.deadline is not None and now >= r.deadline:
                self._end(r, "timeout", touched)
        return now + TIMEOUT_CHECK_SECONDS

    def _join(self, r: Request, touched: list) -> None:
        """r's rows join the batch. A request that cannot join (its sampler cannot be made,
        its rows cannot be added) ends alone with outcome "error"; the rows running go on. Only
        a failure that left some of its rows in the generator ends the pass (_recover)."""
        rows = self._batch.rows
        try:
            self._batch.join(r)
        except Exception as e:  # noqa: BLE001 - this request fails, not the batch
            if self._batch.rows != rows:
                raise
            self.last_error = e
            self._end(r, "error", touched)

    def _prime(self, touched: list) -> None:
        """Primes for PRIME_SHARE of the mean step (PRIME_IDLE_SECONDS with no row running); a
        request whose every prompt is primed joins at a later pass. A backend failure ends the
        requests priming (outcome "error"), not the running batch."""
        budget = PRIME_SHARE * self._batch.pass_mean if self._batch.rows else PRIME_IDLE_SECONDS
        try:
            self._priming.advance(budget)
        except Exception as e:  # noqa: BLE001 - a failing backend ends these requests only
            self.last_error = e
            for r in self._priming.owners():
                self._end(r, "error", touched)
            self._priming.open(self.model.backend)

    def _recover(self, touched: list) -> None:
        """After an exception inside a pass (a backend error, a sampler bug on odd logits): every
        running request ends with outcome "error" (the HTTP layer answers 500 or sends an error
        event), and the batch starts afresh, since the generator may be half-updated. Waiting
        requests are untouched: they join the new batch."""
        for r in list(self._queue.running):
            r.primed = None
            self._finish(r, "error")
            touched.append(r)
        self._batch.open()

    def _finish(self, r: Request, outcome: str) -> None:
        r.outcome = outcome
        with self._cond:
            self._queue.leave(r)
        r._done.set()

    def _end(self, r: Request, reason: str, touched: list) -> None:
        """Ends a request early: its rows leave, its outcome is `reason`."""
        if r.outcome is not None:
            return
        self._batch.remove(r)
        self._priming.drop(r)  # it was priming: its prompts leave the primer at once
        r.primed = None
        self._finish(r, reason)
        touched.append(r)


class _NoCache:
    hits = misses = evictions = bytes = ids_reused = max_bytes = 0


_NO_CACHE = _NoCache()


def _prompt_cache(model, max_bytes: int):
    """(PrefixCache or None, a line saying which and why). Cached states are exact only where a
    row's step does not depend on its batch: the file must be batch-invariant (manifest's
    files[].batch_invariant; a bundle without the key counts as not), and a row stepped alone
    and in a batch of 3 here must agree bit for bit (runtime/verify/invariance.py self_check:
    a few ms; the manifest's claim was measured on the exporting CPU)."""
    from charwright.runtime.serve.prefix_cache import PrefixCache
    from charwright.runtime.verify.invariance import SERVE_BATCHES, self_check

    if not max_bytes:
        return None, "prompt cache off"
    entry = model.entry
    invariant = getattr(entry, "batch_invariant", None)
    if invariant is None:
        invariant = entry.extra.get("batch_invariant") is True
    if not invariant:
        recorded = "batch_invariant" in (entry.extra or {}) or _recorded(model, entry.path)
        return None, (f"prompt cache off: {entry.path} is not batch-invariant, so a cached "
                      "state could differ from one primed afresh" if recorded else
                      f"prompt cache off: {entry.path}'s batch invariance is not recorded (an "
                      "older bundle; `charwright verify` measures it): it counts as not "
                      "batch-invariant, so a cached state could differ from one primed afresh")
    here = self_check(_check_backend(model))
    if here is None or not here.invariant:
        why = "could not be checked here" if here is None else (
            f"a row differs at batch {here.batch} here (max |Δ| {here.max_abs:.3g})")
        return None, (f"prompt cache off: the manifest says {entry.path} is batch-invariant but "
                      f"{why}")
    return PrefixCache(max_bytes), (f"prompt cache {max_bytes / 2**20:.3g} MiB (batch "
                                    f"invariance checked here at batch "
                                    f"{', '.join(map(str, SERVE_BATCHES))})")


def _check_backend(model):
    """The backend the invariance check steps: a session of its own, opened for the check and
    dropped after it, where the model can open one (its own backend otherwise: Model._shared,
    since Model.backend would open one more for this thread where the runtime is not
    thread-safe). The serving session is then first run by the scheduler thread: a batch-3
    step on another thread before it made every later step of the demo's ONNX file ~15%
    slower on the scheduler thread (42.8 vs 36.8 us a step at batch 1, Intel Xeon; an
    onnxruntime allocation effect, reproducible, not understood)."""
    from charwright.runtime.backends import open_backend

    bundle, entry = getattr(model, "bundle", None), getattr(model, "entry", None)
    if bundle is not None and entry is not None and hasattr(model, "threads"):
        try:
            return open_backend(bundle, entry, model.threads)
        except Exception:  # noqa: BLE001 - the model's own backend is checked instead
            pass
    return getattr(model, "_shared", None) or model.backend


def _recorded(model, path: str) -> bool:
    """Whether the manifest's entry for `path` has a batch_invariant key at all."""
    bundle = getattr(model, "bundle", None)
    files = getattr(bundle, "manifest", {}).get("files") if bundle is not None else None
    return any(isinstance(f, dict) and f.get("path") == path and "batch_invariant" in f
               for f in files or ())


def _check_int(name: str, value, lo: int, or_else: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ConfigError(f"{name} {value!r}: must be an integer >= {lo}{or_else}")


def _wake_each(requests) -> None:
    for r in requests:
        r.waker()
