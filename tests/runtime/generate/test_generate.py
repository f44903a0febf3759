"""The sampling loop: exact strings from a scripted backend, stops, streaming, batching, beams."""

import itertools
import threading

import numpy as np
import pytest

from fakes import scripted_model

from charwright.runtime.backends.numpy import NumpyStep
from charwright.runtime.generate.beam import beam_search
from charwright.runtime.errors import ConfigError, VocabularyError
from charwright.runtime.generate.generator import run
from charwright.runtime.generate.priming import prime
from charwright.runtime.sampling.config import Sampler, SamplingConfig
from charwright.runtime.generate.text_stream import StopMatcher, TextStream
from charwright.runtime.vocab import Vocabulary

GREEDY = SamplingConfig(greedy=True)


def test_forced_text_is_exact():
    m = scripted_model("abcdefgh ")
    assert m.generate("a", 10, GREEDY) == "bcdefgh ab"
    # sampling cannot escape one-hot * 1e9 logits either
    assert m.generate("c", 5, SamplingConfig(temperature=2.0, top_k=3, seed=1)) == "defgh"


def test_stop_strings_are_never_emitted_and_hold_back_only_what_may_start_one():
    m = scripted_model("abcdefgh ")
    assert m.generate("a", 50, GREEDY, stop=["fg"]) == "bcde"
    chunks = list(m.stream("a", 50, GREEDY, stop=["fgX", "ef"]))
    # 'e' is held until 'f' shows the stop string "ef"; nothing after it is produced
    assert chunks == ["b", "c", "d"]
    chunks = list(m.stream("a", 8, GREEDY, stop=["fgX"]))
    # 'f' and 'g' are held back while "fgX" is possible, then released together with 'h'
    assert chunks == ["b", "c", "d", "e", "fgh", " "]
    assert "".join(chunks) == m.generate("a", 8, GREEDY)


def test_stream_yields_in_order_and_length_is_exact():
    m = scripted_model("0123456789")
    assert list(m.stream("0", 12, GREEDY)) == list("123456789012")
    assert m.generate("0", 0, GREEDY) == ""


def test_end_of_sequence_stops_a_line_model():
    m = scripted_model("abc", eos=True, after={"c": 3})
    assert m.vocab.eos_id == 3
    assert m.generate("a", 20, GREEDY) == "bc"
    assert m.generate("", 20, GREEDY) == "abc"  # empty prompt = start of a line


def test_batch_rows_finish_independently():
    m = scripted_model("abcdefgh ")
    out = m.generate_batch(["a", "e", "ab"], 6, GREEDY, stop=["g"])
    assert out == ["bcdef", "f", "cdef"]
    assert m.generate_batch([], 5) == []


def test_bad_input_is_typed():
    m = scripted_model("abc")
    with pytest.raises(VocabularyError, match=r"'x' at 1, 'y' at 2"):
        m.generate("axy", 5, GREEDY)
    assert m.generate("axy", 2, GREEDY, unknown="skip") == "bc"
    with pytest.raises(ConfigError, match="max_chars -1: must be an integer >= 0"):
        m.generate("a", -1, GREEDY)
    with pytest.raises(VocabularyError, match=r"'\\udcff' at 1"):  # invalid UTF-8 from argv
        m.generate("a\udcff", 2, GREEDY)
    assert m.generate("a\udcffb", 2, GREEDY, unknown="skip") == "ca"
    with pytest.raises(ConfigError, match="no '\\\\n' to start from"):
        m.generate("", 3, GREEDY)


# ---- a real (tiny, random) recurrent model from the numpy reference backend -----------------


def _numpy_model(vocab="abcd", units=6, seed=0, cell="gru"):
    rng = np.random.default_rng(seed)
    V, H = len(vocab), units
    G = {"gru": 3, "lstm": 4, "rnn": 1}[cell]
    w = {"embedding": rng.normal(0, 1, (V, 3)), "layer0.kernel": rng.normal(0, 1, (3, G * H)),
         "layer0.recurrent_kernel": rng.normal(0, 0.5, (H, G * H)),
         "layer0.bias": rng.normal(0, 0.5, (2, G * H) if cell == "gru" else (G * H,)),
         "dense.kernel": rng.normal(0, 1.5, (H, V)), "dense.bias": rng.normal(0, 1, V)}
    arch = {"cell": cell, "layers": 1, "units": H, "vocab_size": V}
    return NumpyStep(w, arch), Vocabulary(tuple(vocab))


def _logprob(step, prompt, seq):
    logits, state = prime(step, [prompt])
    total = 0.0
    for t in seq:
        z = logits[0].astype(np.float64)
        total += z[t] - z.max() - np.log(np.exp(z - z.max()).sum())
        logits, state = step.step(np.array([t], np.int32), state)
    return total


def test_beam_search_equals_brute_force():
    step, vocab = _numpy_model()
    prompt = np.array([0, 1], np.int32)
    n = 3
    brute = sorted(((_logprob(step, prompt, s), s) for s in itertools.product(range(4), repeat=n)),
                   reverse=True)
    logits, state = prime(step, [prompt])
    # width 16 = 4**(n-1): every prefix survives, so beam search is exact
    beams = beam_search(step, vocab, logits, state, n, width=16, length_penalty=0, n_best=3)
    assert [b.tokens for b in beams] == [s for _, s in brute[:3]]
    assert np.allclose([b.logprob for b in beams], [lp for lp, _ in brute[:3]], atol=1e-5)
    narrow = beam_search(step, vocab, logits, state, n, width=2, length_penalty=0)
    # float32 steps at batch 2 and batch 1 differ in the last bits (BLAS kernels differ by CPU
    # generation), so compare at float32's scale, not 1e-9
    assert narrow[0].logprob <= brute[0][0] + 1e-5 and len(narrow) == 2


def test_seeded_sampling_is_reproducible_and_rows_do_not_depend_on_batch():
    step, vocab = _numpy_model(vocab="abcdefgh", units=8, seed=3)
    m = scripted_model("abcdefgh")
    m._shared = step
    cfg = SamplingConfig(temperature=1.0, top_p=0.95, seed=42)
    a = m.generate("ab", 60, cfg)
    assert a == m.generate("ab", 60, cfg)
    assert a != m.generate("ab", 60, SamplingConfig(temperature=1.0, top_p=0.95, seed=43))
    batch = m.generate_batch(["ab"] * 4, 60, cfg)
    assert batch[0] == a and len(set(batch)) > 1
    assert m.complete(["ab"], 60, cfg, row_ids=[2])[0].text == batch[2]


def test_batched_equals_unbatched_greedy():
    step, vocab = _numpy_model(vocab="abcdefgh", units=8, seed=5)
    m = scripted_model("abcdefgh")
    m._shared = step
    prompts = ["abc", "h", "gfed", "aa"]
    assert m.generate_batch(prompts, 40, GREEDY) == [m.generate(p, 40, GREEDY) for p in prompts]


@pytest.mark.tf
def test_scoring_agrees_with_the_parity_bits_per_char(tiny_bundle):
    from charwright.runtime import load
    from charwright.runtime.bundle.reader import load_bundle
    from charwright.runtime.verify.score import bits_per_char

    m = load(tiny_bundle, backend="numpy")
    probe = load_bundle(tiny_bundle).probe()
    text = m.vocab.decode(probe["tokens"])
    assert abs(m.score(text).bits_per_char - bits_per_char(probe["logits"], probe["tokens"])) < 1e-3


@pytest.mark.tf
@pytest.mark.litert
@pytest.mark.parametrize("backend", ["litert", "onnx"])
def test_four_threads_get_their_single_threaded_results(tiny_bundle, backend):
    from charwright.runtime import load

    m = load(tiny_bundle, backend=backend, precision="float32")
    cfgs = [SamplingConfig(seed=s, top_k=5) for s in range(8)]
    expected = [m.generate("The ", 150, c) for c in cfgs]
    got = [None] * 8
    barrier = threading.Barrier(4)

    def work(i):
        barrier.wait()
        for j in range(i, 8, 4):
            got[j] = m.generate("The ", 150, cfgs[j])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert got == expected


# ---- rows that join a running batch ------------------------------------------------------------


def _tiny_model(seed=3):
    step, vocab = _numpy_model(vocab="abcdefgh", units=8, seed=seed)
    m = scripted_model("abcdefgh")
    m._shared = step
    return m


def test_a_row_that_joins_a_running_batch_gets_its_own_text():
    """Rows join while others run, with different configurations and lengths; each row's text
    equals what it gets alone (its seed and row id decide its draws, not the batch)."""
    m = _tiny_model()
    cfg_a = SamplingConfig(temperature=0.9, top_k=5, seed=11)
    cfg_b = SamplingConfig(temperature=1.3, repetition_penalty=1.5, seed=4)
    alone_a = m.generate("abc", 70, cfg_a)
    alone_b = m.generate("h", 40, cfg_b)
    alone_c = m.generate("gg", 30, GREEDY)
    gen, streams, (ka,) = m.start(["abc"], 70, cfg_a)
    out = {ka: ""}
    it = run(gen, streams)
    for n, (k, piece) in enumerate(it):
        out[k] += piece
        if n == 5:  # b joins after a few characters
            (kb,) = gen.add([m.encode_prompt("h")], Sampler(cfg_b, m.vocab.size), 4)
            streams[kb] = TextStream(m.vocab, 40)
            out[kb] = ""
        if n == 30:  # c joins later still, greedy, beside two sampling rows
            (kc,) = gen.add([m.encode_prompt("gg")], Sampler(GREEDY, m.vocab.size), 0)
            streams[kc] = TextStream(m.vocab, 30)
            out[kc] = ""
    assert out[ka] == alone_a and out[kb] == alone_b and out[kc] == alone_c
    assert gen.is_done()


def test_removing_a_row_frees_it_and_the_others_go_on():
    m = _tiny_model()
    cfg = SamplingConfig(temperature=1.0, seed=5)
    ref = m.generate_batch(["ab", "cd", "ef"], 50, cfg)
    gen, streams, keys = m.start(["ab", "cd", "ef"], 50, cfg)
    out = {k: "" for k in keys}
    for n, (k, piece) in enumerate(run(gen, streams)):
        out[k] += piece
        if n == 20:
            gen.remove([keys[1]])  # cancelled: it never steps again
            assert len(gen) == 2 and keys[1] not in gen.keys
    assert out[keys[0]] == ref[0] and out[keys[2]] == ref[2]
    assert ref[1].startswith(out[keys[1]]) and len(out[keys[1]]) < 50


def test_text_stream_ends_on_eos_stop_and_length():
    vocab = Vocabulary(tuple("abc"), eos=True)
    s = TextStream(vocab, 10, stop=("bc",))
    assert [s.push(0), s.push(1), s.finish_reason, s.push(2), s.finish_reason] == \
        ["a", "", None, "", "stop"]
    s = TextStream(vocab, 3, stop=("bc",))
    assert [s.push(0), s.push(1), s.push(1), s.finish_reason] == ["a", "", "bb", "length"]
    s = TextStream(vocab, 5, stop=("cc",))
    assert [s.push(2), s.push(3), s.finish_reason, s.text(), s.tokens] == \
        ["", "c", "eos", "c", [2, 3]]
    with pytest.raises(ConfigError, match="max_chars 0: a text stream needs at least 1"):
        TextStream(vocab, 0)


@pytest.mark.parametrize("stops,feed,expected", [
    (("END",), "aENb", ["a", "", "", "ENb"]),
    (("END",), "aEND", ["a", "", "", ""]),
    (("ab", "b"), "xab", ["x", "", ""]),  # 'b' alone is a stop too: it ends at the first
    (("b", "ab"), "xab", ["x", "", ""]),  # the stop that starts earliest wins, in any order
    (("aab", "ab"), "xaab", ["x", "", "", ""]),
    (("abab",), "xabacabab", ["x", "", "", "", "abac", "", "", "", ""]),  # KMP falls back
    (("aab",), "aaab", ["", "", "a", ""]),  # the held 'aa' slides: only the first 'a' is safe
    (("\n\n",), "a\nb\n\n", ["a", "", "\nb", "", ""]),
])
def test_stop_matcher_units(stops, feed, expected):
    m = StopMatcher(stops)
    assert [m.feed(c) for c in feed] == expected


def _stop_reference(stops, text):
    """What a stop-aware stream must emit: the text before the first position where a stop
    string ends, cut at the earliest start among the stops ending there (brute force)."""
    for end in range(1, len(text) + 1):
        starts = [end - len(s) for s in stops if s and text[:end].endswith(s)]
        if starts:
            return text[: min(starts)], True
    return text, False


def test_stop_matcher_matches_a_brute_force_reference():
    rng = np.random.default_rng(7)
    for _ in range(3000):
        stops = ["".join(rng.choice(list("ab"), rng.integers(1, 5))) for _ in range(rng.integers(1, 4))]
        text = "".join(rng.choice(list("abc"), rng.integers(0, 14)))
        m = StopMatcher(stops)
        out = "".join(m.feed(c) for c in text if not m.stopped)
        if not m.stopped:
            out += m.flush()
        assert (out, m.stopped) == _stop_reference(stops, text), (stops, text)


def test_beam_search_with_end_of_sequence_and_length_penalty():
    """A line model whose EOS ends beams early: finished beams are kept, and the length
    penalty decides between a short finished beam and longer open ones."""
    rng = np.random.default_rng(1)
    step, _ = _numpy_model(vocab="abcd", units=6, seed=2)
    vocab = Vocabulary(tuple("abc"), eos=True)  # id 3 is EOS
    prompt = np.array([3, 0], np.int32)
    logits, state = prime(step, [prompt])
    n = 4
    seqs = []
    for s in itertools.product(range(4), repeat=n):  # brute force, stopping at the first EOS
        cut = s[: s.index(3) + 1] if 3 in s else s
        if cut not in seqs:
            seqs.append(cut)
    scored = [(_logprob(step, prompt, s), s) for s in seqs]
    for lp_pen in (0.0, 1.0, 2.0):
        beams = beam_search(step, vocab, logits, state, n, width=64, length_penalty=lp_pen,
                            n_best=5)
        def key(item):
            lp, s = item
            return lp / len(s) ** lp_pen if lp_pen else lp
        best = sorted(scored, key=key, reverse=True)[:5]
        assert [b.tokens for b in beams] == [s for _, s in best], lp_pen
        assert all(b.finished == (b.tokens[-1] == 3) for b in beams)
    del rng


@pytest.mark.parametrize("kwargs,message", [
    (dict(width=0), "beam width 0: must be in 1..256"),
    (dict(width=10**9), "beam width 1000000000: must be in 1..256"),
    (dict(width=4, length_penalty=1e308), r"length_penalty 1e\+308: must be in \[-10, 10\]"),
    (dict(width=4, length_penalty=float("nan")), r"length_penalty nan: must be in \[-10, 10\]"),
    (dict(width=4, n_best=5), "n_best 5: must be in 1..4"),
])
def test_beam_search_refuses_absurd_values(kwargs, message):
    step, vocab = _numpy_model()
    logits, state = prime(step, [np.array([0], np.int32)])
    with pytest.raises(ConfigError, match=message):
        beam_search(step, vocab, logits, state, 3, **kwargs)
