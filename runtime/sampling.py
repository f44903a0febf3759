"""SamplingConfig: what to sample with, validated; and the chain built from it.

The chain's order is fixed and documented here once:

    logits -> repetition-penalty -> temperature -> top-k -> top-p -> min-p -> typical -> selector

Temperature comes before the filters (the transformers order), so it changes which ids top-p and
min-p keep. A parameter at its neutral value (None, or temperature 1, top-p 1, min-p 0, typical 1,
penalty 1) leaves its processor out. greedy=True selects the argmax after the processors.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from .errors import ConfigError
from .processors import (
    MinP, ProcessorChain, RepetitionPenalty, Temperature, TopK, TopP, Typical,
)
from .selectors import Categorical, Greedy

ORDER = "logits -> repetition-penalty -> temperature -> top-k -> top-p -> min-p -> typical -> selector"


@dataclass(frozen=True)
class SamplingConfig:
    """Attributes (neutral value in brackets):
        temperature: > 0 [1.0]; divide logits by it. Use greedy=True for argmax decoding.
        top_k: >= 1 [None]; keep the k most likely ids.
        top_p: in (0, 1] [None or 1.0]; nucleus sampling.
        min_p: in [0, 1) [None or 0]; keep ids with p >= min_p * p_max.
        typical_p: in (0, 1] [None or 1.0]; locally typical sampling.
        repetition_penalty: > 0 [1.0]; CTRL penalty over the last repetition_window ids.
        greedy: pick the argmax instead of sampling.
        seed: seeds the per-row generators; None draws one (see Generator.seed).
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

    def __post_init__(self):
        t = self.temperature
        if not isinstance(t, (int, float)) or not t > 0 or t != t or t == float("inf"):
            raise ConfigError(f"temperature {t!r}: must be > 0 (use greedy decoding for argmax)")
        if self.top_k is not None and (not isinstance(self.top_k, int) or self.top_k < 1):
            raise ConfigError(f"top_k {self.top_k!r}: must be an integer >= 1 (omit it to disable)")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p {self.top_p!r}: must be in (0, 1]")
        if self.min_p is not None and not 0 <= self.min_p < 1:
            raise ConfigError(f"min_p {self.min_p!r}: must be in [0, 1)")
        if self.typical_p is not None and not 0 < self.typical_p <= 1:
            raise ConfigError(f"typical_p {self.typical_p!r}: must be in (0, 1]")
        if not self.repetition_penalty > 0:
            raise ConfigError(f"repetition_penalty {self.repetition_penalty!r}: must be > 0")
        if self.repetition_window < 1:
            raise ConfigError(f"repetition_window {self.repetition_window!r}: must be >= 1")


def build_chain(cfg: SamplingConfig) -> ProcessorChain:
    procs = []
    if cfg.repetition_penalty != 1.0:
        procs.append(RepetitionPenalty(cfg.repetition_penalty, cfg.repetition_window))
    if cfg.temperature != 1.0 and not cfg.greedy:
        procs.append(Temperature(cfg.temperature))
    if cfg.top_k is not None:
        procs.append(TopK(cfg.top_k))
    if cfg.top_p is not None and cfg.top_p < 1.0:
        procs.append(TopP(cfg.top_p))
    if cfg.min_p:
        procs.append(MinP(cfg.min_p))
    if cfg.typical_p is not None and cfg.typical_p < 1.0:
        procs.append(Typical(cfg.typical_p))
    return ProcessorChain(procs)


def build_selector(cfg: SamplingConfig, rows: int, vocab: int, seed: int, row_ids=None):
    return Greedy() if cfg.greedy else Categorical(rows, vocab, seed, row_ids)


def resolve_seed(cfg: SamplingConfig) -> int:
    return cfg.seed if cfg.seed is not None else secrets.randbits(63)


def describe(cfg: SamplingConfig, seed: int | None = None) -> str:
    """E.g. 'logits -> temperature(0.8) -> top-k(40) -> categorical(seed=7)'."""
    chain = build_chain(cfg)
    sel = "greedy" if cfg.greedy else f"categorical(seed={seed if seed is not None else cfg.seed})"
    parts = ["logits"] + ([chain.describe()] if len(chain) else []) + [sel]
    return " -> ".join(parts)
