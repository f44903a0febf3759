"""emit-c: tiny bundles of each cell and layer count -> C, compiled with gcc (and arm-none-eabi-gcc
under qemu-system-arm): `make check` passes and seeded text equals the numpy backend's."""

import os
import random
import re
import shutil
import subprocess

import pytest

from charwright.runtime.errors import ConfigError

from bundle_factory import make_bundle
from tiny_models import export_quiet, train_tiny

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
HAVE_ARM = shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")
QEMU = ["qemu-system-arm", "-M", "mps2-an386", "-cpu", "cortex-m4", "-nographic", "-monitor",
        "none", "-serial", "none"]


@pytest.fixture(scope="session", params=[("gru", 1), ("lstm", 2), ("rnn", 1)],
                ids=["gru1", "lstm2", "rnn1"])
def npz_bundle(request, tmp_path_factory, tiny_corpus):
    pytest.importorskip("tensorflow")
    cell, layers = request.param
    root = tmp_path_factory.mktemp(f"emitc-{cell}{layers}")
    train_tiny(root / "run", tiny_corpus, cell=cell, layers=layers, units=24, epochs=1)
    export_quiet(root / "run", root / "bundle", formats=["npz"])
    return root / "bundle"


def _make(d, *targets):
    r = subprocess.run(["make", "-s", "-C", str(d), *targets], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def _python_text(bundle, prompt, n, **kw):
    from charwright.runtime.model import load
    from charwright.runtime.sampling.config import SamplingConfig

    model = load(bundle, backend="numpy")
    return prompt + model.generate(prompt, n, SamplingConfig(**kw)) + "\n"


@pytest.mark.tf
@pytest.mark.parametrize("precision", ["float32", "int8"])
def test_emit_build_check_and_seeded_text(npz_bundle, tmp_path, precision):
    from charwright.runtime.emit_c.project import emit

    d = tmp_path / "c"
    emit(npz_bundle, d, precision)
    _make(d)
    out = _make(d, "check")
    from charwright.runtime.sampling.golden import make_golden

    n = len(make_golden()["cases"])  # every case: the C sampler has every setting (sampler.h)
    assert f"sampling golden vectors: {n} of {n} pass" in out and out.strip().endswith("pass")
    runs = [(["--seed", "1", "-n", "120", "The", "cat"], dict(temperature=0.8, seed=1)),
            (["--greedy", "-n", "80", "The"], dict(greedy=True)),
            (["--seed", "7", "--top-p", "0.9", "--top-k", "5", "--temperature", "1.2", "-n",
              "100", "A"], dict(temperature=1.2, top_k=5, top_p=0.9, seed=7))]
    for args, kw in runs:
        r = subprocess.run([str(d / "cw_generate"), *args], capture_output=True, timeout=60)
        assert r.returncode == 0 and r.stderr == b""
        if precision == "float32":  # int8 logits move: its text is judged by check's tolerance
            prompt = " ".join(a for a in args if a in ("The", "cat", "A"))
            n = int(args[args.index("-n") + 1])
            assert r.stdout.decode() == _python_text(npz_bundle, prompt, n, **kw)
    bad = subprocess.run([str(d / "cw_generate"), "--top-p", "0", "x"], capture_output=True)
    assert bad.returncode != 0 and len(bad.stderr.decode().splitlines()) == 1
    bad = subprocess.run([str(d / "cw_generate"), "\u2603"], capture_output=True)
    assert bad.returncode != 0 and "outside the vocabulary" in bad.stderr.decode()


@pytest.mark.tf
def test_cortex_m4_under_qemu(npz_bundle, tmp_path):
    if not HAVE_ARM:
        if CI:
            pytest.fail("CI=true: arm-none-eabi-gcc and qemu-system-arm are required")
        pytest.skip("arm-none-eabi-gcc / qemu-system-arm not installed")
    from charwright.runtime.emit_c.project import emit

    d = tmp_path / "c"
    emit(npz_bundle, d, "float32")
    _make(d)
    _make(d, "cortex-m4")
    args = ["--greedy", "-n", "200", "The"]
    semi = "enable=on,target=native,arg=cw_generate," + ",".join(f"arg={a}" for a in args)
    m4 = subprocess.run(QEMU + ["-semihosting-config", semi, "-kernel",
                                str(d / "cw_generate-m4.elf")], capture_output=True, timeout=120)
    host = subprocess.run([str(d / "cw_generate"), *args], capture_output=True, timeout=60)
    assert m4.returncode == 0 and m4.stdout == host.stdout
    for args in (["--seed", "7", "--top-p", "0.9", "--top-k", "5", "--temperature", "1.2", "-n",
                  "100", "A"], ["--temperature", "0.00009", "x"]):  # sampled; refused
        assert _m4_run(d, args) == _host_run(d, args)
    chk = subprocess.run(QEMU + ["-semihosting-config", "enable=on,target=native,arg=check",
                                 "-kernel", str(d / "check-m4.elf")], capture_output=True,
                         text=True, timeout=300)
    assert chk.returncode == 0 and chk.stdout.strip().endswith("pass"), chk.stdout


def test_a_bundle_without_weights_is_refused_in_one_line(tmp_path):
    """emit-c reads weights.npz: a bundle of int8 files only (the demo before it shipped one)
    gets one line saying so."""
    import json
    import shutil

    from charwright.runtime.emit_c.project import emit
    from charwright.runtime.model import DEMO_BUNDLE

    b = tmp_path / "int8-only"
    shutil.copytree(DEMO_BUNDLE, b)
    (b / "weights.npz").unlink()
    m = json.loads((b / "manifest.json").read_text())
    m["files"] = [f for f in m["files"] if f["path"] != "weights.npz"]
    (b / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ConfigError, match="has no weights.npz"):
        emit(b, tmp_path / "c")


def test_unsupported_stacks_are_refused():
    from charwright.runtime.bundle.architecture import layer_specs as layer_stack
    from charwright.runtime.emit_c.model_header import check_supported

    arch = {"cell": "gru", "layers": 2, "units": 8, "vocab_size": 5,
            "stack": [{"cell": "gru", "units": 8}, {"cell": "lstm", "units": 4,
                                                     "activation": "relu"}]}
    stack = layer_stack(arch)
    assert [L["cell"] for L in stack] == ["gru", "lstm"]
    with pytest.raises(ConfigError, match="layer 1: emit-c supports activation tanh"):
        check_supported(stack)
    with pytest.raises(ConfigError, match="reset_after=true"):
        check_supported(layer_stack({"cell": "gru", "layers": 1, "units": 8,
                                     "reset_after": False}))


# ---- Cortex-M4 without stdio: semihosting output, the small value parser, no heap ------------

def _host_run(d, args):
    r = subprocess.run([str(d / "cw_generate"), *args], capture_output=True, timeout=60)
    return r.returncode, r.stdout, r.stderr


def _m4_run(d, args):
    semi = "enable=on,target=native,arg=cw_generate" + "".join(f",arg={a}" for a in args)
    r = subprocess.run(QEMU + ["-semihosting-config", semi, "-kernel",
                               str(d / "cw_generate-m4.elf")], capture_output=True, timeout=120)
    return r.returncode, r.stdout, r.stderr


M4_RUNS = [["--greedy", "-n", "60", "abc"],
           ["--seed", "1", "-n", "60", "a", "b"],
           ["--seed", "7", "--top-p", "0.9", "--top-k", "5", "--temperature", "1.2", "-n", "60",
            "a"],
           ["--seed", "3", "--temperature", "1e-4", "--top-p", "1", "-n", "20", "h"],
           ["--seed", "3", "--temperature", "+.5", "--top-p", "0.123456789012345", "-n", "20",
            "h"],
           ["--seed", "3", "--temperature", "-0", "-n", "20", "h"],
           ["--seed", "2", "-n", "30"] + list("abcdefgh" * 3),  # more words than m4_start's argv
           ["--temperature", "1001", "x"], ["--temperature", "1e", "x"],
           ["--top-p", "0", "x"], ["--top-p", "1.0000001", "x"], ["--top-k", "0", "x"],
           ["--seed", "99999999999999999999", "x"], ["-n", "-1", "x"], ["--bogus", "x"],
           ["--seed"], ["a", "z"]]


@pytest.mark.parametrize("cell,layers", [("gru", 1), ("lstm", 2), ("rnn", 1)])
@pytest.mark.parametrize("precision", ["float32", "int8"])
def test_cortex_m4_without_stdio_prints_what_the_host_prints(tmp_path, cell, layers, precision):
    """Hand-made bundles (no TensorFlow): every run, refused ones included, gives the host's
    status, stdout and stderr; the image links no stdio, strtod or heap; its bss stays within
    state + logits + 3 KB (the 4 KB budget less 1 KB of stack)."""
    if not HAVE_ARM:
        if CI:
            pytest.fail("CI=true: arm-none-eabi-gcc and qemu-system-arm are required")
        pytest.skip("arm-none-eabi-gcc / qemu-system-arm not installed")
    from charwright.runtime.emit_c.project import emit

    d = tmp_path / "c"
    emit(make_bundle(tmp_path / "b", cell=cell, units=8, layers=layers), d, precision)
    _make(d)
    _make(d, "cortex-m4")
    for args in M4_RUNS:
        host = _host_run(d, args)
        assert _m4_run(d, args) == host, args
        if host[0]:
            assert len(host[2].decode().splitlines()) == 1
    nm = subprocess.run(["arm-none-eabi-nm", str(d / "cw_generate-m4.elf")], capture_output=True,
                        text=True, check=True).stdout
    names = {line.split()[-1] for line in nm.splitlines()}
    for linked in ("_malloc_r", "malloc", "_vfprintf_r", "_vfiprintf_r", "_strtod_l", "_dtoa_r",
                   "impure_data", "initialise_monitor_handles", "__udivmoddi4", "strcmp"):
        assert linked not in names
    size = subprocess.run(["arm-none-eabi-size", str(d / "cw_generate-m4.elf")],
                          capture_output=True, text=True, check=True).stdout
    bss = int(size.splitlines()[1].split()[2])
    model_h = (d / "model.h").read_text()
    state, vocab = (int(re.search(rf"#define {k} (\d+)", model_h).group(1))
                    for k in ("CW_STATE", "CW_VOCAB"))
    assert bss <= 4 * (state + vocab) + 3072
    chk = subprocess.run(QEMU + ["-semihosting-config", "enable=on,target=native,arg=check",
                                 "-kernel", str(d / "check-m4.elf")], capture_output=True,
                         text=True, timeout=300)
    assert chk.returncode == 0 and chk.stdout.strip().endswith("pass"), chk.stdout


PARSE_MAIN = r"""
#define CW_NO_MAIN
#define CW_PARSE_TEST
#include "runtime.c"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

int main(void) {
    static char line[512];
    while (fgets(line, sizeof line, stdin)) {
        double a = 0.0, b;
        float fa, fb;
        char *end;
        int ok_a, ok_b;
        unsigned long long ua, ub;
        unsigned int va, vb;
        line[strcspn(line, "\n")] = '\0';
        ok_a = cw_parse_decimal(line, &a);
        errno = 0;
        b = strtod(line, &end);
        ok_b = *line && !*end && errno == 0 && b == b; /* the host's cw_parse_double */
        fa = (float)a;
        fb = (float)b;
        memcpy(&ua, &a, 8);
        memcpy(&ub, &b, 8);
        memcpy(&va, &fa, 4);
        memcpy(&vb, &fb, 4);
        printf("%d %d %016llx %016llx %08x %08x\n", ok_a, ok_b, ua, ub, va, vb);
    }
    return 0;
}
"""


def _decimal_strings(rng):
    """(text, must the fast path take it) for random decimals in the forms the host takes."""
    out = []
    for _ in range(30000):
        sig = rng.randint(1, 15)
        digits = str(rng.randint(10 ** (sig - 1), 10 ** sig - 1))
        digits = digits[:-1] + str(rng.randint(1, 9))  # its last digit is significant
        lead, trail = "0" * rng.choice([0, 0, 1, 3]), "0" * rng.choice([0, 0, 1, 4])
        body = lead + digits + trail
        point = rng.randint(0, len(body))
        mant = body[:point] + "." + body[point:] if rng.random() < 0.8 else body
        if mant == ".":
            continue
        frac = len(mant) - mant.index(".") - 1 if "." in mant else 0
        p_mant = len(trail) - frac  # the value is int(digits) * 10 ** p
        e = rng.randint(-25, 25) if rng.random() < 0.5 else 0
        exp = ""
        if e or rng.random() < 0.2:
            esign = "-" if e < 0 else rng.choice(["", "+", "" if e else "-"])
            exp = (rng.choice("eE") + esign
                   + str(abs(e)).zfill(rng.choice([1, 1, 2, 3])))
        text = mant + exp
        sign = rng.choice(["", "", "+", "-"])
        p = p_mant + e
        out.append((sign + text, -22 <= p <= 22))
        if sig == 15:  # one more significant digit: refused
            out.append((sign + mant + "7" + exp, False))
    return out


def test_m4_value_parser_matches_strtod(tmp_path):
    """cw_parse_decimal (--temperature / --top-p on Cortex-M4) takes exactly the decimals of up
    to 15 significant digits with a power of ten in -22..22 (and zeros), each as strtod's double
    (so the same float32); what it takes, the host takes; the rest it refuses."""
    from charwright.runtime.emit_c.project import emit

    d = tmp_path / "c"
    emit(make_bundle(tmp_path / "b"), d, "float32")
    (d / "parse_test.c").write_text(PARSE_MAIN)
    subprocess.run(["cc", "-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror",
                    "-ffp-contract=off", "-O2", "-o", str(d / "parse_test"),
                    str(d / "parse_test.c"), "-lm"], check=True, cwd=d)
    cases = _decimal_strings(random.Random(20240521))
    used = ["0.8", "1.2", "0.9", "0", "1", "1.0", "0.5", "0.95", "1e-4", "0.0001", "1000", "2",
            "1e3", "0.7", "0.001", "5.", ".5", "+.5", "-0", "0e99999"]  # tests, README, edges
    cases += [(t, True) for t in used]
    cases += [("1e22", True), ("1e-22", True), ("999999999999999e7", True),
              ("123456789012345e-22", True), ("0.000000000000000000000000000000", True)]
    refused = ["", ".", "e5", "1e", "1e+", "1..2", "1.2.3", " 1", "1 ", "0x1p3", "inf", "nan",
               "-inf", "1e23", "1e-23", "1234567890123456", "0.10000000000000001", "++1", "1f",
               "9007199254740993", "1e400", "1,5"]
    cases += [(t, False) for t in refused]
    r = subprocess.run([str(d / "parse_test")], input="\n".join(t for t, _ in cases) + "\n",
                       capture_output=True, text=True, check=True, timeout=120)
    lines = r.stdout.splitlines()
    assert len(lines) == len(cases)
    taken = 0
    for (text, fast), line in zip(cases, lines):
        ok_a, ok_b, da, db, fa, fb = line.split()
        assert ok_a == ("1" if fast else "0"), text  # exactly the fast path's decimals
        if ok_a == "1":
            taken += 1
            assert ok_b == "1" and da == db and fa == fb, (text, line)
    assert taken > 20000
