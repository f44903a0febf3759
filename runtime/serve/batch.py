"""The engine's running batch: one Generator whose rows are the choices of the requests that have
joined, which request and choice each row is, the Samplers that rows with equal settings share,
and the step figures that /metrics shows.

    batch = Batch(model)
    batch.open()                   on the scheduler thread (a backend is per thread); again after
                                   a failed step, since the generator may be half-updated
    batch.join(request)            its P x n rows join (primed), each with its TextStream
    batch.step(touched, on_done)   one batched step; new text goes to each request's events
    batch.remove(request)          its rows leave (cancelled, timed out, shut down)

Rows and seeds: choice p*n + j is row (seed, j) of prompt p, exactly the row `charwright generate
PROMPT_p --num-samples n --seed S` samples as sample j. Rows sampled with equal settings share
one Sampler (the seed is per row), so the batch is sampled in a few groups, whatever the number
of requests. Only the scheduler thread calls it; the figures are plain numbers, read anywhere."""

from __future__ import annotations

import time
from dataclasses import replace

from charwright.runtime.generate.generator import Generator
from charwright.runtime.generate.text_stream import TextStream
from charwright.runtime.sampling.config import make_sampler
from charwright.runtime.serve.metrics import (
    BATCH_SIZE_BUCKETS,
    STEP_SECONDS_BUCKETS,
    Histogram,
)

STEP_EWMA = 0.2  # weight of the newest step in the mean step time
PASS_SECONDS = 0.003  # a multi-round pass (Generator.advance) runs about this long at most: new
#   requests join, cancels and timeouts are read, and frames go out between passes (3 ms, below
#   the 5 ms frame interval: 64 clients 73% -> 79% of offline, 1 client 91% -> 96%, against
#   1 ms; scripts/bench_serve.py, Intel Xeon, same sitting)
MAX_ROUNDS = 64  # steps per pass at most (generator.CHUNK_MAX)


class Batch:
    """The rows that step together: Generator key -> (Request, choice, TextStream)."""

    def __init__(self, model):
        self.model = model
        self.gen: Generator | None = None
        self._row: dict[int, tuple] = {}
        self._samplers: dict = {}  # config without seed -> Sampler
        self.steps = 0
        self.passes = 0  # passes run (a pass: one step, or several in one compiled call)
        self.chars_generated = 0
        self.step_seconds = Histogram(STEP_SECONDS_BUCKETS)
        self.batch_size = Histogram(BATCH_SIZE_BUCKETS)
        self.step_mean = 0.0  # mean time of recent batched steps (one round of a pass)
        self.pass_mean = 0.0  # mean time of recent passes (the priming budget's unit)
        self._fuse = True  # try Generator.advance (False: this batch cannot take it)
        self._joined = False  # rows joined since the last pass
        self._last_rounds = 1
        self._eos = -1

    def open(self) -> None:
        """A fresh, empty batch over this thread's backend."""
        self.gen = Generator(self.model.backend)
        self._row = {}
        self._samplers = {}
        eos = self.model.vocab.eos_id
        self._eos = -1 if eos is None else int(eos)
        self._fuse = True

    @property
    def rows(self) -> int:
        return len(self.gen.keys)

    def join(self, r) -> None:
        """The request's rows join, from its primed logits and state."""
        cfg = r.cfg
        key = replace(cfg, seed=None)
        sampler = self._samplers.get(key)
        if sampler is None or sampler.rows == 0:  # one that left the batch is not reused
            sampler = self._samplers[key] = make_sampler(cfg, self.model.vocab)
        prompts = [r.ids[c // r.n] for c in range(r.rows)]
        row_ids = [c % r.n for c in range(r.rows)]
        r.keys = self.gen.add(prompts, sampler, cfg.seed, row_ids, primed=r.primed,
                              max_chars=r.max_chars)
        r.primed = None
        dfa = getattr(sampler, "constraint", None)  # guided_regex / guided_choice
        r.streams = [TextStream(self.model.vocab, r.max_chars, r.stop, dfa)
                     for _ in range(r.rows)]
        r.started = time.monotonic()
        for c, k in enumerate(r.keys):
            self._row[k] = (r, c, r.streams[c])
        self._fuse = self._joined = True  # another batch: the compiled loop may take it
        self._last_rounds = 1

    def step(self, touched: list, on_done) -> None:
        """One pass: one batched step, or several in one compiled call (Generator.advance)
        where the batch takes it, as many as fit in about PASS_SECONDS (at most MAX_ROUNDS,
        never past the shortest row's length limit). Each row's new text of the pass is
        appended to its request's events as one piece (a request with new events is appended
        to `touched` once); on_done(request) is called as soon as its every choice has
        finished, and finished rows leave the batch. A row that ends within a multi-round
        pass (a stop string, end-of-sequence) keeps the text up to its end: the ids it drew
        after that are dropped with the row, which leaves (its state is never kept: the
        prompt cache holds primed prompts only)."""
        gen = self.gen
        t0 = time.perf_counter()
        block = None
        if self._fuse and not self._joined:  # a pass that rows just joined is one step: their
            limit = self._rounds()  # first text goes out at once
            if limit > 1:
                block = gen.advance(limit, self._eos)
                if block is None and not gen.joining:
                    self._fuse = False  # not this batch: until a row joins or leaves
        if block is None:
            keys, ids = gen.step()
            rounds = 1
        else:
            keys, rounds = gen.keys, len(block)
        self._joined = False
        self._last_rounds = rounds
        dt = time.perf_counter() - t0
        per = dt / rounds
        self.step_mean += STEP_EWMA * (per - self.step_mean)
        self.pass_mean += STEP_EWMA * (dt - self.pass_mean)
        n = len(keys)
        self.steps += rounds
        self.passes += 1
        self.chars_generated += n * rounds
        self.step_seconds.observe(per, rounds)
        self.batch_size.observe(n, rounds)
        mark, row, done = self.steps, self._row, []
        if block is None:
            pairs = zip(keys, ids.tolist())
            push = TextStream.push
        else:
            pairs = zip(list(keys), block.T.tolist())
            push = TextStream.push_many
        for k, t in pairs:
            r, c, s = row[k]
            piece = push(s, t)
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
                        on_done(r)
        if done:
            self._leave(done)

    def _rounds(self) -> int:
        """Steps the next pass may run: about PASS_SECONDS of them, at most MAX_ROUNDS, and no
        more than the row with the least room left takes."""
        if self.step_mean <= 0:
            return 1
        rounds = min(int(PASS_SECONDS / self.step_mean), MAX_ROUNDS, 2 * self._last_rounds)
        if rounds < 2:  # (doubling: a batch that just changed is timed before it runs long)
            return 1
        for _, _, s in self._row.values():
            room = s.max_chars - len(s.tokens)
            if room < rounds:
                rounds = room
        return rounds

    def remove(self, r) -> None:
        """The request's rows that are still in the batch leave."""
        live = [k for k in r.keys if k in self._row]
        if live:
            self._leave(live)

    def _leave(self, keys) -> None:
        self.gen.remove(keys)
        self._fuse = True
        for k in keys:
            del self._row[k]
        # a Sampler per distinct configuration: drop those whose rows all left, or clients that
        # vary temperature or top-p from request to request would grow this cache for ever
        self._samplers = {k: v for k, v in self._samplers.items() if v.rows}
