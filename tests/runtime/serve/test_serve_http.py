"""`charwright serve` as a real process, driven over HTTP with httpx and the openai client: the
happy paths, and clients that go away.

The served bundle is hand-made (numpy backend, float32, no TensorFlow): its rows do not depend on
their batch-mates, so seeded texts must equal `charwright generate` whatever else runs."""

import asyncio
import json
import subprocess
import time

import httpx
import pytest

from serve_util import AUTH, CLI, KEY, post, sse_events

pytestmark = [pytest.mark.serve]
PROMPT = "abc "


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
