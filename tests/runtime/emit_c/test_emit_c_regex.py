"""emit-c --regex: the pattern's DFA baked into model.h; cw_generate's text equals Python's
(numpy backend, same seed and settings) and matches in full, on the host and on Cortex-M4 under
qemu; a bad pattern is one line before anything is written; -n below the shortest match is one
line from cw_generate."""

import os
import re
import shutil
import subprocess

import pytest
from click.testing import CliRunner

from bundle_factory import make_bundle

from charwright.runtime.errors import ConfigError

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
QEMU = ["qemu-system-arm", "-M", "mps2-an386", "-cpu", "cortex-m4", "-nographic", "-monitor",
        "none", "-serial", "none"]
PATTERN = r"[a-h]{2,4}( [a-h]+)*\.|(bad|cafe)\.?"
RUNS = [(["--seed", "1", "-n", "30", "abc"], dict(temperature=0.8, seed=1)),
        (["--greedy", "-n", "20", "abc"], dict(greedy=True)),
        (["--seed", "5", "--temperature", "1.5", "--top-k", "4", "-n", "12", "h"],
         dict(temperature=1.5, top_k=4, seed=5)),
        (["--seed", "9", "--top-p", "0.9", "--temperature", "2", "-n", "25", "a", "b"],
         dict(temperature=2.0, top_p=0.9, seed=9))]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    if not shutil.which("gcc") or not shutil.which("make"):
        if CI:
            pytest.fail("CI=true: gcc and make are required")
        pytest.skip("gcc / make not installed")
    from charwright.runtime.emit_c.project import emit

    root = tmp_path_factory.mktemp("emitc-rx")
    bundle = make_bundle(root / "tiny", units=16)
    res = emit(bundle, root / "c", "float32", regex=PATTERN)
    assert res["regex"]["states"] >= 5 and res["regex"]["flash_bytes"] < 4096
    r = subprocess.run(["make", "-s", "-C", str(root / "c")], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    return bundle, root / "c"


def _python(bundle, args, kw):
    from charwright.runtime.model import load
    from charwright.runtime.sampling.config import SamplingConfig

    words = [a for a in args[args.index("-n") + 2:]]
    prompt = " ".join(words)
    n = int(args[args.index("-n") + 1])
    text = load(bundle, backend="numpy").generate(prompt, n, SamplingConfig(regex=PATTERN, **kw))
    assert re.fullmatch(PATTERN, text), text
    return prompt + text + "\n"


def test_host_text_equals_python_and_matches(project):
    bundle, d = project
    for args, kw in RUNS:
        r = subprocess.run([str(d / "cw_generate"), *args], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0 and r.stderr == ""
        assert r.stdout == _python(bundle, args, kw), args
    r = subprocess.run([str(d / "cw_generate"), "-n", "2", "abc"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode != 0 and "shortest match" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_cortex_m4_text_equals_host(project):
    if not (shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")):
        if CI:
            pytest.fail("CI=true: arm-none-eabi-gcc and qemu-system-arm are required")
        pytest.skip("arm-none-eabi-gcc / qemu-system-arm not installed")
    _, d = project
    r = subprocess.run(["make", "-s", "-C", str(d), "cortex-m4"], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    for args, _ in RUNS[:3]:
        semi = "enable=on,target=native,arg=cw_generate" + "".join(f",arg={a}" for a in args)
        m4 = subprocess.run(QEMU + ["-semihosting-config", semi, "-kernel",
                                    str(d / "cw_generate-m4.elf")], capture_output=True,
                            timeout=120)
        host = subprocess.run([str(d / "cw_generate"), *args], capture_output=True, timeout=60)
        assert m4.returncode == 0 and m4.stdout == host.stdout, args


def test_bad_patterns_are_one_line_and_write_nothing(tmp_path):
    from charwright.runtime.cli import cli
    from charwright.runtime.emit_c.project import emit

    bundle = make_bundle(tmp_path / "tiny", units=8)
    with pytest.raises(ConfigError, match=r"needs 'z'"):
        emit(bundle, tmp_path / "c1", regex="z+")
    assert not (tmp_path / "c1").exists()
    r = CliRunner().invoke(cli, ["emit-c", str(bundle), "-o", str(tmp_path / "c2"), "--regex",
                                 "a(?=b)"])
    assert r.exit_code != 0 and "lookaround" in r.stderr and "Traceback" not in r.output
    assert not (tmp_path / "c2").exists()
    r = CliRunner().invoke(cli, ["emit-c", str(bundle), "-o", str(tmp_path / "c3"), "--regex",
                                 "(bad|cafe)"])
    assert r.exit_code == 0 and "DFA states" in r.stderr
    assert "cw_dfa_next" in (tmp_path / "c3" / "model.h").read_text()


def test_a_start_that_cannot_move_within_n_is_refused_not_read_out_of_bounds(tmp_path):
    """`(abc)*` matches "" but nothing can end an empty text (no end-of-sequence id): -n 2 is
    one line (it read cw_dfa_min_need[-1] and printed text that did not match); -n 3 matches.
    Built with AddressSanitizer where the compiler has it."""
    if not shutil.which("gcc") or not shutil.which("make"):
        if CI:
            pytest.fail("CI=true: gcc and make are required")
        pytest.skip("gcc / make not installed")
    from charwright.runtime.emit_c.project import emit

    bundle = make_bundle(tmp_path / "tiny", units=8)
    emit(bundle, tmp_path / "c", "float32", regex="(abc)*")
    asan = subprocess.run(["gcc", "-fsanitize=address,undefined", "-x", "c", "-o",
                           str(tmp_path / "probe"), "-"], input="int main(void){return 0;}",
                          capture_output=True, text=True).returncode == 0
    flags = "-O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all" if asan else "-O1"
    r = subprocess.run(["make", "-s", "-C", str(tmp_path / "c"), "cw_generate",
                        f"CFLAGS={flags}"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    exe = str(tmp_path / "c" / "cw_generate")
    env = {**os.environ, "ASAN_OPTIONS": "detect_leaks=0"}
    for n in ("1", "2"):
        r = subprocess.run([exe, "--seed", "1", "-n", n, "abc"], capture_output=True, text=True,
                           timeout=60, env=env)
        assert r.returncode != 0 and "shortest match" in r.stderr, (n, r.stdout, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and "Sanitizer" not in r.stderr
    for seed in ("1", "2", "3"):
        r = subprocess.run([exe, "--seed", seed, "-n", "7", "a"], capture_output=True,
                           text=True, timeout=60, env=env)
        assert r.returncode == 0 and r.stderr == "", r.stderr
        assert r.stdout.startswith("a") and re.fullmatch("(abc)*", r.stdout[1:-1]), r.stdout
