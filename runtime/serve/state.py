"""What a running `charwright serve` holds: its configuration (ServeConfig), the name each bundle
is served under, the models it serves (Served: Model, Engine, request counts) and its phase
(State). Importable without the [serve] extra; `missing_extra` is the one error the server's
modules raise when that extra is not installed."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from charwright.runtime.errors import BackendUnavailable, ConfigError
from charwright.runtime.sampling.config import bundle_defaults

DEFAULT_MAX_PROMPT_CHARS = 100_000  # --max-prompt-chars (~3 s of priming alone, demo model)
DEFAULT_STREAM_INTERVAL = "auto"  # --stream-interval: seconds between a stream's frames, at
#   least (a frame per character costs the event loop a socket write each; 0: a frame whenever
#   there is text), or "auto" (relay.auto_interval): AUTO_INTERVAL_PASSES x the batch's mean
#   pass (one batched step, or the steps of one compiled call) within AUTO_INTERVAL_MIN..MAX
MAX_STREAM_INTERVAL = 10.0
AUTO_INTERVAL_PASSES = 2.0  # a frame every 2 passes at most: a reader waits <= about 3 passes
AUTO_INTERVAL_MIN = 0.005  # s: each frame's wake-up of the event loop costs the scheduler a GIL
#   hand-off (at 1 client, demo ONNX, 2 ms served ~8% fewer characters/s than 5 ms)
AUTO_INTERVAL_MAX = 0.05  # s: a slow model's streams still get 20 frames/s at least
DEFAULT_WRITE_TIMEOUT = 30.0  # --write-timeout: seconds one SSE frame may wait for the client
DEFAULT_MAX_UNSENT_CHARS = 100_000  # --max-unsent-chars: text a stream may hold for a client
#   that is not reading, behind its socket's buffers (~5 MB: ~47 bytes per character pending)


def missing_extra(e: ImportError) -> BackendUnavailable:
    """The error for a server dependency that is not installed (the CLI names the extra)."""
    return BackendUnavailable(f"{e.name} is not installed; install the server with: "
                              "pip install 'charwright[serve]'")


@dataclass
class ServeConfig:
    bundles: tuple = ()  # bundle directories; empty: the demo
    backend: str = "onnx"
    precision: str | None = None
    threads: int = 1
    max_batch: int = 64
    max_queue: int = 64
    api_key: str | None = field(default=None, repr=False)  # never printed
    request_timeout: float = 600.0  # 0: none
    shutdown_timeout: float = 30.0
    max_prompt_chars: int = DEFAULT_MAX_PROMPT_CHARS
    prompt_cache_mb: float = 64.0  # --prompt-cache-mb: states of primed prompts (0: none)
    stream_interval: float | str = DEFAULT_STREAM_INTERVAL  # seconds between a stream's frames,
    #   at least, or "auto" (state.AUTO_INTERVAL_*: tied to the batch's pass time)
    write_timeout: float = DEFAULT_WRITE_TIMEOUT  # a frame not taken by then: 499 (0: none)
    max_unsent_chars: int = DEFAULT_MAX_UNSENT_CHARS  # more piled up behind a blocked write: 499


def model_names(bundles) -> list[str]:
    """The name each bundle is served under: its directory's name (the demo: "demo")."""
    from charwright.runtime.model import DEMO_BUNDLE

    names = [Path(b).resolve().name for b in bundles] if bundles else [DEMO_BUNDLE.name]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ConfigError(f"two bundles are named {sorted(dup)[0]!r}: models are served by "
                          "directory name, so give each bundle its own")
    return names


class Served:
    """One model: its name, Model, Engine and the request counters of the HTTP layer."""

    def __init__(self, name, model, engine):
        self.name, self.model, self.engine = name, model, engine
        self.created = int(time.time())
        self.requests: dict[str, int] = {}  # HTTP status (499: client gone) -> count
        # the bundle's sampling_defaults, read and checked as `charwright generate` reads them
        # (a malformed object is a BundleError at start-up)
        self.sampling_defaults = bundle_defaults(model.bundle.manifest,
                                                 f"{model.bundle.root}/manifest.json")

    def count(self, status: int) -> None:
        key = str(status)
        self.requests[key] = self.requests.get(key, 0) + 1


class State:
    """What the app knows: "loading", "ready", "draining" or "failed"."""

    def __init__(self, cfg: ServeConfig, names):
        self.cfg, self.names = cfg, names
        self.phase = "loading"
        self.fatal: str | None = None
        self.models: dict[str, Served] = {}
        self.open_responses = 0
        self.streams: set = set()  # the open SSE answers (relay.CompletionRelay), for drain()
        self.server = None  # the uvicorn.Server, to ask it to exit
        self.loop = None
        self.frame_clock = None  # relay.FrameClock: the --stream-interval ticks, made at first use
        self.rejected_unrouted: dict[str, int] = {}  # requests that named no served model

    def count_unrouted(self, status: int) -> None:
        self.rejected_unrouted[str(status)] = self.rejected_unrouted.get(str(status), 0) + 1
