"""Old import path, kept for one release: use charwright.runtime.generate.generator (the running
batch and its loop) and charwright.runtime.generate.priming (prime, Primer)."""

from charwright.runtime.generate.generator import Generator, run  # noqa: F401
from charwright.runtime.generate.priming import PRIME_CHUNK, Primer, prime  # noqa: F401
