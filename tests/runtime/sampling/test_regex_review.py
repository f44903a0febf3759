"""The review's defects in regex-constrained generation, each pinned: zero-width repeats cannot
make compiling unbounded, a start state that cannot move within -n is refused (every sampler
path), Unicode digits are not repeat counts, octal escapes, long choice lists, the cache's byte
accounting and its remembered refusals, and the deterministic work budget."""

import re
import resource
import time
import tracemalloc

import numpy as np
import pytest

from bundle_factory import make_bundle

from charwright.runtime import load
from charwright.runtime.errors import ConfigError
from charwright.runtime.generate.beam import beam_search
from charwright.runtime.generate.priming import prime
from charwright.runtime.sampling.config import SamplingConfig
from charwright.runtime.sampling.constrain import DFACache, choices_pattern, compile_dfa, dfa_for
from charwright.runtime.sampling.constrain import compile as cc

ALPHABET = sorted("\n abcdefgh.")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return load(make_bundle(tmp_path_factory.mktemp("rv") / "tiny", units=16), backend="numpy")


@pytest.mark.parametrize("pattern", [
    "((a{0}){1000}){1000}b", "(((a{0}){1000}){1000}){1000}b", "((?:){1000}){1000}a",
    "((|){1000}){1000}a", "(((a{0,0}){99}){99}){99}b*",
])
def test_zero_width_repeats_are_refused_before_they_are_built(pattern):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match="automaton states") as e:
        compile_dfa(pattern, ALPHABET)
    assert time.perf_counter() - t0 < 0.5 and "\n" not in str(e.value)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50_000  # KiB


def test_nfa_bound_counts_what_fragment_builds():
    # the estimate equals the states the construction makes, so the bound is exact
    for pattern in ["a", "", "(a|b|)c", "(a{2,5}b*){3}", "((a{0}){7}){5}b", "x(?:y|z)?w+"]:
        tree = cc.parse(pattern)
        nfa = cc._NFA(cc._classes(tree, ALPHABET + ["x", "y", "z", "w"], pattern,
                                  cc._Work(pattern, float("inf")))[1])
        nfa.fragment(tree)
        assert cc._nfa_states(tree, pattern) == len(nfa.eps), pattern


@pytest.mark.parametrize("pattern, n, needs", [
    ("(abc)*", 2, 3), ("(abc)?", 1, 3), ("(abc)*(def)*", 2, 3), ("a|bcd", 0, 1),
])
def test_a_start_that_cannot_move_within_the_limit_is_refused_everywhere(model, pattern, n, needs):
    dfa = dfa_for(pattern, model.vocab)
    assert dfa.min_chars == needs
    words = f"is {needs} characters, more than"
    for cfg in (SamplingConfig(regex=pattern, seed=3), SamplingConfig(regex=pattern, greedy=True),
                SamplingConfig(regex=pattern, seed=3, top_k=3, repetition_penalty=1.3)):
        with pytest.raises(ConfigError, match=words):
            model.complete(["a", "b"], n, cfg)
    if n:
        logits, state = prime(model.backend, [model.encode_prompt("a", "error")])
        with pytest.raises(ConfigError, match=words):
            beam_search(model.backend, model.vocab, logits, state, n, 3, 1.0, constraint=dfa)
    with pytest.raises(ConfigError, match=words):
        model.session(seed=1).generate(n, SamplingConfig(regex=pattern))
    # at exactly the limit every path gives a full match
    for c in model.complete(["a", "b"], needs, SamplingConfig(regex=pattern, seed=3)):
        assert re.fullmatch(pattern, c.text), c
    logits, state = prime(model.backend, [model.encode_prompt("a", "error")])
    for b in beam_search(model.backend, model.vocab, logits, state, needs, 3, 1.0,
                         constraint=dfa):
        assert re.fullmatch(pattern, b.text) and np.isfinite(b.score), b


def test_a_class_no_vocabulary_character_is_in_leaves_only_the_empty_match():
    for pattern in ["[一]?", "(?:[xyz]*)", "(?:[xyz]|[一])?"]:
        with pytest.raises(ConfigError, match="only the empty string over this vocabulary"):
            compile_dfa(pattern, ALPHABET)
    # with an end-of-sequence id the empty text is a match too, and it is the only one: refused
    with pytest.raises(ConfigError, match="only the empty string"):
        compile_dfa("[一]?", ALPHABET, eos_id=len(ALPHABET))
    # but an end-of-sequence id lets (abc)* stop at once: 1 id is enough
    assert compile_dfa("(abc)*", ALPHABET, eos_id=len(ALPHABET)).min_chars == 1


def test_unicode_digits_in_braces_are_literal_text_as_re_reads_them():
    chars = ALPHABET + ["{", "}", "\u0661", ","]
    for pattern, texts in [("a{\u0661}", ["a{\u0661}"]), ("a{1,\u0662}", None),
                           ("a{\u0661,}", ["a{\u0661,}"])]:
        if texts is None:
            continue
        dfa = compile_dfa(pattern, chars)
        assert dfa.shortest == len(texts[0]) and re.fullmatch(pattern, texts[0])
    assert compile_dfa("a{1}", chars).shortest == 1


def test_three_digit_octal_escapes_are_characters():
    chars = ALPHABET + ["A", "1"]
    for pattern, text in [(r"\101", "A"), (r"\1011", "A1"), (r"a\141", "aa"), (r"\0", "\0")]:
        if not all(c in chars for c in text):
            continue
        dfa = compile_dfa(pattern, chars)
        assert re.fullmatch(pattern, text) and dfa.shortest == len(text), pattern
    with pytest.raises(ConfigError, match="backreference"):
        compile_dfa(r"(a)\1", chars)
    with pytest.raises(ConfigError, match="not a valid"):
        compile_dfa(r"\400", chars)


def test_choice_lists_past_the_repeat_bound_compile():
    words = ["".join("abcdefgh"[(i >> (3 * k)) & 7] for k in range(7)) for i in range(800)]
    assert sum(map(len, words)) > cc.MAX_POSITIONS
    dfa = compile_dfa(choices_pattern(words), ALPHABET)
    assert dfa.shortest == 7 and dfa.states <= 7 * 800
    with pytest.raises(ConfigError, match="characters; at most"):  # the pattern's own bound
        compile_dfa(choices_pattern(["ab" * 1000] * 30), ALPHABET)
    # a repeat keeps the tight bound
    with pytest.raises(ConfigError, match="character positions"):
        compile_dfa("(?:a{6000})", ALPHABET)


def test_cache_counts_the_key_and_remembers_refusals():
    cache = DFACache(max_bytes=1 << 20)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for i in range(40):
            cache.get("[" + "a" * 20_000 + "]" + f"{{{i + 1}}}", ALPHABET, None)
        held = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert cache._bytes >= 0.7 * held, (cache._bytes, held)  # the 20 KB keys are counted
    bad = "((a{0}){1000}){1000}b"
    with pytest.raises(ConfigError) as first:
        cache.get(bad, ALPHABET, None)
    misses = cache.misses
    t0 = time.perf_counter()
    with pytest.raises(ConfigError) as again:
        cache.lookup(bad, ALPHABET, None)
    assert str(again.value) == str(first.value) and cache.misses == misses
    assert time.perf_counter() - t0 < 0.01
    for i in range(cache.MAX_REFUSALS + 10):  # bounded
        with pytest.raises(ConfigError):
            cache.get(f"a{{{i}}}(?=b)", ALPHABET, None)
    assert len(cache._refused) <= cache.MAX_REFUSALS


def test_work_budget_refuses_deterministically(monkeypatch):
    vocab = [chr(0x4E00 + i) for i in range(600)]
    pattern = "(?:" + "|".join(f"[^{vocab[i]}]" for i in range(300)) + ")*"
    monkeypatch.setattr(cc, "MAX_SECONDS", 1e9)  # no wall clock: only the counted steps
    dfa = compile_dfa(pattern, vocab)  # under the budget: accepted whatever the load
    used = dfa.work
    monkeypatch.setattr(cc, "MAX_WORK", used - 1)
    with pytest.raises(ConfigError, match="too much work"):
        compile_dfa(pattern, vocab)
    monkeypatch.setattr(cc, "MAX_WORK", used)
    assert compile_dfa(pattern, vocab).states == dfa.states


def test_a_choice_list_too_long_is_named_as_choices():
    from charwright.runtime.errors import ConfigError
    from charwright.runtime.sampling.config import SamplingConfig

    with pytest.raises(ConfigError, match=r"^choices: 41,003 characters .* at most 32,768$"):
        SamplingConfig(choices=["abcdefgh" * 5] * 1000)
    assert SamplingConfig(choices=["abcdefgh" * 5] * 700).pattern.count("|") == 699
