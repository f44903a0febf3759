"""Batch invariance of a model file, measured: does a row get the same logits and new state,
bit for bit, alone and in a batch beside other rows?

Export measures it for every file it writes (files[].batch_invariant in the manifest) and
readers default to an invariant file (runtime/bundle/reader.py Bundle.find): a seed then fixes
the text whatever the batch a row runs in (generate --num-samples, the server's running batch).

The measurement: `targets` rows (a token and a state reached by running the model on random
tokens from the zero state; one row keeps the zero state) are stepped alone, then each is placed
at random positions in batches of every size in `batches`, beside other random rows. Any bit of
difference in logits or new_state makes the file not invariant. This holds on the CPU that ran
it: a kernel that blocks by batch on another CPU (BLAS) can differ there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BATCHES = (1, 2, 3, 8, 17, 64, 256)


@dataclass(frozen=True)
class Invariance:
    """invariant: every row identical in every batch; max_abs: the largest |difference| of a
    logit or state value seen; batch: the first batch size where a row differed (None)."""

    invariant: bool
    max_abs: float
    batch: int | None


def sample_rows(backend, n: int, rng: np.random.Generator, warm: int = 12):
    """n rows: tokens int32 [n] and states float32 [n, S] the model itself reaches (row 0 keeps
    the zero state)."""
    V = backend.vocab_size
    state = backend.initial_state(n)
    for _ in range(int(rng.integers(1, warm + 1))):
        _, state = backend.step(rng.integers(0, V, n).astype(np.int32), state)
    state = np.array(state, np.float32)
    state[0] = 0.0
    return rng.integers(0, V, n).astype(np.int32), state


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """a and b identical bit for bit (NaN == NaN, -0.0 != 0.0)."""
    a, b = np.ascontiguousarray(a, np.float32), np.ascontiguousarray(b, np.float32)
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


def measure(backend, batches=BATCHES, targets: int = 4, seed: int = 0) -> Invariance:
    """Steps `targets` rows alone and inside batches of each size (at a random position beside
    random other rows) on `backend` (a StepBackend); see the module docstring."""
    rng = np.random.default_rng(seed)
    tokens, states = sample_rows(backend, targets, rng)
    alone = [tuple(np.array(a, copy=True) for a in backend.step(tokens[i:i + 1],
                                                               states[i:i + 1].copy()))
             for i in range(targets)]  # copies: a backend may hand out views it reuses
    worst, first = 0.0, None
    for b in batches:
        if b < 1:
            continue
        others_t, others_s = sample_rows(backend, max(b, 1), rng)
        for i in range(targets):
            t, s = others_t.copy(), others_s.copy()
            at = int(rng.integers(0, b))
            t[at], s[at] = tokens[i], states[i]
            logits, new_state = backend.step(t, s)
            for got, want in ((logits[at], alone[i][0][0]), (new_state[at], alone[i][1][0])):
                if not same_bits(got, want):
                    diff = np.abs(np.asarray(got, np.float64) - np.asarray(want, np.float64))
                    worst = max(worst, float(np.nan_to_num(diff, nan=np.inf).max()))
                    first = b if first is None else first
    return Invariance(first is None, worst, first)


def measure_file(bundle, entry, threads: int = 1, **kw) -> Invariance:
    """measure() on one file entry of a loaded bundle, opened with its format's backend."""
    from charwright.runtime.backends import open_backend

    return measure(open_backend(bundle, entry, threads=threads), **kw)
