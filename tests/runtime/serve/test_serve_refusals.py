"""`charwright serve` as a real process: what it refuses, and how. Every bad request gets its
status and the standard error body; an oversized head gets 431 and one log line; a client that
leaves mid-body or sends a broken chunked body leaves no traceback."""

import json
import time

import httpx
import pytest

from serve_util import AUTH, KEY, post

pytestmark = [pytest.mark.serve]


# ---- every bad request gets its status and the standard body ------------------------------------

BAD = [
    (b'{"model": "tiny", "prompt": ', 400, "not valid JSON"),
    (b"[1, 2]", 400, "JSON object"),
    ({"model": "tiny"}, 400, "prompt is required"),
    ({"model": "tiny", "prompt": [1, 2]}, 400, "token ids are not accepted"),
    ({"model": "tiny", "prompt": "xyz"}, 400, "prompt"),
    ({"model": "tiny", "prompt": "a", "temperature": -1}, 400, "temperature -1"),
    ({"model": "tiny", "prompt": "a", "temperature": "hot"}, 400, "temperature 'hot'"),
    (b'{"model": "tiny", "prompt": "a", "temperature": 1' + b"1" * 400 + b"}", 400, "temperature"),
    (b'{"model": "tiny", "prompt": "a", "repetition_penalty": 9' + b"9" * 400 + b"}", 400,
     "repetition_penalty"),
    ({"model": "tiny", "prompt": "a", "top_k": 0}, 400, "top_k 0"),
    ({"model": "tiny", "prompt": "a", "top_k": 2.5}, 400, "top_k 2.5"),
    ({"model": "tiny", "prompt": "a", "top_p": 0}, 400, "top_p 0"),
    ({"model": "tiny", "prompt": "a", "min_p": 1}, 400, "min_p 1"),
    ({"model": "tiny", "prompt": "a", "typical_p": 1.5}, 400, "typical_p 1.5"),
    ({"model": "tiny", "prompt": "a", "repetition_penalty": 0}, 400, "repetition_penalty 0"),
    ({"model": "tiny", "prompt": "a", "repetition_penalty": 1e-300}, 400,
     "repetition_penalty 1e-300"),
    ({"model": "tiny", "prompt": "a" * 100_001}, 400, "prompt of 100,001 characters"),
    ({"model": "tiny", "prompt": ["ab"] * 50_001}, 400, "(--max-prompt-chars)"),
    ({"model": "tiny", "prompt": "a", "seed": -1}, 400, "seed -1"),
    ({"model": "tiny", "prompt": "a", "seed": True}, 400, "seed True"),
    ({"model": "tiny", "prompt": "a", "n": 0}, 400, "n 0"),
    ({"model": "tiny", "prompt": "a", "n": 65}, 400, "n 65"),
    ({"model": "tiny", "prompt": ["a"] * 9, "n": 8}, 400, "72 rows"),
    ({"model": "tiny", "prompt": "a", "max_tokens": 0}, 400, "max_tokens 0"),
    ({"model": "tiny", "prompt": "a", "stop": [1]}, 400, "stop must be"),
    ({"model": "tiny", "prompt": "a", "stream": "yes"}, 400, "stream 'yes'"),
    ({"model": "tiny", "prompt": "a", "best_of": 3}, 400, "best_of is not supported"),
    ({"model": "tiny", "prompt": "a", "logprobs": 2}, 400, "logprobs is not supported"),
    ({"model": "tiny", "prompt": "a", "temprature": 1}, 400, "unknown field 'temprature'"),
    ({"model": "nope", "prompt": "a"}, 404, "model 'nope'"),
    (json.dumps({"model": "tiny", "prompt": "a" * (2 << 20)}), 413, "limit"),
]


@pytest.mark.parametrize("body, status, words", BAD, ids=[b[2] for b in BAD])
def test_bad_requests_get_their_status_and_body(server, body, status, words):
    r = post(server, body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "code"} and err["code"] == status
    assert words in err["message"]
    assert err["type"] == {400: "invalid_request_error", 404: "not_found_error",
                           413: "invalid_request_error"}[status]


def test_keys_routes_and_methods(server):
    body = {"model": "tiny", "prompt": "a", "max_tokens": 3}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
        r = post(server, body, headers=headers)
        assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    assert httpx.get(server.url + "/v1/models").status_code == 401
    assert httpx.get(server.url + "/metrics").status_code == 401
    r = httpx.get(server.url + "/v1/nothing", headers=AUTH)
    assert r.status_code == 404 and r.json()["error"]["code"] == 404
    r = httpx.get(server.url + "/v1/completions", headers=AUTH)
    assert r.status_code == 405 and r.json()["error"]["code"] == 405


# ---- a long prompt, an oversized head, a client that leaves mid-body: nobody else stalls, the --
# ---- log stays one line per event (issue 24.3) --------------------------------------------------

def _raw(server, data: bytes, read: bool = True, timeout: float = 10.0) -> bytes:
    """Sends raw bytes on a fresh connection; returns what the server answers before it closes
    (or what came within `timeout`)."""
    import socket

    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(data)
        if not read:
            return b""
        out = b""
        try:
            while chunk := sock.recv(65536):
                out += chunk
        except (TimeoutError, ConnectionResetError):
            pass
        return out


def _head(key=KEY, extra: bytes = b"") -> bytes:
    return (b"POST /v1/completions HTTP/1.1\r\nhost: 127.0.0.1\r\n"
            b"authorization: Bearer " + key.encode() + b"\r\n" + extra)


def _no_traceback(server, since: int) -> list:
    lines = server.stderr_lines[since:]
    assert not any("Traceback" in line or line.startswith(" ") for line in lines), lines
    return lines


def test_an_oversized_head_gets_431_and_one_log_line(server):
    since = len(server.stderr_lines)
    # an unterminated 1 MB header field: answered and closed after 32 KiB, never held
    got = _raw(server, _head(extra=b"x-big: " + b"a" * (1 << 20)))
    assert got.startswith(b"HTTP/1.1 431 "), got[:200]
    body = json.loads(got.split(b"\r\n\r\n", 1)[1])
    assert body["error"]["code"] == 431 and "request head over 32,768 bytes" in \
        body["error"]["message"]
    fields = b"".join(b"x-f%d: 1\r\n" % i for i in range(101))
    got = _raw(server, _head(extra=fields + b"content-length: 2\r\n\r\n{}"))
    assert got.startswith(b"HTTP/1.1 431 ") and b"more than 100 header fields" in got
    # a whole 33,000-byte request line in one write: caught as the parser hands it over
    got = _raw(server, b"GET /" + b"a" * 33_000 + b" HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 431 ") and b"request head over 32,768 bytes" in got
    # 99 fields of ours (with host and authorization: 101) pass the header check
    time.sleep(0.2)
    lines = _no_traceback(server, since)
    assert len(lines) == 3 and all("(431)" in line for line in lines), lines
    r = post(server, {"model": "tiny", "prompt": "a", "max_tokens": 3})
    assert r.status_code == 200  # the server goes on


def test_clients_that_leave_mid_body_or_send_a_broken_chunked_body_leave_no_traceback(server):
    since = len(server.stderr_lines)
    before = server.metric("charwright_requests_total", AUTH)
    # a body announced as 1,000 bytes, 10 sent, then the client goes away
    _raw(server, _head(extra=b"content-length: 1000\r\n\r\n") + b'{"model":"', read=False)
    # a chunked body whose chunk size is not hexadecimal: 400 from the HTTP parser
    got = _raw(server, _head(extra=b"transfer-encoding: chunked\r\n\r\n") + b"5\r\n{\"mo\"\r\n"
               b"zz\r\nmore\r\n0\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 400 "), got[:200]
    end = time.monotonic() + 5
    while server.metric("charwright_requests_total", AUTH) < before + 2 and \
            time.monotonic() < end:
        time.sleep(0.05)
    assert server.metric("charwright_requests_total", AUTH) == before + 2  # two 499s
    time.sleep(0.2)
    lines = _no_traceback(server, since)
    assert len(lines) == 1 and "refused a malformed request" in lines[0], lines
