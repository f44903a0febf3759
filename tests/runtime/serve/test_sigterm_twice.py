"""SIGTERM delivered twice (review of issue 20, item 7): GNU `timeout` sends it to the server and
then to its process group, so `timeout 8 charwright serve` got two. The server used to take the
second as "exit now" whenever the two were not merged: no drain, and uvicorn's lifespan traceback
on stderr. The same signal twice within SAME_SIGNAL_SECONDS is one; a later second one still exits
at once, without a traceback."""

import signal
import threading
import time

import httpx
import pytest

from serve_util import ServerProcess, sse_events

pytestmark = [pytest.mark.serve]


def _stream(url, body, lines: list, started: threading.Event):
    def run():
        try:
            with httpx.stream("POST", url + "/v1/completions", json={**body, "stream": True},
                              timeout=30) as r:
                lines.append(r.status_code)
                for line in r.iter_lines():
                    lines.append(line)
                    started.set()
        except httpx.HTTPError as e:
            lines.append(e)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def _text(lines) -> tuple[list, int]:
    events = sse_events(x for x in lines[1:] if isinstance(x, str))
    return events, sum(len(c["text"]) for e in events if isinstance(e, dict)
                       for c in e.get("choices", ()))


def test_sigterm_sent_twice_at_once_is_one_signal_and_drains(bundle):
    s = ServerProcess("-b", str(bundle), "--backend", "numpy", "--shutdown-timeout",
                      "20").start()
    lines, started = [], threading.Event()
    t = _stream(s.url, {"model": "tiny", "prompt": "abc ", "max_tokens": 20_000, "seed": 1},
                lines, started)
    assert started.wait(10)
    s.proc.send_signal(signal.SIGTERM)  # as `timeout` does: the process, then its group
    s.proc.send_signal(signal.SIGTERM)
    assert s.proc.wait(30) == 0
    t.join(10)
    err = s.stderr()
    assert "Traceback" not in err and "error:" not in err, err
    assert "a second signal" not in err and "draining: 1 request(s) in flight" in err
    events, n = _text(lines)
    assert events[-1] == "[DONE]" and events[-2]["choices"][0]["finish_reason"] == "length"
    assert n == 20_000  # drained: the stream ran to its end


def test_a_later_second_signal_exits_now_without_a_traceback(bundle):
    s = ServerProcess("-b", str(bundle), "--backend", "numpy", "--shutdown-timeout",
                      "60").start()
    lines, started = [], threading.Event()
    _stream(s.url, {"model": "tiny", "prompt": "abc ", "max_tokens": 100_000, "seed": 1},
            lines, started)
    assert started.wait(10)
    s.proc.send_signal(signal.SIGTERM)
    time.sleep(1.0)  # past SAME_SIGNAL_SECONDS, still draining (60 s)
    s.proc.send_signal(signal.SIGTERM)
    t0 = time.monotonic()
    assert s.proc.wait(20) == 0
    assert time.monotonic() - t0 < 10  # at once, not at the shutdown timeout
    err = s.stderr()
    assert "a second signal: exiting now (1 request(s) cut off)" in err
    assert "Traceback" not in err and "error:" not in err, err
