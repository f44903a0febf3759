"""The one optional compiled part of charwright: the sampler's CPython extension.

Everything else about the package is in pyproject.toml. charwright.runtime.sampling._speedups is
built from runtime/sampling/_speedups.c, which includes runtime/c/sampler.h, the same C source
the emitted C runtime compiles (one source, no copy). The extension is optional, the way
markupsafe's _speedups and PyYAML's libyaml binding are: when there is no C compiler, or the
build fails, pip installs the pure path (numpy), which gives the same ids (the build's warning
shows only with pip install -v; `charwright info` says which core is in use).
CHARWRIGHT_NO_EXTENSIONS=1 skips the build; at run time CHARWRIGHT_PURE_PYTHON=1 uses numpy
even when the extension is there; `charwright info` says which sampler core is in use.
"""

import hashlib
import os
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    """-ffp-contract=off for gcc and clang: no fused multiply-add, so every float32 operation
    rounds as runtime/c/SAMPLING.md says (MSVC does not contract unless asked); -fno-fast-math
    after the user's CFLAGS, so that -ffast-math / -Ofast there cannot break the bit-exact
    chain (sampler.h refuses to compile under __FAST_MATH__ too); a compile failure is a
    warning (Extension(optional=True))."""

    def build_extensions(self):
        if self.compiler.compiler_type != "msvc":
            for ext in self.extensions:
                ext.extra_compile_args = ["-std=c99", "-O3", "-fno-fast-math",
                                           "-ffp-contract=off"]
        super().build_extensions()


SOURCES = ["runtime/sampling/_speedups.c", "runtime/c/sampler.h"]


def source_sha256() -> str:
    """The sha256 of the extension's C sources, built into it: charwright.runtime.sampling.compiled
    leaves a build of other sources unused (an editable tree whose sampler.h changed since)."""
    h = hashlib.sha256()
    for name in SOURCES:
        h.update((Path(__file__).resolve().parent / name).read_bytes())
    return h.hexdigest()


SPEEDUPS = Extension("charwright.runtime.sampling._speedups", sources=SOURCES[:1],
                     depends=SOURCES[1:], optional=True,
                     define_macros=[("CW_SOURCE_SHA256", f'"{source_sha256()}"')])

# CHARWRIGHT_NO_EXTENSIONS: any value but "", "0", "false", "no" (any case) skips the build
NO_EXTENSIONS = os.environ.get("CHARWRIGHT_NO_EXTENSIONS", "").strip().lower() not in (
    "", "0", "false", "no")
setup(ext_modules=[] if NO_EXTENSIONS else [SPEEDUPS],
      cmdclass={"build_ext": OptionalBuildExt})
