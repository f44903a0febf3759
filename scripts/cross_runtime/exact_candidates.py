"""The candidates for the int8 ONNX file's exact activations, side by side (issue 20 item 3):
the file as export wrote it, and each method of export/formats/onnx_exact.py applied to it
(plus the interpolated table of the prototype exact_activations.py): bytes, probe top-1 and
bits/char, steps whose bits differ on onnxruntime-web and on onnx.reference, µs/step
(onnxruntime, batch 1, one thread; min of alternating runs).

    python scripts/cross_runtime/exact_candidates.py [BUNDLE] [--steps 300] [--rounds 5]
        [--file INT8.onnx]

The candidates rewrite the file's Tanh/Sigmoid: a bundle exported with exact activations has
none, so give --file an int8 file with them, e.g. the demo's before exact activations:

    git show 695757c:runtime/demo/model.int8-dynamic.onnx > /tmp/before.onnx
    python scripts/cross_runtime/exact_candidates.py --file /tmp/before.onnx
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
import cross_runtime as X  # noqa: E402
import explain  # noqa: E402
from exact_activations import rewrite  # noqa: E402

from charwright.export.formats.onnx_exact import exact  # noqa: E402
from charwright.runtime.backends import open_backend  # noqa: E402
from charwright.runtime.bundle.reader import load_bundle  # noqa: E402
from charwright.runtime.verify.parity import compare  # noqa: E402


def copy_with(bundle, entry, data: bytes, d: Path):
    shutil.copytree(bundle.root, d)
    (d / entry.path).write_bytes(data)
    m = json.loads((d / "manifest.json").read_text())
    for f in m["files"]:
        if f["path"] == entry.path:
            f["sha256"], f["bytes"] = hashlib.sha256(data).hexdigest(), len(data)
    (d / "manifest.json").write_text(json.dumps(m, indent=1))
    b = load_bundle(d)
    return b, next(e for e in b.files if e.path == entry.path)


def us_per_step(step, n=1000) -> float:
    st, tok = step.initial_state(1), np.array([1], np.int32)
    t = time.perf_counter()
    for _ in range(n):
        _, st = step.step(tok, st)
    return (time.perf_counter() - t) / n * 1e6


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", nargs="?", default=str(X.DEMO_BUNDLE))
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--ort-web", default=None)
    ap.add_argument("--file", type=Path, default=None,
                    help="an int8 ONNX file of this bundle's model to start from")
    args = ap.parse_args(argv)
    bundle = load_bundle(args.bundle)
    entry = bundle.find("onnx", "int8-dynamic")
    modules = X.ort_web_modules(args.ort_web)
    tokens = bundle.probe()["tokens"][:args.steps].astype(np.int32)
    data = args.file.read_bytes() if args.file else bundle.read(entry)
    cands = {"Tanh/Sigmoid (the runtime's own)" if args.file else "as exported": data,
             "rational (onnx_exact)": exact(data, "rational"),
             "table, nearest (onnx_exact)": exact(data, "table"),
             "table, interpolated (prototype)": rewrite(data, "interpolate")}
    rows, steps = [], {}
    with tempfile.TemporaryDirectory(prefix="cw-exact-") as tmp:
        for i, (label, d) in enumerate(cands.items()):
            b, e = copy_with(bundle, entry, d, Path(tmp) / str(i))
            nat = open_backend(b, e)

            def native(t, s, nat=nat):
                return nat.step(np.array([t], np.int32), s)
            web = X.NodeStep(b, e, modules)
            try:
                vs_web = explain.per_step(native, lambda t, s, web=web: web.step(
                    np.array([t], np.int32), s), tokens, b.state_size)[0]
            finally:
                web.close()
            vs_ref = explain.per_step(native, explain.reference_evaluator(d), tokens,
                                      b.state_size)[0]
            p = compare(nat, b.probe(), e.path)
            steps[label] = nat
            rows.append([label, f"{len(d):,}", f"{p.top1:.2%}", f"{p.bpc_rel:+.2%}", vs_web,
                         vs_ref])
        best = {k: float("inf") for k in steps}
        for _ in range(args.rounds):
            for k, s in steps.items():
                best[k] = min(best[k], us_per_step(s))
        for r in rows:
            r.append(f"{best[r[0]]:.1f}")
    print(f"{bundle.root} ({X.cpu_name()}); {args.steps} steps from the probe's tokens")
    print()
    print(X.table(["int8 ONNX file", "bytes", "probe top-1", "bits/char vs reference",
                   "steps ≠ onnxruntime-web", "steps ≠ onnx.reference", "µs/step (min)"],
                  rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
