"""ONNX int8 before and after issue 20: activations quantized per tensor (quantize_dynamic's
DynamicQuantizeLinear, one scale for the whole batch) vs per batch row (export/formats/
onnx_rows.py), beside the float32 file they are made from: parity on the bundle's probe, bytes,
µs per step on one thread (batch 1 and 64), and whether a row's logits are batch-invariant.

Sizes: "demo" (the shipped GRU 512: float32 ONNX rebuilt from its weights.npz), "tutorial"
(GRU 1024, embedding 256) and "gru256", built like scripts/bench_generate.py builds them (a few
training steps: real shapes, all but untrained weights, so their parity says little).

    .venv/bin/python scripts/bench_onnx_int8.py                        # demo + GRU 1024
    .venv/bin/python scripts/bench_onnx_int8.py --sizes demo --chars 200 --repeats 2   # quick
    .venv/bin/python scripts/bench_generate.py --onnx-int8             # the same table
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_common import header, stats, table  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def float32_file(size: str, work: Path):
    """(bundle dir, float32 ONNX bytes) of a size."""
    from charwright.runtime.model import DEMO_BUNDLE

    if size == "demo":
        import json

        from rebuild_demo_onnx import float32_onnx

        manifest = json.loads((DEMO_BUNDLE / "manifest.json").read_text())
        return DEMO_BUNDLE, float32_onnx(DEMO_BUNDLE, manifest)
    import bench_generate

    bundle = bench_generate.built_bundle(work, size)
    return bundle, (bundle / "model.float32.onnx").read_bytes()


def per_step(step, batch: int, chars: int, repeats: int):
    """(median, p90) µs of one step at `batch` over `repeats` runs of `chars` steps."""
    rng = np.random.default_rng(0)
    tok = rng.integers(0, step.vocab_size, batch).astype(np.int32)
    state = step.initial_state(batch)
    for _ in range(30):
        _, state = step.step(tok, state)
    runs = []
    for _ in range(repeats):
        s = state
        t0 = time.perf_counter()
        for _ in range(chars):
            _, s = step.step(tok, s)
        runs.append((time.perf_counter() - t0) / chars)
    return stats(runs)


def bench_size(size: str, work: Path, chars: int, repeats: int) -> list:
    from charwright.export.formats import onnx as ox
    from charwright.export.invariance import measure
    from charwright.runtime.backends.onnx import ONNXStep
    from charwright.runtime.bundle.reader import load_bundle
    from charwright.runtime.verify.parity import compare

    bundle_dir, f32 = float32_file(size, work)
    b = load_bundle(bundle_dir)
    probe = b.probe()
    variants = {"float32": (f32, "float32"),
                "int8, per tensor (before)": (ox.quantize(f32, "int8-dynamic", rows=False),
                                              "int8-dynamic"),
                "int8, per row (after)": (ox.quantize(f32, "int8-dynamic"), "int8-dynamic")}
    units = b.manifest["architecture"]["units"]
    rows = []
    for name, (data, precision) in variants.items():
        step = ONNXStep(name, b.state_size, b.vocab_size, precision, threads=1, data=data)
        p = compare(step, probe, name)
        inv = measure(step)
        one, sixty_four = per_step(step, 1, chars, repeats), per_step(step, 64, chars // 4 or 1,
                                                                       repeats)
        rows.append([f"GRU {units}", name, f"{len(data):,}", f"{p.top1:.2%}",
                     f"{p.bpc:.4f} / {p.ref_bpc:.4f} ({p.bpc_rel:+.2%})", f"{p.max_abs:.3g}",
                     f"{one[0]:.1f} / {one[1]:.1f}", f"{sixty_four[0]:.1f}",
                     "yes" if inv.invariant else f"no (Δ up to {inv.max_abs:.2g})"])
        print(f"  {size}: {name} done", file=sys.stderr, flush=True)
    return rows


def run(sizes: str = "demo,tutorial", work: Path = REPO / ".bench", chars: int = 1000,
        repeats: int = 5) -> int:
    work.mkdir(parents=True, exist_ok=True)
    print(header("ONNX int8: activations per tensor (before) vs per row (after)", 1))
    print(f"parity: the bundle's probe replayed (teacher-forced) against its reference logits; "
          f"µs/step: median / p90 of {repeats} runs of {chars} steps at batch 1, and the median "
          f"per step (whole batch) at batch 64; batch-invariant: export/invariance.py; bytes: "
          f"the graph alone (a bundle's file adds ~1.5 KB of metadata; the bundle's float32 "
          f"file, metadata included, at sizes other than demo)\n",
          flush=True)
    rows = []
    for size in sizes.split(","):
        rows += bench_size(size.strip(), work, chars, repeats)
    print(table(["model", "file", "bytes", "top-1", "bits/char (file / ref)", "max |Δlogit|",
                 "µs/step batch 1", "µs/step batch 64", "batch-invariant"], rows))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="demo,tutorial", help="demo, tutorial, gru256")
    ap.add_argument("--work", type=Path, default=REPO / ".bench")
    ap.add_argument("--chars", type=int, default=1000, help="steps per timed run")
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    return run(a.sizes, a.work, a.chars, a.repeats)


if __name__ == "__main__":
    sys.exit(main())
