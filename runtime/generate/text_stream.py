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
    """Holds back only what might still begin a stop string.

    Each stop string keeps its Knuth-Morris-Pratt state (the longest prefix of it that the text
    ends with), so a character costs amortized O(number of stops) whatever their lengths: a
    client's long stop string cannot stall the loop. A stop that completes ends at the newest
    character; when several complete at once, the longest wins, i.e. the one that starts
    earliest in the text (OpenAI's rule), whatever their order in the list."""

    def __init__(self, stops):
        self.stops = tuple(s for s in stops if s)
        self._fail = [_failure(s) for s in self.stops]
        self._state = [0] * len(self.stops)
        self.pending = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        """Adds one character (or a few); returns the text that is now safe to emit."""
        p, hold, match = self.pending, 0, 0
        for ch in text:
            p += ch
            hold = 0
            for j, s in enumerate(self.stops):
                k, fail = self._state[j], self._fail[j]
                while k and s[k] != ch:
                    k = fail[k - 1]
                if s[k] == ch:
                    k += 1
                if k == len(s):
                    match = max(match, k)
                self._state[j] = k
                hold = max(hold, k)
            if match:
                self.stopped = True
                self.pending = ""
                return p[: len(p) - match]
        self.pending = p[len(p) - hold :] if hold else ""
        return p[: len(p) - hold] if hold else p

    def flush(self) -> str:
        """At the end of generation: what was held back did not become a stop string."""
        out, self.pending = self.pending, ""
        return out


def _failure(s: str) -> list[int]:
    """KMP's failure function: f[i] = the length of the longest proper prefix of s[:i+1] that
    is also its suffix."""
    f, k = [0] * len(s), 0
    for i in range(1, len(s)):
        while k and s[i] != s[k]:
            k = f[k - 1]
        if s[i] == s[k]:
            k += 1
        f[i] = k
    return f


class TextStream:
    """Turns one row's ids into text. max_chars: ids to take at most (>= 1)."""

    __slots__ = ("chars", "eos", "max_chars", "matcher", "tokens", "pieces", "finish_reason",
                 "dfa", "dfa_state")

    def __init__(self, vocab, max_chars: int, stop=(), constraint=None):
        if max_chars < 1:
            raise ConfigError(f"max_chars {max_chars}: a text stream needs at least 1")
        self.chars, self.eos = vocab.chars, vocab.eos_id
        self.max_chars = max_chars
        stops = tuple(s for s in stop if s)
        self.matcher = StopMatcher(stops) if stops else None
        self.tokens: list[int] = []
        self.pieces: list[str] = []
        self.finish_reason: str | None = None
        # a regex's automaton (sampling/constrain: CharDFA) or None: the row follows it and
        # ends ("stop") where its match is complete and cannot go on
        self.dfa, self.dfa_state = constraint, 0

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
        if self.dfa is not None and t != self.eos:
            ch = self._follow(t, ch)
        if ch:
            self.pieces.append(ch)
        return ch

    def push_many(self, ids: list) -> str:
        """push() of each id in turn until the row finishes (the ids after that are left
        out); returns the text they make."""
        if self.finish_reason is not None:
            return ""
        if self.matcher is not None or self.dfa is not None:
            out = []
            for t in ids:
                out.append(self.push(t))
                if self.finish_reason is not None:
                    break
            return "".join(out)
        room = self.max_chars - len(self.tokens)
        take = ids[:room] if len(ids) > room else ids
        eos, text_ids = self.eos, take
        if eos is not None and eos in take:
            take = take[: take.index(eos) + 1]
            text_ids = take[:-1]
            self.finish_reason = "eos"
        elif len(take) >= room:
            self.finish_reason = "length"
        self.tokens.extend(take)
        ch = "".join(map(self.chars.__getitem__, text_ids))
        if ch:
            self.pieces.append(ch)
        return ch

    def _follow(self, t: int, ch: str) -> str:
        """The automaton takes character t. A complete match that cannot go on ends the row
        with "stop" (also when the length limit came at the same character); a match that
        could go on, but not within the characters left, ends it with "length"."""
        dfa, s = self.dfa, self.dfa_state
        s = self.dfa_state = int(dfa.trans[s, t]) if s >= 0 else -1
        if s < 0 or self.finish_reason not in (None, "length"):
            return ch
        if dfa.terminal[s]:
            reason = "stop"
        elif self.finish_reason is None and dfa.min_need[s] > self.max_chars - len(self.tokens):
            reason = "length"
        else:
            return ch
        if self.finish_reason is None and self.matcher is not None:
            ch += self.matcher.flush()
        self.finish_reason = reason
        return ch

    def text(self) -> str:
        return "".join(self.pieces)
