"""The sampling loop: prime the prompt, then step -> process logits -> select, per character.

    Generator(backend, vocab, prompts_ids, sampling, ...)   the stepping object
        .step() -> [(row, text)]    one character for every unfinished row
        .is_done()
        .logits                     float32 [active, vocab]: read or replace before step()
        .state                      float32 [active, state_size]

Rows are advanced together in one batch of the step graph; a row that finishes (length, stop
string, end-of-sequence) leaves the batch, its state dropped with np.take. Each row samples from
its own generator seeded by (seed, row), so its text does not depend on the batch around it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import ConfigError
from .processors import History
from .sampling import SamplingConfig, build_chain, build_selector, resolve_seed
from .stopping import StopMatcher


def prime(backend, prompts: list[np.ndarray]):
    """Runs every prompt through the step graph; returns (logits [B, V], state [B, S]).

    Prompts of equal length run as one batch; others are primed one by one and stacked.
    """
    lengths = {len(p) for p in prompts}
    if min(lengths) < 1:
        raise ConfigError("a prompt must hold at least one id")
    if len(lengths) == 1:
        ids = np.stack(prompts).astype(np.int32)
        state = backend.initial_state(len(prompts))
        for t in range(ids.shape[1]):
            logits, state = backend.step(np.ascontiguousarray(ids[:, t]), state)
        return logits, state
    outs = [prime(backend, [p]) for p in prompts]
    return np.concatenate([o[0] for o in outs]), np.concatenate([o[1] for o in outs])


@dataclass
class Row:
    """One continuation's progress."""

    tokens: list = field(default_factory=list)
    text: list = field(default_factory=list)
    finish_reason: str | None = None
    matcher: StopMatcher | None = None


class Generator:
    def __init__(self, backend, vocab, prompts: list[np.ndarray], sampling: SamplingConfig,
                 max_chars: int, stop=(), seed: int | None = None, row_ids=None):
        if max_chars < 0:
            raise ConfigError(f"max_chars {max_chars}: must be >= 0")
        self.backend, self.vocab = backend, vocab
        self.sampling = sampling
        self.seed = seed if seed is not None else resolve_seed(sampling)
        B = len(prompts)
        self.chain = build_chain(sampling)
        self.selector = build_selector(sampling, B, vocab.size, self.seed, row_ids)
        self.history = None
        if self.chain.needs_history:  # the prompt counts towards the penalty window
            self.history = History(B, vocab.size, sampling.repetition_window, prompts)
        self.rows = [Row(matcher=StopMatcher(stop) if stop else None) for _ in range(B)]
        self.active = np.arange(B)
        self.max_chars = max_chars
        self.count = 0
        if max_chars == 0:
            for r in self.rows:
                r.finish_reason = "length"
            self.active = self.active[:0]
            self.logits = self.state = None
        else:
            self.logits, self.state = prime(backend, prompts)
        self._eos = vocab.eos_id
        self._chars = vocab.chars

    def is_done(self) -> bool:
        return len(self.active) == 0

    def step(self) -> list[tuple[int, str]]:
        """Chooses one id per active row; returns the text each row may now emit."""
        z = self.logits
        if len(self.chain):
            z = self.chain(z, self.history)
        ids = self.selector(z)
        self.count += 1
        out, keep = [], []
        chars, eos = self._chars, self._eos
        last = self.count >= self.max_chars
        for j, row_i in enumerate(self.active):
            row = self.rows[row_i]
            t = int(ids[j])
            row.tokens.append(t)
            if t == eos:
                row.finish_reason = "eos"
                if row.matcher:
                    out.append((row_i, row.matcher.flush()))
                continue
            ch = chars[t]
            if row.matcher is not None:
                ch = row.matcher.feed(ch)
                if row.matcher.stopped:
                    row.finish_reason = "stop"
                    out.append((row_i, ch))
                    continue
                if last:
                    ch += row.matcher.flush()
            if ch:
                out.append((row_i, ch))
            if last:
                row.finish_reason = "length"
            else:
                keep.append(j)
        for row_i, ch in out:
            if ch:
                self.rows[row_i].text.append(ch)
        if self.history is not None:
            self.history.push(ids.astype(np.int32))
        if len(keep) < len(self.active):
            self._shrink(np.asarray(keep, np.int64))
            ids = ids[keep]
        if len(self.active):
            self.logits, self.state = self.backend.step(ids.astype(np.int32), self.state)
        return out

    def iter_text(self):
        """Yields the single row's text as it is produced: the per-character hot path.

        The same decisions as step() for a batch of one, with every lookup bound to a local and
        one reused int32 [1] buffer for the next token.
        """
        if len(self.rows) != 1:
            raise ConfigError("iter_text() is for a single row; use step() for batches")
        if self.is_done():
            return
        row = self.rows[0]
        tokens, text = row.tokens, row.text
        matcher = row.matcher
        chain = self.chain.compiled() if len(self.chain) else None
        history = self.history
        pick = self.selector.pick1
        step = self.backend.step
        chars, eos = self._chars, self._eos
        buf = np.zeros(1, np.int32)
        logits, state = self.logits, self.state
        n = self.max_chars
        for i in range(1, n + 1):
            t = pick(logits if chain is None else chain(logits, history))
            tokens.append(t)
            if t == eos:
                row.finish_reason = "eos"
                if matcher is not None:
                    tail = matcher.flush()
                    if tail:
                        text.append(tail)
                        yield tail
                break
            ch = chars[t]
            if matcher is not None:
                ch = matcher.feed(ch)
                if matcher.stopped:
                    row.finish_reason = "stop"
                    if ch:
                        text.append(ch)
                        yield ch
                    break
                if i == n:
                    ch += matcher.flush()
            if ch:
                text.append(ch)
                yield ch
            if i == n:
                row.finish_reason = "length"
                break
            buf[0] = t
            if history is not None:
                history.push(buf)
            logits, state = step(buf, state)
        self.count = len(tokens)
        self.active = self.active[:0]
        self.logits, self.state = logits, state

    def _shrink(self, keep: np.ndarray) -> None:
        self.active = self.active[keep]
        self.state = np.take(self.state, keep, axis=0)
        self.selector.take(keep)
        if self.history is not None:
            self.history.take(keep)

    def texts(self) -> list[str]:
        return ["".join(r.text) for r in self.rows]
