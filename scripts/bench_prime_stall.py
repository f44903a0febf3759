"""Benchmark: does one long prompt stall the other requests of `charwright serve`? (issue 24.3)

    python scripts/bench_prime_stall.py                       8 streams, a 1,000,000-char prompt
    python scripts/bench_prime_stall.py --streams 16 --prompt-chars 500000
    git archive --prefix=charwright/ -o /tmp/b.tar HEAD runtime && mkdir -p /tmp/before \
      && tar -xf /tmp/b.tar -C /tmp/before && python scripts/bench_prime_stall.py \
      --before /tmp/before --before-args ''      the same phases on an older tree first

A real `charwright serve` process (demo model) on 127.0.0.1, port 0, and four bounded phases:

  1. baseline: S streaming clients of --chars characters each, nothing else running;
  2. priming: S streams run, then one request with a --prompt-chars prompt arrives (streaming,
     max_tokens 1, its client stays) and primes while the streams go on;
  3. a short request (a 20-character prompt, 20 characters) sent while that prompt primes:
     its time to the whole answer;
  4. the attack of the issue: a 994,000-character prompt whose client leaves after 0.5 s, then
     the short request: its time (alone it takes milliseconds).

Then the same as 2 without HTTP, in one process per server (the scheduler's cadence: the time
between two passes that give the running rows a character, 8 rows, a 1,000,000-char prompt
priming, over 3 s): what the engine controls, apart from the event loop and the clients, which
on a small shared machine add milliseconds of noise to every p99 above.

For 1 and 2: p50/p99/max of the gap between two frames of a stream (what a reader waits between
updates), the batch step (charwright_step_seconds: its mean over the phase, from /metrics), and
the p99 gap over the step of the baseline phase (target of the issue: at most 3x); phases 1 and 2
run --repeat times, alternately, and the median of each figure is shown. The clients
are raw asyncio sockets (scripts/bench_serve.py's _Stream), in this one process. Every phase has
a deadline; a phase that runs past it is reported as such, never waited out. With --before DIR,
DIR holds an older `charwright` package (runtime/ only is enough): its server runs every phase
first (PYTHONPATH=DIR), then this tree's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "cli"))
from _bench_common import header, table  # noqa: E402
from bench_serve import _Stream  # noqa: E402
from serve_util import ServerProcess  # noqa: E402

PROMPT = "ROMEO:"
LONG_UNIT = "ROMEO: hello there, my lord\n"  # characters the demo model knows
SHORT = "ROMEO: a short one\n"[:20]


def _request(url: str, body: dict) -> bytes:
    data = json.dumps(body).encode()
    host, port = url.rsplit("/", 1)[1].rsplit(":", 1)
    return (f"POST /v1/completions HTTP/1.1\r\nhost: {host}:{port}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(data)}\r\n"
            "connection: close\r\n\r\n").encode() + data


async def _stream(url, body) -> tuple:
    host, port = url.rsplit("/", 1)[1].rsplit(":", 1)
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    transport, _ = await loop.create_connection(lambda: _Stream(_request(url, body), done),
                                                host, int(port))
    try:
        return await done
    finally:
        transport.close()


async def streams(url, count, chars) -> list:
    bodies = [{"model": "demo", "prompt": PROMPT, "max_tokens": chars, "stream": True,
               "seed": i, "temperature": 0.8} for i in range(count)]
    return await asyncio.gather(*(_stream(url, b) for b in bodies))


async def hold_long_prompt(url, chars: int, stream: bool = True):
    """Sends a request with a `chars`-character prompt; returns (reader, writer): the client
    stays until writer.close()."""
    prompt = (LONG_UNIT * (chars // len(LONG_UNIT) + 1))[:chars]
    host, port = url.rsplit("/", 1)[1].rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(_request(url, {"model": "demo", "prompt": prompt, "max_tokens": 1,
                                "stream": stream}))
    await writer.drain()
    return reader, writer


def short_request(url, timeout) -> float:
    """Seconds of one non-streaming 20-char request (inf if it ran past `timeout`)."""
    t0 = time.perf_counter()
    try:
        r = httpx.post(url + "/v1/completions", timeout=timeout,
                       json={"model": "demo", "prompt": SHORT, "max_tokens": 20, "seed": 1})
        r.raise_for_status()
    except httpx.TimeoutException:
        return float("inf")
    return time.perf_counter() - t0


def step_totals(server) -> tuple[float, float]:
    return (server.metric("charwright_step_seconds_sum"),
            server.metric("charwright_step_seconds_count"))


def gaps_of(results) -> np.ndarray:
    ok = [r for r in results if r[0] == "ok"]
    g = np.concatenate([np.asarray(r[4]) for r in ok] + [np.zeros(0)])
    return g if len(g) else np.zeros(1)


def wait_idle(server, deadline_s: float) -> bool:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        busy = (server.metric("charwright_requests_running")
                + server.metric("charwright_requests_waiting"))
        if not busy:
            return True
        time.sleep(0.1)
    return False


def phase_streams(server, count, chars, long_chars, deadline) -> dict:
    async def run():
        held = None
        task = asyncio.ensure_future(streams(server.url, count, chars))
        if long_chars:
            await asyncio.sleep(0.3)  # the streams run; then the long prompt arrives
            held = await hold_long_prompt(server.url, long_chars)
        try:
            return await asyncio.wait_for(task, deadline)
        finally:
            if held is not None:
                held[1].close()

    s0, c0 = step_totals(server)
    try:
        results = asyncio.run(run())
    except asyncio.TimeoutError:
        return {"timed_out": True}
    s1, c1 = step_totals(server)
    g = gaps_of(results)
    return {"timed_out": False, "gap": np.percentile(g, [50, 99]), "max": g.max(),
            "step": (s1 - s0) / max(c1 - c0, 1),
            "failed": sum(r[0] != "ok" for r in results)}


def phase_short_while_priming(server, long_chars, deadline) -> float:
    async def run():
        reader, writer = await hold_long_prompt(server.url, long_chars)
        await asyncio.sleep(0.5)
        try:
            return await asyncio.get_running_loop().run_in_executor(
                None, short_request, server.url, deadline)
        finally:
            writer.close()
    return asyncio.run(run())


def phase_attack(server, deadline) -> float:
    async def run():
        reader, writer = await hold_long_prompt(server.url, 994_000, stream=False)
        await asyncio.sleep(0.5)
        writer.close()  # the client is gone
    asyncio.run(run())
    return short_request(server.url, deadline)


def engine_cadence(long_chars: int, seconds: float = 3.0) -> tuple:
    """(p50, p99 s between passes that step 8 running rows, mean step s): Engine on the demo
    model, no HTTP; with long_chars, one prompt that long primes meanwhile."""
    from charwright.runtime import SamplingConfig, load
    from charwright.runtime.serve.engine import Engine

    stamps, rows = [], []

    def notify(reqs):
        if any(r in rows for r in reqs):
            stamps.append(time.perf_counter())
        for r in reqs:
            r.waker()

    e = Engine(load(), max_batch=64, max_queue=64, notify=notify).start()
    try:
        rows += [e.submit([PROMPT], max_chars=10**9, sampling=SamplingConfig(seed=i))
                 for i in range(8)]
        time.sleep(0.3)
        if long_chars:
            e.submit([(LONG_UNIT * (long_chars // len(LONG_UNIT) + 1))[:long_chars]],
                     max_chars=1)
            time.sleep(0.2)
        s0, c0 = e.step_seconds.sum, e.step_seconds.count
        stamps.clear()
        time.sleep(seconds)
        d = np.diff(list(stamps))
        step = (e.step_seconds.sum - s0) / max(e.step_seconds.count - c0, 1)
        return float(np.percentile(d, 50)), float(np.percentile(d, 99)), step
    finally:
        e.close()


def engine_rows(label, pythonpath, prompt_chars) -> list:
    """engine_cadence without and with the long prompt, in a child process (PYTHONPATH picks
    the tree), alternately twice; the median of each figure."""
    import subprocess

    env = {**os.environ, **({"PYTHONPATH": pythonpath} if pythonpath else {})}
    rows, step0 = [], None
    for chars in (0, prompt_chars):
        got = []
        for _ in range(2):
            out = subprocess.run([sys.executable, __file__, "--engine-child", str(chars)],
                                 env=env, capture_output=True, text=True, timeout=120)
            got.append(json.loads(out.stdout.strip().splitlines()[-1]))
        p50, p99, step = (float(np.median([g[i] for g in got])) for i in range(3))
        step0 = step0 or step
        rows.append([label, "engine, no HTTP: " + (f"+ a {chars:,}-char prompt priming"
                                                   if chars else "baseline"),
                     f"{p50 * 1e3:.3f}", f"{p99 * 1e3:.3f}", "", f"{step * 1e3:.3f}",
                     f"{p99 / step0:.1f}x", ""])
    return rows


def median(results, key):
    return float(np.median([r[key] for r in results]))


def run_all(a, label, pythonpath, server_args) -> tuple[list, list]:
    env = {"PYTHONPATH": pythonpath} if pythonpath else None
    server = ServerProcess("--max-batch", "64", "--shutdown-timeout", "2", *server_args.split(),
                           env=env).start()
    rows, notes = [], []
    try:
        asyncio.run(streams(server.url, 2, 50))  # warm-up
        base, primed = [], []
        for _ in range(a.repeat):  # alternately, so that the machine's drift hits both
            base.append(phase_streams(server, a.streams, a.chars, 0, a.deadline))
            primed.append(phase_streams(server, a.streams, a.chars, a.prompt_chars, a.deadline))
            # settle: a server that primes on after the client left (as before issue 24.3)
            # answers this only then, so the next phase starts on an idle server
            short_request(server.url, 3 * a.deadline)
            wait_idle(server, a.deadline)
        base_ok = [r for r in base if not r["timed_out"]]
        step0 = median(base_ok, "step") if base_ok else float("nan")
        for name, results in (("baseline", base),
                              (f"+ a {a.prompt_chars:,}-char prompt priming", primed)):
            ok = [r for r in results if not r["timed_out"]]
            if not ok:
                rows.append([label, name, f"past the {a.deadline:g} s deadline"] + [""] * 5)
                continue
            p99 = float(np.median([r["gap"][1] for r in ok]))
            rows.append([label, name, f"{np.median([r['gap'][0] for r in ok]) * 1e3:.2f}",
                         f"{p99 * 1e3:.2f}", f"{median(ok, 'max') * 1e3:.1f}",
                         f"{median(ok, 'step') * 1e3:.3f}", f"{p99 / step0:.1f}x",
                         f"{sum(r['failed'] for r in ok)} (+{len(results) - len(ok)} late)"])
        t = phase_short_while_priming(server, a.prompt_chars, a.deadline)
        notes.append(f"{label}: a 20-char request while a {a.prompt_chars:,}-char prompt primes: "
                     f"{t:.3f} s")
        short_request(server.url, 3 * a.deadline)  # settle, as above
        wait_idle(server, a.deadline)
        t = phase_attack(server, a.deadline)
        notes.append(f"{label}: a 20-char request after a 994,000-char prompt whose client left "
                     f"after 0.5 s: {t:.3f} s")
        notes.append(f"{label}: a 20-char request alone: "
                     f"{short_request(server.url, a.deadline):.3f} s")
    finally:
        notes.append(f"{label}: server exit status after SIGTERM: {server.stop()}")
    return rows, notes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", type=int, default=8)
    ap.add_argument("--chars", type=int, default=5000)
    ap.add_argument("--prompt-chars", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--deadline", type=float, default=60, help="seconds per phase at most")
    ap.add_argument("--server-args", default="--max-prompt-chars 1000000",
                    help="extra `charwright serve` options of this tree ('' for none)")
    ap.add_argument("--before", help="a directory holding an older charwright package")
    ap.add_argument("--before-args", default="", help="extra options of the older server")
    ap.add_argument("--engine-child", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.engine_child is not None:
        print(json.dumps(engine_cadence(a.engine_child)), flush=True)
        os._exit(0)  # an older engine's primer thread may still be priming: do not wait for it

    rows, notes = [], []
    runs = ([("before", a.before, a.before_args)] if a.before else []) + [
        ("this tree", None, a.server_args)]
    for label, path, args in runs:
        r, n = run_all(a, label, path, args)
        rows += r + engine_rows(label, path, a.prompt_chars)
        notes += n
    print(header(f"one long prompt vs the other streams (demo, {a.streams} streams x "
                 f"{a.chars} chars, median of {a.repeat})", 1))
    print(table(["server", "phase", "frame gap p50 ms", "p99 ms", "max ms",
                 "batch step ms (mean)", "p99 gap / baseline step", "failed"], rows))
    print()
    for n in notes:
        print(n)


if __name__ == "__main__":
    main()
