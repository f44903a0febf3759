"""Old import path, kept for one release: use charwright.runtime.generate.text_stream."""

from charwright.runtime.generate.text_stream import *  # noqa: F401,F403
