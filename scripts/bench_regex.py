"""Regex-constrained generation: a suite of patterns over the demo bundle's vocabulary, with each
DFA's size and compile time, the mask's cost per character (1 row and 64 rows), the refusals of
hostile patterns (and how fast), and a sampling run in which every completion must match in full
(re.fullmatch); the script exits 1 if one does not.

    python scripts/bench_regex.py              # 1,000 samples per pattern (the closing note's run)
    python scripts/bench_regex.py --quick      # 100 samples, fewer timing steps
    python scripts/bench_regex.py -b BUNDLE --backend numpy
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import argparse  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_common import header, table  # noqa: E402

# (group, pattern, max_chars): accepted patterns, each sampled
SUITE = [
    ("class", r"[A-Z][a-z]+", 16),
    ("class", r"[A-Z][a-z]+ [A-Z][a-z]+", 24),
    ("class", r"[A-Z]+:", 12),
    ("class", r"[^aeiou\n ]{3,6}", 6),
    ("class", r"\w+", 12),
    ("class", r"\s?[a-z]+\.", 16),
    ("alternation", r"(ROMEO|JULIET|NURSE|FRIAR LAURENCE)", 16),
    ("alternation", r"(?:yes|no|perchance)", 10),
    ("alternation", r"(thee|thou|thy|thine)( [a-z]+){1,3}", 40),
    ("alternation", r"(good|sweet|gentle) (lord|lady|sir|madam)[,.!]", 20),
    ("bounded", r"[a-z]{5}", 5),
    ("bounded", r"[a-z]{2,4}( [a-z]{2,4}){2}", 14),
    ("bounded", r"(ha){2,4}!", 9),
    ("bounded", r"[A-Z][a-z]{0,8}, [a-z]{3,9}\.", 22),
    ("bounded", r"\d{1,3}", 3),
    ("bounded", r"[A-G]{4}( [A-Ga-g]{4}){3}", 19),
    ("unbounded", r"[a-z ]+\.", 40),
    ("unbounded", r"[ab]*c", 30),
    ("unbounded", r"([a-z]+ )*[a-z]+[.!?]", 60),
    ("unbounded", r".*!", 60),
    ("unbounded", r"(.|\n)*\n\n", 120),
    ("anchors", r"^[A-Z][a-z]+$", 16),
    ("anchors", r"^(I|O) [a-z]+ [a-z]+$", 30),
    ("codes", r"[A-Z]{2}-3{3}", 6),
    ("codes", r"(Act|Scene) [IVX]{1,4}\.", 12),
    ("codes", r"[A-Z][a-z]+, [A-Z][a-z]+ and [A-Z][a-z]+\.", 40),
    ("unicode syntax", r"\u0052\u004f\u004d\u0045\u004f|\N{LATIN CAPITAL LETTER K}ING", 5),
    ("unicode syntax", r"[^\W\d_]+", 12),
    ("lazy", r"[a-z]+?\.", 20),
    ("hostile, accepted", r"(a|aa)*b", 30),
    ("hostile, accepted", r"((a|aa)*)*b", 30),
    ("hostile, accepted", r"(x+x+)+y", 30),
    ("hostile, accepted", r"(.*a){20}", 80),
    ("hostile, accepted", r"([a-z]*[a-z]*){2000}\.", 20),
]
# patterns that must be refused with one line, quickly
REFUSED = [
    r"a{1000000}", r"(a|b)*a(a|b){40}", r"[a-z]{0,9999}[A-Z]{0,9999}", r"(a{1,100}){1,100}",
    r"[a-z]*e[a-z]{25}", r"(x|[a-z]{0,8}){500}", r"(?=a)b", r"(x)\1", r"(?i)romeo", r"é+", r"\bword",
]
# compile only, over a vocabulary with non-ASCII characters
UNICODE_VOCAB = sorted(set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ .,éèüßñçœ日本語ё"))
UNICODE = [r"[à-ÿ]+", r"\w+", r"日本語?", r"(café|señor|Straße)", r"[^\x00-\x7f]{2}", r"ё+"]


def mask_cost(dfa, V, rows, steps, rng) -> float:
    """Microseconds per row-character for RegexMask (mask + accept) on a random walk: the
    median step (a loaded machine's preemptions land in a few steps, not in the median)."""
    from charwright.runtime.sampling.constrain import RegexMask

    proc = RegexMask(dfa)
    proc.join([[0]] * rows, None)
    z0 = rng.standard_normal((steps, rows, V)).astype(np.float32)
    spent = []
    for i in range(steps):
        z = z0[i]
        t = time.perf_counter()
        proc(z)
        dt = time.perf_counter() - t
        ids = z.argmax(axis=1)
        t = time.perf_counter()
        proc.accept(ids)
        spent.append(dt + time.perf_counter() - t)
        done = dfa.terminal[proc.state]
        if done.any():
            proc.state[done] = 0
    return float(np.median(spent)) / rows * 1e6


def compile_rows(vocab, quick):
    from charwright.runtime.sampling.constrain import compile_dfa

    rng = np.random.default_rng(0)
    rows, dfas = [], {}
    steps = 200 if quick else 2000
    for group, pattern, n in SUITE:
        t = time.perf_counter()
        dfa = compile_dfa(pattern, vocab.chars, vocab.eos_id)
        ms = (time.perf_counter() - t) * 1e3
        dfas[pattern] = dfa
        one = mask_cost(dfa, vocab.size, 1, steps, rng)
        many = mask_cost(dfa, vocab.size, 64, steps // 10, rng)
        rows.append([group, f"`{pattern}`", dfa.states, f"{dfa.nbytes / 1024:.1f}", dfa.shortest,
                     f"{ms:.2f}", f"{one:.2f}", f"{many:.3f}"])
    return rows, dfas


def refused_rows(vocab):
    from charwright.runtime.errors import ConfigError
    from charwright.runtime.sampling.constrain import compile_dfa

    rows, bad = [], 0
    for pattern in REFUSED:
        t = time.perf_counter()
        try:
            compile_dfa(pattern, vocab.chars, vocab.eos_id)
            why, bad = "ACCEPTED (expected a refusal)", bad + 1
        except ConfigError as e:
            why = str(e).split(": ", 1)[1]
        rows.append([f"`{pattern[:40]}`", f"{(time.perf_counter() - t) * 1e3:.0f}", why[:90]])
    return rows, bad


def unicode_rows():
    from charwright.runtime.sampling.constrain import compile_dfa

    rows = []
    for pattern in UNICODE:
        dfa = compile_dfa(pattern, UNICODE_VOCAB)
        ok = sum(dfa.accept[_walk(dfa, UNICODE_VOCAB, s)] if _walk(dfa, UNICODE_VOCAB, s) >= 0
                 else False for s in UNICODE_VOCAB) == sum(
            bool(re.fullmatch(pattern, s)) for s in UNICODE_VOCAB)
        rows.append([f"`{pattern}`", dfa.states, f"{dfa.compile_ms:.2f}", "yes" if ok else "NO"])
    return rows


def _walk(dfa, chars, text) -> int:
    s = 0
    for ch in text:
        s = int(dfa.trans[s, chars.index(ch)])
        if s < 0:
            return -1
    return s


def sample_rows(model, samples, dfas):
    from charwright.runtime.sampling.config import SamplingConfig

    rows, failures = [], 0
    for i, (group, pattern, n) in enumerate(SUITE):
        cfg = SamplingConfig(regex=pattern, seed=1000 + i, temperature=0.8)
        t = time.perf_counter()
        done = model.complete([""] * samples, n, cfg)
        dt = time.perf_counter() - t
        ok = sum(bool(re.fullmatch(pattern, c.text)) for c in done)
        failures += samples - ok
        chars = sum(len(c.tokens) for c in done)
        reasons = {r: sum(c.finish_reason == r for c in done) for r in ("stop", "length", "eos")}
        example = min(done, key=lambda c: (len(c.text) < 2, -len(c.text))).text
        rows.append([f"`{pattern}`", f"{ok}/{samples}", f"{chars / samples:.1f}",
                     " ".join(f"{k} {v}" for k, v in reasons.items() if v),
                     f"{dt / max(chars, 1) * 1e6:.1f}", repr(example[:30])])
    return rows, failures


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-b", "--bundle", help="bundle directory (default: the demo)")
    ap.add_argument("--backend", default="onnx")
    ap.add_argument("--samples", type=int, help="completions per pattern (default 1000; "
                    "--quick: 100)")
    ap.add_argument("--quick", action="store_true", help="100 samples, fewer timing steps")
    a = ap.parse_args(argv)
    samples = a.samples or (100 if a.quick else 1000)

    from charwright.runtime import load

    model = load(a.bundle, backend=a.backend)
    vocab = model.vocab
    print(header("Regex-constrained generation (scripts/bench_regex.py)", 1))
    print(f"model: {model!r}, vocabulary of {vocab.size} ids; {samples} samples per pattern\n")
    rows, dfas = compile_rows(vocab, a.quick)
    print("### DFA per pattern: states, tables (trans + need, KiB), shortest match, compile, "
          "mask cost (mask + accept)\n")
    print(table(["group", "pattern", "states", "KiB", "shortest", "compile ms",
                 "mask us/char (1 row)", "mask us/char (64 rows)"], rows))
    rrows, bad = refused_rows(vocab)
    print("\n### Refused patterns (one line each)\n")
    print(table(["pattern", "ms", "message"], rrows))
    print(f"\n### Unicode vocabulary ({len(UNICODE_VOCAB)} characters), compile only: the DFA "
          "accepts each single character exactly when re.fullmatch does\n")
    print(table(["pattern", "states", "compile ms", "== re"], unicode_rows()))
    srows, failures = sample_rows(model, samples, dfas)
    print(f"\n### Sampling: {samples} completions per pattern (temperature 0.8, empty prompt), "
          "each checked with re.fullmatch\n")
    print(table(["pattern", "full matches", "mean chars", "finish", "us/char (batch)",
                 "longest example"], srows))
    print(f"\n{len(SUITE)} sampled patterns, {len(REFUSED)} refused, {failures} completions that "
          f"do not match, {bad} hostile patterns accepted")
    return 1 if failures or bad else 0


if __name__ == "__main__":
    sys.exit(main())
