"""logits -> ids, bit-exact in every port (runtime/c/SAMPLING.md): SamplingConfig, the chain of
processors, the selectors, the counter-based RNG and the golden vectors.

The names below are those `charwright.runtime.sampling` offered when it was one module."""

from charwright.runtime.sampling.config import (  # noqa: F401
    ORDER, PENALTY_MAX, PENALTY_MIN, SEED_MAX, WINDOW_MAX, Sampler, SamplingConfig,
    build_processors, bundle_defaults, describe, resolve_seed)
from charwright.runtime.sampling.processors import (  # noqa: F401
    MinP, RepetitionPenalty, Temperature, TopK, TopP, Typical)
from charwright.runtime.sampling.selectors import Categorical, Greedy  # noqa: F401
