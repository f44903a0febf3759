"""`charwright serve --stream-interval S`: a stream's characters coalesce into frames at most one
per S seconds (the first and the last at once), written straight to the connection while the
stream's writer waits; nothing is lost or reordered, SSE framing stays OpenAI's, a slow reader
still gets everything. And the option's (and --max-batch's) bad values: one line, exit 2.

Real server processes on 127.0.0.1 over the tiny hand-made bundle (numpy backend), bounded."""

import json
import socket
import subprocess
import time

import httpx
import pytest

from serve_util import CLI, ServerProcess, sse_events

pytestmark = [pytest.mark.serve]
PROMPT = "abc "
INTERVAL = 0.5


def _server(bundle, *args):
    return ServerProcess("-b", str(bundle), "--backend", "numpy", "--max-batch", "32",
                         *args).start()


@pytest.fixture(scope="module")
def slow_frames(bundle):
    s = _server(bundle, "--stream-interval", str(INTERVAL))
    yield s
    assert s.stop() == 0, s.stderr()


@pytest.fixture(scope="module")
def every_frame(bundle):
    s = _server(bundle, "--stream-interval", "0")
    yield s
    assert s.stop() == 0, s.stderr()


def timed_stream(server, body) -> tuple[list, list, float]:
    """(events, arrival time of each text frame, seconds from the request to [DONE])."""
    t0 = time.monotonic()
    events, arrivals = [], []
    with httpx.stream("POST", server.url + "/v1/completions", json={**body, "stream": True},
                      timeout=60) as r:
        assert r.status_code == 200, r.read()
        for line in r.iter_lines():
            for e in sse_events([line]):
                events.append(e)
                if e != "[DONE]" and any(c["text"] for c in e.get("choices", [])):
                    arrivals.append(time.monotonic())
    return events, arrivals, time.monotonic() - t0


def texts_of(events) -> dict:
    assert events[-1] == "[DONE]" and "[DONE]" not in events[:-1]
    out: dict = {}
    for e in events[:-1]:
        assert e["object"] == "text_completion" and "error" not in e
        for c in e["choices"]:
            out[c["index"]] = out.get(c["index"], "") + c["text"]
    return out


def whole(server, body) -> dict:
    r = httpx.post(server.url + "/v1/completions", json=body, timeout=60)
    assert r.status_code == 200, r.text
    return {c["index"]: c["text"] for c in r.json()["choices"]}


def test_frames_coalesce_at_most_one_per_interval_and_nothing_is_lost(slow_frames, every_frame):
    body = {"prompt": PROMPT, "max_tokens": 15_000, "seed": 11, "temperature": 1.0, "n": 2}
    events, arrivals, seconds = timed_stream(slow_frames, body)
    got = texts_of(events)
    assert got == whole(slow_frames, body) == whole(every_frame, body)
    assert sum(map(len, got.values())) == 2 * 15_000  # the tiny model emits no end-of-sequence
    # the first frame at once, then at most one per interval, and the last one at once
    assert len(arrivals) <= 3 + seconds / INTERVAL, (len(arrivals), seconds)
    # each finishing choice says so once, in a frame of its own index
    finals = [c for e in events[:-1] for c in e["choices"] if c["finish_reason"]]
    assert sorted(c["index"] for c in finals) == [0, 1]
    assert {c["finish_reason"] for c in finals} == {"length"}
    # the same request with no interval comes in many more, smaller frames
    events0, arrivals0, _ = timed_stream(every_frame, body)
    assert texts_of(events0) == got
    assert len(arrivals0) > 2 * len(arrivals)


def test_first_and_last_frames_are_not_held_back_by_the_interval(slow_frames):
    t0 = time.monotonic()
    events, arrivals, _ = timed_stream(slow_frames, {"prompt": PROMPT, "max_tokens": 15_000,
                                                     "seed": 3})
    assert arrivals[0] - t0 < INTERVAL * 0.8  # the first text goes out at once
    first = next(e for e in events if e["choices"] and e["choices"][0]["text"])
    assert len(first["choices"][0]["text"]) < 15_000 and len(texts_of(events)[0]) == 15_000
    # a short stream ends at once: its finish does not wait for the interval either
    t0 = time.monotonic()
    events, arrivals, seconds = timed_stream(slow_frames, {"prompt": PROMPT, "max_tokens": 5,
                                                           "seed": 3})
    assert len(texts_of(events)[0]) == 5 and seconds < INTERVAL * 0.8


def test_many_concurrent_streams_each_get_their_own_text_in_order(slow_frames):
    import asyncio

    bodies = [{"prompt": PROMPT + "ab"[i % 2] * i, "max_tokens": 1_000 + 97 * i, "seed": i,
               "temperature": 1.1, "stream": True} for i in range(16)]

    async def one(client, body):
        async with client.stream("POST", "/v1/completions", json=body) as r:
            assert r.status_code == 200
            return sse_events([line async for line in r.aiter_lines()])

    async def main():
        async with httpx.AsyncClient(base_url=slow_frames.url, timeout=60) as client:
            return await asyncio.gather(*(one(client, b) for b in bodies))

    streamed = asyncio.run(main())
    for body, events in zip(bodies, streamed):
        want = whole(slow_frames, {**body, "stream": False})
        assert texts_of(events) == want
        assert len(want[0]) == body["max_tokens"]


@pytest.mark.parametrize("which", ["every_frame", "slow_frames"])
def test_a_reader_that_stalls_still_gets_every_character(which, request):
    """A reader that stops reading makes uvicorn pause writing: frames then go through the
    writer coroutine, which waits for the socket (and, with an interval, for the clock's ticks);
    once the reader reads on, nothing is missing."""
    server = request.getfixturevalue(which)
    body = {"prompt": PROMPT, "max_tokens": 25_000, "n": 4, "seed": 9, "temperature": 1.0,
            "stream": True}  # ~5 MB of frames: more than loopback's buffers hold (checked)
    raw = json.dumps(body).encode()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    sock.settimeout(60)
    sock.connect(("127.0.0.1", server.port))
    try:
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-type: "
                     b"application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
                     % len(raw) + raw)
        time.sleep(1.5)  # the server fills the socket and its own buffer meanwhile
        chunks = []
        while True:
            data = sock.recv(1 << 16)
            if not data:
                break
            chunks.append(data)
    finally:
        sock.close()
    head, _, body_bytes = b"".join(chunks).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"transfer-encoding: chunked" in head.lower()
    parts, pos = [], 0
    while True:  # de-chunk
        eol = body_bytes.index(b"\r\n", pos)
        size = int(body_bytes[pos:eol], 16)
        if size == 0:
            break
        parts.append(body_bytes[eol + 2:eol + 2 + size])
        pos = eol + 2 + size + 2
    events = sse_events(b"".join(parts).decode().split("\n"))
    assert texts_of(events) == whole(server, {**body, "stream": False})


@pytest.mark.parametrize("option, value, why", [
    ("--stream-interval", "-1", "not in the range"),
    ("--stream-interval", "11", "not in the range"),
    ("--stream-interval", "nan", "not a number"),
    ("--stream-interval", "soon", "not a valid float"),
    ("--max-batch", "0", "not in the range"),
    ("--max-batch", "5000", "not in the range"),
    ("--max-batch", "1.5", "not a valid integer"),
    ("--write-timeout", "-1", "not in the range"),
    ("--write-timeout", "nan", "not a number"),
    ("--write-timeout", "1e9", "not in the range"),
    ("--max-unsent-chars", "0", "not in the range"),
    ("--max-unsent-chars", "lots", "not a valid integer"),
])
def test_bad_values_are_one_line_and_exit_2(option, value, why):
    r = subprocess.run(CLI + ["serve", "--port", "0", option, value], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2
    errors = [line for line in r.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and option in errors[0] and why in errors[0], r.stderr
    assert "Traceback" not in r.stderr


def test_max_batch_bounds_the_rows_a_request_may_take(bundle):
    s = _server(bundle, "--max-batch", "3", "--stream-interval", "0.01")
    try:
        r = httpx.post(s.url + "/v1/completions", json={"prompt": PROMPT, "n": 4}, timeout=30)
        assert r.status_code == 400 and "n 4: must be an integer in 1..3" in r.text
        models = httpx.get(s.url + "/v1/models", timeout=30).json()
        assert [m.get("max_batch") for m in models["data"]] == [3]
        ok = httpx.post(s.url + "/v1/completions", json={"prompt": PROMPT, "n": 3,
                                                         "max_tokens": 40}, timeout=30)
        assert ok.status_code == 200 and len(ok.json()["choices"]) == 3
    finally:
        assert s.stop() == 0, s.stderr()
