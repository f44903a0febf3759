"""HTTP over the engine: the Starlette app of `charwright serve` (OpenAI-compatible
/v1/completions with SSE, /v1/models, /health, Prometheus /metrics) and its life: models load in
the background after start-up (/health says 503 until then).

Handlers only validate, enqueue and relay (STYLE rule 23): each loaded model has one Engine whose
scheduler thread owns the backend; openai.py reads the body, relay.py answers. The engine calls
`notify(requests)` once per step; _notifier turns that into one call_soon_threadsafe on the event
loop unless one is pending already (then the requests join it). A client that leaves while its
body is read is a 499 in /metrics, not an exception. Needs the [serve] extra."""

from __future__ import annotations

import asyncio
import hmac
import json
import threading
from contextlib import asynccontextmanager

from charwright.runtime.errors import CharwrightError, ConfigError, VocabularyError
from charwright.runtime.serve import metrics
from charwright.runtime.serve.engine import Engine
from charwright.runtime.serve.log import log
from charwright.runtime.serve.openai import HTTPError, compile_guided, parse_completion
from charwright.runtime.serve.relay import BoundedResponse, CompletionRelay, error_response
from charwright.runtime.serve.request import Draining, QueueFull
from charwright.runtime.serve.state import ServeConfig, Served, State, missing_extra, model_names

try:
    from prometheus_client import generate_latest
    from prometheus_client.exposition import CONTENT_TYPE_LATEST
    from starlette.applications import Starlette
    from starlette.requests import ClientDisconnect
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route
except ImportError as e:  # pragma: no cover - the CLI reports this with the extra's name
    raise missing_extra(e) from None

MAX_BODY_BYTES = 1 << 20
RETRY_AFTER_SECONDS = 1
UNAUTHORIZED = "missing or wrong API key: send Authorization: Bearer KEY"


def build_app(cfg: ServeConfig, names=None) -> Starlette:
    """The ASGI app. Models load in the background after start-up (/health says 503 until
    then); `app.state.charwright` is the State."""
    state = State(cfg, names or model_names(cfg.bundles))
    app = Starlette(routes=[
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/metrics", metrics_text, methods=["GET"]),
    ], lifespan=_lifespan, exception_handlers={404: _not_found, 405: _not_found,
                                               500: _server_error})
    app.state.charwright = state
    app.state.metrics = metrics.registry(state)
    return app


# ---- the routes ---------------------------------------------------------------------------------

async def completions(request):
    state: State = request.app.state.charwright
    refused = _refused(state, request)
    if refused is not None:
        return refused
    served = None
    try:
        try:
            raw = await _read_body(request)
        except ClientDisconnect:  # it left (or its chunked body was malformed): nobody reads
            state.count_unrouted(499)
            return Response(status_code=499)
        body = _json_object(raw)
        served = _route(state, body)
        if "guided_regex" in body or "guided_choice" in body:  # compiled off the loop, cached
            await compile_guided(body, served, served.engine.max_batch,
                                 state.cfg.max_prompt_chars)
        relay = _submit(state, served, body)
    except HTTPError as e:
        (served.count if served is not None else state.count_unrouted)(e.status)
        return error_response(e.status, e.message, e.headers)
    if relay.stream:
        return relay
    state.open_responses += 1
    try:
        response = await relay.complete(request.receive)
    finally:
        state.open_responses -= 1
    if relay.status == 499:  # the client has gone: nothing will be sent
        served.count(relay.status)
        return response
    # counted once sent: a client that does not take it within --write-timeout is cut (499)
    return BoundedResponse(response, served, relay.status, state.cfg.write_timeout or None)


async def models(request):
    state: State = request.app.state.charwright
    if not _authorized(state, request):
        return error_response(401, UNAUTHORIZED)
    data = [{"id": s.name, "object": "model", "created": s.created, "owned_by": "charwright",
             "file": s.model.entry.path, "backend": state.cfg.backend,
             "precision": s.model.entry.precision, "max_batch": s.engine.max_batch}
            for s in state.models.values()]
    return JSONResponse({"object": "list", "data": data})


async def health(request):
    down = _unavailable(request.app.state.charwright)
    if down is not None:
        return down
    return JSONResponse({"status": "ok"})


async def metrics_text(request):
    if not _authorized(request.app.state.charwright, request):
        return error_response(401, UNAUTHORIZED)
    return Response(generate_latest(request.app.state.metrics), media_type=CONTENT_TYPE_LATEST)


async def _not_found(request, exc):
    status = getattr(exc, "status_code", 404)
    if status == 405:
        return error_response(405, f"method {request.method} is not allowed on "
                              f"{request.url.path}")
    return error_response(404, f"no route {request.url.path}")


async def _server_error(request, exc):  # a bug of ours: still the standard body
    return error_response(500, f"internal error: {type(exc).__name__}")


# ---- a completion request, step by step ---------------------------------------------------------

def _refused(state: State, request):
    """The 401 or 503 answer for a request that cannot be taken now, or None."""
    if not _authorized(state, request):
        state.count_unrouted(401)
        return error_response(401, UNAUTHORIZED)
    down = _unavailable(state)
    if down is not None:
        state.count_unrouted(503)
    return down


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
        return error_response(503, "loading model(s)", {"Retry-After": str(RETRY_AFTER_SECONDS)})
    if state.phase in ("draining", "failed"):
        return error_response(503, "the server is shutting down")
    return None


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


def _json_object(raw: bytes) -> dict:
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise HTTPError(400, "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise HTTPError(400, "the body must be a JSON object")
    return body


def _route(state: State, body: dict) -> Served:
    """The served model the body names (the only one, if it names none)."""
    name = body.get("model")
    if name is None and len(state.models) == 1:
        name = next(iter(state.models))
    if not isinstance(name, str):
        raise HTTPError(400, "model is required: one of " + ", ".join(state.models))
    served = state.models.get(name)
    if served is None:
        raise HTTPError(404, f"model {name!r} is not served here; models: "
                        f"{', '.join(state.models)}")
    return served


def _submit(state: State, served: Served, body: dict) -> CompletionRelay:
    """Validates the body, queues its request in the model's engine; the relay that answers."""
    engine, cfg = served.engine, state.cfg
    p = parse_completion(body, served, engine.max_batch, cfg.max_prompt_chars)
    try:
        req = engine.prepare(p.prompts, p.n, p.max_chars, p.sampling, p.stop,
                             cfg.request_timeout or None, cache_salt=p.cache_salt)
    except VocabularyError as e:
        raise HTTPError(400, f"prompt: {e}") from None
    except ConfigError as e:
        raise HTTPError(400, str(e)) from None
    relay = CompletionRelay(state, served, req, p.stream, p.include_usage)  # before it can run
    try:
        engine.enqueue(req)
    except QueueFull as e:
        raise HTTPError(429, str(e), {"Retry-After": str(RETRY_AFTER_SECONDS)}) from None
    except Draining as e:
        raise HTTPError(503, str(e)) from None
    return relay


# ---- loading ------------------------------------------------------------------------------------

@asynccontextmanager
async def _lifespan(app):
    state: State = app.state.charwright
    state.loop = asyncio.get_running_loop()
    loading = state.loop.run_in_executor(None, _load_all, state)
    loading.add_done_callback(lambda f: _loaded(state, f))
    try:
        yield
    finally:
        for s in list(state.models.values()):
            await state.loop.run_in_executor(None, s.engine.close)


def _load_all(state: State) -> None:
    from charwright.runtime.model import load

    cfg = state.cfg
    bundles = cfg.bundles or (None,)
    for name, bundle in zip(state.names, bundles):
        model = load(bundle, backend=cfg.backend, precision=cfg.precision, threads=cfg.threads)
        engine = Engine(model, cfg.max_batch, cfg.max_queue, notify=_notifier(state.loop),
                        max_prompt_chars=cfg.max_prompt_chars,
                        prompt_cache_bytes=int(cfg.prompt_cache_mb * 2**20))
        state.models[name] = Served(name, model, engine.start())


def _loaded(state: State, future) -> None:
    e = future.exception() if not future.cancelled() else None
    if e is None and not future.cancelled():
        if state.phase == "loading":
            state.phase = "ready"
        desc = ", ".join(f"{s.name} ({s.model.entry.path}; {s.engine.prompt_cache_note})"
                         for s in state.models.values())
        log(f"ready: {desc}; max batch {state.cfg.max_batch}, max queue {state.cfg.max_queue}, "
            f"max prompt {state.cfg.max_prompt_chars:,} chars")
        return
    state.phase = "failed"
    state.fatal = str(e) if isinstance(e, CharwrightError) else f"{type(e).__name__}: {e}"
    if state.server is not None:
        state.server.should_exit = True


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
        # a stream held by the frame interval is not woken: the frame clock writes its next
        # frame (relay.FrameClock); one that ended always is
        requests = [r for r in requests if not getattr(r, "held", False) or r.outcome is not None]
        if not requests:
            return
        with lock:
            first = not pending
            pending.extend(requests)
        if first:
            try:
                loop.call_soon_threadsafe(wake)
            except RuntimeError:  # the loop has closed: nobody listens any more
                pass

    return notify
