"""The text-equality matrix of the emitted C runtime (issue 22): one bundle's seeded text from
every build of its `charwright emit-c` project — x86-64 scalar / AVX2 / -march=native, AArch64
NEON with and without sdot (qemu-aarch64-static), Cortex-M4 scalar and DSP (qemu-system-arm),
WASM scalar and SIMD128 (WASI in Node) — for 5 settings, against the portable scalar build, and
(float32) against `charwright generate --backend numpy`. A cell is "=" when the text is byte-equal
to the x86 scalar build's, "≠" when it is not, "-" when the tool is missing or the target refuses
the setting in one line (Cortex-M4 has no min-p / typical-p: no float64 exp there).

    python scripts/c_text_matrix.py                  # the demo bundle, int8 + float32, 300 chars
    python scripts/c_text_matrix.py --quick          # a hand-made GRU 40 bundle, 120 chars
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "support"))
sys.path.insert(0, str(REPO / "tests" / "runtime" / "emit_c"))
sys.path.insert(0, str(REPO / "scripts"))
from _bench_common import cpu_name, table  # noqa: E402
from kernel_builds import QEMU_M4, project, runner  # noqa: E402

# (name, cw_generate options, SamplingConfig) ; the prompt and -n are added
SETTINGS = [
    ("greedy", ["--greedy"], {"greedy": True}),
    ("T 0.8", ["--seed", "1", "--temperature", "0.8"], {"seed": 1, "temperature": 0.8}),
    ("top-k 40 + top-p 0.9", ["--seed", "2", "--temperature", "0.9", "--top-k", "40",
                              "--top-p", "0.9"],
     {"seed": 2, "temperature": 0.9, "top_k": 40, "top_p": 0.9}),
    ("min-p 0.05", ["--seed", "3", "--temperature", "1.0", "--min-p", "0.05"],
     {"seed": 3, "temperature": 1.0, "min_p": 0.05}),
    ("repetition 1.3", ["--seed", "4", "--temperature", "0.8", "--repetition-penalty", "1.3"],
     {"seed": 4, "temperature": 0.8, "repetition_penalty": 1.3}),
]
# label, make target, the tools it needs
BUILDS = [
    ("x86-64 scalar", "cw_generate-scalar", ["cc"]),
    ("x86-64 AVX2", "gen-avx2", ["cc"]),
    ("x86-64 -march=native", "cw_generate", ["cc"]),
    ("AArch64 NEON+sdot", "cw_generate-aarch64", ["aarch64-linux-gnu-gcc", "qemu-aarch64-static"]),
    ("AArch64 NEON", "gen-aarch64-nodot", ["aarch64-linux-gnu-gcc", "qemu-aarch64-static"]),
    ("Cortex-M4 scalar", "gen-m4-scalar.elf", ["arm-none-eabi-gcc", "qemu-system-arm"]),
    ("Cortex-M4 (DSP int8)", "cw_generate-m4.elf", ["arm-none-eabi-gcc", "qemu-system-arm"]),
    ("WASM scalar", "gen-scalar.wasm", ["clang", "node"]),
    ("WASM SIMD128", "gen.wasm", ["clang", "node"]),
]
EXTRA_MK = """
gen-scalar.wasm: runtime.c model.h $(KERNELS)
\t$(WASM_CC) $(WASM_FLAGS) -o $@ runtime.c -lm -lwasi-emulated-process-clocks
"""


def run(d: Path, program: str, args: list) -> bytes | None:
    if program.endswith(".elf"):
        semi = "enable=on,target=native,arg=x" + "".join(f",arg={a}" for a in args)
        cmd = QEMU_M4 + ["-semihosting-config", semi, "-kernel", str(d / program)]
    else:
        cmd = runner(d, program) + args
    r = subprocess.run(cmd, capture_output=True, timeout=1800)
    return r.stdout if r.returncode == 0 else None  # a refusal: one line, exit 2


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, help="default: the demo bundle")
    ap.add_argument("-n", type=int, default=300)
    ap.add_argument("--prompt", default="ROMEO:")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--work", type=Path, default=REPO / ".bench" / "text_matrix")
    a = ap.parse_args(argv)
    a.work.mkdir(parents=True, exist_ok=True)
    if a.quick:
        from bundle_factory import make_bundle

        bundle, a.n, a.prompt = make_bundle(a.work / "quick_bundle", units=40, layers=2), 120, "bad"
    else:
        from charwright.runtime.model import DEMO_BUNDLE

        bundle = a.bundle or Path(DEMO_BUNDLE)
    from charwright.runtime.model import load
    from charwright.runtime.sampling.config import SamplingConfig

    numpy_model = load(bundle, backend="numpy")
    print(f"## Seeded text of every C build, {Path(bundle).resolve().name}, {a.n} characters\n")
    print(f"{cpu_name()}; '=': byte-equal to the x86-64 scalar build's text\n")
    for precision in ("int8", "float32"):
        d = project(bundle, a.work / precision, precision)
        (d / "kprobe.mk").write_text((d / "kprobe.mk").read_text() + EXTRA_MK)
        rows = []
        ref = {}
        for label, target, tools in BUILDS:
            if not all(shutil.which(t) for t in tools):
                rows.append([label] + ["-"] * len(SETTINGS))
                continue
            r = subprocess.run(["make", "-s", "-C", str(d), "-f", "Makefile", "-f", "kprobe.mk",
                                target], capture_output=True, text=True, timeout=1800)
            if r.returncode:
                why = (r.stderr or r.stdout).strip().splitlines()[-1][:80]
                rows.append([label] + [f"not built: {why}"] + ["-"] * (len(SETTINGS) - 1))
                continue
            row = [label]
            for name, opts, _ in SETTINGS:
                out = run(d, target, [*opts, "-n", str(a.n), a.prompt])
                if out is None:
                    row.append("-")
                    continue
                ref.setdefault(name, out)
                row.append("=" if out == ref[name] else "≠")
            rows.append(row)
        if precision == "float32":  # int8 logits move: numpy's text is float32's reference
            row = ["numpy backend (Python)"]
            for name, _, kw in SETTINGS:
                text = (a.prompt + numpy_model.generate(a.prompt, a.n, SamplingConfig(**kw))
                        + "\n").encode()
                row.append("-" if name not in ref else "=" if text == ref[name] else "≠")
            rows.append(row)
        print(f"### {precision}\n")
        print(table(["build"] + [s[0] for s in SETTINGS], rows) + "\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
