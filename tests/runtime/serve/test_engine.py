"""The engine without HTTP: rows join at the next step and leave when done, seeds per row, a
bounded queue, cancellation within one step, draining and aborts."""

import time

import numpy as np
import pytest

from bundle_factory import make_bundle
from charwright.runtime import SamplingConfig, load
from charwright.runtime.serve.engine import Engine
from charwright.runtime.serve.request import Draining, QueueFull
from charwright.runtime.errors import ConfigError
from fakes import scripted_model


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return load(make_bundle(tmp_path_factory.mktemp("engine") / "tiny", units=32),
                backend="numpy")


@pytest.fixture
def engine(model):
    e = Engine(model, max_batch=16, max_queue=4).start()
    yield e
    e.close()


def test_seeded_rows_equal_model_complete_whatever_the_batch(model, engine):
    cfg = SamplingConfig(temperature=0.9, top_k=5, seed=11)
    ref = model.complete(["abc "] * 3, 120, cfg)
    noise = [engine.submit(["hg"], n=2, max_chars=300, sampling=SamplingConfig(seed=i))
             for i in range(3)]
    req = engine.submit(["abc "], n=3, max_chars=120, sampling=cfg)
    assert req.wait(10) == "ok" and all(r.wait(10) == "ok" for r in noise)
    assert [c.text for c in req.completions()] == [c.text for c in ref]
    assert [c.finish_reason for c in req.completions()] == [c.finish_reason for c in ref]


def test_events_stream_the_text_in_order(model, engine):
    req = engine.submit(["ab", "cd"], n=2, max_chars=50, sampling=SamplingConfig(seed=3))
    texts = {}
    finals = {}
    for c, piece, fin in req.events_blocking(timeout=10):
        texts[c] = texts.get(c, "") + piece
        if fin:
            finals[c] = fin
    assert req.outcome == "ok" and sorted(texts) == [0, 1, 2, 3]
    assert [texts[i] for i in range(4)] == [c.text for c in req.completions()]
    assert finals == {i: "length" for i in range(4)}
    # choice p*n + j is row (seed, j) of prompt p, as `generate PROMPT_p --num-samples n`
    ref = model.complete(["cd", "cd"], 50, SamplingConfig(seed=3))
    assert [texts[2], texts[3]] == [c.text for c in ref]


def test_a_cancelled_request_leaves_within_one_step():
    m = scripted_model("abcdefg")
    e = Engine(m, max_batch=8, max_queue=0)
    e.start()
    try:
        req = e.submit(["a"], max_chars=10**9, sampling=SamplingConfig(greedy=True))
        while not req.events:
            time.sleep(0.001)
        backend = e._batch.gen.backend
        e.cancel(req)
        assert req.wait(5) == "cancelled"
        calls = len(backend.calls)
        time.sleep(0.05)
        assert len(backend.calls) == calls and e.running_rows == 0 and e.idle()
    finally:
        e.close()


def test_the_queue_is_bounded():
    e = Engine(scripted_model("abcdefg"), max_batch=2, max_queue=1).start()
    try:
        greedy = SamplingConfig(greedy=True)
        a = e.submit(["a"], n=2, max_chars=10**9, sampling=greedy)  # fills the batch
        while e.running_rows < 2:
            time.sleep(0.001)
        b = e.submit(["b"], max_chars=5, sampling=greedy)  # waits
        with pytest.raises(QueueFull):
            e.submit(["c"], max_chars=5, sampling=greedy)
        assert e.waiting_requests == 1
        e.cancel(a)
        assert b.wait(5) == "ok" and b.completions()[0].text == "cdefg"
        with pytest.raises(ConfigError, match="3 rows"):
            e.submit(["a"], n=3, sampling=greedy)
    finally:
        e.close()


def test_drain_refuses_new_requests_and_abort_ends_the_rest():
    e = Engine(scripted_model("abcdefg"), max_batch=4, max_queue=4).start()
    try:
        req = e.submit(["a"], max_chars=10**9, sampling=SamplingConfig(greedy=True))
        e.drain()
        with pytest.raises(Draining):
            e.submit(["a"], max_chars=3)
        e.abort_all("shutdown")
        assert req.wait(5) == "shutdown" and e.idle()
    finally:
        e.close()


def test_timeouts_end_a_request():
    e = Engine(scripted_model("abcdefg"), max_batch=4, max_queue=4).start()
    try:
        req = e.submit(["a"], max_chars=10**9, sampling=SamplingConfig(greedy=True),
                       timeout=0.05)
        assert req.wait(5) == "timeout"
    finally:
        e.close()


def test_bad_values_raise_before_queueing(model, engine):
    with pytest.raises(ConfigError):
        engine.submit(["xyz"])  # outside the vocabulary
    with pytest.raises(ConfigError, match="max_chars"):
        engine.submit(["a"], max_chars=0)
    with pytest.raises(ConfigError, match="no prompt"):
        engine.submit([])
    assert engine.idle()
    assert np.all(np.diff([c for _, c in engine.batch_size.cumulative()]) >= 0)


def test_a_failing_step_ends_the_running_requests_and_the_engine_goes_on(model, monkeypatch):
    """An exception inside a step (a backend error, say) must not kill the scheduler: the
    running request ends with outcome "error", and the next request runs as usual."""
    from charwright.runtime.generate.generator import Generator

    real, calls = Generator.step, []

    def flaky(self):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("boom")
        return real(self)

    monkeypatch.setattr(Generator, "step", flaky)
    e = Engine(model, max_batch=16, max_queue=4).start()
    try:
        first = e.submit(["ab"], n=1, max_chars=100, sampling=SamplingConfig(seed=1))
        assert first.wait(10) == "error"
        assert isinstance(e.last_error, RuntimeError) and str(e.last_error) == "boom"
        cfg = SamplingConfig(seed=2, temperature=0.9)
        second = e.submit(["cd"], n=1, max_chars=60, sampling=cfg)
        assert second.wait(10) == "ok"
        assert second.completions()[0].text == model.complete(["cd"], 60, cfg)[0].text
    finally:
        e.close()


def test_samplers_of_finished_requests_are_not_kept(model, engine):
    """One Sampler per distinct configuration while it has rows, not for ever: clients that vary
    the temperature from request to request must not grow the engine's memory."""
    for i in range(40):
        r = engine.submit(["ab"], n=1, max_chars=3,
                          sampling=SamplingConfig(seed=i, temperature=0.5 + i / 1000))
        assert r.wait(10) == "ok"
    assert len(engine._batch._samplers) == 0


# ---- priming: in slices beside the running batch, cancelled with its request -------------------

class _SlowStep:
    """Wraps a backend: every step takes at least `seconds` (a model big enough for priming to
    take a while, at a cost a test can afford)."""

    def __init__(self, inner, seconds):
        self.inner, self.seconds = inner, seconds
        self.vocab_size, self.calls = inner.vocab_size, 0

    def initial_state(self, n):
        return self.inner.initial_state(n)

    def step(self, tokens, state):
        self.calls += 1
        time.sleep(self.seconds)
        return self.inner.step(tokens, state)


def test_the_primer_gives_each_prompt_what_prime_gives_it_alone(model):
    from charwright.runtime.generate.priming import Primer, prime

    backend = model.backend
    prompts = [model.encode_prompt(p) for p in ("abc ", "a", "hg" * 300, "cab" * 11)]
    primer = Primer(backend)
    keys = primer.add(prompts[:2])
    got = {}
    for round_ in range(10_000):
        if round_ == 3:  # rows join while others prime; one leaves unprimed
            keys += primer.add(prompts[2:] + [prompts[0]])
            primer.remove([keys[-1]])
        for key, logits, state in primer.advance(0.0):  # one step per call
            got[key] = (logits, state)
        if not len(primer):
            break
    assert sorted(got) == keys[:4] and primer.ids_left == 0
    for key, ids in zip(keys, prompts):
        z, s = prime(backend, [ids])
        np.testing.assert_array_equal(got[key][0], z[0])
        np.testing.assert_array_equal(got[key][1], s[0])


def test_a_long_prompt_holds_back_no_one_and_stops_priming_when_cancelled(model):
    """A request with a long prompt primes in slices: a short request sent after it is answered
    while it still primes, running rows keep stepping, and cancelling it stops its priming at
    once (the primer thread used to run every prompt to its end, FIFO: 27 s for a 994,000-char
    prompt whose client had left, and every request behind it waited)."""
    slow = _SlowStep(model.backend, 0.0002)
    m = type(model).__new__(type(model))  # the module's model, stepping through `slow`
    m.__dict__.update(model.__dict__)
    m._shared, m._thread_safe = slow, True
    e = Engine(m, max_batch=8, max_queue=8).start()
    try:
        running = e.submit(["ab"], max_chars=10**9, sampling=SamplingConfig(seed=1))
        while not running.events:
            time.sleep(0.001)
        long = e.submit(["abc " * 10_000], max_chars=5, sampling=SamplingConfig(seed=2))
        while not e.priming_requests:
            time.sleep(0.001)
        short = e.submit(["hg"], max_chars=20, sampling=SamplingConfig(seed=3))
        assert short.wait(10) == "ok" and len(short.completions()[0].text) == 20
        # 40,000 ids at >= 0.2 ms a step take >= 8 s alone: the short one did not wait for them
        assert long.outcome is None and e.priming_requests == 1 and e.prompt_ids_left > 0
        produced = running.generated_chars() if running.streams else 0
        time.sleep(0.1)
        assert running.generated_chars() > produced  # the running row goes on meanwhile
        e.cancel(long)
        assert long.wait(5) == "cancelled"
        primed = e.prompt_ids_primed
        assert e.priming_requests == 0 and e.prompt_ids_left == 0 and primed < 40_000
        e.cancel(running)
        assert running.wait(5) == "cancelled"
        calls = slow.calls
        time.sleep(0.05)
        assert slow.calls == calls and e.prompt_ids_primed == primed and e.idle()
    finally:
        e.close()


def test_a_prompt_over_max_prompt_chars_is_refused(model):
    e = Engine(model, max_batch=4, max_queue=4, max_prompt_chars=10)
    with pytest.raises(ConfigError, match="prompt of 11 characters.*max_prompt_chars"):
        e.prepare(["abc ", "abc ", "abc"])
    assert e.prepare(["abc ", "abc ", "ab"]).prompt_chars == 10
    with pytest.raises(ConfigError, match="max_prompt_chars 0"):
        Engine(model, max_prompt_chars=0)
