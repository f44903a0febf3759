"""Why a bundle's integer files give other text on other runtimes (issue 20 item 3): each step fed
the same inputs on two runtimes, the outputs compared bit for bit, and the first op whose bits
differ although its inputs are identical.

    python scripts/cross_runtime/explain.py [BUNDLE] [--steps 300] [--chars 300]

ONNX files: onnxruntime against onnxruntime-web (Node, WASM), per step and per op (every
intermediate tensor made a graph output), and per step against onnx's reference evaluator
(numpy, what a port that follows the graph op by op computes), then the same for the prototype of
exact_activations.py (Tanh and Sigmoid as an interpolated table of IEEE-exact ops), with its
parity against the probe and the five settings' text (as scripts/cross_runtime.py prints it).
Export now writes the int8 file with exact activations (export/formats/onnx_exact.py): on such
a file the prototype changes nothing; exact_candidates.py compares the methods from a file that
still has Tanh/Sigmoid.
TFLite files that TFLite Micro runs: LiteRT as charwright runs it (XNNPACK delegate), LiteRT's
built-in kernels without delegate, LiteRT's reference kernels and TFLite Micro, per step; per
op for the reference kernels against TFLite Micro, and each FULLY_CONNECTED output whose int32
accumulator rounds differently under one rounding (TFLITE_SINGLE_ROUNDING) and two
(gemmlowp's SaturatingRoundingDoublingHighMul, then RoundingDivideByPOT), recomputed here.
"""

from __future__ import annotations

import argparse
import base64
import collections
import hashlib
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
import cross_runtime as X  # noqa: E402
from exact_activations import rewrite  # noqa: E402

from charwright.runtime.backends import open_backend  # noqa: E402
from charwright.runtime.bundle.reader import load_bundle  # noqa: E402
from charwright.runtime.verify.parity import compare  # noqa: E402


STEP_HEAD = ("steps that differ", "max Δlogit", "max Δstate")


def per_step(a, b, tokens, state_size) -> list[str]:
    """Both step functions fed the same token and state (a's state carried on)."""
    st = np.zeros((1, state_size), np.float32)
    differ, dl, ds = 0, 0.0, 0.0
    for t in tokens:
        (la, sa), (lb, sb) = a(t, st), b(t, st)
        if not (np.array_equal(la, lb) and np.array_equal(sa, sb)):
            differ += 1
        dl = max(dl, float(np.abs(la - lb).max()))
        ds = max(ds, float(np.abs(sa - sb).max()))
        st = sa
    return [f"{differ}/{len(tokens)}", f"{dl:.3g}", f"{ds:.3g}"]


# ---- ONNX: onnxruntime against onnxruntime-web ----------------------------------------------

def all_outputs(data: bytes):
    """The model with every node output also a graph output, and the nodes in order."""
    import onnx
    from onnx import helper

    m = onnx.load_from_string(data)
    have = {o.name for o in m.graph.output}
    for n in m.graph.node:
        for o in n.output:
            if o and o not in have:
                m.graph.output.append(helper.make_empty_tensor_value_info(o))
                have.add(o)
    return m.SerializeToString(), list(m.graph.node)


def ops_that_differ(data: bytes, tokens, state_size, modules, tmp: Path) -> str:
    import onnxruntime as ort

    model, nodes = all_outputs(data)
    (tmp / "all.onnx").write_bytes(model)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    nat = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    names = [o.name for o in nat.get_outputs()]
    st, feeds, native = np.zeros((1, state_size), np.float32), [], []
    for t in tokens:
        f = {"token": np.array([t], np.int32), "state": st}
        feeds.append(f)
        native.append(dict(zip(names, nat.run(names, f))))
        st = native[-1]["new_state"]
    enc = {"steps": [{k: {"dtype": str(v.dtype), "shape": list(v.shape),
                          "data": base64.b64encode(v.tobytes()).decode()}
                      for k, v in f.items()} for f in feeds]}
    (tmp / "in.json").write_text(json.dumps(enc))
    subprocess.run(["node", str(HERE / "ort_web_outputs.cjs"), str(modules), str(tmp / "all.onnx"),
                    "all", str(tmp / "in.json"), str(tmp / "out.json")], check=True)
    web = json.loads((tmp / "out.json").read_text())
    count, worst = collections.Counter(), {}
    for nat_i, web_i in zip(native, web):
        w = {k: np.frombuffer(base64.b64decode(v["data"]), nat_i[k].dtype).reshape(v["dims"])
             for k, v in web_i.items()}
        for n in nodes:
            outs = [o for o in n.output if o and not np.array_equal(nat_i[o], w[o])]
            if outs and all(np.array_equal(nat_i[x], w[x]) for x in n.input if x in nat_i):
                count[n.op_type] += 1
                d = np.abs(nat_i[outs[0]].astype(np.float64) - w[outs[0]]).max()
                worst[n.op_type] = max(worst.get(n.op_type, 0.0), float(d))
    return ", ".join(f"{op} {c}x (max {worst[op]:.2g})" for op, c in count.most_common()) \
        or "none"


def onnx_rows(bundle, entry, tokens, modules, tmp: Path, label: str) -> list:
    nat = open_backend(bundle, entry)
    web = X.NodeStep(bundle, entry, modules)
    try:
        steps = per_step(lambda t, s: nat.step(np.array([t], np.int32), s),
                         lambda t, s: web.step(np.array([t], np.int32), s), tokens,
                         bundle.state_size)
    finally:
        web.close()
    ops = ops_that_differ(bundle.read(entry), tokens, bundle.state_size, modules, tmp)
    ref = reference_evaluator(bundle.read(entry))
    vs_ref = per_step(lambda t, s: nat.step(np.array([t], np.int32), s), ref, tokens,
                      bundle.state_size)[0] if ref else "onnx not installed"
    p = compare(nat, bundle.probe(), entry.path)
    return [label, *steps, ops, vs_ref, f"{p.top1:.2%}, {p.bpc_rel:+.2%}"]


def reference_evaluator(data: bytes):
    """onnx's own evaluator (numpy, op by op as the standard writes them) as a step function,
    or None without the onnx package (cross_runtime.reference_evaluator: opset 19, GatherElements
    over a table of any size)."""
    try:
        import onnx
        from onnx.reference import ReferenceEvaluator
    except ImportError:
        return None
    ev = X.reference_evaluator(onnx, ReferenceEvaluator, data)

    def step(t, st):
        return ev.run(["logits", "new_state"], {"token": np.array([t], np.int32), "state": st})
    return step


def with_rewritten(bundle, entry, tmp: Path, mode: str = "interpolate"):
    """A copy of the bundle whose `entry` file is exact_activations.rewrite of it."""
    d = tmp / f"rewritten-{mode}"
    shutil.copytree(bundle.root, d)
    data = rewrite(bundle.read(entry), mode)
    (d / entry.path).write_bytes(data)
    m = json.loads((d / "manifest.json").read_text())
    for f in m["files"]:
        if f["path"] == entry.path:
            f["sha256"], f["bytes"] = hashlib.sha256(data).hexdigest(), len(data)
    (d / "manifest.json").write_text(json.dumps(m, indent=1))
    b = load_bundle(d)
    return b, next(e for e in b.files if e.path == entry.path)


def onnx_section(bundle, tokens, settings, chars, modules) -> list[str]:
    rows, texts = [], []
    for entry in [e for e in bundle.files if e.format == "onnx"]:
        with tempfile.TemporaryDirectory(prefix="cw-explain-") as tmp:
            tmp = Path(tmp)
            rows.append(onnx_rows(bundle, entry, tokens, modules, tmp, entry.path))
            if not entry.precision.startswith("int8"):
                continue
            b2, e2 = with_rewritten(bundle, entry, tmp)
            rows.append(onnx_rows(b2, e2, tokens, modules, tmp,
                                  f"{entry.path}, exact activations (prototype)"))
            for b, e, label in ((bundle, entry, entry.path),
                                (b2, e2, f"{entry.path}, exact activations")):
                nat = X.python_runtime(b, e, settings, chars)
                web = X.web_runtime(b, e, settings, chars, modules)
                texts.append([label, X.compare(web, nat)])
    return [X.table(["file", *STEP_HEAD, "ops whose bits differ with identical inputs",
                     "steps that differ on onnx.reference (numpy)",
                     "probe: top-1, bits/char vs reference"],
                    rows), "",
            f"Text on onnxruntime-web against native onnxruntime, {len(settings)} settings x "
            f"{chars} characters:", "", X.table(["file", "onnxruntime-web vs onnxruntime"],
                                                texts), "",
            "The prototype's cost (onnxruntime, batch 1, one thread; median of 5 x 1,000 steps):",
            "", X.table(["file", "bytes", "probe: top-1", "bits/char vs reference", "µs/step"],
                        cost_rows(bundle))]


def cost_rows(bundle) -> list:
    rows = []
    for entry in [e for e in bundle.files if e.format == "onnx" and e.precision != "float32"]:
        with tempfile.TemporaryDirectory(prefix="cw-explain-") as tmp:
            for mode in (None, "interpolate", "nearest"):
                b, e = (bundle, entry) if mode is None else with_rewritten(bundle, entry,
                                                                           Path(tmp), mode)
                step = open_backend(b, e)
                p = compare(step, b.probe(), e.path)
                label = entry.path + ("" if mode is None else f", exact activations ({mode})")
                rows.append([label, f"{b.path(e).stat().st_size:,}", f"{p.top1:.2%}",
                             f"{p.bpc_rel:+.2%}", f"{microseconds_per_step(step):.1f}"])
    return rows


def microseconds_per_step(step) -> float:
    st, tok, runs = step.initial_state(1), np.array([1], np.int32), []
    for _ in range(200):
        _, st = step.step(tok, st)
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(1000):
            _, st = step.step(tok, st)
        runs.append((time.perf_counter() - t) * 1e3)
    return float(np.median(runs))


# ---- TFLite: LiteRT's kernels against TFLite Micro ------------------------------------------

def litert(data: bytes, kind: str, preserve=False):
    from ai_edge_litert import interpreter as interp

    it = interp.Interpreter(model_content=data, num_threads=1,
                            experimental_op_resolver_type=getattr(interp.OpResolverType, kind),
                            experimental_preserve_all_tensors=preserve)
    it.allocate_tensors()
    i, o = it.get_input_details(), it.get_output_details()  # the contract's order

    def step(t, st):
        it.set_tensor(i[0]["index"], np.array([t], np.int32))
        it.set_tensor(i[1]["index"], st)
        it.invoke()
        return it.get_tensor(o[0]["index"]).copy(), it.get_tensor(o[1]["index"]).copy()
    return it, step


def micro(data: bytes, preserve=False):
    from tflite_micro.python.tflite_micro import runtime as tflm

    cfg = tflm.InterpreterConfig.kPreserveAllTensors if preserve else \
        tflm.InterpreterConfig.kAllocationRecording
    it = tflm.Interpreter.from_bytes(data, arena_size=4 << 20, intrepreter_config=cfg)

    def step(t, st):
        it.set_input(np.array([t], np.int32), 0)
        it.set_input(st, 1)
        it.invoke()
        return it.get_output(0).copy(), it.get_output(1).copy()
    return it, step


def _multiplier(real: float) -> tuple[int, int]:
    m, e = math.frexp(real)
    q = int(round(m * (1 << 31)))
    return (q // 2, e + 1) if q == 1 << 31 else (q, e)


def _double_rounding(acc: int, q: int, shift: int) -> int:
    x = acc * (1 << max(shift, 0)) * q  # SaturatingRoundingDoublingHighMul (no saturation here)
    n = x + ((1 << 30) if x >= 0 else 1 - (1 << 30))
    x = n >> 31 if n >= 0 else -((-n) >> 31)  # integer division truncating toward zero
    e = max(-shift, 0)  # RoundingDivideByPOT
    mask = (1 << e) - 1
    return (x >> e) + ((x & mask) > (mask >> 1) + (x < 0))


def _single_rounding(acc: int, q: int, shift: int) -> int:
    total = 31 - shift
    return (acc * q + (1 << (total - 1))) >> total


def fc_rounding(it, op, tget) -> collections.Counter:
    """Each output of one FULLY_CONNECTED whose two roundings differ: which each runtime took."""
    td = {d["index"]: d["quantization_parameters"] for d in it.get_tensor_details()}
    xi, wi, bi = op["inputs"][:3]
    oi = op["outputs"][0]
    x, w = it.get_tensor(xi).astype(np.int64).reshape(-1), it.get_tensor(wi).astype(np.int64)
    acc = w @ (x - int(td[xi]["zero_points"][0])) + (it.get_tensor(bi) if bi >= 0 else 0)
    zo, so, sx = int(td[oi]["zero_points"][0]), float(td[oi]["scales"][0]), float(
        td[xi]["scales"][0])
    sw = td[wi]["scales"]
    lite, mic = it.get_tensor(oi).reshape(-1), tget(oi).reshape(-1)
    out = collections.Counter()
    for c, a in enumerate(acc.tolist()):
        q, sh = _multiplier(sx * float(sw[c if len(sw) > 1 else 0]) / so)
        one, two = (min(127, max(-128, f(a, q, sh) + zo)) for f in (_single_rounding,
                                                                    _double_rounding))
        if one != two:
            name = {one: "one rounding", two: "two roundings"}
            out[(name.get(int(lite[c]), "neither"), name.get(int(mic[c]), "neither"))] += 1
    return out


def tflite_ops(data: bytes, tokens, state_size) -> list[str]:
    it, ref = litert(data, "BUILTIN_REF", preserve=True)
    tm, mic = micro(data, preserve=True)
    ops = it._get_ops_details()

    def tget(k):
        return np.asarray(tm.GetTensor(k, 0)["tensor_data"]).reshape(it.get_tensor(k).shape)
    first, fc = collections.Counter(), collections.Counter()
    st = np.zeros((1, state_size), np.float32)
    for t in tokens:
        st_next, _ = ref(t, st)[1], mic(t, st)
        for op in ops:
            if any(not np.array_equal(it.get_tensor(k), tget(k)) for k in op["outputs"]):
                same_in = all(np.array_equal(it.get_tensor(k), tget(k))
                              for k in op["inputs"] if k >= 0)
                first[f"{op['op_name']}{'' if same_in else ' (inputs differ)'}"] += 1
                break
        for op in ops:
            x = op["inputs"][0]
            if (op["op_name"] == "FULLY_CONNECTED" and it.get_tensor(x).dtype == np.int8
                    and np.array_equal(it.get_tensor(x), tget(x))):
                fc.update(fc_rounding(it, op, tget))
        st = st_next
    fcs = "; ".join(f"{n} outputs: LiteRT {a}, TFLite Micro {b}" for (a, b), n in fc.items())
    return [", ".join(f"{k} {v}x" for k, v in first.items()) or "none",
            fcs or "no output where the roundings differ"]


def tflite_section(bundle, tokens) -> list[str]:
    rows, ops = [], []
    for e in bundle.files:
        if e.format != "tflite" or not (e.extra.get("micro") or {}).get("runs"):
            continue
        data = bundle.read(e)
        kernels = {"LiteRT (XNNPACK, as charwright runs it)": litert(data, "AUTO")[1],
                   "LiteRT built-in kernels": litert(data, "BUILTIN_WITHOUT_DEFAULT_DELEGATES")[1],
                   "LiteRT reference kernels": litert(data, "BUILTIN_REF")[1],
                   "TFLite Micro": micro(data)[1]}
        names = list(kernels)
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                rows.append([e.path, f"{a} vs {b}",
                             *per_step(kernels[a], kernels[b], tokens, bundle.state_size)])
        ops.append([e.path, *tflite_ops(data, tokens, bundle.state_size)])
    if not rows:
        return ["No .tflite file of this bundle runs under TFLite Micro."]
    return [X.table(["file", "runtimes", *STEP_HEAD], rows),
            "", "LiteRT reference kernels vs TFLite Micro, per op:", "",
            X.table(["file", "first op whose bits differ (steps)", "FULLY_CONNECTED int8 outputs "
                     "whose rounding decides"], ops)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle", nargs="?", default=str(X.DEMO_BUNDLE))
    ap.add_argument("--steps", type=int, default=300, help="probe tokens fed, one per step")
    ap.add_argument("--chars", type=int, default=300, help="characters per setting")
    ap.add_argument("--settings", type=int, default=5, choices=range(1, 6))
    ap.add_argument("--ort-web", help="a folder whose node_modules holds onnxruntime-web")
    a = ap.parse_args(argv)
    bundle = load_bundle(a.bundle)
    tokens = bundle.probe()["tokens"][: a.steps].astype(np.int32)
    print(f"## Why text differs between runtimes: {a.bundle}\n\n{X.cpu_name()}; {X.versions()}"
          f"\n\nEach step fed the same token and state on both runtimes ({len(tokens)} probe "
          "tokens; the first runtime's state carried on).\n")
    try:
        modules = X.ort_web_modules(a.ort_web)
        print("\n".join(onnx_section(bundle, tokens, X.SETTINGS[: a.settings], a.chars,
                                     modules)) + "\n")
    except X.NotRun as e:
        print(f"ONNX files: not run ({e})\n")
    print("\n".join(tflite_section(bundle, tokens)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
