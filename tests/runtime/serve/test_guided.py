"""guided_regex / guided_choice (vLLM's extension fields) through a real `charwright serve`
process: every choice matches in full, streamed or not, the text equals `charwright generate
--regex` for the same seed, bad patterns are 400 with an OpenAI-style body, and the official
openai client sends them with extra_body."""

import json
import os
import re
import subprocess
import time

import httpx
import pytest

from serve_util import AUTH, CLI, KEY, post, sse_events

pytestmark = [pytest.mark.serve]
PROMPT = "abc "  # the tiny bundle's characters: "\n abcdefgh."
PATTERN = r"[a-h]{2,4}( [a-h]+)*\."


def stream_text(server, body) -> tuple[dict, list]:
    """(text per choice, events) of a streamed request."""
    with httpx.stream("POST", server.url + "/v1/completions", headers=AUTH,
                      json={**body, "stream": True}, timeout=30) as r:
        assert r.status_code == 200
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


def test_guided_regex_matches_and_equals_the_cli(server, bundle):
    r = post(server, {"prompt": PROMPT, "n": 6, "max_tokens": 24, "seed": 11,
                      "guided_regex": PATTERN})
    assert r.status_code == 200, r.text
    choices = r.json()["choices"]
    assert len(choices) == 6
    for c in choices:
        assert re.fullmatch(PATTERN, c["text"]), c
        assert c["finish_reason"] in ("stop", "length")
    assert [c["text"] for c in choices] == cli_texts(bundle, PROMPT, 6, 11, "-n", "24",
                                                     "--regex", PATTERN)


def test_guided_choice_streams_one_of_the_choices(server):
    words = ["bad", "beef", "cafe.", "h h"]
    texts, events = stream_text(server, {"prompt": PROMPT, "n": 5, "max_tokens": 10, "seed": 3,
                                         "guided_choice": words})
    assert sorted(texts) == list(range(5)) and all(t in words for t in texts.values())
    finish = [c["finish_reason"] for e in events[:-1] for c in e.get("choices", [])
              if c["finish_reason"]]
    assert finish == ["stop"] * 5


def test_requests_with_different_patterns_share_the_batch(server):
    import concurrent.futures as cf

    bodies = [{"prompt": PROMPT, "n": 3, "max_tokens": 12, "seed": i, "guided_regex": p}
              for i, p in enumerate(["(ab)+", "[c-h]{3}", "a*b", "(ab)+"])]
    with cf.ThreadPoolExecutor(4) as ex:
        answers = list(ex.map(lambda b: post(server, b), bodies))
    for body, r in zip(bodies, answers):
        assert r.status_code == 200, r.text
        assert all(re.fullmatch(body["guided_regex"], c["text"]) for c in r.json()["choices"])


@pytest.mark.parametrize("extra, words", [
    ({"guided_regex": "a(?=b)"}, "lookaround"),
    ({"guided_regex": "(a"}, "not a valid regular expression"),
    ({"guided_regex": "z+"}, r"needs 'z' \(U\+007A\)"),
    ({"guided_regex": "a{1000000}"}, "unrolls to more than"),
    ({"guided_regex": "(a|b)*a(a|b){40}"}, "automaton states"),
    ({"guided_regex": "[a-h]{50}", "max_tokens": 10}, "shortest match is 50 characters"),
    ({"guided_regex": "(abc)*", "max_tokens": 2}, "shortest non-empty match .* is 3 characters"),
    ({"guided_regex": "[\u4e00]?"}, "only the empty string over this vocabulary"),
    ({"guided_regex": "(((a{0}){1000}){1000}){1000}b"}, "200,000 automaton states"),
    ({"guided_regex": "a{\u0661}"}, r"needs '\{' \(U\+007B\)"),
    ({"guided_regex": 5}, "guided_regex must be a string"),
    ({"guided_choice": "abc"}, "guided_choice must be a non-empty list"),
    ({"guided_choice": []}, "guided_choice must be a non-empty list"),
    ({"guided_choice": ["a"], "guided_regex": "a"}, "not both"),
    ({"response_format": {"type": "regex", "regex": "a"}}, "unknown field 'response_format'"),
])
def test_bad_patterns_are_400(server, extra, words):
    t0 = time.perf_counter()
    r = post(server, {"prompt": PROMPT, "max_tokens": 20, **extra})
    assert time.perf_counter() - t0 < 10
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["code"] == 400
    assert re.search(words, err["message"]) and "\n" not in err["message"]
    assert post(server, {"prompt": PROMPT, "max_tokens": 3}).status_code == 200  # still serving


def _openai():
    try:
        import openai
    except ImportError:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            raise
        pytest.skip("openai missing: pip install 'charwright[dev]'")
    return openai


def test_the_openai_client_sends_guided_fields_with_extra_body(server):
    openai = _openai()
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0)
    out = client.completions.create(model="tiny", prompt=PROMPT, max_tokens=16, n=3, seed=5,
                                    extra_body={"guided_regex": PATTERN})
    assert len(out.choices) == 3 and all(re.fullmatch(PATTERN, c.text) for c in out.choices)
    out = client.completions.create(model="tiny", prompt=PROMPT, max_tokens=8, seed=5,
                                    extra_body={"guided_choice": ["bad", "cafe"]})
    assert out.choices[0].text in ("bad", "cafe") and out.choices[0].finish_reason == "stop"
    with pytest.raises(openai.BadRequestError, match="lookaround"):
        client.completions.create(model="tiny", prompt=PROMPT, max_tokens=8,
                                  extra_body={"guided_regex": "a(?!b)"})


SLOW = "(a|b)*a(a|b){13}"  # 16,384 states: ~0.15 s to compile over the tiny vocabulary


def test_a_guided_pattern_compiles_off_the_event_loop(bundle):
    """compile_guided runs the compile on a worker thread: a coroutine ticking every 5 ms keeps
    running meanwhile (compiled on the loop, as before, it did not tick at all)."""
    import asyncio
    from types import SimpleNamespace

    from charwright.runtime import load
    from charwright.runtime.sampling.constrain import CACHE
    from charwright.runtime.serve.openai import compile_guided, parse_completion

    model = load(bundle, backend="numpy")
    served = SimpleNamespace(model=model, sampling_defaults={})
    body = {"prompt": PROMPT, "max_tokens": 20, "guided_regex": SLOW + "c{0}"}  # not cached

    async def main():
        ticks, done = [], asyncio.Event()

        async def tick():
            while not done.is_set():
                ticks.append(time.perf_counter())
                await asyncio.sleep(0.005)

        ticker = asyncio.create_task(tick())
        await asyncio.sleep(0.02)
        t0 = time.perf_counter()
        await compile_guided(body, served, 16)
        t1 = time.perf_counter()
        done.set()
        await ticker
        during = [t for t in ticks if t0 <= t <= t1]
        return t1 - t0, during

    took, during = asyncio.run(main())
    assert took > 0.03 and len(during) >= 3, (took, len(during))
    misses = CACHE.misses
    p = parse_completion(body, served, 16)  # then answered from the cache
    assert p.sampling.pattern == body["guided_regex"] and CACHE.misses == misses


def test_a_refused_pattern_is_remembered_and_rows_are_checked_first(bundle):
    import asyncio
    from types import SimpleNamespace

    from charwright.runtime import load
    from charwright.runtime.sampling.constrain import CACHE
    from charwright.runtime.serve.openai import HTTPError, compile_guided, parse_completion

    served = SimpleNamespace(model=load(bundle, backend="numpy"), sampling_defaults={})
    bad = {"prompt": PROMPT, "max_tokens": 20, "guided_regex": "([a-h]*a[a-h]{5}){1,399}"}
    asyncio.run(compile_guided(bad, served, 16))
    misses = CACHE.misses
    for _ in range(3):
        t0 = time.perf_counter()
        with pytest.raises(HTTPError, match="too much work") as e:
            parse_completion(bad, served, 16)
        assert e.value.status == 400 and time.perf_counter() - t0 < 0.05
    assert CACHE.misses == misses
    # a body refused for its rows is refused before its pattern is compiled
    wide = {**bad, "prompt": [PROMPT] * 2, "n": 9, "guided_regex": "([a-h]*a[a-h]{5}){1,398}"}
    with pytest.raises(HTTPError, match="rows"):
        parse_completion(wide, served, 16)
    asyncio.run(compile_guided(wide, served, 16))
    assert CACHE.lookup(wide["guided_regex"], served.model.vocab.chars,
                        served.model.vocab.eos_id) is None  # never compiled


def test_health_answers_while_patterns_compile(server):
    """Distinct slow patterns from several clients: /health keeps answering (compiles run on a
    worker thread, one at a time), and the same refused pattern again is answered at once."""
    import concurrent.futures as cf

    # each refused by the work budget after ~0.5 s of compiling (on the loop: /health waited)
    bodies = [{"prompt": PROMPT, "max_tokens": 20,
               "guided_regex": f"([a-h]*a[a-h]{{5}}){{1,60}}c{{0,{i}}}"} for i in range(4)]
    with cf.ThreadPoolExecutor(4) as ex:
        futures = [ex.submit(post, server, b) for b in bodies]
        waits = []
        while not all(f.done() for f in futures):
            t0 = time.perf_counter()
            assert httpx.get(server.url + "/health", timeout=30).status_code == 200
            waits.append(time.perf_counter() - t0)
            time.sleep(0.01)
        assert all(f.result().status_code == 400 for f in futures)
    # on the loop, each poll waited for a whole compile (~0.5 s): a few polls, a slow median
    assert len(waits) >= 10 and sorted(waits)[len(waits) // 2] < 0.1, waits
    bad = bodies[0]  # refused before: answered from the cache
    t0 = time.perf_counter()
    r = post(server, bad)
    assert r.status_code == 400 and "too much work" in r.json()["error"]["message"]
    assert time.perf_counter() - t0 < 0.5
