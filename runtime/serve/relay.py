"""The answer to one completion request, relayed from the engine as it runs: the SSE stream (an
ASGI app) or the whole completion once every choice has finished; and error_response, the one
way an error is answered.

The engine calls `notify(requests)` once per step; app.py turns that into one wake-up of the
event loop, which calls each request's waker: everything the request made since its last frame
goes out in one SSE frame. While the stream's writer coroutine is parked (waiting for text) and
the connection is uvicorn's httptools one with chunked encoding, the waker writes that frame
straight to the socket's transport (`_write_now`: no coroutine wake-up, no ASGI send, a few
microseconds per frame); otherwise (the first and last frames, a slow reader whose writes are
paused, another HTTP implementation) it wakes the writer coroutine, which sends through ASGI.
Either way an event loop that lags behind the scheduler sends several characters per frame,
never a backlog of frames; a slow reader gets bigger frames too. With a frame interval
(`--stream-interval` S > 0) a stream that was just sent a frame is `held`: the scheduler skips
its wake-ups (app._notifier) and its text piles up until the next tick of the one FrameClock
that all streams share, which every S seconds writes each held stream's text as one frame. A
stream's first frame goes out at once, and so does its end (the scheduler always wakes a
request that ended); a held stream that had nothing new at a tick is let go, so its next text
goes out at once too. Each frame thus carries about S x the stream's characters per second,
and the event loop wakes once per S for all streams rather than once per step. With
`--stream-interval auto` (the default, auto_interval) S is twice the batch's mean pass (a pass:
one batched step, or the steps of one compiled call), at least 5 ms. (uvloop's timers count
milliseconds: an S shorter than 1 ms means about 1 ms.)

A client that goes away (ASGI http.disconnect, a failed write, or a connection found closing
before a write: the asyncio loop notices a peer that left only when a write fails) cancels its
request: its rows leave the batch before the next step, its prompts leave the primer if they were
priming. A client that stays but does not read is cut the same way, with its connection aborted
(what was queued for it is dropped) and 499 in /metrics: when one frame waits longer than
--write-timeout for the client to take it, or when more than --max-unsent-chars characters pile up
behind a frame that waits (`_wake`). Text held by the frame interval is not "unsent" in this sense:
only a write that the client's socket holds back counts. Needs the [serve] extra.

(About 475 lines: the writer coroutine, direct writes, the frame clock and the write bounds
share one connection's state; the next split is the frame clock into its own module.)
"""

from __future__ import annotations

import asyncio
import operator
import time

from charwright.runtime.serve import openai
from charwright.runtime.serve.log import log
from charwright.runtime.serve.openai import choice_json, sse
from charwright.runtime.serve.state import missing_extra

try:
    from starlette.responses import JSONResponse, Response
except ImportError as e:  # pragma: no cover - the CLI reports this with the extra's name
    raise missing_extra(e) from None

RAW_SEND = "charwright.send"  # scope key: the server's own send (server.RawSend puts it there)
_PIECE = operator.itemgetter(1)
_CHUNK_END = b"]}\n\n"
TIMER_SECONDS = 0.001  # the frame clock's timers wait this long at least (uvloop's resolution)


def error_response(status: int, message: str, headers=None) -> JSONResponse:
    return JSONResponse(openai.error_body(status, message), status_code=status, headers=headers)


class CompletionRelay:
    """Follows one engine request: ASGI app for the streaming answer, or awaits the whole one.
    Made before the request is queued: it installs the request's waker."""

    def __init__(self, state, served, req, stream: bool, include_usage: bool):
        self.state, self.served, self.req = state, served, req
        self.include_usage = include_usage
        self.stream = stream
        self.loop = asyncio.get_running_loop()
        self.event = _Signal(self.loop)
        self.clock = FrameClock.of(state, self.loop)  # None: no frame interval
        self._cycle = None  # uvicorn's response cycle while frames may be written directly
        self._parked = False  # the writer coroutine waits for text (a direct write is safe)
        self._sending = False  # the writer coroutine waits for a send (the client's socket)
        self._transport = None  # the connection's asyncio transport, when the server shows it
        self._writer = None  # the writer coroutine's task
        self.stalled: str | None = None  # why the stream was cut for a client that is not reading
        cfg = state.cfg
        self.write_timeout = float(getattr(cfg, "write_timeout", 0) or 0) or None
        self.max_unsent = int(getattr(cfg, "max_unsent_chars", 0) or 0) or None
        req.held = False  # True: the clock writes its next frame (read by app._notifier)
        req.waker = self._wake  # called on the event loop (see app._notifier)
        self.id = openai.completion_id()
        self.created = int(time.time())
        self.status = 200
        # a chunk is this prefix, its choices and _CHUNK_END: the bytes sse(self._chunk(...))
        # gives, without a json.dumps of the whole chunk per frame
        self._prefix = sse(self._chunk([]))[:-len(_CHUNK_END)]

    def _chunk(self, choices) -> dict:
        return openai.chunk(self.id, self.created, self.served.name, choices)

    def usage(self) -> dict:
        return openai.usage(self.req.prompt_chars, self.req.generated_chars())

    def _cut(self, outcome: str) -> str:
        """Sets the status for an outcome other than "ok"; returns the error message."""
        self.status, message = openai.cut_error(outcome, self.state.cfg.request_timeout)
        return message

    async def __call__(self, scope, receive, send) -> None:
        """The SSE answer: runs until the request ends or the client goes away."""
        self.state.open_responses += 1
        try:
            await send({"type": "http.response.start", "status": 200, "headers": [
                (b"content-type", b"text/event-stream; charset=utf-8"),
                (b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]})
            # the body frames go to the server's own send (see server.RawSend): Starlette's
            # wrappers only note that the response started, which the start above did through
            # them
            raw = scope.get(RAW_SEND, send)
            self._cycle = _direct_cycle(raw)
            transport = getattr(getattr(raw, "__self__", None), "transport", None)
            if callable(getattr(transport, "is_closing", None)) \
                    and callable(getattr(transport, "abort", None)):
                self._transport = transport
            writer = self._writer = asyncio.ensure_future(self._write(raw))
            self.state.streams.add(self)
            gone = asyncio.ensure_future(disconnected(receive))
            done, _ = await asyncio.wait({writer, gone}, return_when=asyncio.FIRST_COMPLETED)
            if writer not in done:
                writer.cancel()
            else:
                gone.cancel()
            ok = writer in done and not writer.cancelled() and writer.exception() is None
            if not ok:  # the client went away, a write failed, or it does not read: free its
                self.served.engine.cancel(self.req)  # rows
                self.status = 499
                if self.stalled is not None:
                    log(f"cut a stream (499): {self.stalled}")
                await self._abort()
        finally:
            self.state.streams.discard(self)
            self._cycle = None  # no direct write after the response ended
            if self.clock is not None:
                self.clock.drop(self)
            self.state.open_responses -= 1
            self.served.count(self.status)

    async def _write(self, send) -> None:
        req, event = self.req, self.event
        while True:
            event.flag = False
            outcome = req.outcome
            if req.events and (not req.held or outcome is not None):
                await self._send(send, {"type": "http.response.body", "body": self._frame(),
                                        "more_body": True})
                if self.clock is not None and req.outcome is None:  # the interval holds here
                    self.clock.hold(self)  # too (a slow reader; a server without direct writes)
            if outcome is not None:
                break
            if not event.flag:
                self._parked = True
                try:
                    await event.future()
                finally:
                    self._parked = False
        tail = b""
        if outcome == "ok":
            if self.include_usage:
                tail += sse({**self._chunk([]), "usage": self.usage()})
        else:
            message = self._cut(outcome)  # sets self.status first
            tail += sse(openai.error_body(self.status, message))
        tail += sse("[DONE]")
        await self._send(send, {"type": "http.response.body", "body": tail, "more_body": False})

    async def _send(self, send, message) -> None:
        """send(message) within --write-timeout; raises ConnectionResetError when the
        connection is closing (before the send, or after it: the peer left), TimeoutError when
        the client did not take the frame in time (the stream is cut)."""
        transport = self._transport
        if transport is not None and transport.is_closing():
            raise ConnectionResetError("the connection is closing")
        self._sending = True
        try:
            if self.write_timeout is None:
                await send(message)
            else:
                try:
                    async with asyncio.timeout(self.write_timeout):
                        await send(message)
                        if not message["more_body"]:  # the server's send does not wait for
                            await drained(send)  # the last write: the client takes it in time
                except TimeoutError:
                    if self.stalled is None:
                        self.stalled = (f"the client took no frame for {self.write_timeout:g} s "
                                        "(--write-timeout)")
                    raise
        finally:
            self._sending = False
        if transport is not None and transport.is_closing():
            raise ConnectionResetError("the connection is closing")

    def cut(self, why: str) -> None:
        """Ends the stream now for a client that does not read (on the event loop): the writer
        stops, the connection is aborted (what was queued for it is dropped), __call__ cancels
        the request and counts 499."""
        if self.stalled is None:
            self.stalled = why
        self.req.events.clear()
        if self._writer is not None:
            self._writer.cancel()
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.abort()

    async def _abort(self) -> None:
        """Closes a connection whose response cannot complete without waiting for its buffer to
        be sent, and lets the server see it closed (else it logs an unfinished response)."""
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.abort()
        for _ in range(2):  # the transport calls the protocol's connection_lost soon after
            await asyncio.sleep(0)

    def _wake(self) -> None:
        """The request has new text or ended (on the event loop): a direct frame, or the writer
        coroutine wakes; or, while the writer waits for the client to take a frame and more
        than --max-unsent-chars characters have piled up behind it, the stream is cut."""
        if self._sending and self.max_unsent is not None \
                and len(self.req.events) > self.max_unsent:
            self.cut(f"more than {self.max_unsent} characters waited for the client to read "
                     "(--max-unsent-chars)")
            return
        if not self._write_now():
            self.event.set()

    def _write_now(self) -> bool:
        """Writes the new text as one chunked SSE frame straight to the transport; True when
        done (or held for the clock's next tick), False when the writer
        coroutine must run: it is not parked, the request ended, the reader is slow (uvicorn
        paused writing), or the connection is not a chunked httptools one."""
        c, req = self._cycle, self.req
        if (c is None or not self._parked or req.outcome is not None or c.flow.write_paused
                or c.disconnected or c.response_complete or c.transport.is_closing()):
            return False
        if req.held or not req.events:
            return True
        body = self._frame()
        c.transport.write(b"%x\r\n%b\r\n" % (len(body), body))
        if self.clock is not None:
            self.clock.hold(self)
        return True

    def tick(self) -> None:
        """The clock's tick: the text held since the last frame goes out (or the writer
        coroutine runs); a stream with nothing new is let go (its next text goes at once)."""
        req = self.req
        req.held = False
        if req.events or req.outcome is not None:
            self._wake()

    def _frame(self) -> bytes:
        """Every event since the last frame, one choice entry per choice that has new text."""
        events = self.req.events
        popleft = events.popleft
        got = [popleft() for _ in range(len(events))]  # the scheduler may append meanwhile
        if self.req.rows == 1:  # one choice: its finish_reason, if any, is its last event
            return self._prefix + choice_json(0, "".join(map(_PIECE, got)), got[-1][2]) \
                + _CHUNK_END
        text: dict[int, list] = {}
        fin: dict[int, str] = {}
        for c, piece, f in got:
            text.setdefault(c, []).append(piece)
            if f is not None:
                fin[c] = f
        return (self._prefix + b",".join(choice_json(c, "".join(p), fin.get(c))
                                         for c, p in sorted(text.items())) + _CHUNK_END)

    async def complete(self, receive) -> Response:
        """The non-streaming answer, once every choice has finished."""
        req, event = self.req, self.event
        gone = asyncio.ensure_future(disconnected(receive))
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
            message = self._cut(req.outcome)
            return error_response(self.status, message)
        choices = [openai.choice(c, s.text(), s.finish_reason)
                   for c, s in enumerate(req.streams)]
        return JSONResponse({**self._chunk(choices), "usage": self.usage()})


class BoundedResponse:
    """A whole (non-streaming) answer, sent within --write-timeout: a client that has not taken
    it by then has its connection aborted (the body queued for it is dropped) and counts as
    499; otherwise `status` is counted once the answer is sent."""

    def __init__(self, response: Response, served, status: int, seconds: float | None):
        self.response, self.served, self.status, self.seconds = response, served, status, seconds

    async def __call__(self, scope, receive, send) -> None:
        if not self.seconds:
            await self.response(scope, receive, send)
            self.served.count(self.status)
            return
        try:
            async with asyncio.timeout(self.seconds):
                await self.response(scope, receive, send)
                await drained(scope.get(RAW_SEND))  # (the response's send does not wait)
        except TimeoutError:
            log(f"cut a response (499): the client did not take it in {self.seconds:g} s "
                "(--write-timeout)")
            self.served.count(499)
            transport = getattr(getattr(scope.get(RAW_SEND), "__self__", None), "transport",
                                None)
            if transport is not None and not transport.is_closing():
                transport.abort()
            for _ in range(2):  # the transport calls the protocol's connection_lost soon after
                await asyncio.sleep(0)
            return
        self.served.count(self.status)


class FrameClock:
    """The frame interval's one timer for every held stream of a server: each tick writes one
    frame per held stream (CompletionRelay.tick), on the event loop; it runs only while some
    stream is held. `interval` is a number of seconds, or a function that gives the next one
    (--stream-interval auto: AUTO_INTERVAL_PASSES x the slowest running batch's mean pass)."""

    def __init__(self, loop, interval):
        self.loop = loop
        self._interval = interval if callable(interval) else (lambda: interval)
        self.held: dict = {}  # relays held since the last tick (a dict: insertion order)
        self.timer = None

    @property
    def interval(self) -> float:
        return self._interval()

    @classmethod
    def of(cls, state, loop):
        """The server's clock (made at first use), or None when the interval is 0."""
        setting = getattr(state.cfg, "stream_interval", 0.0)
        if setting == "auto":
            interval = auto_interval(state)
        else:
            interval = float(setting or 0.0)
            if interval <= 0:
                return None
        clock = getattr(state, "frame_clock", None)
        if clock is None or clock.loop is not loop:
            clock = state.frame_clock = cls(loop, interval)
        return clock

    def hold(self, relay) -> None:
        """The relay just wrote a frame: its next one waits for the next tick."""
        relay.req.held = True
        self.held[relay] = None
        if self.timer is None:
            self._start()

    def drop(self, relay) -> None:
        self.held.pop(relay, None)

    def _start(self) -> None:
        # uvloop's timers count whole milliseconds: call_later(0.0004) fires at the next loop
        # iteration, and a stream would get a frame per step; so a tick waits TIMER_SECONDS
        # at least (a shorter --stream-interval means about 1 ms)
        self.timer = self.loop.call_later(max(self._interval(), TIMER_SECONDS), self._tick)

    def _tick(self) -> None:
        self.timer = None
        relays, self.held = self.held, {}
        for r in relays:
            r.tick()  # a relay that writes a frame is held again, for the next tick
        if self.held and self.timer is None:
            self._start()


def auto_interval(state):
    """--stream-interval auto: a function giving the interval now: AUTO_INTERVAL_PASSES x the
    mean pass of the slowest model with rows running (a pass: one batched step, or the steps
    of one compiled call, engine.Batch), within AUTO_INTERVAL_MIN..AUTO_INTERVAL_MAX: 5 ms for
    the demo at any load, longer for a model whose passes take more than 2.5 ms (a frame then
    carries about two passes of text). Measured against a frame per pass (demo ONNX, Intel
    Xeon, the load generator on the same 2 cores): at 1 client each frame's wake-up of the
    event loop is a GIL hand-off with the scheduler (2 ms: ~8% fewer characters/s than 5 ms);
    at 64 a frame per pass cut the gaps between frames (p99 ~6x the step, against ~19x) but
    served 52% of offline instead of 76% when the cores were shared (the load generator's
    parsing took half a core), about as much when two cores were free."""
    from charwright.runtime.serve.state import (AUTO_INTERVAL_MAX, AUTO_INTERVAL_MIN,
                                                AUTO_INTERVAL_PASSES)

    def interval() -> float:
        mean = 0.0
        for s in state.models.values():
            engine = s.engine
            if engine.running_rows:
                p = engine.pass_seconds
                if p > mean:
                    mean = p
        return min(max(AUTO_INTERVAL_PASSES * mean, AUTO_INTERVAL_MIN), AUTO_INTERVAL_MAX)

    return interval


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


def _direct_cycle(send):
    """uvicorn's httptools RequestResponseCycle behind `send`, if the response started with
    chunked encoding (then a frame is b"%x\r\n" % len + frame + b"\r\n" on its transport, as
    its send writes it); None for anything else (h11, another server). An HTTP/1.0 request
    takes the direct path too: uvicorn's httptools protocol answers it as HTTP/1.1 with chunked
    encoding (a proxy with nginx's `proxy_http_version 1.0` gets chunked frames)."""
    cycle = getattr(send, "__self__", None)
    if not type(cycle).__module__.endswith("httptools_impl") or not all(
            hasattr(cycle, a) for a in ("transport", "flow", "disconnected", "response_complete",
                                        "response_started", "chunked_encoding")):
        return None
    if cycle.chunked_encoding is not True or not cycle.response_started \
            or not hasattr(cycle.flow, "write_paused"):
        return None
    return cycle


async def drained(send) -> None:
    """Returns once the connection behind uvicorn's `send` has taken what was written (its
    buffer is below the low-water mark) or has closed; at once for another server. uvicorn's
    send waits for that before a write, not after it: a last write would otherwise sit in the
    transport's buffer for as long as the client does not read."""
    cycle = getattr(send, "__self__", None)
    flow = getattr(cycle, "flow", None)
    if callable(getattr(flow, "drain", None)) and getattr(flow, "write_paused", False) \
            and not getattr(cycle, "disconnected", True):
        await flow.drain()


async def disconnected(receive) -> None:
    """Returns when the client has gone (the request body was read already)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
