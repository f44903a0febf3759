"""Old import path, kept for one release: use charwright.runtime.generate.generator."""

from charwright.runtime.generate.generator import *  # noqa: F401,F403
