"""Regex-constrained generation through the one loop (tiny numpy model, no TensorFlow): every
completion matches in full, -n never ends a row mid-match, a complete match that cannot go on
ends with "stop", the mask leaves the seeded draw alone, batches mix constrained and free rows,
greedy and beam search follow the automaton, and the row state carries the DFA state."""

import re

import numpy as np
import pytest

from bundle_factory import make_bundle

from charwright.runtime import load
from charwright.runtime.errors import ConfigError
from charwright.runtime.generate.beam import beam_search
from charwright.runtime.generate.generator import Generator, run
from charwright.runtime.generate.priming import prime
from charwright.runtime.generate.text_stream import TextStream
from charwright.runtime.sampling.config import Sampler, SamplingConfig
from charwright.runtime.sampling.constrain import dfa_for

# the tiny bundle's characters: "\n abcdefgh."
SUITE = [
    (r"[a-h]+", 12), (r"(abc|bad|cafe)", 6), (r"[a-h]{3}\.[a-h]{2,4}", 10), (r"a*b+", 8),
    (r"( ?[a-h]{2})+\.", 16), (r"[^\n]{5}", 5), (r"(.|\n)*e", 9), (r"(ab)+", 7),
    (r"h(a|e)+d?", 4), (r"[.]{1,2}(\n| )?", 3),
]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return load(make_bundle(tmp_path_factory.mktemp("rx") / "tiny", units=16), backend="numpy")


@pytest.mark.parametrize("pattern, n", SUITE)
def test_every_completion_matches_in_full(model, pattern, n):
    for cfg in (SamplingConfig(regex=pattern, seed=5, temperature=1.5),
                SamplingConfig(regex=pattern, seed=5, top_k=3, repetition_penalty=1.3)):
        done = model.complete(["a"] * 24, n, cfg)
        for c in done:
            assert re.fullmatch(pattern, c.text), (pattern, c)
            assert len(c.text) <= n and c.finish_reason in ("stop", "length")
            dfa = dfa_for(pattern, model.vocab)
            s = 0
            for t in c.tokens:
                s = dfa.trans[s, t]
            assert (c.finish_reason == "stop") == bool(dfa.terminal[s])


def test_the_length_limit_never_ends_mid_match(model):
    # (abc)+ with 7 characters: "abc" or "abcabc", never "abcabca"
    for c in model.complete([""] * 40, 7, SamplingConfig(regex="(abc)+", seed=1, temperature=3)):
        assert c.text in ("abc", "abcabc"), c
    with pytest.raises(ConfigError, match="shortest match is 5 characters, more than"):
        model.generate("a", 4, SamplingConfig(regex="[a-h]{5}"))
    with pytest.raises(ConfigError, match="shortest match"):
        model.complete(["a"], 0, SamplingConfig(regex="a"))


def test_a_pattern_that_allows_everything_leaves_the_draw_alone(model):
    free = SamplingConfig(seed=9, temperature=0.9, top_p=0.95)
    every = SamplingConfig(seed=9, temperature=0.9, top_p=0.95, regex=r"(.|\n)*")
    assert model.generate("ab", 80, every) == model.generate("ab", 80, free)


def test_the_mask_renormalises_over_the_allowed_ids(model):
    """Two allowed ids: their frequencies follow the model's probabilities between them."""
    vocab, backend = model.vocab, model.backend
    logits, _ = prime(backend, [vocab.encode("a")])
    a, b = vocab.encode("ab")
    z = logits[0].astype(np.float64)
    p_a = 1 / (1 + np.exp(z[b] - z[a]))
    done = model.complete(["a"] * 2000, 1, SamplingConfig(choices=["a", "b"], seed=3))
    share = sum(c.text == "a" for c in done) / len(done)
    assert abs(share - p_a) < 4 * np.sqrt(p_a * (1 - p_a) / len(done)) + 1e-3


def test_constrained_and_free_rows_share_a_batch(model):
    vocab = model.vocab
    gen = Generator(model.backend)
    rx = SamplingConfig(regex="(cafe|bad)+", seed=2)
    free = SamplingConfig(seed=2)
    s1, s2 = Sampler(rx, vocab), Sampler(free, vocab)
    k1 = gen.add([vocab.encode("a")] * 3, s1, 2, [0, 1, 2], max_chars=9)
    k2 = gen.add([vocab.encode("a")] * 2, s2, 2, [0, 1], max_chars=9)
    streams = {k: TextStream(vocab, 9, (), s1.constraint) for k in k1}
    streams.update({k: TextStream(vocab, 9) for k in k2})
    for _ in run(gen, streams):
        pass
    for k in k1:
        assert re.fullmatch("(cafe|bad)+", streams[k].text())
    alone = model.complete(["a"] * 2, 9, free)
    assert [streams[k].text() for k in k2] == [c.text for c in alone]


def test_greedy_and_beam_follow_the_pattern(model):
    for pattern in ("(abc|bad|cafe)", r"[a-h]{2,5}\.", "(h|he|hed)"):
        g = model.generate("a", 10, SamplingConfig(regex=pattern, greedy=True))
        assert re.fullmatch(pattern, g)
        dfa = dfa_for(pattern, model.vocab)
        logits, state = prime(model.backend, [model.vocab.encode("a")])
        beams = beam_search(model.backend, model.vocab, logits, state, 10, 4, constraint=dfa)
        assert beams and all(re.fullmatch(pattern, b.text) for b in beams)
        assert beams == sorted(beams, key=lambda b: -b.score)


def test_choices_and_stop_strings(model):
    words = ["bad", "bed", "cafe", "a.b"]
    for c in model.complete([""] * 30, 10, SamplingConfig(choices=words, seed=4)):
        assert c.text in words and c.finish_reason == "stop"
    # a stop string applies to the constrained text as usual (vLLM's rule): the text before it
    for c in model.complete([""] * 30, 10, SamplingConfig(choices=words, seed=4), stop=["."]):
        assert c.text in ("bad", "bed", "cafe", "a") and c.finish_reason == "stop"


def test_row_state_holds_the_dfa_state(model):
    vocab = model.vocab
    s = Sampler(SamplingConfig(regex="abc(de)*", seed=1), vocab)
    s.join([vocab.encode("a")], 1, [0], max_chars=10)
    z = np.zeros((1, vocab.size), np.float32)
    s(z.copy())
    st = s.row_state(0)
    assert st["dfa"] == int(s.constraint.trans[0, vocab.encode("a")[0]])
    s.set_row_state(0, {"dfa": 0})
    assert s.row_state(0)["dfa"] == 0
    with pytest.raises(ConfigError, match="dfa"):
        s.set_row_state(0, {"dfa": 10**6})


def test_vocabulary_errors_are_one_line(model):
    with pytest.raises(ConfigError, match=r"needs 'z' \(U\+007A\)"):
        model.generate("a", 5, SamplingConfig(regex="z+"))
    with pytest.raises(ConfigError, match="needs the vocabulary"):
        Sampler(SamplingConfig(regex="a"), model.vocab.size)


def test_end_of_sequence_only_where_the_text_is_a_match():
    """A line-mode model that wants to end after 'c': the end-of-sequence id is masked until the
    text is a complete match, then taken (finish 'eos')."""
    from fakes import scripted_model

    m = scripted_model("abc", eos=True, after={"c": 3})  # id 3: the end-of-sequence id
    assert m.vocab.eos_id == 3
    done = m.complete([""], 10, SamplingConfig(regex="(abc)+", greedy=True))[0]
    assert (done.text, done.finish_reason) == ("abc", "eos")
    done = m.complete([""], 10, SamplingConfig(regex="(abc){2}", greedy=True))[0]
    assert (done.text, done.finish_reason) == ("abcabc", "stop")  # complete, no way on
    done = m.complete([""], 5, SamplingConfig(regex="(abc){2}|ab", seed=1))[0]
    assert (done.text, done.finish_reason) == ("ab", "eos")  # 'c' could not finish in time
