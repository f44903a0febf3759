"""Golden values on hand-computable distributions (after llama.cpp's tests/test-sampling.cpp)."""

import numpy as np
import pytest

from charwright.runtime.errors import ConfigError
from charwright.runtime.sampling.processors import (
    MinP, RepetitionPenalty, Temperature, TopK, TopP, Typical,
)
from charwright.runtime.sampling.config import Sampler, SamplingConfig, build_processors, describe
from charwright.runtime.sampling.selectors import Categorical, Greedy

P = np.array([0.1, 0.2, 0.3, 0.4])


def _probs(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _apply(proc, p=P):
    return _probs(proc(np.log(p).astype(np.float32)[None, :].copy()))[0]


GOLDEN = [
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
]


@pytest.mark.parametrize("proc,expected", GOLDEN)
def test_golden(proc, expected):
    assert np.allclose(_apply(proc), expected, atol=1e-5)


@pytest.mark.parametrize("proc,expected", GOLDEN)
def test_golden_in_a_batch_row_by_row(proc, expected):
    """The batch path (rows > 1) gives each row what the row alone gets: rows 0 and 2 hold the
    golden distribution, row 1 its reverse, checked against the reversed golden result."""
    z = np.log(np.stack([P, P[::-1], P])).astype(np.float32)
    out = _probs(proc(z.copy()))
    assert np.allclose(out[0], expected, atol=1e-5) and np.allclose(out[2], expected, atol=1e-5)
    assert np.allclose(out[1], expected[::-1], atol=1e-5)


def test_repetition_penalty_divides_positive_and_multiplies_negative():
    rp = RepetitionPenalty(2.0, 3, 4)
    rp.join([np.array([1, 2])])
    z = np.array([[1.0, 2.0, -1.0, 0.5]], np.float32)
    assert rp(z).tolist() == [[1.0, 1.0, -2.0, 0.5]]
    rp.accept(np.array([3]))  # the window of 3 now holds 1, 2, 3
    assert rp.counts[0, :4].tolist() == [0, 1, 1, 1]
    rp.accept(np.array([3]))  # 1 leaves the window
    assert rp.counts[0, :4].tolist() == [0, 0, 1, 2]
    rp.accept(np.array([0]))  # 2 leaves
    assert rp.counts[0, :4].tolist() == [1, 0, 0, 2]


def _rp_alone(prompt, ids, window=3, vocab=5):
    rp = RepetitionPenalty(2.0, window, vocab)
    rp.join([np.asarray(prompt)])
    for t in ids:
        rp.accept(np.array([t]))
    return rp.counts[0, :vocab].tolist()


def test_repetition_penalty_rows_keep_their_own_windows_whenever_they_join():
    """Several rows, joining at different times and leaving: each row's counts equal what the
    row alone would count (the multi-row path, checked against the single-row one)."""
    rp = RepetitionPenalty(2.0, 3, 5)
    rp.join([np.array([0, 1])])
    rp.accept(np.array([2]))
    rp.join([np.array([4, 4, 4, 3])])  # joins one step later, its ring rolled to the shared clock
    rp.accept(np.array([3, 0]))
    rp.accept(np.array([1, 1]))
    rp.join([np.array([2])])
    rp.accept(np.array([4, 2, 2]))
    assert rp.counts[0, :5].tolist() == _rp_alone([0, 1], [2, 3, 1, 4])
    assert rp.counts[1, :5].tolist() == _rp_alone([4, 4, 4, 3], [0, 1, 2])
    assert rp.counts[2, :5].tolist() == _rp_alone([2], [2])
    rp.take(np.array([0, 2]))  # the middle row leaves
    rp.accept(np.array([0, 0]))
    assert rp.counts[0, :5].tolist() == _rp_alone([0, 1], [2, 3, 1, 4, 0])
    assert rp.counts[1, :5].tolist() == _rp_alone([2], [2, 0])
    z = np.zeros((2, 5), np.float32) + 1.0
    assert rp(z).tolist() == [[0.5, 0.5, 1.0, 1.0, 0.5], [0.5, 1.0, 0.5, 1.0, 1.0]]


def test_min_p_batch_branch_keeps_rows_apart():
    z = np.log(np.array([[0.1, 0.2, 0.3, 0.4], [0.7, 0.1, 0.1, 0.1]], np.float32))
    out = MinP(0.6)(z.copy())  # keeps p >= 0.24 in row 0, p >= 0.42 in row 1
    assert np.isfinite(out).tolist() == [[False, False, True, True], [True, False, False, False]]


def test_processors_keep_rows_apart():
    z = np.log(np.array([[0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1]], np.float32))
    out = TopK(2)(z.copy())
    assert np.isinf(out[0, :2]).all() and np.isinf(out[1, 2:]).all()
    out = TopP(0.7)(z.copy())
    assert np.isfinite(out[0]).tolist() == [False, False, True, True]
    assert np.isfinite(out[1]).tolist() == [True, True, False, False]


def test_chain_order_is_data_and_neutral_values_drop_processors():
    cfg = SamplingConfig(temperature=0.8, top_k=40, top_p=0.95, seed=7)
    assert describe(cfg) == "logits -> temperature(0.8) -> top-k(40) -> top-p(0.95) -> categorical(seed=7)"
    assert build_processors(SamplingConfig(top_p=1.0, min_p=0.0, typical_p=1.0), 4) == []
    assert describe(SamplingConfig(greedy=True, temperature=0.5)) == "logits -> greedy"
    assert describe(SamplingConfig(temperature=0)) == "logits -> greedy"  # T = 0 is greedy
    assert describe(SamplingConfig(temperature=0, repetition_penalty=1.2)) == (
        "logits -> repetition-penalty(1.2, last 64) -> greedy")
    procs = build_processors(SamplingConfig(repetition_penalty=1.3, min_p=0.1, typical_p=0.9), 4)
    assert [p.name for p in procs] == ["repetition-penalty", "min-p", "typical"]


@pytest.mark.parametrize("kwargs,message", [
    ({"temperature": -1.0}, r"temperature -1.0: must be 0 \(greedy\) or between 0.0001 and 1000"),
    ({"temperature": 1e-39}, r"temperature 1e-39: must be 0 \(greedy\) or between"),
    ({"temperature": float("nan")}, "temperature nan: must be"),
    ({"temperature": "hot"}, "temperature 'hot': must be"),
    ({"top_k": 0}, "top_k 0: must be an integer >= 1"),
    ({"top_k": True}, "top_k True: must be an integer >= 1"),
    ({"top_p": 0.0}, r"top_p 0.0: must be in \(0, 1\]"),
    ({"top_p": 1.5}, r"top_p 1.5: must be in \(0, 1\]"),
    ({"top_p": float("nan")}, r"top_p nan: must be in \(0, 1\]"),
    ({"min_p": 1.0}, r"min_p 1.0: must be in \[0, 1\)"),
    ({"typical_p": 0}, r"typical_p 0: must be in \(0, 1\]"),
    ({"repetition_penalty": 0}, r"repetition_penalty 0: must be between 0.01 and 100"),
    ({"repetition_penalty": 1e308}, r"repetition_penalty 1e\+308: must be between 0.01 and 100"),
    ({"repetition_window": 0}, r"repetition_window 0: must be an integer in 1..65536"),
    ({"seed": -1}, r"seed -1: must be an integer in 0..2\*\*63-1"),
    ({"seed": 2**63}, r"seed 9223372036854775808: must be an integer in 0..2\*\*63-1"),
    ({"greedy": "false"}, "greedy 'false': must be true or false"),
])
def test_bad_sampling_values(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        SamplingConfig(**kwargs)


def test_categorical_matches_the_distribution_and_respects_masks():
    z0 = np.log(P).astype(np.float32)
    sel = Categorical(4)
    sel.join(0, [0])
    counts = np.bincount([int(sel(z0[None].copy())[0]) for _ in range(20000)], minlength=4)
    assert np.allclose(counts / 20000, P, atol=0.015)
    masked = z0.copy()
    masked[3] = -np.inf
    assert all(int(sel(masked[None].copy())[0]) != 3 for _ in range(2000))
    assert Greedy()(z0[None].copy()).tolist() == [3]


def _draws(sel, rows, n, vocab=5):
    return [sel(np.zeros((rows, vocab), np.float32)).tolist() for _ in range(n)]


def test_categorical_rows_depend_only_on_seed_and_row_id():
    """A row's k-th draw is the same alone, in a batch, or after joining late (past a refill)."""
    alone = Categorical(5)
    alone.join(9, [2])
    ref = [d[0] for d in _draws(alone, 1, 700)]
    wide = Categorical(5)
    wide.join(9, [0, 1, 2])
    assert [d[2] for d in _draws(wide, 3, 700)] == ref
    late = Categorical(5)
    late.join(1, [0])
    _draws(late, 1, 300)  # the shared clock is now 300 - 256 = 44 into its second block
    late.join(9, [2])
    got = [d[1] for d in _draws(late, 2, 700)]
    late.take(np.array([1]))  # the first row leaves; the late one keeps its stream
    got += [d[0] for d in _draws(late, 1, 50)]
    longer = Categorical(5)
    longer.join(9, [2])
    assert got == [d[0] for d in _draws(longer, 1, 750)]
    tight = Categorical(5)  # blocks of 3 coins, refilled often
    tight.BLOCK = tight.pos = 3
    tight.coins = np.zeros((0, 3), np.float32)
    tight.join(9, [0, 2])
    draws = _draws(tight, 2, 40)
    tight.join(9, [5])  # joins mid-block
    draws += _draws(tight, 3, 30)
    assert tight.coins.shape[1] == 3 and [d[1] for d in draws] == ref[:70]
    five = Categorical(5)
    five.join(9, [5])
    assert [d[2] for d in draws[40:]] == [d[0] for d in _draws(five, 1, 30)]


def test_sampler_runs_the_chain_then_accepts():
    s = Sampler(SamplingConfig(temperature=0, repetition_penalty=100.0), 4)
    s.join([np.array([3])], seed=0, row_ids=[0])
    z = np.log(np.array([[0.1, 0.2, 0.3, 0.4]], np.float32))
    # 3 is in the window: its logit is pushed down 100x, so greedy takes 2, then 1
    assert s(z.copy()).tolist() == [2]
    assert s(z.copy()).tolist() == [1]


def test_extreme_coins_never_select_a_removed_id():
    """u = 0 and u = 1 - 2**-24 (the extreme coins) pick only ids that have a weight."""
    from charwright.runtime.sampling import rng

    z = np.array([[-np.inf, -np.inf, 1.0, -np.inf]], np.float32)  # top-k 1 left only id 2
    for u in (0.0, 1 - 2.0**-24):
        assert rng.pick(z.copy(), np.array([u], np.float32)).tolist() == [2]
        assert rng.pick(np.repeat(z, 2, 0), np.array([u, u], np.float32)).tolist() == [2, 2]


# ---- top-p reaches p (issue 24 item 4): llama.cpp's tests/test-sampling.cpp sampler queue ------

def _queue_logits(n_vocab=10_000):
    """llama.cpp's sampler_tester(n_vocab): logit of id i is logf(i), so p(i) is i / sum(ids)
    (id 0: -inf, p 0)."""
    with np.errstate(divide="ignore"):
        return np.log(np.arange(n_vocab, dtype=np.float32))


def _expected_min_id(top_p, lo, n_vocab=10_000):
    """The first id llama.cpp's test expects top-p to keep when ids lo..n_vocab-1 are left:
    ids are taken from the top until their sum reaches ceil(top_p x their total)."""
    target = np.ceil(np.float32(top_p) * np.float32(n_vocab * (n_vocab - 1) // 2
                                                     - lo * (lo - 1) // 2))
    cum, i = 0, n_vocab
    while True:
        i -= 1
        cum += i
        if cum >= target:
            return i


@pytest.mark.parametrize("rows", [1, 3])  # the one-row fast path and the batch path
@pytest.mark.parametrize("top_p,top_k,first", [(0.8, None, 4472), (0.0003, None, 9998),
                                               (0.8, 100, None)])
def test_top_p_keeps_llama_cpp_sampler_queue_nucleus(rows, top_p, top_k, first):
    """vocabulary 10,000, p(i) proportional to i: top-p 0.8 keeps ids 4472..9999 (mass
    0.80004; from 4473 it would be 0.79995 < p), as llama.cpp and the definition do; with
    top-k 100 first ("kp"), top-p works on ids 9900..9999."""
    z = np.repeat(_queue_logits()[None], rows, axis=0)
    if top_k:
        z = TopK(top_k)(z)
    first = first or _expected_min_id(top_p, 10_000 - top_k)
    assert first == _expected_min_id(top_p, 10_000 - (top_k or 10_000))
    out = TopP(top_p)(z)
    for r in range(rows):
        kept = np.flatnonzero(np.isfinite(out[r]))
        assert kept.tolist() == list(range(first, 10_000))
    i = np.arange(10_000, dtype=np.float64)
    assert i[first:].sum() / i[10_000 - (top_k or 10_000):].sum() >= top_p


def test_top_p_reaches_p_on_the_llama_cpp_four_id_cases():
    """test_top_p({0.1, 0.2, 0.3, 0.4}, ...): 0.7 keeps {0.4, 0.3} (mass exactly 0.7, summed as
    0.6999987 and counted as reaching it), 0.8 keeps {0.4, 0.3, 0.2}; 0.9 (exactly the top
    three) keeps three. (A mass equal to p only up to the weights' 1.2e-4 may land either side:
    {0.4} at p 0.4 sums to 0.39998 and keeps two ids.)"""
    z = np.log(np.array([0.1, 0.2, 0.3, 0.4], np.float32))
    for p, n in ((0.7, 2), (0.8, 3), (0.9, 3), (0.41, 2), (0.3, 1), (0.99, 4)):
        assert np.isfinite(TopP(p)(z[None].copy())).sum() == n, p


def test_top_p_kept_mass_reaches_p_by_its_own_weights():
    """Random rows of up to 10,000 ids: the kept weights (the weights top-p sums, added here in
    float64) hold at least p less the weights' error (2**-13 relative; the rule's slack is
    2**-16, the rest is float32 summation), and the kept set less its lightest id less than p
    (the nucleus is the smallest that reaches p). 2**-10 slack fell short by up to 1e-3."""
    from charwright.runtime.sampling import rng

    g = np.random.default_rng(5)
    for V, scale in ((65, 3.0), (1000, 2.0), (5000, 1.0), (10_000, 0.5)):
        z = (g.standard_normal((4, V)) * scale).astype(np.float32)
        for p in (0.5, 0.8, 0.9, 0.95):
            w = rng.weights(z.copy()).astype(np.float64)
            out = TopP(p)(z.copy())
            for r in range(4):
                keep = np.isfinite(out[r])
                mass = w[r][keep].sum() / w[r].sum()
                assert mass >= p * (1 - 2.0**-13), (V, p, mass)
                lightest = w[r][keep].min()
                assert mass - lightest / w[r].sum() < p


# ---- repetition penalty bounds (issue 24 item 7) -------------------------------------------------

@pytest.mark.parametrize("r", [1e-300, 5e-324, 1e-39, 0.0099, 100.5])
def test_repetition_penalty_outside_its_arithmetic_range_is_refused(r):
    with pytest.raises(ConfigError, match=r"repetition_penalty .*: must be between 0.01 and 100"):
        SamplingConfig(repetition_penalty=r)


@pytest.mark.parametrize("r", [0.01, 100.0])
def test_repetition_penalty_at_its_bounds_keeps_logits_finite(r, recwarn):
    """At the bounds, with the largest logits a model emits and temperature 1e-4, every
    processed logit stays finite and no numpy warning is raised."""
    s = Sampler(SamplingConfig(repetition_penalty=r, temperature=1e-4, top_p=0.9, seed=1), 4)
    s.join([np.array([0, 1, 2, 3])], seed=1, row_ids=[0])
    z = np.array([[1e4, -1e4, 3.0, -3.0]], np.float32)
    for proc in s.processors:
        z = proc(z)
    assert np.isfinite(z).any() and not np.isnan(z).any()
    assert s(np.array([[1e4, -1e4, 3.0, -3.0]], np.float32)).tolist() == [0]
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]
