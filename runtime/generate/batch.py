"""Prompts (text) -> a running batch: each prompt's ids, its row in a Generator and its TextStream.
What Model.generate / stream / complete drive with generator.run.

    ids = encode_prompt(vocab, "ROMEO:")
    gen, streams, keys = start(backend, vocab, ["ROMEO:", "JULIET:"], 200, sampling)
"""

from __future__ import annotations

import numpy as np

from charwright.runtime.errors import ConfigError
from charwright.runtime.generate.generator import Generator
from charwright.runtime.generate.priming import by_length
from charwright.runtime.generate.text_stream import TextStream
from charwright.runtime.sampling.config import SamplingConfig, make_sampler, resolve_seed


def encode_prompt(vocab, prompt: str, unknown: str = "error", replacement=None) -> np.ndarray:
    """Prompt -> ids to prime with. A line-mode model starts from its end-of-sequence id (the
    start of a line); an empty prompt on a plain model starts from '\\n' (a fresh line)."""
    ids = vocab.encode(prompt, unknown=unknown, replacement=replacement)
    if vocab.eos:
        return np.concatenate([[vocab.eos_id], ids]).astype(np.int32)
    if len(ids) == 0:
        if "\n" not in vocab:
            raise ConfigError("empty prompt: this model has no '\\n' to start from; give a "
                              "prompt of at least one character")
        return vocab.encode("\n")
    return ids


def start(backend, vocab, prompts, max_chars=200, sampling=None, stop=(), unknown="error",
          replacement=None, row_ids=None):
    """A running batch for `prompts`: (Generator, {key: TextStream}, [key per prompt]).

    Row i samples from its own generator seeded by (seed, row_ids[i] or i), so its text does
    not depend on the batch. Prompts of equal length are primed together, and rows join the
    batch grouped by length (priming.by_length). Bad input raises here, before any step.
    max_chars 0 gives rows that are done at once (no key, None)."""
    sampling = resolve_seed(sampling or SamplingConfig())
    if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 0:
        raise ConfigError(f"max_chars {max_chars!r}: must be an integer >= 0")
    ids = [encode_prompt(vocab, p, unknown, replacement) for p in prompts]
    row_ids = list(range(len(ids))) if row_ids is None else list(row_ids)
    if len(row_ids) != len(ids):
        raise ConfigError(f"{len(row_ids)} row ids for {len(ids)} prompts")
    gen = Generator(backend)
    if not ids:
        return gen, {}, []
    sampler = make_sampler(sampling, vocab)  # a regex compiles here (ConfigError if bad)
    dfa = getattr(sampler, "constraint", None)
    if dfa is not None:  # the start's cheapest move, not dist[0]: `(abc)*` needs 3, not 0
        dfa.check_limit(max_chars)
    if max_chars == 0:
        return gen, {}, [None] * len(ids)
    order = [i for group in by_length(ids) for i in group]
    added = gen.add([ids[i] for i in order], sampler, sampling.seed,
                    [row_ids[i] for i in order], max_chars=max_chars)
    keys = [k for _, k in sorted(zip(order, added))]
    streams = {k: TextStream(vocab, max_chars, stop, dfa) for k in keys}
    return gen, streams, keys
