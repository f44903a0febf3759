"""The import paths README's Python examples used before the runtime was split into rooms keep
working for one release (charwright.runtime.generator, .sampling, .text_stream)."""


def test_old_paths_give_the_same_objects():
    from charwright.runtime.generate import generator as new_gen, text_stream as new_ts
    from charwright.runtime.generator import Generator, run
    from charwright.runtime.sampling import Sampler, SamplingConfig
    from charwright.runtime.sampling.config import Sampler as S2, SamplingConfig as C2
    from charwright.runtime.text_stream import TextStream

    assert Generator is new_gen.Generator and run is new_gen.run
    assert TextStream is new_ts.TextStream
    assert Sampler is S2 and SamplingConfig is C2


def test_the_sampling_package_offers_what_the_sampling_module_did():
    import charwright.runtime.sampling as sampling

    for name in ("ORDER", "SEED_MAX", "PENALTY_MAX", "WINDOW_MAX", "MinP", "RepetitionPenalty",
                 "Temperature", "TopK", "TopP", "Typical", "Categorical", "Greedy"):
        assert hasattr(sampling, name), name
