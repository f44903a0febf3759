"""One row's ids -> text: end-of-sequence, stop strings and the length limit, decided in one place.

    s = TextStream(vocab, max_chars=200, stop=("\\n\\n",))
    piece = s.push(id)        the text now safe to emit ('' while a stop string may be starting)
    s.finish_reason           None while the row goes on, then "eos", "stop" or "length"

Stop strings are never emitted; text is held back only while it may still begin one. Example
with stops ("END",): pushing "a", "E", "N", "b" emits "a", "", "", "ENb"; pushing "a", "E", "N",
"D" emits "a", "", "", "" and stops.
"""

from __future__ import annotations

from charwright.runtime.errors import ConfigError


class StopMatcher:
    """Holds back only what might still begin a stop string."""

    def __init__(self, stops):
        self.stops = tuple(s for s in stops if s)
        self.pending = ""
        self.stopped = False

    def feed(self, ch: str) -> str:
        """Adds one character; returns the text that is now safe to emit."""
        p = self.pending + ch
        for s in self.stops:
            i = p.find(s)
            if i >= 0:
                self.stopped = True
                self.pending = ""
                return p[:i]
        hold = 0
        for s in self.stops:
            for k in range(min(len(s) - 1, len(p)), hold, -1):
                if p.endswith(s[:k]):
                    hold = k
                    break
        self.pending = p[len(p) - hold :] if hold else ""
        return p[: len(p) - hold] if hold else p

    def flush(self) -> str:
        """At the end of generation: what was held back did not become a stop string."""
        out, self.pending = self.pending, ""
        return out


class TextStream:
    """Turns one row's ids into text. max_chars: ids to take at most (>= 1)."""

    __slots__ = ("chars", "eos", "max_chars", "matcher", "tokens", "pieces", "finish_reason")

    def __init__(self, vocab, max_chars: int, stop=()):
        if max_chars < 1:
            raise ConfigError(f"max_chars {max_chars}: a text stream needs at least 1")
        self.chars, self.eos = vocab.chars, vocab.eos_id
        self.max_chars = max_chars
        stops = tuple(s for s in stop if s)
        self.matcher = StopMatcher(stops) if stops else None
        self.tokens: list[int] = []
        self.pieces: list[str] = []
        self.finish_reason: str | None = None

    def push(self, t: int) -> str:
        tokens = self.tokens
        tokens.append(t)
        m = self.matcher
        if t == self.eos:
            self.finish_reason = "eos"
            ch = m.flush() if m is not None else ""
        else:
            ch = self.chars[t]
            if m is not None:
                ch = m.feed(ch)
                if m.stopped:
                    self.finish_reason = "stop"
                elif len(tokens) >= self.max_chars:
                    ch += m.flush()
                    self.finish_reason = "length"
            elif len(tokens) >= self.max_chars:
                self.finish_reason = "length"
        if ch:
            self.pieces.append(ch)
        return ch

    def text(self) -> str:
        return "".join(self.pieces)
