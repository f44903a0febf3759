"""Selectors: the last link of the sampling chain, turning logits into one id per row.

    __call__(z) -> ids int64 [rows]     z: float32 [rows, vocab] (may be changed in place)
    join(seed, row_ids)                 rows join at the end of the batch
    take(keep)                          only rows `keep` stay
    row_state(i) / set_row_state(i, d)  row i's coins used so far (Sampler.row_state's "coins")

Categorical sampling is inverse-CDF sampling with one coin per row and step, specified so that
any language reproduces it bit for bit (runtime/sampling/rng.py, runtime/c/SAMPLING.md): a row's coins
are a splitmix64 stream keyed by (seed, row_id), so its text depends only on its seed and row
id, never on the batch it runs in or on when it joined; -inf logits are never drawn.
"""

from __future__ import annotations

import numpy as np

from charwright.runtime.sampling import rng


class Greedy:
    name = "greedy"

    def __call__(self, z: np.ndarray) -> np.ndarray:
        return z.argmax(axis=1)

    def join(self, seed: int, row_ids) -> None:
        pass

    def take(self, keep) -> None:
        pass

    def row_state(self, i: int) -> dict:
        return {}  # greedy draws no coins

    def set_row_state(self, i: int, d: dict) -> None:
        pass

    def describe(self) -> str:
        return "greedy"


class Categorical:
    """Draws from softmax(z), row by row, with one coin per row and step (rng.pick).

    Row i's coins are its splitmix64 stream keyed by (seed, row_id) (rng.row_key), so its text
    depends only on (seed, row_id), never on its batch or on when it joined, and is the same in
    every port that implements runtime/c/SAMPLING.md (the C runtime does). Coins are made
    BLOCK at a time: all rows share one read clock `pos` into their blocks [rows, BLOCK]; a row
    that joins at clock c fills only its block's columns c.. and counts the draws it made.
    """

    name = "categorical"
    BLOCK = 256  # coins made at once per row (4 bytes each)

    def __init__(self, vocab_size: int):
        self.vocab = int(vocab_size)
        self.keys = np.zeros(0, np.uint64)  # per row, rng.row_key(seed, row_id)
        self.drawn = np.zeros(0, np.uint64)  # per row, draws made into blocks so far
        self.seeds: list[int] = []
        self.coins = np.zeros((0, self.BLOCK), np.float32)
        self.pos = self.BLOCK  # the block column every row reads next (BLOCK: refill first)
        self._draw_row = rng.RowDraw(self.vocab)  # the one-row path, its buffers kept

    def join(self, seed: int, row_ids) -> None:
        keys = np.array([rng.row_key(seed, r) for r in row_ids], np.uint64)
        n = self.BLOCK - self.pos
        block = np.zeros((len(keys), self.BLOCK), np.float32)
        if n:
            block[:, self.pos:] = rng.uniforms(keys, np.zeros(len(keys), np.uint64), n)
        self.keys = np.concatenate([self.keys, keys])
        self.drawn = np.concatenate([self.drawn, np.full(len(keys), n, np.uint64)])
        self.seeds += [int(seed)] * len(keys)
        self.coins = np.concatenate([self.coins, block])

    def take(self, keep) -> None:
        self.keys, self.drawn, self.coins = self.keys[keep], self.drawn[keep], self.coins[keep]
        self.seeds = [self.seeds[i] for i in keep]

    def row_state(self, i: int) -> dict:
        """{"coins": the draws row i has used so far} (its next draw is number "coins")."""
        return {"coins": int(self.drawn[i]) - (self.BLOCK - self.pos)}

    def set_row_state(self, i: int, d: dict) -> None:
        """d["coins"]: row i's next draw is number d["coins"] of its stream; d["key"] (an
        rng.row_key) replaces its key. The row's unread block columns are made anew."""
        if "key" in d:
            self.keys[i] = np.uint64(d["key"])
        if "coins" not in d and "key" not in d:
            return
        used = int(d["coins"]) if "coins" in d else self.row_state(i)["coins"]
        n = self.BLOCK - self.pos
        if n:
            self.coins[i, self.pos:] = rng.uniforms(self.keys[i:i + 1], [used], n)[0]
        self.drawn[i] = np.uint64(used + n)

    def _refill(self) -> None:
        self.coins = rng.uniforms(self.keys, self.drawn, self.BLOCK)
        self.drawn += np.uint64(self.BLOCK)
        self.pos = 0

    def __call__(self, z: np.ndarray) -> np.ndarray:
        if self.pos == self.BLOCK:
            self._refill()
        u = self.coins[:, self.pos]
        self.pos += 1
        if z.shape[0] != 1:
            return rng.pick(z, u)
        return np.array([self._draw_row(z[0], u[0])], np.int64)

    def describe(self) -> str:
        seeds = sorted(set(self.seeds))
        return f"categorical(seed={seeds[0] if len(seeds) == 1 else seeds})"
