"""The one interface every backend implements."""

from __future__ import annotations

import numpy as np


class StepBackend:
    """One step of the recurrent model with explicit state.

    step(tokens: int32 [batch], state: float32 [batch, state_size])
        -> (logits: float32 [batch, vocab], new_state: float32 [batch, state_size])

    Backends are not required to be thread-safe: a Model gives each thread its own (see
    runtime/model.py). State is one plain array, so beam search and batch shrinking reorder it
    with np.take in one shared place, never inside a backend.
    """

    name = "base"

    def __init__(self, state_size: int, vocab_size: int, precision: str, path: str):
        self.state_size = state_size
        self.vocab_size = vocab_size
        self.precision = precision
        self.path = path

    @classmethod
    def from_bundle(cls, bundle, entry, threads: int = 1) -> "StepBackend":
        raise NotImplementedError

    def initial_state(self, batch: int) -> np.ndarray:
        return np.zeros((batch, self.state_size), np.float32)

    def step(self, tokens: np.ndarray, state: np.ndarray):
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.precision} {self.path}>"
