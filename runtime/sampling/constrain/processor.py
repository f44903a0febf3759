"""RegexMask: the constraint as a logits processor, one DFA state and one length budget per row.

    z[need[state] > left] = -inf       (need: runtime/sampling/constrain/compile.py)

`left` is the number of ids the row may still take (its max_chars minus what it took), so a move
is allowed only if the row can still reach acceptance within the budget: a length limit can never
end a row in the middle of a match. The chain renormalises over what is left by construction
(every later processor and the selector see -inf as removed), so the seeded draw is unchanged.
A row whose state is accepting with no way on (CharDFA.terminal) is finished by its TextStream
right after that character (finish_reason "stop"); it is never sampled again.
"""

from __future__ import annotations

import numpy as np

from charwright.runtime.errors import ConfigError
from charwright.runtime.sampling.processors import NEG_INF, LogitsProcessor

UNBOUNDED = 2**31 - 2  # a row with no length limit


class RegexMask(LogitsProcessor):
    name = "regex"
    stateful = True
    budgeted = True  # Sampler.join hands it each row's max_chars

    def __init__(self, dfa):
        self.dfa = dfa
        self.state = np.zeros(0, np.int64)
        self.left = np.zeros(0, np.int64)

    def join(self, prompts, max_chars=None) -> None:
        """Rows join at their start state; max_chars: None (no limit), an int for every row, or
        one per row. ConfigError if the shortest match is longer than a row's limit."""
        n = len(prompts)
        if max_chars is None:
            left = np.full(n, UNBOUNDED, np.int64)
        else:
            left = np.broadcast_to(np.asarray(max_chars, np.int64), (n,)).copy()
        if n:  # the start's cheapest move, not dist[0]: `(abc)*` needs 3 ids, not 0
            self.dfa.check_limit(int(left.min()), "the limit (max_chars / -n) of")
        self.state = np.concatenate([self.state, np.zeros(n, np.int64)])
        self.left = np.concatenate([self.left, left])

    def __call__(self, z):
        need = self.dfa.need
        if len(self.state) == 1:
            row = z[0]
            row[need[self.state[0]] > self.left[0]] = NEG_INF
            return z
        z[need[self.state] > self.left[:, None]] = NEG_INF
        return z

    def accept(self, ids) -> None:
        if len(ids) == 1:  # one row: scalar updates
            nxt = self.dfa.trans[self.state[0], ids[0]]
            if nxt >= 0:
                self.state[0] = nxt
            self.left[0] -= 1
            return
        nxt = self.dfa.trans[self.state, ids]
        self.state = np.where(nxt >= 0, nxt, self.state)  # the end-of-sequence id: the row ends
        self.left -= 1

    def take(self, keep) -> None:
        self.state, self.left = self.state[keep], self.left[keep]

    def row_state(self, i: int) -> dict:
        return {"dfa": int(self.state[i])}

    def set_row_state(self, i: int, d: dict) -> None:
        if "dfa" not in d:
            return
        s = d["dfa"]
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) \
                or not 0 <= s < self.dfa.states:
            raise ConfigError(f"row state dfa {s!r}: must be an integer in "
                              f"0..{self.dfa.states - 1} (a state of this pattern's automaton)")
        self.state[i] = s

    def describe(self) -> str:
        p = self.dfa.pattern
        return f"regex({p if len(p) <= 40 else p[:37] + '...'})"
