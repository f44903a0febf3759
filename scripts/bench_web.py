"""charwright.wasm (`charwright emit-web`) in Node and in headless Chromium against the host C
build (`charwright emit-c`, make cw_bench) of the same bundle, and the package's size.

Per bundle and precision: µs per character of the whole generate loop (an empty prompt, N
characters; greedy, and top-p 0.9 at temperature 0.8, seed 1): the host C program's
`cw_bench --bench` loop (clock() inside one process), charwright.js's `generate()` in Node
(tests/js/generate.mjs: best of 3 runs, performance.now(), the async iteration included) and
in Chromium (tests/js/browser.mjs: the same code in a page served from 127.0.0.1, /usr/bin/chromium
driven by playwright-core from tests/js/node_modules). Size: charwright.js + charwright.d.ts +
charwright.wasm, each gzip -9, with the wasm built for a 4-unit model (its weights and
vocabulary are under 1 KB: what is left is the code, the sampler's exp tables and the module's
layout), beside the real bundle's charwright.wasm.

    python scripts/bench_web.py                 # the demo bundle (GRU 512), float32 + int8, N 2000
    python scripts/bench_web.py --quick         # a tiny hand-made bundle, N 200: proves it works
    python scripts/bench_web.py --bundle .bench/gru256_bundle --bundle runtime/demo -n 5000

Needs clang + lld + wasi-libc, node, make + cc; Chromium and `npm ci --prefix tests/js` for the
Chromium column (else it says "-"). Work files go to .bench/web/.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO / "tests" / "support"))
from _bench_common import header, table  # noqa: E402

JS = REPO / "tests" / "js"
CHROMIUM = "/usr/bin/chromium"
SAMPLERS = {"greedy": ["--greedy"],
            "top-p 0.9": ["--seed", "1", "--temperature", "0.8", "--top-p", "0.9"]}


def _run(cmd, **kw) -> str:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, **kw)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed: {(r.stderr or r.stdout)[-2000:]}")
    return r.stdout


def web_dir(work: Path, bundle: Path, precision: str, tag: str) -> Path:
    from charwright.runtime.emit_c.web import emit_web

    d = work / f"{tag}-{precision}"
    emit_web(bundle, d, precision, force=True, expected_chars=0)
    return d


def host_c(work: Path, bundle: Path, precision: str, tag: str, n: int) -> dict:
    from charwright.runtime.emit_c.project import emit

    d = work / f"c-{tag}-{precision}"
    emit(bundle, d, precision)
    _run(["make", "-s", "-C", str(d), "cw_bench"])
    out = {}
    for name, flags in SAMPLERS.items():
        line = _run([str(d / "cw_bench"), "--bench", "-n", str(n), *flags])
        m = re.search(r"ticks_per_s (\d+) ids (\d+) steps (\d+) (\d+) chars (\d+) (\d+)", line)
        tps, ids, steps, t_step, chars, t_loop = (int(x) for x in m.groups())
        step = t_step / steps
        # the loop primes the prompt's ids, then steps chars - 1 times: per character, as
        # bench_c.py counts it
        out[name] = (t_loop - step * (ids - 1)) / max(chars, 1) * 1e6 / tps
    return out


def node_us(d: Path, work: Path, n: int) -> dict:
    spec = work / "empty-cases.json"
    spec.write_text(json.dumps({"cases": []}))
    return json.loads(_run(["node", str(JS / "generate.mjs"), str(d), str(spec), "--bench",
                            str(n)]))["bench"]


def chromium_us(d: Path, work: Path, n: int) -> dict | None:
    if not (Path(CHROMIUM).is_file() and (JS / "node_modules" / "playwright-core").is_dir()):
        return None
    spec = work / "ui-case.json"
    spec.write_text(json.dumps({"cases": [{"prompt": "", "options": {"greedy": True,
                                                                      "maxChars": 10}}]}))
    out = json.loads(_run(["node", str(JS / "browser.mjs"), str(d), str(spec), "--bench",
                           str(n)]))
    return out["bench"]


def measure(bundle: Path, precision: str = "float32", n: int = 2000,
            work: Path | None = None) -> dict:
    """One bundle at one precision: {"host_c" | "node" | "chromium": {sampler: µs/char},
    "wasm_bytes": n, "wasm_gz": n} ("chromium" None without Chromium / playwright-core). For
    other scripts (bench_c.py's table of targets) as well as main()."""
    work = work or REPO / ".bench" / "web"
    work.mkdir(parents=True, exist_ok=True)
    tag = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(bundle).resolve().name)
    d = web_dir(work, Path(bundle), precision, tag)
    wasm = d / "charwright.wasm"
    return {"host_c": host_c(work, Path(bundle), precision, tag, n),
            "node": node_us(d, work, n), "chromium": chromium_us(d, work, n),
            "wasm_bytes": wasm.stat().st_size, "wasm_gz": gz(wasm)}


def gz(path: Path) -> int:
    return len(gzip.compress(path.read_bytes(), 9))


def sizes(work: Path) -> dict:
    """The package gzipped without the weights: the wasm built for a 4-unit model."""
    from bundle_factory import make_bundle

    b = make_bundle(work / "size-probe-bundle", units=4, tokens=10)
    d = web_dir(work, b, "float32", "size-probe")
    files = {name: gz(d / name) for name in ("charwright.js", "charwright.d.ts",
                                             "charwright.wasm")}
    return {"files": files, "total": sum(files.values()),
            "wasm_raw": (d / "charwright.wasm").stat().st_size}


def versions() -> str:
    node = _run(["node", "--version"]).strip()
    try:
        chrome = _run([CHROMIUM, "--version"]).strip()
    except (SystemExit, OSError):
        chrome = "no Chromium"
    return f"Node {node}; {chrome}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", action="append", type=Path,
                    help="bundle directory (repeatable; default: the demo bundle)")
    ap.add_argument("--precision", action="append", choices=["float32", "int8"])
    ap.add_argument("-n", type=int, default=2000, help="characters per run (default 2000)")
    ap.add_argument("--quick", action="store_true",
                    help="a tiny hand-made bundle and N 200 (proves the script works)")
    args = ap.parse_args(argv)
    work = REPO / ".bench" / "web"
    work.mkdir(parents=True, exist_ok=True)
    if args.quick:
        from bundle_factory import make_bundle

        bundles, n = [make_bundle(work / "quick-bundle", units=32, tokens=20)], 200
    else:
        from charwright.runtime.model import DEMO_BUNDLE

        bundles, n = args.bundle or [Path(DEMO_BUNDLE)], args.n
    precisions = args.precision or ["float32", "int8"]
    rows = []
    for b in bundles:
        for p in precisions:
            r = measure(Path(b), p, n, work)
            c, nd, ch = r["host_c"], r["node"], r["chromium"]
            for s in SAMPLERS:
                cr = f"{ch[s]:.1f}" if ch else "-"
                ratio = f"{ch[s] / c[s]:.2f}x" if ch else "-"
                rows.append([Path(b).resolve().name, p, s, f"{c[s]:.1f}", f"{nd[s]:.1f}",
                             f"{nd[s] / c[s]:.2f}x", cr, ratio,
                             f"{r['wasm_bytes']:,} ({r['wasm_gz']:,} gz)"])
    sz = sizes(work)
    print(header("charwright.wasm (emit-web) in Node and Chromium vs the host C build", 1))
    print(versions() + f"; {n} characters per run, an empty prompt\n")
    print(table(["bundle", "precision", "sampler", "host C µs/char", "Node µs/char",
                 "Node / C", "Chromium µs/char", "Chromium / C (target <= 2.5x)",
                 "charwright.wasm bytes"], rows))
    parts = ", ".join(f"{k} {v:,}" for k, v in sz["files"].items())
    ok = "met" if sz["total"] <= 60 * 1024 else "MISSED"
    print(f"\nPackage without the weights, gzip -9: {sz['total']:,} bytes ({parts}; the wasm "
          f"built for a 4-unit model, {sz['wasm_raw']:,} bytes raw); target <= 61,440: {ok}")
    shutil.rmtree(work / "size-probe-bundle", ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
