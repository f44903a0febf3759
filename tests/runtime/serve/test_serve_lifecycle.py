"""`charwright serve` as a real process with settings of its own per test: a full queue answers
429 at once, SIGTERM drains (streams finish within --shutdown-timeout or end with a final event)
and exits 0, and a long prompt primes beside the other requests."""

import json
import threading
import time

import httpx
import pytest

from serve_util import ServerProcess, sse_events

pytestmark = [pytest.mark.serve]
PROMPT = "abc "


# ---- backpressure and shutdown (their own servers) ----------------------------------------------

def _open_stream(url, body, lines: list, started: threading.Event):
    def run():
        with httpx.stream("POST", url + "/v1/completions", json={**body, "stream": True},
                          timeout=30) as r:
            lines.append(r.status_code)
            for line in r.iter_lines():
                lines.append(line)
                started.set()
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_a_full_queue_answers_429_at_once(bundle):
    s = ServerProcess("-b", str(bundle), "--backend", "numpy", "--max-batch", "1",
                      "--max-queue", "1", "--shutdown-timeout", "0.5").start()
    try:
        long = {"model": "tiny", "prompt": PROMPT, "max_tokens": 100_000}
        out_a, out_b, started = [], [], threading.Event()
        _open_stream(s.url, long, out_a, started)
        assert started.wait(10)
        _open_stream(s.url, long, out_b, threading.Event())
        end = time.monotonic() + 5
        while s.metric("charwright_requests_waiting") < 1 and time.monotonic() < end:
            time.sleep(0.01)
        t0 = time.monotonic()
        r = httpx.post(s.url + "/v1/completions", json={**long, "max_tokens": 5}, timeout=10)
        # at once: the two running streams ask 100,000 characters each, so a request that waited
        # for a slot would take minutes; 5 s leaves room for a loaded machine
        assert time.monotonic() - t0 < 5.0
        assert r.status_code == 429 and r.headers["retry-after"] == "1"
        assert r.json()["error"] == {"message": r.json()["error"]["message"],
                                     "type": "rate_limit_error", "code": 429}
        assert 'status="429"' in httpx.get(s.url + "/metrics").text
    finally:
        assert s.stop() == 0  # the two long streams are cut after 0.5 s


def test_sigterm_mid_stream_delivers_the_final_event_and_exits_0(bundle):
    s = ServerProcess("-b", str(bundle), "--backend", "numpy", "--shutdown-timeout",
                      "1.0").start()
    # 16 rows of 100,000 characters: far longer than the 1 s drain on any CPU (one row alone,
    # with the compiled sampler, can finish within it)
    long = {"model": "tiny", "prompt": PROMPT, "max_tokens": 100_000, "seed": 1, "n": 16}
    lines, started = [], threading.Event()
    t = _open_stream(s.url, long, lines, started)
    assert started.wait(10)
    s.sigterm()
    time.sleep(0.2)
    # draining: /health says 503, a new request gets 503 with the standard body
    assert httpx.get(s.url + "/health", timeout=5).status_code == 503
    r = httpx.post(s.url + "/v1/completions", json={**long, "max_tokens": 3}, timeout=5)
    assert r.status_code == 503 and r.json()["error"]["type"] == "unavailable_error"
    assert s.proc.wait(20) == 0
    t.join(10)
    events = sse_events(line for line in lines[1:] if isinstance(line, str))
    assert lines[0] == 200 and events[-1] == "[DONE]"
    assert events[-2]["error"]["code"] == 503  # the final event of a cut stream
    assert "".join(c["text"] for e in events[:-2] for c in e["choices"])


def test_sigterm_lets_a_stream_finish_within_the_shutdown_timeout(bundle):
    s = ServerProcess("-b", str(bundle), "--backend", "numpy", "--shutdown-timeout",
                      "20").start()
    body = {"model": "tiny", "prompt": PROMPT, "max_tokens": 20_000, "seed": 1}
    lines, started = [], threading.Event()
    t = _open_stream(s.url, body, lines, started)
    assert started.wait(10)
    s.sigterm()
    assert s.proc.wait(20) == 0
    t.join(10)
    assert "draining: 1 request(s) in flight" in s.stderr()  # SIGTERM came mid-stream
    events = sse_events(line for line in lines[1:] if isinstance(line, str))
    assert events[-1] == "[DONE]" and events[-2]["choices"][0]["finish_reason"] == "length"
    assert sum(len(c["text"]) for e in events[:-1] for c in e["choices"]) == 20_000


def test_a_long_prompt_stalls_nobody_and_stops_priming_when_its_client_leaves(bundle):
    """A 900,000-char prompt (about 10 s of priming alone on this model) primes beside the other
    requests: a short request sent meanwhile is answered while it still primes, and when its
    client leaves its priming stops (it used to run to its end, and every request waited)."""
    import socket

    s = ServerProcess("-b", str(bundle), "--backend", "numpy", "--max-prompt-chars",
                      "1000000").start()
    try:
        prompt = (PROMPT * 225_000)[:900_000]
        data = json.dumps({"model": "tiny", "prompt": prompt, "max_tokens": 5}).encode()
        sock = socket.create_connection(("127.0.0.1", s.port), timeout=10)
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nhost: 127.0.0.1\r\n"
                     b"content-type: application/json\r\ncontent-length: %d\r\n\r\n"
                     % len(data) + data)
        end = time.monotonic() + 10
        while not s.metric("charwright_requests_priming") and time.monotonic() < end:
            time.sleep(0.02)
        assert s.metric("charwright_requests_priming") == 1
        r = httpx.post(s.url + "/v1/completions", timeout=30,
                       json={"model": "tiny", "prompt": "hg", "max_tokens": 20, "seed": 1})
        assert r.status_code == 200 and len(r.json()["choices"][0]["text"]) == 20
        assert s.metric("charwright_requests_priming") == 1  # the long one still primes
        assert 0 < s.metric("charwright_prompt_chars_left") < 900_000
        sock.close()  # its client leaves: its priming stops at the next pass
        end = time.monotonic() + 5
        while s.metric("charwright_requests_priming") and time.monotonic() < end:
            time.sleep(0.02)
        assert s.metric("charwright_requests_priming") == 0
        assert s.metric("charwright_prompt_chars_left") == 0
        primed = s.metric("charwright_prompt_chars_primed_total")
        time.sleep(0.2)
        assert s.metric("charwright_prompt_chars_primed_total") == primed < 900_000
        assert 'status="499"' in httpx.get(s.url + "/metrics").text
    finally:
        assert s.stop() == 0
    assert "Traceback" not in s.stderr()
