"""Calibration data for full-int8 quantization: real (token, state) pairs.

Recurrent state ranges grow over long free-running generations, beyond what teacher forcing over
short windows shows (mlcommons/inference#689), so the pairs come from both:
- teacher forcing: the float model stepped over corpus text, several streams at once;
- free running: rollouts sampled from the model itself at temperature 1.
The float model here is the numpy reference step built from the run's weights.
"""

from __future__ import annotations

import numpy as np


def gather_pairs(step, text_ids: np.ndarray, streams: int = 4, steps: int = 400,
                 rollouts: int = 4, rollout_steps: int = 400, keep: int = 400,
                 seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Returns `keep` pairs (token int32 [1], state float32 [1, S]) drawn from both sources."""
    rng = np.random.default_rng(seed)
    pairs = []
    n = len(text_ids)
    span = min(steps, max(1, n // max(streams, 1) - 1))
    starts = rng.integers(0, max(1, n - span), size=streams)
    state = step.initial_state(streams)
    for t in range(span):
        tok = text_ids[starts + t].astype(np.int32)
        pairs += [(tok[b : b + 1], state[b : b + 1]) for b in range(streams)]
        _, state = step.step(tok, state)
    state = step.initial_state(rollouts)
    tok = text_ids[rng.integers(0, n, size=rollouts)].astype(np.int32)
    for _ in range(rollout_steps):
        pairs += [(tok[b : b + 1].copy(), state[b : b + 1]) for b in range(rollouts)]
        logits, state = step.step(tok, state)
        z = logits.astype(np.float64)
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        u = rng.random((rollouts, 1))
        tok = np.minimum((p.cumsum(axis=1) < u).sum(axis=1), p.shape[1] - 1).astype(np.int32)
    idx = rng.choice(len(pairs), size=min(keep, len(pairs)), replace=False)
    return [(pairs[i][0].copy(), pairs[i][1].copy()) for i in sorted(idx)]
