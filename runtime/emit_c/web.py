"""`charwright emit-web`'s library half: a bundle's C runtime as WebAssembly + an ES module.

    DIR/charwright.wasm   runtime/c/runtime.c + wasm_api.c + the bundle's model.h (emit-c's,
                          checked the same way), built with clang for wasm32 (wasi-libc for libm
                          and the string functions; the module imports nothing)
    DIR/charwright.js     the ES module (runtime/js/, verbatim): load(dir) -> generate(...)
    DIR/charwright.d.ts   its types
    DIR/model.json        the bundle's name, manifest sha256, precision, vocabulary size and
                          sampling defaults (checked as `charwright generate` checks them)
    DIR/golden.json       the sampling golden vectors of this charwright (sampling/golden.py)
    DIR/test/             `npm test` (node --test): golden vectors, seeds, options, stop strings,
                          and (float32) expected.json, texts from the numpy backend
    DIR/index.html, demo.js, demo.css   the demo page (prompt box, settings, streaming text)
    DIR/package.json, README.md

Nothing of the bundle reaches code as text: model.h is written by emit-c's literal writers, and
the rest is verbatim (runtime/js/) or JSON written by json.dumps from checked values. The
directory is built beside DIR and moved into place in one step (files/atomic.atomic_dir).

(Just over 300 lines, one flow: check the target, build, swap in atomically.)

(About 310 lines, one idea: one emit-web output folder, built and guarded; the target checks
belong to the writing they protect.)
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from charwright.runtime.emit_c.project import C_DIR, PRECISIONS
from charwright.runtime.errors import ConfigError

JS_DIR = Path(__file__).resolve().parent.parent / "js"
JS_FILES = ("charwright.js", "charwright.d.ts", "index.html", "demo.js", "demo.css", "README.md",
            "test/charwright.test.js")
CFLAGS = ("-O3", "-std=c99", "-Wall", "-Wextra", "-ffp-contract=off", "-mexec-model=reactor",
          "-Wl,--strip-all")
# post-MVP features every engine with SIMD128 has (Chrome 91, Firefox 89, Safari 16.4, Node
# 16.4); --no-simd builds use none of them
FEATURES = ("-msimd128", "-mbulk-memory", "-mnontrapping-fptoint", "-msign-ext")
# --no-simd: WebAssembly 1.0 (MVP) only; clang 19+ turns some post-MVP features on by default
NO_FEATURES = ("-mcpu=mvp",)
INSTALL_HINT = ("Debian/Ubuntu: apt-get install clang lld wasi-libc libclang-rt-dev-wasm32; or "
                "set CHARWRIGHT_WASM_CC to a clang with wasm32 support and WASI_SYSROOT to a "
                "wasi-libc sysroot (wasi-sdk)")
EXPECTED_CHARS = 300  # characters per expected text in test/expected.json
BUILD_TIMEOUT_S = 1800


def toolchain() -> tuple[str, str]:
    """(clang, sysroot) for wasm32, or a ConfigError saying what to install."""
    name = os.environ.get("CHARWRIGHT_WASM_CC") or "clang"
    cc = shutil.which(name)
    if not cc:
        raise ConfigError(f"emit-web needs clang with wasm32 support ({name!r} not found; "
                          f"{INSTALL_HINT})")
    roots = [os.environ["WASI_SYSROOT"]] if os.environ.get("WASI_SYSROOT") else [
        "/usr", "/opt/wasi-sdk/share/wasi-sysroot", "/usr/share/wasi-sysroot"]
    for root in roots:
        if (Path(root) / "lib" / "wasm32-wasi" / "libc.a").is_file():
            return cc, root
    raise ConfigError(f"emit-web needs wasi-libc (lib/wasm32-wasi/libc.a under {', '.join(roots)}"
                      f" not found; {INSTALL_HINT})")


def build_wasm(c_dir: Path, out: Path, cc: str, sysroot: str, simd: bool = True) -> None:
    """Compiles c_dir/wasm_api.c (which includes runtime.c and model.h) into `out`; without
    simd, for engines without WebAssembly SIMD128 (the portable scalar kernels)."""
    flags = [*CFLAGS, *FEATURES] if simd else [*CFLAGS, *NO_FEATURES, "-DCW_SCALAR"]
    cmd = [cc, "--target=wasm32-wasi", f"--sysroot={sysroot}", *flags, "-o", str(out),
           "wasm_api.c", "-lm"]
    try:
        r = subprocess.run(cmd, cwd=c_dir, capture_output=True, text=True,
                           timeout=BUILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise ConfigError(f"emit-web: clang took more than {BUILD_TIMEOUT_S} s") from None
    except OSError as e:
        raise ConfigError(f"emit-web: cannot run {cc}: {e.strerror} ({INSTALL_HINT})") from None
    if r.returncode != 0:
        text = r.stderr or r.stdout
        lines = [ln for ln in text.splitlines() if "error" in ln] or text.splitlines() or [
            f"exit status {r.returncode}"]
        # a missing piece of the toolchain (linker, compiler-rt, wasi-libc) says what to install
        missing = any(w in text for w in ("wasm-ld", "libclang_rt", "No such file", "cannot find",
                                          "unable to find", "wasm32-wasi", "unknown target"))
        raise ConfigError(f"emit-web: clang could not build charwright.wasm: {lines[0].strip()}"
                          + (f" ({INSTALL_HINT})" if missing else ""))


def _package_name(bundle_name: str) -> str:
    """An npm package name (lowercase, url-safe, at most 214 characters) containing charwright."""
    tail = re.sub(r"[^a-z0-9._-]+", "-", bundle_name.lower()).strip("-._")[:80]
    return f"charwright-{tail}" if tail else "charwright-model"


def _defaults(bundle) -> dict:
    """The bundle's sampling_defaults (checked by sampling.bundle_defaults), in JS's names."""
    from charwright.runtime.sampling.config import bundle_defaults

    d = bundle_defaults(bundle.manifest, bundle.where)
    names = {"temperature": "temperature", "top_k": "topK", "top_p": "topP", "min_p": "minP",
             "typical_p": "typicalP", "repetition_penalty": "repetitionPenalty",
             "repetition_window": "repetitionWindow"}
    out = {}
    for k, v in d.items():
        if v is None:
            continue
        out[names[k]] = int(v) if k in ("top_k", "repetition_window") else float(v)
    return out


def _prompt(vocab) -> str:
    if all(c in vocab.chars for c in "The"):
        return "The"
    letters = [c for c in vocab.chars if c.isprintable() and not c.isspace()]
    return "".join(letters[:3]) or vocab.chars[0]


SETTINGS = (  # the texts npm test compares (JS option names); seeds as strings
    {"greedy": True},
    {"seed": "1", "temperature": 0.8},
    {"seed": "9223372036854775807", "temperature": 1.2, "topK": 5, "topP": 0.9},
    {"seed": "7", "temperature": 0.7, "topP": 0.5},
    {"seed": "42", "temperature": 1.0, "topK": 3},
)
MORE_SETTINGS = (  # the rest of the chain: the repetition penalty, min-p, typical-p
    {"seed": "11", "temperature": 0.9, "repetitionPenalty": 1.3, "repetitionWindow": 16,
     "minP": 0.05},
    {"seed": "12", "temperature": 1.1, "topK": 8, "typicalP": 0.9, "repetitionPenalty": 0.8},
)


def expected_texts(bundle_dir, n: int = EXPECTED_CHARS,
                   settings=SETTINGS + MORE_SETTINGS) -> dict:
    """The numpy backend's text for each setting (what the float32 wasm must write)."""
    from charwright.runtime.model import load
    from charwright.runtime.sampling.config import SamplingConfig

    model = load(bundle_dir, backend="numpy")
    prompt = _prompt(model.vocab)
    cases = []
    for s in settings:
        kw = {"greedy": s.get("greedy", False), "temperature": s.get("temperature", 1.0),
              "top_k": s.get("topK"), "top_p": s.get("topP"), "min_p": s.get("minP"),
              "typical_p": s.get("typicalP"),
              "repetition_penalty": s.get("repetitionPenalty", 1.0),
              "repetition_window": s.get("repetitionWindow", 64),
              "seed": int(s["seed"]) if "seed" in s else None}
        text = model.generate(prompt, n, SamplingConfig(**kw))
        cases.append({"prompt": prompt, "options": {**s, "maxChars": n}, "text": text})
    return {"source": "charwright generate --backend numpy", "cases": cases}


def emit_web(bundle_dir, out_dir, precision: str = "float32", force: bool = False,
             expected_chars: int = EXPECTED_CHARS, simd: bool = True) -> dict:
    """Writes the web package for `bundle_dir` into `out_dir` (which must not exist or be empty;
    with force, it may be a directory holding only what emit-web wrote, which is replaced).
    simd: WebAssembly SIMD128 kernels (every current browser and Node 16.4+), else the
    scalar ones (WebAssembly 1.0).
    Returns {"files": [...], "wasm_bytes": n, "quantization_error": {...}}."""
    from charwright.runtime.bundle.reader import load_bundle
    from charwright.runtime.emit_c.project import emit
    from charwright.runtime.files.atomic import atomic_dir
    from charwright.runtime.sampling.golden import make_golden

    if precision not in PRECISIONS:
        raise ConfigError(f"precision {precision!r}: emit-web writes {' or '.join(PRECISIONS)}")
    out = Path(os.path.abspath(out_dir))  # "-o ." is a directory with a name and a parent
    _check_target(out, force, bundle_dir)
    cc, sysroot = toolchain()
    bundle = load_bundle(bundle_dir, verify=False)
    meta = {"format": "charwright-web", "version": 1, "name": bundle.root.resolve().name,
            "sha256": _sha256(bundle.root / "manifest.json"), "precision": precision,
            "int8": precision == "int8", "vocabSize": bundle.vocab_size,
            "defaults": _defaults(bundle)}
    expected = (expected_texts(bundle_dir, expected_chars)
                if precision == "float32" and expected_chars > 0 else None)
    with tempfile.TemporaryDirectory(prefix="charwright-web-") as tmp:
        c_dir = Path(tmp) / "c"
        res = emit(bundle_dir, c_dir, precision)  # every check of emit-c; model.h
        shutil.copyfile(C_DIR / "wasm_api.c", c_dir / "wasm_api.c")
        wasm = Path(tmp) / "charwright.wasm"
        build_wasm(c_dir, wasm, cc, sysroot, simd)
        _check_target(out, force, bundle_dir)  # again: the build took a while
        try:
            with atomic_dir(out, replace=out.exists()) as d:
                shutil.copyfile(wasm, d / "charwright.wasm")
                (d / "test").mkdir()
                for name in JS_FILES:
                    shutil.copyfile(JS_DIR / name, d / name)
                _json(d / "model.json", meta)
                _json(d / "golden.json", make_golden())
                _json(d / "package.json", _package(meta))
                if expected is not None:
                    _json(d / "test" / "expected.json", expected)
                files = sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file())
                size = (d / "charwright.wasm").stat().st_size
        except FileExistsError:
            raise ConfigError(f"{out} appeared while emit-web was writing it (another run?); "
                              "nothing was written") from None
    return {"files": files, "wasm_bytes": size, "quantization_error": res["quantization_error"]}


WRITTEN = frozenset({"charwright.wasm", "model.json", "golden.json", "package.json",
                     *(n for n in JS_FILES if "/" not in n)})
WRITTEN_TEST = frozenset({"charwright.test.js", "expected.json"})
MODEL_JSON_MAX = 1 << 20  # model.json is a few hundred bytes


def _is_web_dir(d: Path) -> bool:
    """Whether d holds what emit-web writes: a regular model.json (no link, FIFO or device; at
    most MODEL_JSON_MAX bytes) that says so."""
    import stat

    path = d / "model.json"
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MODEL_JSON_MAX:
            return False
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
                     | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                return False
            meta = json.loads(f.read(MODEL_JSON_MAX + 1).decode("utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("format") == "charwright-web"


def _foreign(out: Path) -> list[str]:
    """What in out emit-web does not write (or writes as another kind: a link, a folder where a
    file belongs), relative names, sorted."""
    import stat

    extra = []
    for e in os.scandir(out):
        st = e.stat(follow_symlinks=False)
        if e.name == "test" and stat.S_ISDIR(st.st_mode):
            for t in os.scandir(e.path):
                if t.name not in WRITTEN_TEST or not stat.S_ISREG(
                        t.stat(follow_symlinks=False).st_mode):
                    extra.append(f"test/{t.name}")
        elif e.name not in WRITTEN or not stat.S_ISREG(st.st_mode):
            extra.append(e.name)
    return sorted(extra)


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except (ValueError, OSError):
        return False
    return True


def _check_target(out: Path, force: bool, bundle_dir=None) -> None:
    """DIR must be new or empty; --force replaces a directory emit-web wrote before, never
    anything else (a mistyped -o must not delete a folder of other files): every entry must be
    a regular file emit-web writes, and the bundle must not lie inside DIR."""
    if out.is_symlink():
        raise ConfigError(f"{out} is a symbolic link: give the directory itself")
    if bundle_dir is not None and _inside(Path(bundle_dir), out):
        raise ConfigError(f"the bundle {bundle_dir} is inside {out}: write the web package to "
                          "a directory that does not hold the bundle")
    if not out.exists():
        return
    if not out.is_dir():
        raise ConfigError(f"{out} exists and is not a directory")
    if any(out.iterdir()):
        if not force:
            raise ConfigError(f"{out} is not empty (--force replaces a directory emit-web "
                              "wrote)")
        if not _is_web_dir(out):
            raise ConfigError(f"{out} is not empty and not a directory emit-web wrote (no "
                              "charwright-web model.json): not replacing it, even with --force")
        extra = _foreign(out)
        if extra:
            shown = ", ".join(extra[:5]) + (f" and {len(extra) - 5} more" if len(extra) > 5
                                            else "")
            raise ConfigError(f"{out} holds files emit-web did not write ({shown}): not "
                              "replacing it, even with --force; move them out first")


def _package(meta: dict) -> dict:
    from charwright.runtime.version import package_version

    return {"name": _package_name(meta["name"]), "version": package_version(), "type": "module",
            "description": "A charwright character-level model in WebAssembly (charwright "
                           "emit-web): load(dir) then generate(prompt, options)",
            "main": "charwright.js", "types": "charwright.d.ts",
            "exports": {".": {"types": "./charwright.d.ts", "default": "./charwright.js"}},
            "files": ["charwright.js", "charwright.d.ts", "charwright.wasm", "model.json",
                      "README.md"],
            "engines": {"node": ">=18"},
            "scripts": {"test": "node --test test/charwright.test.js"}, "license": "MIT"}


def _json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=1, ensure_ascii=True) + "\n", encoding="ascii")


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()
