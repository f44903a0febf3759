"""The emitted C runtime (`charwright emit-c`) against the Python backends, and on Cortex-M4.

One thread, one run. Host: the C float32 and int8 builds' bare step, whole loop (greedy, top-p
0.9 at temperature 0.8; emit only counts characters) and sampler alone, in µs per character,
beside the same bundle's numpy, ONNX and LiteRT files (bare step, greedy and top-p loops), at
the GRU 256, demo (GRU 512 / embedding 64) and tutorial (GRU 1024 / embedding 256) sizes. The C
numbers come from `cw_bench --bench` (make cw_bench), which times N steps, N characters of the
generate loop and N sampler calls with clock() inside one process (no start-up in them).
Cortex-M4 (qemu-system-arm -icount shift=0, SysTick: one tick per 40 instructions, exact and
repeatable): flash (text + data) and RAM (bss + the stack's high-water mark) of
cw_generate-m4.elf, the code beyond the weights, and instructions per character, for a GRU 128,
an LSTM 128 and the demo-size GRU 512, float32 and int8, beside TFLite Micro's arena for the
same bundle's model.float32.tflite / model.int8.tflite (smallest arena that invokes, probed in
subprocesses).

Bundles are built once by train + export (a few steps: weights all but untrained, shapes real)
and cached in .bench/ (tutorial_bundle and gru256_bundle are bench_generate.py's).

    python scripts/bench_c.py                          # everything, ~5-8 minutes on 1 core
    python scripts/bench_c.py --host-sizes gru256 --no-m4 --repeats 3
    python scripts/bench_c.py --no-host --m4-models gru128
    python scripts/bench_c.py --only-targets            # one table: x86 scalar / SIMD, AArch64
                                                        # (qemu), Cortex-M4 (DSP, scalar), WASM
    python scripts/bench_c.py --quick                   # that table for a hand-made GRU 128
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")  # one thread, numpy included (before numpy is imported)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_common import header, stats, table  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "data" / "tinyshakespeare.txt"
# name -> (cell, units, embedding); tutorial / gru256 are bench_generate.py's (same cache names)
MODELS = {"tutorial": ("gru", 1024, 256), "gru256": ("gru", 256, 64),
          "demo": ("gru", 512, 64), "gru128": ("gru", 128, 64), "lstm128": ("lstm", 128, 64)}
PROMPT = "ROMEO:"
SAMPLERS = {"greedy": ["--greedy"], "top-p 0.9": ["--temperature", "0.8", "--top-p", "0.9"]}
PY_SAMPLERS = {"greedy": dict(greedy=True), "top-p 0.9": dict(temperature=0.8, top_p=0.9)}
QEMU = ["qemu-system-arm", "-M", "mps2-an386", "-cpu", "cortex-m4", "-nographic", "-monitor",
        "none", "-serial", "none", "-icount", "shift=0"]
INSTR_PER_TICK = 40  # SysTick at 25 MHz, one instruction per ns under -icount shift=0


def built_bundle(work: Path, name: str) -> Path:
    cell, units, emb = MODELS[name]
    bundle = work / f"{name}_bundle"
    if (bundle / "manifest.json").is_file():
        return bundle
    from charwright.export.writer import export
    from charwright.trainer import ModelConfig, TrainConfig
    from charwright.trainer.train import train

    corpus = work / "tutorial_corpus.txt"
    if not corpus.is_file():
        text = CORPUS.read_text(encoding="utf-8")
        corpus.write_text(text[:60_000] + "".join(sorted(set(text))), encoding="utf-8")
    run = work / f"{name}_run"
    train([corpus], run, ModelConfig(cell, 1, units, emb),
          TrainConfig(seq_len=100, batch_size=32, epochs=1, probe_chars=300, greedy_chars=50,
                      sample_chars=0), force=run.exists())
    export(run, bundle, force=True, allow_mismatch=True)
    return bundle


def c_project(work: Path, name: str, precision: str, targets) -> Path:
    """emit-c of the cached bundle into .bench/c/NAME-PRECISION, then make TARGETS."""
    from charwright.runtime.emit_c.project import emit

    d = work / "c" / f"{name}-{precision}"
    bundle = built_bundle(work, name)
    stamp = d / "bundle.sha"
    sha = (bundle / "manifest.json").read_bytes()
    from charwright.runtime.emit_c.project import COPIED

    src = [REPO / "runtime" / "c" / f for f in COPIED]
    if not (stamp.is_file() and stamp.read_bytes() == sha and all(
            (d / f.name).read_bytes() == f.read_bytes() for f in src)):
        emit(bundle, d, precision)
        stamp.write_bytes(sha)
    (d / "bench.mk").write_text(BENCH_MK)
    r = subprocess.run(["make", "-s", "-C", str(d), "-f", "Makefile", "-f", "bench.mk", *targets],
                       capture_output=True, text=True, timeout=600)
    if r.returncode:
        raise RuntimeError(f"make {' '.join(targets)} in {d}: {(r.stderr or r.stdout)[-2000:]}")
    return d


# builds of the table of targets beside the project Makefile's own (its flags, its variables)
BENCH_MK = """
cw_bench-aarch64-scalar: runtime.c model.h $(KERNELS)
	$(AARCH64_CC) $(CW_FLAGS) $(CFLAGS) $(AARCH64_ARCH) -DCW_SCALAR -static -DCW_BENCH -o $@ runtime.c -lm
cw_bench-m4-scalar.elf: runtime.c model.h m4_bench_start.o m4.ld $(KERNELS)
	$(ARM_CC) $(ARM_FLAGS) $(CW_FLAGS) -DCW_SCALAR -DCW_BENCH -DCW_BENCH_M4 -o $@ runtime.c \
	    m4_bench_start.o $(ARM_LDFLAGS) -lm
obj-native.o: runtime.c model.h $(KERNELS)
	$(CC) $(CW_FLAGS) $(CFLAGS) $(CW_ARCH) -c -o $@ runtime.c
obj-scalar.o: runtime.c model.h $(KERNELS)
	$(CC) $(CW_FLAGS) $(CFLAGS) -DCW_SCALAR -c -o $@ runtime.c
obj-aarch64.o: runtime.c model.h $(KERNELS)
	$(AARCH64_CC) $(CW_FLAGS) $(CFLAGS) $(AARCH64_ARCH) -c -o $@ runtime.c
"""


def parse_bench(out: str) -> dict:
    """cw_bench's line -> per-character costs in µs (host) or ticks (M4), and the stack."""
    m = re.search(r"bench ticks_per_s (\d+) ids (\d+) steps (\d+) (\d+) chars (\d+) (\d+) "
                  r"samples (\d+) (\d+) checksum -?\d+(?: stack (\d+))?", out)
    if not m:
        raise RuntimeError(f"no bench line in: {out!r}")
    tps, ids, steps, t_step, chars, t_loop, samples, t_sample = (int(x) for x in m.groups()[:8])
    step = t_step / steps
    # the loop primes the prompt's ids (ids steps) and then steps chars - 1 times
    loop = (t_loop - step * (ids - 1)) / max(chars, 1)
    return {"tps": tps, "step": step, "loop": loop, "sample": t_sample / max(samples, 1),
            "chars": chars, "stack": int(m.group(9)) if m.group(9) else None}


def run_c_host(d: Path, sampler: str, n: int, seed: int) -> dict:
    out = subprocess.run([str(d / "cw_bench"), "--bench", "-n", str(n), "--seed", str(seed),
                          *SAMPLERS[sampler], PROMPT], capture_output=True, text=True,
                         check=True, timeout=600).stdout
    r = parse_bench(out)
    k = 1e6 / r["tps"]
    return {key: r[key] * k for key in ("step", "loop", "sample")}


def py_subjects(bundle: Path):
    from charwright.runtime import load
    from charwright.runtime.backends import BY_FORMAT
    from charwright.runtime.bundle.reader import load_bundle

    backend_of = {fmt: spec.name for fmt, spec in BY_FORMAT.items()}
    out = {}
    for e in load_bundle(bundle).files:
        if e.format in ("npz", "onnx", "tflite") and e.precision != "float16":
            out[e.path] = load(bundle, backend=backend_of[e.format], precision=e.precision,
                               threads=1)
    return out


def run_py(m, chars: int, seed: int) -> dict:
    from charwright.runtime import SamplingConfig

    be = m.backend
    tok = np.array([m.vocab.encode("e")[0]], np.int32)
    s = be.initial_state(1)
    t0 = time.perf_counter()
    for _ in range(chars):
        _, s = be.step(tok, s)
    out = {"step": (time.perf_counter() - t0) / chars * 1e6}
    for name, kw in PY_SAMPLERS.items():
        t0 = time.perf_counter()
        n = sum(len(c) for c in m.stream(PROMPT, chars, SamplingConfig(seed=seed, **kw)))
        out[name] = (time.perf_counter() - t0) / max(n, 1) * 1e6
    return out


def host_size(work: Path, name: str, chars: int, py_chars: int, repeats: int) -> dict:
    """Interleaved rounds (round 0 warms up) of every C build and Python file of one size."""
    cdirs = {p: c_project(work, name, p, ["cw_bench"]) for p in ("float32", "int8")}
    pys = py_subjects(built_bundle(work, name))
    res = {f"C {p}": {s: [] for s in SAMPLERS} for p in cdirs}
    res.update({f: [] for f in pys})
    for r in range(repeats + 1):
        for p, d in cdirs.items():
            for s in SAMPLERS:
                x = run_c_host(d, s, chars, seed=r)
                if r:
                    res[f"C {p}"][s].append(x)
        for f, m in pys.items():
            x = run_py(m, py_chars, seed=r)
            if r:
                res[f].append(x)
    return res


def host_tables(sizes: dict, chars: int, py_chars: int) -> str:
    out = []
    for name, res in sizes.items():
        cell, units, emb = MODELS[name]
        out.append(f"### {name}: {cell.upper()} {units}, embedding {emb}, 65 symbols\n")
        out.append(f"C: {chars} steps / characters / sampler calls per run (cw_bench --bench); "
                   f"Python: {py_chars} per run. µs per character, median (p90) over the "
                   "rounds; loop = the whole generate loop, step and sampling included.\n")
        rows = []
        fmt = "{:.2f} ({:.2f})".format
        for subj, v in res.items():
            if subj.startswith("C "):
                g, t = v["greedy"], v["top-p 0.9"]
                step = stats([x["step"] * 1e-6 for x in g + t])
                lg = stats([x["loop"] * 1e-6 for x in g])
                lt = stats([x["loop"] * 1e-6 for x in t])
                sg = stats([x["sample"] * 1e-6 for x in g])
                st = stats([x["sample"] * 1e-6 for x in t])
                rows.append([subj + " (emit-c)", fmt(*step), fmt(*lg), fmt(*lt),
                             f"{lt[0] - lg[0]:.2f}", f"{sg[0]:.3f} / {st[0]:.3f}"])
            else:
                step = stats([x["step"] * 1e-6 for x in v])
                lg = stats([x["greedy"] * 1e-6 for x in v])
                lt = stats([x["top-p 0.9"] * 1e-6 for x in v])
                rows.append([subj, fmt(*step), fmt(*lg), fmt(*lt), f"{lt[0] - lg[0]:.2f}", "-"])
        out.append(table(["subject", "bare step", "loop greedy", "loop top-p 0.9",
                          "top-p - greedy", "sampler alone greedy / top-p"], rows))
        out.append("")
    return "\n".join(out)


# ---- Cortex-M4 -------------------------------------------------------------------------------

def elf_sizes(elf: Path) -> dict:
    line = subprocess.run(["arm-none-eabi-size", str(elf)], capture_output=True, text=True,
                          check=True).stdout.splitlines()[1].split()
    return dict(zip(("text", "data", "bss"), (int(x) for x in line[:3])))


def symbols(elf: Path) -> list[tuple[int, str, str]]:
    """(size, type, name) of every sized symbol, largest first."""
    out = subprocess.run(["arm-none-eabi-nm", "-S", "--size-sort", str(elf)],
                         capture_output=True, text=True, check=True).stdout
    syms = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4:
            syms.append((int(parts[1], 16), parts[2], parts[3]))
    return sorted(syms, reverse=True)


WEIGHT_RE = re.compile(r"^CW_(TABLE0|TABLE0_SCALE|W_IN\d+(_S)?|B_IN\d+|W_REC\d+(_S)?|B_REC\d+|"
                       r"DENSE_W(_S)?|DENSE_B)$")


def qemu_bench(elf: Path, sampler: str, n: int, seed: int = 1) -> dict:
    args = ["x", "--bench", "-n", str(n), "--seed", str(seed), *SAMPLERS[sampler], PROMPT]
    semi = "enable=on,target=native," + ",".join(f"arg={a}" for a in args)
    r = subprocess.run(QEMU + ["-semihosting-config", semi, "-kernel", str(elf)],
                       capture_output=True, text=True, timeout=600)
    if r.returncode:
        raise RuntimeError(f"{elf} exited {r.returncode}: {r.stdout} {r.stderr}")
    return parse_bench(r.stdout)


def tflm_arena(path: Path, hi: int = 4 << 20) -> int | None:
    """The smallest arena (to 16 bytes) in which TFLite Micro allocates and invokes PATH, or
    None if it does not at HI; each probe in a subprocess (tiny arenas can crash it)."""
    def ok(n):
        r = subprocess.run([sys.executable, "-c", TFLM_PROBE, str(path), str(n)],
                           capture_output=True, text=True, timeout=120)
        return r.returncode == 0 and "ok" in r.stdout

    if not ok(hi):
        return None
    lo = 0
    while hi - lo > 16:
        mid = (lo + hi) // 2 // 16 * 16
        if ok(mid):
            hi = mid
        else:
            lo = mid
    return hi


TFLM_PROBE = """
import sys, numpy as np, tflite_micro
it = tflite_micro.runtime.Interpreter.from_file(sys.argv[1], arena_size=int(sys.argv[2]))
for i in range(2):
    d = it.get_input_details(i)
    it.set_input(np.zeros(d["shape"], d["dtype"]), i)
it.invoke()
print("ok")
"""


def m4_model(work: Path, name: str, precision: str, n: int, tflm: bool) -> dict:
    d = c_project(work, name, precision, ["cw_generate-m4.elf", "cw_bench-m4.elf"])
    bundle = built_bundle(work, name)
    elf = d / "cw_generate-m4.elf"
    size = elf_sizes(elf)
    syms = symbols(elf)
    weights = sum(s for s, _, nm in syms if WEIGHT_RE.match(nm))
    text = (d / "model.h").read_text()
    state = int(re.search(r"#define CW_STATE (\d+)", text).group(1))
    vocab = int(re.search(r"#define CW_VOCAB (\d+)", text).group(1))
    runs = {s: qemu_bench(d / "cw_bench-m4.elf", s, n) for s in SAMPLERS}
    tfl = f"model.{precision}.tflite"
    arena = tflm_arena(bundle / tfl) if tflm and (bundle / tfl).is_file() else None
    code = [(s, nm) for s, t, nm in syms if t.lower() in "tw" and not WEIGHT_RE.match(nm)]
    return {"size": size, "weights": weights, "state_logits": 4 * (state + vocab),
            "stack": runs["greedy"]["stack"], "runs": runs, "tflm": arena, "tflm_file": tfl,
            "biggest": [(s, nm) for s, t, nm in syms if not WEIGHT_RE.match(nm)][:12],
            "code_syms": code}


def m4_tables(res: dict) -> str:
    rows, big = [], []
    for (name, prec), r in res.items():
        s = r["size"]
        flash = s["text"] + s["data"]
        code = flash - r["weights"]
        ram = s["bss"] + r["stack"]
        budget = r["state_logits"] + 4096
        g, t = r["runs"]["greedy"], r["runs"]["top-p 0.9"]
        ipc = {k: v * INSTR_PER_TICK for k, v in (("step", g["step"]), ("greedy", g["loop"]),
                                                 ("top-p", t["loop"]))}
        rows.append([f"{name} {prec}", f"{flash:,}", f"{r['weights']:,}",
                     f"{code:,} {'✓' if code <= 16384 else '✗'}",
                     f"{s['bss']:,} + {r['stack']:,} = {ram:,}",
                     f"{budget:,} {'✓' if ram <= budget else '✗'}",
                     f"{ipc['step']:,.0f}", f"{ipc['greedy']:,.0f}", f"{ipc['top-p']:,.0f}",
                     f"{t['sample'] * INSTR_PER_TICK:,.0f}",
                     f"{r['tflm']:,} ({r['tflm_file']})" if r["tflm"] else "n/a"])
    out = [table(["model", "flash (text + data)", "weights", "code beyond weights (≤ 16,384)",
                  "RAM: bss + stack", "state + logits + 4 KB", "instr/char step",
                  "instr/char loop greedy", "instr/char loop top-p", "instr/call top-p sampler",
                  "TFLM arena (same model)"], rows)]
    first = next(iter(res.values()))
    out.append("\nWhere the code bytes go (cw_generate-m4.elf of "
               f"{next(iter(res))[0]} {next(iter(res))[1]}, the largest non-weight symbols):\n")
    out.append(table(["bytes", "symbol"], [[f"{s:,}", nm] for s, nm in first["biggest"]]))
    return "\n".join(out)


# ---- one table of targets (issue 22 item 4) --------------------------------------------------

def obj_sizes(obj: Path, prefix: str = "") -> dict:
    """text + data, bss and the weights' bytes of one object file (binutils of the target)."""
    line = subprocess.run([prefix + "size", str(obj)], capture_output=True, text=True,
                          check=True).stdout.splitlines()[1].split()
    nm = subprocess.run([prefix + "nm", "-S", "--size-sort", str(obj)], capture_output=True,
                        text=True, check=True).stdout
    weights = sum(int(p[1], 16) for p in (ln.split() for ln in nm.splitlines())
                  if len(p) == 4 and WEIGHT_RE.match(p[3]))
    text, data, bss = (int(x) for x in line[:3])
    return {"code": text + data - weights, "bss": bss, "weights": weights}


def quick_bundle(work: Path) -> Path:
    """A hand-made GRU 128 bundle (random weights, 11 symbols, no training): --quick."""
    sys.path.insert(0, str(REPO / "tests" / "support"))
    from bundle_factory import make_bundle

    b = work / "quick_bundle"
    if not (b / "manifest.json").is_file():
        make_bundle(b, cell="gru", units=128, tokens=20)
    return b


def host_bench(cmd: list, n: int) -> dict:
    """µs per character (bare step, top-p loop) of one cw_bench build, and the wall time."""
    out = {}
    t0 = time.perf_counter()
    for s in ("greedy", "top-p 0.9"):
        r = subprocess.run([*cmd, "--bench", "-n", str(n), "--seed", "1", *SAMPLERS[s], PROMPT],
                           capture_output=True, text=True, check=True, timeout=900)
        b = parse_bench(r.stdout)
        k = 1e6 / b["tps"]
        out["step"] = b["step"] * k
        out[s] = b["loop"] * k
    out["wall"] = time.perf_counter() - t0
    return out


def targets(work: Path, name: str, precision: str, n: int, m4_chars: int, web: bool) -> list:
    """Rows of the table of targets for one model and precision."""
    global built_bundle, PROMPT
    real, prompt = built_bundle, PROMPT
    if name == "quick":  # its 11 symbols have no 'ROMEO:'
        bundle = quick_bundle(work)
        built_bundle, PROMPT = (lambda w, nm: bundle), "bad cab"
    elif name == "demo":  # the shipped demo bundle itself (weights.npz; no training)
        from charwright.runtime.model import DEMO_BUNDLE

        built_bundle = lambda w, nm: Path(DEMO_BUNDLE)
    try:
        d = c_project(work, name, precision, ["cw_bench", "cw_bench-scalar", "obj-native.o",
                                              "obj-scalar.o"])
        bundle = built_bundle(work, name)
        rows = []
        for build, obj, label in (("cw_bench-scalar", "obj-scalar.o", "x86-64 scalar"),
                                  ("cw_bench", "obj-native.o", "x86-64 SIMD (-march=native)")):
            r = host_bench([str(d / build)], n)
            s = obj_sizes(d / obj)
            rows.append([label, f"{r['step']:.2f} / {r['top-p 0.9']:.2f} µs", "-",
                         f"{s['code']:,}", f"{s['bss']:,} (bss)"])
        if shutil.which("qemu-aarch64-static") and shutil.which("aarch64-linux-gnu-gcc"):
            c_project(work, name, precision, ["cw_bench-aarch64", "cw_bench-aarch64-scalar",
                                              "obj-aarch64.o"])
            qn = max(20, n // 10)
            sc = host_bench(["qemu-aarch64-static", str(d / "cw_bench-aarch64-scalar")], qn)
            si = host_bench(["qemu-aarch64-static", str(d / "cw_bench-aarch64")], qn)
            s = obj_sizes(d / "obj-aarch64.o", "aarch64-linux-gnu-")
            rows.append(["AArch64 NEON+dotprod (qemu-user)", "-",
                         (f"{si['step'] / sc['step']:.2f}x of the AArch64 scalar build's step "
                          "under qemu (emulated: a ratio, not a speed)"),
                         f"{s['code']:,}", f"{s['bss']:,} (bss)"])
        else:
            rows.append(["AArch64 (qemu-user)", "-", "not installed", "-", "-"])
        if shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-gcc"):
            try:
                c_project(work, name, precision, ["cw_bench-m4-scalar.elf"])
                m = m4_model(work, name, precision, m4_chars, False)  # the DSP image, its runs
                sc = {sm: qemu_bench(d / "cw_bench-m4-scalar.elf", sm, m4_chars)
                      for sm in SAMPLERS}
            except RuntimeError as e:  # e.g. a float32 model beyond the board's 4 MB
                why = next((ln for ln in str(e).splitlines() if "overflowed" in ln),
                           str(e).splitlines()[0])
                rows.append(["Cortex-M4", "-", f"not built: {why.split(': ')[-1][:100]}", "-",
                             "-"])
                sc, m = None, None
            fast = "Cortex-M4 DSP (SMLAD)" if precision == "int8" else "Cortex-M4 (FPU)"
            for label, runs in ((("Cortex-M4 scalar", sc), (fast, m["runs"])) if m else ()):
                if runs is sc and precision != "int8":
                    continue  # float32 has no DSP kernel: one build
                instr = (f"{runs['greedy']['step'] * INSTR_PER_TICK:,.0f} / "
                         f"{runs['top-p 0.9']['loop'] * INSTR_PER_TICK:,.0f} instructions")
                if runs is sc:
                    rows.append([label, "-", instr, "-", "-"])
                    continue
                sz = m["size"]
                code = sz["text"] + sz["data"] - m["weights"]
                ram, budget = sz["bss"] + m["stack"], m["state_logits"] + 4096
                rows.append([label, "-", instr,
                             f"{code:,} (≤ 16,384 {'✓' if code <= 16384 else '✗'})",
                             (f"{sz['bss']:,} + {m['stack']:,} stack = {ram:,} (≤ {budget:,} "
                              f"{'✓' if ram <= budget else '✗'})")])
        else:
            rows.append(["Cortex-M4 (qemu-system-arm)", "-", "not installed", "-", "-"])
        if web and (REPO / "scripts" / "bench_web.py").is_file():
            rows += web_rows(work, bundle, precision, n, obj_sizes(d / "obj-scalar.o"))
        return [[f"{name} {precision}"] + r for r in rows]
    finally:
        built_bundle, PROMPT = real, prompt


def web_rows(work: Path, bundle: Path, precision: str, n: int, host: dict) -> list:
    """WASM in Node and Chromium: scripts/bench_web.py's measure (helper of emit-web)."""
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import bench_web

        r = bench_web.measure(bundle, precision, min(n, 2000), work / "web")
    except (SystemExit, Exception) as e:  # noqa: BLE001 (a missing toolchain: say so, go on)
        return [["WASM SIMD128", "-", f"not measured: {str(e).splitlines()[0][:120]}", "-",
                 "-"]]
    code = f"{r['wasm_bytes'] - host['weights']:,} (wasm, weights out)"
    rows = [["WASM SIMD128 in Node", f"- / {r['node']['top-p 0.9']:.2f} µs", "-", code, "-"]]
    ch = r.get("chromium")
    rows.append(["WASM SIMD128 in Chromium",
                 f"- / {ch['top-p 0.9']:.2f} µs" if ch else "-",
                 "-" if ch else "Chromium / playwright-core not installed", code, "-"])
    return rows


def targets_table(rows: list) -> str:
    return table(["model", "target", "µs per character: bare step / top-p loop",
                  "instructions per character (Cortex-M4: step / top-p loop) or relative",
                  "code beyond the weights (bytes)", "RAM (bytes)"], rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=REPO / ".bench")
    ap.add_argument("--host-sizes", default="gru256,demo,tutorial")
    ap.add_argument("--m4-models", default="gru128,lstm128,demo")
    ap.add_argument("--no-host", action="store_true")
    ap.add_argument("--no-m4", action="store_true")
    ap.add_argument("--no-tflm", action="store_true", help="skip TFLite Micro's arena probe")
    ap.add_argument("--chars", type=int, default=0,
                    help="C steps/characters per run (default: by size, ~0.3 s a run)")
    ap.add_argument("--py-chars", type=int, default=200, help="Python characters per run")
    ap.add_argument("--m4-chars", type=int, default=20, help="characters per qemu run")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--only-targets", action="store_true",
                    help="only the table of targets (x86 scalar / SIMD, AArch64, Cortex-M4, WASM)")
    ap.add_argument("--target-models", default="gru256,demo,tutorial",
                    help="models of the table of targets (demo: the shipped demo bundle; quick: "
                         "a hand-made GRU 128)")
    ap.add_argument("--no-web", action="store_true", help="no WASM rows (scripts/bench_web.py)")
    ap.add_argument("--quick", action="store_true",
                    help="the table of targets only, on a hand-made GRU 128 (no training), "
                         "few characters: proves the script works")
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    if a.quick:
        a.only_targets, a.target_models = True, "quick"
    if a.only_targets:
        print(header("The emitted C runtime on every target, per character", 1), flush=True)
        n = a.chars or (300 if a.quick else 2000)
        rows = []
        for name in a.target_models.split(","):
            for prec in ("int8", "float32"):
                rows += targets(a.work, name, prec, n, 5 if a.quick else a.m4_chars,
                                not a.no_web)
        print(f"One thread; host: cw_bench --bench, {n} characters; Cortex-M4: qemu-system-arm "
              "-icount shift=0, instructions = SysTick ticks x 40 (exact); AArch64: "
              "qemu-aarch64-static (a ratio only). Code beyond the weights: runtime.c's object "
              "(host, AArch64), the linked image (Cortex-M4), charwright.wasm less the weights. "
              "Every build's text is the same (tests/runtime/emit_c/test_kernels.py, "
              "test_aarch64.py).\n")
        print(targets_table(rows), flush=True)
        if a.json:
            a.json.write_text(json.dumps(rows, indent=2))
        return
    print(header("The emitted C runtime (charwright emit-c), per character", 1), flush=True)
    print(f"C: {subprocess.run(['cc', '--version'], capture_output=True, text=True).stdout.splitlines()[0]}, "
          "-O3 -ffp-contract=off; "
          f"{subprocess.run(['arm-none-eabi-gcc', '--version'], capture_output=True, text=True).stdout.splitlines()[0]}; "
          f"{subprocess.run(['qemu-system-arm', '--version'], capture_output=True, text=True).stdout.splitlines()[0]}\n")
    results = {}
    if not a.no_host:
        default_chars = {"gru256": 4000, "demo": 1000, "tutorial": 250, "gru128": 8000,
                         "lstm128": 8000}
        sizes = {}
        for name in a.host_sizes.split(","):
            n = a.chars or default_chars[name]
            py_chars = a.py_chars if name != "tutorial" else max(50, a.py_chars // 2)
            sizes[name] = host_size(a.work, name, n, py_chars, a.repeats)
            print(host_tables({name: sizes[name]}, n, py_chars), flush=True)
        results["host"] = sizes
    if not a.no_m4:
        res = {}
        for name in a.m4_models.split(","):
            for prec in ("float32", "int8"):
                res[(name, prec)] = m4_model(a.work, name, prec, a.m4_chars, not a.no_tflm)
        print("### Cortex-M4 (qemu-system-arm -M mps2-an386 -icount shift=0), cw_generate-m4.elf; "
              f"{a.m4_chars} characters per run, instructions = SysTick ticks x 40, exact\n")
        print(m4_tables(res), flush=True)
        results["m4"] = {f"{k[0]} {k[1]}": {kk: vv for kk, vv in v.items() if kk != "code_syms"}
                         for k, v in res.items()}
    if a.json:
        a.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
