"""Selectors: the last link of the sampling chain, turning logits into one id per row.

    __call__(z) -> ids int64 [rows]     z: float32 [rows, vocab] (may be changed in place)
    join(seed, row_ids)                 rows join at the end of the batch
    take(keep)                          only rows `keep` stay

Categorical sampling uses the Gumbel-max trick: argmax(z + G), G ~ Gumbel(0, 1) i.i.d., is an
exact draw from softmax(z), and -inf logits are never drawn. Each row owns a generator seeded
from (seed, row_id) and a block of precomputed noise with its own read position, so a row's text
depends only on its seed and row id, never on the batch it runs in or on when it joined.
"""

from __future__ import annotations

import numpy as np


class Greedy:
    name = "greedy"

    def __call__(self, z: np.ndarray) -> np.ndarray:
        return z.argmax(axis=1)

    def join(self, seed: int, row_ids) -> None:
        pass

    def take(self, keep) -> None:
        pass

    def describe(self) -> str:
        return "greedy"


class Categorical:
    """Draws from softmax(z), row by row, from per-row seeded noise.

    All rows share one read clock `pos` into their noise blocks [rows, length, vocab]; a row that
    joins at clock c fills only its block's rows c.. from its generator. numpy's generators
    give the same stream however the draws are chunked (random(a) then random(b) equals
    random(a + b)), so a row's k-th draw is the same whenever it joined and whatever the block
    length: its text depends only on (seed, row_id). The block length is chosen at each refill
    so that the noise stays within NOISE_BYTES however many rows there are (a row costs
    4 x vocab bytes per draw held).
    """

    name = "categorical"
    BLOCK = 256  # draws of noise made at once per row, at most
    NOISE_BYTES = 16 << 20

    def __init__(self, vocab_size: int):
        self.vocab = int(vocab_size)
        self.rngs: list[np.random.Generator] = []
        self.seeds: list[int] = []
        self.noise = np.zeros((0, 0, self.vocab), np.float32)  # sized at the first draw
        self.pos = 0  # the block row every row reads next

    def _gumbel(self, rng: np.random.Generator, n: int) -> np.ndarray:
        # G = -log(-log(U)), U ~ uniform float32: 5x faster than rng.gumbel + astype. U = 0
        # (p = 2**-24 per entry) is raised to the smallest float32: G = -inf there would, for a
        # row whose only candidate left drew it, make argmax return a removed id
        u = rng.random((n, self.vocab), dtype=np.float32)
        np.maximum(u, np.finfo(np.float32).tiny, out=u)
        with np.errstate(divide="ignore"):
            np.log(u, out=u)
            np.negative(u, out=u)
            np.log(u, out=u)
        return np.negative(u, out=u)

    def join(self, seed: int, row_ids) -> None:
        length = self.noise.shape[1]
        block = np.zeros((len(row_ids), length, self.vocab), np.float32)
        for i, r in enumerate(row_ids):
            rng = np.random.default_rng([int(seed), int(r)])
            block[i, self.pos:] = self._gumbel(rng, length - self.pos)
            self.rngs.append(rng)
            self.seeds.append(int(seed))
        self.noise = np.concatenate([self.noise, block])

    def take(self, keep) -> None:
        self.rngs = [self.rngs[i] for i in keep]
        self.seeds = [self.seeds[i] for i in keep]
        self.noise = self.noise[keep]

    def _refill(self) -> None:
        # sized as if at least 16 rows were here, so that rows joining mid-block (each drawing
        # the rest of the block) cost at most NOISE_BYTES / 16 apiece
        rows = len(self.rngs)
        length = max(1, min(self.BLOCK, self.NOISE_BYTES // (4 * self.vocab * max(rows, 16))))
        if self.noise.shape[1] != length:
            self.noise = np.empty((rows, length, self.vocab), np.float32)
        for i, rng in enumerate(self.rngs):
            self.noise[i] = self._gumbel(rng, length)
        self.pos = 0

    def __call__(self, z: np.ndarray) -> np.ndarray:
        if self.pos == self.noise.shape[1]:
            self._refill()
        z += self.noise[:, self.pos]
        self.pos += 1
        return z.argmax(axis=1)

    def describe(self) -> str:
        seeds = sorted(set(self.seeds))
        return f"categorical(seed={seeds[0] if len(seeds) == 1 else seeds})"
