"""A loaded bundle ready to generate: `charwright.runtime.load(...)` returns a Model.

One Model may serve several threads at once: onnxruntime sessions and the numpy backend are
shared (both are thread-safe), while LiteRT interpreters are not, so each thread gets its own.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from charwright.runtime.backends import open_backend, spec_for_backend
from charwright.runtime.generate.beam import Beam, beam_search
from charwright.runtime.bundle.reader import load_bundle
from charwright.runtime.errors import ConfigError
from charwright.runtime.generate.batch import encode_prompt, start
from charwright.runtime.generate.generator import run
from charwright.runtime.generate.priming import prime
from charwright.runtime.verify.score import log_likelihood

DEMO_BUNDLE = Path(__file__).resolve().parent / "demo"
SCORE_CHUNK = 4096


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str  # "eos", "stop" or "length"
    tokens: tuple  # the ids chosen (the end-of-sequence id included)


@dataclass(frozen=True)
class Score:
    logprob: float  # natural log of p(text[1:] | text[0])
    chars: int  # predicted characters (len(text) - 1)
    bits_per_char: float


class Model:
    def __init__(self, bundle, entry, threads: int = 1):
        self.bundle, self.entry, self.threads = bundle, entry, threads
        self.vocab = bundle.vocab
        self._local = threading.local()
        self._shared = open_backend(bundle, entry, threads)
        self._thread_safe = self._shared.thread_safe

    def __repr__(self):
        return f"<Model {self.entry.path} ({self.entry.format}, {self.entry.precision})>"

    @property
    def backend(self):
        """This thread's backend (the shared one where the runtime is thread-safe)."""
        if self._thread_safe or threading.current_thread() is threading.main_thread():
            return self._shared
        be = getattr(self._local, "backend", None)
        if be is None:
            be = self._local.backend = open_backend(self.bundle, self.entry, self.threads)
        return be

    # ---- generation ---------------------------------------------------------------------------

    def encode_prompt(self, prompt: str, unknown: str = "error", replacement=None) -> np.ndarray:
        """Prompt -> ids to prime with (generate.batch.encode_prompt)."""
        return encode_prompt(self.vocab, prompt, unknown, replacement)

    def start(self, prompts, max_chars=200, sampling=None, stop=(), unknown="error",
              replacement=None, row_ids=None):
        """A running batch for `prompts`: (Generator, {key: TextStream}, [key per prompt]); see
        generate.batch.start."""
        return start(self.backend, self.vocab, prompts, max_chars, sampling, stop, unknown,
                     replacement, row_ids)

    def stream(self, prompt: str = "", max_chars: int = 200, sampling=None, stop=(),
               unknown="error", replacement=None) -> Iterator[str]:
        """Returns an iterator of text chunks as they are produced (held back only while they
        might begin a stop string). Bad input raises here, before anything is yielded."""
        gen, streams, _ = self.start([prompt], max_chars, sampling, stop, unknown, replacement)
        return (piece for _, piece in run(gen, streams))

    def generate(self, prompt: str = "", max_chars: int = 200, sampling=None, stop=(),
                 unknown="error", replacement=None) -> str:
        return "".join(self.stream(prompt, max_chars, sampling, stop, unknown, replacement))

    def complete(self, prompts, max_chars: int = 200, sampling=None, stop=(), unknown="error",
                 replacement=None, row_ids=None) -> list[Completion]:
        """N continuations advanced together in one batch (row i seeded by (seed, i))."""
        prompts = list(prompts)
        gen, streams, keys = self.start(prompts, max_chars, sampling, stop, unknown,
                                        replacement, row_ids)
        for _ in run(gen, streams):
            pass
        return [Completion("", "length", ()) if k is None else
                Completion(streams[k].text(), streams[k].finish_reason, tuple(streams[k].tokens))
                for k in keys]

    def generate_batch(self, prompts, max_chars: int = 200, sampling=None, stop=(),
                       unknown="error", replacement=None) -> list[str]:
        """The texts of complete(): N continuations advanced together in one batch."""
        return [c.text for c in self.complete(prompts, max_chars, sampling, stop, unknown,
                                              replacement)]

    def session(self, seed: int | None = None, row: int = 0):
        """A Session on this model: feed, generate, snapshot, restore, fork, save, load
        (generate/session.py)."""
        from charwright.runtime.generate.session import Session

        return Session(self, seed, row)

    def beam_search(self, prompt: str = "", max_chars: int = 100, width: int = 4,
                    length_penalty: float = 1.0, n_best: int | None = None,
                    unknown="error", replacement=None) -> list[Beam]:
        ids = self.encode_prompt(prompt, unknown, replacement)
        logits, state = prime(self.backend, [ids])
        return beam_search(self.backend, self.vocab, logits, state, max_chars, width,
                           length_penalty, n_best)

    def score(self, text: str, unknown="error", replacement=None, on_progress=None) -> Score:
        """Log-probability of text[1:] given text[0] (and bits/char) under the model.

        on_progress(done, total) is called as the replay advances (chunks of 4,096 chars)."""
        ids = self.vocab.encode(text, unknown=unknown, replacement=replacement)
        if len(ids) < 2:
            raise ConfigError("scoring needs a text of at least two characters")
        total = log_likelihood(self.backend, ids, SCORE_CHUNK, on_progress)
        n = len(ids) - 1
        return Score(total, n, -total / n / math.log(2))


def load(bundle=None, backend: str = "onnx", precision: str | None = None,
         threads: int = 1) -> Model:
    """Loads a bundle (default: the demo bundle shipped in the package) for generation.

    Args:
        bundle: the bundle directory.
        backend: "onnx" (onnxruntime), "litert" (ai-edge-litert) or "numpy" (reference).
        precision: a precision the bundle holds for that backend (default: the fastest whose
            parity passed, batch-invariant files first).
        threads: intra-op threads for the backend.
    Raises:
        BundleError: missing or damaged bundle or file; ConfigError: unknown backend;
        BackendUnavailable: the backend's package is not installed.
    """
    spec = spec_for_backend(backend)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"threads {threads}: must be >= 1")
    root = Path(bundle) if bundle is not None else DEMO_BUNDLE
    b = load_bundle(root, verify=False)
    entry = b.find(spec.format, precision)
    return Model(b, entry, threads)
