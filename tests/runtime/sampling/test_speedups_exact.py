"""sampler.h's top-p sums the weights past its sorted head without sorting them (SAMPLING.md step
5 as cw_top_p_head does it): each tail weight w adds (R + w) - R to the running sum, R the power
of two below it, unless w is an odd multiple of half the sum's ulp (a tie: the chain's parity
decides), the total crosses 2R, or the cut falls in the tail; then it sorts everything. These
rows are built to land on those edges, where the 10,000-draw and golden tests never go, and the
compiled core must give numpy's ids on them."""

from __future__ import annotations

import os

import numpy as np
import pytest

from charwright.runtime.sampling import compiled, rng
from charwright.runtime.sampling.config import Sampler, SamplingConfig
from charwright.runtime.sampling.processors import TOP_P_SLACK

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
F32 = np.float32


@pytest.fixture
def extension(monkeypatch):
    monkeypatch.delenv(compiled.PURE_ENV, raising=False)
    if compiled._speedups is None:
        why = "stale (rebuild: pip install -e .)" if compiled.STALE else "not built"
        if CI:
            pytest.fail(f"CI=true: the sampler's C extension is {why}")
        pytest.skip(f"the sampler's C extension is {why}")


def _same_ids(cfg: SamplingConfig, z: np.ndarray, steps: int) -> None:
    """steps picks of each row of z [rows, V] (a fresh copy each time): numpy's == compiled's,
    and so are the logits each leaves (both filter z in place: the ids each step removed)."""
    rows, V = z.shape
    got, left = [], []
    for make in (Sampler, compiled.CompiledSampler):
        s = make(cfg, V)
        s.join([np.zeros(1, np.int32)] * rows, cfg.seed, range(rows))
        ids, zs = [], []
        for _ in range(steps):
            zc = z.copy()
            ids.append(s(zc))
            zs.append(zc.view(np.uint32))
        got.append(np.stack(ids))
        left.append(np.stack(zs))
    assert np.array_equal(got[0], got[1]), np.argwhere(got[0] != got[1])[:5]
    assert np.array_equal(left[0], left[1]), np.argwhere(left[0] != left[1])[:5]


def test_the_weights_fall_as_q_grows():
    """cw_q_below bisects the weight table for the first q below a bound: that needs
    EXP_HI[q >> 8] * EXP_LO[q & 255] (float32) never to rise with q."""
    w = rng.exp_table()[: rng.CUT]
    assert np.all(np.diff(w) <= 0)
    assert w[0] < 1 and w[-1] > 0


def _sensitive_p(sums: np.ndarray, k: int, right, naive):
    """A p whose target P x total picks another cut among the head's running sums [k] when the
    total is naive instead of right: (p, j_right, j_naive), or None."""
    for j in range(k // 4, k):
        P0 = F32(sums[j] / right)
        for step in range(-64, 65):
            P = F32(P0 + F32(step) * np.spacing(P0))
            j1 = int(np.searchsorted(sums, F32(P * right), "left"))
            j2 = int(np.searchsorted(sums, F32(P * naive), "left"))
            if j1 == j2 or max(j1, j2) >= k:
                continue
            p = float(P) / (1 - TOP_P_SLACK)
            for _ in range(4):  # the p whose float32(p (1 - 2**-16)) is P
                got = F32(p * (1 - TOP_P_SLACK))
                if got == P:
                    break
                p = float(np.nextafter(p, np.inf if got < P else -np.inf))
            if F32(p * (1 - TOP_P_SLACK)) == P and 0 < p < 1:
                return p, j1, j2
    return None


def _row(qs) -> np.ndarray:
    """Logits whose q (SAMPLING.md section 2) are qs, qs[0] = 0 the largest."""
    return (-(np.asarray(qs, np.float64) + 0.5) / 4096).astype(F32) * (np.asarray(qs) > 0)


def _tie_case():
    """A row whose head (k ids of q 0..k-1) sums to c in [R, 2R) with an odd last bit, and one
    tail id whose weight is an odd multiple of half c's ulp: the float32 chain rounds c + w to
    even, (R + w) - R rounds the other way. And a p whose cut moves with that one ulp."""
    t = rng.exp_table()
    bits = t[: rng.CUT].view(np.uint32)
    mant = (bits & 0x7FFFFF) | 0x800000
    tz = np.log2(mant & (~mant + 1)).astype(int)  # trailing zero bits of the significand
    ew = ((bits >> 23) & 0xFF).astype(int) - 127
    for qt in np.flatnonzero((tz >= 9) & (np.arange(rng.CUT) >= 4096)):
        e = ew[qt] + 1 + tz[qt]  # R = 2^e puts w's last bit at half an ulp of R
        if not 1 <= e <= 6:
            continue
        R = F32(2.0**e)
        for k in range(2**e, 2 ** (e + 1)):
            head = np.add.accumulate(t[:k], dtype=F32)
            c = head[-1]
            if not R <= c < 2 * R or int(c / (R * F32(2.0**-23))) % 2 == 0:
                continue
            w = t[qt]
            right = F32(c + w)  # the chain's add (ties to even)
            naive = F32(c + F32(F32(R + w) - R))
            if right == naive or not right < 2 * R:
                continue
            found = _sensitive_p(np.append(head, right), k, right, naive)
            if found:
                return _row(list(range(k)) + [qt]), found
    raise AssertionError("no tie case in the tables")


def _crossing_case():
    """A head just below 2R = 64 and a tail of small weights that carries the total past it:
    after 64 the chain rounds to twice the ulp, so adding (R + w) - R (the ulp below 64) gives
    another total. And a p whose cut moves with it."""
    t = rng.exp_table()
    for extra in range(64, 12000):  # 64 ids of q 0..63, one of q `extra`: c just below 64
        qs = list(range(64)) + [extra]
        head = np.add.accumulate(t[qs], dtype=F32)
        c = head[-1]
        if not 63.9 < c < 64:
            continue
        for qt in range(28000, 29000, 7):  # tail weights about 0.001, past c's ulp
            n = int((64 - c) / t[qt]) + 3
            w = np.full(n, t[qt], F32)
            right = np.add.accumulate(np.append(c, w), dtype=F32)[-1]
            naive = F32(c + np.sum(F32(F32(32 + w) - 32), dtype=np.float64).astype(F32))
            if right == naive:
                continue
            found = _sensitive_p(head, len(qs), right, naive)
            if found:
                return _row(qs + [qt] * n), found
    raise AssertionError("no crossing case")


@pytest.mark.parametrize("case", [_tie_case, _crossing_case], ids=["tie", "crossing"])
def test_a_tail_sum_that_only_the_sorted_chain_gets_right(extension, case):
    """tie: a tail weight at an odd multiple of half an ulp of the sum (the chain rounds to
    even); crossing: the tail carries the sum past a power of two. In both the cut moves with
    the total's last bit, so a core that added the tail as (R + w) - R would keep other ids."""
    z, (p, j1, j2) = case()
    assert j1 != j2
    perm = np.random.default_rng(3).permutation(len(z))  # ids in no particular order
    _same_ids(SamplingConfig(seed=11, top_p=p), z[perm][None], 300)


def _edge_rows(gen, V: int, rows: int) -> np.ndarray:
    """A few ids near the top and many far below them: totals near powers of two (the tail
    carries them across), sums with equal weights, tail weights on the q grid."""
    z = np.empty((rows, V), F32)
    for r in range(rows):
        kind = r % 5
        k = int(gen.integers(1, 9))
        if kind == 0:  # head near a power of two, a tail of small weights
            row = -10 - 12 * gen.random(V)
            row[gen.choice(V, k, replace=False)] = 0.7 * gen.random(k)
        elif kind == 4:  # a char model's: a few ids far above the rest (a sample of V's q
            row = gen.standard_normal(V) * 2 - 8  # may miss or overweigh them)
            row[gen.choice(V, k // 2 + 1, replace=False)] = 6 + gen.standard_normal(k // 2 + 1)
        elif kind == 1:  # weights at powers of two of each other (log 2 steps) on the q grid
            row = -(gen.integers(1, 40, V) * np.log(2)) - gen.integers(0, 2, V) / 4096
            row[gen.integers(V)] = 0.0
        elif kind == 2:  # every logit on the q grid, many equal q
            row = -gen.integers(0, 1 + int(gen.integers(1, 131072)), V) / 4096
        else:  # normal, sd 3 (the benchmark's), with exact ties and -inf
            row = np.round(gen.standard_normal(V) * 3, 1)
            row[gen.random(V) < 0.2] = -np.inf
        z[r] = row
    if V > 1024:  # two ids far above the rest where a sample of every (V // 256)-th id sees
        st = V // 256  # them: it takes the total for 2 x st, above its power of two, and the
        row = -9 - 3 * gen.random(V)  # tail is listed again (cw_top_p_head); id 0 low, the
        row[[st, 2 * st]] = 0.0, -0.05  # last in the head
        row[0], row[-1] = -11.5, -1.0
        z[-1] = row
    return z


@pytest.mark.parametrize("V", [65, 600, 5000])
def test_tail_sums_across_powers_of_two_and_cuts_in_the_tail(extension, V):
    gen = np.random.default_rng(V)
    z = _edge_rows(gen, V, 64 if V < 5000 else 40)
    for p in (1e-30, 0.5, 0.9, 0.95, 0.99, 0.999999):
        _same_ids(SamplingConfig(seed=7, top_p=p), z, 3)
    for t in (0.8, 1.4):
        _same_ids(SamplingConfig(seed=7, top_p=0.9, temperature=t, repetition_penalty=1.3), z, 3)
