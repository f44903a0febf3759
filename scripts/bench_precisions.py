"""Every file of one or more bundles, side by side: the parity export recorded (top-1, bits/char
vs the reference, greedy first divergence), the file's size, its LiteRT / onnxruntime time per
step at batch 1 on one thread (measured here), and the TFLite Micro arena export probed.

    python scripts/bench_precisions.py runtime/demo BUNDLE [BUNDLE ...] [--steps 400]

The closing notes of issue 10 quote its table (README "Integer files").
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_common import header, table  # noqa: E402


def time_step(bundle, entry, steps: int) -> float | None:
    """Median µs per batch-1 step of the file's own backend (None: backend not installed)."""
    from charwright.runtime.backends import open_backend
    from charwright.runtime.errors import BackendUnavailable

    try:
        be = open_backend(bundle, entry, threads=1)
    except BackendUnavailable:
        return None
    tok = np.array([1], np.int32)
    state = be.initial_state(1)
    for _ in range(50):
        _, state = be.step(tok, state)
    samples = []
    for i in range(steps):
        t0 = time.perf_counter()
        _, state = be.step(np.array([i % bundle.vocab_size], np.int32), state)
        samples.append(time.perf_counter() - t0)
    return float(np.median(samples) * 1e6)


def describe(arch: dict) -> str:
    stack = arch.get("stack") or []
    cells = {d["cell"] for d in stack} or {arch.get("cell")}
    units = {d["units"] for d in stack} or {arch.get("units")}
    return f"{'/'.join(sorted(cells)).upper()} {len(stack) or arch.get('layers')}x" \
           f"{'/'.join(str(u) for u in sorted(units))}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundles", nargs="+", type=Path)
    ap.add_argument("--steps", type=int, default=400, help="timed steps per file")
    args = ap.parse_args(argv)
    from charwright.runtime.bundle.reader import load_bundle
    from charwright.runtime.errors import CharwrightError

    print(header("Every file: parity, size, time per step, TFLM arena", 1))
    rows = []
    for path in args.bundles:
        try:
            b = load_bundle(path)
        except CharwrightError as e:
            print(f"error: {path}: {e}", file=sys.stderr)
            return 1
        m = json.loads((path / "manifest.json").read_text())
        model = describe(m["architecture"])
        parity = {p["file"]: p for p in m.get("parity", [])}
        for f in m["files"]:
            p = parity.get(f["path"], {})
            tflm = parity.get(f["path"] + "[tflm]", {})
            micro = f.get("micro") or {}
            us = time_step(b, next(e for e in b.files if e.path == f["path"]), args.steps)
            arena = micro.get("arena_bytes")
            rows.append([
                model, f["path"],
                f"{p['top1'] * 100:.2f}%" if p.get("top1") is not None else "-",
                f"{p['bpc_rel'] * 100:+.2f}%" if p.get("bpc_rel") is not None else "-",
                "none" if p and p.get("greedy_first_diff") is None else
                str(p.get("greedy_first_diff", "-")),
                f"{f['bytes']:,}", f"{us:.1f}" if us is not None else "not installed",
                (f"{arena:,} (top-1 {tflm['top1'] * 100:.2f}%)" if arena and tflm.get("top1")
                 is not None else f"{arena:,}" if arena else
                 "does not run" if micro.get("runs") is False else "-"),
                p.get("verdict", "-")])
    print(table(["model", "file", "top-1", "bits/char vs ref", "greedy first diff", "bytes",
                 "µs/step (1 thread)", "TFLM arena bytes", "verdict"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
