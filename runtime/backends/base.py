"""The one interface every backend implements, and what backends share."""

from __future__ import annotations


import numpy as np

from charwright.runtime.errors import BundleError


class StepBackend:
    """One step of the recurrent model with explicit state.

    step(tokens: int32 [batch], state: float32 [batch, state_size])
        -> (logits: float32 [batch, vocab], new_state: float32 [batch, state_size])

    `thread_safe` says whether one instance may serve several threads (from the backend's
    declaration in backends/__init__.py); runtime/model.py gives each thread its own otherwise.
    State is one plain array, so beam search and batch shrinking reorder it with np.take in one
    shared place, never inside a backend.

    A backend may also offer replay(tokens [N], state) -> (logits float32 [N, vocab], state):
    a teacher-forced pass at batch 1 that verify.score.replay uses instead of N calls of step().
    """

    name = "base"
    thread_safe = False
    batch_invariant = False  # the file's manifest entry says so (set by open_backend)

    def __init__(self, state_size: int, vocab_size: int, precision: str, path: str):
        self.state_size = state_size
        self.vocab_size = vocab_size
        self.precision = precision
        self.path = path

    @classmethod
    def from_bundle(cls, bundle, entry, threads: int = 1) -> "StepBackend":
        """The backend for one file entry of a loaded bundle, from the file's checked bytes.

        This default serves the runtimes that load a model file (onnx, litert): their constructor
        takes (path, state_size, vocab_size, precision, threads, inputs, outputs, data=bytes)."""
        return cls(bundle.path(entry), bundle.state_size, bundle.vocab_size, entry.precision,
                   threads, entry.inputs, entry.outputs, data=bundle.read(entry))

    def initial_state(self, batch: int) -> np.ndarray:
        return np.zeros((batch, self.state_size), np.float32)

    def step(self, tokens: np.ndarray, state: np.ndarray):
        raise NotImplementedError

    def fused_io(self, batch: int):
        """What the compiled generation loop (Generator.advance) steps this backend with, at
        `batch` rows: (invoke, args, token_in, state_in, logits, new_state), where invoke(*args)
        is one step from token_in int32 [batch] and state_in float32 [batch, state_size] into
        logits float32 [batch, vocab] and new_state float32 [batch, state_size], buffers the
        backend owns and keeps in place until its next step() or fused_io() call on this
        thread. None (this default): the backend has no such buffers; the loop calls step()."""
        return None

    def step_failed(self, e: Exception) -> Exception:
        """The exception to raise for an error raised by fused_io's invoke."""
        return e

    def check_shapes(self, state_dim, logits_dim) -> None:
        """BundleError unless the file's state and logits widths (None: dynamic, not judged)
        match the manifest's state size and vocabulary."""
        for what, got, want, fix in (
                ("state", state_dim, self.state_size, "state.size"),
                ("logits", logits_dim, self.vocab_size, "the vocabulary size")):
            if got is not None and got != want:
                raise BundleError(f"{self.path}: the file's {what} is {got} wide, the manifest's "
                                  f"{fix} is {want}; the file belongs to another model or the "
                                  "manifest was edited")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.precision} {self.path}>"
