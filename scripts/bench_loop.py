"""The sampling loop's own cost per character, against an earlier revision, in the same run.

The real Model, Generator, sampling chain and text stream run over a null step (precomputed
logits, the state passed through), so what is timed is everything but the model. With
--baseline-rev, that revision's runtime/ is taken out of git into a temporary package and timed
interleaved with the working tree's (rounds alternate), so both see the same machine state.

    python scripts/bench_loop.py                              # this tree only
    python scripts/bench_loop.py --baseline-rev 44521cf       # before/after table
    python scripts/bench_loop.py --baseline-rev 44521cf --backend litert   # the demo's real steps

With --backend, the demo bundle's file for that backend runs the steps, and the table gives the
whole loop per character (step included), to see the loop's cost beside a real model's.
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import argparse  # noqa: E402
import importlib  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_common import SAMPLERS, header, stats, table  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "runtime" / "demo"


class NullStep:
    """A backend whose step costs one copy of precomputed logits."""

    name, precision, thread_safe = "null", "float32", True

    def __init__(self, vocab_size: int):
        self.logits = np.random.default_rng(0).normal(0, 3, (1, vocab_size)).astype(np.float32)
        self.vocab_size, self.state_size = vocab_size, 8

    def initial_state(self, batch):
        return np.zeros((batch, 8), np.float32)

    def step(self, tokens, state):
        return self.logits.copy(), state


def baseline_package(rev: str, where: Path) -> str:
    """Extracts REV's runtime/ as the package `cw_baseline.runtime`; returns the package name."""
    pkg = where / "cw_baseline"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "runtime"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(pkg)], input=archive, check=True)
    for f in pkg.rglob("*.py"):
        f.write_text(f.read_text().replace("charwright.runtime", "cw_baseline.runtime"))
    sys.path.insert(0, str(where))
    return "cw_baseline.runtime"


def null_model(pkg: str, backend: str = "null"):
    """(Model, SamplingConfig, null step or None) from package `pkg`; backend "null" swaps the
    demo's step for NullStep, any other name runs the demo's file for that backend."""
    rt = importlib.import_module(pkg)
    m = rt.load(DEMO, backend="onnx" if backend == "null" else backend)
    if backend != "null":
        return m, rt.SamplingConfig, None
    null = NullStep(m.vocab.size)
    m._shared = null
    if hasattr(m, "_thread_safe"):
        m._thread_safe = True
    return m, rt.SamplingConfig, null


def per_char(m, cfg_cls, null, kw: dict, chars: int, seed: int) -> float:
    """Seconds per character of m.stream(...), less the null step's own cost (if null)."""
    step_cost = 0.0
    if null is not None:
        buf, s = np.zeros(1, np.int32), null.initial_state(1)
        t0 = time.perf_counter()
        for _ in range(chars):
            null.step(buf, s)
        step_cost = (time.perf_counter() - t0) / chars
    t0 = time.perf_counter()
    n = sum(len(c) for c in m.stream("ROMEO:", chars, cfg_cls(seed=seed, **kw)))
    return (time.perf_counter() - t0) / n - step_cost


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline-rev", help="git revision to compare with (e.g. 44521cf)")
    ap.add_argument("--chars", type=int, default=2000, help="characters per timed run")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--backend", default="null", choices=["null", "onnx", "litert", "numpy"],
                    help="null: the loop alone; else the demo bundle's real steps")
    a = ap.parse_args()
    subjects = {"this tree": "charwright.runtime"}
    tmp = tempfile.TemporaryDirectory()
    if a.baseline_rev:
        subjects = {a.baseline_rev: baseline_package(a.baseline_rev, Path(tmp.name)), **subjects}
    models = {name: null_model(pkg, a.backend) for name, pkg in subjects.items()}
    results = {name: {k: [] for k in SAMPLERS} for name in subjects}
    for r in range(a.repeats + 1):  # round 0 warms up
        for k, kw in SAMPLERS.items():
            for name, (m, cfg, null) in models.items():
                t = per_char(m, cfg, null, kw, a.chars, seed=r)
                if r:
                    results[name][k].append(t)
    what = ("The sampling loop's own cost per character (null step)" if a.backend == "null" else
             f"The whole loop per character on the demo model ({a.backend}, step included)")
    print(header(what, 1))
    print(f"{a.chars} characters per run, {a.repeats} interleaved rounds; µs/char, median (p90)\n")
    head = ["sampler"] + list(subjects)
    if a.baseline_rev:
        head.append("this tree / baseline")
    rows = []
    for k in SAMPLERS:
        cells = [stats(results[name][k]) for name in subjects]
        row = [k] + [f"{med:.2f} ({p90:.2f})" for med, p90 in cells]
        if a.baseline_rev:
            row.append(f"{cells[-1][0] / cells[0][0]:.2f}")
        rows.append(row)
    print(table(head, rows))
    tmp.cleanup()


if __name__ == "__main__":
    main()
