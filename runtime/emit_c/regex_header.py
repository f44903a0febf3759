"""`emit-c --regex PATTERN`: the pattern's DFA (runtime/sampling/constrain) as tables in model.h,
compact: ids that no state tells apart share one column (cw_dfa_class), so the transition table
is states x classes instead of states x vocabulary.

    CW_REGEX 1, CW_REGEX_PATTERN "...", CW_DFA_STATES, CW_DFA_CLASSES
    cw_dfa_class[CW_VOCAB]                       id -> column
    cw_dfa_next[CW_DFA_STATES * CW_DFA_CLASSES]  next state, -1: not allowed
    cw_dfa_dist[CW_DFA_STATES]                   fewest characters to acceptance
    cw_dfa_min_need[CW_DFA_STATES]               the cheapest move's need (INT_MAX: none)
    cw_dfa_accept[CW_DFA_STATES]                 1: accepting (the end-of-sequence id allowed)

runtime.c's cw_generate applies them exactly as RegexMask and TextStream do in Python: id t is
allowed at state s with `left` ids to go iff it is the end-of-sequence id and s accepts, or
next[s][t] >= 0 and 1 + dist[next] <= left; the row ends after a character whose state has
min_need > the ids left (a complete match that cannot go on, or not within the budget).
"""

from __future__ import annotations

import numpy as np

from charwright.runtime.emit_c.literals import INT32_MAX, Header, ints, lit_int, lit_string


def regex_tables(dfa) -> tuple[str, dict]:
    """model.h's lines for `dfa` (a CharDFA over the bundle's vocabulary, end-of-sequence id
    included) and its sizes in bytes {"flash": ..., "tables": ...}."""
    cols, cls = np.unique(dfa.trans.T, axis=0, return_inverse=True)
    nxt = np.ascontiguousarray(cols.T)  # [S, K]
    S, K = nxt.shape
    h = Header()
    h.define("CW_REGEX", lit_int(1, 1, 1))
    h.define("CW_REGEX_PATTERN", lit_string(dfa.pattern))
    h.define("CW_DFA_STATES", lit_int(S, 1, INT32_MAX))
    h.define("CW_DFA_CLASSES", lit_int(K, 1, INT32_MAX))
    h.array("int", "cw_dfa_class", ints(cls.reshape(-1).astype(np.int64)), len(cls.reshape(-1)))
    h.array("int", "cw_dfa_next", ints(nxt.astype(np.int64)), S * K)
    h.array("int", "cw_dfa_dist", ints(dfa.dist.astype(np.int64)), S)
    h.array("int", "cw_dfa_min_need", ints(dfa.min_need.astype(np.int64)), S)
    h.array("unsigned char", "cw_dfa_accept", ints(dfa.accept.astype(np.int64)), S)
    flash = 4 * (len(cls.reshape(-1)) + S * K + 2 * S) + S
    return h.text(), {"states": S, "classes": K, "flash_bytes": flash}
