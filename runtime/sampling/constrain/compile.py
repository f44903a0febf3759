"""Syntax tree (parse.py) + vocabulary -> CharDFA: a deterministic automaton over the vocabulary's
ids, built by the subset construction over a Thompson NFA, then trimmed and minimised.

Only co-accessible states are kept (every state can still reach acceptance), so a row can never
walk into a dead end. Per state: a transition row int32[V] (-1: not allowed), whether it
accepts, and `dist`, the fewest characters from it to acceptance; `need[s, t]` is what a move
costs in the length budget (1 + dist of the state it leads to; the end-of-sequence id, where the
vocabulary has one, needs 1 and only from an accepting state).

A row must be allowed at least `min_chars` = min_need[0] ids (the start's cheapest move), not
dist[0]: `(abc)*` matches "" but, with no end-of-sequence id, nothing can end an empty text, so
it needs 3 (CharDFA.check_limit). A pattern whose start accepts with no move at all (`[一]?` over
a vocabulary without 一) is refused: it matches only the empty string there.

Bounds, each refused with one line (ConfigError) before it costs much: the expanded pattern
(MAX_POSITIONS character positions once repeats are unrolled: `a{1000000}`; a pattern without
repeats, such as a list of choices, only the pattern's own length), the Thompson NFA
(MAX_NFA_STATES, counted from the tree before building, empty groups and zero repeats included:
`((a{0}){1000}){1000}`), the automaton (MAX_STATES states, MAX_CELLS states x ids:
`(a|b)*a(a|b){30}`), and a deterministic work budget (MAX_WORK counted steps: a fullmatch per
class and character, a subset state's own cost and its big-integer operations), so that whether a
pattern compiles does not depend on the machine's load; MAX_SECONDS is a wall-clock backstop only.
DFACache keeps refusals too (bounded), so a server asked the same bad pattern again answers at once.

(About 580 lines: NFA, subset construction, minimisation and the counted work budget share
one cost model; the next split is minimisation into its own module.)
"""

from __future__ import annotations

import re
import sys
import threading
import time
import warnings
from collections import OrderedDict, deque
from dataclasses import dataclass

import numpy as np

from charwright.runtime.errors import ConfigError
from charwright.runtime.sampling.constrain.parse import MAX_PATTERN_CHARS, parse, refuse

MAX_POSITIONS = 5_000  # characters of the pattern once every repeat is unrolled
# the same for a pattern without repeats (a list of choices: linear, a trie): only the
# pattern's own length bound (parse.MAX_PATTERN_CHARS) applies
MAX_CHOICE_CHARS = MAX_PATTERN_CHARS
MAX_NFA_STATES = 200_000  # Thompson states once repeats are unrolled, empty ones counted too
# a deterministic work budget (steps counted by _classes and _subsets), so that whether a pattern
# compiles does not depend on the machine's load; MAX_SECONDS is only a backstop past it
MAX_WORK = 32_000_000  # about 1 s on one core of the machine it was set on
MAX_STATES = 20_000
MAX_CELLS = 1 << 21  # states x vocabulary ids: two int32 tables of at most 8 MiB each
MAX_SECONDS = 5.0  # wall-clock backstop; MAX_WORK refuses first on any ordinary machine
MAX_SUBSET_BITS = 1 << 27  # the NFA-state sets the construction holds (16 MiB of bitmasks)
# Moore's refinement is O(states^2) at worst: larger DFAs, or one not done in time, stay as built
MINIMISE_MAX_STATES, MINIMISE_SECONDS = 4_000, 1.0
MINIMISE_CELLS = 1_000_000  # states x (classes + 2) over all rounds: deterministic, ~0.15 s
BLOCKED = np.int32(2**31 - 1)  # `need` of a move that is not allowed


@dataclass(frozen=True, eq=False)
class CharDFA:
    """A compiled pattern over one vocabulary. State 0 is the start."""

    pattern: str
    trans: np.ndarray  # int32 [S, V]: next state; -1 = not allowed (the EOS column: always -1)
    accept: np.ndarray  # bool [S]
    dist: np.ndarray  # int32 [S]: fewest characters from the state to acceptance
    need: np.ndarray  # int32 [S, V]: 1 + dist after the move; BLOCKED = not allowed
    terminal: np.ndarray  # bool [S]: accepting with no character to go on with
    min_need: np.ndarray  # int32 [S]: need[s].min(); a row with fewer ids left must end here
    eos_id: int | None
    compile_ms: float
    work: int = 0  # the steps counted against MAX_WORK (deterministic: not the load's)

    @property
    def states(self) -> int:
        return len(self.accept)

    @property
    def shortest(self) -> int:
        """The length of the shortest match."""
        return int(self.dist[0])

    @property
    def min_chars(self) -> int:
        """The fewest ids a row must be allowed to take from the start: the cheapest first move
        (the end-of-sequence id counts 1). Above `shortest` when the start accepts and nothing
        can end the text there: `(abc)*` without an end-of-sequence id needs 3."""
        return int(self.min_need[0])

    def check_limit(self, max_chars: int, what: str = "max_chars (-n)") -> None:
        """ConfigError unless a row limited to `max_chars` ids can produce a full match."""
        n = self.min_chars
        if n > max_chars:
            which = "shortest match" if n == self.shortest else \
                "shortest non-empty match (nothing can end an empty text)"
            raise ConfigError(f"regex {self.pattern!r}: its {which} is {n} characters, more "
                              f"than {what} {max_chars}")

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.trans, self.accept, self.dist, self.need, self.terminal))


def choices_pattern(choices) -> str:
    """A list of texts as one pattern: each escaped, alternated."""
    return "(?:" + "|".join(re.escape(c) for c in choices) + ")"


def compile_dfa(pattern: str, chars, eos_id: int | None = None) -> CharDFA:
    """The automaton of `pattern` over the characters `chars` (id order; eos_id: the id after
    them, or None). ConfigError for a bad, unsupported, too large or unspellable pattern."""
    t0 = time.perf_counter()
    deadline = t0 + MAX_SECONDS
    tree = parse(pattern)
    chars = list(chars)
    # without repeats (a list of choices) the size is linear in the text: a larger bound
    size = _size(tree, pattern, MAX_POSITIONS if _has_rep(tree) else MAX_CHOICE_CHARS)
    if size == 0:
        refuse(pattern, "matches only the empty string: nothing to generate")
    _nfa_states(tree, pattern)
    work = _Work(pattern, deadline)
    classes, labels, (missing, empty) = _classes(tree, chars, pattern, work)
    nfa = _NFA(labels)
    nfa.pattern, nfa.deadline = pattern, deadline
    start, final = nfa.fragment(tree)
    nfa.final = final
    table, accept = _subsets(nfa, start, final, classes.max() + 1, pattern, len(chars), work)
    table, accept, dist = _trim(table, accept, pattern, missing, empty)
    if missing:
        refuse(pattern, f"needs {_name(missing)}, which the vocabulary lacks")
    if len(accept) <= MINIMISE_MAX_STATES:
        table, accept, dist = _minimise(table, accept, dist, time.perf_counter() + MINIMISE_SECONDS,
                                        MINIMISE_CELLS)
    return _expand(pattern, table, accept, dist, classes, eos_id, t0, work.used)


def _name(chars) -> str:
    return ", ".join(f"{c!r} (U+{ord(c):04X})" for c in sorted(set(chars))[:8]) + \
        (" ..." if len(set(chars)) > 8 else "")


class _Work:
    """The deterministic work budget (MAX_WORK steps), and the wall-clock backstop."""

    def __init__(self, pattern: str, deadline: float):
        self.pattern, self.deadline, self.used = pattern, deadline, 0

    def spend(self, n: int) -> None:
        self.used += int(n)
        if self.used > MAX_WORK:
            refuse(self.pattern, "needs too much work to compile (more than "
                   f"{MAX_WORK:,} steps over this vocabulary); simplify it")
        if time.perf_counter() > self.deadline:
            refuse(self.pattern, f"took more than {MAX_SECONDS:g} s to compile")


def _size(node, pattern, limit: int = MAX_POSITIONS) -> int:
    """Character positions once repeats are unrolled (refused past `limit`)."""
    kind = node[0]
    if kind in ("lit", "set"):
        return 1
    if kind == "empty":
        return 0
    if kind in ("cat", "alt"):
        n = sum(_size(c, pattern, limit) for c in node[1])
    else:
        _, sub, lo, hi = node
        n = _size(sub, pattern, limit) * (hi if hi is not None else max(lo, 1) + (lo > 0))
    if n > limit:
        if limit == MAX_CHOICE_CHARS:
            refuse(pattern, f"the choices (alternatives) hold more than {limit:,} characters "
                   "in all")
        refuse(pattern, f"unrolls to more than {limit:,} character positions (large "
               "repeat counts); use a smaller bound")
    return n


def _has_rep(node) -> bool:
    if node[0] == "rep":
        return True
    return node[0] in ("cat", "alt") and any(_has_rep(c) for c in node[1])


def _nfa_states(node, pattern) -> int:
    """The states _NFA.fragment will make (empty groups and zero repeats count too, so that
    `((a{0}){1000}){1000}` is refused here: it has no character positions but a million
    states); refused past MAX_NFA_STATES, before any is made."""
    kind = node[0]
    if kind in ("lit", "set"):
        return 2
    if kind == "empty":
        return 1
    if kind == "cat":
        n = sum(_nfa_states(c, pattern) for c in node[1])
    elif kind == "alt":
        n = 2 + sum(_nfa_states(c, pattern) for c in node[1])
    else:
        _, sub, lo, hi = node
        k = _nfa_states(sub, pattern)
        n = 1 + lo * k + (1 + k if hi is None else 1 + (hi - lo) * k)
    if n > MAX_NFA_STATES:
        refuse(pattern, f"unrolls to more than {MAX_NFA_STATES:,} automaton states (repeats of "
               "repeats, empty groups included); use smaller counts")
    return n


def _leaves(node, out: dict) -> dict:
    if node[0] in ("lit", "set"):
        out[node] = None
    elif node[0] in ("cat", "alt"):
        for c in node[1]:
            _leaves(c, out)
    elif node[0] == "rep":
        _leaves(node[1], out)
    return out


def _classes(tree, chars, pattern, work):
    """Each vocabulary character's class (characters no leaf tells apart share one), each
    leaf's set of classes as an int bitmask, and the literal characters the vocabulary lacks."""
    index = {c: i for i, c in enumerate(chars)}
    leaves = list(_leaves(tree, {}))
    masks = np.zeros((len(leaves), len(chars)), bool)
    missing, empty = [], []
    # a fullmatch per class and character, counted before any is run: refused at once
    work.spend(sum(1 if leaf[0] == "lit" else 12 * len(chars) for leaf in leaves))
    for j, leaf in enumerate(leaves):
        if j & 63 == 0:
            work.spend(0)  # the wall-clock backstop
        if leaf[0] == "lit":
            if leaf[1] in index:
                masks[j, index[leaf[1]]] = True
            else:
                missing.append(leaf[1])
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                rx = re.compile(leaf[1])
            masks[j] = [rx.fullmatch(c) is not None for c in chars]
            if not masks[j].any():
                empty.append(leaf[1])
    cols, classes = np.unique(masks.T, axis=0, return_inverse=True)
    classes = classes.reshape(-1).astype(np.int32)
    labels = {}
    for j, leaf in enumerate(leaves):
        work.spend(1 + len(cols) // 64)
        bits = np.packbits(cols[:, j], bitorder="little").tobytes()
        labels[leaf] = int.from_bytes(bits, "little")  # bit k: class k
    return classes, labels, (missing, empty)


class _NFA:
    """Thompson's construction: epsilon edges, and at most one labelled edge per state."""

    def __init__(self, labels: dict):
        self.labels = labels
        self.eps: list[list[int]] = []
        self.lab: list[int] = []  # bitmask of classes (0: no labelled edge)
        self.nxt: list[int] = []
        self.final = -1
        self.pattern, self.deadline = "", float("inf")

    def new(self) -> int:
        n = len(self.eps)
        if n >= MAX_NFA_STATES:  # _nfa_states refuses first; a backstop
            refuse(self.pattern, f"unrolls to more than {MAX_NFA_STATES:,} automaton states")
        if n & 4095 == 0 and time.perf_counter() > self.deadline:
            refuse(self.pattern, f"took more than {MAX_SECONDS:g} s to compile")
        self.eps.append([])
        self.lab.append(0)
        self.nxt.append(-1)
        return len(self.eps) - 1

    def fragment(self, node) -> tuple[int, int]:
        kind = node[0]
        if kind in ("lit", "set"):
            s, e = self.new(), self.new()
            self.lab[s], self.nxt[s] = self.labels[node], e
            return s, e
        if kind == "empty":
            s = self.new()
            return s, s
        if kind == "cat":
            parts = [self.fragment(c) for c in node[1]]
            for (_, a), (b, _) in zip(parts, parts[1:]):
                self.eps[a].append(b)
            return parts[0][0], parts[-1][1]
        if kind == "alt":
            s, e = self.new(), self.new()
            for a, b in (self.fragment(c) for c in node[1]):
                self.eps[s].append(a)
                self.eps[b].append(e)
            return s, e
        _, sub, lo, hi = node
        s = cur = self.new()
        for _ in range(lo):
            a, b = self.fragment(sub)
            self.eps[cur].append(a)
            cur = b
        if hi is None:
            loop = self.new()
            self.eps[cur].append(loop)
            a, b = self.fragment(sub)
            self.eps[loop].append(a)
            self.eps[b].append(loop)
            return s, loop
        e = self.new()
        self.eps[cur].append(e)
        for _ in range(hi - lo):
            a, b = self.fragment(sub)
            self.eps[cur].append(a)
            self.eps[b].append(e)
            cur = b
        return s, e

    def closures(self) -> list[int]:
        """Per state, the labelled (and final) states its epsilon edges reach, as a bitmask over
        `self.important` (those states only, so a mask has one bit per pattern position):
        Tarjan's strongly connected components (emitted callees first), then one OR per edge."""
        n, eps = len(self.eps), self.eps
        self.important = [s for s in range(n) if self.lab[s] or s == self.final]
        bit = {s: 1 << i for i, s in enumerate(self.important)}
        index, low, comp = [-1] * n, [0] * n, [-1] * n
        stack, on, out, counter = [], [False] * n, [0] * n, 0
        for root in range(n):
            if index[root] >= 0:
                continue
            work = [(root, 0)]
            while work:
                v, i = work.pop()
                if i == 0:
                    index[v] = low[v] = counter
                    counter += 1
                    stack.append(v)
                    on[v] = True
                    if counter & 4095 == 0 and time.perf_counter() > self.deadline:
                        refuse(self.pattern, f"took more than {MAX_SECONDS:g} s to compile")
                if i < len(eps[v]):
                    work.append((v, i + 1))
                    w = eps[v][i]
                    if index[w] < 0:
                        work.append((w, 0))
                    elif on[w]:
                        low[v] = min(low[v], index[w])
                    continue
                for w in eps[v]:  # children done: fold their low links
                    if comp[w] < 0 and on[w]:
                        low[v] = min(low[v], low[w])
                if low[v] == index[v]:
                    members = []
                    while True:
                        w = stack.pop()
                        on[w] = False
                        comp[w] = v
                        members.append(w)
                        if w == v:
                            break
                    m = 0
                    for w in members:
                        m |= bit.get(w, 0)
                    for w in members:
                        for x in eps[w]:
                            if comp[x] != v:
                                m |= out[x]
                    for w in members:
                        out[w] = m
        return out


def _bits(m: int):
    while m:
        low = m & -m
        yield low.bit_length() - 1
        m ^= low


def _subsets(nfa: _NFA, start: int, final: int, K: int, pattern, V: int, work):
    """The subset construction over the K character classes: (table int32 [S, K], accept)."""
    clos = nfa.closures()
    cls_of = {}  # labelled state -> its classes
    first = clos[start]
    ids, order, rows = {first: 0}, [first], []
    cap = min(MAX_STATES, MAX_CELLS // max(V, 1))
    held = first.bit_length()
    imp = nfa.important
    words = 1 + len(imp) // 64  # an OR of two position sets costs about this many steps
    for D in order:  # grows while it is walked
        targets: dict = {}
        spent = 400 + K  # a state's own cost (lookups, its row, the later passes) in steps
        for p in (imp[i] for i in _bits(D)):
            lab = nfa.lab[p]
            spent += words  # walking D's bits: a big-integer operation each
            if not lab:
                continue
            ks = cls_of.get(p)
            if ks is None:
                ks = cls_of[p] = list(_bits(lab))
            c = clos[nfa.nxt[p]]
            spent += len(ks) * words
            for k in ks:
                targets[k] = targets.get(k, 0) | c
        work.spend(spent)
        row = [-1] * K
        for k, T in targets.items():
            j = ids.get(T)
            if j is None:
                if len(order) >= cap:
                    refuse(pattern, f"needs more than {cap:,} automaton states over this "
                           f"vocabulary of {V} characters; simplify it")
                held += T.bit_length()
                if held > MAX_SUBSET_BITS:
                    refuse(pattern, "needs too large an automaton to build (its states hold "
                           "too many pattern positions); simplify it")
                j = ids[T] = len(order)
                order.append(T)
            row[k] = j
        rows.append(row)
    fbit = imp.index(final)
    accept = np.array([bool(D >> fbit & 1) for D in order])
    return np.array(rows, np.int32).reshape(len(order), K), accept


def _trim(table, accept, pattern, missing, empty):
    """Keeps the states from which acceptance is reachable; dist = fewest steps to it."""
    S = len(accept)
    src, k = np.nonzero(table >= 0)
    dst = table[src, k]
    rev = [[] for _ in range(S)]
    for a, b in set(zip(src.tolist(), dst.tolist())):
        rev[b].append(a)
    dist = np.full(S, -1, np.int64)
    todo = deque(np.flatnonzero(accept).tolist())
    dist[list(todo)] = 0
    while todo:
        b = todo.popleft()
        for a in rev[b]:
            if dist[a] < 0:
                dist[a] = dist[b] + 1
                todo.append(a)
    if dist[0] < 0:
        why = f"needs {_name(missing)}, which the vocabulary lacks" if missing else \
            f"no vocabulary character matches {', '.join(empty[:4])}" if empty else \
            "no vocabulary character matches where it must"
        refuse(pattern, f"accepts nothing this vocabulary can spell: {why}")
    keep = np.flatnonzero(dist >= 0)
    new = np.full(S + 1, -1, np.int32)  # new[-1] (index S) maps -1 to -1
    new[keep] = np.arange(len(keep), dtype=np.int32)
    table = new[table[keep]]
    return table, accept[keep], dist[keep].astype(np.int32)


def _minimise(table, accept, dist, deadline, cells=MINIMISE_CELLS):
    """Moore's partition refinement (equivalent states have equal accept and dist); the input
    as it is if that takes past `deadline`."""
    _, block = np.unique(np.stack([accept, dist], 1), axis=0, return_inverse=True)
    block = block.reshape(-1)
    n = block.max() + 1
    while True:
        nxt = np.where(table >= 0, np.append(block, -1)[table], -1)
        _, new = np.unique(np.column_stack([block, nxt]), axis=0, return_inverse=True)
        new = new.reshape(-1)
        if new.max() + 1 == n:
            break
        cells -= table.size + 2 * len(block)  # the work a round did, counted
        if cells < 0 or time.perf_counter() > deadline:
            return table, accept, dist
        block, n = new, new.max() + 1
    # renumber so that the start's block is 0, then one representative row per block
    order = np.full(n, -1, np.int64)
    seen = []
    for s in range(len(block)):
        if order[block[s]] < 0:
            order[block[s]] = len(seen)
            seen.append(s)
    rep = np.asarray(seen)
    t = table[rep]
    t = np.where(t >= 0, order[block][np.maximum(t, 0)], -1).astype(np.int32)
    return t, accept[rep], dist[rep]


def _expand(pattern, table, accept, dist, classes, eos_id, t0, work=0) -> CharDFA:
    """The class-level table as one int32 row per state over the vocabulary's ids."""
    trans = table[:, classes]
    if eos_id is not None:
        trans = np.concatenate([trans, np.full((len(trans), 1), -1, np.int32)], axis=1)
    need = np.where(trans >= 0, dist[np.maximum(trans, 0)] + 1, BLOCKED).astype(np.int32)
    if eos_id is not None:
        need[:, eos_id] = np.where(accept, 1, BLOCKED)
    terminal = accept & (trans < 0).all(axis=1)
    if terminal[0]:  # e.g. `[一]?` where the vocabulary has no 一: only "" matches
        refuse(pattern, "matches only the empty string over this vocabulary: nothing to generate")
    ms = (time.perf_counter() - t0) * 1e3
    return CharDFA(pattern, np.ascontiguousarray(trans), accept, dist, need, terminal,
                   need.min(axis=1), eos_id, ms, work)


class DFACache:
    """Compiled DFAs per (pattern, vocabulary), least recently used first out, bounded in bytes
    (the automaton's tables and the key: the pattern and the vocabulary's characters). Refusals
    are kept too (their messages, bounded by MAX_REFUSALS entries), so that a server asked the
    same bad pattern again answers at once. Thread-safe: a server compiles on worker threads."""

    MAX_REFUSALS = 4096
    MAX_REFUSAL_BYTES = 8 << 20

    def __init__(self, max_bytes: int = 64 << 20):
        self.max_bytes = max_bytes
        self._items: OrderedDict = OrderedDict()
        self._refused: OrderedDict = OrderedDict()
        self._bytes = self._refused_bytes = 0
        self._vocabs: dict = {}  # one tuple per vocabulary, shared by every key
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    @staticmethod
    def _cost(key, dfa=None) -> int:
        """Bytes held for an entry: the tables (or the refusal's message), the pattern, the key
        (the vocabulary's tuple is shared by all keys, counted once in _vocabs)."""
        return (dfa.nbytes if dfa is not None else 0) + sys.getsizeof(key[0]) + 256

    def _key(self, pattern, chars, eos_id):
        chars = tuple(chars)
        with self._lock:
            if chars not in self._vocabs and len(self._vocabs) >= 64:
                self._vocabs.clear()
            chars = self._vocabs.setdefault(chars, chars)
        return (pattern, chars, eos_id)

    def lookup(self, pattern: str, chars, eos_id):
        """The cached DFA, or None; ConfigError for a pattern refused before (no compiling)."""
        key = self._key(pattern, chars, eos_id)
        with self._lock:
            dfa = self._items.get(key)
            if dfa is not None:
                self._items.move_to_end(key)
                self.hits += 1
                return dfa
            why = self._refused.get(key)
            if why is not None:
                self._refused.move_to_end(key)
                self.hits += 1
                raise ConfigError(why)
        return None

    def get(self, pattern: str, chars, eos_id) -> CharDFA:
        key = self._key(pattern, chars, eos_id)
        dfa = self.lookup(pattern, key[1], eos_id)
        if dfa is not None:
            return dfa
        chars = key[1]
        try:
            dfa = compile_dfa(pattern, chars, eos_id)  # outside the lock: may take a while
        except ConfigError as e:
            if "s to compile" not in str(e):  # the wall-clock backstop depends on the load
                with self._lock:
                    if key not in self._refused:
                        self._refused[key] = str(e)
                        self._refused_bytes += self._cost(key) + len(str(e))
                    while self._refused and (len(self._refused) > self.MAX_REFUSALS or
                                             self._refused_bytes > self.MAX_REFUSAL_BYTES):
                        k, why = self._refused.popitem(last=False)
                        self._refused_bytes -= self._cost(k) + len(why)
            raise
        with self._lock:
            self.misses += 1
            if key not in self._items:
                self._items[key] = dfa
                self._bytes += self._cost(key, dfa)
            while self._bytes > self.max_bytes and len(self._items) > 1:
                old_key, old = self._items.popitem(last=False)
                self._bytes -= self._cost(old_key, old)
        return dfa


CACHE = DFACache()


def dfa_for(pattern: str, vocab) -> CharDFA:
    """The (cached) automaton of `pattern` over a Vocabulary."""
    if not isinstance(pattern, str):
        raise ConfigError(f"regex {pattern!r}: must be a string")
    return CACHE.get(pattern, vocab.chars, vocab.eos_id)
