"""Selectors: the last link of the sampling chain, turning logits into one id per row.

Categorical sampling uses the Gumbel-max trick: argmax(z + G), G ~ Gumbel(0, 1) i.i.d., is an
exact draw from softmax(z), and -inf logits are never drawn. The noise is drawn in blocks from one
np.random.Generator per row, seeded from (seed, row), so a row's text does not depend on the batch
it runs in, and a character costs an add and an argmax.
"""

from __future__ import annotations

import numpy as np


class Greedy:
    name = "greedy"

    def __call__(self, z: np.ndarray) -> np.ndarray:
        return z.argmax(axis=1)

    def pick1(self, z: np.ndarray) -> int:
        """The id for a batch of one row, as a Python int (the single-row fast path)."""
        return int(z.argmax())

    def take(self, keep) -> None:
        pass

    def describe(self) -> str:
        return "greedy"


class Categorical:
    """Draws from softmax(z) row by row. rows: how many rows; seed: int."""

    name = "categorical"
    BLOCK = 256

    def __init__(self, rows: int, vocab: int, seed: int, row_ids=None):
        self.seed, self.vocab = int(seed), vocab
        ids = range(rows) if row_ids is None else row_ids
        self.rngs = [np.random.default_rng([self.seed, int(r)]) for r in ids]
        self._refill()

    def _gumbel(self, rng) -> np.ndarray:
        # G = -log(-log(U)), U ~ uniform float32: 5x faster than rng.gumbel + astype; U = 0
        # (p = 2**-24 per entry) gives -inf, an id never drawn that time
        u = rng.random((self.BLOCK, self.vocab), dtype=np.float32)
        with np.errstate(divide="ignore"):
            np.log(u, out=u)
            np.negative(u, out=u)
            np.log(u, out=u)
        return np.negative(u, out=u)

    def _refill(self):
        self.noise = [self._gumbel(rng) for rng in self.rngs]
        self.pos = 0

    def __call__(self, z: np.ndarray) -> np.ndarray:
        if self.pos == self.BLOCK:
            self._refill()
        if len(self.noise) == 1:
            z += self.noise[0][self.pos]
        else:
            z += np.stack([n[self.pos] for n in self.noise])
        self.pos += 1
        return z.argmax(axis=1)

    def pick1(self, z: np.ndarray) -> int:
        """The id for a batch of one row, as a Python int (the single-row fast path)."""
        if self.pos == self.BLOCK:
            self._refill()
        row = z[0]  # 1-D operations cost about half of their [1, V] forms
        row += self.noise[0][self.pos]
        self.pos += 1
        return int(row.argmax())

    def take(self, keep) -> None:
        """Keeps rows `keep` (finished rows leave the batch; the others keep their streams)."""
        self.rngs = [self.rngs[i] for i in keep]
        self.noise = [self.noise[i] for i in keep]

    def describe(self) -> str:
        return f"categorical(seed={self.seed})"
