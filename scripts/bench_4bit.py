"""4-bit weight quantization of a bundle's recurrent step model: size, parity and step time.

Rows (every one replays the same probe: teacher-forced, batch 1, state carried from zeros):
    reference   the bundle's float32 / int8-dynamic TFLite and int8-dynamic ONNX files, and the
                float32 ONNX the 4-bit ONNX rows are made from
    onnxruntime MatMulNBitsQuantizer (4 bits, symmetric, block 32 and 128) on the float32 ONNX;
                only the two MatMuls (recurrent kernel, dense) become MatMulNBits: the input
                table folded into the step graph is a Gather and stays float32 (--extra adds a
                row that also quantizes it, as GatherBlockQuantized, and one at accuracy_level 4)
    LiteRT      ai-edge-quantizer's dynamic_wi4_afp32 recipe (int4 channelwise weights) on the
                float32 TFLite, when ai-edge-quantizer is installed (--extra adds the 32-block
                recipe dynamic_wi4b32_afp32 and weight_only_wi4_afp32)

Columns: bytes of the file; max |Δlogit| and top-1 agreement with the probe's logits; bits/char
of the next probe token and its change relative to the probe's own bits/char; the first step of
the greedy continuation that differs from the probe's (— = none); median µs per step at batch 1
on one thread (onnxruntime intra_op_num_threads=1 with IO binding, LiteRT num_threads=1), timed
after a warm-up; the verdict under the project's tolerances (runtime/verify/parity.py): quantized files
need top-1 ≥ 97% and |Δ bits/char| ≤ 2%, float32 files max |Δlogit| ≤ 1e-4.

Where the float32 ONNX comes from, first that applies: the bundle's model.float32.onnx; --run's
step/saved_model (charwright.export.formats.onnx.convert_float32); the bundle's model.float32.tflite
through tf2onnx.convert.from_tflite. With --run and no bundle argument, every reference file is
converted from the run's SavedModel (charwright.export's converters) and the run's probe is used.
Converted and quantized files are written under a temporary folder in /tmp, removed at exit.

    python scripts/bench_4bit.py                          # runtime/demo
    python scripts/bench_4bit.py runtime/demo --run runs/gru512
    python scripts/bench_4bit.py --run runs/gru1024 --probe-tokens 500 --extra

onnxruntime's MatMulNBitsQuantizer imports onnx_ir (the onnx-ir package), which onnxruntime does
not declare as a dependency; without it the onnxruntime 4-bit rows say "not measured".
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
             "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_common import header, table  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "runtime" / "demo"
MIN_TOP1, MAX_BPC_REL, MAX_ABS_F32 = 0.97, 0.02, 1e-4  # runtime/verify/parity.py TOLERANCES
LN2 = math.log(2.0)


class Fail(Exception):
    """A row that could not be measured; the message goes into the table."""


def one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:160]


# ---------------------------------------------------------------- runners (batch 1, one thread)

class OrtRunner:
    def __init__(self, data: bytes):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.log_severity_level = 3
        self.sess = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
        ins, outs = self.sess.get_inputs(), self.sess.get_outputs()
        self.names_in = [i.name for i in ins]
        self.names_out = [o.name for o in outs]
        if self.names_in != ["token", "state"] or self.names_out != ["logits", "new_state"]:
            raise Fail(f"ONNX contract: inputs {self.names_in}, outputs {self.names_out}")
        self.state_size = int(ins[1].shape[1])

    def zeros(self):
        return np.zeros((1, self.state_size), np.float32)

    def step(self, tok: int, state):
        logits, new = self.sess.run(None, {"token": np.array([tok], np.int32), "state": state})
        return logits, new

    def time_steps(self, tokens, warmup: int) -> list[float]:
        """Per-step seconds; state ping-pongs between two bound buffers (no copies)."""
        import onnxruntime as ort

        vocab = self.sess.get_outputs()[0].shape[1]
        tok = ort.OrtValue.ortvalue_from_numpy(np.zeros(1, np.int32))
        st = [ort.OrtValue.ortvalue_from_numpy(self.zeros()) for _ in range(2)]
        lg = ort.OrtValue.ortvalue_from_numpy(np.zeros((1, int(vocab)), np.float32))
        binds = []
        for a, b in ((0, 1), (1, 0)):
            io = self.sess.io_binding()
            io.bind_ortvalue_input("token", tok)
            io.bind_ortvalue_input("state", st[a])
            io.bind_ortvalue_output("logits", lg)
            io.bind_ortvalue_output("new_state", st[b])
            binds.append(io)
        buf = np.zeros(1, np.int32)
        run, pc = self.sess.run_with_iobinding, time.perf_counter
        out = []
        for i, t in enumerate(tokens):
            buf[0] = t
            tok.update_inplace(buf)
            t0 = pc()
            run(binds[i & 1])
            out.append(pc() - t0)
        return out[warmup:]


class LiteRunner:
    def __init__(self, data: bytes):
        from ai_edge_litert.interpreter import Interpreter

        self.it = Interpreter(model_content=data, num_threads=1)
        self.it.allocate_tensors()
        ins, outs = self.it.get_input_details(), self.it.get_output_details()
        self.i_tok, self.i_st = ins[0]["index"], ins[1]["index"]
        self.o_lg, self.o_st = outs[0]["index"], outs[1]["index"]
        if len(ins[0]["shape"]) != 1 or len(ins[1]["shape"]) != 2 or ins[0]["dtype"] != np.int32:
            raise Fail(f"TFLite contract: inputs {[(d['name'], list(d['shape'])) for d in ins]}")
        self.state_size = int(ins[1]["shape"][1])

    def zeros(self):
        return np.zeros((1, self.state_size), np.float32)

    def step(self, tok: int, state):
        it = self.it
        it.set_tensor(self.i_tok, np.array([tok], np.int32))
        it.set_tensor(self.i_st, state)
        it.invoke()
        return it.get_tensor(self.o_lg), it.get_tensor(self.o_st)

    def time_steps(self, tokens, warmup: int) -> list[float]:
        """Per-step seconds of writing the inputs in place, invoke, reading the state back."""
        it = self.it
        tok_v, st_v, new_v = it.tensor(self.i_tok), it.tensor(self.i_st), it.tensor(self.o_st)
        st_v()[...] = 0.0
        pc, out = time.perf_counter, []
        for i, t in enumerate(tokens):
            t0 = pc()
            tok_v()[0] = t
            if i:
                st_v()[...] = new_v()
            it.invoke()
            out.append(pc() - t0)
        return out[warmup:]


def log_softmax(x):
    x = x.astype(np.float64)
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def bits_per_char(logits, tokens) -> float:
    lp = log_softmax(logits[:-1])
    return float(-lp[np.arange(len(tokens) - 1), tokens[1:]].mean() / LN2)


def measure(runner, probe: dict, timing_steps: int, warmup: int) -> dict:
    tokens, ref = probe["tokens"], probe["logits"]
    state, got = runner.zeros(), np.empty(ref.shape, np.float32)
    for i, t in enumerate(tokens):
        logits, state = runner.step(int(t), state)
        got[i] = logits[0]
    res = {"max_abs": float(np.abs(got.astype(np.float64) - ref).max()),
           "top1": float(np.mean(got.argmax(-1) == ref.argmax(-1))),
           "bpc": bits_per_char(got, tokens), "greedy": None}
    if "prompt" in probe and "greedy" in probe:
        state = runner.zeros()
        for t in probe["prompt"]:
            logits, state = runner.step(int(t), state)
        want = probe["greedy"]
        for i in range(len(want)):
            nxt = int(np.argmax(logits[0]))
            if nxt != int(want[i]):
                res["greedy"] = i
                break
            logits, state = runner.step(nxt, state)
    # timing: a steady token stream from the probe (cycled), after `warmup` untimed steps
    n = warmup + timing_steps
    stream = np.resize(probe["tokens_all"], n).astype(np.int32)
    res["us"] = float(np.median(runner.time_steps(stream, warmup))) * 1e6
    return res


# ---------------------------------------------------------------- model makers

def quiet_tf():
    import tensorflow as tf

    for name in ("tensorflow", "tf2onnx", "absl"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # already initialized
        pass
    return tf


def onnx_from_tflite(path: Path) -> bytes:
    quiet_tf()
    import tf2onnx

    from charwright.export.formats.onnx import OPSET, apply_contract

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        proto, _ = tf2onnx.convert.from_tflite(str(path), opset=OPSET)
    return apply_contract(proto.SerializeToString())


def onnx_from_saved_model(saved_model: Path, state_size: int) -> bytes:
    quiet_tf()
    from charwright.export.formats.onnx import convert_float32

    return convert_float32(str(saved_model), state_size)


def matmul_nbits(f32: bytes, block: int, accuracy_level=None, gather=False) -> bytes:
    import onnx

    try:
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
    except ImportError as e:
        raise Fail(f"onnxruntime's MatMulNBitsQuantizer does not import ({one_line(e)}; "
                   "pip install onnx-ir)") from None
    logging.getLogger("onnxruntime").setLevel(logging.ERROR)
    kw = {"op_types_to_quantize": ("MatMul", "Gather")} if gather else {}
    q = MatMulNBitsQuantizer(onnx.load_from_string(f32), bits=4, block_size=block,
                             is_symmetric=True, accuracy_level=accuracy_level, **kw)
    q.process()
    m = q.model.model
    ops = [n.op_type for n in m.graph.node]
    if "MatMulNBits" not in ops:
        raise Fail("the quantizer left no MatMulNBits node")
    if gather and "GatherBlockQuantized" not in ops:
        raise Fail("the quantizer left the Gather float")
    return m.SerializeToString()


def aeq(f32_tflite: bytes, recipe_name: str) -> bytes:
    try:
        from ai_edge_quantizer import quantizer, recipe
    except ImportError as e:
        raise Fail(f"ai-edge-quantizer not installed ({one_line(e)})") from None
    with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):  # it prints sizes
        warnings.simplefilter("ignore")
        q = quantizer.Quantizer(bytearray(f32_tflite), getattr(recipe, recipe_name)())
        out = q.quantize().quantized_model
    if out is None:
        raise Fail("ai-edge-quantizer returned no model")
    return bytes(out)


# ---------------------------------------------------------------- main

def die(msg: str):
    print(f"bench_4bit: error: {msg}", file=sys.stderr)
    sys.exit(2)


def load_probe(path: Path, cap: int | None) -> dict:
    try:
        with np.load(path) as z:
            p = {k: z[k] for k in z.files}
    except Exception as e:  # noqa: BLE001
        die(f"cannot read {path}: {one_line(e)}")
    if "tokens" not in p or "logits" not in p:
        die(f"{path} has no tokens/logits")
    p["tokens"] = p["tokens"].astype(np.int32)
    p["logits"] = p["logits"].astype(np.float32)
    p["tokens_all"] = p["tokens"]
    if cap:
        p["tokens"], p["logits"] = p["tokens"][:cap], p["logits"][:cap]
    return p


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description="4-bit weight quantization of a charwright bundle's step model (onnxruntime "
                    "MatMulNBits, ai-edge-quantizer int4) against the bundle's own files: size, "
                    "probe parity and µs/step at batch 1 on one thread, as a Markdown table.")
    ap.add_argument("bundle", nargs="?", type=Path,
                    help="bundle directory (default: runtime/demo, unless --run is given)")
    ap.add_argument("--run", type=Path, metavar="RUN_DIR",
                    help="training run whose step/saved_model gives the float32 models")
    ap.add_argument("--probe-tokens", type=int, default=0, metavar="N",
                    help="replay only the first N probe tokens (default: all)")
    ap.add_argument("--steps", type=int, default=400, help="timed steps per file (default 400)")
    ap.add_argument("--warmup", type=int, default=100, help="untimed steps first (default 100)")
    ap.add_argument("--blocks", default="32,128", help="MatMulNBits block sizes (default 32,128)")
    ap.add_argument("--extra", action="store_true",
                    help="also: MatMulNBits with the Gather quantized, accuracy_level 4, and the "
                         "ai-edge-quantizer recipes dynamic_wi4b32_afp32, weight_only_wi4_afp32")
    ap.add_argument("--keep", type=Path, metavar="DIR",
                    help="also copy every measured file into DIR (under /tmp)")
    a = ap.parse_args(argv)

    bundle = a.bundle if a.bundle is not None else (None if a.run else DEMO)
    if bundle is not None and not (bundle.is_dir() and (bundle / "probe.npz").is_file()):
        die(f"{bundle} is not a bundle directory (no probe.npz)")
    saved_model = None
    if a.run is not None:
        saved_model = a.run / "step" / "saved_model"
        if not (saved_model / "saved_model.pb").is_file():
            die(f"{a.run} has no step/saved_model (is the run finished?)")
        if not (a.run / "probe.npz").is_file():
            die(f"{a.run} has no probe.npz")
    try:
        blocks = [int(b) for b in a.blocks.split(",") if b.strip()]
    except ValueError:
        die(f"--blocks {a.blocks!r}: expected comma-separated integers")
    cap = a.probe_tokens if a.probe_tokens > 0 else None

    probe = load_probe((bundle or a.run) / "probe.npz", cap)
    if bundle is not None and a.run is not None:
        other = load_probe(a.run / "probe.npz", cap)
        if (not np.array_equal(other["tokens"], probe["tokens"])
                or np.abs(other["logits"] - probe["logits"]).max() > 1e-3):
            die(f"{a.run}'s probe differs from {bundle}'s: not the same model")
    if bundle is not None:
        try:
            manifest = json.loads((bundle / "manifest.json").read_text())
            state_size = int((manifest.get("state") or {}).get("size")
                             or manifest["state_size"])
        except Exception as e:  # noqa: BLE001
            die(f"{bundle}/manifest.json: no state size ({one_line(e)})")
    else:
        state_size = int(json.loads((a.run / "step" / "step.json").read_text())["state_size"])

    tmp = Path(tempfile.mkdtemp(prefix="cw_bench_4bit_", dir="/tmp"))
    rows, notes = [], []
    made: dict[str, bytes | Fail] = {}

    def make(key, fn):
        if key not in made:
            try:
                made[key] = fn()
            except Fail as e:
                made[key] = e
            except Exception as e:  # noqa: BLE001 - a converter failing is a row, not a crash
                made[key] = Fail(one_line(e))
        return made[key]

    def add(label, kind, runner_cls, key, fn, precision):
        data = make(key, fn)
        if isinstance(data, Fail):
            rows.append([label, "—", "—", "—", "—", "—", "—", "—", f"not measured: {data}"])
            return
        (tmp / key).write_bytes(data)
        try:
            r = measure(runner_cls(data), probe, a.steps, a.warmup)
        except Exception as e:  # noqa: BLE001
            rows.append([label, len(data), "—", "—", "—", "—", "—", "—",
                         f"not measured: {one_line(e)}"])
            return
        rel = (r["bpc"] - ref_bpc) / ref_bpc
        if precision == "float32":
            ok = r["max_abs"] <= MAX_ABS_F32
        else:
            ok = r["top1"] >= MIN_TOP1 and abs(rel) <= MAX_BPC_REL
        rows.append([f"{label} ({kind})", len(data), f"{r['max_abs']:.3g}", f"{r['top1']:.2%}",
                     f"{r['bpc']:.4f}", f"{rel:+.2%}",
                     "—" if r["greedy"] is None else r["greedy"], f"{r['us']:.1f}",
                     "pass" if ok else "FAIL"])

    ref_bpc = bits_per_char(probe["logits"], probe["tokens"])

    # --- sources
    def file_or_convert(name, conv):
        if bundle is not None:
            p = bundle / name
            if p.is_file():
                return p.read_bytes()
            raise Fail(f"{bundle} has no {name}")
        return conv()

    def tfl(precision):
        quiet_tf()
        from charwright.export.formats.tflite.convert import convert
        return convert(str(saved_model), precision)

    def f32_onnx():
        if bundle is not None and (bundle / "model.float32.onnx").is_file():
            notes.append(f"float32 ONNX: {bundle / 'model.float32.onnx'}")
            return (bundle / "model.float32.onnx").read_bytes()
        if saved_model is not None:
            notes.append(f"float32 ONNX: converted from {saved_model} (convert_float32)")
            return onnx_from_saved_model(saved_model, state_size)
        src = bundle / "model.float32.tflite"
        if not src.is_file():
            raise Fail(f"no float32 ONNX source ({bundle} has neither model.float32.onnx nor "
                       "model.float32.tflite; give --run)")
        notes.append(f"float32 ONNX: converted from {src} (tf2onnx.convert.from_tflite)")
        return onnx_from_tflite(src)

    def int8_onnx():
        def conv():
            from charwright.export.formats.onnx import quantize
            f32 = make("model.float32.onnx", f32_onnx)
            if isinstance(f32, Fail):
                raise f32
            return quantize(f32, "int8-dynamic")
        return file_or_convert("model.int8-dynamic.onnx", conv)

    src = "bundle" if bundle is not None else "converted"
    print("building files...", file=sys.stderr, flush=True)
    add("model.float32.tflite", src, LiteRunner, "model.float32.tflite",
        lambda: file_or_convert("model.float32.tflite", lambda: tfl("float32")), "float32")
    add("model.int8-dynamic.tflite", src, LiteRunner, "model.int8-dynamic.tflite",
        lambda: file_or_convert("model.int8-dynamic.tflite", lambda: tfl("int8-dynamic")),
        "int8-dynamic")
    add("model.float32.onnx", "4-bit source", OrtRunner, "model.float32.onnx", f32_onnx,
        "float32")
    add("model.int8-dynamic.onnx", src, OrtRunner, "model.int8-dynamic.onnx", int8_onnx,
        "int8-dynamic")

    def from_f32_onnx(fn):
        def go():
            f32 = make("model.float32.onnx", f32_onnx)
            if isinstance(f32, Fail):
                raise Fail(f"no float32 ONNX: {f32}")
            return fn(f32)
        return go

    variants = [(b, None, False) for b in blocks]
    if a.extra:
        variants += [(blocks[0] if blocks else 32, 4, False), (blocks[0] if blocks else 32, None, True)]
    for b, level, gather in variants:
        label = f"MatMulNBits 4-bit sym, block {b}"
        label += f", accuracy_level {level}" if level is not None else ""
        label += ", + Gather (GatherBlockQuantized)" if gather else ""
        key = f"model.q4b{b}" + (f".acc{level}" if level is not None else "") + \
            (".gather" if gather else "") + ".onnx"
        add(label, "onnxruntime", OrtRunner, key,
            from_f32_onnx(lambda f32, b=b, level=level, gather=gather:
                          matmul_nbits(f32, b, level, gather)), "int4")

    recipes = ["dynamic_wi4_afp32"]
    if a.extra:
        recipes += ["dynamic_wi4b32_afp32", "weight_only_wi4_afp32"]
    for name in recipes:
        def go(name=name):
            f32 = make("model.float32.tflite",
                       lambda: file_or_convert("model.float32.tflite", lambda: tfl("float32")))
            if isinstance(f32, Fail):
                raise Fail(f"no float32 TFLite: {f32}")
            return aeq(f32, name)
        add(f"ai-edge-quantizer {name}", "LiteRT", LiteRunner, f"model.aeq.{name}.tflite", go,
            "int4")

    if a.keep is not None:
        a.keep.mkdir(parents=True, exist_ok=True)
        for p in tmp.iterdir():
            shutil.copy2(p, a.keep / p.name)
    shutil.rmtree(tmp, ignore_errors=True)

    where = f"bundle {bundle}" if bundle is not None else f"run {a.run}"
    if bundle is not None and a.run is not None:
        where += f", run {a.run}"
    print(header(f"4-bit weights: {where}", 1))
    print(f"probe: {len(probe['tokens'])} tokens teacher-forced (batch 1, state from zeros), "
          f"reference bits/char {ref_bpc:.4f}; timing: median of {a.steps} steps after "
          f"{a.warmup} warm-up; state size {state_size}")
    for n in notes:
        print(f"{n}")
    print()
    print(table(["file / method", "bytes", "max abs Δlogit", "top-1", "bits/char",
                 "Δ bits/char", "greedy 1st diff", "µs/step", "verdict"], rows))
    print("\nverdict: quantized needs top-1 ≥ 97% and |Δ bits/char| ≤ 2%; float32 needs "
          "max |Δlogit| ≤ 1e-4 (runtime/verify/parity.py)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
