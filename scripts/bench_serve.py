"""Benchmark `charwright serve` on loopback against offline generate_batch, in the same run.

    python scripts/bench_serve.py                          1, 8, 64, 128 clients x 500 chars
    python scripts/bench_serve.py --clients 1 8 --soak 300 + a 5-minute resident-memory run
    python scripts/bench_serve.py --stream-interval 0.005  the server's frame interval (seconds,
                                                           or auto: the server's default)

For each level C: C concurrent streaming clients each ask 500 characters of the demo model;
aggregate characters/s, p50/p99 time to first character and gap between characters (a frame of
k characters counts one gap and k-1 zero gaps), the gap between frames (what a reader waits between
two updates) and characters per frame, beside in-process Model.generate_batch at batch C (same
prompt, sampling and file). The clients are raw asyncio sockets parsing chunked SSE by hand, in
this one process: with httpx they cost as much CPU as the server on the same cores. The CPU
time each side used during a level (this process's, the server process's from /proc) is shown
apart, as a share of one core over the level's wall time: the load generator runs on the same
cores as the server, and what it takes the server cannot have. Each level repeats its round of
clients for --min-seconds (default 2), and the server's CPU time per character is set beside
offline's: a ratio that other load on the machine disturbs less than the wall-clock one. Then a flood at 4x --max-queue
(every answer must be 200 or 429, none may time out) and, with --soak S, S seconds of 64 clients with the server's VmRSS
sampled every 5 s. The server is a real `charwright serve` process on 127.0.0.1, port 0.
Everything is bounded: each level has a deadline, the flood and the soak too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "support"))
from _bench_common import header, table  # noqa: E402
from serve_util import ServerProcess  # noqa: E402

PROMPT = "ROMEO:"
SAMPLING = {"temperature": 0.8}


def offline(batch: int, chars: int, threads: int) -> tuple[float, float, float]:
    """(chars/s, seconds per step, CPU seconds per char) of Model.generate_batch at this batch
    (warm, best of 2)."""
    from charwright.runtime import SamplingConfig, load

    m = load(threads=threads)
    cfg = SamplingConfig(**SAMPLING, seed=1)
    m.generate_batch([PROMPT] * batch, 20, cfg)  # warm-up
    best = cpu = float("inf")
    for _ in range(2):
        t0, c0 = time.perf_counter(), time.process_time()
        m.generate_batch([PROMPT] * batch, chars, cfg)
        best = min(best, time.perf_counter() - t0)
        cpu = min(cpu, time.process_time() - c0)
    return batch * chars / best, best / chars, cpu / (batch * chars)


class _Stream(asyncio.Protocol):
    """One streaming completion over a raw socket: HTTP/1.1 chunked SSE parsed by hand (httpx's
    per-line cost was as large as the server's per-frame cost on the same cores). Each text
    frame is timed when its bytes arrive."""

    def __init__(self, request: bytes, done: asyncio.Future):
        self.request, self.done = request, done
        self.buf = b""
        self.head = True
        self.body = b""  # de-chunked SSE bytes not yet split into events
        self.t0 = time.perf_counter()
        self.first = self.last = None
        self.gaps: list = []  # per character: the first of a frame waits, the rest are 0
        self.frame_gaps: list = []  # between frames that carry text
        self.frames = self.n = 0

    def connection_made(self, transport):
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data):
        now = time.perf_counter()
        self.buf += data
        if self.head:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status = int(self.buf[9:12])
            self.buf, self.head = self.buf[end + 4:], False
            if status != 200:
                self._end(("status", status))
                return
        buf, pos = self.buf, 0
        while True:  # chunked transfer encoding
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                break
            size = int(buf[pos:eol].split(b";")[0], 16)
            if size == 0:
                self._events(now)
                self._end(("ok", self.first, self.gaps, self.n, self.frame_gaps, self.frames))
                return
            if len(buf) < eol + 2 + size + 2:
                break
            self.body += buf[eol + 2:eol + 2 + size]
            pos = eol + 2 + size + 2
        self.buf = buf[pos:]
        self._events(now)

    def _events(self, now):
        parts = self.body.split(b"\n\n")
        self.body = parts.pop()
        for ev in parts:
            if not ev.startswith(b"data: {"):
                continue
            k = sum(len(c["text"]) for c in json.loads(ev[6:]).get("choices", []))
            if not k:
                continue
            if self.first is None:
                self.first = now - self.t0
            else:
                self.gaps.append(now - self.last)
                self.frame_gaps.append(now - self.last)
            self.gaps.extend([0.0] * (k - 1))
            self.last, self.n, self.frames = now, self.n + k, self.frames + 1

    def _end(self, result):
        if not self.done.done():
            self.done.set_result(result)
        self.transport.close()

    def connection_lost(self, exc):
        if not self.done.done():
            self.done.set_exception(exc or ConnectionError("the server closed the stream"))


async def _client(url, chars, seed, out):
    body = json.dumps({"model": "demo", "prompt": PROMPT, "max_tokens": chars, "stream": True,
                       "seed": seed, **SAMPLING}).encode()
    host, port = url.rsplit("/", 1)[1].rsplit(":", 1)
    request = (f"POST /v1/completions HTTP/1.1\r\nhost: {host}:{port}\r\n"
               f"content-type: application/json\r\ncontent-length: {len(body)}\r\n"
               "connection: close\r\n\r\n").encode() + body
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    transport, _ = await loop.create_connection(lambda: _Stream(request, done), host, int(port))
    try:
        out.append(await done)
    finally:
        transport.close()


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc (0 where there is no /proc)."""
    import os

    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def level(url, clients, chars, deadline_s, server_pid=None, min_seconds=0.0):
    """One level: rounds of `clients` concurrent streams (each a fresh connection and request),
    one round after another until min_seconds have passed (CPU time from /proc counts in 10 ms
    ticks: a level must last long enough for its CPU figures to mean something)."""
    out: list = []
    c0, s0 = time.process_time(), cpu_seconds(server_pid) if server_pid else 0.0
    t0 = time.perf_counter()
    end = t0 + deadline_s
    for _ in range(1000):
        await asyncio.wait_for(asyncio.gather(*(_client(url, chars, i, out)
                                                for i in range(clients))),
                               max(end - time.perf_counter(), 0.01))
        if time.perf_counter() - t0 >= min_seconds:
            break
    wall = time.perf_counter() - t0
    client_cpu = (time.process_time() - c0) / wall
    server_cpu_s = cpu_seconds(server_pid) - s0 if server_pid else float("nan")
    server_cpu = server_cpu_s / wall
    ok = [o for o in out if o[0] == "ok"]
    firsts = np.array([o[1] for o in ok if o[1] is not None])
    gaps = np.concatenate([np.asarray(o[2]) for o in ok] + [np.zeros(0)])
    gaps = gaps if len(gaps) else np.zeros(1)  # one character per stream: no gap
    fgaps = np.concatenate([np.asarray(o[4]) for o in ok] + [np.zeros(0)])
    fgaps = fgaps if len(fgaps) else np.zeros(1)  # every stream came in one frame
    total = sum(o[3] for o in ok)
    frames = sum(o[5] for o in ok)
    return {"chars_s": total / wall, "ttfc": np.percentile(firsts, [50, 99]),
            "gap": np.percentile(gaps, [50, 99]), "frame_gap": np.percentile(fgaps, [50, 99]),
            "chars_per_frame": total / max(frames, 1), "failed": len(out) - len(ok),
            "wall": wall, "client_cpu": client_cpu, "server_cpu": server_cpu,
            "server_cpu_per_char": server_cpu_s / max(total, 1)}


async def flood(url, count, deadline_s):
    import httpx

    statuses: list = []
    limits = httpx.Limits(max_connections=count + 8)
    async with httpx.AsyncClient(base_url=url, timeout=deadline_s, limits=limits) as client:
        async def one(i):
            try:
                r = await client.post("/v1/completions", json={
                    "model": "demo", "prompt": PROMPT, "max_tokens": 50, "seed": i})
                statuses.append(r.status_code)
            except httpx.TimeoutException:
                statuses.append("timeout")
        await asyncio.gather(*(one(i) for i in range(count)))
    return statuses


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def soak(server, seconds, clients, chars):
    end = time.monotonic() + seconds
    samples = []

    async def sampler():
        while time.monotonic() < end:
            samples.append((time.monotonic(), rss_kib(server.proc.pid)))
            await asyncio.sleep(5)

    errors = []

    async def worker(i):
        while time.monotonic() < end:
            try:
                await asyncio.wait_for(_client(server.url, chars, i, []), 120)
            except (OSError, asyncio.TimeoutError) as e:  # counted and reported, not hidden
                errors.append(type(e).__name__)

    await asyncio.gather(sampler(), *(worker(i) for i in range(clients)))
    return samples, errors


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 8, 64, 128])
    ap.add_argument("--chars", type=int, default=500)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-queue", type=int, default=32)
    ap.add_argument("--deadline", type=float, default=120, help="seconds per level at most")
    ap.add_argument("--soak", type=float, default=0, help="seconds of the RSS run (0: none)")
    ap.add_argument("--min-seconds", type=float, default=2.0,
                    help="each level repeats its round of clients for this long at least")
    ap.add_argument("--stream-interval", default=None,
                    help="the server's --stream-interval: seconds, or auto (default: the "
                    "server's default)")
    a = ap.parse_args()

    big = max(a.clients)
    extra = [] if a.stream_interval is None else ["--stream-interval", str(a.stream_interval)]
    server = ServerProcess("--max-batch", str(max(big, 64)), "--max-queue", str(a.max_queue),
                           "--threads", str(a.threads), "--shutdown-timeout", "2",
                           *extra).start()
    rows, notes = [], []
    try:
        for c in a.clients:
            asyncio.run(level(server.url, min(c, 4), 20, a.deadline))  # warm-up
            r = asyncio.run(level(server.url, c, a.chars, a.deadline, server.proc.pid,
                                  a.min_seconds))
            off_cs, step_s, off_cpu = offline(c, a.chars, a.threads)
            rows.append([c, f"{r['chars_s']:,.0f}", f"{off_cs:,.0f}",
                         f"{r['chars_s'] / off_cs:.0%}",
                         f"{r['ttfc'][0] * 1e3:.1f} / {r['ttfc'][1] * 1e3:.1f}",
                         f"{r['gap'][0] * 1e3:.2f} / {r['gap'][1] * 1e3:.2f}",
                         f"{r['frame_gap'][0] * 1e3:.2f} / {r['frame_gap'][1] * 1e3:.2f}",
                         f"{r['chars_per_frame']:.1f}",
                         f"{step_s * 1e3:.2f}", f"{r['gap'][1] / step_s:.1f}x",
                         f"{r['frame_gap'][1] / step_s:.1f}x",
                         f"{r['client_cpu']:.0%} / {r['server_cpu']:.0%}",
                         f"{r['server_cpu_per_char'] * 1e6:.1f} / {off_cpu * 1e6:.1f} "
                         f"({off_cpu / r['server_cpu_per_char']:.0%})", r["failed"]])
        flood_n = 4 * (max(big, 64) + a.max_queue)  # 4x what can run or wait
        statuses = asyncio.run(flood(server.url, flood_n, a.deadline))
        counts = {s: statuses.count(s) for s in set(statuses)}
        notes.append(f"Flood: {flood_n} concurrent requests (4x --max-batch {max(big, 64)} + "
                     f"--max-queue {a.max_queue}) "
                     f"-> {dict(sorted(counts.items(), key=str))}; "
                     f"{'OK' if set(counts) <= {200, 429} else 'FAILED'} (200 or 429 only)")
        if a.soak:
            samples, errors = asyncio.run(soak(server, a.soak, 64, a.chars))
            kib = np.array([s[1] for s in samples])
            warm = kib[len(kib) // 10:] if len(kib) > 2 else kib
            lo, hi, first = warm.min(), warm.max(), warm[0]
            notes.append(f"Soak: {a.soak:g} s of 64 clients; VmRSS after warm-up "
                         f"{first / 1024:.1f} MiB, min {lo / 1024:.1f}, max {hi / 1024:.1f} "
                         f"({(hi - lo) / first:+.1%} spread; target within ±10%); "
                         f"client transport errors: {len(errors)} {sorted(set(errors))}")
    finally:
        code = server.stop()
    from charwright.runtime.serve.state import DEFAULT_STREAM_INTERVAL

    interval = (f"{DEFAULT_STREAM_INTERVAL} (server default)" if a.stream_interval is None
                else a.stream_interval)
    print(header("charwright serve vs offline generate_batch (demo, onnx int8-dynamic, "
                 f"{a.chars} chars per client, --stream-interval {interval})", a.threads))
    print(table(["clients", "serve chars/s", "offline chars/s", "ratio",
                 "TTFC p50/p99 ms", "gap p50/p99 ms", "frame gap p50/p99 ms", "chars/frame",
                 "offline step ms", "p99 gap / step", "p99 frame gap / step",
                 "CPU load generator / server (share of one core)",
                 "CPU µs/char serve / offline (ratio)", "failed"], rows))
    print()
    print("\nCPU µs/char: the server process's CPU time (all its threads, /proc) per character "
          "served, beside offline generate_batch's (this process) at the same batch; their "
          "ratio is the server's efficiency, which other load on the machine disturbs less "
          "than the wall-clock ratio.\n")
    for n in notes:
        print(n)
    print(f"Server exit status after SIGTERM: {code}")


if __name__ == "__main__":
    main()
