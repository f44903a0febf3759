"""Prompts -> (logits, state): running prompts through the step graph before their rows sample.

    prime(backend, prompts)      every prompt at once: prompts of one length as one batch
    by_length(prompts)           the grouping prime() uses (Model's rows keep its order)
    Primer(backend)              prime() in pieces, for a server

`Primer` makes prompts rows of a second batch that advances a bounded time per call, so priming
a long prompt can be interleaved with the steps of the running batch (chunked prefill, as vLLM's
scheduler does with a token budget per iteration) and stopped when its client leaves.
"""

from __future__ import annotations

import time

import numpy as np

from charwright.runtime.errors import ConfigError


def by_length(prompts: list) -> list[list[int]]:
    """The prompts' indices grouped by length, shortest first (in order within a group): each
    group primes as one batch."""
    groups: dict[int, list[int]] = {}
    for i, p in enumerate(prompts):
        groups.setdefault(len(p), []).append(i)
    return [groups[n] for n in sorted(groups)]


def prime(backend, prompts: list[np.ndarray]):
    """Runs every prompt through the step graph; returns (logits [B, V], state [B, S]) in the
    prompts' order. Prompts of equal length run as one batch (by_length)."""
    if min(len(p) for p in prompts) < 1:
        raise ConfigError("a prompt must hold at least one id")
    groups = by_length(prompts)
    outs = [_prime_batch(backend, [prompts[i] for i in g]) for g in groups]
    if len(outs) == 1:
        return outs[0]
    order = np.argsort(np.concatenate(groups), kind="stable")  # back to the prompts' order
    return np.concatenate([o[0] for o in outs])[order], np.concatenate([o[1] for o in outs])[order]


def _prime_batch(backend, prompts: list[np.ndarray]):
    """Prompts of one length, stepped together: (logits [B, V], state [B, S])."""
    ids = np.stack(prompts).astype(np.int32)
    state = backend.initial_state(len(prompts))
    for t in range(ids.shape[1]):
        logits, state = backend.step(np.ascontiguousarray(ids[:, t]), state)
    return logits, state


PRIME_CHUNK = 256  # ids per row sliced at once (one gather per chunk, not per step)


class Primer:
    """Prompts being primed: rows of one batch that each feed their own prompt, one id per step,
    and leave when their prompt is done. Not thread-safe: one thread drives it.

        p = Primer(backend)
        keys = p.add([ids_a, ids_b])            int32 arrays of >= 1 id
        done = p.advance(0.001)                 steps for about 1 ms (at least one step)
        for key, logits, state in done: ...     logits float32 [V], state float32 [S]
        p.remove(keys)                          a row leaves unprimed (its client went away)

    A row's logits and state are those prime() gives for its prompt alone: rows do not mix, and
    each step feeds every row its next id whatever the others' lengths."""

    def __init__(self, backend):
        self.backend = backend
        self.keys: list[int] = []  # row keys in batch order
        self._ids: list[np.ndarray] = []  # per row, its prompt
        self._pos = np.zeros(0, np.int64)  # per row, ids fed so far
        self._len = np.zeros(0, np.int64)  # per row, its prompt's length
        self.state = backend.initial_state(0)  # float32 [rows, state_size]
        self._next_key = 0
        self.ids_primed = 0  # ids fed so far, every row (statistics)
        # every this many ids of its prompt, a row reports (key, position, logits, state) in
        # `checkpoints` (the server's prompt cache takes them); None: no checkpoints
        self.checkpoint_every: int | None = None
        self.checkpoints: list[tuple[int, int, np.ndarray, np.ndarray]] = []

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def ids_left(self) -> int:
        """Ids still to feed, every row together."""
        return int((self._len - self._pos).sum())

    def add(self, prompts: list, starts=None) -> list[int]:
        """Rows for `prompts` (int32 arrays of >= 1 id) join the batch; returns their keys.
        starts: per prompt None, or (position, state [S]): the row goes on from the state its
        prompt's first `position` ids (0 < position < len) gave (a cached prefix)."""
        prompts = [np.ascontiguousarray(p, np.int32) for p in prompts]
        if any(len(p) < 1 for p in prompts):
            raise ConfigError("a prompt must hold at least one id")
        n = len(prompts)
        starts = [None] * n if starts is None else list(starts)
        state = self.backend.initial_state(n)
        pos = np.zeros(n, np.int64)
        for i, s in enumerate(starts):
            if s is not None:
                if not 0 < s[0] < len(prompts[i]):
                    raise ConfigError(f"start {s[0]} is not inside a prompt of "
                                      f"{len(prompts[i])} ids")
                pos[i], state[i] = s[0], s[1]
        keys = list(range(self._next_key, self._next_key + n))
        self._next_key += n
        self.keys += keys
        self._ids += prompts
        self._pos = np.concatenate([self._pos, pos])
        self._len = np.concatenate([self._len, [len(p) for p in prompts]]).astype(np.int64)
        self.state = np.concatenate([self.state, state])
        return keys

    def remove(self, keys) -> None:
        """Rows `keys` leave the batch; unknown keys are ignored."""
        gone = set(keys)
        keep = [i for i, k in enumerate(self.keys) if k not in gone]
        if len(keep) < len(self.keys):
            self._keep(keep)

    def _keep(self, keep: list) -> None:
        self.keys = [self.keys[i] for i in keep]
        self._ids = [self._ids[i] for i in keep]
        self._pos, self._len, self.state = self._pos[keep], self._len[keep], self.state[keep]

    def advance(self, seconds: float) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """Batched steps until about `seconds` have passed (at least one step, if any row is
        left; a step that starts is finished). Returns (key, logits float32 [V], state float32
        [S]) for every row whose prompt ended, and those rows leave the batch."""
        out: list = []
        if not self.keys:
            return out
        clock = time.perf_counter
        end = clock() + seconds
        step = self.backend.step
        while self.keys:
            k = int(min((self._len - self._pos).min(), PRIME_CHUNK))
            # ids [k, rows]: column t is every row's next id at step t (contiguous per step)
            ids = np.stack([p[i:i + k] for p, i in zip(self._ids, self._pos.tolist())], axis=1)
            marks = self._marks(k)
            state, fed = self.state, 0
            for t in range(k):
                logits, state = step(ids[t], state)
                fed += 1
                if marks and t in marks:
                    self.checkpoints += [(self.keys[i], int(self._pos[i]) + fed,
                                          logits[i].copy(), state[i].copy()) for i in marks[t]]
                if fed < k and clock() >= end:
                    break
            self.state = state
            self._pos += fed
            self.ids_primed += fed * len(self.keys)
            if fed == k:
                ended = np.flatnonzero(self._pos == self._len)
                if len(ended):
                    out += [(self.keys[i], logits[i].copy(), state[i].copy()) for i in ended]
                    ended_set = set(ended.tolist())
                    self._keep([i for i in range(len(self.keys)) if i not in ended_set])
            if clock() >= end:
                break
        return out

    def _marks(self, k: int) -> dict[int, list[int]]:
        """{step t of the next k: rows whose position after it is a checkpoint (a multiple of
        checkpoint_every short of their prompt's end)}."""
        every = self.checkpoint_every
        if not every:
            return {}
        out: dict[int, list[int]] = {}
        first = every - self._pos % every  # steps to each row's next checkpoint
        for i in np.flatnonzero(first <= k):
            for t in range(int(first[i]), k + 1, every):
                if self._pos[i] + t < self._len[i]:
                    out.setdefault(t - 1, []).append(int(i))
        return out
