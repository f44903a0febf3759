"""The portable sampling core: a counter-based RNG and the categorical draw, bit for bit the same
in Python (numpy) and in the C runtime (runtime/c/runtime.c). Specified in runtime/c/SAMPLING.md.

    key = row_key(seed, row)          mix64(mix64(seed + GOLDEN) ^ row): one key per row
    u   = uniforms(keys, start, n)    float32 [rows, n]: the row's draws start..start+n-1
    w   = exp_weights(d)              float32 weights of d = (max - z) * 4096, by table
    ids = pick(z, u)                  one id per row from softmax(z) with the coins u
    i = RowDraw(V)(z_row, u)          the same for one row (its buffers kept between draws)

The k-th draw of a row is splitmix64's k-th output for the state `key` (Steele et al. 2014,
https://prng.di.unimi.it/splitmix64.c): x = mix64(key + (k + 1) * 0x9E3779B97F4A7C15), and its
top 24 bits make u = (x >> 40) * 2**-24 in [0, 1), exact in float32. Counter-based: a row's k-th
draw depends only on (seed, row, k), never on its batch or on when it joined.

Why this is bit-exact across languages: every decision is made from integer arithmetic, IEEE
float32 +, -, x (correctly rounded everywhere, with no fused multiply-add: the C build passes
-ffp-contract=off), comparisons, and a table. The one transcendental, exp, is a table of
correctly rounded float32 constants (EXP_HI, EXP_LO) that every port copies rather than computes:
numpy's own float32 exp differs between its AVX2 and AVX-512 code paths, and C libraries differ
in the last bit. The weight of a logit z_i is exp(-(d + 1/2) / 4096) with d = floor((max - z_i) *
4096), i.e. its softmax weight to within 1.2e-4 relative (a KL of about 1e-8 nats), and 0 below
max - 32 (e^-32 = 1.3e-14). Sums run sequentially in index order, in float32.
"""

from __future__ import annotations

import functools
import math

import numpy as np

GOLDEN = 0x9E3779B97F4A7C15
M1, M2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
MASK = (1 << 64) - 1
SCALE = 4096  # weights are tabulated in steps of 1/4096 of a logit
CUT = 1 << 17  # (max - z) * 4096 >= CUT (z more than 32 below the max): weight 0
_U64 = np.uint64


def mix64(z: int) -> int:
    """splitmix64's finalizer on a Python int (0 <= z < 2**64)."""
    z = ((z ^ (z >> 30)) * M1) & MASK
    z = ((z ^ (z >> 27)) * M2) & MASK
    return z ^ (z >> 31)


def row_key(seed: int, row: int) -> int:
    """The 64-bit key of row `row` under `seed`: mix64(mix64(seed + GOLDEN) ^ row), mod 2**64
    (the seed is hashed first: seed 0 is fine)."""
    return mix64(mix64((int(seed) + GOLDEN) & MASK) ^ (int(row) & MASK))


def _mix64(z: np.ndarray) -> np.ndarray:
    z = (z ^ (z >> _U64(30))) * _U64(M1)
    z = (z ^ (z >> _U64(27))) * _U64(M2)
    return z ^ (z >> _U64(31))


def next_u64(keys, start, n: int) -> np.ndarray:
    """uint64 [rows, n]: draws start..start+n-1 of each row (keys, start: one per row)."""
    keys = np.asarray(keys, np.uint64).reshape(-1, 1)
    start = np.asarray(start, np.uint64).reshape(-1, 1)
    ctr = start + _U64(1) + np.arange(n, dtype=np.uint64)  # uint64 arithmetic wraps mod 2**64
    return _mix64(keys + ctr * _U64(GOLDEN))


def uniforms(keys, start, n: int) -> np.ndarray:
    """float32 [rows, n] in [0, 1): the top 24 bits of each draw times 2**-24 (exact)."""
    return (next_u64(keys, start, n) >> _U64(40)).astype(np.float32) * np.float32(2.0**-24)


def _nearest_f32(x: float) -> np.float32:
    return np.float32(x)  # float64 -> float32, round to nearest (tests check against Decimal)


@functools.lru_cache(maxsize=None)
def exp_tables() -> tuple[np.ndarray, np.ndarray]:
    """EXP_HI float32 [512] = exp(-h / 16); EXP_LO float32 [256] = exp(-(l + 0.5) / 4096);
    each the float32 nearest to the exact value (tests/runtime/test_rng.py proves it with
    Decimal arithmetic). The C runtime gets them as hex literals in model.h."""
    hi = np.array([_nearest_f32(math.exp(-h / 16)) for h in range(512)], np.float32)
    lo = np.array([_nearest_f32(math.exp(-(l + 0.5) / 4096)) for l in range(256)], np.float32)
    return hi, lo


@functools.lru_cache(maxsize=None)
def exp_table() -> np.ndarray:
    """float32 [CUT + 1]: EXP_HI[q >> 8] * EXP_LO[q & 255] (one float32 product, as C computes
    it), and 0 at index CUT. One gather instead of five operations per draw in numpy."""
    hi, lo = exp_tables()
    t = np.empty(CUT + 1, np.float32)
    np.multiply(hi[:, None], lo[None, :], out=t[:CUT].reshape(512, 256))
    t[CUT] = 0.0
    return t


def exp_weights(d: np.ndarray) -> np.ndarray:
    """float32 weights of d = (max - z) * 4096 (float32, any shape; NaN, inf and >= CUT: 0)."""
    np.fmin(d, CUT, out=d)
    return exp_table()[d.astype(np.intp)]


def weights(z: np.ndarray) -> np.ndarray:
    """float32 [rows, V] unnormalised softmax weights of z float32 [rows, V]."""
    d = z.max(axis=1, keepdims=True) - z
    d *= np.float32(SCALE)
    return exp_weights(d)


def _fallback(z_row: np.ndarray, w_row: np.ndarray) -> int:
    # the coin reached the total (cannot happen for total > 0 in IEEE float32, kept as in
    # run.c): the last id with a weight, or the argmax when no id has one
    nz = np.flatnonzero(w_row > 0)
    return int(nz[-1]) if len(nz) else int(z_row.argmax())


class RowDraw:
    """pick() for one row, with its buffers made once (the common case, and the fast path:
    1-D arrays and searchsorted; measured -1.5 us/char against fresh buffers).

        draw = RowDraw(V)
        i = draw(z_row, u)        z_row: float32 [V] (-inf = removed); u: float32 in [0, 1)
    """

    def __init__(self, vocab_size: int):
        V = int(vocab_size)
        self._d, self._w, self._c = (np.empty(V, np.float32) for _ in range(3))
        self._idx = np.empty(V, np.intp)
        self._scale = np.float32(SCALE)
        self._table = exp_table()

    def __call__(self, row: np.ndarray, u) -> int:
        d, idx, w = self._d, self._idx, self._w
        np.subtract(row.max(), row, out=d)  # exp_weights, into the buffers
        d *= self._scale
        np.fmin(d, CUT, out=d)
        idx[...] = d
        self._table.take(idx, out=w)
        c = np.add.accumulate(w, out=self._c)
        i = int(c.searchsorted(u * c[-1], "right"))
        return i if i < len(c) else _fallback(row, w)


def pick(z: np.ndarray, u: np.ndarray) -> np.ndarray:
    """int64 [rows]: for each row, the first id i with c_i > u * c_last, where c is the running
    float32 sum of weights(z) in index order (inverse-CDF sampling with one coin per row).

    z: float32 [rows, V] (-inf = removed); u: float32 [rows] in [0, 1)."""
    if z.shape[0] == 1:
        return np.array([RowDraw(z.shape[1])(z[0], u[0])], np.int64)
    w = weights(z)
    c = np.add.accumulate(w, axis=1)
    t = u * c[:, -1]
    hit = c > t[:, None]
    ids = hit.argmax(axis=1)
    for r in np.flatnonzero(~hit[:, -1]):
        ids[r] = _fallback(z[r], w[r])
    return ids
