"""Golden values on hand-computable distributions (after llama.cpp's tests/test-sampling.cpp)."""

import numpy as np
import pytest

from charwright.runtime.errors import ConfigError
from charwright.runtime.processors import (
    History, MinP, ProcessorChain, RepetitionPenalty, Temperature, TopK, TopP, Typical,
)
from charwright.runtime.sampling import SamplingConfig, build_chain, describe
from charwright.runtime.selectors import Categorical, Greedy

P = np.array([0.1, 0.2, 0.3, 0.4])


def _apply(proc, p=P, history=None):
    z = np.log(p).astype(np.float32)[None, :].copy()
    z = proc(z, history)
    e = np.exp(z - z.max())
    return (e / e.sum())[0]


@pytest.mark.parametrize("proc,expected", [
    (TopP(0.7), [0, 0, 0.428571, 0.571429]),
    (TopP(1.0), [0.1, 0.2, 0.3, 0.4]),
    (TopP(0.3), [0, 0, 0, 1]),
    (TopK(3), [0, 0.222222, 0.333333, 0.444444]),
    (TopK(1), [0, 0, 0, 1]),
    (TopK(10), [0.1, 0.2, 0.3, 0.4]),
    (MinP(0.6), [0, 0, 0.428571, 0.571429]),
    (MinP(0.3), [0, 0.222222, 0.333333, 0.444444]),
    (MinP(0.2), [0.1, 0.2, 0.3, 0.4]),
    (Temperature(0.5), [0.033333, 0.133333, 0.3, 0.533333]),
    (Temperature(1.0), [0.1, 0.2, 0.3, 0.4]),
    # entropy 1.2799 nats; |surprisal - H| orders ids 0.3, 0.2, 0.4, 0.1; mass 0.3 + 0.2 = 0.5
    (Typical(0.5), [0, 0.4, 0.6, 0]),
    (Typical(0.2), [0, 0, 1, 0]),
])
def test_golden(proc, expected):
    assert np.allclose(_apply(proc), expected, atol=1e-5)


def test_repetition_penalty_divides_positive_and_multiplies_negative():
    h = History(1, 4, window=3, prompts=[np.array([1, 2])])
    z = np.array([[1.0, 2.0, -1.0, 0.5]], np.float32)
    assert RepetitionPenalty(2.0, 3)(z, h).tolist() == [[1.0, 1.0, -2.0, 0.5]]
    h.push(np.array([3]))  # window 3 now holds 1, 2, 3
    h.push(np.array([3]))  # 1 leaves the window
    assert h.counts.tolist() == [[0, 0, 1, 2]]


def test_processors_keep_rows_apart():
    z = np.log(np.array([[0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1]], np.float32))
    out = TopK(2)(z.copy(), None)
    assert np.isinf(out[0, :2]).all() and np.isinf(out[1, 2:]).all()
    out = TopP(0.7)(z.copy(), None)
    assert np.isfinite(out[0]).tolist() == [False, False, True, True]
    assert np.isfinite(out[1]).tolist() == [True, True, False, False]


def test_chain_order_is_data_and_neutral_values_drop_processors():
    cfg = SamplingConfig(temperature=0.8, top_k=40, top_p=0.95, seed=7)
    assert describe(cfg) == "logits -> temperature(0.8) -> top-k(40) -> top-p(0.95) -> categorical(seed=7)"
    assert len(build_chain(SamplingConfig(top_p=1.0, min_p=0.0, typical_p=1.0))) == 0
    assert describe(SamplingConfig(greedy=True, temperature=0.5)) == "logits -> greedy"
    chain = build_chain(SamplingConfig(repetition_penalty=1.3, min_p=0.1, typical_p=0.9))
    assert [p.name for p in chain.processors] == ["repetition-penalty", "min-p", "typical"]
    assert isinstance(chain, ProcessorChain) and chain.needs_history


@pytest.mark.parametrize("kwargs,message", [
    ({"temperature": 0}, "temperature 0: must be > 0"),
    ({"temperature": -1.0}, "temperature -1.0: must be > 0"),
    ({"top_k": 0}, "top_k 0: must be an integer >= 1"),
    ({"top_p": 0.0}, r"top_p 0.0: must be in \(0, 1\]"),
    ({"top_p": 1.5}, r"top_p 1.5: must be in \(0, 1\]"),
    ({"min_p": 1.0}, r"min_p 1.0: must be in \[0, 1\)"),
    ({"repetition_penalty": 0}, "repetition_penalty 0: must be > 0"),
])
def test_bad_sampling_values(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        SamplingConfig(**kwargs)


def test_categorical_matches_the_distribution_and_respects_masks():
    z0 = np.log(P).astype(np.float32)
    sel = Categorical(1, 4, seed=0)
    counts = np.bincount([int(sel(z0[None].copy())[0]) for _ in range(20000)], minlength=4)
    assert np.allclose(counts / 20000, P, atol=0.015)
    masked = z0.copy()
    masked[3] = -np.inf
    assert all(int(sel(masked[None].copy())[0]) != 3 for _ in range(2000))
    assert Greedy()(z0[None].copy()).tolist() == [3]


def test_categorical_rows_are_independent_of_batch():
    z = np.zeros((3, 5), np.float32)
    wide = Categorical(3, 5, seed=9)
    alone = Categorical(1, 5, seed=9, row_ids=[2])
    a = [int(wide(z.copy())[2]) for _ in range(300)]
    b = [int(alone(z[:1].copy())[0]) for _ in range(300)]
    assert a == b
