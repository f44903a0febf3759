"""`charwright serve` as a real process, driven over HTTP with httpx and the openai client.

The served bundle is hand-made (numpy backend, float32, no TensorFlow): its rows do not depend on
their batch-mates, so seeded texts must equal `charwright generate` whatever else runs."""

import asyncio
import json
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from bundle_factory import make_bundle
from serve_util import CLI, ServerProcess, sse_events

pytestmark = [pytest.mark.serve]
KEY = "sekrit-key-123"
AUTH = {"Authorization": f"Bearer {KEY}"}
PROMPT = "abc "


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("serve") / "tiny", units=32)


@pytest.fixture(scope="module")
def server(bundle):
    """One server for the module: the key from the environment, 64 rows, 64 waiting."""
    s = ServerProcess("-b", str(bundle), "--backend", "numpy", "--max-batch", "64",
                      env={"CHARWRIGHT_API_KEY": KEY}).start()
    yield s
    assert s.stop() == 0, s.stderr()
    assert KEY not in s.stderr()  # the key is never logged


def post(server, body, headers=AUTH, **kw):
    return httpx.post(server.url + "/v1/completions", headers=headers,
                      content=body if isinstance(body, (bytes, str)) else json.dumps(body),
                      timeout=kw.pop("timeout", 30), **kw)


def stream_text(server, body) -> tuple[dict, list]:
    """(text per choice, events) of a streamed request."""
    with httpx.stream("POST", server.url + "/v1/completions", headers=AUTH,
                      json={**body, "stream": True}, timeout=30) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = sse_events(r.iter_lines())
    assert events[-1] == "[DONE]"
    texts: dict = {}
    for e in events[:-1]:
        for c in e.get("choices", []):
            texts[c["index"]] = texts.get(c["index"], "") + c["text"]
    return texts, events


def cli_texts(bundle, prompt, n, seed, *opts) -> list[str]:
    out = subprocess.run(CLI + ["generate", prompt, "-b", str(bundle), "--backend", "numpy",
                                "--num-samples", str(n), "--seed", str(seed), "--json", *opts],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    return [c["text"] for c in json.loads(out)["completions"]]


# ---- the happy paths ----------------------------------------------------------------------------

def test_stream_text_equals_non_stream_text(server):
    body = {"model": "tiny", "prompt": PROMPT, "max_tokens": 120, "seed": 5, "temperature": 1.2,
            "n": 3}
    r = post(server, body)
    assert r.status_code == 200, r.text
    whole = r.json()
    assert whole["object"] == "text_completion" and whole["model"] == "tiny"
    texts, events = stream_text(server, body)
    assert texts == {c["index"]: c["text"] for c in whole["choices"]}
    finals = {c["index"]: c["finish_reason"] for e in events[:-1] for c in e["choices"]
              if c["finish_reason"]}
    assert finals == {c["index"]: c["finish_reason"] for c in whole["choices"]}
    assert whole["usage"] == {"prompt_tokens": len(PROMPT),
                              "completion_tokens": sum(len(t) for t in texts.values()),
                              "total_tokens": len(PROMPT) + sum(len(t) for t in texts.values())}


async def _concurrent(server, bodies):
    async with httpx.AsyncClient(base_url=server.url, headers=AUTH, timeout=60) as client:
        async def one(body):
            text = ""
            async with client.stream("POST", "/v1/completions",
                                     json={**body, "stream": True}) as r:
                assert r.status_code == 200
                lines = [line async for line in r.aiter_lines()]
            events = sse_events(lines)
            assert events[-1] == "[DONE]"
            texts = {}
            for e in events[:-1]:
                for c in e["choices"]:
                    texts[c["index"]] = texts.get(c["index"], "") + c["text"]
            return [texts[i] for i in sorted(texts)]
        return await asyncio.gather(*(one(b) for b in bodies))


def test_seeded_requests_equal_the_cli_alone_and_in_a_batch_of_8(server, bundle):
    opts = ["--temperature", "0.9", "--top-k", "6", "-n", "150"]
    cli_one = cli_texts(bundle, PROMPT, 1, 77, *opts)
    cli_eight = cli_texts(bundle, PROMPT, 8, 77, *opts)
    body = {"model": "tiny", "prompt": PROMPT, "max_tokens": 150, "seed": 77,
            "temperature": 0.9, "top_k": 6}
    assert post(server, body).json()["choices"][0]["text"] == cli_one[0]  # alone
    # 8 requests in the batch at once (plus others with other settings), each as the CLI
    noise = {"model": "tiny", "prompt": "hg", "max_tokens": 150, "temperature": 1.5,
             "seed": 1}
    got = asyncio.run(_concurrent(server, [body] * 7 + [{**body, "n": 8}] + [noise] * 3))
    for texts in got[:7]:
        assert texts == cli_one
    assert got[7] == cli_eight


def test_32_concurrent_streams(server):
    bodies = [{"model": "tiny", "prompt": PROMPT, "max_tokens": 200, "seed": i,
               "temperature": 1.0} for i in range(32)]
    got = asyncio.run(_concurrent(server, bodies))
    alone = [post(server, b).json()["choices"][0]["text"] for b in bodies[:4]]
    assert [g[0] for g in got[:4]] == alone
    assert all(len(g[0]) == 200 for g in got)
    assert len({g[0] for g in got}) > 1


def test_the_openai_client_works_on_v1(server):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0)
    assert [m.id for m in client.models.list()] == ["tiny"]
    kw = dict(model="tiny", prompt=PROMPT, max_tokens=80, seed=3, temperature=0.7,
              extra_body={"top_k": 5, "repetition_penalty": 1.1})
    whole = client.completions.create(**kw)
    text = "".join(c.choices[0].text for c in client.completions.create(stream=True, **kw)
                   if c.choices)
    assert text == whole.choices[0].text and len(text) == 80
    assert whole.usage.completion_tokens == 80
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.url + "/v1", api_key="wrong",
                      max_retries=0).completions.create(**kw)
    with pytest.raises(openai.NotFoundError):
        client.completions.create(**{**kw, "model": "nope"})


def test_stop_strings_and_usage_chunk(server):
    body = {"model": "tiny", "prompt": PROMPT, "max_tokens": 300, "seed": 9, "stop": ["a", "b"]}
    whole = post(server, body).json()["choices"][0]
    assert "a" not in whole["text"] and "b" not in whole["text"]
    texts, events = stream_text(server, {**body, "stream_options": {"include_usage": True}})
    assert texts[0] == whole["text"]
    assert events[-2]["choices"] == [] and events[-2]["usage"]["prompt_tokens"] == len(PROMPT)


def test_health_models_and_metrics(server):
    assert httpx.get(server.url + "/health").json() == {"status": "ok"}  # no key needed
    models = httpx.get(server.url + "/v1/models", headers=AUTH).json()
    assert models["object"] == "list" and models["data"][0]["id"] == "tiny"
    text = httpx.get(server.url + "/metrics", headers=AUTH).text
    for name in ("charwright_requests_running", "charwright_requests_waiting",
                 "charwright_requests_total", "charwright_chars_generated_total",
                 "charwright_step_seconds_bucket", "charwright_batch_size_bucket",
                 "charwright_requests_priming", "charwright_prompt_chars_left",
                 "charwright_prompt_chars_primed_total", "charwright_prime_seconds_total"):
        assert name in text
    assert "# TYPE charwright_requests_running gauge" in text
    assert "# TYPE charwright_step_seconds histogram" in text
    assert server.metric("charwright_chars_generated_total", AUTH) > 0
    assert server.metric("charwright_prompt_chars_primed_total", AUTH) > 0


def test_a_client_that_goes_away_frees_its_row(server):
    before = server.metric("charwright_requests_total", AUTH)
    with httpx.stream("POST", server.url + "/v1/completions", headers=AUTH, timeout=30,
                      json={"model": "tiny", "prompt": PROMPT, "max_tokens": 100_000,
                            "stream": True}) as r:
        for _ in r.iter_lines():
            if server.metric("charwright_requests_running", AUTH) == 1:
                break
    # the connection is closed: the row leaves at the next step
    end = time.monotonic() + 5
    while server.metric("charwright_requests_running", AUTH) and time.monotonic() < end:
        time.sleep(0.01)
    assert server.metric("charwright_requests_running", AUTH) == 0
    chars = server.metric("charwright_chars_generated_total", AUTH)
    time.sleep(0.2)
    assert server.metric("charwright_chars_generated_total", AUTH) == chars  # nothing runs
    assert 'status="499"' in httpx.get(server.url + "/metrics", headers=AUTH).text
    assert server.metric("charwright_requests_total", AUTH) == before + 1


def test_a_non_streaming_client_that_goes_away_frees_its_row(server):
    with pytest.raises(httpx.ReadTimeout):
        post(server, {"model": "tiny", "prompt": PROMPT, "max_tokens": 100_000_0 // 10},
             timeout=0.3)
    end = time.monotonic() + 5
    while server.metric("charwright_requests_running", AUTH) and time.monotonic() < end:
        time.sleep(0.01)
    assert server.metric("charwright_requests_running", AUTH) == 0


# ---- every bad request gets its status and the standard body ------------------------------------

BAD = [
    (b'{"model": "tiny", "prompt": ', 400, "not valid JSON"),
    (b"[1, 2]", 400, "JSON object"),
    ({"model": "tiny"}, 400, "prompt is required"),
    ({"model": "tiny", "prompt": [1, 2]}, 400, "token ids are not accepted"),
    ({"model": "tiny", "prompt": "xyz"}, 400, "prompt"),
    ({"model": "tiny", "prompt": "a", "temperature": -1}, 400, "temperature -1"),
    ({"model": "tiny", "prompt": "a", "temperature": "hot"}, 400, "temperature 'hot'"),
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
    long = {"model": "tiny", "prompt": PROMPT, "max_tokens": 100_000, "seed": 1}
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
    # 99 fields of ours (with host and authorization: 101) pass the header check
    time.sleep(0.2)
    lines = _no_traceback(server, since)
    assert len(lines) == 2 and all("(431)" in line for line in lines), lines
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
