"""Logits processors: small steps that reshape logits before the final selector picks an id.

Each processor takes z: float32 [batch, vocab] (the backend's fresh output, owned by the loop)
and the loop's History, changes z in place and returns it: no allocation per character where it
can be avoided. Removed candidates are set to -inf. Every parameter has a neutral value for which
the factory (sampling.build_chain) leaves the processor out of the chain.

Worked example (golden values in tests/runtime/test_processors.py): probabilities
{0.1, 0.2, 0.3, 0.4} under TopP(0.7) keep {0.3, 0.4}, renormalised {0.428571, 0.571429}.
"""

from __future__ import annotations

import math

import numpy as np

NEG_INF = np.float32(-np.inf)


class History:
    """Per-row counts of the ids in the last `window` steps (for the repetition penalty).

    counts: int32 [batch, vocab]; ring: int32 [batch, window] (-1 = empty).
    """

    def __init__(self, batch: int, vocab: int, window: int, prompts=None):
        self.window = window
        self.counts = np.zeros((batch, vocab), np.int32)
        self.ring = np.full((batch, max(window, 1)), -1, np.int32)
        self.pos = 0
        self._rows = np.arange(batch)
        for i, p in enumerate(prompts or ()):
            # slots are overwritten from 0 upwards: the prompt's last ids go at the end, oldest
            # first, so they leave the window only after the empty slots have filled
            tail = np.asarray(p[-window:], np.int32)
            if len(tail):
                self.ring[i, window - len(tail) :] = tail
                np.add.at(self.counts[i], tail, 1)

    def push(self, ids: np.ndarray) -> None:
        """Records one id per row (ids: int [batch])."""
        if self.window <= 0:
            return
        if len(self._rows) == 1:  # scalar bookkeeping for one row: no ufunc.at overhead
            old, new = int(self.ring[0, self.pos]), int(ids[0])
            if old >= 0:
                self.counts[0, old] -= 1
            self.ring[0, self.pos] = new
            self.counts[0, new] += 1
            self.pos = (self.pos + 1) % self.window
            return
        old = self.ring[:, self.pos]
        live = old >= 0
        if live.any():
            np.subtract.at(self.counts, (self._rows[live], old[live]), 1)
        self.ring[:, self.pos] = ids
        np.add.at(self.counts, (self._rows, ids), 1)
        self.pos = (self.pos + 1) % self.window

    def take(self, keep: np.ndarray) -> None:
        """Keeps only rows `keep` (when finished rows leave the batch)."""
        self.counts = self.counts[keep]
        self.ring = self.ring[keep]
        self._rows = np.arange(len(keep))


class LogitsProcessor:
    name = "processor"
    needs_history = False

    def __call__(self, z: np.ndarray, history: History | None) -> np.ndarray:
        raise NotImplementedError

    def describe(self) -> str:
        return self.name


class RepetitionPenalty(LogitsProcessor):
    """CTRL's penalty (Keskar et al. 2019): for ids seen in the last `window` steps, positive
    logits are divided by `penalty` and negative ones multiplied. Neutral: 1.0."""

    name = "repetition-penalty"
    needs_history = True

    def __init__(self, penalty: float, window: int = 64):
        self.penalty, self.window = float(penalty), int(window)
        self._inv = np.float32(1.0 / self.penalty)

    def __call__(self, z, history):
        seen = history.counts > 0
        zs = z[seen]
        if zs.size:
            z[seen] = np.where(zs > 0, zs * self._inv, zs * self.penalty)
        return z

    def describe(self):
        return f"repetition-penalty({self.penalty:g}, last {self.window})"


class Temperature(LogitsProcessor):
    """z / T. Neutral: 1.0. (Greedy decoding is a selector, not T = 0.)"""

    name = "temperature"

    def __init__(self, temperature: float):
        self.t = float(temperature)
        self.inv = np.float32(1.0 / self.t)

    def __call__(self, z, history):
        z *= self.inv
        return z

    def describe(self):
        return f"temperature({self.t:g})"


class TopK(LogitsProcessor):
    """Keeps the k highest logits of each row (ties with the k-th are kept too). Neutral: off."""

    name = "top-k"

    def __init__(self, k: int):
        self.k = int(k)

    def __call__(self, z, history):
        V = z.shape[1]
        if self.k >= V:
            return z
        kth = np.partition(z, V - self.k, axis=1)[:, V - self.k : V - self.k + 1]
        z[z < kth] = NEG_INF
        return z

    def describe(self):
        return f"top-k({self.k})"


def log_softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax in float64 (z: [..., vocab]); -inf entries stay -inf."""
    z = z.astype(np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def _softmax_rows(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


class TopP(LogitsProcessor):
    """Nucleus sampling (Holtzman et al. 2019): the smallest set of highest-probability ids whose
    mass reaches p; the id that crosses p is kept (ties with the last kept logit are kept too).
    Neutral: 1.0. One sort finds the threshold logit; one masked assignment applies it."""

    name = "top-p"

    def __init__(self, p: float):
        self.p = float(p)
        # relative slack so that a cumulative mass equal to p up to rounding counts as reaching it
        self._target = np.float32(self.p * (1 - 1e-6))

    def __call__(self, z, history):
        if z.shape[0] == 1:  # the single-row hot path, in 1-D operations
            row = z[0]
            zs = np.sort(row)[::-1]
            cum = np.add.accumulate(np.exp(zs - zs[0]))
            # first index whose cumulative mass reaches p = how many ids stay below it
            k = min(int(cum.searchsorted(self._target * cum[-1])), len(zs) - 1)
            row[row < zs[k]] = NEG_INF
            return z
        zs = np.sort(z, axis=1)[:, ::-1]  # descending
        cum = np.cumsum(np.exp(zs - zs[:, :1]), axis=1)
        k = np.minimum((cum < self._target * cum[:, -1:]).sum(axis=1), z.shape[1] - 1)
        thr = zs[np.arange(z.shape[0]), k][:, None]
        z[z < thr] = NEG_INF
        return z

    def describe(self):
        return f"top-p({self.p:g})"


class MinP(LogitsProcessor):
    """Keeps ids whose probability is at least p x the top probability, i.e. whose logit is at
    least max + log(p). Neutral: 0."""

    name = "min-p"

    def __init__(self, p: float):
        self.p = float(p)
        self.log_p = np.float32(math.log(self.p))

    def __call__(self, z, history):
        if z.shape[0] == 1:
            row = z[0]
            row[row < row.max() + self.log_p] = NEG_INF
            return z
        z[z < z.max(axis=1, keepdims=True) + self.log_p] = NEG_INF
        return z

    def describe(self):
        return f"min-p({self.p:g})"


class Typical(LogitsProcessor):
    """Locally typical sampling (Meister et al. 2022): ids ordered by how close their surprisal is
    to the distribution's entropy, kept until their mass reaches p. Neutral: 1.0."""

    name = "typical"

    def __init__(self, p: float):
        self.p = float(p)

    def __call__(self, z, history):
        logp = log_softmax(z)
        p = np.exp(logp)
        ent = -np.nansum(p * np.where(np.isfinite(logp), logp, 0), axis=1, keepdims=True)
        order = np.argsort(np.abs(-logp - ent), axis=1)
        ps = np.take_along_axis(p, order, axis=1)
        cum = np.cumsum(ps, axis=1)
        drop = (cum - ps) >= self.p
        drop[:, 0] = False
        zs = np.take_along_axis(z, order, axis=1)
        np.put_along_axis(z, order, np.where(drop, NEG_INF, zs), axis=1)
        return z

    def describe(self):
        return f"typical({self.p:g})"


class ProcessorChain(LogitsProcessor):
    """Applies processors in order; itself a processor."""

    name = "chain"

    def __init__(self, processors):
        self.processors = tuple(processors)
        self.needs_history = any(p.needs_history for p in self.processors)

    def __call__(self, z, history):
        for p in self.processors:
            z = p(z, history)
        return z

    def compiled(self):
        """The cheapest callable equal to this chain: the processor itself when there is one."""
        return self.processors[0] if len(self.processors) == 1 else self

    def __len__(self):
        return len(self.processors)

    def describe(self):
        return " -> ".join(p.describe() for p in self.processors)
