"""Which files give the same text where (issue 20 item 3): every file of a bundle on every
runtime that can run it, the same seeded settings, the text compared character by character.

    python scripts/cross_runtime.py [BUNDLE] [--chars 300] [--settings 5] [--runtimes ...]

BUNDLE defaults to the demo bundle (`charwright export` writes every format into a bundle of
your own). Rows, per file of the bundle:

    .onnx      onnxruntime (Python; the file's native runtime), onnxruntime-web (Node, WASM),
               onnx.reference (onnx's own evaluator in numpy: a port that follows the graph)
    .tflite    LiteRT (Python; native), TFLite Micro (the tflite-micro pip package)
    weights.npz  numpy (native), the C runtime (`charwright emit-c`, float32 and int8, `make`,
               cw_generate with its own sampler)

Each row's text is compared with the same file on its native runtime and with numpy float32:
"same", or "@N": the first N generated characters agree and character N differs. Every Python
row generates through charwright's own loop (the text `charwright generate` prints for that file
with each option given: a bundle's sampling_defaults do not apply here). TFLite Micro,
onnxruntime-web and onnx.reference compute the steps only and charwright's sampler picks each id
in lock-step (for onnxruntime-web a Node process answers each step's logits and state as raw
float32 over a pipe: scripts/cross_runtime/ort_web_step.cjs), so their text depends only on
the runtime's numbers. The C runtime samples itself (its sampler follows runtime/c/SAMPLING.md).

onnxruntime-web is looked for in scripts/cross_runtime/node_modules (`npm ci --prefix
scripts/cross_runtime`) or under --ort-web DIR; a runtime that is missing is a row saying so.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_common import cpu_name, table  # noqa: E402

from charwright.runtime.backends.base import StepBackend  # noqa: E402
from charwright.runtime.bundle.reader import load_bundle  # noqa: E402
from charwright.runtime.errors import CharwrightError  # noqa: E402
from charwright.runtime.generate.batch import start  # noqa: E402
from charwright.runtime.generate.generator import run  # noqa: E402
from charwright.runtime.model import DEMO_BUNDLE, load  # noqa: E402
from charwright.runtime.sampling.config import SamplingConfig  # noqa: E402

HERE = Path(__file__).resolve().parent / "cross_runtime"
NATIVE = {"onnx": "onnxruntime", "tflite": "LiteRT", "npz": "numpy"}
RUNTIMES = ("onnxruntime", "onnxruntime-web", "onnx.reference", "LiteRT", "TFLite Micro", "numpy",
            "C float32", "C int8")


@dataclass(frozen=True)
class Setting:
    name: str
    prompt: str
    sampling: dict


# five settings (the bit-exact steps of runtime/c/SAMPLING.md; typical-p, which is not, is left
# out); a prompt keeps only the characters the model's vocabulary holds
SETTINGS = (
    Setting("T 1, seed 1", "ROMEO:", dict(seed=1)),
    Setting("T 0.8, top-p 0.9, seed 7", "JULIET:", dict(temperature=0.8, top_p=0.9, seed=7)),
    Setting("T 0.9, top-k 40, repetition 1.3, seed 42", "KING",
            dict(temperature=0.9, top_k=40, repetition_penalty=1.3, seed=42)),
    Setting("greedy", "The ", dict(greedy=True)),
    Setting("T 1.2, top-k 20, top-p 0.95, min-p 0.05, seed 2**63-1", "First Citizen:",
            dict(temperature=1.2, top_k=20, top_p=0.95, min_p=0.05, seed=2**63 - 1)),
)


class NotRun(Exception):
    """A runtime that cannot run this file here (not installed, not supported): the row's cell."""


def prompt_for(vocab, prompt: str) -> str:
    kept = "".join(c for c in prompt if c in vocab)
    return kept or next(c for c in vocab.chars if c != "\n")


def generate_on(backend, vocab, setting: Setting, n: int) -> str:
    """charwright's own loop (priming, sampler, text stream) over any StepBackend."""
    gen, streams, _ = start(backend, vocab, [prompt_for(vocab, setting.prompt)], n,
                            SamplingConfig(**setting.sampling))
    return "".join(piece for _, piece in run(gen, streams))


def first_divergence(a: str, b: str) -> int | None:
    """None if equal, else the number of leading characters they share."""
    if a == b:
        return None
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


# ---- runtimes: each returns one text per setting, or raises NotRun --------------------------

def python_runtime(bundle, entry, settings, n):
    backend = {"onnx": "onnx", "tflite": "litert", "npz": "numpy"}[entry.format]
    try:
        model = load(bundle.root, backend=backend, precision=entry.precision)
    except CharwrightError as e:
        raise NotRun(str(e).splitlines()[0]) from None
    return [generate_on(model.backend, bundle.vocab, s, n) for s in settings]


def micro_runtime(bundle, entry, settings, n):
    from charwright.runtime.backends.tflm import MicroStep, runtime_version

    if runtime_version() is None:
        raise NotRun("tflite-micro not installed")
    micro = entry.extra.get("micro") or {}
    if not micro:
        raise NotRun("not probed at export (export without the [micro] extra)")
    if not micro.get("runs"):
        why = (micro.get("reason") or "no reason recorded").split("tensors: ")[-1]
        op = re.search(r"Node (\w+)", why)
        detail = re.sub(r"^\S+\.cc:\d+ ", "", why).split(". Node")[0].split(" was not true")[0]
        raise NotRun(f"does not run ({op.group(1) + ': ' if op else ''}{detail[:70]})")
    try:
        step = MicroStep(bundle.read(entry), bundle.state_size, bundle.vocab_size,
                         entry.precision, micro["arena_bytes"], str(bundle.path(entry)))
    except CharwrightError as e:
        raise NotRun(str(e).splitlines()[0]) from None
    return [generate_on(step, bundle.vocab, s, n) for s in settings]


class NodeStep(StepBackend):
    """A step computed by onnxruntime-web in a Node child process (ort_web_step.cjs)."""

    name = "onnxruntime-web"

    def __init__(self, bundle, entry, modules: Path):
        super().__init__(bundle.state_size, bundle.vocab_size, entry.precision,
                         str(bundle.path(entry)))
        names = [entry.inputs.get("token", "token"), entry.inputs.get("state", "state"),
                 entry.outputs.get("logits", "logits"),
                 entry.outputs.get("new_state", "new_state")]
        self.proc = subprocess.Popen(
            ["node", str(HERE / "ort_web_step.cjs"), str(modules), self.path,
             str(self.state_size), str(self.vocab_size), *names],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        ready = self.proc.stdout.readline().decode()
        if not ready.startswith("ready"):
            self.close()
            raise NotRun(self.proc.stderr.read().decode().strip() or "node did not start")
        self.version = ready.split()[-1]

    def step(self, tokens, state):
        B = len(tokens)
        self.proc.stdin.write(struct.pack("<i", B) + np.ascontiguousarray(tokens, "<i4").tobytes()
                              + np.ascontiguousarray(state, "<f4").tobytes())
        self.proc.stdin.flush()
        size = 4 * B * (self.vocab_size + self.state_size)
        data = self.proc.stdout.read(size)
        if len(data) != size:
            raise NotRun("onnxruntime-web: " + self.proc.stderr.read().decode().strip())
        out = np.frombuffer(data, "<f4").astype(np.float32)
        logits = out[: B * self.vocab_size].reshape(B, self.vocab_size)
        return logits, out[B * self.vocab_size:].reshape(B, self.state_size).copy()

    def close(self):
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def ort_web_modules(given: str | None) -> Path:
    for d in ([Path(given)] if given else []) + [HERE]:
        if (d / "node_modules" / "onnxruntime-web").is_dir():
            return d
    raise NotRun("onnxruntime-web not installed (npm ci --prefix scripts/cross_runtime)")


def web_runtime(bundle, entry, settings, n, modules=None):
    if shutil.which("node") is None:
        raise NotRun("node not installed")
    step = NodeStep(bundle, entry, ort_web_modules(modules))
    try:
        return [generate_on(step, bundle.vocab, s, n) for s in settings]
    finally:
        step.close()


class ReferenceStep(StepBackend):
    """onnx's reference evaluator (numpy, each op as the ONNX standard writes it): what a port
    that follows the file op by op computes. Its DequantizeLinear starts at opset 19, which
    reads int8 as opset 17 does."""

    name = "onnx.reference"

    def __init__(self, bundle, entry):
        super().__init__(bundle.state_size, bundle.vocab_size, entry.precision,
                         str(bundle.path(entry)))
        try:
            import onnx
            from onnx.reference import ReferenceEvaluator
        except ImportError:
            raise NotRun("the onnx package is not installed") from None
        self.ev = reference_evaluator(onnx, ReferenceEvaluator, bundle.read(entry))
        self.io = [entry.inputs.get("token", "token"), entry.inputs.get("state", "state"),
                   entry.outputs.get("logits", "logits"),
                   entry.outputs.get("new_state", "new_state")]

    def step(self, tokens, state):
        logits, new = self.ev.run(self.io[2:], {self.io[0]: np.asarray(tokens, np.int32),
                                                self.io[1]: np.asarray(state, np.float32)})
        return np.asarray(logits, np.float32), np.asarray(new, np.float32)


def reference_evaluator(onnx, evaluator, data: bytes):
    """onnx's ReferenceEvaluator of the file `data` (export/formats/onnx_exact.reference_evaluator:
    opset 19 or later for its DequantizeLinear, GatherElements over a table of any size)."""
    from charwright.export.formats.onnx_exact import reference_evaluator as build

    return build(data)


def reference_runtime(bundle, entry, settings, n):
    step = ReferenceStep(bundle, entry)
    return [generate_on(step, bundle.vocab, s, n) for s in settings]


def c_args(setting: Setting, vocab_size: int, n: int, prompt: str) -> list[str]:
    s = SamplingConfig(**setting.sampling)
    args = ["--repetition-penalty", repr(s.repetition_penalty),
            "--repetition-window", str(s.repetition_window)]
    if s.is_greedy:
        args += ["--greedy"]
    else:  # every option given: model.h's defaults are the bundle's sampling_defaults
        args += ["--seed", str(s.seed), "--temperature", repr(s.temperature),
                 "--top-k", str(s.top_k or vocab_size), "--top-p", repr(s.top_p or 1.0),
                 "--min-p", repr(s.min_p or 0.0), "--typical-p", repr(s.typical_p or 1.0)]
    return args + ["-n", str(n), "--", prompt]


def c_runtime(bundle, entry, settings, n, precision="float32"):
    from charwright.runtime.emit_c.project import emit

    if shutil.which("make") is None or shutil.which(os.environ.get("CC", "cc")) is None:
        raise NotRun("no C compiler / make")
    with tempfile.TemporaryDirectory(prefix="cw-cross-") as tmp:
        d = Path(tmp) / "c"
        emit(bundle.root, d, precision)
        r = subprocess.run(["make", "-s", "-C", str(d), "cw_generate"], capture_output=True,
                           text=True)
        if r.returncode:
            raise NotRun("make failed: " + (r.stderr.strip().splitlines() or ["?"])[-1])
        out = []
        for s in settings:
            prompt = prompt_for(bundle.vocab, s.prompt)
            r = subprocess.run([str(d / "cw_generate"),
                                *c_args(s, bundle.vocab_size, n, prompt)],
                               capture_output=True, timeout=600)
            text = r.stdout.decode("utf-8", "replace")
            if r.returncode or not text.startswith(prompt) or not text.endswith("\n"):
                raise NotRun(f"cw_generate failed: {r.stderr.decode().strip()[:100]}")
            out.append(text[len(prompt):-1])
        return out


RUNNERS = {"onnxruntime": python_runtime, "LiteRT": python_runtime, "numpy": python_runtime,
           "TFLite Micro": micro_runtime, "onnxruntime-web": web_runtime,
           "onnx.reference": reference_runtime,
           "C float32": c_runtime,
           "C int8": lambda b, e, s, n: c_runtime(b, e, s, n, precision="int8")}
BY_FORMAT = {"onnx": ("onnxruntime", "onnxruntime-web", "onnx.reference"),
             "tflite": ("LiteRT", "TFLite Micro"),
             "npz": ("numpy", "C float32", "C int8")}


# ---- the table ------------------------------------------------------------------------------

def measure(bundle, settings, n, runtimes=RUNTIMES, ort_web=None, log=print):
    """[(file label, runtime, texts or NotRun message)] for every file x runtime."""
    rows = []
    for entry in bundle.files:
        for rt in BY_FORMAT.get(entry.format, ()):
            if rt not in runtimes and rt != NATIVE[entry.format]:
                continue
            label = entry.path if rt != "C int8" else f"{entry.path} (emit-c int8)"
            log(f"  {label} on {rt} ...")
            try:
                kw = {"modules": ort_web} if rt == "onnxruntime-web" else {}
                rows.append((label, entry, rt, RUNNERS[rt](bundle, entry, settings, n, **kw)))
            except NotRun as e:
                rows.append((label, entry, rt, str(e)))
    return rows


def compare(texts, ref) -> str:
    if isinstance(texts, str):
        return "not run: " + texts
    if isinstance(ref, str) or ref is None:
        return "-"
    marks = [first_divergence(a, b) for a, b in zip(texts, ref)]
    same = sum(m is None for m in marks)
    return f"{same}/{len(marks)} same" + ("" if same == len(marks) else ": " + ", ".join(
        "same" if m is None else f"@{m}" for m in marks))


def report(rows) -> list[list[str]]:
    native = {e.path: t for _, e, rt, t in rows if rt == NATIVE[e.format]}
    numpy_ref = next((t for _, e, rt, t in rows if rt == "numpy"), None)
    out = []
    for label, e, rt, texts in rows:
        is_native = rt == NATIVE[e.format] and label == e.path
        vs_native = "(itself)" if is_native else compare(texts, native.get(e.path))
        if rt == "C int8":
            vs_native = "- (no other runtime reads this int8 form)"
        vs_numpy = "(itself)" if rt == "numpy" else compare(texts, numpy_ref)
        out.append([label, "int8 (emit-c)" if rt == "C int8" else e.precision, rt, vs_native,
                    vs_numpy])
    return out


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    vers = []
    for pkg in ("onnxruntime", "ai-edge-litert", "tflite-micro", "numpy"):
        try:
            vers.append(f"{pkg} {version(pkg)}")
        except PackageNotFoundError:
            pass
    for cmd, name in ((["node", "--version"], "node"), (["cc", "--version"], "cc")):
        try:
            first = subprocess.run(cmd, capture_output=True, text=True).stdout.splitlines()[0]
            vers.append(f"{name} {first}")
        except (OSError, IndexError):
            pass
    return ", ".join(vers)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle", nargs="?", default=str(DEMO_BUNDLE))
    ap.add_argument("--chars", type=int, default=300, help="characters per setting")
    ap.add_argument("--settings", type=int, default=len(SETTINGS), choices=range(1, 6),
                    help="how many of the five settings")
    ap.add_argument("--runtimes", nargs="+", choices=RUNTIMES, default=RUNTIMES,
                    help="the runtimes besides each file's native one")
    ap.add_argument("--ort-web", help="a folder whose node_modules holds onnxruntime-web")
    a = ap.parse_args(argv)
    try:
        bundle = load_bundle(a.bundle)
    except CharwrightError as e:
        print(f"cross_runtime: {e}", file=sys.stderr)
        return 1
    settings = SETTINGS[: a.settings]
    print(f"measuring {a.bundle}: {len(settings)} settings x {a.chars} characters",
          file=sys.stderr)
    rows = measure(bundle, settings, a.chars, a.runtimes, a.ort_web,
                   log=lambda m: print(m, file=sys.stderr))
    print(f"## Same text where: {a.bundle}\n\n{cpu_name()}; {versions()}\n")
    print("Settings (prompt, sampling), each " f"{a.chars} characters: " + "; ".join(
        f"{i + 1}. {prompt_for(bundle.vocab, s.prompt)!r} {s.name}"
        for i, s in enumerate(settings)) + ".\n")
    print(table(["file", "precision", "runtime", "vs the file's native runtime",
                 "vs numpy float32"], report(rows)))
    print("\n\"same\": identical text; \"@N\": the first N generated characters agree. Python "
          "rows run charwright's own loop; TFLite Micro, onnxruntime-web and onnx.reference "
          "compute the steps "
          "(onnxruntime-web in Node over a pipe) and charwright's sampler picks every id, so "
          "their text depends only on the runtime's logits; the C rows sample in C.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
