"""A client that sends a streaming request and then never reads: the server does not hold the
text it cannot send without bound. More than --max-unsent-chars characters piled up behind a
write the client's socket holds back, or one frame waiting longer than --write-timeout, cuts the
stream: its rows are freed, its connection is aborted, /metrics counts a 499, stderr says why in
one line. Text held by --stream-interval is not "unsent": a reading client with a tiny cap still
gets everything. SIGTERM with such a client exits promptly and quietly. On asyncio's own event
loop (no uvloop) a client that left behind a pipelined request is noticed at the next write.

Real server processes on 127.0.0.1 over the tiny hand-made bundle (numpy backend), bounded."""

import json
import re
import socket
import sys
import time

import httpx
import pytest

import serve_util
from serve_util import ServerProcess, sse_events

pytestmark = [pytest.mark.serve]


def _server(bundle, *args):
    return ServerProcess("-b", str(bundle), "--backend", "numpy", "--max-batch", "64",
                         *args).start()


def _request(body: dict) -> bytes:
    raw = json.dumps(body).encode()
    return (b"POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n" % len(raw) + raw)


def _stalled_client(server, body: dict) -> socket.socket:
    """Sends the request and never reads (a small receive buffer: the server's writes block)."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", server.port))
    s.sendall(_request(body))
    return s


def _status_count(server, status: int) -> float:
    text = httpx.get(server.url + "/metrics", timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("charwright_requests_total{") and f'status="{status}"' in line)


def _wait(cond, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def _aborted(s: socket.socket) -> bool:
    """The server closed the connection: reading what it had sent ends in EOF or a reset."""
    s.settimeout(5)
    try:
        while s.recv(1 << 16):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        return False
    return True


# 64 rows: the server's socket buffers fill within a second or two (16 rows of the tiny model
# can finish 100,000 characters each before they do)
BIG = {"prompt": "abc ", "max_tokens": 100_000, "n": 64, "seed": 1, "stream": True}


def test_unsent_text_over_the_cap_cuts_the_stream(bundle):
    s = _server(bundle, "--max-unsent-chars", "3000", "--write-timeout", "0",
                "--stream-interval", "0")
    try:
        client = _stalled_client(s, BIG)
        assert _wait(lambda: _status_count(s, 499) == 1, 8), s.stderr()
        assert s.metric("charwright_requests_running") == 0  # its rows were freed
        assert _aborted(client)
        client.close()
        cut = [line for line in s.stderr_lines if "cut a stream" in line]
        assert len(cut) == 1 and "--max-unsent-chars" in cut[0], s.stderr()
        # the server serves on, and a reading client is not cut
        r = httpx.post(s.url + "/v1/completions", timeout=30,
                       json={"prompt": "abc ", "max_tokens": 50, "n": 2, "seed": 2})
        assert r.status_code == 200
    finally:
        assert s.stop() == 0, s.stderr()
    assert "Traceback" not in s.stderr() and "Exception in ASGI" not in s.stderr()


def test_a_frame_the_client_does_not_take_in_time_cuts_the_stream(bundle):
    s = _server(bundle, "--write-timeout", "1", "--max-unsent-chars", "100000000")
    try:
        client = _stalled_client(s, BIG)
        assert _wait(lambda: _status_count(s, 499) == 1, 8), s.stderr()
        assert s.metric("charwright_requests_running") == 0
        assert _aborted(client)
        client.close()
        cut = [line for line in s.stderr_lines if "cut a stream" in line]
        assert len(cut) == 1 and "--write-timeout" in cut[0], s.stderr()
    finally:
        assert s.stop() == 0, s.stderr()


def test_text_held_by_the_frame_interval_is_not_unsent(bundle):
    """A reading client gets every character with a cap far below what one interval holds."""
    s = _server(bundle, "--max-unsent-chars", "5", "--stream-interval", "0.3")
    try:
        body = {"prompt": "abc ", "max_tokens": 300, "n": 3, "seed": 3, "stream": True}
        with httpx.stream("POST", s.url + "/v1/completions", json=body, timeout=30) as r:
            assert r.status_code == 200
            events = sse_events(r.iter_lines())
        assert events[-1] == "[DONE]"
        text = {c: "" for c in range(3)}
        finish = {}
        for e in events[:-1]:
            assert "error" not in e, e
            for ch in e["choices"]:
                text[ch["index"]] += ch["text"]
                if ch.get("finish_reason"):
                    finish[ch["index"]] = ch["finish_reason"]
        assert all(len(t) == 300 for t in text.values()) and finish == {0: "length", 1: "length",
                                                                          2: "length"}
        assert max(len(ch["text"]) for e in events[:-1] for ch in e["choices"]) > 5
        assert _status_count(s, 499) == 0
    finally:
        assert s.stop() == 0, s.stderr()


def test_sigterm_with_a_client_that_does_not_read_exits_promptly_and_quietly(bundle):
    s = _server(bundle, "--shutdown-timeout", "0.5", "--write-timeout", "0",
                "--max-unsent-chars", "100000000")
    client = _stalled_client(s, BIG)
    try:
        assert _wait(lambda: s.metric("charwright_requests_running") == 1, 5)
        time.sleep(2)  # its writes block by now
        t0 = time.monotonic()
        assert s.stop(timeout=15) == 0, s.stderr()
        took = time.monotonic() - t0
    finally:
        client.close()
    # 0.5 s to finish, 2 s for the last events, then the stalled one is cut (it was: uvicorn's
    # own 5 s more, and "Exception in ASGI application" with a CancelledError)
    assert took < 4.5, (took, s.stderr())
    err = s.stderr()
    assert "Exception in ASGI" not in err and "CancelledError" not in err and "Traceback" \
        not in err, err
    assert "cut a stream (499): the server is shutting down" in err


ASYNCIO_LOOP = ("import sys, uvicorn\n"
                "init = uvicorn.Config.__init__\n"
                "def patched(self, *a, **k):\n"
                "    k['loop'] = 'asyncio'\n"
                "    init(self, *a, **k)\n"
                "uvicorn.Config.__init__ = patched\n"
                "from charwright.runtime.cli import main\n"
                "sys.exit(main(sys.argv[1:]))\n")


def test_asyncio_loop_notices_a_client_gone_behind_a_pipelined_request(bundle, monkeypatch):
    """Without uvloop the peer's close is seen only when a write fails; the pipelined request
    keeps uvicorn from reading the socket, so no http.disconnect comes. The next frame finds the
    transport closing and cancels the request (it ran to max_tokens, with a log line per
    failed write)."""
    monkeypatch.setattr(serve_util, "CLI", [sys.executable, "-c", ASYNCIO_LOOP])
    s = _server(bundle, "--stream-interval", "0")
    try:
        c = socket.create_connection(("127.0.0.1", s.port))
        long = {"prompt": "abc ", "max_tokens": 100_000, "seed": 1, "stream": True}
        c.sendall(_request(long) + _request({"prompt": "a", "max_tokens": 5}))
        assert re.match(rb"HTTP/1.1 200", c.recv(4096))
        assert _wait(lambda: s.metric("charwright_requests_running") == 1, 5)
        c.close()
        assert _wait(lambda: s.metric("charwright_requests_running") == 0, 3), s.stderr()
        assert _status_count(s, 499) == 1
        assert "socket.send() raised" not in s.stderr()
    finally:
        assert s.stop() == 0, s.stderr()


def test_a_whole_answer_the_client_does_not_take_in_time_is_cut(bundle):
    """Not streamed: the answer (64 rows x 100,000 characters, ~6.5 MB of JSON, more than the
    sockets' buffers take; ~8 s to make) is one write, which uvicorn's send does not wait for; a
    client that does not read it within --write-timeout has its connection aborted, 499."""
    s = _server(bundle, "--write-timeout", "1")
    try:
        body = {"prompt": "abc ", "max_tokens": 100_000, "n": 64, "seed": 1}
        client = _stalled_client(s, body)
        assert _wait(lambda: _status_count(s, 499) == 1, 25), s.stderr()
        assert _status_count(s, 200) == 0
        assert _aborted(client)
        client.close()
        cut = [line for line in s.stderr_lines if "cut a response" in line]
        assert len(cut) == 1 and "--write-timeout" in cut[0], s.stderr()
        r = httpx.post(s.url + "/v1/completions", timeout=30,
                       json={"prompt": "abc ", "max_tokens": 20, "seed": 2})
        assert r.status_code == 200
        assert _wait(lambda: _status_count(s, 200) == 1, 2)  # counted once sent
    finally:
        assert s.stop() == 0, s.stderr()
    assert "Traceback" not in s.stderr() and "Exception in ASGI" not in s.stderr()
