"""SamplingConfig (what to sample with, validated) and Sampler (its chain over a set of rows).

The chain's order is fixed and documented here once:

    logits -> repetition-penalty -> regex -> temperature -> top-k -> top-p -> min-p -> typical
           -> selector

Temperature comes before the filters (the transformers order), so it changes which ids top-p and
min-p keep. A parameter at its neutral value (None, or temperature 1, top-p 1, min-p 0, typical 1,
penalty 1) leaves its processor out. Greedy decoding (greedy=True, or temperature 0) takes the
argmax after the repetition penalty; the other processors cannot change the argmax and are left
out. Categorical sampling draws each row from its own generator seeded by (seed, row id).
A regex (or a choice list) masks the ids its DFA does not allow right after the penalty
(runtime/sampling/constrain/), so greedy decoding and every filter see only allowed ids.

(About 370 lines: SamplingConfig, the chain, the numpy Sampler and the checks both sampling
cores share; the next split is the Sampler into sampling/sampler.py.)
"""

from __future__ import annotations

import math
import numbers
import secrets
from dataclasses import dataclass, replace

import numpy as np

from charwright.runtime.errors import ConfigError
from charwright.runtime.sampling.processors import MinP, RepetitionPenalty, Temperature, TopK, TopP, Typical
from charwright.runtime.sampling.selectors import Categorical, Greedy

ORDER = ("logits -> repetition-penalty -> regex -> temperature -> top-k -> top-p -> min-p -> "
         "typical -> selector")
MAX_CHOICES = 4096
SEED_MAX = 2**63 - 1  # seeds are 0..2**63-1: they fit a signed 64-bit integer in every language
TEMPERATURE_MIN, TEMPERATURE_MAX = 1e-4, 1000.0  # (0 = greedy); below 1e-4, 1/T overflows float32
# the penalty multiplies logits by r or 1/r: both at most 100, so with |logit| up to 3e32 and
# 1/T up to 1e4 every product stays finite in float32 (1e-300 made 1/r inf and the text ':::')
PENALTY_MIN, PENALTY_MAX = 0.01, 100.0
WINDOW_MAX = 65_536


def _real(x) -> bool:
    if not isinstance(x, numbers.Real) or isinstance(x, bool):
        return False
    try:
        return math.isfinite(x)
    except OverflowError:  # an int beyond float range (JSON allows 400 digits)
        return False


def _int(x) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def check_join(prompts, seed, row_ids, vocab_size: int) -> tuple:
    """Sampler.join's and CompiledSampler.join's checks, one rule for both: every prompt id an
    integer in 0..vocab_size-1 (never wrapped), seed and each row id integers in 0..2**63-1,
    one row id per prompt. ConfigError before any change; returns (seed, [row ids]) as ints."""
    if not _int(seed) or not 0 <= seed <= SEED_MAX:
        raise ConfigError(f"seed {seed!r}: must be an integer in 0..2**63-1")
    row_ids = list(row_ids)
    if len(row_ids) != len(prompts):
        raise ConfigError(f"{len(prompts)} prompts and {len(row_ids)} row ids: give one row id each")
    for r in row_ids:
        if not _int(r) or not 0 <= r <= SEED_MAX:
            raise ConfigError(f"row id {r!r}: must be an integer in 0..2**63-1")
    for p in prompts:
        a = np.asarray(p)
        if not a.size:
            continue
        if a.dtype.kind not in "iu" or a.min() < 0 or a.max() >= vocab_size:
            raise ConfigError(f"a prompt id outside 0..{vocab_size - 1} (or not an integer)")
    return int(seed), [int(r) for r in row_ids]


def check_keep(keep, rows: int) -> np.ndarray:
    """take's `keep`: integer row indices in 0..rows-1 (never truncated floats) as int64 [n]."""
    a = np.asarray(keep)
    if a.size and (a.dtype.kind not in "iu" or a.min() < 0 or a.max() >= rows):
        raise ConfigError(f"take: row indices must be integers in 0..{rows - 1}")
    return np.ascontiguousarray(a, np.int64).reshape(-1)


@dataclass(frozen=True)
class SamplingConfig:
    """Attributes (neutral value in brackets):
        temperature: 0 (greedy) or 1e-4..1000 [1.0]; divide logits by it.
        top_k: >= 1 [None]; keep the k most likely ids.
        top_p: in (0, 1] [None or 1.0]; nucleus sampling.
        min_p: in [0, 1) [None or 0]; keep ids with p >= min_p * p_max.
        typical_p: in (0, 1] [None or 1.0]; locally typical sampling.
        repetition_penalty: 0.01..100 [1.0]; CTRL penalty over the last repetition_window ids.
        repetition_window: 1..65536 [64].
        greedy: pick the argmax instead of sampling (the same as temperature 0).
        seed: 0..2**63-1 [None]; seeds the per-row generators; None draws one (resolve_seed).
        regex: a pattern [None]; the generated text (after the prompt) matches it in full
            (re.fullmatch; the syntax: runtime/sampling/constrain/parse.py).
        choices: texts [None]; the generated text is one of them (a regex, escaped and
            alternated). Not with regex.
    """

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None
    typical_p: float | None = None
    repetition_penalty: float = 1.0
    repetition_window: int = 64
    greedy: bool = False
    seed: int | None = None
    regex: str | None = None
    choices: tuple | None = None

    def __post_init__(self):
        t = self.temperature
        if not _real(t) or not (t == 0 or TEMPERATURE_MIN <= t <= TEMPERATURE_MAX):
            raise ConfigError(f"temperature {t!r}: must be 0 (greedy) or between "
                              f"{TEMPERATURE_MIN:g} and {TEMPERATURE_MAX:g}")
        if self.top_k is not None and (not _int(self.top_k) or self.top_k < 1):
            raise ConfigError(f"top_k {self.top_k!r}: must be an integer >= 1 (omit it to disable)")
        if self.top_p is not None and not (_real(self.top_p) and 0 < self.top_p <= 1):
            raise ConfigError(f"top_p {self.top_p!r}: must be in (0, 1]")
        if self.min_p is not None and not (_real(self.min_p) and 0 <= self.min_p < 1):
            raise ConfigError(f"min_p {self.min_p!r}: must be in [0, 1)")
        if self.typical_p is not None and not (_real(self.typical_p) and 0 < self.typical_p <= 1):
            raise ConfigError(f"typical_p {self.typical_p!r}: must be in (0, 1]")
        r = self.repetition_penalty
        if not _real(r) or not PENALTY_MIN <= r <= PENALTY_MAX:
            raise ConfigError(f"repetition_penalty {r!r}: must be between {PENALTY_MIN:g} and "
                              f"{PENALTY_MAX:g} (1 = off)")
        w = self.repetition_window
        if not _int(w) or not 1 <= w <= WINDOW_MAX:
            raise ConfigError(f"repetition_window {w!r}: must be an integer in 1..{WINDOW_MAX}")
        if not isinstance(self.greedy, bool):
            raise ConfigError(f"greedy {self.greedy!r}: must be true or false")
        if self.seed is not None and (not _int(self.seed) or not 0 <= self.seed <= SEED_MAX):
            raise ConfigError(f"seed {self.seed!r}: must be an integer in 0..2**63-1")
        self._check_constraint()

    def _check_constraint(self) -> None:
        c = self.choices
        if c is not None:
            if isinstance(c, str) or not isinstance(c, (list, tuple)) or not 1 <= len(c) <= \
                    MAX_CHOICES or not all(isinstance(x, str) for x in c):
                raise ConfigError(f"choices: must be a list of 1..{MAX_CHOICES} strings")
            object.__setattr__(self, "choices", tuple(c))  # hashable, like every other field
            if self.regex is not None:
                raise ConfigError("give regex or choices, not both (choices are a regex)")
            from charwright.runtime.sampling.constrain.parse import MAX_PATTERN_CHARS

            n = len(self.pattern)
            if n > MAX_PATTERN_CHARS:
                raise ConfigError(f"choices: {n:,} characters in all once escaped and joined; "
                                  f"at most {MAX_PATTERN_CHARS:,}")
        if self.pattern is not None:
            from charwright.runtime.sampling.constrain.parse import parse

            parse(self.pattern)  # the syntax, now; the vocabulary's check comes with Sampler

    @property
    def pattern(self) -> str | None:
        """The regex the text must match in full: `regex`, or `choices` as one; None."""
        if self.choices is not None:
            from charwright.runtime.sampling.constrain.compile import choices_pattern

            return choices_pattern(self.choices)
        return self.regex

    @property
    def is_greedy(self) -> bool:
        return self.greedy or self.temperature == 0


def build_processors(cfg: SamplingConfig, vocab_size: int, dfa=None) -> list:
    """The processors of the chain, in ORDER, without those at their neutral value. dfa: the
    compiled cfg.pattern (constrain.dfa_for), if any."""
    procs = []
    if cfg.repetition_penalty != 1.0:
        procs.append(RepetitionPenalty(cfg.repetition_penalty, cfg.repetition_window, vocab_size))
    if dfa is not None:
        from charwright.runtime.sampling.constrain.processor import RegexMask

        procs.append(RegexMask(dfa))
    if cfg.is_greedy:  # nothing below can change the argmax
        return procs
    if cfg.temperature != 1.0:
        procs.append(Temperature(cfg.temperature))
    if cfg.top_k is not None:
        procs.append(TopK(cfg.top_k))
    if cfg.top_p is not None and cfg.top_p < 1.0:
        procs.append(TopP(cfg.top_p))
    if cfg.min_p:
        procs.append(MinP(cfg.min_p))
    if cfg.typical_p is not None and cfg.typical_p < 1.0:
        procs.append(Typical(cfg.typical_p))
    return procs


def check_row_state(i, rows: int, d, vocab_size: int) -> None:
    """A row state `d` for row i of a sampler of `rows` rows (Sampler.set_row_state and the
    compiled sampler's): ConfigError for a malformed value."""
    if not _int(i) or not 0 <= i < rows:
        raise ConfigError(f"row {i}: the sampler has {rows} rows")
    if not isinstance(d, dict):
        raise ConfigError("a row state must be a dict")
    for k in ("seed", "row", "coins", "dfa"):
        if k in d and (not _int(d[k]) or not 0 <= d[k] <= SEED_MAX):
            raise ConfigError(f"row state {k} {d[k]!r}: must be an integer in 0..2**63-1")
    if "window" in d:
        w = d["window"]
        if (not isinstance(w, (list, tuple, np.ndarray)) or len(w) > WINDOW_MAX
                or not all(_int(x) and 0 <= x < vocab_size for x in w)):
            raise ConfigError(f"row state window: must be at most {WINDOW_MAX} ids in "
                              f"0..{vocab_size - 1}")


class Sampler:
    """One SamplingConfig's processors and selector, over the rows that use it.

    Rows join at the end (`join`) and leave (`take`) together with the generator's batch; each
    processor and the selector keep their per-row state in the same row order.

        ids = sampler(z)      z: float32 [rows, vocab] (changed in place) -> int64 [rows]
    """

    def __init__(self, cfg: SamplingConfig, vocab_size):
        """vocab_size: the number of ids, or the Vocabulary itself (needed when cfg has a regex
        or choices: `constraint` is then the pattern's automaton over it, else None)."""
        self.config = cfg
        vocab = vocab_size if hasattr(vocab_size, "chars") else None
        if vocab is not None:
            vocab_size = vocab.size
        self.constraint = None
        if cfg.pattern is not None:
            if vocab is None:
                raise ConfigError("a regex or choices needs the vocabulary: Sampler(cfg, vocab)")
            from charwright.runtime.sampling.constrain.compile import dfa_for

            self.constraint = dfa_for(cfg.pattern, vocab)
        self.processors = tuple(build_processors(cfg, vocab_size, self.constraint))
        self.selector = Greedy() if cfg.is_greedy else Categorical(vocab_size)
        self._stateful = tuple(p for p in self.processors if p.stateful)
        self.rows = 0
        self.vocab_size = int(vocab_size)
        self._seed_row: list = []  # per row, (seed, row id): what row_state reports
        # the cheapest callable equal to __call__: the selector itself when the chain is empty
        self.sample = self.selector if not self.processors else self.__call__

    def join(self, prompts: list, seed: int, row_ids, max_chars=None) -> None:
        """Rows join at the end: prompts, one int32 array per row; row i draws from the
        generator seeded by (seed, row_ids[i]). max_chars: the ids each row may take (an int, one
        per row, or None: no limit), which a regex needs so that no row ends mid-match.
        ConfigError (check_join) before any change for an id outside the vocabulary, a seed or
        row id outside 0..2**63-1 or not one row id per prompt."""
        seed, row_ids = check_join(prompts, seed, row_ids, self.vocab_size)
        for p in self._stateful:
            if getattr(p, "budgeted", False):
                p.join(prompts, max_chars)
            else:
                p.join(prompts)
        self.selector.join(seed, row_ids)
        self._seed_row += [(int(seed), int(r)) for r in row_ids]
        self.rows += len(prompts)

    def take(self, keep: np.ndarray) -> None:
        keep = check_keep(keep, self.rows)
        for p in self._stateful:
            p.take(keep)
        self.selector.take(keep)
        self._seed_row = [self._seed_row[i] for i in keep]
        self.rows = len(keep)

    def row_state(self, i: int) -> dict:
        """Row i's sampling state between two steps, as plain JSON-able values: what a snapshot
        (generate/session.py) saves and set_row_state restores. Keys:

            "seed"    int, 0..2**63-1: the seed of the row's coin stream
            "row"     int, 0..2**63-1: its row id (the stream is keyed by rng.row_key(seed, row))
            "coins"   int >= 0: the coins the row has drawn so far; its next draw is draw number
                      "coins" of that stream (categorical sampling only: absent when greedy)
            "window"  list of int ids, oldest first, at most repetition_window of them: the
                      repetition penalty's window (its prompt's tail and the ids it accepted
                      since); present only when the penalty is on
            "dfa"     int: the state of the row's regex automaton (the constraint processor's,
                      present only when the config constrains the text)

        A processor or selector reports its own keys (LogitsProcessor.row_state); a compiled
        sampler gives the same dict."""
        if not 0 <= i < self.rows:
            raise ConfigError(f"row {i}: the sampler has {self.rows} rows")
        seed, row = self._seed_row[i]
        d = {"seed": seed, "row": row}
        d.update(self.selector.row_state(i))
        for p in self._stateful:
            d.update(p.row_state(i))
        return d

    def set_row_state(self, i: int, d: dict) -> None:
        """Row i (joined already) takes the state `d` (row_state's keys; an absent key leaves
        what join gave the row). Raises ConfigError for a malformed value, before any change."""
        check_row_state(i, self.rows, d, self.vocab_size)
        d = dict(d)
        if "seed" in d or "row" in d:
            seed, row = self._seed_row[i]
            seed, row = int(d.get("seed", seed)), int(d.get("row", row))
            self._seed_row[i] = (seed, row)
            from charwright.runtime.sampling.rng import row_key

            d["key"] = row_key(seed, row)
        self.selector.set_row_state(i, d)
        for p in self._stateful:
            p.set_row_state(i, d)

    def __call__(self, z: np.ndarray) -> np.ndarray:
        for p in self.processors:
            z = p(z)
        ids = self.selector(z)
        for p in self._stateful:
            p.accept(ids)
        return ids


def make_sampler(cfg: SamplingConfig, vocab_size):
    """The sampler to generate with: the compiled core (runtime/c/sampler.h, sampling/compiled.py)
    when it is built, covers cfg and CHARWRIGHT_PURE_PYTHON is not 1; else the numpy Sampler
    (the reference). The same ids either way, the same interface."""
    from charwright.runtime.sampling.compiled import make_sampler as make  # the vocabulary too

    return make(cfg, vocab_size)


def bundle_defaults(manifest: dict, where: str) -> dict:
    """The bundle's `sampling_defaults` as SamplingConfig arguments (seed and greedy excluded),
    checked the way a SamplingConfig checks them; `generate` and `serve` apply them to the
    options a caller did not give. Bundles of charwright 0.1 wrote top_k 0 for "off".

    Raises BundleError naming the manifest for a malformed object or value."""
    from dataclasses import fields

    from charwright.runtime.errors import BundleError

    d = manifest.get("sampling_defaults") or {}
    names = {f.name for f in fields(SamplingConfig)} - {"seed", "greedy", "regex", "choices"}
    if not isinstance(d, dict) or set(d) - names:
        raise BundleError(f"{where}: sampling_defaults must be an object with keys among "
                          f"{', '.join(sorted(names))}")
    d = dict(d)
    if d.get("top_k") == 0:
        d["top_k"] = None
    try:
        SamplingConfig(**d)
    except ConfigError as e:
        raise BundleError(f"{where}: sampling_defaults: {e}") from None
    return d


def resolve_seed(cfg: SamplingConfig) -> SamplingConfig:
    """The config with a seed: its own, or a fresh random one (so a run can be repeated)."""
    return cfg if cfg.seed is not None else replace(cfg, seed=secrets.randbits(63))


def describe(cfg: SamplingConfig) -> str:
    """E.g. 'logits -> temperature(0.8) -> top-k(40) -> categorical(seed=7)'."""
    parts = ["logits"] + [p.describe() for p in build_processors(cfg, 1)]
    if cfg.pattern is not None:  # after the penalty (the DFA itself needs a vocabulary)
        p = cfg.pattern
        parts.insert(2 if cfg.repetition_penalty != 1.0 else 1,
                     f"regex({p if len(p) <= 40 else p[:37] + '...'})")
    parts.append("greedy" if cfg.is_greedy else f"categorical(seed={cfg.seed})")
    return " -> ".join(parts)
