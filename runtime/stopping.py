"""Stop strings while streaming: hold back only what might still begin a stop string.

Example with stops ("END",): feeding "a", "E", "N", "b" emits "a", "", "", "ENb"; feeding
"a", "E", "N", "D" emits "a", "", "", "" and stops; the stop text itself is never emitted.
"""

from __future__ import annotations


class StopMatcher:
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
