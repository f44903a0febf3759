"""Sampler.row_state / set_row_state: a row's sampling state carried into a new sampler continues
exactly where it left off (the coins, the penalty window), whatever batch it joins and when."""

import numpy as np
import pytest

from charwright.runtime.errors import ConfigError
from charwright.runtime.sampling.config import Sampler, SamplingConfig

V = 11


def _logits(rng, rows):
    return rng.normal(0, 2, (rows, V)).astype(np.float32)


def _draw(sampler, zs):
    return [sampler(z.copy()).tolist() for z in zs]


@pytest.mark.parametrize("cfg", [
    SamplingConfig(seed=5),
    SamplingConfig(seed=5, repetition_penalty=3.0, repetition_window=4, top_k=6),
    SamplingConfig(greedy=True, repetition_penalty=2.0, repetition_window=3),
])
@pytest.mark.parametrize("split", [1, 7, 300])  # 300 crosses a coin block (256)
def test_a_row_moved_to_a_new_sampler_continues_its_text(cfg, split):
    rng = np.random.default_rng(split)
    zs = _logits(rng, 400 * 3).reshape(400, 3, V)
    prompts = [np.array([1, 2, 3], np.int32), np.array([4], np.int32), np.array([5, 5], np.int32)]
    ref = Sampler(cfg, V)
    ref.join(prompts, cfg.seed or 0, [0, 1, 2])
    whole = _draw(ref, zs)

    first = Sampler(cfg, V)
    first.join(prompts, cfg.seed or 0, [0, 1, 2])
    head = _draw(first, zs[:split])
    states = [first.row_state(i) for i in range(3)]
    assert states[1]["row"] == 1 and states[1]["seed"] == (cfg.seed or 0)
    if not cfg.is_greedy:
        assert states[2]["coins"] == split
    if cfg.repetition_penalty != 1.0:
        assert len(states[0]["window"]) == cfg.repetition_window

    # a new sampler that has already run a while (its block clock elsewhere), rows joined with
    # other prompts and seeds, in another order: the states put them back
    second = Sampler(cfg, V)
    second.join([np.array([9], np.int32)], 99, [42])
    _draw(second, _logits(rng, 13)[:, None, :])
    second.join([np.array([0], np.int32)] * 3, 1234, [7, 8, 9])
    for i, src in enumerate([2, 0, 1]):
        second.set_row_state(1 + i, states[src])
    order = [2, 0, 1]
    tail = []
    for z in zs[split:]:
        zz = np.concatenate([_logits(rng, 1), z[order]])
        ids = second(zz)[1:]
        back = np.empty(3, np.int64)
        back[order] = ids
        tail.append(back.tolist())
    assert head + tail == whole


def test_row_state_round_trips_and_bad_states_are_refused():
    s = Sampler(SamplingConfig(seed=1, repetition_penalty=2.0, repetition_window=5), V)
    s.join([np.array([1, 2], np.int32)], 1, [0])
    d = s.row_state(0)
    assert d == {"seed": 1, "row": 0, "coins": 0, "window": [1, 2]}
    s.set_row_state(0, {"coins": 17, "window": [3, 4, 5, 6, 7, 8]})
    assert s.row_state(0) == {"seed": 1, "row": 0, "coins": 17, "window": [4, 5, 6, 7, 8]}
    for bad in ({"coins": -1}, {"coins": 2**64}, {"seed": "x"}, {"window": [V]},
                {"window": [-1]}, {"coins": True}, "no"):
        with pytest.raises(ConfigError):
            s.set_row_state(0, bad)
    assert s.row_state(0)["coins"] == 17
    with pytest.raises(ConfigError):
        s.row_state(1)
