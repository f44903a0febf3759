"""onnxruntime backend (CPU execution provider).

Per-call cost is what generation and scoring pay: session.run() converts the feed dict, checks
its inputs and allocates both outputs on every call (about 4 us of the demo model's 28 us step,
measured on an Intel Xeon with onnxruntime 1.32). step() therefore runs batches of up to
BIND_MAX_BATCH rows through an IOBinding over preallocated buffers, one per thread and batch
size (the tokens and state are copied in, the logits and new state copied out: the caller owns
what it gets, as with run()); larger batches, where the call's overhead is lost in the step and
run() was measured ~5% faster (batch 32-128, demo model), and inputs of another shape or dtype
take session.run(), so its errors stay what they were. fused_io() (the compiled loop,
Generator.advance) binds any batch up to FUSED_MAX_BATCH: nothing is copied in or out per step
there, and it beats run() at every batch; the latest FUSED_KEPT sizes stay bound. replay() runs the
teacher-forced loop through two IOBindings over preallocated OrtValues (state ping-pongs between
two buffers); see README "Benchmarks".

A non-finite state is not refused: checking np.isfinite(state) costs ~1.2 us, 3% of a demo step
at batch 1 (measured under load; 0.7% at batch 64). On the int8 file a NaN in a state row makes
that row's own result depend on its place in the batch (export/formats/onnx_rows.py); the model
never reaches such a state from the zero state, and the library checks a state it is given
(snapshots) before it steps.
"""

from __future__ import annotations

import threading

import numpy as np

from charwright.runtime.errors import BundleError, require
from charwright.runtime.backends import BY_NAME
from charwright.runtime.backends.base import StepBackend

TOKEN, STATE, LOGITS, NEW_STATE = "token", "state", "logits", "new_state"
_INT32, _FLOAT32 = np.dtype(np.int32), np.dtype(np.float32)  # what the bound buffers hold
BIND_MAX_BATCH = 16  # batch 1: 28 -> 25 us; 8: -2 us; 16: even; 32 and up: run() is faster
# the compiled loop (fused_io) binds any batch up to this: with no copies in or out per step,
# its IOBinding beats run() at every batch (demo, batch 32 / 64: +9% / +5% characters/s)
FUSED_MAX_BATCH = 4096
FUSED_KEPT = 8  # fused bindings kept per thread (the most recently used batch sizes)


class ONNXStep(StepBackend):
    """Runs a model.*.onnx step file with onnxruntime; `threads` sets intra-op threads.

    `inputs`/`outputs` map the logical names (token, state / logits, new_state) to the file's
    tensor names (the manifest's files[].inputs and outputs); `data` is the file's bytes when
    the caller has read them already."""

    name = "onnx"
    thread_safe = BY_NAME["onnx"].thread_safe

    def __init__(self, path: str, state_size: int, vocab_size: int, precision: str,
                 threads: int = 1, inputs=None, outputs=None, data: bytes | None = None):
        super().__init__(state_size, vocab_size, precision, str(path))
        self._ort = ort = require("onnxruntime", None)  # a base dependency
        so = ort.SessionOptions()
        so.intra_op_num_threads = max(1, int(threads))
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(data if data is not None else str(path), so,
                                                providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise BundleError(f"{path}: onnxruntime cannot load this file: {first}") from None
        inputs, outputs = inputs or {}, outputs or {}
        self._token = inputs.get(TOKEN, TOKEN)
        self._state = inputs.get(STATE, STATE)
        self._logits = outputs.get(LOGITS, LOGITS)
        self._new_state = outputs.get(NEW_STATE, NEW_STATE)
        self._outputs = [self._logits, self._new_state]
        self._check_signature()
        self._run = self.session.run
        self._run_bound = self.session.run_with_iobinding
        self._local = threading.local()  # .ios: this thread's _Bound per state shape (the
        #                                   session is shared)

    def _check_signature(self) -> None:
        ins = {i.name: i for i in self.session.get_inputs()}
        outs = {o.name: o for o in self.session.get_outputs()}
        for want, have, kind in ((self._token, ins, "input"), (self._state, ins, "input"),
                                 (self._logits, outs, "output"), (self._new_state, outs, "output")):
            if want not in have:
                raise BundleError(f"{self.path}: no {kind} named {want!r} (the file has: "
                                  f"{', '.join(sorted(have))}); the manifest's names do not "
                                  "match the file")

        def width(shape):
            return shape[1] if len(shape) == 2 and isinstance(shape[1], int) else None

        self.check_shapes(width(ins[self._state].shape), width(outs[self._logits].shape))
        new_state = width(outs[self._new_state].shape)
        if new_state is not None and new_state != self.state_size:
            self.check_shapes(new_state, None)

    def _failed(self, e: Exception) -> BundleError:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        return BundleError(f"{self.path}: onnxruntime cannot run this file with the manifest's "
                           f"shapes (state {self.state_size}, vocabulary {self.vocab_size}): "
                           f"{first}")

    def step(self, tokens: np.ndarray, state: np.ndarray):
        ios = getattr(self._local, "ios", None)
        if ios is None:
            ios = self._local.ios = {}
        io = ios.get(state.shape, False)
        if io is False:  # a shape not seen on this thread: bind it (None: run() for good)
            io = self._bind(tokens, state, ios)
        if io is not None and tokens.dtype is _INT32 and state.dtype is _FLOAT32 \
                and tokens.shape == io.tokens_shape:
            io.tokens[...] = tokens
            io.state[...] = state
            try:
                self._run_bound(io.binding)
            except Exception as e:  # onnxruntime's own types: a shape the file does not take
                raise self._failed(e) from None
            return io.logits.copy(), io.new_state.copy()
        try:
            logits, new_state = self._run(self._outputs, {self._token: tokens,
                                                          self._state: state})
        except Exception as e:  # onnxruntime's own types: a shape the file does not take
            raise self._failed(e) from None
        return logits, new_state

    def fused_io(self, batch: int):
        """This thread's IOBinding at `batch` rows: its buffers and run_with_iobinding
        (StepBackend's)."""
        ios = getattr(self._local, "ios", None)
        if ios is None:
            ios = self._local.ios = {}
        if batch <= BIND_MAX_BATCH:  # step()'s own binding serves (one binding per size)
            io = ios.get((batch, self.state_size), False)
            if io is False:
                io = self._bind(np.zeros(batch, np.int32),
                                np.zeros((batch, self.state_size), np.float32), ios)
            if io is not None:
                return (self._run_bound, (io.binding,), io.tokens, io.state, io.logits,
                        io.new_state)
        key = ("fused", batch)  # its own bindings: step() keeps run() beyond BIND_MAX_BATCH
        io = ios.pop(key, None)
        if io is None:
            if not 1 <= batch <= FUSED_MAX_BATCH:
                return None
            io = _Bound(self, batch)
            fused = [k for k in ios if k[0] == "fused"]  # oldest first
            for k in fused[: max(0, len(fused) - FUSED_KEPT + 1)]:
                del ios[k]  # a server's batch size wanders: keep the latest few bindings only
        ios[key] = io  # the newest last
        return (self._run_bound, (io.binding,), io.tokens, io.state, io.logits, io.new_state)

    def step_failed(self, e: Exception) -> Exception:
        return self._failed(e)

    def _bind(self, tokens: np.ndarray, state: np.ndarray, ios: dict):
        """This thread's IOBinding for batch len(tokens), kept in `ios` under the state's shape
        (one per batch size: serving alternates sizes, priming beside running rows), or None
        (the plain run() path) for inputs that are not int32 [n] and float32 [n, state_size],
        or n > BIND_MAX_BATCH. Only a valid batch size is remembered (at most BIND_MAX_BATCH
        bindings per thread); odd inputs are looked at again on each call."""
        n = tokens.shape[0] if tokens.ndim == 1 else -1
        if tokens.dtype is not _INT32 or state.dtype is not _FLOAT32 \
                or state.shape != (n, self.state_size) or not 1 <= n <= BIND_MAX_BATCH:
            return None
        io = ios[state.shape] = _Bound(self, n)
        return io

    def replay(self, tokens: np.ndarray, state: np.ndarray):
        """Teacher-forced pass at batch 1: logits float32 [N, vocab] and the final state."""
        n, ov = len(tokens), self._ort.OrtValue.ortvalue_from_numpy
        out = np.empty((n, self.vocab_size), np.float32)
        if n == 0:
            return out, state
        tok = np.zeros(1, np.int32)
        logits = np.empty((1, self.vocab_size), np.float32)
        bufs = (np.array(state, np.float32, order="C", copy=True).reshape(1, self.state_size),
                np.empty((1, self.state_size), np.float32))
        tok_v, logits_v, buf_v = ov(tok), ov(logits), (ov(bufs[0]), ov(bufs[1]))
        bindings = []
        for src, dst in ((0, 1), (1, 0)):  # step i reads bufs[i % 2] and writes the other
            b = self.session.io_binding()
            b.bind_ortvalue_input(self._token, tok_v)
            b.bind_ortvalue_input(self._state, buf_v[src])
            b.bind_ortvalue_output(self._logits, logits_v)
            b.bind_ortvalue_output(self._new_state, buf_v[dst])
            bindings.append(b)
        run = self.session.run_with_iobinding
        try:
            for i, t in enumerate(tokens):
                tok[0] = t
                run(bindings[i & 1])
                out[i] = logits[0]
        except Exception as e:  # onnxruntime's own types: a shape the file does not take
            raise self._failed(e) from None
        return out, bufs[n & 1].copy()


class _Bound:
    """One thread's IOBinding of an ONNXStep at one batch size, over preallocated buffers."""

    __slots__ = ("shape", "tokens_shape", "tokens", "state", "logits", "new_state", "binding")

    def __init__(self, step: ONNXStep, n: int):
        ov = step._ort.OrtValue.ortvalue_from_numpy
        self.shape, self.tokens_shape = (n, step.state_size), (n,)
        self.tokens = np.zeros(n, np.int32)
        self.state = np.zeros((n, step.state_size), np.float32)
        self.logits = np.empty((n, step.vocab_size), np.float32)
        self.new_state = np.empty((n, step.state_size), np.float32)
        b = self.binding = step.session.io_binding()
        # the OrtValues wrap these numpy buffers (no copy); the binding keeps them alive
        b.bind_ortvalue_input(step._token, ov(self.tokens))
        b.bind_ortvalue_input(step._state, ov(self.state))
        b.bind_ortvalue_output(step._logits, ov(self.logits))
        b.bind_ortvalue_output(step._new_state, ov(self.new_state))
