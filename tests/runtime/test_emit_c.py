"""emit-c: tiny bundles of each cell and layer count -> C, compiled with gcc (and arm-none-eabi-gcc
under qemu-system-arm): `make check` passes and seeded text equals the numpy backend's."""

import os
import shutil
import subprocess

import pytest

from charwright.runtime.errors import ConfigError

from conftest import export_quiet, train_tiny

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
    from charwright.runtime.sampling import SamplingConfig

    model = load(bundle, backend="numpy")
    return prompt + model.generate(prompt, n, SamplingConfig(**kw)) + "\n"


@pytest.mark.tf
@pytest.mark.parametrize("precision", ["float32", "int8"])
def test_emit_build_check_and_seeded_text(npz_bundle, tmp_path, precision):
    from charwright.runtime.emit_c import emit

    d = tmp_path / "c"
    emit(npz_bundle, d, precision)
    _make(d)
    out = _make(d, "check")
    assert "sampling golden vectors: 12 of 12 pass" in out and out.strip().endswith("pass")
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
    from charwright.runtime.emit_c import emit

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
    chk = subprocess.run(QEMU + ["-semihosting-config", "enable=on,target=native,arg=check",
                                 "-kernel", str(d / "check-m4.elf")], capture_output=True,
                         text=True, timeout=300)
    assert chk.returncode == 0 and chk.stdout.strip().endswith("pass"), chk.stdout


def test_demo_bundle_is_refused_in_one_line(tmp_path):
    from charwright.runtime.emit_c import emit
    from charwright.runtime.model import DEMO_BUNDLE

    with pytest.raises(ConfigError, match="has no weights.npz"):
        emit(DEMO_BUNDLE, tmp_path / "c")


def test_unsupported_stacks_are_refused():
    from charwright.runtime.emit_c import check_supported, layer_stack

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
