"""logits -> ids, bit-exact in every port (runtime/c/SAMPLING.md): SamplingConfig, the chain of
processors, the selectors, the counter-based RNG and the golden vectors."""

from charwright.runtime.sampling.config import (  # noqa: F401
    ORDER, SEED_MAX, Sampler, SamplingConfig, build_processors, bundle_defaults, describe,
    resolve_seed)
