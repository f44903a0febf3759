"""The portable RNG and exp tables (runtime/sampling/rng.py, runtime/c/SAMPLING.md): exact values."""

from decimal import Decimal, getcontext

import numpy as np

from charwright.runtime.sampling import rng


def test_splitmix64_reference_values():
    # splitmix64 from state 1234567 (https://prng.di.unimi.it/splitmix64.c), first output
    assert rng.mix64((1234567 + rng.GOLDEN) & rng.MASK) == 6457827717110365317
    key = rng.row_key(7, 3)
    x = rng.next_u64([key], [0], 3)[0]
    assert [int(v) for v in x] == [rng.mix64((key + k * rng.GOLDEN) & rng.MASK) for k in (1, 2, 3)]


def test_draws_do_not_depend_on_chunking_or_batch():
    keys = [rng.row_key(5, r) for r in range(3)]
    whole = rng.uniforms(keys, [0, 0, 0], 10)
    parts = np.concatenate([rng.uniforms(keys, [0] * 3, 4), rng.uniforms(keys, [4] * 3, 6)], 1)
    assert np.array_equal(whole, parts)
    assert np.array_equal(whole[1], rng.uniforms(keys[1:2], [0], 10)[0])
    assert whole.dtype == np.float32 and (whole >= 0).all() and (whole < 1).all()
    assert np.array_equal(whole * 2**24, np.floor(whole * 2**24))  # 24-bit coins, exact


def _nearest_f32(x: Decimal) -> np.float32:
    f = np.float32(float(x))
    cands = [np.nextafter(f, np.float32(0)), f, np.nextafter(f, np.float32(2))]
    return min(cands, key=lambda c: abs(Decimal(float(c)) - x))


def test_exp_tables_are_correctly_rounded():
    getcontext().prec = 50
    hi, lo = rng.exp_tables()
    assert all(hi[h] == _nearest_f32((Decimal(-h) / 16).exp()) for h in range(512))
    assert all(lo[k] == _nearest_f32((-(Decimal(k) + Decimal("0.5")) / 4096).exp())
               for k in range(256))


def test_weights_track_exp_and_cut_at_32():
    z = np.array([[0.0, -1.0, -5.5, -31.99, -32.0, -np.inf]], np.float32)
    w = rng.weights(z.copy())[0]
    assert np.allclose(w[:4], np.exp(z[0, :4].astype(np.float64)), rtol=1.25e-4, atol=0)
    assert w[4:].tolist() == [0.0, 0.0]


def test_pick_is_inverse_cdf_in_index_order():
    z = np.log(np.array([[0.25, 0.25, 0.5]], np.float32))
    w = rng.weights(z.copy())[0]
    c = np.add.accumulate(w)
    for u in (0.0, 0.2499, 0.26, 0.5, 0.51, 0.99999994):
        want = int(np.flatnonzero(c > np.float32(u) * c[-1])[0])
        assert rng.pick(z.copy(), np.array([u], np.float32)).tolist() == [want]
        assert rng.pick(np.repeat(z, 2, 0), np.array([u, u], np.float32)).tolist() == [want] * 2
