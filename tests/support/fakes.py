"""A scripted fake backend: the next id is a function of the last, with one-hot logits."""

import numpy as np

from charwright.runtime.backends.base import StepBackend
from charwright.runtime.model import Model
from charwright.runtime.vocab import Vocabulary


class ScriptedStep(StepBackend):
    """Logits put 1e9 on NEXT[last id]; the state counts steps (so state handling is visible)."""

    name = "scripted"

    def __init__(self, vocab: Vocabulary, nxt: dict):
        super().__init__(1, vocab.size, "float32", "<scripted>")
        self.table = np.zeros((vocab.size, vocab.size), np.float32)
        for a, b in nxt.items():
            self.table[a, b] = 1e9
        self.calls = []

    def step(self, tokens, state):
        self.calls.append(tokens.copy())
        return self.table[tokens].copy(), state + 1


class FakeBundle:
    def __init__(self, vocab):
        self.vocab = vocab


def scripted_model(text_cycle: str, eos=False, after=None) -> Model:
    """A model that, after character c, always says the character that follows c in text_cycle
    (cyclically); `after` overrides single transitions, e.g. {"x": EOS}."""
    vocab = Vocabulary.from_text(text_cycle, eos=eos)
    ids = [vocab.encode(c)[0] for c in text_cycle]
    nxt = {ids[i]: ids[(i + 1) % len(ids)] for i in range(len(ids))}
    for a, b in (after or {}).items():
        nxt[vocab.encode(a)[0]] = b
    if eos:
        nxt[vocab.eos_id] = ids[0]
    m = Model.__new__(Model)
    m.bundle, m.entry, m.threads, m.vocab = FakeBundle(vocab), None, 1, vocab
    m._shared, m._thread_safe = ScriptedStep(vocab, nxt), True
    import threading

    m._local = threading.local()
    return m
