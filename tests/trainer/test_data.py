import numpy as np
import pytest

from charwright.runtime.errors import CorpusError
from charwright.trainer.data import LineData, StatefulData, WindowData, split_ids


def test_split_is_contiguous_tail():
    ids = np.arange(1000, dtype=np.int32)
    tr, va = split_ids(ids, 0.1, 11)
    assert np.array_equal(np.concatenate([tr, va]), ids)
    assert len(va) == 100


def test_windows_shift_targets_and_stay_in_training_split():
    ids = np.arange(5000, dtype=np.int32)  # each id is its own position
    tr, va = split_ids(ids, 0.1, 11)
    d = WindowData(tr, va, seq_len=10, batch_size=4, seed=3)
    x, y = d.epoch_arrays(0)
    assert x.shape == (d.steps_per_epoch * 4, 10)
    assert np.array_equal(y, x + 1)  # targets are the next character
    assert x.max() < len(tr) and y.max() < len(tr)  # no training window reaches validation
    vx, vy = d.val_arrays()
    assert vx.min() >= len(tr) and np.array_equal(vy, vx + 1)
    x2, _ = d.epoch_arrays(0)
    assert np.array_equal(x, x2)  # an epoch's order is a pure function of (seed, epoch)
    x3, _ = d.epoch_arrays(1)
    assert not np.array_equal(x, x3)


def test_stateful_batches_continue_row_by_row():
    ids = np.arange(4000, dtype=np.int32)
    tr, va = split_ids(ids, 0.1, 11)
    d = StatefulData(tr, va, seq_len=10, batch_size=4, seed=0)
    x, y = d.epoch_arrays(0)
    b0, b1 = x[:4], x[4:8]
    assert np.array_equal(b1[:, 0], b0[:, -1] + 1)  # row b of batch 1 continues row b of batch 0
    assert len(set(b0[:, 0])) == 4 and np.all(np.diff(b0[:, 0]) == len(tr) // 4)  # equidistant
    assert np.array_equal(y, x + 1)


def test_lines_pad_mask_and_end_with_eos():
    eos = 9
    ids = np.array([1, 2, 3, eos, 4, 5, eos, 6, eos, 7, 7, 7, 7, 7, 7, eos, 1, eos], np.int32)
    d = LineData(ids[:16], ids[16:], eos, seq_len=5, batch_size=2, seed=0)
    x, y, w = d.train
    assert d.T == 5 and d.truncated == 1
    assert x[0].tolist() == [eos, 1, 2, 3, eos] and y[0].tolist() == [1, 2, 3, eos, eos]
    assert w[0].tolist() == [1, 1, 1, 1, 0]
    assert y[3].tolist() == [7, 7, 7, 7, 7] and w[3].tolist() == [1] * 5  # truncated: no EOS
    assert x[2].tolist()[:2] == [eos, 6] and y[2].tolist()[:2] == [6, eos]


def test_too_short_corpus_is_a_clear_error():
    ids = np.arange(200, dtype=np.int32)
    tr, va = split_ids(ids, 0.1, 33)
    with pytest.raises(CorpusError, match="fewer than one batch"):
        WindowData(tr, va, seq_len=32, batch_size=64, seed=0)
    with pytest.raises(CorpusError, match="corpus too short"):
        split_ids(np.arange(40, dtype=np.int32), 0.1, 33)
