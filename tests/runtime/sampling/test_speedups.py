"""The compiled sampling core (runtime/c/sampler.h via the _speedups extension) against the numpy
reference: identical ids for every golden vector and for 10,000 seeded draws per setting (V 65
and V 2,000; random logits with ties, -inf and huge values), rows joining and leaving mid-run,
the same row_state dict; the numpy path when CHARWRIGHT_PURE_PYTHON=1 or without the extension.

The extension is built by `pip install` (setup.py); without it these tests skip, except under
CI=true, where a missing build fails them."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from charwright.runtime.errors import ConfigError
from charwright.runtime.sampling import compiled
from charwright.runtime.sampling.config import Sampler, SamplingConfig, make_sampler
from charwright.runtime.sampling.golden import from_hex, make_golden

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(autouse=True)
def _need_extension(monkeypatch):
    monkeypatch.delenv(compiled.PURE_ENV, raising=False)
    if compiled._speedups is None:
        why = ("built from other sources (sampler.h changed): rebuild with pip install -e ."
               if compiled.STALE else "not built (pip install -e . with a C compiler)")
        if CI:
            pytest.fail(f"CI=true: the sampler's C extension is {why}")
        pytest.skip(f"the sampler's C extension is {why}")


def _both(cfg: SamplingConfig, V: int):
    return Sampler(cfg, V), compiled.CompiledSampler(cfg, V)


def test_the_exp_tables_are_rng_s():
    from charwright.runtime.sampling.rng import exp_tables

    hi, lo = compiled._speedups.exp_tables()
    want_hi, want_lo = exp_tables()
    assert hi == want_hi.tobytes() and lo == want_lo.tobytes()


def test_every_golden_vector_in_both_paths():
    doc = make_golden()
    assert len(doc["cases"]) >= 16
    for c in doc["cases"]:
        cfg = SamplingConfig(seed=c["seed"], **c["sampling"])
        z = from_hex(c["logits"])[None]
        for s in _both(cfg, z.shape[1]):
            s.join([np.asarray(c["history"] or [0], np.int32)], c["seed"], [c["row"]])
            got = [int(s(z.copy())[0]) for _ in range(c["steps"])]
            assert got == c["expected"], (c["name"], type(s).__name__)


def _logits(rng, rows: int, V: int, kind: int, ties: bool = True) -> np.ndarray:
    z = (rng.standard_normal((rows, V)) * 3).astype(np.float32)
    if kind == 1 and ties:  # many exact ties
        z = np.round(z)
    elif kind == 2:  # removed ids
        z[rng.random((rows, V)) < 0.3] = -np.inf
    elif kind == 3:  # huge values (a 1e4 spread: most weights are 0)
        z *= np.float32(1e4)
    elif kind == 4:  # the largest a model emits, spread thin
        z = (z * np.float32(1e31)).astype(np.float32)
    return z


SETTINGS = [
    dict(greedy=True), dict(), dict(temperature=0.7), dict(temperature=1e-4),
    dict(top_k=1), dict(top_k=5), dict(top_k=40), dict(top_p=0.9), dict(top_p=0.3),
    dict(min_p=0.1), dict(min_p=0.5), dict(typical_p=0.9),
    dict(repetition_penalty=1.3), dict(repetition_penalty=0.7, repetition_window=3),
    dict(temperature=0, repetition_penalty=2.0, repetition_window=8),
    dict(temperature=0.8, top_k=40, top_p=0.95, min_p=0.05, repetition_penalty=1.2),
    dict(temperature=1.3, top_p=0.8, typical_p=0.95, repetition_penalty=1.1),
]


@pytest.mark.parametrize("V", [65, 2000])
@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: ",".join(f"{k}={v}" for k, v in
                                                                     s.items()) or "plain")
def test_10000_seeded_draws_give_identical_ids(setting, V):
    """100 rows x 100 steps; every 25 steps a few rows leave and new ones join (other seeds)."""
    rng = np.random.default_rng(V + len(SETTINGS) * SETTINGS.index(setting))
    cfg = SamplingConfig(seed=5, **setting)
    a, b = _both(cfg, V)
    rows = 100
    prompts = [rng.integers(0, V, rng.integers(1, 90)).astype(np.int32) for _ in range(rows)]
    for s in (a, b):
        s.join(prompts, 5, range(rows))
    # typical-p orders equal distances by id in both (a stable sort, SAMPLING.md step 7)
    ties = True
    draws, next_row = 0, rows
    for step in range(100):
        z = _logits(rng, a.rows, V, int(rng.integers(0, 5)), ties)
        ia, ib = a(z.copy()), b(z.copy())
        assert ia.dtype == ib.dtype == np.int64
        assert np.array_equal(ia, ib), (step, np.flatnonzero(ia != ib)[:5])
        draws += len(ia)
        if step % 25 == 24:  # three rows leave, three join
            keep = np.sort(rng.choice(a.rows, a.rows - 3, replace=False))
            new = [rng.integers(0, V, 5).astype(np.int32) for _ in range(3)]
            for s in (a, b):
                s.take(keep)
                s.join(new, 77, range(next_row, next_row + 3))
            next_row += 3
    assert draws == 10_000
    for i in (0, 50, 99):
        assert a.row_state(i) == b.row_state(i)


def test_a_compiled_row_moves_into_the_numpy_sampler_and_back():
    """row_state / set_row_state give and take the same dict in both paths: a row whose state
    crosses from one to the other continues its draws exactly."""
    V = 65
    rng = np.random.default_rng(3)
    cfg = SamplingConfig(seed=9, top_p=0.9, repetition_penalty=1.5, repetition_window=6)
    ref = Sampler(cfg, V)
    ref.join([np.array([1, 2, 3], np.int32)], 9, [4])
    zs = _logits(rng, 300, V, 0)
    whole = [int(ref(zs[i:i + 1].copy())[0]) for i in range(300)]
    c = compiled.CompiledSampler(cfg, V)
    c.join([np.array([1, 2, 3], np.int32)], 9, [4])
    head = [int(c(zs[i:i + 1].copy())[0]) for i in range(100)]
    n = Sampler(cfg, V)
    n.join([np.array([0], np.int32)], 1, [0])
    n.set_row_state(0, c.row_state(0))
    assert n.row_state(0) == c.row_state(0)
    mid = [int(n(zs[i:i + 1].copy())[0]) for i in range(100, 200)]
    c2 = compiled.CompiledSampler(cfg, V)
    c2.join([np.array([5], np.int32)] * 2, 3, [0, 1])
    c2.set_row_state(1, n.row_state(0))
    tail = [int(c2(np.concatenate([zs[i:i + 1], zs[i:i + 1]]))[1]) for i in range(200, 300)]
    assert head + mid + tail == whole


def test_bad_row_states_are_refused_before_any_change():
    V = 11
    s = compiled.CompiledSampler(SamplingConfig(seed=1, repetition_penalty=2.0,
                                                repetition_window=5), V)
    s.join([np.array([1, 2], np.int32)], 1, [0])
    assert s.row_state(0) == {"seed": 1, "row": 0, "coins": 0, "window": [1, 2]}
    s.set_row_state(0, {"coins": 17, "window": [3, 4, 5, 6, 7, 8]})
    assert s.row_state(0) == {"seed": 1, "row": 0, "coins": 17, "window": [4, 5, 6, 7, 8]}
    for bad in ({"coins": -1}, {"coins": 2**64}, {"seed": "x"}, {"window": [V]},
                {"window": [-1]}, {"coins": True}, "no"):
        with pytest.raises(ConfigError):
            s.set_row_state(0, bad)
    assert s.row_state(0)["coins"] == 17
    for i in (1, -1):
        with pytest.raises(ConfigError):
            s.row_state(i)


def test_z_in_another_dtype_or_layout_and_wrong_shapes():
    V = 8
    cfg = SamplingConfig(seed=2, top_k=3)
    a, b = _both(cfg, V)
    for s in (a, b):
        s.join([np.array([0], np.int32)] * 2, 2, [0, 1])
    z = np.random.default_rng(0).standard_normal((V, 2)).T  # float64, not C-contiguous
    assert np.array_equal(a(z.astype(np.float32)), b(z.copy()))
    # sample is the C call itself (no Python frame); another dtype or layout is converted there
    assert b.sample == b._core.pick
    for zz in (z, z.astype(np.float32), np.asfortranarray(z.astype(np.float32))):
        assert np.array_equal(a.sample(zz.astype(np.float32)), b.sample(zz.copy()))
    with pytest.raises((TypeError, ValueError)):
        b(np.zeros((3, V), np.float32))  # 3 rows for a sampler of 2
    with pytest.raises((TypeError, ValueError)):
        b(np.zeros((2, V + 1), np.float32))


def test_the_factory_picks_the_core():
    cfg = SamplingConfig(seed=1, top_p=0.9)
    assert isinstance(make_sampler(cfg, 65), compiled.CompiledSampler)
    assert "compiled" in compiled.core_in_use()
    # greedy too (only the compiled core runs the loop in C: Generator.advance)
    assert isinstance(make_sampler(SamplingConfig(greedy=True), 65), compiled.CompiledSampler)
    assert isinstance(make_sampler(SamplingConfig(greedy=True, repetition_penalty=1.2), 65),
                      compiled.CompiledSampler)
    # typical-p over many ids: numpy's SIMD exp is the faster
    assert isinstance(make_sampler(SamplingConfig(typical_p=0.9), 512), compiled.CompiledSampler)
    assert type(make_sampler(SamplingConfig(typical_p=0.9), 513)) is Sampler


def test_charwright_pure_python_forces_numpy(monkeypatch):
    monkeypatch.setenv(compiled.PURE_ENV, "1")
    s = make_sampler(SamplingConfig(seed=1), 65)
    assert type(s) is Sampler
    assert compiled.core_in_use().startswith("numpy (CHARWRIGHT_PURE_PYTHON=1")


def test_a_config_the_core_does_not_cover_takes_numpy(monkeypatch):
    """A SamplingConfig field the C core has no setting for (F's regex, ...) away from its
    default sends the config to numpy."""
    assert compiled.covers(SamplingConfig(seed=1, top_p=0.5))
    monkeypatch.setattr(compiled, "COVERED", compiled.COVERED - {"top_p"})
    assert not compiled.covers(SamplingConfig(seed=1, top_p=0.5))
    assert compiled.covers(SamplingConfig(seed=1))  # top_p at its default
    assert type(make_sampler(SamplingConfig(seed=1, top_p=0.5), 65)) is Sampler


def test_without_the_extension_generate_uses_numpy_and_says_so(tmp_path):
    """The extension missing (an install without a C compiler): no error, the numpy path, and
    `charwright info`'s line says so."""
    code = (
        "import sys\n"
        "sys.modules['charwright.runtime.sampling._speedups'] = None  # import fails\n"
        "import charwright.runtime as cw\n"
        "from charwright.runtime.sampling import compiled\n"
        "from charwright.runtime.sampling.config import Sampler, SamplingConfig, make_sampler\n"
        "assert compiled._speedups is None\n"
        "assert type(make_sampler(SamplingConfig(seed=1), 65)) is Sampler\n"
        "print(compiled.core_in_use())\n"
        "print(repr(cw.load().generate('ROMEO:', 40, cw.SamplingConfig(seed=1, top_p=0.9))))\n")
    pure = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert pure.returncode == 0, pure.stderr
    line, text = pure.stdout.splitlines()[0], pure.stdout.splitlines()[1]
    assert line.startswith("numpy (the compiled core is not importable")
    import charwright.runtime as cw

    assert repr(cw.load().generate("ROMEO:", 40, cw.SamplingConfig(seed=1, top_p=0.9))) == text


def test_charwright_info_names_the_core():
    from click.testing import CliRunner

    from charwright.runtime.commands.info import info

    out = CliRunner().invoke(info, []).output
    assert "sampler     compiled C" in out


@pytest.mark.parametrize("setting", [dict(regex=r"(ab|cd)+e?[a-e]{0,3}"),
                                     dict(choices=["abc", "abd", "ee", "dcba"], top_p=0.9),
                                     dict(regex=r"[a-c]*d", repetition_penalty=1.5,
                                          temperature=0.7, top_k=3)],
                         ids=["regex", "choices-top-p", "regex-chain"])
def test_a_regex_is_the_c_chain_s_allowed_mask(setting):
    """A regex or choices: numpy's RegexMask becomes the C chain's allowed-ids mask (right after
    the penalty, where RegexMask sits): the same ids as numpy, rows with their own length
    budgets joining and leaving, the row state's "dfa" carried over."""
    from charwright.runtime.vocab import Vocabulary

    vocab = Vocabulary.from_text("abcdef \n")
    V = vocab.size
    cfg = SamplingConfig(seed=3, **setting)
    s = make_sampler(cfg, vocab)
    assert isinstance(s, compiled.CompiledSampler) and s.constraint is not None
    a = Sampler(cfg, vocab)
    rng = np.random.default_rng(8)
    rows = 40
    prompts = [rng.integers(0, V, 4).astype(np.int32) for _ in range(rows)]
    budget = rng.integers(12, 30, rows)
    for x in (a, s):
        x.join(prompts, 3, range(rows), budget)
    for step in range(10):
        z = _logits(rng, a.rows, V, int(rng.integers(0, 4)))
        assert np.array_equal(a(z.copy()), s(z.copy())), step
        if step == 4:
            keep = np.arange(0, rows, 2)
            for x in (a, s):
                x.take(keep)
                x.join(prompts[:3], 5, [100, 101, 102], 20)
    for i in (0, 5, a.rows - 1):
        assert a.row_state(i) == s.row_state(i) and "dfa" in s.row_state(i)
    with pytest.raises(ConfigError):
        s.set_row_state(0, {"dfa": 10**6})
    with pytest.raises(ConfigError):  # the shortest match does not fit the limit
        make_sampler(cfg, vocab).join([np.array([0], np.int32)], 1, [0], 0)


EXTREME_ROWS = {
    "all -inf": [-np.inf] * 6,
    "one finite": [-np.inf, -np.inf, 2.0, -np.inf, -np.inf, -np.inf],
    "all equal": [1.5] * 6,
    "+inf": [0.0, np.inf, 1.0, np.inf, -np.inf, 3.0],
    "float32 extremes": [3.4e38, -3.4e38, 3.4e38, 0.0, -0.0, 1e-45],
    "zeros": [0.0, -0.0, 0.0, -0.0, 0.0, 0.0],
    "wide spread": [0.0, -40.0, -31.9, -32.0, -32.1, -1e4],
}


@pytest.mark.parametrize("setting", [s for s in SETTINGS if "typical_p" not in s]
                         + [dict(top_k=10**30), dict(top_k=6, top_p=1.0)],
                         ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()) or "plain")
def test_extreme_rows_give_numpy_s_ids(setting):
    """Rows a constraint, a filter or a broken model can make: all -inf, +inf, float32's
    largest, signed zeros, ids beyond the weight cut; 20 draws each, as numpy (warnings
    numpy raises on inf - inf are the reference's business). Not typical-p: these rows are
    all ties, among which numpy's order is not defined (SAMPLING.md step 7)."""
    z = np.array(list(EXTREME_ROWS.values()), np.float32)
    cfg = SamplingConfig(seed=11, **setting)
    a, b = _both(cfg, z.shape[1])
    for s in (a, b):
        s.join([np.array([1, 2], np.int32)] * len(z), 11, range(len(z)))
    with np.errstate(all="ignore"):
        for _ in range(20):
            assert np.array_equal(a(z.copy()), b(z.copy()))


def test_a_build_from_other_sources_is_left_unused(monkeypatch):
    """The extension carries the sha256 of the sources it was built from; once sampler.h or
    _speedups.c differ (an editable tree edited since pip install -e .), generate uses numpy
    and `charwright info` says to rebuild."""
    assert compiled._speedups.SOURCE_SHA256 == compiled._sources_sha256()
    assert not compiled._stale()
    monkeypatch.setattr(compiled, "_sources_sha256", lambda: "0" * 64)
    assert compiled._stale()
    monkeypatch.setattr(compiled, "STALE", True)
    monkeypatch.setattr(compiled, "_speedups", None)
    assert type(make_sampler(SamplingConfig(seed=1, top_p=0.9), 65)) is Sampler
    assert "rebuild it with pip install -e ." in compiled.core_in_use()


def test_a_call_from_another_thread_while_a_step_runs_is_refused():
    """A large step releases the GIL; a call on the same sampler from another thread meanwhile
    raises RuntimeError (one call at a time) instead of racing on the rows' buffers."""
    import threading

    V, rows = 4000, 64
    s = compiled.CompiledSampler(SamplingConfig(seed=1, top_p=0.9, repetition_penalty=1.2), V)
    s.join([np.array([1], np.int32)] * rows, 1, range(rows))
    z = (np.random.default_rng(0).standard_normal((rows, V)) * 3).astype(np.float32)
    stop, refused, errors = threading.Event(), [], []

    def other():
        while not stop.is_set():
            try:
                s.row_state(0)
                s.sample(z.copy())
            except RuntimeError as e:
                refused.append(str(e))
            except Exception as e:  # noqa: BLE001 - anything else is the failure
                errors.append(repr(e))

    t = threading.Thread(target=other)
    t.start()
    try:
        for _ in range(40):
            try:
                assert len(s.sample(z.copy())) == rows
            except RuntimeError as e:
                refused.append(str(e))
    finally:
        stop.set()
        t.join()
    assert not errors
    assert refused and all("in use by another thread" in r for r in refused)
    assert s.rows == rows and len(s.row_state(rows - 1)["window"]) >= 1


# --- the review's findings (issue 21 item 1) -------------------------------------------------


def test_pick_refuses_rows_changed_by_its_empty_callback():
    """Core.pick calls set_fast's `empty` after checking z against the rows; an `empty` that
    joins rows meanwhile made the C chain walk 1,001 rows of a [1, V] z (heap overflow). Now
    the call is refused and the core's rows stay usable."""
    S = compiled._speedups
    c = S.Core(1.0, 0, 1.0, 0.0, 1.0, 1.0, 64, 0, 65)
    c.join([np.zeros(1, np.int32)], np.ones(1, np.uint64), np.zeros(1, np.uint64))

    def evil_empty(n, dt):
        c.join([np.zeros(1, np.int32)] * 1000, np.ones(1000, np.uint64),
               np.zeros(1000, np.uint64))
        return np.empty(c.rows, np.int64)

    c.set_fast(evil_empty, np.dtype(np.int64), compiled._sample)
    with pytest.raises((TypeError, RuntimeError)):
        c.pick(np.zeros((1, 65), np.float32))
    assert c.rows == 1001
    c.set_fast(np.empty, np.dtype(np.int64), compiled._sample)
    assert c.pick(np.zeros((1001, 65), np.float32)).shape == (1001,)

    def swapping_empty(n, dt):  # replaces the callables pick is using: they stay alive
        c.set_fast(lambda n, dt: np.empty(n, dt), np.dtype(np.int64), compiled._sample)
        return np.empty(n, dt)

    c.set_fast(swapping_empty, np.dtype(np.int64), compiled._sample)
    assert c.pick(np.zeros((1001, 65), np.float32)).shape == (1001,)


@pytest.mark.parametrize("p", [1e-45, 1e-46, 1e-300])
def test_a_tiny_top_p_keeps_only_the_max_in_both_cores(p):
    """float32(top_p * (1 - 2**-16)) is 0 below ~7e-46: C took that for "top-p off"."""
    a, b = _both(SamplingConfig(top_p=p, temperature=100.0), 65)
    for s in (a, b):
        s.join([[1]] * 4, 3, range(4))
    rng = np.random.default_rng(0)
    for _ in range(30):
        z = rng.standard_normal((4, 65)).astype(np.float32)
        x, y = a(z.copy()), b(z.copy())
        assert np.array_equal(x, y) and np.array_equal(y, z.argmax(1))


def _cc():
    import shutil

    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        if CI:
            pytest.fail("CI=true: a C compiler is required")
        pytest.skip("no C compiler")
    return cc


def test_sampler_h_refuses_fast_math_and_setup_py_turns_it_off(tmp_path):
    """-ffast-math / -Ofast in CFLAGS broke the bit-exact chain silently (349 configs differed):
    sampler.h now stops the build under __FAST_MATH__, and setup.py passes -fno-fast-math
    after the user's CFLAGS, so CFLAGS=-Ofast still builds the exact core."""
    import ast
    from pathlib import Path

    root = Path(compiled.__file__).resolve().parents[2]
    tree = ast.parse((root / "setup.py").read_text())
    flags = [ast.literal_eval(n.value) for n in ast.walk(tree) if isinstance(n, ast.Assign)
             and any(isinstance(t, ast.Attribute) and t.attr == "extra_compile_args"
                     for t in n.targets)][0]
    src = tmp_path / "t.c"
    src.write_text('#include "sampler.h"\nint main(void) { return 0; }\n')
    cc, inc = _cc(), f"-I{root / 'runtime' / 'c'}"
    bad = subprocess.run([cc, "-Ofast", inc, "-fsyntax-only", str(src)], capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode != 0 and "-ffast-math" in bad.stderr
    # setuptools puts CFLAGS first, then extra_compile_args
    ok = subprocess.run([cc, "-Ofast", *flags, inc, "-fsyntax-only", str(src)],
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert "-fno-fast-math" in flags and "-ffp-contract=off" in flags


def test_ids_outside_the_vocabulary_and_bad_seeds_are_refused_by_both_samplers():
    """Prompt ids were cast to int32 (2**32 + 5 became 5), take([0.9]) truncated, seed or row
    -1 a raw OverflowError, a row-id count mismatch a raw ValueError; numpy's Sampler took
    seed -1 and extra row ids. Now both raise ConfigError, before any change."""
    cfg = SamplingConfig(repetition_penalty=1.3, repetition_window=4)
    bad = [([np.array([2**32 + 5, 2**40])], 1, [0]), ([np.array([65])], 1, [0]),
           ([np.array([-1])], 1, [0]), ([np.array([1.5])], 1, [0]),
           ([np.array([1])], -1, [0]), ([np.array([1])], 2**63, [0]),
           ([np.array([1])], 1, [-1]), ([np.array([1])], 1, [0.5]),
           ([np.array([1])] * 2, 1, [0]), ([np.array([1])], 1, [0, 1])]
    for s in _both(cfg, 65):
        for args in bad:
            with pytest.raises(ConfigError):
                s.join(*args)
            assert s.rows == 0
        s.join([np.array([], np.int32), np.array([64, 3])], 2**63 - 1, [0, 2**63 - 1])
        assert s.rows == 2 and s.row_state(1)["window"] == [64, 3]
        for keep in (np.array([0.9]), [2], [-1], np.array([True, False])):
            with pytest.raises(ConfigError):
                s.take(keep)
        assert s.rows == 2
        s.take(np.array([1]))
        assert s.rows == 1 and s.row_state(0)["row"] == 2**63 - 1


def test_a_read_only_float32_z_is_copied_not_refused():
    a, b = _both(SamplingConfig(seed=4, top_k=9, repetition_penalty=1.2), 65)
    for s in (a, b):
        s.join([np.array([1, 2], np.int32)] * 3, 4, range(3))
    rng = np.random.default_rng(1)
    for _ in range(20):
        z = rng.standard_normal((3, 65)).astype(np.float32)
        ro = z.copy()
        ro.flags.writeable = False
        assert np.array_equal(b(ro), a(z.copy()))
        assert np.array_equal(ro, z)  # left as it was


@pytest.mark.parametrize("value,pure", [("0", False), ("false", False), ("No", False),
                                        ("1", True), ("yes", True), ("true", True)])
def test_charwright_pure_python_values(monkeypatch, value, pure):
    """CHARWRIGHT_PURE_PYTHON=false forced numpy and the info line said "=1"."""
    monkeypatch.setenv(compiled.PURE_ENV, value)
    s = make_sampler(SamplingConfig(seed=1), 65)
    line = compiled.core_in_use()
    if pure:
        assert type(s) is Sampler and f"{compiled.PURE_ENV}={value};" in line
    else:
        assert isinstance(s, compiled.CompiledSampler) and line.startswith("compiled C")


def test_nan_logits_are_the_documented_difference():
    """SAMPLING.md: NaN logits are outside the bit-exact contract. The C chain never takes a
    NaN id (NaN is never the largest); numpy's argmax takes the first NaN. This pins the C
    side of that sentence (a change to either core shows here)."""
    z = np.array([[0.0, np.nan, 3.0, 1.0] + [-5.0] * 61], np.float32)
    for cfg in (SamplingConfig(greedy=True, repetition_penalty=1.2),
                SamplingConfig(seed=1, top_k=3), SamplingConfig(seed=2, temperature=0.5)):
        s = compiled.CompiledSampler(cfg, 65)
        s.join([np.array([9], np.int32)], 1, [0])
        assert all(int(s(z.copy())[0]) != 1 for _ in range(50))
    g = Sampler(SamplingConfig(greedy=True, repetition_penalty=1.2), 65)
    g.join([np.array([9], np.int32)], 1, [0])
    assert int(g(z.copy())[0]) == 1
