"""Exact regex-constrained generation: a pattern compiles to a DFA over the vocabulary's ids
(parse.py -> compile.py), applied by one processor of the chain (processor.py) and followed by
each row's TextStream, which ends a row whose match is complete and cannot go on.

    dfa = dfa_for(r"(yes|no)", model.vocab)     # cached per (pattern, vocabulary)
    SamplingConfig(regex=r"[A-Z][a-z]+")        # through the one loop
    SamplingConfig(choices=("yes", "no"))       # a choice list is a regex, escaped and alternated
"""

from charwright.runtime.sampling.constrain.compile import (  # noqa: F401
    CACHE, MAX_CELLS, MAX_NFA_STATES, MAX_POSITIONS, MAX_SECONDS, MAX_STATES, MAX_WORK, CharDFA,
    DFACache, choices_pattern, compile_dfa, dfa_for)
from charwright.runtime.sampling.constrain.parse import MAX_PATTERN_CHARS, parse  # noqa: F401
from charwright.runtime.sampling.constrain.processor import RegexMask  # noqa: F401
