"""The compiled sampling core: runtime/c/sampler.h (the C runtime's sampler, one source) as the
CPython extension `_speedups`, behind Sampler's interface, and the one factory that picks it.

    s = make_sampler(cfg, vocab)         CompiledSampler when the extension is importable (and
                                         built from the sources beside it), the config is one it
                                         covers and CHARWRIGHT_PURE_PYTHON is unset or 0; else
                                         the numpy Sampler (the reference); typical-p beyond
                                         512 ids is numpy's (its SIMD exp)
    core_in_use()                        one line for `charwright info`

Both give the same ids for the same logits, settings, seeds and rows (runtime/c/SAMPLING.md;
tests/runtime/sampling/test_speedups.py replays every golden vector and 10,000 seeded draws per
setting through both). typical-p computes with the C library's exp and log where numpy uses its
own: the two agree except at exact near-ties (SAMPLING.md step 7).

The extension is batched: one call samples every row of a step, with each row's state (its coin
stream's key and count, its repetition window) in C buffers; rows join and leave as with the
numpy Sampler (join, take), and row_state / set_row_state give and take the same dict. A regex
or choices config keeps numpy's RegexMask (its DFA states, length budgets) and hands the C chain
its allowed-ids mask, which the chain applies right after the penalty, where RegexMask sits.
"""

from __future__ import annotations

import os
from dataclasses import fields

import numpy as np

from charwright.runtime.errors import ConfigError
from charwright.runtime.sampling.config import (Sampler, SamplingConfig,
                                               check_join, check_keep, check_row_state)

IMPORT_ERROR = None  # why the extension did not import (None: it did)
try:  # built at pip install when a C compiler was there (setup.py); optional
    from charwright.runtime.sampling import _speedups
except ImportError as e:  # pragma: no cover - depends on the install
    _speedups, IMPORT_ERROR = None, e


def _sources_sha256() -> str | None:
    """sha256 of _speedups.c + sampler.h as they are now beside the package (None if absent)."""
    import hashlib
    from pathlib import Path

    here = Path(__file__).resolve().parent
    h = hashlib.sha256()
    try:
        for f in (here / "_speedups.c", here.parent / "c" / "sampler.h"):
            h.update(f.read_bytes())
    except OSError:
        return None
    return h.hexdigest()


def _stale() -> bool:
    """The extension was built from other sources than those beside it now (an editable tree
    whose sampler.h changed since `pip install -e .`)."""
    built, now = getattr(_speedups, "SOURCE_SHA256", ""), _sources_sha256()
    return bool(built) and now is not None and built != now


# a stale build is left unused: the numpy path, and core_in_use() says to rebuild
STALE = _speedups is not None and _stale()
if STALE:
    _speedups = None

PURE_ENV = "CHARWRIGHT_PURE_PYTHON"
TYPICAL_MAX_V = 512  # above it a typical-p config takes numpy (make_sampler)
# the SamplingConfig fields the compiled sampler implements; any other field (one added later)
# away from its default sends the config to the numpy path
COVERED = frozenset({"temperature", "top_k", "top_p", "min_p", "typical_p", "repetition_penalty",
                     "repetition_window", "greedy", "seed", "regex", "choices"})


def _pure_forced() -> bool:
    """CHARWRIGHT_PURE_PYTHON set to anything but "", "0", "false", "no" (any case)."""
    return os.environ.get(PURE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def covers(cfg: SamplingConfig) -> bool:
    """True when every setting of cfg is one the C sampler implements."""
    return all(f.name in COVERED or getattr(cfg, f.name) == f.default for f in fields(cfg))


def available() -> bool:
    """The extension is importable and CHARWRIGHT_PURE_PYTHON does not turn it off."""
    return _speedups is not None and not _pure_forced()


def make_sampler(cfg: SamplingConfig, vocab):
    """The sampler for cfg over vocab (the number of ids, or the Vocabulary: a regex or choices
    needs it): compiled when available() and covers(cfg), else the numpy Sampler. Both have join,
    take, __call__ / sample, row_state, set_row_state and constraint."""
    needs_vocab = cfg.pattern is not None and not hasattr(vocab, "chars")  # Sampler says so
    V = vocab.size if hasattr(vocab, "chars") else int(vocab)
    # typical-p's float64 exp, three per id in C (libm) against numpy's SIMD exp: numpy is the
    # faster beyond a few hundred ids (measured: 390 us vs about 200 at V 5,000)
    wide_typical = cfg.typical_p is not None and cfg.typical_p < 1.0 and V > TYPICAL_MAX_V
    # greedy too: numpy's argmax alone is as fast, but only the compiled core runs the whole
    # loop in C (Generator.advance)
    if available() and covers(cfg) and not needs_vocab and not wide_typical:
        return CompiledSampler(cfg, vocab)
    return Sampler(cfg, vocab)


def core_in_use() -> str:
    """One line: which sampling core make_sampler gives."""
    if STALE:
        return ("numpy (the compiled core was built from other sources: rebuild it with "
                "pip install -e .)")
    if _speedups is None:
        # not built (no C compiler, no Python headers, CHARWRIGHT_NO_EXTENSIONS) or not loadable
        return ("numpy (the compiled core is not importable: not built at install, or built for "
                "another Python)")
    if _pure_forced():
        return f"numpy ({PURE_ENV}={os.environ.get(PURE_ENV)}; the compiled core is built)"
    return ("compiled C (runtime/c/sampler.h via charwright.runtime.sampling._speedups); numpy "
            "for typical-p over 512 ids (as fast, same ids)")


_I64 = np.dtype(np.int64)


def _sample(core, z, allowed=None) -> np.ndarray:
    """ids int64 [rows] from the core for z (float32 [rows, V] in place; another dtype or layout
    is converted, and the result written back when z is writable)."""
    out = np.empty(len(z), _I64)
    try:
        core.sample(z, out, allowed)
    except (TypeError, BufferError, ValueError):
        if not isinstance(z, np.ndarray) or z.ndim != 2:
            raise
        zc = np.ascontiguousarray(z, np.float32)  # another dtype or layout: a copy
        if zc is z:  # read-only float32 C-contiguous: ascontiguousarray gave z itself
            zc = np.array(z, np.float32, order="C")
        core.sample(zc, out, allowed)
        if z.flags.writeable:
            z[...] = zc
    return out


def _int(x) -> bool:
    import numbers

    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


class CompiledSampler:
    """Sampler's interface over the C core. z float32 [rows, vocab] is changed in place, as
    the numpy chain changes it (other dtypes or layouts are converted first).

        ids = sampler(z)      int64 [rows]
    """

    def __init__(self, cfg: SamplingConfig, vocab_size):
        """vocab_size: the number of ids, or the Vocabulary (needed with a regex or choices:
        `constraint` is then the pattern's automaton, applied as the allowed-ids mask of the C
        chain, right after the penalty, where numpy's RegexMask sits)."""
        if _speedups is None:
            raise ConfigError("the compiled sampling core is not built")
        self.config = cfg
        vocab = vocab_size if hasattr(vocab_size, "chars") else None
        if vocab is not None:
            vocab_size = vocab.size
        self.constraint, self._mask = None, None
        if cfg.pattern is not None:
            if vocab is None:
                raise ConfigError("a regex or choices needs the vocabulary: Sampler(cfg, vocab)")
            from charwright.runtime.sampling.constrain.compile import dfa_for
            from charwright.runtime.sampling.constrain.processor import RegexMask

            self.constraint = dfa_for(cfg.pattern, vocab)
            self._mask = RegexMask(self.constraint)
        self.vocab_size = int(vocab_size)
        self.rows = 0
        self._greedy = cfg.is_greedy
        self._penalty = cfg.repetition_penalty != 1.0
        self._window = int(cfg.repetition_window)
        self._core = _speedups.Core(
            0.0 if cfg.is_greedy else float(cfg.temperature),
            min(int(cfg.top_k or 0), self.vocab_size),  # top_k >= vocab keeps every id (off)
            1.0 if cfg.top_p is None else float(cfg.top_p), float(cfg.min_p or 0.0),
            1.0 if cfg.typical_p is None else float(cfg.typical_p),
            float(cfg.repetition_penalty), self._window, int(cfg.is_greedy), self.vocab_size)
        # sample: the C call itself (no Python frame) unless a regex needs its mask made first
        self._core.set_fast(np.empty, _I64, _sample)
        self.sample = self._core.pick if self._mask is None else self.__call__

    def loop_core(self):
        """The C core that can run the generation loop itself (Generator.advance), or None:
        a regex's mask is made in Python before each pick."""
        return self._core if self._mask is None else None

    def join(self, prompts: list, seed: int, row_ids, max_chars=None) -> None:
        """Rows join at the end: prompts, one int array per row; row i draws from the stream
        of (seed, row_ids[i]). max_chars: the ids each row may take (Sampler.join's; a regex
        needs it)."""
        W = self._window
        seed, row_ids = check_join(prompts, seed, row_ids, self.vocab_size)
        if self._mask is not None:  # first: it refuses a limit below the shortest match
            self._mask.join(prompts, max_chars)
        tails = [np.ascontiguousarray(np.asarray(p).reshape(-1)[-W:], np.int32) for p in prompts]
        n = len(tails)
        self._core.join(tails, np.full(n, seed, np.uint64), np.asarray(row_ids, np.uint64))
        self.rows = self._core.rows

    def take(self, keep) -> None:
        keep = check_keep(keep, self.rows)
        self._core.take(keep)
        if self._mask is not None:
            self._mask.take(keep)
        self.rows = self._core.rows

    def __call__(self, z: np.ndarray) -> np.ndarray:
        if self._mask is None:
            return self._core.pick(z)
        m = self._mask  # RegexMask's rule: an id whose need exceeds what is left is not allowed
        out = _sample(self._core, z, m.dfa.need[m.state] <= m.left[:, None])
        m.accept(out)
        return out

    def row_state(self, i: int) -> dict:
        """Row i's state: Sampler.row_state's dict (seed, row, coins unless greedy, window when
        the penalty is on)."""
        if not _int(i) or not 0 <= i < self.rows:
            raise ConfigError(f"row {i}: the sampler has {self.rows} rows")
        seed, row, coins, window = self._core.row_state(int(i))
        d = {"seed": int(seed), "row": int(row)}
        if not self._greedy:
            d["coins"] = int(coins)
        if self._penalty:
            d["window"] = list(window)
        if self._mask is not None:
            d.update(self._mask.row_state(int(i)))
        return d

    def set_row_state(self, i: int, d: dict) -> None:
        """Row i (joined already) takes the state d (row_state's keys; an absent key leaves
        what join gave). ConfigError for a malformed value, before any change."""
        check_row_state(i, self.rows, d, self.vocab_size)
        window = None
        if "window" in d:
            window = np.ascontiguousarray(np.asarray(d["window"], np.int64).reshape(-1),
                                          np.int32)
        if self._mask is not None:  # checks "dfa" first: a bad one changes nothing
            self._mask.set_row_state(int(i), d)
        seed, row, coins, _ = self._core.row_state(int(i))
        self._core.set_row_state(int(i), int(d.get("seed", seed)), int(d.get("row", row)),
                                 int(d["coins"]) if "coins" in d else -1, window)
