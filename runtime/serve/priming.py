"""The engine's priming bookkeeping: the prompts being primed on the scheduler thread in slices
between batched steps (chunked prefill), which request and prompt each primer row belongs to, and
the priming figures that /metrics shows.

    priming = Priming()
    priming.open(model.backend)          on the scheduler thread (a backend is per thread)
    priming.start(request)               its prompts join the primer
    priming.advance(seconds)             primes about that long; fully primed requests get
                                         request.primed = (logits [rows, V], state [rows, S])
    priming.drop(request)                it leaves the primer (cancelled, timed out)

Only the scheduler thread calls it; the figures are plain numbers, read anywhere."""

from __future__ import annotations

import time

import numpy as np
from charwright.runtime.generate.priming import Primer


class Priming:
    """A Primer and its owners: primer key -> (Request, prompt index)."""

    def __init__(self):
        self.primer: Primer | None = None
        self._owner: dict[int, tuple] = {}
        self.ids_primed = 0  # prompt ids run through the step graph
        self.seconds = 0.0  # time spent priming
        self.requests = 0  # requests priming now
        self.ids_left = 0  # ids of prompts still to prime

    def open(self, backend) -> None:
        """A fresh, empty primer over `backend` (also after a backend failure)."""
        self.primer = Primer(backend)
        self._owner = {}
        self.ids_left = 0

    @property
    def rows(self) -> int:
        """Prompts priming now (each a row of the primer)."""
        return len(self.primer.keys)

    def owners(self) -> set:
        """The requests priming now."""
        return {r for r, _ in self._owner.values()}

    def start(self, r) -> None:
        r.prime_keys = self.primer.add(r.ids)
        for i, k in enumerate(r.prime_keys):
            self._owner[k] = (r, i)
        self.requests += 1
        self.ids_left = self.primer.ids_left

    def drop(self, r) -> None:
        """A request that primes leaves: its prompts leave the primer at once."""
        if not r.prime_keys:
            return
        self.primer.remove(r.prime_keys)
        for k in r.prime_keys:
            self._owner.pop(k, None)
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
        for key, logits, state in done:
            r, i = self._owner.pop(key)
            r.prime_out[i] = (logits, state)
            if len(r.prime_out) == len(r.ids):
                rows = np.repeat(np.arange(len(r.ids)), r.n)  # choice p*n + j -> prompt p
                out = [r.prime_out[i] for i in range(len(r.ids))]
                r.primed = (np.stack([o[0] for o in out])[rows],
                            np.stack([o[1] for o in out])[rows])
                r.prime_keys, r.prime_out = [], {}
                self.requests -= 1
        self.ids_left = primer.ids_left
