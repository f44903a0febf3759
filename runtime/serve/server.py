"""The process of `charwright serve`: the listening socket, uvicorn with the request head bounded
(431 beyond MAX_HEAD_BYTES or MAX_HEADER_FIELDS, then the connection is closed), the one-line log,
and the signal handling that drains before exit. Needs the [serve] extra."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time

from charwright.runtime.errors import CharwrightError, ConfigError
from charwright.runtime.serve.app import build_app
from charwright.runtime.serve.log import LOG_CONFIG, log
from charwright.runtime.serve.openai import error_body
from charwright.runtime.serve.relay import RAW_SEND, error_response
from charwright.runtime.serve.state import ServeConfig, State, missing_extra, model_names

try:
    import uvicorn
except ImportError as e:  # pragma: no cover - the CLI reports this with the extra's name
    raise missing_extra(e) from None

MAX_HEAD_BYTES = 32 * 1024  # request line + header fields (nginx: 4 x 8 KiB buffers)
MAX_HEADER_FIELDS = 100  # gunicorn's limit_request_fields


def run_server(cfg: ServeConfig, host: str = "127.0.0.1", port: int = 8000) -> int:
    """Binds host:port (0: any free port; the bound one is printed on stderr), serves until
    SIGTERM or Ctrl-C, drains, and returns the exit code (0; 1 if a model failed to load)."""
    names = model_names(cfg.bundles)
    sock = _listen(host, port)
    app = build_app(cfg, names)
    state: State = app.state.charwright
    url_host = f"[{host}]" if ":" in host else host
    log(f"listening on http://{url_host}:{sock.getsockname()[1]} (loading {', '.join(names)})")
    config = uvicorn.Config(RawSend(app), log_level="warning", access_log=False, lifespan="on",
                            timeout_graceful_shutdown=5, server_header=False,
                            http=_http_protocol(), h11_max_incomplete_event_size=MAX_HEAD_BYTES,
                            log_config=LOG_CONFIG)
    server = _Server(config, state)
    state.server = server
    quiet = _QuietCancel(server)
    logging.getLogger("uvicorn.error").addFilter(quiet)
    try:
        server.run(sockets=[sock])
    finally:
        logging.getLogger("uvicorn.error").removeFilter(quiet)
    if state.fatal:
        raise CharwrightError(state.fatal)
    log("stopped")
    return 0


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    sock.listen(2048)
    return sock


SAME_SIGNAL_SECONDS = 0.5  # a repeat of the first signal this soon is that signal, sent twice


class _Server(uvicorn.Server):
    """uvicorn's server; the first SIGTERM/SIGINT drains (drain() below), a second one exits now.

    The same signal again within SAME_SIGNAL_SECONDS is the first one delivered twice, not a
    second: GNU `timeout` sends SIGTERM to the process and then to its process group, so the
    server gets it twice (then it drained only when the two were merged, and otherwise exited
    at once, without closing its engines, with uvicorn's lifespan traceback on stderr). A forced
    exit skips the lifespan's shutdown: its cancellation is expected, not logged (_QuietCancel).
    """

    def __init__(self, config, state: State):
        super().__init__(config)
        self.charwright = state
        self._first_signal: tuple | None = None  # (signal, monotonic time) of the first one

    def handle_exit(self, sig, frame):
        # uvicorn's own would re-raise the signal at exit: the process would not exit 0
        state, now = self.charwright, time.monotonic()
        first = self._first_signal
        if first is not None and first[0] == sig and now - first[1] < SAME_SIGNAL_SECONDS:
            return  # the first signal, delivered twice
        if state.phase in ("draining", "failed") or state.loop is None:
            if state.phase == "draining":
                left = sum(s.engine.running_requests + s.engine.waiting_requests
                           for s in state.models.values())
                log(f"a second signal: exiting now ({left} request(s) cut off)")
            self.should_exit = self.force_exit = True
            return
        self._first_signal = (sig, now)
        state.phase = "draining"
        state.loop.call_soon_threadsafe(lambda: asyncio.ensure_future(drain(state)))


class _QuietCancel(logging.Filter):
    """At a forced exit the loop ends before the lifespan's shutdown ran and with requests still
    running, so their tasks are cancelled: starlette sends the lifespan's traceback as
    "lifespan.shutdown.failed" (uvicorn logs it), uvicorn logs "Exception in ASGI application"
    for a request with the CancelledError. Drops records of a cancellation then (the server has
    said "exiting now"), and nothing else."""

    def __init__(self, server: _Server):
        super().__init__()
        self.server = server

    def filter(self, record) -> bool:
        if not self.server.force_exit:
            return True
        exc = record.exc_info[1] if record.exc_info else None
        msg = record.getMessage()
        cancelled = isinstance(exc, asyncio.CancelledError) or (
            exc is None and msg.rstrip().splitlines()[-1:] == ["asyncio.exceptions.CancelledError"])
        return not cancelled


class RawSend:
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


# ---- draining ---------------------------------------------------------------------------------

async def drain(state: State) -> None:
    """Stop admission; let running requests finish within --shutdown-timeout; end the rest with
    a final event; then let the server exit (closing the connections that are left)."""
    engines = [s.engine for s in state.models.values()]
    for e in engines:
        e.drain()
    left = sum(e.running_requests + e.waiting_requests for e in engines)
    log(f"draining: {left} request(s) in flight, up to {state.cfg.shutdown_timeout:g} s")
    end = time.monotonic() + state.cfg.shutdown_timeout
    while time.monotonic() < end and not all(e.idle() for e in engines):
        await asyncio.sleep(0.02)
    cut = sum(e.running_requests + e.waiting_requests for e in engines)
    for e in engines:
        e.abort_all("shutdown")
    if cut:
        log(f"cut off {cut} request(s) at the shutdown timeout")
    end = time.monotonic() + 2.0  # the final events go out before the connections close
    while time.monotonic() < end and (state.open_responses or not all(e.idle()
                                                                       for e in engines)):
        await asyncio.sleep(0.01)
    # a stream still open has a client that does not take its final events: cut it now (else
    # uvicorn waits its own graceful timeout for the connection, then cancels the task and logs
    # it as an exception)
    for r in list(getattr(state, "streams", ())):
        r.cut("the server is shutting down and the client does not read its last events")
    end = time.monotonic() + 0.5
    while time.monotonic() < end and state.open_responses:
        await asyncio.sleep(0.01)
    state.server.should_exit = True


# ---- the request head ---------------------------------------------------------------------------

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


def _bounded(base):  # over 60 lines only as the body of one class of short parser callbacks
    class BoundedHttpTools(base):
        """At most MAX_HEAD_BYTES of request line and header fields and MAX_HEADER_FIELDS
        fields; beyond either, 431 with the standard body, one log line, connection closed.
        Malformed requests get uvicorn's 400 and one log line (its own warning is filtered)."""

        _head = None  # bytes of the current request head so far; None once the head is complete
        _fields = 0
        _parsed = 0  # bytes of request line and fields the parser handed over (a whole head
        #              that arrives in the read crossing the limit is caught here)
        _refused = None  # why the request was refused (431), once it was

        def on_message_begin(self):
            self._head, self._fields, self._parsed = 0, 0, 0
            super().on_message_begin()

        def on_url(self, url):
            self._count(len(url))
            super().on_url(url)

        def on_header(self, name, value):
            self._fields += 1
            if self._fields > MAX_HEADER_FIELDS:
                self._refused = f"more than {MAX_HEADER_FIELDS} header fields"
                raise _HeadRefused(self._refused)
            self._count(len(name) + len(value) + 4)  # ": " and CRLF
            super().on_header(name, value)

        def _count(self, n: int) -> None:
            self._parsed += n
            if self._parsed > MAX_HEAD_BYTES:
                self._refused = f"request head over {MAX_HEAD_BYTES:,} bytes"
                raise _HeadRefused(self._refused)

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
            log(f"refused a malformed request from {_peer(self.client)}: {msg} (400)")
            super().send_400_response(msg)

        def _refuse(self):
            log(f"refused a request from {_peer(self.client)}: {self._refused} (431)")
            body = json.dumps(error_body(431, self._refused)).encode()
            self.transport.write(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                                 b"content-type: application/json\r\n"
                                 b"content-length: " + str(len(body)).encode() + b"\r\n"
                                 b"connection: close\r\n\r\n" + body)
            self.transport.close()

    return BoundedHttpTools


def _peer(client) -> str:
    return "%s:%d" % tuple(client) if client else "a client"
