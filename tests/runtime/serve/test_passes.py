"""The scheduler's multi-round passes (Generator.advance: several steps in one compiled call where
the batch takes it) and --stream-interval auto: the text is the one offline generation gives,
piece by piece and in order; a stop string met within a pass cuts the text exactly and leaves
nothing behind that changes the next request; a cancel ends a request mid-run at the next pass;
a request that joins while passes run gets its first text at once and its own text; the auto
interval's bounds; a real server's stream at the default interval comes in coalesced frames.

The demo bundle on onnxruntime (the backend with fused_io; the tiny numpy bundles of the other
serve tests never take the compiled loop), in-process engines and one server process, bounded."""

from __future__ import annotations

import time
from types import SimpleNamespace

import httpx
import pytest

from charwright.runtime.model import load
from charwright.runtime.sampling import compiled
from charwright.runtime.sampling.config import SamplingConfig
from charwright.runtime.serve.engine import Engine
from charwright.runtime.serve.relay import TIMER_SECONDS, auto_interval
from charwright.runtime.serve.state import AUTO_INTERVAL_MAX, AUTO_INTERVAL_MIN
from serve_util import ServerProcess, sse_events

pytestmark = [pytest.mark.serve,
              pytest.mark.skipif(not compiled.available(), reason="the compiled core is not built")]
PROMPT = "ROMEO:"


def cfg(seed: int) -> SamplingConfig:
    return SamplingConfig(temperature=0.9, seed=seed)


@pytest.fixture(scope="module")
def model():
    pytest.importorskip("onnxruntime")
    return load(None, backend="onnx")


@pytest.fixture
def engine(model):
    e = Engine(model, max_batch=8, max_queue=8).start()
    yield e
    e.close()


def pieces(req, timeout: float = 60.0) -> list:
    """Choice 0's pieces, in the order the engine appended them; checks the request ended ok."""
    out = [p for c, p, _ in req.events_blocking(timeout) if p]
    assert req.outcome == "ok"
    return out


def test_a_stream_runs_in_multi_round_passes_and_gives_the_offline_text_in_order(model, engine):
    want = model.generate(PROMPT, 3000, cfg(5))
    req = engine.submit([PROMPT], max_chars=3000, sampling=cfg(5))
    got = pieces(req)
    assert "".join(got) == want  # nothing lost, repeated or reordered
    assert len(got) > 10  # the text comes in passes, not all at the end
    assert engine.steps >= len(req.streams[0].tokens) - 1  # (the first comes from the prompt)
    assert engine.passes * 4 < engine.steps, (engine.passes, engine.steps)  # compiled passes
    assert req.completions()[0].finish_reason == "length"


def _stop_in(text: str, after: int) -> tuple[str, int]:
    """A 3-character string whose first occurrence in `text` is past `after`, and where."""
    for i in range(after, len(text) - 3):
        s = text[i:i + 3]
        if text.find(s) == i and "\n" not in s:
            return s, i
    raise AssertionError("no fresh 3-character string in the text")


def test_a_stop_string_within_a_pass_cuts_exactly_and_the_next_request_is_unchanged(model,
                                                                                   engine):
    full = model.generate(PROMPT, 2000, cfg(8))
    stops = [_stop_in(full, after) for after in (300, 700, 1100)]
    for stop, at in stops:
        req = engine.submit([PROMPT], max_chars=2000, sampling=cfg(8), stop=(stop,))
        got = "".join(pieces(req))
        assert got == full[:at] == model.generate(PROMPT, 2000, cfg(8), stop=(stop,))
        assert req.completions()[0].finish_reason == "stop"
    # the rounds drawn past a stop within a pass left with the row: the same request without
    # a stop, and another seed, are what they are offline
    passes = engine.passes
    assert "".join(pieces(engine.submit([PROMPT], max_chars=2000, sampling=cfg(8)))) == full
    assert "".join(pieces(engine.submit([PROMPT], max_chars=500, sampling=cfg(9)))) \
        == model.generate(PROMPT, 500, cfg(9))
    assert engine.passes - passes < (2000 + 500) / 4  # these ran in compiled passes too


def test_a_cancel_ends_a_running_request_at_the_next_pass(engine):
    req = engine.submit([PROMPT], max_chars=5_000_000, sampling=cfg(3))
    end = time.monotonic() + 30
    while not req.events and time.monotonic() < end:
        time.sleep(0.005)
    time.sleep(0.05)  # passes of several rounds run now
    t0 = time.monotonic()
    engine.cancel(req)
    while req.outcome is None and time.monotonic() - t0 < 5:
        time.sleep(0.001)
    assert req.outcome == "cancelled" and time.monotonic() - t0 < 0.25
    generated = req.generated_chars()
    time.sleep(0.05)
    assert req.generated_chars() == generated < 5_000_000  # nothing stepped it since
    assert engine.running_rows == 0


def test_a_request_joining_while_passes_run_starts_at_once_with_its_own_text(model, engine):
    long_want = model.generate(PROMPT, 20_000, cfg(21))
    short_want = model.generate("JULIET:", 400, cfg(22))
    a = engine.submit([PROMPT], max_chars=20_000, sampling=cfg(21))
    end = time.monotonic() + 30
    while len(a.events) < 3 and time.monotonic() < end:  # a runs in compiled passes by now
        time.sleep(0.002)
    t0 = time.monotonic()
    b = engine.submit(["JULIET:"], max_chars=400, sampling=cfg(22))
    first = None
    got_b = []
    for _, piece, _ in b.events_blocking(30):
        if piece and first is None:
            first = time.monotonic() - t0
        got_b.append(piece)
    assert a.outcome is None  # b ran beside a, not after it
    assert first is not None and first < 0.25, first
    assert "".join(got_b) == short_want
    assert "".join(pieces(a)) == long_want


def _state(*engines) -> SimpleNamespace:
    models = {f"m{i}": SimpleNamespace(engine=SimpleNamespace(running_rows=rows,
                                                               pass_seconds=seconds))
              for i, (rows, seconds) in enumerate(engines)}
    return SimpleNamespace(models=models)


def test_the_auto_interval_follows_the_slowest_running_pass_within_its_bounds():
    assert AUTO_INTERVAL_MIN == 0.005 and AUTO_INTERVAL_MAX == 0.05
    assert auto_interval(_state())() == AUTO_INTERVAL_MIN  # nothing runs
    assert auto_interval(_state((1, 0.001)))() == AUTO_INTERVAL_MIN  # the demo, compiled
    assert auto_interval(_state((64, 0.0004)))() == AUTO_INTERVAL_MIN  # the demo, 64 rows
    assert auto_interval(_state((8, 0.004)))() == pytest.approx(0.008)  # a slower model
    assert auto_interval(_state((1, 3.0)))() == AUTO_INTERVAL_MAX
    # the slowest model with rows running sets it; an idle one does not
    assert auto_interval(_state((1, 0.006), (64, 0.0004)))() == pytest.approx(0.012)
    assert auto_interval(_state((0, 0.02), (2, 0.003)))() == pytest.approx(0.006)
    state = _state((1, 0.001))
    tick = auto_interval(state)
    state.models["m0"].engine.pass_seconds = 0.004  # read at each tick, not once
    assert tick() == pytest.approx(0.008)


def _timed(server, body):
    """(frames with text, seconds from the request to [DONE], text per choice)."""
    t0 = time.monotonic()
    frames, texts = 0, {}
    with httpx.stream("POST", server.url + "/v1/completions", json={**body, "stream": True},
                      timeout=60) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            for e in sse_events([line]):
                if e == "[DONE]":
                    continue
                got = [c for c in e["choices"] if c["text"]]
                frames += bool(got)
                for c in got:
                    texts[c["index"]] = texts.get(c["index"], "") + c["text"]
    return frames, time.monotonic() - t0, texts


def test_a_real_server_streams_the_demo_in_coalesced_frames_at_the_default_interval():
    server = ServerProcess("--max-batch", "32").start()
    try:
        for n, chars in ((1, 6000), (16, 3000)):  # compiled passes, one row and sixteen
            body = {"model": "demo", "prompt": PROMPT, "max_tokens": chars, "seed": 4,
                    "temperature": 0.9, "n": n}
            frames, seconds, texts = _timed(server, body)
            whole = httpx.post(server.url + "/v1/completions", json=body, timeout=60).json()
            assert texts == {c["index"]: c["text"] for c in whole["choices"]}  # nothing lost
            assert all(len(t) == chars for t in texts.values())
            # the first frame at once, then at most one per AUTO_INTERVAL_MIN, and the last
            assert frames <= 3 + seconds / AUTO_INTERVAL_MIN, (n, frames, seconds)
            assert frames < chars / 10
    finally:
        assert server.stop() == 0, server.stderr()


def test_an_interval_below_a_millisecond_still_spaces_the_frames(bundle):
    """uvloop's timers count whole milliseconds (call_later(0.0005) fires at the next loop
    iteration): the clock waits TIMER_SECONDS at least, so --stream-interval 0.0005 on a model
    that steps every ~50 us does not mean a frame per step (it did: 4,904 frames of 6,000
    characters in 0.5 s)."""
    server = ServerProcess("-b", str(bundle), "--backend", "numpy",
                           "--stream-interval", "0.0005").start()
    try:
        body = {"prompt": "abc ", "max_tokens": 15_000, "seed": 2, "temperature": 1.0}
        frames, seconds, texts = _timed(server, body)
        whole = httpx.post(server.url + "/v1/completions", json=body, timeout=60).json()
        assert texts == {0: whole["choices"][0]["text"]}
        assert frames <= 3 + 1.2 * seconds / TIMER_SECONDS, (frames, seconds)
    finally:
        assert server.stop() == 0, server.stderr()
