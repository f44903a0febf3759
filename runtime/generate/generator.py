"""Rows that join and leave one running batch of the step graph: the one sampling loop.

    g = Generator(backend)
    keys = g.add([prompt_ids], sampler, seed=7)   primes the prompts; the rows join the batch
    keys, ids = g.step()                          one id for every row in the batch
    g.remove(keys[:1])                            a row leaves before the next step
    g.is_done()
    ids = g.advance(64)                           up to 64 steps in one compiled call (or None)

step() first advances every row that already chose an id (one batched backend step: token int32
[rows], state float32 [rows, state_size]), then samples one id per row. A row that joined since
the last step was primed when it was added and brings its own logits, so rows can join at any
time; a row removed after its last id is never stepped again. Rows with different sampling
configurations share the batch: each Sampler processes its own rows.

advance() is step() repeated inside the compiled sampling core (runtime/sampling/_speedups.c
run_steps): the core calls the backend's own step (LiteRT's Invoke on its arena, onnxruntime's
run_with_iobinding) and samples between steps without returning to Python, the same ids, state
and coins as step() round by round.

`run(generator, streams)` is the loop on top: it feeds each row's ids to that row's TextStream
(end-of-sequence, stop strings, length) and yields the text as it is produced.

Priming (prime, Primer) lives in priming.py; a list of prompts becomes rows and TextStreams in
batch.py.
"""

from __future__ import annotations

import time
from typing import Iterator

import numpy as np

from charwright.runtime.errors import ConfigError
from charwright.runtime.generate.priming import prime
from charwright.runtime.generate.text_stream import TextStream


class Generator:
    """A running batch. Not thread-safe: one thread drives it (the engine's scheduler, or a
    generate call)."""

    def __init__(self, backend):
        self.backend = backend
        self.state = backend.initial_state(0)  # float32 [rows, state_size]
        self.tokens = np.zeros(0, np.int32)  # int32 [rows]: the id each row feeds next
        self.keys: list[int] = []  # row keys in batch order
        self._next_key = 0
        self._samplers: list = []  # distinct samplers, in order of first use
        self._sampler_of: list = []  # per row, its sampler
        self._groups = None  # [(sampler, row positions)] when several samplers share the batch
        self._sample = None  # ids = self._sample(z): one sampler's, or _sample_groups
        self._fresh: dict[int, np.ndarray] = {}  # position -> logits [V] of rows just joined

    def __len__(self) -> int:
        return len(self.keys)

    def is_done(self) -> bool:
        return not self.keys

    @property
    def joining(self) -> bool:
        """Rows joined since the last step bring their own logits: advance() waits for a
        step() to take them (unless every row joined)."""
        return bool(self._fresh)

    def add(self, prompts: list, sampler, seed: int = 0, row_ids=None, primed=None,
            max_chars=None) -> list:
        """Primes `prompts` (int32 arrays of >= 1 id, one per row) and adds the rows to the
        batch together; returns their keys.

        sampler: a sampling.Sampler (shared by rows with the same configuration); row i draws
        from the generator seeded by (seed, row_ids[i]) (default 0, 1, ...). primed: (logits
        [n, V], state [n, S]) if the caller primed the prompts already (see prime()).
        max_chars: the rows' length limit, which a regex-constrained sampler needs (its
        `constraint` is not None) so that no row ends in the middle of a match."""
        prompts = [np.asarray(p, np.int32) for p in prompts]
        n = len(prompts)
        row_ids = list(range(n)) if row_ids is None else list(row_ids)
        if not n or len(row_ids) != n:
            raise ConfigError(f"{n} prompts and {len(row_ids)} row ids: give one row id each")
        logits, state = primed if primed is not None else prime(self.backend, prompts)
        if getattr(sampler, "constraint", None) is not None:
            sampler.join(prompts, seed, row_ids, max_chars)
        else:
            sampler.join(prompts, seed, row_ids)
        start = len(self.keys)
        self.state = np.concatenate([self.state, state]) if start else state
        self.tokens = np.concatenate([self.tokens, np.zeros(n, np.int32)])
        for i in range(n):
            self._fresh[start + i] = logits[i]
        if not any(s is sampler for s in self._samplers):
            self._samplers.append(sampler)
        self._sampler_of += [sampler] * n
        self._regroup()
        keys = list(range(self._next_key, self._next_key + n))
        self._next_key += n
        self.keys += keys
        return keys

    def remove(self, keys) -> None:
        """Rows `keys` leave the batch (finished or cancelled); unknown keys are ignored."""
        gone = set(keys)
        kept = [k not in gone for k in self.keys]
        if all(kept):
            return
        keep = np.flatnonzero(kept)
        for s in self._samplers:  # each sampler keeps its own rows, in batch order
            s.take(np.flatnonzero([kept[i] for i, t in enumerate(self._sampler_of) if t is s]))
        self.state = self.state[keep]
        self.tokens = self.tokens[keep]
        self.keys = [self.keys[i] for i in keep]
        self._sampler_of = [self._sampler_of[i] for i in keep]
        self._samplers = [s for s in self._samplers if any(t is s for t in self._sampler_of)]
        where = {int(old): new for new, old in enumerate(keep)}
        self._fresh = {where[p]: z for p, z in self._fresh.items() if p in where}
        self._regroup()

    def _regroup(self) -> None:
        if len(self._samplers) <= 1:  # one sampler for the whole batch: no gather, no scatter
            self._groups = None
            self._sample = self._samplers[0].sample if self._samplers else None
            return
        self._groups = [(s, np.asarray([i for i, t in enumerate(self._sampler_of) if t is s]))
                        for s in self._samplers]
        self._sample = self._sample_groups

    def _merge_fresh(self) -> np.ndarray:
        """float32 [rows, V]: a backend step for the rows that chose an id, and the logits that
        joined rows brought with them."""
        fresh, self._fresh = self._fresh, {}
        n = len(self.keys)
        z = np.empty((n, self.backend.vocab_size), np.float32)
        old = np.asarray([i for i in range(n) if i not in fresh], np.int64)
        if len(old):
            z[old], self.state[old] = self.backend.step(self.tokens[old], self.state[old])
        for i, row in fresh.items():
            z[i] = row
        return z

    def _sample_groups(self, z: np.ndarray) -> np.ndarray:
        ids = np.empty(len(self.keys), np.int64)
        for sampler, rows in self._groups:
            ids[rows] = sampler.sample(z[rows])
        return ids

    def advance(self, limit: int, eos: int = -1):
        """Up to `limit` rounds of step() in one compiled call (the sampling core's run_steps
        over the backend's own buffers, no Python between steps): ids int64 [rounds, rows],
        the same ids, state and sampler state as that many step() calls. Stops after the first
        round in which some row picks `eos` (-1: never). None, and nothing done, when this
        batch cannot take it: the caller calls step(). It can when one compiled sampler without
        a regex serves every row, the backend offers fused_io (LiteRT's raw path, onnxruntime
        any batch), and no row or every row has just joined. An exception (or Ctrl-C) within
        the call leaves this generator unusable: the rounds before it drew their coins, and
        its state is not the last step's."""
        if not self.keys or self._groups is not None or limit < 1:
            return None
        loop_core = getattr(self._samplers[0], "loop_core", None)  # the compiled sampler's
        core = loop_core() if loop_core is not None else None
        if core is None:
            return None
        n = len(self.keys)
        z0 = None
        if self._fresh:
            if len(self._fresh) != n:
                return None
            z0 = np.stack([self._fresh[i] for i in range(n)]).astype(np.float32, copy=False)
        fused_io = getattr(self.backend, "fused_io", None)  # a backend of the step contract only
        io = fused_io(n) if fused_io is not None else None
        if io is None:
            return None
        invoke, args, tok_in, state_in, logits, new_state = io
        state_in[...] = self.state
        if z0 is None:
            tok_in[...] = self.tokens
        out = np.empty((limit, n), np.int64)
        # the backend's step errors come out as its typed error (step_failed); the core's own
        # (its arguments, a call from another thread) as they are
        rounds = core.run_steps(invoke, args, tok_in, state_in, logits, new_state, z0, limit,
                                eos, out, getattr(self.backend, "step_failed", None))
        self._fresh = {}
        if z0 is None or rounds > 1:  # the rows' state is the last step's
            self.state = new_state.copy()
        self.tokens[...] = out[rounds - 1]
        return out[:rounds]

    def step(self) -> tuple[list[int], np.ndarray]:
        """One id for every row: returns (keys, ids int64 [rows]) in batch order."""
        if self._fresh:
            z = self._merge_fresh()
        elif self.keys:
            z, self.state = self.backend.step(self.tokens, self.state)
        else:
            return [], np.zeros(0, np.int64)
        ids = self._sample(z)
        self.tokens[...] = ids  # int64 -> the int32 buffer the backends take (cheaper than astype)
        return self.keys, ids


CHUNK_MAX = 64  # rounds per compiled call at most: text reaches the reader every <= 64 steps
CHUNK_SECONDS = 0.01  # and a call grows only while it takes less: a slow model streams at
#                       least every ~10 ms (or every step, when one step takes longer)


def run(gen: Generator, streams: dict) -> Iterator[tuple[int, str]]:
    """Drives `gen` until every row is done; yields (key, text) as each row's text appears.

    streams: key -> TextStream for every row of gen (rows added while this runs need theirs
    added before their first step). A row whose stream finishes leaves the batch at once.

    Where the batch can take it (Generator.advance), rounds run in compiled calls of 1, 2, 4 ..
    CHUNK_MAX steps while a call takes under CHUNK_SECONDS (never past the first end-of-sequence
    nor the shortest length limit), and each row's text of a call comes as one piece; a row
    that meets a stop string within a call leaves with the text up to it (the steps after it
    in that call are discarded). Several rows with stop strings take the compiled calls only on
    a batch-invariant file: on another, a row that stops within a call would stay in the batch
    to its end and change the others' logits, hence their text."""
    step, remove = gen.step, gen.remove
    chunk, eos, fuse = 1, -1, True
    for s in streams.values():
        eos = s.eos if s.eos is not None else -1
        break
    invariant = getattr(gen.backend, "batch_invariant", False)
    while gen.keys:
        block = None
        if fuse:
            rows = [streams[k] for k in gen.keys]
            if invariant or len(rows) == 1 or all(s.matcher is None for s in rows):
                limit = min(chunk, min(s.max_chars - len(s.tokens) for s in rows))
                t0 = time.perf_counter()
                block = gen.advance(limit, eos)
                dt = time.perf_counter() - t0
            fuse = block is not None or gen.joining  # no: until the batch changes
        if block is not None:
            # the next call: twice as long while calls stay short, half as long past the bound
            chunk = (min(2 * chunk, CHUNK_MAX) if dt < CHUNK_SECONDS / 2 else
                     max(1, chunk // 2) if dt > CHUNK_SECONDS else chunk)
            keys, cols, push = list(gen.keys), block.T.tolist(), TextStream.push_many
        else:
            keys, ids = step()
            if len(keys) == 1:  # one row (stream, generate, a session): no zip, no list of keys
                k = keys[0]
                s = streams[k]
                piece = s.push(ids.item())
                if piece:
                    yield k, piece
                if s.finish_reason is not None:
                    remove((k,))
                continue
            cols, push = ids.tolist(), TextStream.push  # one id per row: push, not push_many
        done = None
        for k, t in zip(keys, cols):  # t: the row's ids of the call, or its one id
            s = streams[k]
            piece = push(s, t)
            if piece:
                yield k, piece
            if s.finish_reason is not None:
                done = [k] if done is None else done + [k]
        if done:
            remove(done)
            fuse = True  # another batch: the compiled loop may take it
