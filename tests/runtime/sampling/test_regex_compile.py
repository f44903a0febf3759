"""The regex -> DFA compiler (runtime/sampling/constrain): the same full matches as Python's
re.fullmatch on every short string, co-accessible states only, the shortest-way-to-acceptance
table, one-line refusals (unsupported syntax, hostile sizes, characters the vocabulary lacks),
and the bounded cache."""

import itertools
import random
import re
import time

import numpy as np
import pytest

from charwright.runtime.errors import ConfigError
from charwright.runtime.sampling.constrain import DFACache, compile_dfa, parse
from charwright.runtime.sampling.constrain.compile import BLOCKED
from charwright.runtime.vocab import Vocabulary

ALPHABET = "\n ab.-1é"  # a newline, a space, letters, a dot, a digit, a non-ASCII letter
PATTERNS = [
    "a", "ab", "a|b", "a*", "a+b", "(ab)*", "(a|b)*a", "a?b?", "a{2}", "a{1,3}", "a{2,}",
    "(ab|a)(b|)", "a{,2}b", "[ab]{2,3}", "[^a]", "[^a\n]+", ".", ".*", "..?", r"\d", r"\w+",
    r"\s", r"\S\s\S", r"\W", r"[\w.]+", "(?:a|b)-(?P<x>1)", "a.b|b.a", r"\.", r"a\-", "é+",
    r"\u00e9a", r"\x61{2}", "^a$", "^(a|b)$", "(a|b)*?", "a+?b", "a{2,3}?", "[a-]+",
    r"[]a]", "[^]a]", "a{", "a{x}", "a{1", "{", "((a)|(b))*1", "(a*)*", "(a|ab)(1|b1.)?",
    "(a?){3}", "(a|b|.)*a(a|b){2}", r"\n", "[\n]a", "-?1+(\\.1+)?", "(1|11)*",
]


def fullmatch_dfa(dfa, chars, text):
    s = 0
    for ch in text:
        if ch not in chars:
            return False
        s = dfa.trans[s, chars.index(ch)]
        if s < 0:
            return False
    return bool(dfa.accept[s])


def strings(max_len):
    for n in range(max_len + 1):
        for t in itertools.product(ALPHABET, repeat=n):
            yield "".join(t)


SHORT = list(strings(4))  # 4,681 strings


@pytest.mark.parametrize("pattern", PATTERNS)
def test_full_matches_equal_python_re(pattern):
    chars = list(ALPHABET)
    try:
        dfa = compile_dfa(pattern, sorted(chars))
    except ConfigError as e:  # only when nothing non-empty can match
        assert not any(re.fullmatch(pattern, t) for t in SHORT if t), e
        return
    chars = sorted(chars)
    rx = re.compile(pattern)
    rnd = random.Random(pattern)
    longer = ["".join(rnd.choice(ALPHABET) for _ in range(rnd.randint(5, 9))) for _ in range(300)]
    for t in SHORT + longer:
        assert fullmatch_dfa(dfa, chars, t) == (rx.fullmatch(t) is not None), (pattern, t)


@pytest.mark.parametrize("pattern", ["(a|b)*a(a|b){2}", "(ab|a)(b|)", "a{2,}1?", "[ab]{2,3}"])
def test_only_coaccessible_states_and_exact_distances(pattern):
    chars = sorted(ALPHABET)
    dfa = compile_dfa(pattern, chars)
    S = dfa.states
    # brute force: the fewest characters from each state to acceptance (Bellman-Ford)
    best = np.where(dfa.accept, 0, 10**6)
    for _ in range(S):
        for s in range(S):
            nxt = dfa.trans[s][dfa.trans[s] >= 0]
            if len(nxt):
                best[s] = min(best[s], 1 + best[nxt].min())
    assert (best < 10**6).all()  # every state can still reach acceptance: no dead state
    assert (dfa.dist == best).all()
    ok = dfa.trans >= 0
    assert (dfa.need[ok] == dfa.dist[dfa.trans[ok]] + 1).all() and (dfa.need[~ok] == BLOCKED).all()
    assert (dfa.terminal == (dfa.accept & ~ok.any(axis=1))).all()


def test_minimal_for_a_choice_list():
    dfa = compile_dfa("(?:cat|car|dog)", sorted("acdgort"))
    # start, c, ca, d, do, and one shared accepting state
    assert dfa.states == 6 and dfa.shortest == 3 and dfa.terminal.sum() == 1


def test_eos_only_from_accepting_states():
    v = Vocabulary(tuple(sorted("ab")), eos=True)
    dfa = compile_dfa("a+b?", v.chars, v.eos_id)
    assert dfa.trans.shape[1] == 3
    assert (dfa.need[:, v.eos_id] == np.where(dfa.accept, 1, BLOCKED)).all()


@pytest.mark.parametrize("pattern, words", [
    (r"(a)\1", "backreferences"), ("(?P<x>a)(?P=x)", "backreferences"),
    ("a(?=b)", "lookaround"), ("(?<!a)b", "lookaround"), ("(?i)a", "inline flags"),
    ("a*+", "possessive"), ("(?>a)", "atomic"), (r"\bab", "boundary"), (r"a\Z", "boundary"),
    ("a^b", "anchor"), ("a$b", "anchor"), ("(a", "not a valid regular expression"),
    ("a**", "not a valid"), ("", "only the empty string"), ("^$", "only the empty string"),
    ("x" * 40_000, "characters; at most"),
])
def test_unsupported_syntax_is_one_line(pattern, words):
    with pytest.raises(ConfigError, match=words) as e:
        compile_dfa(pattern, sorted(ALPHABET))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("pattern", [
    "a{1000000}", "(a{1000}){1000}", "((a|b){100}){100}", "(a|b)*a(a|b){40}",
    "(a|aa)*(a|aa)*(a|aa)*b", "((a|aa)*)*b{9999}", "(a?){9000}", "(a{1,100}){1,100}",
    "(.*a){60}", "([ab]*[ab]*){5000}",
])
def test_hostile_patterns_are_refused_quickly_or_small(pattern):
    t0 = time.perf_counter()
    try:
        dfa = compile_dfa(pattern, sorted(ALPHABET))
        assert dfa.nbytes < 64 << 20  # what is accepted stays small
    except ConfigError as e:
        assert "\n" not in str(e)
    assert time.perf_counter() - t0 < 4.0  # MAX_SECONDS (2) plus slack on a loaded machine


def test_characters_outside_the_vocabulary_are_named():
    with pytest.raises(ConfigError, match=r"needs 'z' \(U\+007A\).*lacks"):
        compile_dfa("a|z", sorted(ALPHABET))
    with pytest.raises(ConfigError, match="accepts nothing this vocabulary can spell.*'ü'"):
        compile_dfa("ü+", sorted(ALPHABET))
    with pytest.raises(ConfigError, match=r"no vocabulary character matches \[xyz\]"):
        compile_dfa("[xyz]", sorted(ALPHABET))
    # a class is an intersection: the vocabulary's letters in it are enough
    assert compile_dfa("[a-z]+", sorted(ALPHABET)).states == 2


def test_parse_is_vocabulary_free_and_checked_at_config_time():
    from charwright.runtime.sampling.config import SamplingConfig

    assert parse("^(a|b)+$") == ("rep", ("alt", [("lit", "a"), ("lit", "b")]), 1, None)
    with pytest.raises(ConfigError, match="lookaround"):
        SamplingConfig(regex="a(?!b)")
    with pytest.raises(ConfigError, match="not both"):
        SamplingConfig(regex="a", choices=["b"])
    with pytest.raises(ConfigError, match="choices"):
        SamplingConfig(choices="ab")  # a string is not a list of choices
    cfg = SamplingConfig(choices=["a.b", "c"])
    assert cfg.choices == ("a.b", "c") and re.fullmatch(cfg.pattern, "a.b")
    assert not re.fullmatch(cfg.pattern, "axb")  # choices are escaped
    hash(cfg)  # hashable: the server keys samplers on the config


def test_cache_is_bounded_in_bytes_and_shared():
    cache = DFACache(max_bytes=20_000)
    chars = tuple(sorted(ALPHABET))
    a = cache.get("a{1,50}", chars, None)
    assert cache.get("a{1,50}", chars, None) is a and cache.hits == 1
    for n in range(2, 30):
        cache.get(f"b{{1,{n * 10}}}", chars, None)
    assert cache._bytes <= 20_000 or len(cache._items) == 1
    assert cache.get("a{1,50}", chars, None) is not a  # evicted, compiled again
