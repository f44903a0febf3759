"""A model file replayed over ids at batch 1: its logits, the log-likelihood of a text (also
one that arrives in pieces, memory flat in its length), bits per character, and its greedy
continuation. Used by parity (parity.py), `charwright score` and Model.score.

    logits, state = replay(backend, tokens)            tokens int32 [N] -> float32 [N, vocab]
    logprob, n = log_likelihood_stream(backend, id_pieces)
    logprob, n = score_text(backend, vocab, text_pieces, unknown="error", name="text.txt")
    bits_per_char(logits, tokens)
"""

from __future__ import annotations

import math

import numpy as np

from charwright.runtime.errors import BundleError, ConfigError
from charwright.runtime.sampling.processors import log_softmax
from charwright.runtime.verify.text_source import encode_pieces

LN2 = math.log(2.0)


def replay(backend, tokens: np.ndarray, state: np.ndarray | None = None):
    """Steps over tokens [N] at batch 1 from `state` (zeros by default).

    Returns (logits float32 [N, V], the state after the last token). Uses the backend's own
    replay() where it has one (onnx: preallocated IO bindings), else N calls of step()."""
    state = backend.initial_state(1) if state is None else state
    fast = getattr(backend, "replay", None)
    if fast is not None:
        return fast(np.asarray(tokens, np.int32), state)
    out = np.empty((len(tokens), backend.vocab_size), np.float32)
    buf = np.zeros(1, np.int32)
    for i, t in enumerate(tokens):
        buf[0] = t
        logits, state = backend.step(buf, state)
        if i == 0:
            _check_step_shapes(backend, logits, state)
        out[i] = logits[0]
    return out, state


def _check_step_shapes(backend, logits, state) -> None:
    want = ((1, backend.vocab_size), (1, backend.state_size))
    if (np.shape(logits), np.shape(state)) != want:
        raise BundleError(f"{backend.path}: one step gives logits {np.shape(logits)} and state "
                          f"{np.shape(state)}, the manifest says {want[0]} and {want[1]}; the "
                          "file belongs to another model or the manifest was edited")


def log_likelihood(backend, ids: np.ndarray, chunk: int = 4096, on_progress=None) -> float:
    """Sum over i of ln p(ids[i+1] | ids[:i+1]) from a zero state, replayed in chunks (memory:
    [chunk, vocab] logits). on_progress(done, total) is called after each chunk."""
    n = max(len(ids) - 1, 0)
    report = None if on_progress is None else (lambda done: on_progress(done, n))
    return log_likelihood_stream(backend, [ids], chunk, report)[0]


def log_likelihood_stream(backend, id_chunks, chunk: int = 4096,
                          on_progress=None) -> tuple[float, int]:
    """log_likelihood over ids that arrive in pieces (an iterable of int arrays [n_i]), the
    state and the last id carried across pieces, so that memory is flat in the text's length:
    [chunk, vocab] logits and one piece at a time. Returns (sum of ln p, number of predicted
    ids, i.e. all ids but the first). on_progress(done) is called after each replayed chunk."""
    state, last, total, done = None, None, 0.0, 0
    for ids in id_chunks:
        ids = np.asarray(ids, np.int32)
        if last is None:
            if not len(ids):
                continue
            last, ids = int(ids[0]), ids[1:]
        for i in range(0, len(ids), chunk):
            targets = ids[i : i + chunk]
            inputs = np.concatenate((np.array([last], np.int32), targets[:-1]))
            logits, state = replay(backend, inputs, state)
            total += float(log_softmax(logits)[np.arange(len(targets)), targets].sum())
            last, done = int(targets[-1]), done + len(targets)
            if on_progress is not None:
                on_progress(done)
    return total, done


def score_text(backend, vocab, pieces, unknown: str = "error", name: str = "text"):
    """log_likelihood_stream() of a text given as pieces of str (verify.text_source reads
    them), encoded by `vocab` with `unknown` ("error", "skip" or "replace"). Returns (sum of
    ln p, predicted characters).

    Raises VocabularyError for characters outside the vocabulary (naming their offsets in the
    whole text), ConfigError naming `name` for a text under two characters."""
    logprob, n = log_likelihood_stream(backend, encode_pieces(vocab, pieces, unknown))
    if n < 1:
        raise ConfigError(f"{name}: scoring needs a text of at least two characters")
    return logprob, n


def bits_of(logprob: float, n: int) -> float:
    """Bits per character of n predicted characters whose ln p sum to `logprob`."""
    return -logprob / n / LN2


def teacher_forced(backend, tokens: np.ndarray) -> np.ndarray:
    """Logits float32 [N, V] after each of tokens[:i+1], from a zero state, batch 1."""
    return replay(backend, tokens)[0]


def greedy_rollout(backend, prompt: np.ndarray, n: int) -> np.ndarray:
    """The file's greedy continuation of `prompt` (at least one id), n ids."""
    logits, state = replay(backend, prompt)
    logits = logits[-1:]
    buf = np.zeros(1, np.int32)
    out = np.empty(n, np.int32)
    for i in range(n):
        out[i] = buf[0] = int(np.argmax(logits[0]))
        logits, state = backend.step(buf, state)
    return out


def bits_per_char(logits: np.ndarray, tokens: np.ndarray) -> float:
    """Mean -log2 p(tokens[i+1] | logits[i]) over the text."""
    if len(tokens) < 2:
        return float("nan")
    lp = log_softmax(logits[:-1])
    return float(-lp[np.arange(len(tokens) - 1), tokens[1:]].mean() / LN2)
