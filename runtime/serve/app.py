"""HTTP over the engine: OpenAI-compatible completions with SSE, health, models and metrics.

Needs the [serve] extra (starlette, uvicorn, prometheus-client); runtime.engine does not.

Handlers only validate, enqueue and relay (STYLE rule 23): each loaded model has one Engine whose
scheduler thread owns the backend. The engine calls `notify(requests)` once per step; that becomes
one call_soon_threadsafe on the event loop unless one is pending already (then the requests join
it), which wakes each request's writer, and the writer sends everything the request made since its
last frame in one SSE frame. An event loop that lags behind the scheduler (64 frames cost more
than a step) thus sends several characters per frame, never a backlog of frames; a slow reader
gets bigger frames too.

The wire contract (rule 24), in one place each:
  - SSE frames are `data: <json>\\n\\n`; the chunk that ends a choice carries its finish_reason;
    a stream that is cut (shutdown, timeout) ends with an `error` frame; `data: [DONE]` is last.
  - every error is error_response(status, message): {"error": {"message", "type", "code"}} with
    code = the HTTP status. 400 malformed JSON or a bad value (never 500), 401 key, 404 model or
    route, 405 method, 413 body over MAX_BODY_BYTES, 429 queue full (Retry-After), 503 loading or
    draining, 504 request timeout (non-streaming).
  - a client that goes away (ASGI http.disconnect, or a failed write) cancels its request: its
    rows leave the batch before the next step, its prompts leave the primer if they were priming.
  - 400 also for a prompt over --max-prompt-chars; 431 for a request head over MAX_HEAD_BYTES
    or with more than MAX_HEADER_FIELDS header fields (then the connection is closed).

The log (stderr) carries one line per event, `charwright serve: ...`, never a traceback: uvicorn's
loggers write through _OneLine, and a client that leaves while its body is read is a 499 in
/metrics, not an exception.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import operator
import os
import secrets
import sys
import threading
import time
from dataclasses import dataclass, field

from charwright.runtime.serve.engine import Engine
from charwright.runtime.serve.request import Draining, QueueFull
from charwright.runtime.errors import BackendUnavailable, CharwrightError, ConfigError, VocabularyError
from charwright.runtime.sampling.config import SamplingConfig

try:
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                        HistogramMetricFamily)
    from prometheus_client.exposition import CONTENT_TYPE_LATEST
    from starlette.applications import Starlette
    from starlette.requests import ClientDisconnect
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route
except ImportError as e:  # pragma: no cover - the CLI reports this with the extra's name
    raise BackendUnavailable(f"{e.name} is not installed; install the server with: "
                             "pip install 'charwright[serve]'") from None

MAX_BODY_BYTES = 1 << 20
MAX_TOKENS_LIMIT = 100_000
MAX_STOP = 16
DEFAULT_MAX_TOKENS = 300  # charwright generate's -n default
DEFAULT_TEMPERATURE = 0.8  # charwright generate's default
RETRY_AFTER_SECONDS = 1
DEFAULT_MAX_PROMPT_CHARS = 100_000  # --max-prompt-chars (~3 s of priming alone, demo model)
MAX_HEAD_BYTES = 32 * 1024  # request line + header fields (nginx: 4 x 8 KiB buffers)
MAX_HEADER_FIELDS = 100  # gunicorn's limit_request_fields

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
               405: "invalid_request_error", 413: "invalid_request_error",
               431: "invalid_request_error",
               429: "rate_limit_error", 500: "server_error", 503: "unavailable_error",
               504: "timeout_error"}
# OpenAI fields charwright cannot honour, with the value that means "off" (accepted as such)
UNSUPPORTED = {"best_of": 1, "echo": False, "logprobs": None, "suffix": None,
               "presence_penalty": 0, "frequency_penalty": 0, "logit_bias": None}
SAMPLING_FIELDS = ("temperature", "top_p", "top_k", "min_p", "typical_p", "repetition_penalty")
KNOWN = {"model", "prompt", "max_tokens", "stop", "seed", "n", "stream", "stream_options",
         "user", *SAMPLING_FIELDS, *UNSUPPORTED}
FINISH = {"eos": "stop", "stop": "stop", "length": "length"}


class HTTPError(Exception):
    def __init__(self, status: int, message: str, headers=None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def error_body(status: int, message: str) -> dict:
    return {"error": {"message": message, "type": ERROR_TYPES.get(status, "server_error"),
                      "code": status}}


def error_response(status: int, message: str, headers=None) -> JSONResponse:
    return JSONResponse(error_body(status, message), status_code=status, headers=headers)


def sse(obj) -> bytes:
    """One server-sent event: `data: <json>` and a blank line."""
    data = obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False,
                                                       separators=(",", ":"))
    return f"data: {data}\n\n".encode()


# ---- configuration and state --------------------------------------------------------------------

@dataclass
class ServeConfig:
    bundles: tuple = ()  # bundle directories; empty: the demo
    backend: str = "onnx"
    precision: str | None = None
    threads: int = 1
    max_batch: int = 64
    max_queue: int = 64
    api_key: str | None = field(default=None, repr=False)  # never printed
    request_timeout: float = 600.0  # 0: none
    shutdown_timeout: float = 30.0
    max_prompt_chars: int = DEFAULT_MAX_PROMPT_CHARS


def model_names(bundles) -> list[str]:
    """The name each bundle is served under: its directory's name (the demo: "demo")."""
    from pathlib import Path

    from charwright.runtime.model import DEMO_BUNDLE

    names = [Path(b).resolve().name for b in bundles] if bundles else [DEMO_BUNDLE.name]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ConfigError(f"two bundles are named {sorted(dup)[0]!r}: models are served by "
                          "directory name, so give each bundle its own")
    return names


class Served:
    """One model: its name, Model, Engine and the request counters of the HTTP layer."""

    def __init__(self, name, model, engine):
        self.name, self.model, self.engine = name, model, engine
        self.created = int(time.time())
        self.requests: dict[str, int] = {}  # HTTP status (499: client gone) -> count
        self.sampling_defaults = _sampling_defaults(model)

    def count(self, status: int) -> None:
        key = str(status)
        self.requests[key] = self.requests.get(key, 0) + 1


def _sampling_defaults(model) -> dict:
    """The bundle's sampling_defaults, read and checked as `charwright generate` reads them
    (sampling.bundle_defaults: a malformed object is a BundleError at start-up)."""
    from charwright.runtime.sampling.config import bundle_defaults

    return bundle_defaults(model.bundle.manifest, f"{model.bundle.root}/manifest.json")


class State:
    """What the app knows: "loading", "ready", "draining" or "failed"."""

    def __init__(self, cfg: ServeConfig, names):
        self.cfg, self.names = cfg, names
        self.phase = "loading"
        self.fatal: str | None = None
        self.models: dict[str, Served] = {}
        self.open_responses = 0
        self.server = None  # the uvicorn.Server, to ask it to exit
        self.loop = None
        self.rejected_unrouted: dict[str, int] = {}  # requests that named no served model

    def count_unrouted(self, status: int) -> None:
        self.rejected_unrouted[str(status)] = self.rejected_unrouted.get(str(status), 0) + 1


# ---- request parsing ----------------------------------------------------------------------------

def _int_field(body, name, default, lo, hi):
    v = body.get(name, default)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise HTTPError(400, f"{name} {v!r}: must be an integer in {lo}..{hi}")
    return v


def parse_completion(body, served: Served, max_batch: int,
                     max_prompt_chars: int | None = None):
    """The request's fields, validated as `charwright generate` validates its options.

    Returns (prompts, n, max_chars, SamplingConfig, stop, stream, include_usage)."""
    unknown = sorted(set(body) - KNOWN)
    if unknown:
        raise HTTPError(400, f"unknown field {unknown[0]!r}; charwright takes: "
                        f"{', '.join(sorted(KNOWN))}")
    for name, off in UNSUPPORTED.items():
        if name in body and body[name] is not None and body[name] != off:
            raise HTTPError(400, f"{name} is not supported by charwright (leave it out)")
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
    n = _int_field(body, "n", 1, 1, max_batch)
    max_chars = _int_field(body, "max_tokens", DEFAULT_MAX_TOKENS, 1, MAX_TOKENS_LIMIT)
    stop = body.get("stop")
    if stop is None:
        stop = []
    elif isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop) \
            or len(stop) > MAX_STOP:
        raise HTTPError(400, f"stop must be a string or a list of at most {MAX_STOP} strings")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise HTTPError(400, f"stream {stream!r}: must be true or false")
    opts = body.get("stream_options")
    include_usage = False
    if opts is not None:
        if not isinstance(opts, dict) or set(opts) - {"include_usage"} \
                or not isinstance(opts.get("include_usage", False), bool):
            raise HTTPError(400, "stream_options must be {\"include_usage\": true|false}")
        if not stream:
            raise HTTPError(400, "stream_options needs stream: true")
        include_usage = opts.get("include_usage", False)
    if "user" in body and not isinstance(body["user"], (str, type(None))):
        raise HTTPError(400, "user must be a string")
    # sampling: given fields, then the bundle's sampling_defaults, then the CLI's defaults
    values = {"temperature": DEFAULT_TEMPERATURE, **served.sampling_defaults}
    values.update({k: body[k] for k in SAMPLING_FIELDS if body.get(k) is not None})
    if body.get("seed") is not None:
        values["seed"] = body["seed"]
    if values.get("top_p") == 1:  # OpenAI clients send 1 for "off"; the CLI drops it too
        values["top_p"] = None
    try:
        cfg = SamplingConfig(**values)
    except (ConfigError, ValueError) as e:
        raise HTTPError(400, str(e)) from None
    rows = len(prompts) * n
    if rows > max_batch:
        raise HTTPError(400, f"{len(prompts)} prompt(s) x n={n} is {rows} rows; this server "
                        f"runs at most {max_batch} per batch (--max-batch)")
    return prompts, n, max_chars, cfg, stop, stream, include_usage


async def _read_body(request) -> bytes:
    length = request.headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise HTTPError(400, "bad Content-Length")
        if int(length) > MAX_BODY_BYTES:
            raise HTTPError(413, f"request body of {int(length):,} bytes; the limit is "
                            f"{MAX_BODY_BYTES:,}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise HTTPError(413, f"request body over {MAX_BODY_BYTES:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _disconnected(receive) -> None:
    """Returns when the client has gone (the request body was read already)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


# ---- responses that follow a request in the engine ----------------------------------------------

class _Relay:
    """Follows one engine request: ASGI app for the streaming answer, or awaits the whole one."""

    def __init__(self, state: State, served: Served, req, stream: bool, include_usage: bool):
        self.state, self.served, self.req = state, served, req
        self.include_usage = include_usage
        self.stream = stream
        self.event = _Signal(asyncio.get_running_loop())
        req.waker = self.event.set  # called on the event loop (see _notifier)
        self.id = "cmpl-" + secrets.token_hex(12)
        self.created = int(time.time())
        self.status = 200
        # a chunk is this prefix, its choices and b"]}\n\n": the bytes sse(self._chunk(...))
        # gives, without a json.dumps of the whole chunk per frame
        self._prefix = sse(self._chunk([]))[:-len(b"]}\n\n")]

    def _chunk(self, choices) -> dict:
        return {"id": self.id, "object": "text_completion", "created": self.created,
                "model": self.served.name, "choices": choices}

    def usage(self) -> dict:
        r = self.req
        prompt = r.prompt_chars
        done = r.generated_chars()
        return {"prompt_tokens": prompt, "completion_tokens": done,
                "total_tokens": prompt + done}

    def _cut_message(self, outcome: str) -> tuple[int, str]:
        if outcome == "timeout":
            return 504, f"the request ran past --request-timeout {self.state.cfg.request_timeout:g} s"
        if outcome == "shutdown":
            return 503, "the server shut down before the request finished"
        return 500, "the request failed in the model backend"

    async def __call__(self, scope, receive, send) -> None:
        """The SSE answer: runs until the request ends or the client goes away."""
        self.state.open_responses += 1
        try:
            await send({"type": "http.response.start", "status": 200, "headers": [
                (b"content-type", b"text/event-stream; charset=utf-8"),
                (b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]})
            # the body frames go to the server's own send (see _RawSend): Starlette's wrappers
            # only note that the response started, which the start above did through them
            writer = asyncio.ensure_future(self._write(scope.get(RAW_SEND, send)))
            gone = asyncio.ensure_future(_disconnected(receive))
            done, _ = await asyncio.wait({writer, gone}, return_when=asyncio.FIRST_COMPLETED)
            if writer not in done:
                writer.cancel()
            else:
                gone.cancel()
            ok = writer in done and not writer.cancelled() and writer.exception() is None
            if not ok:  # the client went away (or a write failed): free its rows
                self.served.engine.cancel(self.req)
                self.status = 499
        finally:
            self.state.open_responses -= 1
            self.served.count(self.status)

    async def _write(self, send) -> None:
        req, event = self.req, self.event
        while True:
            event.flag = False
            outcome = req.outcome
            if req.events:
                await send({"type": "http.response.body", "body": self._frame(),
                            "more_body": True})
            if outcome is not None:
                break
            if not event.flag:
                await event.future()
        tail = b""
        if outcome == "ok":
            if self.include_usage:
                tail += sse({**self._chunk([]), "usage": self.usage()})
        else:
            self.status, message = self._cut_message(outcome)
            tail += sse(error_body(self.status, message))
        tail += sse("[DONE]")
        await send({"type": "http.response.body", "body": tail, "more_body": False})

    def _frame(self) -> bytes:
        """Every event since the last frame, one choice entry per choice that has new text."""
        events = self.req.events
        popleft = events.popleft
        got = [popleft() for _ in range(len(events))]  # the scheduler may append meanwhile
        if self.req.rows == 1:  # one choice: its finish_reason, if any, is its last event
            return (self._prefix + _choice(0, "".join(map(_PIECE, got)), got[-1][2])
                    + b"]}\n\n")
        text: dict[int, list] = {}
        fin: dict[int, str] = {}
        for c, piece, f in got:
            text.setdefault(c, []).append(piece)
            if f is not None:
                fin[c] = f
        return (self._prefix + b",".join(_choice(c, "".join(p), fin.get(c))
                                         for c, p in sorted(text.items())) + b"]}\n\n")

    async def complete(self, receive) -> Response:
        """The non-streaming answer, once every choice has finished."""
        req, event = self.req, self.event
        gone = asyncio.ensure_future(_disconnected(receive))
        try:
            while req.outcome is None:
                waiter = asyncio.ensure_future(event.wait())
                event.clear()
                done, _ = await asyncio.wait({waiter, gone},
                                             return_when=asyncio.FIRST_COMPLETED)
                if gone in done:
                    waiter.cancel()
                    self.served.engine.cancel(req)
                    self.status = 499
                    return Response(status_code=499)
                req.events.clear()
        finally:
            gone.cancel()
        if req.outcome != "ok":
            self.status, message = self._cut_message(req.outcome)
            return error_response(self.status, message)
        choices = [{"index": c, "text": s.text(), "logprobs": None,
                    "finish_reason": FINISH.get(s.finish_reason, s.finish_reason)}
                   for c, s in enumerate(req.streams)]
        return JSONResponse({**self._chunk(choices), "usage": self.usage()})


class _Signal:
    """asyncio.Event's set/clear/wait for one waiter, without its per-wait bookkeeping: set()
    runs on the event loop (the engine's notify hands it there) once per frame."""

    __slots__ = ("loop", "flag", "fut")

    def __init__(self, loop):
        self.loop, self.flag, self.fut = loop, False, None

    def set(self) -> None:
        self.flag = True
        fut = self.fut
        if fut is not None and not fut.done():
            fut.set_result(None)

    def clear(self) -> None:
        self.flag = False

    def future(self):
        """A future that completes at the next set()."""
        self.fut = fut = self.loop.create_future()
        return fut

    async def wait(self) -> None:
        if not self.flag:
            await self.future()


_PIECE = operator.itemgetter(1)
_FINISH_JSON = {None: "null", **{k: json.dumps(v) for k, v in FINISH.items()}}
_json_str = json.encoder.encode_basestring  # = json.dumps(str, ensure_ascii=False), in C


def _choice(index: int, text: str, finish) -> bytes:
    """One streamed choice, as json.dumps(..., ensure_ascii=False, separators=(",", ":"))."""
    fin = _FINISH_JSON.get(finish)
    if fin is None:
        fin = _json_str(finish)
    return (f'{{"index":{index},"text":{_json_str(text)},'
            f'"logprobs":null,"finish_reason":{fin}}}').encode()


# ---- the app ------------------------------------------------------------------------------------

RAW_SEND = "charwright.send"


class _RawSend:
    """Outermost ASGI layer: puts the server's own send in the scope, so that a stream's body
    frames skip the three middleware wrappers (each one a coroutine call per frame)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            if len(scope["headers"]) > MAX_HEADER_FIELDS:  # h11 bounds bytes only (httptools:
                why = f"more than {MAX_HEADER_FIELDS} header fields"  # _bounded refuses earlier)
                await error_response(431, why, {"Connection": "close"})(scope, receive, send)
                return
            scope[RAW_SEND] = send
        await self.app(scope, receive, send)


def _authorized(state: State, request) -> bool:
    key = state.cfg.api_key
    if not key:
        return True
    given = request.headers.get("authorization", "")
    scheme, _, token = given.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(token.strip().encode(), key.encode())


def _unavailable(state: State):
    if state.phase == "loading":
        return error_response(503, "loading model(s)", {"Retry-After": "1"})
    if state.phase in ("draining", "failed"):
        return error_response(503, "the server is shutting down")
    return None


def build_app(cfg: ServeConfig, names=None) -> "Starlette":
    """The ASGI app. Models load in the background after start-up (/health says 503 until
    then); `app.state.charwright` is the State."""
    from contextlib import asynccontextmanager

    state = State(cfg, names or model_names(cfg.bundles))

    async def completions(request):
        if not _authorized(state, request):
            state.count_unrouted(401)
            return error_response(401, "missing or wrong API key: send Authorization: Bearer "
                                  "KEY")
        down = _unavailable(state)
        if down is not None:
            state.count_unrouted(503)
            return down
        served = None
        try:
            try:
                raw = await _read_body(request)
            except ClientDisconnect:  # it left (or its chunked body was malformed): nobody reads
                state.count_unrouted(499)
                return Response(status_code=499)
            try:
                body = json.loads(raw)
            except (ValueError, RecursionError):
                raise HTTPError(400, "the body is not valid JSON") from None
            if not isinstance(body, dict):
                raise HTTPError(400, "the body must be a JSON object")
            name = body.get("model")
            if name is None and len(state.models) == 1:
                name = next(iter(state.models))
            if not isinstance(name, str):
                raise HTTPError(400, "model is required: one of " + ", ".join(state.models))
            served = state.models.get(name)
            if served is None:
                raise HTTPError(404, f"model {name!r} is not served here; models: "
                                f"{', '.join(state.models)}")
            engine = served.engine
            prompts, n, max_chars, sampling, stop, stream, usage = parse_completion(
                body, served, engine.max_batch, cfg.max_prompt_chars)
            try:
                req = engine.prepare(prompts, n, max_chars, sampling, stop,
                                     cfg.request_timeout or None)
            except VocabularyError as e:
                raise HTTPError(400, f"prompt: {e}") from None
            except ConfigError as e:
                raise HTTPError(400, str(e)) from None
            relay = _Relay(state, served, req, stream, usage)
            try:
                engine.enqueue(req)
            except QueueFull as e:
                raise HTTPError(429, str(e), {"Retry-After": str(RETRY_AFTER_SECONDS)}) from None
            except Draining as e:
                raise HTTPError(503, str(e)) from None
        except HTTPError as e:
            (served.count if served is not None else state.count_unrouted)(e.status)
            return error_response(e.status, e.message, e.headers)
        if stream:
            return relay
        state.open_responses += 1
        try:
            response = await relay.complete(request.receive)
        finally:
            state.open_responses -= 1
        served.count(relay.status)
        return response

    async def models(request):
        if not _authorized(state, request):
            return error_response(401, "missing or wrong API key: send Authorization: Bearer KEY")
        data = [{"id": s.name, "object": "model", "created": s.created, "owned_by": "charwright",
                 "file": s.model.entry.path, "backend": cfg.backend,
                 "precision": s.model.entry.precision, "max_batch": s.engine.max_batch}
                for s in state.models.values()]
        return JSONResponse({"object": "list", "data": data})

    async def health(request):
        down = _unavailable(state)
        if down is not None:
            return down
        return JSONResponse({"status": "ok"})

    async def metrics(request):
        if not _authorized(state, request):
            return error_response(401, "missing or wrong API key: send Authorization: Bearer KEY")
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    registry = CollectorRegistry()
    registry.register(_Collector(state))

    @asynccontextmanager
    async def lifespan(app):
        state.loop = asyncio.get_running_loop()
        loading = state.loop.run_in_executor(None, _load_all, state)
        loading.add_done_callback(lambda f: _loaded(state, f))
        try:
            yield
        finally:
            for s in list(state.models.values()):
                await state.loop.run_in_executor(None, s.engine.close)

    async def not_found(request, exc):
        status = getattr(exc, "status_code", 404)
        if status == 405:
            return error_response(405, f"method {request.method} is not allowed on "
                                  f"{request.url.path}")
        return error_response(404, f"no route {request.url.path}")

    async def server_error(request, exc):  # a bug of ours: still the standard body
        return error_response(500, f"internal error: {type(exc).__name__}")

    app = Starlette(routes=[
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ], lifespan=lifespan, exception_handlers={404: not_found, 405: not_found,
                                              500: server_error})
    app.state.charwright = state
    return app


def _load_all(state: State) -> None:
    from charwright.runtime.model import load

    cfg = state.cfg
    bundles = cfg.bundles or (None,)
    loop = state.loop
    for name, bundle in zip(state.names, bundles):
        model = load(bundle, backend=cfg.backend, precision=cfg.precision, threads=cfg.threads)
        engine = Engine(model, cfg.max_batch, cfg.max_queue, notify=_notifier(loop),
                        max_prompt_chars=cfg.max_prompt_chars)
        state.models[name] = Served(name, model, engine.start())


def _notifier(loop):
    """notify(requests) for the engine: at most one wake-up of the event loop is pending. Steps
    that end while it waits add their requests to it, so an event loop that lags behind the
    scheduler wakes once for several steps (and each stream sends their text in one frame)."""
    pending: list = []
    lock = threading.Lock()

    def wake():
        nonlocal pending
        with lock:
            requests, pending = pending, []
        for r in requests:
            r.waker()

    def notify(requests):  # scheduler thread
        with lock:
            first = not pending
            pending.extend(requests)
        if first:
            try:
                loop.call_soon_threadsafe(wake)
            except RuntimeError:  # the loop has closed: nobody listens any more
                pass

    return notify


def _loaded(state: State, future) -> None:
    e = future.exception() if not future.cancelled() else None
    if e is None and not future.cancelled():
        if state.phase == "loading":
            state.phase = "ready"
        desc = ", ".join(f"{s.name} ({s.model.entry.path})" for s in state.models.values())
        _log(f"ready: {desc}; max batch {state.cfg.max_batch}, max queue {state.cfg.max_queue}, "
             f"max prompt {state.cfg.max_prompt_chars:,} chars")
        return
    state.phase = "failed"
    state.fatal = str(e) if isinstance(e, CharwrightError) else f"{type(e).__name__}: {e}"
    if state.server is not None:
        state.server.should_exit = True


def _log(message: str) -> None:
    print(f"charwright serve: {message}", file=sys.stderr, flush=True)


class _Collector:
    """Prometheus metrics, read from the engines at scrape time."""

    def __init__(self, state: State):
        self.state = state

    def collect(self):
        models = list(self.state.models.values())
        running = GaugeMetricFamily("charwright_requests_running",
                                    "Requests whose rows are in the batch.", labels=["model"])
        waiting = GaugeMetricFamily("charwright_requests_waiting",
                                    "Requests accepted and waiting for rows.", labels=["model"])
        rows = GaugeMetricFamily("charwright_batch_rows", "Rows in the batch now.",
                                 labels=["model"])
        total = CounterMetricFamily("charwright_requests",
                                    "Completion requests by HTTP status (499: the client went "
                                    "away).", labels=["model", "status"])
        chars = CounterMetricFamily("charwright_chars_generated",
                                    "Characters (ids) generated.", labels=["model"])
        steps = HistogramMetricFamily("charwright_step_seconds",
                                      "Time of one batched step (backend + sampling).",
                                      labels=["model"])
        sizes = HistogramMetricFamily("charwright_batch_size", "Rows per batched step.",
                                      labels=["model"])
        priming = GaugeMetricFamily("charwright_requests_priming",
                                    "Requests whose prompts are being primed.", labels=["model"])
        left = GaugeMetricFamily("charwright_prompt_chars_left",
                                 "Prompt characters (ids) still to prime.", labels=["model"])
        primed = CounterMetricFamily("charwright_prompt_chars_primed",
                                     "Prompt characters (ids) run through the step graph.",
                                     labels=["model"])
        prime_s = CounterMetricFamily("charwright_prime_seconds",
                                      "Time the scheduler spent priming prompts.",
                                      labels=["model"])
        for s in models:
            e = s.engine
            running.add_metric([s.name], e.running_requests)
            waiting.add_metric([s.name], e.waiting_requests)
            rows.add_metric([s.name], e.running_rows)
            for status, count in sorted(s.requests.items()):
                total.add_metric([s.name, status], count)
            chars.add_metric([s.name], e.chars_generated)
            priming.add_metric([s.name], e.priming_requests)
            left.add_metric([s.name], e.prompt_ids_left)
            primed.add_metric([s.name], e.prompt_ids_primed)
            prime_s.add_metric([s.name], e.prime_seconds)
            for fam, h in ((steps, e.step_seconds), (sizes, e.batch_size)):
                buckets = [(_le(le), c) for le, c in h.cumulative()]
                fam.add_metric([s.name], buckets, h.sum)
        for status, count in sorted(self.state.rejected_unrouted.items()):
            total.add_metric(["", status], count)
        return [running, waiting, rows, total, chars, steps, sizes, priming, left, primed, prime_s]


def _le(x: float) -> str:
    return "+Inf" if x == float("inf") else repr(float(x))


# ---- the connection and the log -----------------------------------------------------------------

def _http_protocol():
    """uvicorn's httptools protocol with the request head bounded, or "h11" without httptools
    (then h11_max_incomplete_event_size bounds the head). uvicorn bounds the head only for h11:
    httptools keeps a header field of any length (an unterminated 48 MB one was held)."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # pragma: no cover - httptools is in the [serve] extra
        return "h11"
    return _bounded(HttpToolsProtocol)


class _HeadRefused(Exception):
    """Raised in a parser callback: httptools stops and uvicorn calls send_400_response."""


def _bounded(base):
    class BoundedHttpTools(base):
        """At most MAX_HEAD_BYTES of request line and header fields and MAX_HEADER_FIELDS
        fields; beyond either, 431 with the standard body, one log line, connection closed.
        Malformed requests get uvicorn's 400 and one log line (its own warning is filtered)."""

        _head = None  # bytes of the current request head so far; None once the head is complete
        _fields = 0
        _refused = None  # why the request was refused (431), once it was

        def on_message_begin(self):
            self._head, self._fields = 0, 0
            super().on_message_begin()

        def on_header(self, name, value):
            self._fields += 1
            if self._fields > MAX_HEADER_FIELDS:
                self._refused = f"more than {MAX_HEADER_FIELDS} header fields"
                raise _HeadRefused(self._refused)
            super().on_header(name, value)

        def on_headers_complete(self):
            self._head = None
            super().on_headers_complete()

        def data_received(self, data):
            super().data_received(data)
            if self._head is None or self.transport.is_closing():
                return
            self._head += len(data)  # the head is still incomplete: all of data is head
            if self._head > MAX_HEAD_BYTES:
                self._refused = f"request head over {MAX_HEAD_BYTES:,} bytes"
                self._refuse()

        def send_400_response(self, msg):
            if self._refused is not None:
                self._refuse()
                return
            _log(f"refused a malformed request from {_peer(self.client)}: {msg} (400)")
            super().send_400_response(msg)

        def _refuse(self):
            _log(f"refused a request from {_peer(self.client)}: {self._refused} (431)")
            body = json.dumps(error_body(431, self._refused)).encode()
            self.transport.write(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                                 b"content-type: application/json\r\n"
                                 b"content-length: " + str(len(body)).encode() + b"\r\n"
                                 b"connection: close\r\n\r\n" + body)
            self.transport.close()

    return BoundedHttpTools


def _peer(client) -> str:
    return "%s:%d" % tuple(client) if client else "a client"


class _OneLine(logging.Formatter):
    """`charwright serve: LEVEL: message` on one line; an exception adds its type and message,
    never its traceback (CHARWRIGHT_DEBUG=1 shows it)."""

    def format(self, record) -> str:
        msg = record.getMessage()
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None:
            if os.environ.get("CHARWRIGHT_DEBUG") == "1":
                msg += "\n" + self.formatException(record.exc_info)
                return f"charwright serve: {record.levelname.lower()}: {msg}"
            msg = f"{msg}: {type(exc).__name__}: {exc}"
        return f"charwright serve: {record.levelname.lower()}: {' '.join(msg.split())}"


class _Handled(logging.Filter):
    """Drops uvicorn's bare "Invalid HTTP request received." (_bounded logs the event with its
    client and reason)."""

    def filter(self, record) -> bool:
        return record.msg != "Invalid HTTP request received."


LOG_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"one_line": {"()": _OneLine}},
    "filters": {"handled": {"()": _Handled}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr",
                            "formatter": "one_line", "filters": ["handled"]}},
    "loggers": {name: {"handlers": ["stderr"], "level": "WARNING", "propagate": False}
                for name in ("uvicorn", "uvicorn.access", "asyncio")},
}


# ---- the process --------------------------------------------------------------------------------

def run_server(cfg: ServeConfig, host: str = "127.0.0.1", port: int = 8000) -> int:
    """Binds host:port (0: any free port; the bound one is printed on stderr), serves until
    SIGTERM or Ctrl-C, drains, and returns the exit code (0; 1 if a model failed to load)."""
    import socket

    import uvicorn

    names = model_names(cfg.bundles)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    sock.listen(2048)
    bound = sock.getsockname()[1]
    app = build_app(cfg, names)
    state: State = app.state.charwright
    url_host = f"[{host}]" if ":" in host else host
    _log(f"listening on http://{url_host}:{bound} (loading {', '.join(names)})")

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame):
            # first SIGTERM/SIGINT: drain; a second one: uvicorn's own (exit now)
            # (uvicorn's own would re-raise the signal at exit: the process would not exit 0)
            if state.phase in ("draining", "failed") or state.loop is None:
                self.should_exit = self.force_exit = True
                return
            state.phase = "draining"
            state.loop.call_soon_threadsafe(lambda: asyncio.ensure_future(_drain(state)))

    config = uvicorn.Config(_RawSend(app), log_level="warning", access_log=False, lifespan="on",
                            timeout_graceful_shutdown=5, server_header=False,
                            http=_http_protocol(), h11_max_incomplete_event_size=MAX_HEAD_BYTES,
                            log_config=LOG_CONFIG)
    server = Server(config)
    state.server = server
    server.run(sockets=[sock])
    if state.fatal:
        raise CharwrightError(state.fatal)
    _log("stopped")
    return 0


async def _drain(state: State) -> None:
    """Stop admission; let running requests finish within --shutdown-timeout; end the rest with
    a final event; then let the server exit (closing the connections that are left)."""
    cfg = state.cfg
    engines = [s.engine for s in state.models.values()]
    for e in engines:
        e.drain()
    left = sum(e.running_requests + e.waiting_requests for e in engines)
    _log(f"draining: {left} request(s) in flight, up to {cfg.shutdown_timeout:g} s")
    end = time.monotonic() + cfg.shutdown_timeout
    while time.monotonic() < end and not all(e.idle() for e in engines):
        await asyncio.sleep(0.02)
    cut = sum(e.running_requests + e.waiting_requests for e in engines)
    for e in engines:
        e.abort_all("shutdown")
    if cut:
        _log(f"cut off {cut} request(s) at the shutdown timeout")
    end = time.monotonic() + 2.0  # the final events go out before the connections close
    while time.monotonic() < end and (state.open_responses or not all(e.idle()
                                                                       for e in engines)):
        await asyncio.sleep(0.01)
    state.server.should_exit = True


def env_api_key() -> str | None:
    return os.environ.get("CHARWRIGHT_API_KEY") or None
