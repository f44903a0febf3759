"""The compiled generation loop (Generator.advance over the sampling core's run_steps): the same
ids, state and sampler state as step() round by round, on every backend that offers fused_io;
its stops (end-of-sequence, limit), its refusals (None: the caller steps), and its errors."""

from __future__ import annotations

import numpy as np
import pytest

from charwright.runtime.backends.base import StepBackend
from charwright.runtime.errors import BundleError
from charwright.runtime.generate.generator import Generator
from charwright.runtime.model import load
from charwright.runtime.sampling import compiled
from charwright.runtime.sampling.config import Sampler, SamplingConfig, make_sampler

pytestmark = pytest.mark.skipif(not compiled.available(), reason="the compiled core is not built")

FILES = [("onnx", None), ("litert", "int8-dynamic"), ("litert", "float32")]
CONFIGS = [dict(greedy=True), dict(temperature=0.9, top_p=0.9),
           dict(temperature=1.1, top_k=20, repetition_penalty=1.3, repetition_window=8)]
PROMPTS = [[10, 20, 30], [5], [40, 41, 42, 43]]


@pytest.fixture(scope="module", params=FILES, ids=lambda f: f"{f[0]}-{f[1]}")
def model(request):
    backend, precision = request.param
    pytest.importorskip("ai_edge_litert" if backend == "litert" else "onnxruntime")
    return load(None, backend=backend, precision=precision)


def started(m, cfg, prompts):
    gen = Generator(m.backend)
    sampler = make_sampler(SamplingConfig(seed=3, **cfg), m.vocab.size)
    gen.add([np.asarray(p, np.int32) for p in prompts], sampler, 3)
    return gen, sampler


def rows_state(sampler, n):
    return [sampler.row_state(i) for i in range(n)]


@pytest.mark.parametrize("cfg", CONFIGS, ids=["greedy", "top-p", "top-k+penalty"])
@pytest.mark.parametrize("n_rows", [1, 3])
def test_advance_equals_step(model, cfg, n_rows):
    prompts = PROMPTS[:n_rows]
    ref, ref_s = started(model, cfg, prompts)
    gen, s = started(model, cfg, prompts)
    assert isinstance(s, compiled.CompiledSampler)
    want = np.stack([ref.step()[1] for _ in range(60)])
    got = []
    for limit in (1, 2, 7, 20, 30):  # 60 rounds, the first from the primed logits (z0)
        block = gen.advance(limit)
        assert block is not None and block.shape == (limit, n_rows)
        got.append(block)
    np.testing.assert_array_equal(np.concatenate(got), want)
    assert gen.state.tobytes() == ref.state.tobytes()  # bit for bit
    np.testing.assert_array_equal(gen.tokens, ref.tokens)
    assert rows_state(s, n_rows) == rows_state(ref_s, n_rows)
    # and the two go on the same after mixing the paths
    np.testing.assert_array_equal(gen.step()[1], ref.step()[1])
    np.testing.assert_array_equal(gen.advance(5), np.stack([ref.step()[1] for _ in range(5)]))


def test_advance_stops_after_the_end_of_sequence_round(model):
    ref, _ = started(model, dict(temperature=1.0), PROMPTS)
    want = np.stack([ref.step()[1] for _ in range(200)])
    eos = int(want[7, 1])  # an id some row picks in round 8 (maybe earlier too)
    first = int(np.flatnonzero((want == eos).any(axis=1))[0])
    gen, _ = started(model, dict(temperature=1.0), PROMPTS)
    block = gen.advance(200, eos)
    assert len(block) == first + 1  # the round that picked it is the last
    np.testing.assert_array_equal(block, want[: first + 1])
    np.testing.assert_array_equal(gen.advance(3), want[first + 1: first + 4])


def test_advance_declines_what_it_cannot_run(model):
    cfg = SamplingConfig(seed=1, temperature=0.8)
    gen = Generator(model.backend)
    assert gen.advance(5) is None  # no rows
    gen.add([np.array([1, 2], np.int32)], Sampler(cfg, model.vocab.size), 1)  # numpy sampler
    assert gen.advance(5) is None
    gen = Generator(model.backend)
    gen.add([np.array([1, 2], np.int32)], make_sampler(cfg, model.vocab.size), 1)
    assert gen.advance(0) is None
    gen.step()
    # a row joins with its primed logits beside a row that needs a step: declined, then step()
    gen.add([np.array([3], np.int32)], make_sampler(cfg, model.vocab.size), 1)
    assert gen.advance(5) is None  # two samplers share the batch
    regex = make_sampler(SamplingConfig(seed=1, regex="[a-z]+"), model.vocab)
    gen = Generator(model.backend)
    gen.add([np.array([1], np.int32)], regex, 1, max_chars=10)
    assert gen.advance(5) is None  # a regex's mask is made in Python each step
    np_gen = Generator(load(None, backend="numpy").backend)
    np_gen.add([np.array([1], np.int32)], make_sampler(cfg, 65), 1)
    assert np_gen.advance(5) is None  # numpy has no buffers to step in place


def test_partly_fresh_batch_is_declined_then_taken(model):
    cfg = dict(temperature=0.8)
    gen, s = started(model, cfg, PROMPTS[:1])
    ref, _ = started(model, cfg, PROMPTS[:1])
    gen.step(), ref.step()
    gen.add([np.array([7, 8], np.int32)], s, 3, row_ids=[1])
    ref.add([np.array([7, 8], np.int32)], ref._samplers[0], 3, row_ids=[1])
    assert gen.advance(4) is None
    np.testing.assert_array_equal(gen.step()[1], ref.step()[1])
    np.testing.assert_array_equal(gen.advance(4), np.stack([ref.step()[1] for _ in range(4)]))


class Failing(StepBackend):
    """A backend whose fused step fails on its third call."""

    def __init__(self, exc=RuntimeError("device lost")):
        super().__init__(4, 6, "float32", "fake")
        self.calls, self.exc = 0, exc
        self.bufs = (np.zeros(1, np.int32), np.zeros((1, 4), np.float32),
                     np.zeros((1, 6), np.float32), np.zeros((1, 4), np.float32))

    def step(self, tokens, state):
        return np.zeros((len(tokens), 6), np.float32), state.copy()

    def invoke(self):
        self.calls += 1
        if self.calls == 3:
            raise self.exc
        self.bufs[2][...] = np.arange(6, dtype=np.float32)

    def fused_io(self, batch):
        return (self.invoke, ()) + self.bufs if batch == 1 else None

    def step_failed(self, e):
        return BundleError(f"fake: {e}")


def test_an_invoke_error_is_the_backends_typed_error_and_the_core_stays_usable():
    be = Failing()
    gen = Generator(be)
    s = make_sampler(SamplingConfig(seed=1), 6)
    gen.add([np.array([1], np.int32)], s, 1, primed=(np.zeros((1, 6), np.float32),
                                                     np.zeros((1, 4), np.float32)))
    with pytest.raises(BundleError, match="fake: device lost"):
        gen.advance(10)
    s.sample(np.zeros((1, 6), np.float32))  # not left busy


def test_an_invoke_that_reenters_the_core_is_refused():
    be = Failing()
    s = make_sampler(SamplingConfig(seed=1), 6)
    be.invoke = lambda: s.sample(np.zeros((1, 6), np.float32))
    gen = Generator(be)
    gen.add([np.array([1], np.int32)], s, 1, primed=(np.zeros((1, 6), np.float32),
                                                     np.zeros((1, 4), np.float32)))
    with pytest.raises(BundleError, match="in use"):  # invoke's error, through step_failed
        gen.advance(3)
    assert s.sample(np.zeros((1, 6), np.float32)).shape == (1,)


def test_run_steps_refuses_bad_buffers():
    s = make_sampler(SamplingConfig(seed=1), 6)
    s.join([np.array([1], np.int32)], 1, [0])
    core = s._core
    tok, st = np.zeros(1, np.int32), np.zeros((1, 4), np.float32)
    lg, ns, out = np.zeros((1, 6), np.float32), np.zeros((1, 4), np.float32), np.zeros((5, 1),
                                                                                      np.int64)

    def call(**kw):
        a = dict(invoke=lambda: None, args=(), tok=tok, st=st, lg=lg, ns=ns, z0=None, limit=5,
                 eos=-1, out=out)
        a.update(kw)
        return core.run_steps(*a.values())

    assert call() == 5
    for bad in (dict(tok=np.zeros(1, np.int64)), dict(tok=np.zeros(2, np.int32)),
                dict(lg=np.zeros((1, 5), np.float32)), dict(lg=np.zeros((1, 6), np.float64)),
                dict(ns=np.zeros((1, 3), np.float32)), dict(out=np.zeros((4, 1), np.int64)),
                dict(out=np.zeros((5, 1), np.int32)), dict(z0=np.zeros((1, 7), np.float32)),
                dict(st=np.zeros((1, 4), np.float32)[:, ::2]), dict(invoke=3),
                dict(lg=np.zeros((1, 6), np.float32)[:, :].copy().view(np.int32))):
        with pytest.raises((TypeError, ValueError)):  # numpy's buffer refuses a strided one
            call(**bad)
    ro = np.zeros((1, 6), np.float32)
    ro.flags.writeable = False
    with pytest.raises((TypeError, ValueError, BufferError)):
        call(lg=ro)
    for limit in (0, -1, 2**62, 2**63 - 1):
        with pytest.raises(ValueError):
            call(limit=limit)
    assert call() == 5  # nothing left busy


def test_model_text_is_the_same_with_and_without_the_compiled_loop(model, monkeypatch):
    cfg = SamplingConfig(seed=11, temperature=0.9, top_p=0.95)
    runs = []
    for pure in ("0", "1"):  # 1: the numpy sampler, hence step() round by round
        monkeypatch.setenv("CHARWRIGHT_PURE_PYTHON", pure)
        runs.append(("".join(model.stream("ROMEO:", 300, cfg)),
                     model.generate_batch(["A", "BB", "CCC"], 120, cfg),
                     model.generate("ROMEO:", 300, cfg, stop=["\n\n", "the "])))
    assert runs[0] == runs[1]


@pytest.mark.parametrize("eos", [False, True])
@pytest.mark.parametrize("stop", [(), ("ab", "b\n")])
def test_push_many_equals_push_one_by_one(eos, stop):
    from charwright.runtime.generate.text_stream import TextStream
    from charwright.runtime.vocab import Vocabulary

    vocab = Vocabulary.from_text("ab\ncd", eos=eos)
    rng = np.random.default_rng(5)
    for trial in range(300):
        max_chars = int(rng.integers(1, 12))
        ids = rng.integers(0, vocab.size, int(rng.integers(1, 20))).tolist()
        one, many = TextStream(vocab, max_chars, stop), TextStream(vocab, max_chars, stop)
        text = ""
        for t in ids:
            text += one.push(t)
            if one.finish_reason is not None:
                break
        cut = int(rng.integers(0, len(ids) + 1))  # in two calls, at any place
        got = many.push_many(ids[:cut]) + many.push_many(ids[cut:])
        assert (got, many.finish_reason, many.tokens) == (text, one.finish_reason, one.tokens)


def test_a_backend_of_the_step_contract_alone_is_stepped():
    """A duck-typed backend (step and initial_state only, no StepBackend base): advance says
    None and run() steps it."""
    from charwright.runtime.generate.generator import run
    from charwright.runtime.generate.text_stream import TextStream
    from charwright.runtime.vocab import Vocabulary

    class Plain:
        vocab_size, state_size = 3, 2

        def initial_state(self, n):
            return np.zeros((n, 2), np.float32)

        def step(self, tokens, state):
            z = np.full((len(tokens), 3), -9.0, np.float32)
            z[np.arange(len(tokens)), (tokens + 1) % 3] = 0.0
            return z, state + 1

    gen = Generator(Plain())
    s = make_sampler(SamplingConfig(greedy=True), 3)
    keys = gen.add([np.array([0], np.int32)], s, 0)
    assert gen.advance(4) is None
    text = "".join(p for _, p in run(gen, {keys[0]: TextStream(Vocabulary(("a", "b", "c")), 5)}))
    assert text == "bcabc"


def test_a_signal_between_rounds_interrupts_the_compiled_loop():
    """Ctrl-C during a long compiled call: KeyboardInterrupt comes out between two steps."""
    import os
    import signal

    class Interrupted(BaseException):
        pass

    def handler(signum, frame):
        raise Interrupted

    be = Failing(exc=None)
    be.invoke = lambda: (setattr(be, "calls", be.calls + 1),
                         be.calls == 3 and os.kill(os.getpid(), signal.SIGINT))
    gen = Generator(be)
    gen.add([np.array([1], np.int32)], make_sampler(SamplingConfig(seed=1), 6), 1,
            primed=(np.zeros((1, 6), np.float32), np.zeros((1, 4), np.float32)))
    old = signal.signal(signal.SIGINT, handler)  # whatever handler an earlier test left
    try:
        with pytest.raises(Interrupted):
            gen.advance(10_000)
    finally:
        signal.signal(signal.SIGINT, old)
    assert be.calls < 10


def test_onnx_keeps_a_few_fused_bindings_only():
    """A server's batch size wanders over 1..max_batch: the ONNX backend's compiled-loop
    bindings (buffers of batch x (state + vocab)) are kept for the latest few sizes only."""
    pytest.importorskip("onnxruntime")
    from charwright.runtime.backends import onnx as ox

    be = load(None, backend="onnx").backend
    for b in range(1, 40):
        io = be.fused_io(b)
        assert io[2].shape == (b,) and io[4].shape == (b, be.vocab_size)
    fused = [k for k in be._local.ios if k[0] == "fused"]  # beyond step()'s own bindings
    assert fused == [("fused", b) for b in range(40 - ox.FUSED_KEPT, 40)]
    assert (1, be.state_size) in be._local.ios  # batch 1: step()'s binding, shared
    assert be.fused_io(ox.FUSED_MAX_BATCH + 1) is None
    assert be.fused_io(0) is None


def test_only_the_steps_own_errors_become_the_backends_typed_error():
    """A caller's mistake (one sampler driven by two generators) stays what it is; only what
    the backend's step raised goes through step_failed."""
    be = Failing()
    s = make_sampler(SamplingConfig(seed=1), 6)
    gen = Generator(be)
    gen.add([np.array([1], np.int32)], s, 1, primed=(np.zeros((1, 6), np.float32),
                                                     np.zeros((1, 4), np.float32)))
    s.join([np.array([2], np.int32)], 1, [1])  # the sampler now has 2 rows, the batch 1
    with pytest.raises((TypeError, ValueError, RuntimeError)) as e:
        gen.advance(3)
    assert not isinstance(e.value, BundleError)


def test_several_rows_with_stop_strings_fuse_on_a_batch_invariant_file_only(monkeypatch):
    """On a file that is not batch-invariant a row that stops within a compiled call would
    stay in the batch to its end and change the other rows' logits: run() steps instead."""
    from charwright.runtime.generate.batch import start
    from charwright.runtime.generate.generator import run

    m = load(None, backend="onnx")
    calls = []
    real = Generator.advance

    def counting(self, limit, eos=-1):
        out = real(self, limit, eos)
        calls.append(len(self.keys) > 1 and out is not None)  # several rows, fused
        return out

    monkeypatch.setattr(Generator, "advance", counting)
    cfg = SamplingConfig(seed=3, temperature=0.9)
    texts = {}
    for invariant in (True, False):
        monkeypatch.setattr(m.backend, "batch_invariant", invariant)
        calls.clear()
        gen, streams, keys = start(m.backend, m.vocab, ["A", "B", "C"], 80, cfg, stop=("e",))
        got = {k: "" for k in keys}
        for k, piece in run(gen, streams):
            got[k] += piece
        texts[invariant] = [got[k] for k in keys]
        assert any(calls) == invariant  # one row left alone fuses either way
    assert texts[True] == texts[False]  # the demo's file is invariant: the same text


def test_run_grows_calls_only_while_they_stay_short(monkeypatch):
    """A slow step: the compiled calls stop growing at about CHUNK_SECONDS, so text still
    streams (a call of 64 steps of 10 ms would hold it back 0.64 s)."""
    import time as _time

    from charwright.runtime.generate import generator as g
    from charwright.runtime.generate.text_stream import TextStream

    class Slow(Failing):
        def __init__(self):
            super().__init__()
            self.bufs = (np.zeros(1, np.int32), np.zeros((1, 4), np.float32),
                         np.zeros((1, 65), np.float32), np.zeros((1, 4), np.float32))
            self.vocab_size = 65

        def invoke(self):
            _time.sleep(0.004)

    be = Slow()
    gen = Generator(be)
    keys = gen.add([np.array([1], np.int32)], make_sampler(SamplingConfig(seed=1), 65), 1,
                   primed=(np.zeros((1, 65), np.float32), np.zeros((1, 4), np.float32)))
    sizes = []
    real = Generator.advance
    monkeypatch.setattr(Generator, "advance",
                        lambda self, limit, eos=-1: sizes.append(limit) or real(self, limit, eos))
    vocab = load(None, backend="numpy").vocab
    list(g.run(gen, {keys[0]: TextStream(vocab, 60)}))
    assert max(sizes) <= 4  # 4 ms steps: calls of 1, 2 (8 ms), then no longer than ~10 ms
