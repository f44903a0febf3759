"""Benchmark `charwright serve`'s prompt cache on loopback: time to first character cold vs
warm, and the server's memory under a flood of distinct prompts.

    python scripts/bench_prompt_cache.py                      the demo; flood for 5 minutes
    python scripts/bench_prompt_cache.py --quick              a short run (proves it works)
    python scripts/bench_prompt_cache.py -b BUNDLE --backend numpy --minutes 1

Part 1. One server with --prompt-cache-mb (default 64). For each prompt length (100, 2,000 and
20,000 characters of tinyshakespeare, or of the demo's own text when the corpus is absent;
each length from its own offset, so no two share a prefix): the first streaming request (cold:
the whole prompt primes), then the same prompt again (warm: every repeat, median), then the
prompt with 50 more characters (a shared prefix: only the rest primes). Time to first character
is from sending the request to the first SSE frame that carries text, 8 characters asked.
Part 2. A second server with --flood-cache-mb (default 16, so that evictions happen within a
few minutes): 2 clients send distinct prompts of --flood-chars characters for --minutes; the
server's VmRSS and the cache's bytes and evictions (from /metrics) are printed every interval.
Both servers are real `charwright serve` processes on 127.0.0.1, port 0.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests" / "support"))
from _bench_common import header, table  # noqa: E402
from serve_util import ServerProcess  # noqa: E402

CORPUS = HERE.parent.parent / "shared" / "data" / "tinyshakespeare.txt"
EXTRA = 50


def corpus_text(vocab_chars) -> str:
    """tinyshakespeare, keeping only the model's characters; else text the demo writes."""
    ok = set(vocab_chars)
    if CORPUS.is_file():
        text = "".join(c for c in CORPUS.read_text(encoding="utf-8") if c in ok)
        if len(text) > 200_000:
            return text
    from charwright.runtime import SamplingConfig, load

    return load().generate("\n", 200_000, SamplingConfig(seed=1))


def ttfc(client: httpx.Client, url: str, model: str, prompt: str,
         chars: int = 8) -> tuple[float, str]:
    """(seconds to the first text frame, the whole text) of one streaming completion, on a
    kept-alive connection (a new httpx connection costs about 20 ms here, more than a warm
    start)."""
    body = {"model": model, "prompt": prompt, "max_tokens": chars, "stream": True, "seed": 1,
            "temperature": 0.8}
    t0 = time.perf_counter()
    first, text = None, ""
    with client.stream("POST", url + "/v1/completions", json=body, timeout=600) as r:
        if r.status_code != 200:
            raise SystemExit(f"HTTP {r.status_code}: {r.read()[:200]!r}")
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            piece = json.loads(line[6:])["choices"][0].get("text", "")
            if piece and first is None:
                first = time.perf_counter() - t0
            text += piece
    return (first if first is not None else time.perf_counter() - t0), text


def metric(url: str, name: str) -> float:
    total = 0.0
    for line in httpx.get(url + "/metrics", timeout=10).text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def rss_mib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def server(args, cache_mb: float) -> ServerProcess:
    cli = ["--backend", args.backend, "--prompt-cache-mb", str(cache_mb),
           "--max-prompt-chars", str(max(*args.lengths, args.flood_chars) + EXTRA + 10)]
    if args.bundle:
        cli = ["-b", args.bundle] + cli
    if args.precision:
        cli += ["--precision", args.precision]
    return ServerProcess(*cli).start(timeout=120)


def cold_warm(args, text: str) -> tuple[str, str]:
    s = server(args, args.prompt_cache_mb)
    c = httpx.Client()
    try:
        note = next((ln.split("ready: ", 1)[1].strip() for ln in s.stderr_lines
                     if "ready: " in ln), "?")
        model = httpx.get(s.url + "/v1/models", timeout=10).json()["data"][0]["id"]
        ttfc(c, s.url, model, text[5_000_000 % len(text):][:20])  # warm-up
        rows, offset = [], 0
        for n in args.lengths:
            prompt = text[offset:offset + n]
            offset += n + 1000
            cold, a = ttfc(c, s.url, model, prompt)
            warm = []
            for _ in range(args.repeats):
                t, b = ttfc(c, s.url, model, prompt)
                if b != a:
                    raise SystemExit(f"the warm text differs from the cold one at {n} chars")
                warm.append(t)
            w = statistics.median(warm)
            longer, _ = ttfc(c, s.url, model, prompt + text[offset:offset + EXTRA])
            rows.append([f"{n:,}", f"{cold * 1e3:.1f}", f"{w * 1e3:.2f}",
                         f"{100 * w / cold:.1f}%", f"{longer * 1e3:.2f}"])
        hits = metric(s.url, "charwright_prompt_cache_hits_total")
        reused = metric(s.url, "charwright_prompt_chars_reused_total")
    finally:
        c.close()
        s.stop()
    out = table(["prompt chars", "cold TTFC ms", f"warm TTFC ms (median of {args.repeats})",
                 "warm / cold", f"prompt + {EXTRA} chars, TTFC ms"], rows)
    return out, f"Server: {note}. Cache hits {hits:.0f}, prompt characters reused {reused:,.0f}."


def flood(args, text: str) -> str:
    s = server(args, args.flood_cache_mb)
    stop = time.monotonic() + args.minutes * 60
    done, errors = [0], []
    lock = threading.Lock()
    letters = sorted(set(text) - set("\n"))

    def client(k: int, model: str) -> None:
        i = k
        try:
            with httpx.Client() as c:
                while time.monotonic() < stop:
                    start = (i * 7919) % (len(text) - args.flood_chars - 1)
                    tag = "".join(letters[(i >> (5 * j)) % len(letters)] for j in range(4))
                    ttfc(c, s.url, model, tag + text[start:start + args.flood_chars], chars=4)
                    i += 2
                    with lock:
                        done[0] += 1
        except BaseException as e:  # noqa: BLE001 - reported below the table
            errors.append(repr(e))

    try:
        model = httpx.get(s.url + "/v1/models", timeout=10).json()["data"][0]["id"]
        threads = [threading.Thread(target=client, args=(k, model), daemon=True)
                   for k in range(2)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        rows = []
        while True:
            left = stop - time.monotonic()
            time.sleep(max(0.0, min(args.interval, left)))
            rows.append([f"{time.monotonic() - t0:.0f}", f"{done[0]:,}",
                         f"{rss_mib(s.proc.pid):.1f}",
                         f"{metric(s.url, 'charwright_prompt_cache_bytes') / 2**20:.2f}",
                         f"{metric(s.url, 'charwright_prompt_cache_evictions_total'):,.0f}"])
            if left <= 0:
                break
        for t in threads:
            t.join(120)
    finally:
        s.stop()
    if errors:
        raise SystemExit(f"a flood client failed: {errors[0]}")
    return table(["s", "requests done", "server VmRSS MiB", "cache MiB", "evictions"], rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-b", "--bundle", help="bundle directory (default: the demo)")
    ap.add_argument("--backend", default="onnx")
    ap.add_argument("--precision")
    ap.add_argument("--lengths", type=int, nargs="+", default=[100, 2000, 20000])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--prompt-cache-mb", type=float, default=64.0)
    ap.add_argument("--flood-cache-mb", type=float, default=16.0)
    ap.add_argument("--flood-chars", type=int, default=2000)
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--interval", type=float, default=30.0, help="seconds between RSS samples")
    ap.add_argument("--quick", action="store_true", help="2 repeats, a 15-second flood")
    args = ap.parse_args()
    os.environ.pop("CHARWRIGHT_API_KEY", None)  # the servers run without a key
    if args.quick:
        args.repeats, args.minutes, args.interval = 2, 0.25, 5.0
    from charwright.runtime import load

    vocab = load(args.bundle, backend=args.backend, precision=args.precision).vocab
    text = corpus_text(vocab.chars)
    print(header("Prompt cache: time to first character, cold vs warm", 1))
    part1, note = cold_warm(args, text)
    print(part1 + "\n\n" + note + "\n")
    print(f"Flood: 2 clients, distinct prompts of {args.flood_chars:,} characters for "
          f"{args.minutes:g} min, --prompt-cache-mb {args.flood_cache_mb:g}:\n")
    print(flood(args, text))


if __name__ == "__main__":
    main()
