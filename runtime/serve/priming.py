"""The engine's priming bookkeeping: the prompts being primed on the scheduler thread in slices
between batched steps (chunked prefill), which request and prompt each primer row belongs to, and
the priming figures that /metrics shows.

    priming = Priming()
    priming.open(model.backend)          on the scheduler thread (a backend is per thread)
    priming.start(request)               its prompts join the primer
    priming.advance(seconds)             primes about that long; fully primed requests get
                                         request.primed = (logits [rows, V], state [rows, S])
    priming.drop(request)                it leaves the primer (cancelled, timed out)

With a prompt cache (serve/prefix_cache.py), start() looks each prompt up first: a prompt cached
whole is primed at once, one that shares a cached prefix primes only the rest, from the cached
state; the primer's rows report their state every CHECKPOINT_EVERY ids and at their end, and
those states are cached.

Only the scheduler thread calls it; the figures are plain numbers, read anywhere."""

from __future__ import annotations

import time

import numpy as np
from charwright.runtime.generate.priming import Primer


class Priming:
    """A Primer and its owners: primer key -> (Request, prompt index)."""

    def __init__(self, cache=None):
        self.primer: Primer | None = None
        self.cache = cache  # a PrefixCache, or None
        self._owner: dict[int, tuple] = {}
        self._marks: dict[int, dict] = {}  # primer key -> its prompt's cache marks
        self.ids_primed = 0  # prompt ids run through the step graph
        self.seconds = 0.0  # time spent priming
        self.requests = 0  # requests priming now
        self.ids_left = 0  # ids of prompts still to prime

    def open(self, backend) -> None:
        """A fresh, empty primer over `backend` (also after a backend failure)."""
        self.primer = Primer(backend)
        if self.cache is not None:
            self.primer.checkpoint_every = self.cache.every
        self._owner, self._marks = {}, {}
        self.ids_left = 0

    @property
    def rows(self) -> int:
        """Prompts priming now (each a row of the primer)."""
        return len(self.primer.keys)

    def owners(self) -> set:
        """The requests priming now."""
        return {r for r, _ in self._owner.values()}

    def start(self, r) -> None:
        """The request's prompts start priming (those the cache holds whole are primed now; a
        request with every prompt cached gets `primed` at once)."""
        if self.cache is None:
            todo, starts, marks = list(range(len(r.ids))), None, {}
        else:
            todo, starts, marks = self._lookup(r)
        if todo:
            r.prime_keys = self.primer.add([r.ids[i] for i in todo], starts)
            for i, k in zip(todo, r.prime_keys):
                self._owner[k] = (r, i)
                if i in marks:
                    self._marks[k] = marks[i]
            self.requests += 1
        else:
            self._primed(r)
        self.ids_left = self.primer.ids_left

    def _lookup(self, r):
        """(prompt indices still to prime, their starts, their cache marks); prompts cached
        whole go to r.prime_out."""
        todo, starts, marks = [], [], {}
        for i, ids in enumerate(r.ids):
            m = self.cache.marks(ids, r.cache_salt)
            hit = self.cache.lookup(ids, m, r.cache_salt)
            if hit is not None and hit[0] == len(ids):
                r.prime_out[i] = (hit[1].copy(), hit[2].copy())
                continue
            todo.append(i)
            starts.append(None if hit is None else (hit[0], hit[2]))
            marks[i] = m
        return todo, starts, marks

    def _primed(self, r) -> None:
        """Every prompt of r is primed: r.primed (one row per choice: choice p*n + j takes prompt
        p's logits and state)."""
        rows = np.repeat(np.arange(len(r.ids)), r.n)  # choice p*n + j -> prompt p
        out = [r.prime_out[i] for i in range(len(r.ids))]
        r.primed = (np.stack([o[0] for o in out])[rows], np.stack([o[1] for o in out])[rows])
        r.prime_keys, r.prime_out = [], {}

    def drop(self, r) -> None:
        """A request that primes leaves: its prompts leave the primer at once."""
        if not r.prime_keys:
            return
        self.primer.remove(r.prime_keys)
        for k in r.prime_keys:
            self._owner.pop(k, None)
            self._marks.pop(k, None)
        r.prime_keys, r.prime_out = [], {}
        self.requests -= 1
        self.ids_left = self.primer.ids_left

    def advance(self, seconds: float) -> None:
        """Primes for about `seconds`; a request whose every prompt is primed gets `primed`
        (one row per choice: choice p*n + j takes prompt p's logits and state). A backend error
        propagates after the figures are counted."""
        primer = self.primer
        before, t0 = primer.ids_primed, time.perf_counter()
        try:
            done = primer.advance(seconds)
        finally:
            self.seconds += time.perf_counter() - t0
            self.ids_primed += primer.ids_primed - before
        if self.cache is not None:
            self._keep(primer.checkpoints, done)
        for key, logits, state in done:
            r, i = self._owner.pop(key)
            self._marks.pop(key, None)
            r.prime_out[i] = (logits, state)
            if len(r.prime_out) == len(r.ids):
                self._primed(r)
                self.requests -= 1
        self.ids_left = primer.ids_left

    def _keep(self, checkpoints: list, done: list) -> None:
        """The states the primer reported along prompts and at their ends go into the cache."""
        put = self.cache.put
        for key, pos, logits, state in checkpoints:
            m = self._marks.get(key)
            if m is not None and pos in m:
                put(m, pos, logits, state)
        checkpoints.clear()
        for key, logits, state in done:
            m = self._marks.get(key)
            if m is not None:
                put(m, max(m), logits, state)
