"""Shared by the benchmark scripts: the header (machine, versions) and Markdown tables."""

from __future__ import annotations

import os
import platform
from importlib.metadata import PackageNotFoundError, version

import numpy as np

# the sampling settings every generation benchmark times, by name
SAMPLERS = {
    "greedy": dict(greedy=True),
    "temperature 0.8": dict(temperature=0.8),
    "top-k 40": dict(temperature=0.8, top_k=40),
    "top-p 0.9": dict(temperature=0.8, top_p=0.9),
    "min-p 0.05": dict(temperature=0.8, min_p=0.05),
    "repetition 1.3": dict(temperature=0.8, repetition_penalty=1.3),
}


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def header(title: str, threads: int) -> str:
    vers = []
    for pkg in ("charwright", "numpy", "onnxruntime", "ai-edge-litert", "tensorflow", "keras"):
        try:
            vers.append(f"{pkg} {version(pkg)}")
        except PackageNotFoundError:
            pass
    return (f"## {title}\n\n{cpu_name()}, {os.cpu_count()} cores visible, {threads} thread(s); "
            f"Python {platform.python_version()}; " + ", ".join(vers) + "\n")


def stats(samples_s) -> tuple[float, float]:
    """(median, p90) in microseconds."""
    a = np.asarray(samples_s) * 1e6
    return float(np.median(a)), float(np.percentile(a, 90))


def table(head: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)
