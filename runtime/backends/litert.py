"""LiteRT backend: ai_edge_litert's Interpreter through set_tensor / invoke / get_tensor.

The raw tensor path is a few microseconds faster per call than the signature runner, and the two
cannot share one Interpreter (LiteRT refuses to invoke while a SignatureRunner holds it). Tensor
indices come from the serving_default signature, looked up by the manifest's names for the file
(files[].inputs / outputs); a file without a signature is taken by the contract (input 0 token,
1 state, output 0 logits, 1 new_state, raw tensors of those names: export/formats/tflite/convert.py
apply_contract). A new batch size resizes the inputs once. Interpreters are not
thread-safe: runtime/model.py gives each thread its own backend.
"""

from __future__ import annotations

import numpy as np

from charwright.runtime.errors import BundleError, require
from charwright.runtime.backends import BY_NAME
from charwright.runtime.quiet import quiet_stderr
from charwright.runtime.backends.base import StepBackend

SIGNATURE = "serving_default"
_INT32, _FLOAT32 = np.dtype(np.int32), np.dtype(np.float32)


class LiteRTStep(StepBackend):
    name = "litert"
    thread_safe = BY_NAME["litert"].thread_safe

    def __init__(self, path: str, state_size: int, vocab_size: int, precision: str,
                 threads: int = 1, inputs=None, outputs=None, data: bytes | None = None):
        super().__init__(state_size, vocab_size, precision, str(path))
        interp = require("ai_edge_litert.interpreter", BY_NAME["litert"].extra)
        source = {"model_content": data} if data is not None else {"model_path": str(path)}
        try:
            with quiet_stderr():  # "INFO: Created TensorFlow Lite XNNPACK delegate..."
                self.it = interp.Interpreter(**source, num_threads=max(1, int(threads)))
        except (ValueError, RuntimeError) as e:
            raise BundleError(f"{path}: LiteRT cannot load this file: {e}") from None
        inputs, outputs = inputs or {}, outputs or {}
        names = (inputs.get("token", "token"), inputs.get("state", "state"),
                 outputs.get("logits", "logits"), outputs.get("new_state", "new_state"))
        sig = self._signature(names)
        self._i_token, self._i_state = sig["inputs"][names[0]], sig["inputs"][names[1]]
        self._o_logits, self._o_state = sig["outputs"][names[2]], sig["outputs"][names[3]]
        self._batch = None
        self._views = None  # numpy views of token, state, logits, new_state (see step)
        self._raw_ok = all(callable(getattr(getattr(self.it, "_interpreter", None), f, None))
                           for f in ("SetTensor", "Invoke", "GetTensor"))  # else the public API
        self._check_widths()
        with quiet_stderr():  # the first allocation applies the delegate, which prints; later
            self._resize(1)  # resizes do not (checked), so steps never touch fd 2

    def _signature(self, names) -> dict:
        full = getattr(self.it, "_get_full_signature_list", None)
        sig = (full() if full else {}).get(SIGNATURE)
        if sig and set(names[:2]) <= set(sig["inputs"]) and set(names[2:]) <= set(sig["outputs"]):
            return sig
        if not sig:  # a file without signatures: the contract by index and raw tensor name
            ins, outs = self.it.get_input_details(), self.it.get_output_details()
            raw = [d["name"] for d in ins] + [d["name"] for d in outs]
            if len(ins) == 2 and len(outs) == 2 and raw == list(names):
                return {"inputs": {d["name"]: d["index"] for d in ins},
                        "outputs": {d["name"]: d["index"] for d in outs}}
        have = "none" if not sig else ", ".join(sorted(sig["inputs"]) + sorted(sig["outputs"]))
        raise BundleError(f"{self.path}: no {SIGNATURE} signature with inputs {names[0]!r}, "
                          f"{names[1]!r} and outputs {names[2]!r}, {names[3]!r} (the file has: "
                          f"{have}); the manifest's names do not match the file")

    def _check_widths(self) -> None:
        def detail(details, index):
            return next((d for d in details if d["index"] == index), None)

        def width(d):
            if d is None:
                return None
            shape = d.get("shape_signature", d["shape"])
            return int(shape[1]) if len(shape) == 2 and shape[1] > 0 else None

        ins, outs = self.it.get_input_details(), self.it.get_output_details()
        tensors = {"token": detail(ins, self._i_token), "state": detail(ins, self._i_state),
                   "logits": detail(outs, self._o_logits),
                   "new_state": detail(outs, self._o_state)}
        # the step contract's dtypes: a file with quantized (int8/uint8) inputs or outputs
        # would need the caller to quantize, and the views in step() would cast silently
        for role, want in (("token", _INT32), ("state", _FLOAT32), ("logits", _FLOAT32),
                           ("new_state", _FLOAT32)):
            d = tensors[role]
            have = np.dtype(d["dtype"]) if d is not None else None
            if have != want:
                raise BundleError(f"{self.path}: the {role} tensor is "
                                  f"{have.name if have is not None else 'missing'}, the step "
                                  f"contract needs {want.name} (a file with quantized inputs or "
                                  "outputs is not supported)")
        self.check_shapes(width(tensors["state"]), width(tensors["logits"]))
        self.check_shapes(width(tensors["new_state"]), None)

    def _resize(self, batch: int) -> None:
        self._views = None  # LiteRT refuses to resize while numpy views into its arena live
        self.it.resize_tensor_input(self._i_token, [batch], strict=False)
        self.it.resize_tensor_input(self._i_state, [batch, self.state_size], strict=False)
        self.it.allocate_tensors()
        self._batch = batch
        if self._raw_ok:  # the arena stays put until the next resize: views stay valid
            t = self.it.tensor
            views = (t(self._i_token)(), t(self._i_state)(), t(self._o_logits)(),
                     t(self._o_state)())
            # only over the contract's dtypes (checked at load): a view of another dtype
            # would cast what is written into it
            if [v.dtype for v in views] == [_INT32, _FLOAT32, _FLOAT32, _FLOAT32]:
                self._views = views

    def fused_io(self, batch: int):
        """The interpreter's own tensors at `batch` rows and its raw Invoke (StepBackend's)."""
        if batch != self._batch:
            self._resize(batch)
        if self._views is None:
            return None
        return (self.it._interpreter.Invoke, ()) + tuple(self._views)

    def step(self, tokens: np.ndarray, state: np.ndarray):
        if tokens.shape[0] != self._batch:
            self._resize(tokens.shape[0])
        v = self._views
        if v is None:
            it = self.it
            it.set_tensor(self._i_token, tokens)
            it.set_tensor(self._i_state, state)
            it.invoke()
            return it.get_tensor(self._o_logits), it.get_tensor(self._o_state)
        # numpy views into the interpreter's input and output tensors, and its own Invoke: the
        # same copies in and out as set_tensor / get_tensor (the caller owns what it gets),
        # without their per-call frames, nor the wrapper's check that no view into the arena
        # lives (these views are ours, dropped before any resize). Inputs of another shape or
        # dtype go through SetTensor, which refuses them as before (a view would cast or
        # broadcast them)
        raw = self.it._interpreter
        tok_in, state_in, logits, new_state = v
        if (tokens.dtype is _INT32 and state.dtype is _FLOAT32 and tokens.shape == tok_in.shape
                and state.shape == state_in.shape):
            tok_in[...] = tokens
            state_in[...] = state
            raw.Invoke()
            return logits.copy(), new_state.copy()
        raw.SetTensor(self._i_token, tokens)
        raw.SetTensor(self._i_state, state)
        raw.Invoke()
        return raw.GetTensor(self._o_logits, 0), raw.GetTensor(self._o_state, 0)
