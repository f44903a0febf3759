"""LiteRT backend: ai_edge_litert's Interpreter through set_tensor / invoke / get_tensor.

The raw tensor path is a few microseconds faster per call than the signature runner, and the two
cannot share one Interpreter (LiteRT refuses to invoke while a SignatureRunner holds it). Tensor
indices come from the serving_default signature; a new batch size resizes the inputs once.
Interpreters are not thread-safe: runtime/model.py gives each thread its own backend.
"""

from __future__ import annotations

import numpy as np

from ..errors import BundleError, require
from .base import StepBackend


class LiteRTStep(StepBackend):
    name = "litert"

    def __init__(self, path: str, state_size: int, vocab_size: int, precision: str,
                 threads: int = 1):
        super().__init__(state_size, vocab_size, precision, str(path))
        interp = require("ai_edge_litert.interpreter", "litert")
        try:
            self.it = interp.Interpreter(model_path=str(path), num_threads=max(1, int(threads)))
        except (ValueError, RuntimeError) as e:
            raise BundleError(f"{path}: LiteRT cannot load this file: {e}") from None
        sig = self._signature()
        self._i_token, self._i_state = sig["inputs"]["token"], sig["inputs"]["state"]
        self._o_logits, self._o_state = sig["outputs"]["logits"], sig["outputs"]["new_state"]
        self._batch = None

    def _signature(self) -> dict:
        full = getattr(self.it, "_get_full_signature_list", None)
        sigs = full() if full else {}
        sig = sigs.get("serving_default")
        if sig and {"token", "state"} <= set(sig["inputs"]) and \
                {"logits", "new_state"} <= set(sig["outputs"]):
            return sig
        raise BundleError(f"{self.path}: no serving_default signature with token/state inputs "
                          "and logits/new_state outputs")

    @classmethod
    def from_bundle(cls, bundle, entry, threads: int = 1):
        return cls(bundle.path(entry), bundle.state_size, bundle.vocab_size, entry.precision,
                   threads)

    def _resize(self, batch: int) -> None:
        self.it.resize_tensor_input(self._i_token, [batch], strict=False)
        self.it.resize_tensor_input(self._i_state, [batch, self.state_size], strict=False)
        self.it.allocate_tensors()
        self._batch = batch

    def step(self, tokens: np.ndarray, state: np.ndarray):
        if tokens.shape[0] != self._batch:
            self._resize(tokens.shape[0])
        it = self.it
        it.set_tensor(self._i_token, tokens)
        it.set_tensor(self._i_state, state)
        it.invoke()
        return it.get_tensor(self._o_logits), it.get_tensor(self._o_state)
