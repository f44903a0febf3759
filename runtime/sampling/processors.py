"""Logits processors: small steps that reshape logits before the final selector picks an id.

The shape is llama.cpp's sampler interface (`llama_sampler_i`): every processor has

    __call__(z)       z: float32 [rows, vocab], changed in place and returned (-inf = removed)
    accept(ids)       ids: int64 [rows], the ids the selector picked (for stateful processors)
    join(prompts)     rows join at the end of the batch; prompts: one int32 [n] array per row
    take(keep)        only rows `keep` (int array, ascending) stay

A processor owns whatever state it needs, per row (the repetition penalty its window of recent
ids); the stateless ones inherit the no-op hooks. Every parameter has a neutral value for which
the factory (sampling.build_processors) leaves the processor out of the chain.

Worked example (golden values in tests/runtime/test_processors.py): probabilities
{0.1, 0.2, 0.3, 0.4} under TopP(0.7) keep {0.3, 0.4}, renormalised {0.428571, 0.571429}.
"""

from __future__ import annotations

import math

import numpy as np

from charwright.runtime.sampling import rng

NEG_INF = np.float32(-np.inf)
TOP_P_SLACK = 2.0**-16  # relative: TopP's target is float32(p * (1 - TOP_P_SLACK)) x the total


def log_softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax in float64 (z: [..., vocab]); -inf entries stay -inf."""
    z = z.astype(np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


class LogitsProcessor:
    """Base class: a stateless processor needs only __call__ and describe."""

    name = "processor"
    stateful = False  # True: accept/join/take do something

    def __call__(self, z: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def accept(self, ids: np.ndarray) -> None:
        pass

    def join(self, prompts: list) -> None:
        pass

    def take(self, keep: np.ndarray) -> None:
        pass

    def row_state(self, i: int) -> dict:
        """Row i's state as plain JSON-able values (keys in Sampler.row_state's table)."""
        return {}

    def set_row_state(self, i: int, d: dict) -> None:
        """Row i takes the state `d` (keys it does not know are ignored; absent keys leave
        the row as join made it)."""

    def describe(self) -> str:
        return self.name


class RepetitionPenalty(LogitsProcessor):
    """CTRL's penalty (Keskar et al. 2019): for ids seen in a row's last `window` ids (its prompt
    included), positive logits are divided by `penalty` and negative ones multiplied.
    Neutral: 1.0.

    State per row: the window as a ring int64 [rows, window] and the counts of its ids int32
    [rows, vocab + 1]; an empty slot holds id `vocab`, counted in the extra column that is never
    read, so updates need no mask. All rows share one write position; a joining row's ring is
    rolled so that its oldest entry sits at that position, which is overwritten first.
    """

    name = "repetition-penalty"
    stateful = True

    def __init__(self, penalty: float, window: int, vocab_size: int):
        self.penalty, self.window, self.vocab_size = float(penalty), int(window), int(vocab_size)
        self._inv = np.float32(1.0 / self.penalty)
        self._pen = np.float32(self.penalty)
        self.counts = np.zeros((0, vocab_size + 1), np.int32)
        self.ring = np.zeros((0, self.window), np.int64)
        self.pos = 0
        self._base = np.zeros(0, np.int64)  # row * (vocab + 1): flat offsets into counts

    def __call__(self, z):
        seen = self.counts[:, :-1] > 0
        zs = z[seen]
        if zs.size:
            z[seen] = np.where(zs > 0, zs * self._inv, zs * self._pen)
        return z

    def accept(self, ids):
        pos = self.pos
        self.pos = pos + 1 if pos + 1 < self.window else 0
        if len(ids) == 1:  # one row: scalar updates, 2.8 us/char cheaper than fancy indexing
            t, counts, ring = int(ids[0]), self.counts[0], self.ring[0]
            counts[ring[pos]] -= 1
            ring[pos] = t
            counts[t] += 1
            return
        flat = self.counts.reshape(-1)
        # one id per row: no index repeats within one fancy update, so no ufunc.at needed
        flat[self._base + self.ring[:, pos]] -= 1
        self.ring[:, pos] = ids
        flat[self._base + ids] += 1

    def join(self, prompts):
        W, V = self.window, self.vocab_size
        ring = np.full((len(prompts), W), V, np.int64)
        counts = np.zeros((len(prompts), V + 1), np.int32)
        for i, p in enumerate(prompts):
            tail = np.asarray(p[-W:], np.int64)  # the prompt's last ids, oldest first
            ring[i, W - len(tail):] = tail
            counts[i] = np.bincount(ring[i], minlength=V + 1)
        # rolled so that the slot written next holds each row's oldest entry
        self.ring = np.concatenate([self.ring, np.roll(ring, self.pos, axis=1)])
        self.counts = np.concatenate([self.counts, counts])
        self._base = np.arange(len(self.ring), dtype=np.int64) * (V + 1)

    def take(self, keep):
        self.ring, self.counts = self.ring[keep], self.counts[keep]
        self._base = np.arange(len(self.ring), dtype=np.int64) * (self.vocab_size + 1)

    def row_state(self, i):
        """{"window": row i's last ids, oldest first (at most `window` of them)}."""
        ids = np.roll(self.ring[i], -self.pos)
        return {"window": ids[ids < self.vocab_size].tolist()}

    def set_row_state(self, i, d):
        """d["window"]: ids oldest first (its last `window` are kept), as if they had been
        the row's prompt or its last accepted ids."""
        if "window" not in d:
            return
        W, V = self.window, self.vocab_size
        tail = np.asarray(d["window"], np.int64).reshape(-1)[-W:]
        ring = np.full(W, V, np.int64)
        ring[W - len(tail):] = tail
        self.ring[i] = np.roll(ring, self.pos)
        self.counts[i] = np.bincount(ring, minlength=V + 1)

    def describe(self):
        return f"repetition-penalty({self.penalty:g}, last {self.window})"


class Temperature(LogitsProcessor):
    """z / T. Neutral: 1.0. (T = 0 is greedy decoding: the selector, not this processor.)"""

    name = "temperature"

    def __init__(self, temperature: float):
        self.t = float(temperature)
        self.inv = np.float32(1.0 / self.t)

    def __call__(self, z):
        z *= self.inv
        return z

    def describe(self):
        return f"temperature({self.t:g})"


class TopK(LogitsProcessor):
    """Keeps the k highest logits of each row (ties with the k-th are kept too). Neutral: off."""

    name = "top-k"

    def __init__(self, k: int):
        self.k = int(k)

    def __call__(self, z):
        V = z.shape[1]
        if self.k >= V:
            return z
        kth = np.partition(z, V - self.k, axis=1)[:, V - self.k : V - self.k + 1]
        z[z < kth] = NEG_INF
        return z

    def describe(self):
        return f"top-k({self.k})"


class TopP(LogitsProcessor):
    """Nucleus sampling (Holtzman et al. 2019): the smallest set of highest-probability ids whose
    mass reaches p; the id that crosses p is kept (ties with the last kept logit are kept too).
    "Reaches" is c_j >= float32(p * (1 - 2**-16)) * c_last on the float32 running sums c of the
    portable weights (runtime/c/SAMPLING.md, step 5). Neutral: 1.0. One sort finds the
    threshold logit; one masked assignment applies it."""

    name = "top-p"

    def __init__(self, p: float):
        self.p = float(p)
        # float32(p * (1 - 2**-16)), as C computes it: a mass short of p by at most 2**-16
        # (1.5e-5) relative counts as reaching it, so a nucleus whose exact mass is p (0.3 + 0.4
        # of {0.1, 0.2, 0.3, 0.4} at p 0.7, summed as 0.6999987) is not grown by one id. The
        # slack stays 4x below the gap in llama.cpp's 10,000-id case (ids 4473..9999 hold
        # 0.79995 < 0.8: top-p 0.8 must keep 4472 too); 2**-10 cut 9 ids there (issue 24).
        self._target = np.float32(self.p * (1 - TOP_P_SLACK))

    def __call__(self, z):
        # the mass of each id is its rng weight (a table, not a library exp: bit-exact in every
        # port), summed in float32 from the highest logit down (runtime/c/SAMPLING.md)
        if z.shape[0] == 1:  # one row: 1-D sort + searchsorted, 2.9 us/char cheaper (measured)
            row = z[0]
            zs = np.sort(row)[::-1]
            d = zs[0] - zs
            d *= np.float32(rng.SCALE)
            cum = np.add.accumulate(rng.exp_weights(d))
            row[row < zs[int(cum.searchsorted(self._target * cum[-1]))]] = NEG_INF
            return z
        zs = np.sort(z, axis=1)[:, ::-1]  # descending
        cum = np.add.accumulate(rng.weights(zs), axis=1)
        # per row, the first index whose cumulative mass reaches p (target < 1: always found)
        k = (cum >= self._target * cum[:, -1:]).argmax(axis=1)
        z[z < zs[np.arange(len(k)), k][:, None]] = NEG_INF
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

    def __call__(self, z):
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
        self._target = self.p * (1 - 1e-6)  # mass equal to p up to rounding reaches it (TopP)

    def __call__(self, z):
        logp = log_softmax(z)
        p = np.exp(logp)
        ent = -np.nansum(p * np.where(np.isfinite(logp), logp, 0), axis=1, keepdims=True)
        order = np.argsort(np.abs(-logp - ent), axis=1, kind="stable")  # ties: by id, as sampler.h
        ps = np.take_along_axis(p, order, axis=1)
        cum = np.cumsum(ps, axis=1)
        drop = (cum - ps) >= self._target
        drop[:, 0] = False
        zs = np.take_along_axis(z, order, axis=1)
        np.put_along_axis(z, order, np.where(drop, NEG_INF, zs), axis=1)
        return z

    def describe(self):
        return f"typical({self.p:g})"
