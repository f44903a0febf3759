"""The emitted C runtime's sampler is runtime/c/sampler.h, the CPython extension's source: every
golden case replays in `make check` (host and Cortex-M4), and cw_generate's options for every
setting (--min-p, --typical-p, --repetition-penalty, --repetition-window) print the numpy
reference's text for the same seed. Hand-made bundles: no TensorFlow."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from bundle_factory import make_bundle

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
HAVE_ARM = shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")
QEMU = ["qemu-system-arm", "-M", "mps2-an386", "-cpu", "cortex-m4", "-nographic", "-monitor",
        "none", "-serial", "none"]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    if not shutil.which("make") or not (shutil.which("cc") or shutil.which("gcc")):
        if CI:
            pytest.fail("CI=true: make and a C compiler are required")
        pytest.skip("make / a C compiler not installed")
    from charwright.runtime.emit_c.project import emit

    root = tmp_path_factory.mktemp("sampler-c")
    bundle = make_bundle(root / "b", cell="gru", units=8)
    d = root / "c"
    emit(bundle, d, "float32")
    r = subprocess.run(["make", "-s", "-C", str(d), "cw_generate", "cw_check"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return bundle, d


def _golden_count() -> int:
    from charwright.runtime.sampling.golden import make_golden

    return len(make_golden()["cases"])


def test_make_check_replays_every_golden_case(project):
    _, d = project
    out = subprocess.run([str(d / "cw_check")], capture_output=True, text=True, timeout=120)
    n = _golden_count()
    assert out.returncode == 0, out.stdout
    assert f"sampling golden vectors: {n} of {n} pass" in out.stdout
    # every setting is among them, so every processor of the C sampler ran
    h = (d / "check_data.h").read_text()
    for name in ("repetition-penalty", "min-p-0.3", "typical-0.8", "top-p-0.8-10000"):
        assert f'"{name}"' in h


RUNS = [
    (["--seed", "3", "--repetition-penalty", "1.5", "-n", "150", "abc"],
     dict(seed=3, temperature=0.8, repetition_penalty=1.5)),
    (["--seed", "4", "--repetition-penalty", "0.5", "--repetition-window", "3", "-n", "150",
      "h"], dict(seed=4, temperature=0.8, repetition_penalty=0.5, repetition_window=3)),
    (["--seed", "5", "--min-p", "0.2", "--temperature", "1.5", "-n", "150", "a"],
     dict(seed=5, temperature=1.5, min_p=0.2)),
    (["--seed", "6", "--typical-p", "0.7", "--temperature", "1", "-n", "150", "g"],
     dict(seed=6, temperature=1.0, typical_p=0.7)),
    (["--greedy", "--repetition-penalty", "3", "--repetition-window", "2", "-n", "60", "b"],
     dict(greedy=True, repetition_penalty=3.0, repetition_window=2)),
    (["--seed", "9", "--temperature", "1.3", "--top-k", "6", "--top-p", "0.9", "--min-p",
      "0.05", "--typical-p", "0.95", "--repetition-penalty", "1.2", "-n", "200", "ab"],
     dict(seed=9, temperature=1.3, top_k=6, top_p=0.9, min_p=0.05, typical_p=0.95,
          repetition_penalty=1.2)),
]


@pytest.mark.parametrize("args,kw", RUNS, ids=[" ".join(a[:4]) for a, _ in RUNS])
def test_every_setting_prints_the_numpy_reference_s_text(project, monkeypatch, args, kw):
    from charwright.runtime.model import load
    from charwright.runtime.sampling.config import SamplingConfig

    bundle, d = project
    monkeypatch.setenv("CHARWRIGHT_PURE_PYTHON", "1")  # the reference: numpy
    r = subprocess.run([str(d / "cw_generate"), *args], capture_output=True, timeout=60)
    assert r.returncode == 0 and r.stderr == b"", r.stderr
    prompt = args[-1]
    n = int(args[args.index("-n") + 1])
    want = prompt + load(bundle, backend="numpy").generate(prompt, n, SamplingConfig(**kw))
    assert r.stdout.decode() == want + "\n"


@pytest.mark.parametrize("args,words", [
    (["--min-p", "1", "x"], "--min-p"), (["--min-p", "-0.1", "x"], "--min-p"),
    (["--typical-p", "0", "x"], "--typical-p"), (["--typical-p", "nan", "x"], "--typical-p"),
    (["--repetition-penalty", "0.001", "x"], "--repetition-penalty"),
    (["--repetition-penalty", "101", "x"], "--repetition-penalty"),
    (["--repetition-window", "0", "x"], "--repetition-window"),
    (["--repetition-window", "65537", "x"], "--repetition-window"),
    (["--repetition-window", "1e3", "x"], "--repetition-window"),
    (["--repetition-penalty"], "needs a value")])
def test_bad_sampler_values_are_one_line(project, args, words):
    _, d = project
    r = subprocess.run([str(d / "cw_generate"), *args], capture_output=True, timeout=60)
    err = r.stderr.decode()
    assert r.returncode == 2 and r.stdout == b"" and len(err.splitlines()) == 1 and words in err


def test_a_window_over_the_bound_names_the_bound(project):
    """The message said "1..CW_MAX_WINDOW of this build" (the macro's name, not its value)."""
    _, d = project
    r = subprocess.run([str(d / "cw_generate"), "--repetition-window", "65537", "x"],
                       capture_output=True, timeout=60)
    err = r.stderr.decode()
    m = re.search(r"must be an integer in 1\.\.(\d+): 65537$", err.strip())
    assert r.returncode == 2 and m and "CW_MAX_WINDOW" not in err, err
    bound = int(m.group(1))
    assert 64 <= bound <= 65536
    ok = subprocess.run([str(d / "cw_generate"), "--repetition-window", str(bound), "-n", "3",
                         "a"], capture_output=True, timeout=60)
    over = subprocess.run([str(d / "cw_generate"), "--repetition-window", str(bound + 1), "x"],
                          capture_output=True, timeout=60)
    assert ok.returncode == 0 and over.returncode == 2


def test_the_bundle_s_sampling_defaults_reach_c(tmp_path, monkeypatch):
    """min_p, typical_p, repetition_penalty and repetition_window in sampling_defaults were
    refused by emit-c; now they are cw_generate's defaults, as they are generate's."""
    import json

    from charwright.runtime.emit_c.project import emit
    from charwright.runtime.model import load
    from charwright.runtime.sampling.config import SamplingConfig

    b = make_bundle(tmp_path / "b")
    m = json.loads((b / "manifest.json").read_text())
    defaults = {"temperature": 1.1, "min_p": 0.1, "repetition_penalty": 1.4,
                "repetition_window": 5}
    m["sampling_defaults"] = defaults
    (b / "manifest.json").write_text(json.dumps(m))
    d = tmp_path / "c"
    emit(b, d)
    h = (d / "model.h").read_text()
    assert "#define CW_DEFAULT_REPETITION_WINDOW 5u\n" in h
    assert re.search(r"#define CW_DEFAULT_REPETITION_PENALTY 1\.4\n", h)
    r = subprocess.run(["make", "-s", "-C", str(d), "cw_generate"], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    out = subprocess.run([str(d / "cw_generate"), "--seed", "2", "-n", "120", "ab"],
                         capture_output=True, timeout=60)
    monkeypatch.setenv("CHARWRIGHT_PURE_PYTHON", "1")
    want = load(b, backend="numpy").generate("ab", 120, SamplingConfig(seed=2, **defaults))
    assert out.stdout.decode() == "ab" + want + "\n"


def test_cortex_m4_samples_with_every_setting_as_the_host(project, tmp_path):
    if not HAVE_ARM:
        if CI:
            pytest.fail("CI=true: arm-none-eabi-gcc and qemu-system-arm are required")
        pytest.skip("arm-none-eabi-gcc / qemu-system-arm not installed")
    _, d = project
    r = subprocess.run(["make", "-s", "-C", str(d), "cortex-m4"], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    # m4_start.c passes 15 words at most; Cortex-M4's cw_generate has no float64 exp/log, so
    # no --min-p / --typical-p (its check-m4.elf has them: every golden case below)
    for args in (RUNS[0][0], ["--seed", "9", "--top-p", "0.9", "--top-k", "7", "--temperature",
                              "1.2", "--repetition-penalty", "1.2", "-n", "120", "ab"],
                 ["--greedy", "--repetition-penalty", "3", "--repetition-window", "2", "b"]):
        semi = "enable=on,target=native,arg=cw_generate" + "".join(f",arg={a}" for a in args)
        m4 = subprocess.run(QEMU + ["-semihosting-config", semi, "-kernel",
                                    str(d / "cw_generate-m4.elf")], capture_output=True,
                            timeout=120)
        host = subprocess.run([str(d / "cw_generate"), *args], capture_output=True, timeout=60)
        assert m4.returncode == 0 and m4.stdout == host.stdout and m4.stdout
    for opt in ("--min-p", "--typical-p"):
        semi = f"enable=on,target=native,arg=cw_generate,arg={opt},arg=0.5,arg=a"
        m4 = subprocess.run(QEMU + ["-semihosting-config", semi, "-kernel",
                                    str(d / "cw_generate-m4.elf")], capture_output=True,
                            timeout=120)
        err = m4.stderr.decode()
        assert m4.returncode == 2 and len(err.splitlines()) == 1 and "not in this build" in err
    chk = subprocess.run(QEMU + ["-semihosting-config", "enable=on,target=native,arg=check",
                                 "-kernel", str(d / "check-m4.elf")], capture_output=True,
                         text=True, timeout=300)
    n = _golden_count()
    assert chk.returncode == 0 and f"sampling golden vectors: {n} of {n} pass" in chk.stdout
