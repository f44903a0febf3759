"""The OpenAI wire contract of `charwright serve` (STYLE rule 24), each fact in one place: the
error body and its types, SSE frames, the completion and chunk objects, what an engine outcome
answers, and how a /v1/completions body is read.

  - every error is error_body(status, message): {"error": {"message", "type", "code"}} with
    code = the HTTP status. 400 malformed JSON or a bad value (never 500), 401 key, 404 model or
    route, 405 method, 413 body too large, 429 queue full (Retry-After), 431 request head too
    large, 503 loading or draining, 504 request timeout (non-streaming).
  - SSE frames are `data: <json>\\n\\n`; the chunk that ends a choice carries its finish_reason;
    a stream that is cut (shutdown, timeout) ends with an `error` frame; `data: [DONE]` is last.
  - a request body is validated as `charwright generate` validates its options: unknown fields,
    OpenAI fields charwright cannot honour (unless sent as "off"), and bad values are 400.
  - constrained text: vLLM's extension fields `guided_regex` (a pattern the generated text
    matches in full) and `guided_choice` (a list of texts, one of which is generated); a bad or
    unspellable pattern is 400. `response_format` has no regex type in OpenAI's API or vLLM's
    (json_object, json_schema only), so it stays an unknown field.

Plain data and bytes: no web framework here (relay.py and app.py wrap these in responses).

(Just over 300 lines, one idea: the OpenAI wire contract, field by field.)

(About 310 lines, one idea: the OpenAI wire contract, request parsing and response shapes,
each fact once; the guided-regex gate parses a request field, so it stays with the parsing.)
"""

from __future__ import annotations

import asyncio
import json
import secrets
import weakref
from typing import NamedTuple

from charwright.runtime.errors import ConfigError
from charwright.runtime.sampling.config import SamplingConfig

MAX_TOKENS_LIMIT = 100_000
MAX_STOP = 16
DEFAULT_MAX_TOKENS = 300  # charwright generate's -n default
DEFAULT_TEMPERATURE = 0.8  # charwright generate's default

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
               405: "invalid_request_error", 413: "invalid_request_error",
               431: "invalid_request_error",
               429: "rate_limit_error", 500: "server_error", 503: "unavailable_error",
               504: "timeout_error"}
# OpenAI fields charwright cannot honour, with the value that means "off" (accepted as such)
UNSUPPORTED = {"best_of": 1, "echo": False, "logprobs": None, "suffix": None,
               "presence_penalty": 0, "frequency_penalty": 0, "logit_bias": None}
SAMPLING_FIELDS = ("temperature", "top_p", "top_k", "min_p", "typical_p", "repetition_penalty")
GUIDED_FIELDS = ("guided_regex", "guided_choice")  # vLLM's names (extra_body in the client)
MAX_CACHE_SALT = 1024  # characters of cache_salt
MAX_COMPILE_WAITING = 64  # requests waiting for a guided pattern to compile (more: 429)
KNOWN = {"model", "prompt", "max_tokens", "stop", "seed", "n", "stream", "stream_options",
         "user", "cache_salt", *SAMPLING_FIELDS, *GUIDED_FIELDS, *UNSUPPORTED}
FINISH = {"eos": "stop", "stop": "stop", "length": "length"}  # TextStream's reason -> OpenAI's


class HTTPError(Exception):
    """An answer other than 200: status, the message of its error body, extra headers."""

    def __init__(self, status: int, message: str, headers=None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


class CompletionParams(NamedTuple):
    """A /v1/completions body, validated."""

    prompts: list
    n: int
    max_chars: int
    sampling: SamplingConfig
    stop: list
    stream: bool
    include_usage: bool
    cache_salt: str | None = None  # vLLM's: keys the request's prompt-cache entries


# ---- what goes out -------------------------------------------------------------------------------

def error_body(status: int, message: str) -> dict:
    return {"error": {"message": message, "type": ERROR_TYPES.get(status, "server_error"),
                      "code": status}}


def sse(obj) -> bytes:
    """One server-sent event: `data: <json>` and a blank line."""
    data = obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False,
                                                       separators=(",", ":"))
    return f"data: {data}\n\n".encode()


def completion_id() -> str:
    return "cmpl-" + secrets.token_hex(12)


def chunk(cid: str, created: int, model: str, choices: list) -> dict:
    """A completion (non-streaming) or one chunk of a stream, without usage."""
    return {"id": cid, "object": "text_completion", "created": created, "model": model,
            "choices": choices}


def usage(prompt_chars: int, completion_chars: int) -> dict:
    return {"prompt_tokens": prompt_chars, "completion_tokens": completion_chars,
            "total_tokens": prompt_chars + completion_chars}


def choice(index: int, text: str, finish) -> dict:
    """One choice of a completion; finish: TextStream's finish_reason."""
    return {"index": index, "text": text, "logprobs": None,
            "finish_reason": FINISH.get(finish, finish)}


_FINISH_JSON = {None: "null", **{k: json.dumps(v) for k, v in FINISH.items()}}
_json_str = json.encoder.encode_basestring  # = json.dumps(str, ensure_ascii=False), in C


def choice_json(index: int, text: str, finish) -> bytes:
    """choice(...) as json.dumps(..., ensure_ascii=False, separators=(",", ":")) gives it, without
    json.dumps per frame (a stream sends one per step)."""
    fin = _FINISH_JSON.get(finish)
    if fin is None:
        fin = _json_str(finish)
    return (f'{{"index":{index},"text":{_json_str(text)},'
            f'"logprobs":null,"finish_reason":{fin}}}').encode()


def cut_error(outcome: str, request_timeout: float) -> tuple[int, str]:
    """(status, message) for a request the engine ended other than "ok"."""
    if outcome == "timeout":
        return 504, f"the request ran past --request-timeout {request_timeout:g} s"
    if outcome == "shutdown":
        return 503, "the server shut down before the request finished"
    return 500, "the request failed in the model backend"


# ---- what comes in -------------------------------------------------------------------------------

def parse_completion(body: dict, served, max_batch: int,
                     max_prompt_chars: int | None = None, compile: bool = True) -> CompletionParams:
    """The request's fields, validated as `charwright generate` validates its options (HTTPError
    400 naming the first bad one). served.sampling_defaults: the bundle's sampling defaults.
    compile=False: a guided pattern is not compiled (compile_guided does that off the loop)."""
    _check_fields(body)
    prompts = _prompts(body, max_prompt_chars)
    n = _int_field(body, "n", 1, 1, max_batch)
    max_chars = _int_field(body, "max_tokens", DEFAULT_MAX_TOKENS, 1, MAX_TOKENS_LIMIT)
    stop = _stop(body)
    stream, include_usage = _stream(body)
    if "user" in body and not isinstance(body["user"], (str, type(None))):
        raise HTTPError(400, "user must be a string")
    salt = body.get("cache_salt")
    if salt is not None and (not isinstance(salt, str) or not 1 <= len(salt) <= MAX_CACHE_SALT):
        raise HTTPError(400, f"cache_salt must be a string of 1..{MAX_CACHE_SALT} characters")
    sampling = _sampling(body, served.sampling_defaults)
    rows = len(prompts) * n
    if rows > max_batch:  # before a pattern is compiled: the cheap checks first
        raise HTTPError(400, f"{len(prompts)} prompt(s) x n={n} is {rows} rows; this server "
                        f"runs at most {max_batch} per batch (--max-batch)")
    if sampling.pattern is not None and compile:
        _check_guided(sampling, served.model.vocab, max_chars)
    return CompletionParams(prompts, n, max_chars, sampling, stop, stream, include_usage, salt)


def _check_fields(body: dict) -> None:
    unknown = sorted(set(body) - KNOWN)
    if unknown:
        raise HTTPError(400, f"unknown field {unknown[0]!r}; charwright takes: "
                        f"{', '.join(sorted(KNOWN))}")
    for name, off in UNSUPPORTED.items():
        if name in body and body[name] is not None and body[name] != off:
            raise HTTPError(400, f"{name} is not supported by charwright (leave it out)")


def _prompts(body: dict, max_prompt_chars: int | None) -> list:
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        prompts = [prompt]
    elif isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        prompts = prompt
    elif prompt is None:
        raise HTTPError(400, "prompt is required: a string or a list of strings")
    else:
        raise HTTPError(400, "prompt must be a string or a non-empty list of strings (token "
                        "ids are not accepted: the model reads characters)")
    chars = sum(len(p) for p in prompts)
    if max_prompt_chars is not None and chars > max_prompt_chars:
        raise HTTPError(400, f"prompt of {chars:,} characters; this server primes at most "
                        f"{max_prompt_chars:,} per request (--max-prompt-chars)")
    return prompts


def _int_field(body: dict, name: str, default: int, lo: int, hi: int) -> int:
    v = body.get(name, default)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise HTTPError(400, f"{name} {v!r}: must be an integer in {lo}..{hi}")
    return v


def _stop(body: dict) -> list:
    stop = body.get("stop")
    if stop is None:
        stop = []
    elif isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop) \
            or len(stop) > MAX_STOP:
        raise HTTPError(400, f"stop must be a string or a list of at most {MAX_STOP} strings")
    return stop


def _stream(body: dict) -> tuple[bool, bool]:
    """(stream, include_usage)."""
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise HTTPError(400, f"stream {stream!r}: must be true or false")
    opts = body.get("stream_options")
    if opts is None:
        return stream, False
    if not isinstance(opts, dict) or set(opts) - {"include_usage"} \
            or not isinstance(opts.get("include_usage", False), bool):
        raise HTTPError(400, "stream_options must be {\"include_usage\": true|false}")
    if not stream:
        raise HTTPError(400, "stream_options needs stream: true")
    return stream, opts.get("include_usage", False)


def _sampling(body: dict, defaults: dict) -> SamplingConfig:
    """Given fields, then the bundle's sampling_defaults, then the CLI's defaults."""
    values = {"temperature": DEFAULT_TEMPERATURE, **defaults}
    values.update({k: body[k] for k in SAMPLING_FIELDS if body.get(k) is not None})
    if body.get("seed") is not None:
        values["seed"] = body["seed"]
    regex, choices = body.get("guided_regex"), body.get("guided_choice")
    if regex is not None and not isinstance(regex, str):
        raise HTTPError(400, "guided_regex must be a string (a regular expression)")
    if choices is not None and (not isinstance(choices, list) or not choices
                                or not all(isinstance(c, str) for c in choices)):
        raise HTTPError(400, "guided_choice must be a non-empty list of strings")
    if regex is not None and choices is not None:
        raise HTTPError(400, "give guided_regex or guided_choice, not both")
    values["regex"], values["choices"] = regex, choices
    if values.get("top_p") == 1:  # OpenAI clients send 1 for "off"; the CLI drops it too
        values["top_p"] = None
    try:
        return SamplingConfig(**values)
    except (ConfigError, ValueError) as e:
        raise HTTPError(400, str(e)) from None


class _CompileGate:
    """One pattern compiles at a time per event loop, on a worker thread; at most
    MAX_COMPILE_WAITING requests wait for it (more: 429)."""

    def __init__(self):
        self.slot = asyncio.Semaphore(1)
        self.waiting = 0


_GATES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


async def compile_guided(body: dict, served, max_batch: int,
                         max_prompt_chars: int | None = None) -> None:
    """Compiles a request's guided pattern off the event loop (it may take up to about a second:
    MAX_WORK), one at a time, into the bounded cache that parse_completion then reads at once
    (refusals are cached too). A body that is bad otherwise is left to parse_completion."""
    from charwright.runtime.sampling.constrain import CACHE

    try:
        p = parse_completion(body, served, max_batch, max_prompt_chars, compile=False)
    except HTTPError:
        return
    pattern, vocab = p.sampling.pattern, served.model.vocab
    if pattern is None:
        return
    try:
        if CACHE.lookup(pattern, vocab.chars, vocab.eos_id) is not None:
            return
    except ConfigError:  # refused before: parse_completion answers it from the cache
        return
    loop = asyncio.get_running_loop()
    gate = _GATES.get(loop)
    if gate is None:
        gate = _GATES[loop] = _CompileGate()
    if gate.waiting >= MAX_COMPILE_WAITING:
        raise HTTPError(429, f"{gate.waiting} guided patterns are waiting to compile; retry "
                        "later", {"Retry-After": "1"})
    gate.waiting += 1
    try:
        async with gate.slot:
            try:
                await loop.run_in_executor(None, CACHE.get, pattern, vocab.chars, vocab.eos_id)
            except ConfigError:
                pass  # cached: parse_completion's 400
    finally:
        gate.waiting -= 1


def _check_guided(sampling: SamplingConfig, vocab, max_chars: int) -> None:
    """Compiles the pattern over the served vocabulary now (cached per pattern and vocabulary,
    bounded: sampling/constrain.CACHE), so that a bad one is a 400, not a failed request."""
    from charwright.runtime.sampling.constrain import dfa_for

    try:
        dfa = dfa_for(sampling.pattern, vocab)
    except ConfigError as e:
        raise HTTPError(400, str(e)) from None
    try:  # the start's cheapest move, not dist[0]: `(abc)*` needs 3, not 0
        dfa.check_limit(max_chars, "max_tokens")
    except ConfigError as e:
        raise HTTPError(400, str(e)) from None
