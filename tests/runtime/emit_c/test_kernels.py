"""runtime/c/kernels.h: the portable scalar kernels and every SIMD kernel give the same logits,
bit for bit, and the same text for three settings — x86 (-march=native: AVX-512 VNNI here;
AVX2; AVX-512BW without VNNI), Cortex-M4 with its DSP kernel against the M4 scalar build under
qemu-system-arm, and WASM SIMD128 against WASM scalar in Node. The tiny models have units that
are not a multiple of 16 (a partial block beside whole ones) nor of 4 (22: int8 input padding,
the float32 loops' tail), a second layer (an input projection) and a vocabulary of 11 (a
partial dense block). No TensorFlow needed."""

import platform
import subprocess

import numpy as np
import pytest

from bundle_factory import make_bundle
from kernel_builds import logits_hash, make, need, project, texts

X86 = platform.machine() in ("x86_64", "AMD64")


def _cpu_flags() -> set:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


FLAGS = _cpu_flags()


@pytest.fixture(scope="module", params=[("gru", 40, 2, "int8"), ("lstm", 22, 1, "float32")],
                ids=["gru2-int8", "lstm1-float32"])
def proj(request, tmp_path_factory):
    cell, units, layers, precision = request.param
    root = tmp_path_factory.mktemp(f"kernels-{cell}-{precision}")
    bundle = make_bundle(root / "bundle", cell=cell, units=units, layers=layers, seed=units)
    return project(bundle, root / "c", precision)


def test_pack_rows_is_the_layout_kernels_h_reads():
    """model_header.pack_rows: each gate padded to 16 rows, blocks of 16 rows side by side;
    int8 in groups of 4 inputs (inputs padded to 4), float32 one input at a time."""
    from charwright.runtime.emit_c.model_header import pack_rows

    G, H, n = 3, 20, 6
    w = np.arange(G * H * n, dtype=np.int64).reshape(G * H, n) % 251 - 125
    q = pack_rows(w.astype(np.int8), G)
    Hp, n4 = 32, 8
    assert q.size == G * Hp * n4
    for k, j, i in [(0, 0, 0), (1, 5, 3), (2, 19, 5), (2, 17, 1)]:
        r = k * Hp + j
        assert q[(r // 16) * 16 * n4 + (i // 4) * 64 + (r % 16) * 4 + i % 4] == w[k * H + j, i]
    assert q.reshape(G, Hp // 16, n4 // 4, 16, 4)[:, 1, :, 4:].max() == 0  # padding rows
    assert q.reshape(G, Hp // 16, n4 // 4, 16, 4)[:, :, 1, :, 2:].max() == 0  # padding inputs
    f = pack_rows(w.astype(np.float32), G)
    assert f.size == G * Hp * n
    for k, j, i in [(0, 0, 0), (1, 5, 3), (2, 19, 5)]:
        r = k * Hp + j
        assert f[(r // 16) * 16 * n + i * 16 + r % 16] == w[k * H + j, i]


def test_x86_kernels_equal_the_scalar_reference(proj):
    if not X86:
        pytest.skip("x86-64 only")
    need("cc")
    builds = ["kp-scalar", "kp-native"]
    if "avx2" in FLAGS:
        builds.append("kp-avx2")
    if {"avx512f", "avx512bw"} <= FLAGS:
        builds.append("kp-avx512bw")
    make(proj, "cw_generate", "cw_generate-scalar", *builds,
         *(["gen-avx2"] if "avx2" in FLAGS else []))
    hashes = {b: logits_hash(proj, b) for b in builds}
    assert hashes["kp-scalar"][0] == "scalar"
    if "avx512_vnni" in FLAGS:
        assert hashes["kp-native"][0] == "x86 AVX-512 VNNI"  # the kernel under test is used
    if "kp-avx2" in hashes:
        assert hashes["kp-avx2"][0] == "x86 AVX2"
    assert len({h for _, h in hashes.values()}) == 1, hashes
    ref = texts(proj, "cw_generate-scalar")
    assert all(t.startswith(s) for t, s in zip(ref, (b"abc", b"ha", b"bad")))
    assert len(set(ref)) == 3  # the settings differ, so the comparison means something
    for b in ["cw_generate"] + (["gen-avx2"] if "avx2" in FLAGS else []):
        assert texts(proj, b) == ref, b


def test_cortex_m4_dsp_kernel_equals_the_scalar_builds(proj):
    """The M4 image with SMLAD (kernels_dsp.h) against the M4 scalar image under qemu, and both
    against the host's text."""
    need("arm-none-eabi-gcc", "qemu-system-arm")
    make(proj, "cw_generate-scalar", "cw_generate-m4.elf", "gen-m4-scalar.elf", "kp-m4.elf",
         "kp-m4-scalar.elf", "kp-scalar")
    dsp, scalar = logits_hash(proj, "kp-m4.elf"), logits_hash(proj, "kp-m4-scalar.elf")
    if "int8" in proj.parent.name:
        assert dsp[0] == "Cortex-M DSP (SMLAD)"
    assert scalar[0] == "scalar"
    assert dsp[1] == scalar[1] == logits_hash(proj, "kp-scalar")[1]
    ref = texts(proj, "cw_generate-scalar")
    assert texts(proj, "cw_generate-m4.elf") == ref
    assert texts(proj, "gen-m4-scalar.elf") == ref


def test_wasm_simd128_kernel_equals_the_scalar_builds(proj):
    """kernels_wasm.h (helper builds of emit-web use it) against WASM without SIMD and the host,
    run as WASI programs in Node."""
    need("clang", "node", "wasm-ld")
    from pathlib import Path

    if not Path("/usr/lib/wasm32-wasi/libc.a").is_file():
        need("wasi-libc (/usr/lib/wasm32-wasi/libc.a)")
    make(proj, "kp.wasm", "kp-scalar.wasm", "gen.wasm", "kp-scalar", "cw_generate-scalar")
    simd, scalar = logits_hash(proj, "kp.wasm"), logits_hash(proj, "kp-scalar.wasm")
    assert simd[0] == "WASM SIMD128" and scalar[0] == "scalar"
    assert simd[1] == scalar[1] == logits_hash(proj, "kp-scalar")[1]
    assert texts(proj, "gen.wasm") == texts(proj, "cw_generate-scalar")


# cw_generate-m4.elf with a 40-byte prompt limit: 41 ids fit in the sampler's z and scratch of
# a vocabulary of 11 (284 bytes), 257 (the Makefile's 256) do not
M4_P40_MK = """
gen-m4-p40.elf: runtime.c model.h m4_start.o m4.ld $(KERNELS)
\t$(ARM_CC) $(ARM_FLAGS) -UCW_MAX_PROMPT -DCW_MAX_PROMPT=40 $(CW_FLAGS) -o $@ runtime.c \\
\t    m4_start.o $(ARM_LDFLAGS) -lm
"""


def _bss_symbol(elf, prefix: str) -> int:
    import subprocess

    out = subprocess.run(["arm-none-eabi-nm", "-S", str(elf)], capture_output=True, text=True,
                         check=True).stdout
    sizes = [int(p[1], 16) for p in (ln.split() for ln in out.splitlines())
             if len(p) == 4 and p[2] in "bB" and p[3].split(".")[0] == prefix]
    assert len(sizes) <= 1, (prefix, out)
    return sizes[0] if sizes else 0


def test_cortex_m4_prompt_in_place_and_ids_in_the_sampler(proj):
    """RAM on Cortex-M4: main joins the prompt's words in place in m4_start.c's command line
    and keeps the prompt's ids in the sampler's z + scratch where they fit (read before the
    first pick). The text equals the host's for multi-word prompts up to the limit, both with
    the ids in the sampler (40-byte limit) and in their own array (256); one byte more is
    refused in one line."""
    import subprocess

    from kernel_builds import QEMU_M4, run

    need("arm-none-eabi-gcc", "arm-none-eabi-nm", "qemu-system-arm")
    (proj / "m4p40.mk").write_text(M4_P40_MK)
    r = subprocess.run(["make", "-s", "-C", str(proj), "-f", "Makefile", "-f", "kprobe.mk", "-f",
                        "m4p40.mk", "cw_generate-scalar", "cw_generate-m4.elf", "gen-m4-p40.elf"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert _bss_symbol(proj / "gen-m4-p40.elf", "ids_own") == 0  # in the sampler: none
    assert _bss_symbol(proj / "cw_generate-m4.elf", "ids_own") == 257 * 4  # too many there
    for elf in ("cw_generate-m4.elf", "gen-m4-p40.elf"):
        assert _bss_symbol(proj / elf, "cw_cmdline") > 0
        out = subprocess.run(["arm-none-eabi-nm", str(proj / elf)], capture_output=True,
                             text=True, check=True).stdout
        assert " prompt." not in out  # no copy of the prompt
    words = ["abc", "h.", "dead", "face", "gab", "be", "cafe", "bad", "ace", "e"]
    p38 = words[:]  # 38 bytes joined: the longest a 40-byte buffer takes with its NUL + 1
    assert len(" ".join(p38)) == 38
    cases = [(["--seed", "5", "-n", "40"], p38),
             (["--greedy", "-n", "30"], ["ha", "cab", "e"]),
             (["--seed", "7", "--temperature", "0.9", "--top-k", "6", "-n", "50"], p38[:4]),
             (["--seed", "2", "-n", "20"], [])]  # no prompt: from "\n"
    for opts, prompt in cases:
        host = run(proj, "cw_generate-scalar", opts + prompt)
        assert host.startswith(" ".join(prompt).encode()) and len(host) > len(" ".join(prompt))
        assert run(proj, "gen-m4-p40.elf", opts + prompt) == host, prompt
        assert run(proj, "cw_generate-m4.elf", opts + prompt) == host, prompt
    long = [("abc " * 70).strip()[:250]]  # 250 bytes: within 256, beyond 40
    assert run(proj, "cw_generate-m4.elf", ["--seed", "1", "-n", "10", *long]) == \
        run(proj, "cw_generate-scalar", ["--seed", "1", "-n", "10", *long])
    semi = "enable=on,target=native,arg=x,arg=-n,arg=5," + ",".join(
        f"arg={w}" for w in p38 + ["a"])  # 40 bytes
    r = subprocess.run(QEMU_M4 + ["-semihosting-config", semi, "-kernel",
                                  str(proj / "gen-m4-p40.elf")], capture_output=True, timeout=120)
    assert r.returncode == 2 and r.stdout == b"", r
    assert r.stderr.strip() == b"cw_generate: the prompt is too long"


def _bundle_v17(d, precision_seed: int = 17):
    """A GRU 8 over 17 characters (one whole dense block of 16 and one row): the shape where
    GCC -O3 once warned 'acc may be used uninitialized' and the Makefile's -Werror stopped
    the default build."""
    import bundle_factory as bf
    from charwright.runtime.backends.numpy import NumpyStep
    from charwright.runtime.verify.score import greedy_rollout, teacher_forced

    chars = sorted("\n abcdefghijklmno")
    assert len(chars) == 17
    d.mkdir(parents=True)
    arch = {"cell": "gru", "layers": 1, "units": 8, "vocab_size": 17, "embedding_dim": 4}
    rng = np.random.default_rng(precision_seed)
    w = {k: rng.normal(0, 0.5, s).astype(np.float32) for k, s in bf.weight_shapes(arch).items()}
    np.savez(d / "weights.npz", **w)
    step = NumpyStep(w, arch)
    ids = rng.integers(0, 17, 40).astype(np.int32)
    np.savez(d / "probe.npz", tokens=ids, logits=teacher_forced(step, ids), prompt=ids[:5],
             greedy=greedy_rollout(step, ids[:5], 10), device=np.array("test"))
    bf.write_manifest(d, {
        "format": "charwright-bundle", "format_version": "1.0",
        "vocab": {"format": "charwright-vocab", "version": 1, "chars": chars, "eos": False},
        "architecture": arch,
        "state": {"size": 8, "layout": [{"name": "layer0.h", "layer": 0, "part": "h",
                                         "offset": 0, "size": 8}]},
        "files": [{"path": "weights.npz", "format": "npz", "precision": "float32",
                   "inputs": {"token": "token", "state": "state"},
                   "outputs": {"logits": "logits", "new_state": "new_state"}}],
        "probe": {"path": "probe.npz", "tokens": 40}})
    return d


@pytest.mark.parametrize("precision", ["int8", "float32"])
def test_the_default_make_builds_a_vocabulary_of_17(tmp_path, precision):
    """plain `make check` (CFLAGS -O3, -march=native, -Werror) of an odd dense layer"""
    from charwright.runtime.emit_c.project import emit

    need("make", "cc")
    d = tmp_path / "c"
    emit(_bundle_v17(tmp_path / "bundle"), d, precision)
    r = subprocess.run(["make", "-s", "-C", str(d), "check"], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
