"""onnxruntime backend (CPU execution provider)."""

from __future__ import annotations

import numpy as np

from ..errors import BundleError, require
from .base import StepBackend


class ONNXStep(StepBackend):
    """Runs a model.*.onnx step file with onnxruntime; `threads` sets intra-op threads."""

    name = "onnx"

    def __init__(self, path: str, state_size: int, vocab_size: int, precision: str,
                 threads: int = 1, inputs=None, outputs=None):
        super().__init__(state_size, vocab_size, precision, str(path))
        ort = require("onnxruntime", None)  # a base dependency
        so = ort.SessionOptions()
        so.intra_op_num_threads = max(1, int(threads))
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            raise BundleError(f"{path}: onnxruntime cannot load this file: {e}") from None
        inputs = inputs or {}
        outputs = outputs or {}
        self._token = inputs.get("token", "token")
        self._state = inputs.get("state", "state")
        self._outputs = [outputs.get("logits", "logits"), outputs.get("new_state", "new_state")]
        self._run = self.session.run

    @classmethod
    def from_bundle(cls, bundle, entry, threads: int = 1):
        return cls(bundle.path(entry), bundle.state_size, bundle.vocab_size, entry.precision,
                   threads, entry.inputs, entry.outputs)

    def step(self, tokens: np.ndarray, state: np.ndarray):
        logits, new_state = self._run(self._outputs, {self._token: tokens, self._state: state})
        return logits, new_state

