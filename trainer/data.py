"""Training data: next-character windows with targets shifted by one, in three schemes.

- windows: the training split cut into windows of seq_len+1 ids at stride seq_len, from an
  offset in [0, seq_len) drawn per epoch, shuffled per epoch. x = w[:-1], y = w[1:].
- stateful: the split cut into B equidistant streams; batch j holds chars [jT, (j+1)T) of every
  stream, so row b of batch j+1 continues row b of batch j (long-memory char-RNN training).
- lines: one sample per line, EOS + line -> line + EOS, padded to a fixed length with weight 0.

The validation split is a contiguous tail of the corpus; no window crosses the boundary. Every
epoch's order is a pure function of (seed, epoch), so a resumed run sees exactly the batches an
unbroken run would have.
"""

from __future__ import annotations

import numpy as np

from charwright.runtime.errors import CorpusError


def split_ids(ids: np.ndarray, val_fraction: float, min_val: int) -> tuple[np.ndarray, np.ndarray]:
    """Contiguous split: train = ids[:n-v], val = ids[n-v:], v = max(n*val_fraction, min_val)."""
    n = len(ids)
    v = max(int(round(n * val_fraction)), min_val)
    if n - v < min_val:
        raise CorpusError(
            f"corpus too short: {n} characters cannot hold a validation tail of {v} and a "
            f"training window of {min_val}; give more text or lower --seq-len"
        )
    return ids[: n - v], ids[n - v :]


def _epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    return np.random.default_rng([seed, epoch, 0x5EED])


class WindowData:
    """Shuffled windows (the TF tutorial's scheme, plus a random offset per epoch)."""

    def __init__(self, train_ids, val_ids, seq_len: int, batch_size: int, seed: int):
        self.train_ids, self.val_ids = train_ids, val_ids
        self.T, self.B, self.seed = seq_len, batch_size, seed
        # windows available at the largest offset, so every epoch has the same step count
        self.windows = (len(train_ids) - seq_len) // seq_len
        if self.windows < batch_size:
            raise CorpusError(
                f"corpus too short: the training split ({len(train_ids)} chars) gives "
                f"{max(self.windows, 0)} windows of {seq_len + 1}, fewer than one batch of "
                f"{batch_size}; lower --seq-len or --batch-size"
            )
        if len(val_ids) < seq_len + 1:
            raise CorpusError(
                f"validation split too short ({len(val_ids)} chars) for one window of "
                f"{seq_len + 1}; lower --seq-len or raise --val-fraction"
            )
        self.steps_per_epoch = self.windows // batch_size

    @staticmethod
    def _cut(ids: np.ndarray, T: int, offset: int, count: int):
        idx = offset + np.arange(count)[:, None] * T + np.arange(T + 1)[None, :]
        w = ids[idx]  # [count, T+1]
        return w[:, :-1], w[:, 1:]

    def epoch_arrays(self, epoch: int):
        """(x, y) int32 [steps_per_epoch * B, T] for `epoch`, in training order."""
        rng = _epoch_rng(self.seed, epoch)
        offset = int(rng.integers(0, self.T))
        x, y = self._cut(self.train_ids, self.T, offset, self.windows)
        order = rng.permutation(self.windows)[: self.steps_per_epoch * self.B]
        return (x[order],  y[order])

    def val_arrays(self):
        count = (len(self.val_ids) - 1) // self.T
        x, y = self._cut(self.val_ids, self.T, 0, count)
        return (x, y)


class StatefulData:
    """B equidistant streams; consecutive batches continue each other row by row."""

    def __init__(self, train_ids, val_ids, seq_len: int, batch_size: int, seed: int):
        self.T, self.B, self.seed = seq_len, batch_size, seed
        self.train = self._streams(train_ids, "training")
        self.val = self._streams(val_ids, "validation")
        self.steps_per_epoch = (self.train.shape[1] - 1) // seq_len

    def _streams(self, ids, what):
        per = len(ids) // self.B
        if per < self.T + 1:
            raise CorpusError(
                f"{what} split too short ({len(ids)} chars) for {self.B} streams of at least "
                f"{self.T + 1}; lower --batch-size or --seq-len"
            )
        return ids[: per * self.B].reshape(self.B, per)

    def _batches(self, streams):
        n = (streams.shape[1] - 1) // self.T
        x = streams[:, : n * self.T].reshape(self.B, n, self.T).transpose(1, 0, 2)
        y = streams[:, 1 : n * self.T + 1].reshape(self.B, n, self.T).transpose(1, 0, 2)
        return x.reshape(n * self.B, self.T), y.reshape(n * self.B, self.T)

    def epoch_arrays(self, epoch: int):
        return self._batches(self.train)  # order is the point: never shuffled

    def val_arrays(self):
        return self._batches(self.val)


class LineData:
    """One sample per line: x = [EOS] + line, y = line + [EOS], padded with weight 0."""

    def __init__(self, train_ids, val_ids, eos_id: int, seq_len: int, batch_size: int, seed: int):
        self.B, self.seed, self.eos = batch_size, seed, eos_id
        train, val = self._lines(train_ids), self._lines(val_ids)
        longest = max((len(s) for s in train + val), default=0)
        self.T = min(seq_len, longest + 1)
        self.truncated = sum(len(s) + 1 > self.T for s in train + val)
        if len(train) < batch_size:
            raise CorpusError(
                f"line mode: {len(train)} training lines, fewer than one batch of {batch_size}; "
                "lower --batch-size or give more lines"
            )
        if not val:
            raise CorpusError("line mode: no line left for validation; give more lines")
        self.train = self._pad(train)
        self.val = self._pad(val)
        self.steps_per_epoch = len(train) // batch_size

    def _lines(self, ids):
        cuts = np.flatnonzero(ids == self.eos)
        parts = np.split(ids, cuts)
        return [p[p != self.eos] for p in parts if np.any(p != self.eos)]

    def _pad(self, lines):
        n, T = len(lines), self.T
        x = np.full((n, T), self.eos, np.int32)
        y = np.full((n, T), self.eos, np.int32)
        w = np.zeros((n, T), np.float32)
        for i, s in enumerate(lines):
            k = min(len(s), T - 1)  # input chars after the leading EOS
            x[i, 1 : k + 1] = s[:k]
            y[i, : min(len(s), T)] = s[:T]  # then EOS (already there) if the line fits
            w[i, : min(len(s) + 1, T)] = 1.0  # a truncated line has no EOS target
        return x, y, w

    def epoch_arrays(self, epoch: int):
        order = _epoch_rng(self.seed, epoch).permutation(len(self.train[0]))
        order = order[: self.steps_per_epoch * self.B]
        return tuple(a[order] for a in self.train)

    def val_arrays(self):
        return self.val


def make_data(mode, train_ids, val_ids, seq_len, batch_size, seed, eos_id=None):
    if mode == "windows":
        return WindowData(train_ids, val_ids, seq_len, batch_size, seed)
    if mode == "stateful":
        return StatefulData(train_ids, val_ids, seq_len, batch_size, seed)
    return LineData(train_ids, val_ids, eos_id, seq_len, batch_size, seed)


def to_dataset(arrays, batch_size: int, skip_batches: int = 0, drop_remainder: bool = True):
    """tf.data pipeline over in-memory arrays: skip, batch, prefetch (order already fixed)."""
    import tensorflow as tf

    arrays = tuple(a[skip_batches * batch_size :] for a in arrays)
    ds = tf.data.Dataset.from_tensor_slices(arrays)
    return ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)
