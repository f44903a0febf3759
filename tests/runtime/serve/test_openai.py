"""The OpenAI wire contract without a server: error bodies, SSE frames, streamed choices byte-equal
to json.dumps, what an engine outcome answers, and how a /v1/completions body is read (defaults,
the bundle's sampling defaults, the first bad field named). No [serve] extra needed."""

import json
from types import SimpleNamespace

import pytest

from charwright.runtime.serve import openai
from charwright.runtime.serve.openai import HTTPError, parse_completion


def parse(body, max_batch=8, max_prompt_chars=None, defaults=None):
    served = SimpleNamespace(sampling_defaults=defaults or {})
    return parse_completion(body, served, max_batch, max_prompt_chars)


def refused(body, **kw) -> str:
    with pytest.raises(HTTPError) as e:
        parse(body, **kw)
    assert e.value.status == 400 and e.value.headers is None
    return e.value.message


def test_error_bodies_carry_status_type_and_message():
    assert openai.error_body(429, "wait") == {
        "error": {"message": "wait", "type": "rate_limit_error", "code": 429}}
    assert openai.error_body(431, "x")["error"]["type"] == "invalid_request_error"
    assert openai.error_body(418, "x")["error"]["type"] == "server_error"  # unknown: server


def test_sse_frames():
    assert openai.sse({"a": "é"}) == 'data: {"a":"é"}\n\n'.encode()
    assert openai.sse("[DONE]") == b"data: [DONE]\n\n"


@pytest.mark.parametrize("finish", [None, "eos", "stop", "length", "odd\"reason"])
@pytest.mark.parametrize("text", ["", "abc", 'q"\\\n\té\u2028😀'])
def test_a_streamed_choice_is_the_json_of_the_choice(text, finish):
    want = json.dumps(openai.choice(3, text, finish), ensure_ascii=False, separators=(",", ":"))
    assert openai.choice_json(3, text, finish) == want.encode()


def test_finish_reasons_map_to_openai_names():
    assert [openai.choice(0, "", f)["finish_reason"] for f in ("eos", "stop", "length", None)] \
        == ["stop", "stop", "length", None]


def test_chunk_usage_and_ids():
    assert openai.chunk("cmpl-1", 5, "tiny", []) == {
        "id": "cmpl-1", "object": "text_completion", "created": 5, "model": "tiny",
        "choices": []}
    assert openai.usage(4, 10) == {"prompt_tokens": 4, "completion_tokens": 10,
                                   "total_tokens": 14}
    a, b = openai.completion_id(), openai.completion_id()
    assert a.startswith("cmpl-") and len(a) == 29 and a != b


def test_what_an_outcome_other_than_ok_answers():
    assert openai.cut_error("timeout", 2.5) == (
        504, "the request ran past --request-timeout 2.5 s")
    assert openai.cut_error("shutdown", 1)[0] == 503
    assert openai.cut_error("error", 1) == (500, "the request failed in the model backend")


def test_defaults_are_those_of_charwright_generate():
    p = parse({"prompt": "a"})
    assert (p.prompts, p.n, p.max_chars, p.stop, p.stream, p.include_usage) == (
        ["a"], 1, openai.DEFAULT_MAX_TOKENS, [], False, False)
    assert p.sampling.temperature == openai.DEFAULT_TEMPERATURE and p.sampling.seed is None


def test_given_fields_then_the_bundles_defaults_then_the_clis():
    p = parse({"prompt": ["a", "b"], "n": 3, "stop": "x", "seed": 4, "top_p": 1,
               "stream": True, "stream_options": {"include_usage": True}, "user": "u",
               "echo": False, "best_of": 1},
              defaults={"top_k": 5, "temperature": 0.5})
    assert (p.prompts, p.n, p.stop, p.stream, p.include_usage) == (
        ["a", "b"], 3, ["x"], True, True)
    s = p.sampling
    assert (s.top_k, s.temperature, s.seed, s.top_p) == (5, 0.5, 4, None)  # top_p 1 = off
    assert parse({"prompt": "a", "temperature": 1.5},
                 defaults={"temperature": 0.5}).sampling.temperature == 1.5


@pytest.mark.parametrize("body, kw, words", [
    ({"prompt": "a", "bogus": 1, "n": 0}, {}, "unknown field 'bogus'; charwright takes: best_of"),
    ({"prompt": "a", "echo": True}, {}, "echo is not supported by charwright (leave it out)"),
    ({}, {}, "prompt is required: a string or a list of strings"),
    ({"prompt": []}, {}, "prompt must be a string or a non-empty list of strings"),
    ({"prompt": "a" * 11}, {"max_prompt_chars": 10},
     "prompt of 11 characters; this server primes at most 10 per request (--max-prompt-chars)"),
    ({"prompt": "a", "n": 9}, {}, "n 9: must be an integer in 1..8"),
    ({"prompt": "a", "n": True}, {}, "n True: must be an integer in 1..8"),
    ({"prompt": "a", "max_tokens": 100_001}, {}, "max_tokens 100001: must be an integer in"),
    ({"prompt": "a", "stop": ["s"] * 17}, {}, "stop must be a string or a list of at most 16"),
    ({"prompt": "a", "stream": 1}, {}, "stream 1: must be true or false"),
    ({"prompt": "a", "stream_options": {"x": 1}, "stream": True}, {},
     'stream_options must be {"include_usage": true|false}'),
    ({"prompt": "a", "stream_options": {}}, {}, "stream_options needs stream: true"),
    ({"prompt": "a", "user": 3}, {}, "user must be a string"),
    ({"prompt": "a", "temperature": -1}, {}, "temperature -1"),
    ({"prompt": ["a"] * 5, "n": 2}, {},
     "5 prompt(s) x n=2 is 10 rows; this server runs at most 8 per batch (--max-batch)"),
])
def test_the_first_bad_field_is_named(body, kw, words):
    assert words in refused(body, **kw)
