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
