"""AArch64 (phones, Raspberry Pis): the emitted project cross-built with aarch64-linux-gnu-gcc
(`make aarch64`: static, NEON with the dot-product extension) and run under qemu-aarch64-static:
`make check-aarch64` passes, and its logits (bit for bit) and seeded text for three settings
equal the x86 scalar build's; so does a plain ARMv8.0 NEON build (no sdot: the smull/sadalp
path). CI installs gcc-aarch64-linux-gnu and qemu-user-static."""

import subprocess

import pytest

from bundle_factory import make_bundle
from kernel_builds import logits_hash, make, need, project, texts


@pytest.fixture(scope="module", params=[("gru", 40, 2, "int8"), ("gru", 40, 2, "float32")],
                ids=["gru2-int8", "gru2-float32"])
def proj(request, tmp_path_factory):
    cell, units, layers, precision = request.param
    root = tmp_path_factory.mktemp(f"aarch64-{precision}")
    bundle = make_bundle(root / "bundle", cell=cell, units=units, layers=layers, seed=7)
    return project(bundle, root / "c", precision)


def test_aarch64_build_checks_and_equals_x86(proj):
    need("cc", "aarch64-linux-gnu-gcc", "qemu-aarch64-static")
    make(proj, "aarch64", "gen-aarch64-nodot", "kp-aarch64", "kp-aarch64-nodot", "kp-scalar",
         "cw_generate-scalar")
    r = subprocess.run(["make", "-s", "-C", str(proj), "check-aarch64"], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip().endswith("pass"), r.stdout + r.stderr
    ref = logits_hash(proj, "kp-scalar")[1]
    dot, nodot = logits_hash(proj, "kp-aarch64"), logits_hash(proj, "kp-aarch64-nodot")
    assert dot[0] == "AArch64 NEON + dotprod" and nodot[0] == "AArch64 NEON"
    assert dot[1] == nodot[1] == ref
    x86 = texts(proj, "cw_generate-scalar")
    assert texts(proj, "cw_generate-aarch64") == x86
    assert texts(proj, "gen-aarch64-nodot") == x86
