"""Builds of one emitted C project with different kernels (runtime/c/kernels.h), for
test_kernels.py and test_aarch64.py: each build's logits hash (kprobe.c: 48 steps, FNV-1a over
every logit's bits) and its cw_generate text for a few settings.

kprobe.mk is read together with the project's Makefile, so every build takes the Makefile's own
flags (CW_FLAGS, CFLAGS, ARM_FLAGS, AARCH64_ARCH, ...)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
QEMU_M4 = ["qemu-system-arm", "-M", "mps2-an386", "-cpu", "cortex-m4", "-nographic",
           "-monitor", "none", "-serial", "none"]
SETTINGS = (["--seed", "3", "-n", "160", "abc"],
            ["--greedy", "-n", "80", "ha"],
            ["--seed", "9", "--temperature", "1.3", "--top-k", "5", "--top-p", "0.9", "-n",
             "160", "bad"])

KPROBE_C = r"""
#define CW_NO_MAIN
#include "runtime.c"
#include <stdio.h>
#ifdef CW_SEMIHOST
extern void initialise_monitor_handles(void);
#endif
int main(void) {
    static cw_ctx ctx;
    uint64_t h = 1469598103934665603u;
    int i, k, b, t = 0;
#ifdef CW_SEMIHOST
    initialise_monitor_handles();
#endif
    cw_reset(&ctx);
    for (i = 0; i < 48; i++) {
        t = (t * 7 + 3 + i) % CW_VOCAB;
        if (cw_step(&ctx, t) != CW_OK) return 1;
        for (k = 0; k < CW_VOCAB; k++) {
            uint32_t u;
            memcpy(&u, &ctx.logits[k], 4);
            for (b = 0; b < 4; b++) {
                h ^= (u >> (8 * b)) & 0xFFu;
                h *= 1099511628211u;
            }
        }
    }
    printf("%s|%08lx%08lx\n", CW_KERNEL_NAME, (unsigned long)(h >> 32),
           (unsigned long)(h & 0xFFFFFFFFu));
    return 0;
}
"""

# target: (program, command line) for each build; $(...) are the project Makefile's variables
KPROBE_MK = """
KP = kprobe.c runtime.c model.h $(KERNELS)
WASM_CC ?= clang
WASM_SYSROOT ?= /usr
WASM_FLAGS = --target=wasm32-wasi --sysroot=$(WASM_SYSROOT) -std=c99 -Wall -Wextra -Werror \\
    -ffp-contract=off -O2 -D_WASI_EMULATED_PROCESS_CLOCKS
kp-native: $(KP)
\t$(CC) $(CW_FLAGS) $(CFLAGS) $(CW_ARCH) -o $@ kprobe.c -lm
kp-scalar: $(KP)
\t$(CC) $(CW_FLAGS) $(CFLAGS) -DCW_SCALAR -o $@ kprobe.c -lm
kp-avx2: $(KP)
\t$(CC) $(CW_FLAGS) $(CFLAGS) -mavx2 -mfma -o $@ kprobe.c -lm
gen-avx2: runtime.c model.h $(KERNELS)
\t$(CC) $(CW_FLAGS) $(CFLAGS) -mavx2 -mfma -o $@ runtime.c -lm
kp-avx512bw: $(KP)
\t$(CC) $(CW_FLAGS) $(CFLAGS) -mavx512f -mavx512bw -mfma -o $@ kprobe.c -lm
kp-aarch64: $(KP)
\t$(AARCH64_CC) $(CW_FLAGS) $(CFLAGS) $(AARCH64_ARCH) -static -o $@ kprobe.c -lm
kp-aarch64-nodot: $(KP)
\t$(AARCH64_CC) $(CW_FLAGS) $(CFLAGS) -march=armv8-a -static -o $@ kprobe.c -lm
gen-aarch64-nodot: runtime.c model.h $(KERNELS)
\t$(AARCH64_CC) $(CW_FLAGS) $(CFLAGS) -march=armv8-a -static -o $@ runtime.c -lm
kp-m4.elf: $(KP) m4_start.o m4.ld
\t$(ARM_CC) $(ARM_FLAGS) $(CW_FLAGS) -o $@ kprobe.c m4_start.o $(ARM_LDFLAGS) -lm
kp-m4-scalar.elf: $(KP) m4_start.o m4.ld
\t$(ARM_CC) $(ARM_FLAGS) $(CW_FLAGS) -DCW_SCALAR -o $@ kprobe.c m4_start.o $(ARM_LDFLAGS) -lm
gen-m4-scalar.elf: runtime.c model.h m4_start.o m4.ld $(KERNELS)
\t$(ARM_CC) $(ARM_FLAGS) $(CW_FLAGS) -DCW_SCALAR -o $@ runtime.c m4_start.o $(ARM_LDFLAGS) -lm
kp.wasm: $(KP)
\t$(WASM_CC) $(WASM_FLAGS) -msimd128 -o $@ kprobe.c -lm
kp-scalar.wasm: $(KP)
\t$(WASM_CC) $(WASM_FLAGS) -o $@ kprobe.c -lm
gen.wasm: runtime.c model.h $(KERNELS)
\t$(WASM_CC) $(WASM_FLAGS) -msimd128 -o $@ runtime.c -lm -lwasi-emulated-process-clocks
"""

RUN_WASI = """
import { readFile } from 'node:fs/promises';
import { WASI } from 'node:wasi';
const wasi = new WASI({ version: 'preview1', args: process.argv.slice(2), env: {},
                        returnOnExit: true });
const mod = await WebAssembly.compile(await readFile(process.argv[2]));
process.exitCode = wasi.start(await WebAssembly.instantiate(mod, wasi.getImportObject()));
"""


def need(*tools: str) -> None:
    """Skip without the tools, but fail under CI=true (CI installs them)."""
    missing = [t for t in tools if not shutil.which(t)]
    if missing:
        if CI:
            pytest.fail(f"CI=true: {', '.join(missing)} required")
        pytest.skip(f"{', '.join(missing)} not installed")


def project(bundle: Path, d: Path, precision: str) -> Path:
    from charwright.runtime.emit_c.project import emit

    emit(bundle, d, precision)
    (d / "kprobe.c").write_text(KPROBE_C)
    (d / "kprobe.mk").write_text(KPROBE_MK)
    (d / "run_wasi.mjs").write_text(RUN_WASI)
    return d


def make(d: Path, *targets: str) -> None:
    r = subprocess.run(["make", "-s", "-C", str(d), "-f", "Makefile", "-f", "kprobe.mk",
                        *targets], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr


def runner(d: Path, program: str) -> list[str]:
    """The command line that runs a built program of d (an emulator where it needs one)."""
    p = str(d / program)
    if "aarch64" in program:
        return ["qemu-aarch64-static", p]
    if program.endswith(".wasm"):
        return ["node", "--no-warnings", str(d / "run_wasi.mjs"), p]
    return [p]


def run(d: Path, program: str, args=()) -> bytes:
    if program.endswith(".elf"):
        semi = "enable=on,target=native,arg=x" + "".join(f",arg={a}" for a in args)
        cmd = QEMU_M4 + ["-semihosting-config", semi, "-kernel", str(d / program)]
    else:
        cmd = runner(d, program) + list(args)
    r = subprocess.run(cmd, capture_output=True, timeout=120)
    assert r.returncode == 0, (program, r.stdout, r.stderr)
    return r.stdout


def logits_hash(d: Path, program: str) -> tuple[str, str]:
    """(kernel name, hash of 48 steps' logits) of a built kprobe program."""
    name, h = run(d, program).decode().strip().split("|")
    return name, h


def texts(d: Path, program: str) -> list[bytes]:
    return [run(d, program, s) for s in SETTINGS]
