"""Per-character generation time, one thread: every backend and precision, against baselines.

For each model size (the TF tutorial's GRU 1024 / embedding 256 / 65 symbols, built by the real
train + export pipeline from a few steps of training, and the demo model) and each file:
  - bare step: the backend's step call alone, batch 1 (median, p90 over repeats);
  - whole loop per character, sampling included, for greedy, temperature, top-k, top-p, min-p;
  - loop cost = whole loop - bare step (the sampling loop's own cost), and loop / bare step for
    every sampler (issue 21's target: at most 1.25x);
  - batched throughput at batch 1, 8, 32, 64 (chars/s over all rows), and for float32 the share
    of one core's matmul peak (measured in the same run with a 1024^3 float32 GEMM).
Baselines in the same run: the tutorial recipe (re-running the Keras model over a 100-character
prefix for each character) and the tutorial's tf.function one-step model (OneStep).

    python scripts/bench_generate.py                  # tutorial size + demo, ~5 minutes
    python scripts/bench_generate.py --sizes demo --chars 500
    python scripts/bench_generate.py --files all      # every file of each bundle
    python scripts/bench_generate.py --onnx-int8      # ONNX int8 per tensor vs per row (issue 20)

--files picks the files timed (default: LiteRT int8 and int8-dynamic, and the ONNX file that
`charwright generate --backend onnx` loads): FORMAT (the file charwright picks for it) or
FORMAT:PRECISION, comma-separated; one a bundle lacks is left out with a note.
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")  # one thread, numpy included (before numpy is imported)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_common import SAMPLERS, header, stats, table  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "data" / "tinyshakespeare.txt"
from charwright.runtime.backends import BY_FORMAT  # noqa: E402

BACKEND_OF = {fmt: spec.name for fmt, spec in BY_FORMAT.items()}


SIZES = {"tutorial": (1024, 256), "gru256": (256, 64)}


def built_bundle(work: Path, size: str) -> Path:
    """A GRU of the given size on tinyshakespeare's 65 symbols, via train + export (cached).
    A few training steps only: the weights are all but untrained, the shapes are real."""
    units, emb = SIZES[size]
    bundle = work / f"{size}_bundle"
    if (bundle / "manifest.json").is_file():
        return bundle
    from charwright.export.writer import export
    from charwright.trainer import ModelConfig, TrainConfig
    from charwright.trainer.train import train

    text = CORPUS.read_text(encoding="utf-8")
    corpus = work / "tutorial_corpus.txt"
    # every symbol of the full corpus in a short slice: the vocabulary stays 65
    corpus.write_text(text[:60_000] + "".join(sorted(set(text))), encoding="utf-8")
    run = work / f"{size}_run"
    train([corpus], run, ModelConfig("gru", 1, units, emb),
          TrainConfig(seq_len=100, batch_size=32, epochs=1, probe_chars=300, greedy_chars=50,
                      sample_chars=0), force=run.exists())
    export(run, bundle, force=True, allow_mismatch=True)
    return bundle


def pick_files(b, spec: str) -> tuple[list, list]:
    """(entries to time, notes on those the bundle lacks) for --files."""
    if spec == "all":
        return list(b.files), []
    out, notes = [], []
    for item in spec.split(","):
        fmt, _, precision = item.strip().partition(":")
        try:
            e = b.find(fmt, precision or None)
        except Exception as ex:  # noqa: BLE001 - a file this bundle has not: noted, not fatal
            notes.append(f"{item}: not in this bundle ({str(ex).splitlines()[0]})")
            continue
        if all(e.path != o.path for o in out):
            out.append(e)
    return out, notes


def bench_file(bundle: Path, entry, chars: int, repeats: int, batches) -> dict:
    from charwright.runtime import SamplingConfig, load

    m = load(bundle, backend=BACKEND_OF[entry.format], precision=entry.precision, threads=1)
    be = m.backend
    tok = np.array([m.vocab.encode("e")[0]], np.int32)
    state = be.initial_state(1)
    for _ in range(50):
        be.step(tok, state)
    bare = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        s = state
        for _ in range(chars):
            _, s = be.step(tok, s)
        bare.append((time.perf_counter() - t0) / chars)
    out = {"file": entry.path, "bare": stats(bare), "loop": {}, "batch": {}}
    for name, kw in SAMPLERS.items():
        runs = []
        for r in range(repeats + 1):
            cfg = SamplingConfig(seed=r, **kw)
            t0 = time.perf_counter()
            n = sum(len(c) for c in m.stream("ROMEO:", chars, cfg))
            dt = time.perf_counter() - t0
            if r:  # the first run warms up
                runs.append(dt / max(n, 1))
        out["loop"][name] = stats(runs)
    for b in batches:
        cfg = SamplingConfig(seed=0, temperature=0.8)
        n = max(20, chars // 4)
        m.generate_batch(["ROMEO:"] * b, 5, cfg)
        t0 = time.perf_counter()
        texts = m.generate_batch(["ROMEO:"] * b, n, cfg)
        out["batch"][b] = sum(len(t) for t in texts) / (time.perf_counter() - t0)
    return out


def loop_cost(bundle: Path, chars: int, repeats: int) -> dict:
    """The sampling loop's own cost per character over a null step (bench_loop.py's)."""
    from bench_loop import null_model, per_char

    m, cfg, null = null_model("charwright.runtime")
    out = {}
    for name, kw in SAMPLERS.items():
        runs = [per_char(m, cfg, null, kw, chars * 4, seed=r) for r in range(repeats + 1)]
        out[name] = stats(runs[1:])  # the first run warms up
    return out


def matmul_peak() -> dict:
    """One thread's float32 matmul rate in GFLOP/s at the batch-64 shape of the tutorial step
    ([64, 1024] x [1024, 3072]), by each kernel at hand; the best is the peak the batched
    tables compare with (numpy's OpenBLAS is not the fastest kernel on every CPU)."""
    a = np.random.rand(64, 1024).astype(np.float32)
    b = np.random.rand(1024, 3072).astype(np.float32)
    flops = 2 * 64 * 1024 * 3072
    rates = {"numpy": flops / min(_timed(lambda: a @ b) for _ in range(30)) / 1e9}
    try:  # onnxruntime's MLAS through a one-node MatMul model
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper

        g = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "mm",
                              [helper.make_tensor_value_info("a", TensorProto.FLOAT, [64, 1024])],
                              [helper.make_tensor_value_info("c", TensorProto.FLOAT, [64, 3072])],
                              [numpy_helper.from_array(b, "b")])
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        sess = ort.InferenceSession(helper.make_model(g).SerializeToString(), so,
                                    providers=["CPUExecutionProvider"])
        sess.run(None, {"a": a})
        rates["onnxruntime"] = flops / min(_timed(lambda: sess.run(None, {"a": a}))
                                           for _ in range(30)) / 1e9
    except ImportError:
        pass
    try:  # LiteRT's XNNPACK through a one-layer FULLY_CONNECTED model
        import tensorflow as tf
        from ai_edge_litert.interpreter import Interpreter

        fn = tf.function(lambda x: tf.matmul(x, tf.constant(b)),
                         input_signature=[tf.TensorSpec([64, 1024], tf.float32)])
        conv = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn)
        it = Interpreter(model_content=conv.convert(), num_threads=1)
        it.allocate_tensors()
        i_in, i_out = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]

        def run():
            it.set_tensor(i_in, a)
            it.invoke()
            return it.get_tensor(i_out)

        run()
        rates["litert"] = flops / min(_timed(run) for _ in range(30)) / 1e9
    except ImportError:
        pass
    best = max(rates, key=rates.get)
    return {"rates": rates, "best": best, "peak": rates[best]}


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def tutorial_baselines(bundle: Path, chars: int) -> dict:
    """The tutorial's two generation recipes, on the same weights (from the bundle's numpy file)."""
    import tensorflow as tf

    from charwright.runtime.bundle.reader import load_bundle

    b = load_bundle(bundle)
    arch = b.manifest["architecture"]
    V, H, E = arch["vocab_size"], arch["units"], arch["embedding_dim"]
    with np.load(bundle / "weights.npz") as z:
        w = {k: z[k] for k in z.files}
    emb = tf.keras.layers.Embedding(V, E)
    gru = tf.keras.layers.GRU(H, return_sequences=True, return_state=True)
    dense = tf.keras.layers.Dense(V)
    inp = tf.keras.Input((None,), dtype="int32")
    x, st = gru(emb(inp))
    model = tf.keras.Model(inp, [dense(x), st])
    emb.set_weights([w["embedding"]])
    gru.set_weights([w["layer0.kernel"], w["layer0.recurrent_kernel"], w["layer0.bias"]])
    dense.set_weights([w["dense.kernel"], w["dense.bias"]])
    rng = np.random.default_rng(0)
    prefix = list(rng.integers(0, V, 100))
    # recipe 1 (textgenrnn-style, what the tutorial warns against): re-run over the prefix
    times = []
    for i in range(6):
        t0 = time.perf_counter()
        logits, _ = model(np.array([prefix[-100:]], np.int32), training=False)
        z = logits[0, -1].numpy() / 0.8
        p = np.exp(z - z.max())
        prefix.append(int(rng.choice(V, p=p / p.sum())))
        if i:
            times.append(time.perf_counter() - t0)
    recipe = stats(times)

    # recipe 2: the tutorial's OneStep: tf.function over one char with explicit state
    @tf.function
    def generate_one_step(ids, states):
        x = emb(ids)
        x, states = gru(x, initial_state=states)
        logits = dense(x)[:, -1, :] / 0.8
        nxt = tf.random.categorical(logits, num_samples=1)
        return tf.squeeze(nxt, -1), states

    ids = tf.constant([[5]], tf.int32)
    states = tf.zeros([1, H])
    for _ in range(20):
        nxt, states = generate_one_step(ids, states)
    times = []
    for _ in range(chars):
        t0 = time.perf_counter()
        nxt, states = generate_one_step(tf.reshape(tf.cast(nxt, tf.int32), [1, 1]), states)
        times.append(time.perf_counter() - t0)
    return {"recipe": recipe, "one_step": stats(times)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="tutorial,gru256,demo")
    ap.add_argument("--demo-bundle", type=Path, default=None,
                    help="bundle for the 'demo' size (default: the one shipped in the package)")
    ap.add_argument("--work", type=Path, default=REPO / ".bench")
    ap.add_argument("--chars", type=int, default=400, help="characters per timed run")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batches", default="1,8,32,64")
    ap.add_argument("--files", default="tflite:int8,tflite:int8-dynamic,onnx",
                    help="files to time: 'all', or FORMAT[:PRECISION],... (see above)")
    ap.add_argument("--threads", type=int, default=1, help="only 1 is supported")
    ap.add_argument("--no-baselines", action="store_true")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--onnx-int8", action="store_true",
                    help="only ONNX int8 per tensor vs per row (scripts/bench_onnx_int8.py) at "
                         "--sizes (default here: demo,tutorial)")
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    if a.onnx_int8:  # issue 20: parity, bytes, µs/step and batch invariance of the int8 file
        from bench_onnx_int8 import run

        sizes = a.sizes if a.sizes != ap.get_default("sizes") else "demo,tutorial"
        return run(sizes, a.work, a.chars, a.repeats)
    batches = [int(x) for x in a.batches.split(",")]
    if "tutorial" in a.sizes:  # TensorFlow's threads must be set before it first runs
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    from charwright.runtime.bundle.reader import load_bundle
    from charwright.runtime.model import DEMO_BUNDLE

    mm = matmul_peak()
    peak = mm["peak"]
    results = {"matmul_peak": mm, "sizes": {}}
    print(header("Generation, per character", 1), flush=True)
    print("One core's float32 matmul rate at the batch-64 step shape (64x1024 @ 1024x3072): "
          + ", ".join(f"{k} {v:.1f}" for k, v in mm["rates"].items())
          + f" GFLOP/s; the peak below is the best, {mm['best']}'s {peak:.1f}\n")
    lc = loop_cost(DEMO_BUNDLE if not a.demo_bundle else a.demo_bundle, a.chars, a.repeats)
    results["loop_cost"] = lc
    targets = {"greedy": 3, "temperature 0.8": 6, "top-k 40": 12, "top-p 0.9": 12, "min-p 0.05": 12}
    print("### The loop's own cost per character (a null step: everything but the step call)\n")
    print(table(["sampler", "µs/char median", "p90", "target"],
                [[k, f"{v[0]:.2f}", f"{v[1]:.2f}",
                  f"≤ {targets[k]}" if k in targets else "-"] for k, v in lc.items()]))
    print(flush=True)
    for size in a.sizes.split(","):
        bundle = built_bundle(a.work, size) if size in SIZES else (a.demo_bundle or DEMO_BUNDLE)
        b = load_bundle(bundle)
        arch = b.manifest["architecture"]
        H, V = arch["units"], arch["vocab_size"]
        G, L = {"gru": 3, "lstm": 4, "rnn": 1}[arch["cell"]], arch["layers"]
        # per character: recurrent matmuls, input matmuls of layers > 0 (layer 0's is a
        # gather from the folded table), and the dense layer
        flops = 2 * G * H * H * (2 * L - 1) + 2 * H * V
        entries, missing = pick_files(b, a.files)
        res = [bench_file(bundle, e, a.chars, a.repeats, batches) for e in entries]
        base = None if a.no_baselines or size != "tutorial" else tutorial_baselines(bundle, 200)
        results["sizes"][size] = {"files": res, "baselines": base, "architecture": arch}
        title = (f"### {size}: {arch['cell'].upper()} {arch['units']}, embedding "
                 f"{arch['embedding_dim']}, {V} symbols ({bundle})")
        print(title + "\n")
        rows = []
        if base:
            rows.append(["TF tutorial recipe (Keras over a 100-char prefix), temperature", "-",
                         "-", f"{base['recipe'][0]:,.0f} (p90 {base['recipe'][1]:,.0f})", "-",
                         "-", "-"])
            rows.append(["TF tutorial OneStep (tf.function), temperature", "-", "-",
                         f"{base['one_step'][0]:,.1f} (p90 {base['one_step'][1]:,.1f})", "-",
                         "-", "-"])
        for r in res:
            bare = r["bare"][0]
            cells = [f"{r['loop'][k][0]:.1f} (+{r['loop'][k][0] - bare:.1f})" for k in SAMPLERS]
            rows.append([r["file"], f"{bare:.1f} / {r['bare'][1]:.1f}"] + cells)
        print(table(["file", "bare step µs (median / p90)"] + [f"{k} µs/char (minus bare)"
                                                             for k in SAMPLERS], rows))
        print()
        for note in missing:
            print(f"- {note}")
        print("\nWhole loop / bare step (medians; target ≤ 1.25x):\n")
        rows = []
        for r in res:
            ratios = [r["loop"][k][0] / r["bare"][0] for k in SAMPLERS]
            rows.append([r["file"], f"{r['bare'][0]:.1f}"] + [f"{x:.2f}x" for x in ratios]
                        + [f"{max(ratios):.2f}x", "yes" if max(ratios) <= 1.25 else "no"])
        print(table(["file", "bare step µs"] + list(SAMPLERS) + ["worst", "all ≤ 1.25x"], rows))
        print()
        rows = []
        for r in res:
            c = r["batch"]
            row = [r["file"]] + [f"{c[bb]:,.0f}" for bb in batches]
            row.append(f"{c[batches[-1]] / c[batches[0]]:.1f}x")
            is_float = any(p in r["file"] for p in ("float32", "float16", "weights"))
            row.append(f"{c[batches[-1]] * flops / 1e9 / peak:.0%}" if is_float else
                       "n/a (int8 kernels)")
            rows.append(row)
        print(table(["file"] + [f"batch {bb} chars/s" for bb in batches]
                    + [f"batch {batches[-1]} / batch {batches[0]}", "share of matmul peak"],
                    rows))
        print()
    if a.json:
        a.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
