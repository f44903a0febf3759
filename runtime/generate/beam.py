"""Beam search: its own driver, not a processor.

Keeps the `width` best partial continuations by total log-probability. A beam that produces the
end-of-sequence id is finished. Final ranking uses length normalisation:
    score = logprob / length ** length_penalty   (0 disables it; 1 is the per-character mean)
The state follows the surviving beams with np.take on the batch axis.

With a constraint (a regex's CharDFA, sampling/constrain), each beam follows its own DFA state:
candidates the automaton does not allow, or that could no longer reach acceptance within the
characters left, are dropped (scores stay the model's own log-probabilities); a beam whose match
is complete and cannot go on is finished, and every beam left at the length limit is a match.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from charwright.runtime.errors import ConfigError
from charwright.runtime.sampling.processors import log_softmax

MAX_WIDTH = 256  # candidates per step = width x vocab; wider beams only cost memory


@dataclass(frozen=True)
class Beam:
    text: str
    tokens: tuple
    logprob: float  # natural log
    score: float  # length-normalised logprob, the ranking key
    finished: bool  # ended with the end-of-sequence symbol


def beam_search(backend, vocab, logits: np.ndarray, state: np.ndarray, max_chars: int,
                width: int, length_penalty: float = 1.0, n_best: int | None = None,
                constraint=None) -> list[Beam]:
    """Args: logits float32 [1, V] and state [1, S] after priming the prompt; constraint: a
    CharDFA over this vocabulary, or None."""
    if isinstance(width, bool) or not isinstance(width, int) or not 1 <= width <= MAX_WIDTH:
        raise ConfigError(f"beam width {width!r}: must be in 1..{MAX_WIDTH}")
    if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 1:
        raise ConfigError(f"max_chars {max_chars!r}: beam search needs at least 1")
    lp = length_penalty
    if not isinstance(lp, (int, float)) or not math.isfinite(lp) or not -10 <= lp <= 10:
        raise ConfigError(f"length_penalty {lp!r}: must be in [-10, 10]")
    n_best = width if n_best is None else n_best
    if isinstance(n_best, bool) or not isinstance(n_best, int) or not 1 <= n_best <= width:
        raise ConfigError(f"n_best {n_best!r}: must be in 1..{width}")
    eos = vocab.eos_id
    V = logits.shape[1]
    seqs = np.zeros((1, 0), np.int32)
    scores = np.zeros(1)
    dfa, states = constraint, np.zeros(1, np.int64)
    if dfa is not None:  # the start's cheapest move, not dist[0]: `(abc)*` needs 3, not 0
        dfa.check_limit(max_chars)
    finished: list[tuple[np.ndarray, float]] = []

    def norm(lp, n):
        return lp / (max(n, 1) ** length_penalty) if length_penalty else lp

    for step in range(max_chars):
        cand = scores[:, None] + log_softmax(logits)  # [beams, V]
        if dfa is not None:
            cand[dfa.need[states] > max_chars - step] = -np.inf
        cand = cand.ravel()
        k = min(len(cand), 2 * width)
        top = np.argpartition(-cand, k - 1)[:k]
        top = top[np.argsort(-cand[top], kind="stable")]
        keep_beam, keep_tok, keep_score = [], [], []
        for c in top:
            if not np.isfinite(cand[c]):  # sorted: only masked candidates follow
                break
            b, t = divmod(int(c), V)
            if t == eos or (dfa is not None and  # a match that cannot go on (in the budget)
                            dfa.min_need[dfa.trans[states[b], t]] > max_chars - step - 1):
                finished.append((np.append(seqs[b], t), float(cand[c])))
                continue
            keep_beam.append(b)
            keep_tok.append(t)
            keep_score.append(float(cand[c]))
            if len(keep_beam) == width:
                break
        if not keep_beam:
            break
        idx = np.asarray(keep_beam)
        if dfa is not None:
            states = dfa.trans[states[idx], np.asarray(keep_tok)].astype(np.int64)
        seqs = np.concatenate([seqs[idx], np.asarray(keep_tok, np.int32)[:, None]], axis=1)
        scores = np.asarray(keep_score)
        if step + 1 < max_chars:
            logits, state = backend.step(np.asarray(keep_tok, np.int32), np.take(state, idx, 0))
    results = [(s, lp, True) for s, lp in finished]
    live = range(len(seqs)) if dfa is None else np.flatnonzero(dfa.accept[states])
    results += [(seqs[i], float(scores[i]), False) for i in live]  # with a regex: matches only
    beams = [Beam(vocab.decode(s), tuple(int(x) for x in s), lp, norm(lp, len(s)), fin)
             for s, lp, fin in results]
    beams.sort(key=lambda b: -b.score)
    return beams[:n_best]
