"""Priming: prompts of one length prime as one batch; results come back in the prompts' order;
Model.start puts rows into the batch grouped by length, keys in the prompts' order."""

import numpy as np

from fakes import scripted_model

from charwright.runtime.generate.priming import by_length, prime
from charwright.runtime.sampling.config import SamplingConfig


class _Recording:
    """A backend that records the batch sizes it was stepped with (state = running id sum)."""

    vocab_size = 5

    def __init__(self):
        self.batches = []

    def initial_state(self, n):
        return np.zeros((n, 1), np.float32)

    def step(self, tokens, state):
        self.batches.append(len(tokens))
        state = state + tokens[:, None]
        logits = np.repeat(state, self.vocab_size, axis=1).astype(np.float32)
        return logits, state


def test_by_length_groups_shortest_first_in_order():
    prompts = [[1, 2, 3], [1], [4, 5, 6], [2], [7, 8]]
    assert by_length(prompts) == [[1, 3], [4], [0, 2]]


def test_prime_batches_each_length_and_keeps_the_prompts_order():
    be = _Recording()
    prompts = [np.array(p, np.int32) for p in ([1, 2, 3], [4], [2, 2, 2], [3])]
    logits, state = prime(be, prompts)
    assert be.batches == [2, 2, 2, 2]  # the two 1-id prompts once, the two 3-id prompts 3 times
    assert state[:, 0].tolist() == [6, 4, 6, 3]
    assert logits.shape == (4, 5)


def test_start_keys_follow_the_prompts_and_match_one_by_one():
    m = scripted_model("abcdefgh ")
    cfg = SamplingConfig(seed=3, temperature=1.5)
    prompts = ["abc", "h", "de", "f", "gab"]
    gen, streams, keys = m.start(prompts, 12, cfg)
    assert len(set(keys)) == len(prompts)
    # rows join grouped by length: the batch holds "h", "f", then "de", then "abc", "gab"
    assert [keys.index(k) for k in gen.keys] == [1, 3, 2, 0, 4]
    texts = [c.text for c in m.complete(prompts, 12, cfg)]
    assert texts == [m.complete([p], 12, cfg, row_ids=[i])[0].text for i, p in enumerate(prompts)]
