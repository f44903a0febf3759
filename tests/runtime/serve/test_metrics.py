"""What /metrics says, without a server: the Histogram the scheduler fills and the Prometheus
text the collector makes from the engines' figures and the HTTP layer's counts."""

from types import SimpleNamespace

import pytest

from charwright.runtime.serve.metrics import FAMILIES, Histogram


def test_histogram_buckets_are_upper_bounds_with_inf_last():
    h = Histogram((1, 2))
    for x in (0.5, 1, 1.5, 3):
        h.observe(x)
    assert h.cumulative() == [(1, 2), (2, 3), (float("inf"), 4)]
    assert (h.sum, h.count) == (6.0, 4)


@pytest.mark.serve
def test_the_exposition_reads_every_engine_and_the_unrouted_counts():
    from prometheus_client import generate_latest

    from charwright.runtime.serve.metrics import registry

    h = Histogram((1,))
    h.observe(0.5)
    engine = SimpleNamespace(running_requests=1, waiting_requests=2, running_rows=3,
                             chars_generated=4, priming_requests=5, prompt_ids_left=6,
                             prompt_ids_primed=7, prime_seconds=0.5, step_seconds=h,
                             batch_size=h, prompt_cache_hits=8, prompt_cache_misses=9,
                             prompt_cache_evictions=10, prompt_cache_bytes=11,
                             prompt_cache_ids_reused=12, prompt_cache_max_bytes=13,
                             passes=14)
    state = SimpleNamespace(
        models={"m": SimpleNamespace(name="m", engine=engine, requests={"200": 3, "499": 1})},
        rejected_unrouted={"401": 2})
    text = generate_latest(registry(state)).decode()
    for line in ('charwright_requests_running{model="m"} 1.0',
                 'charwright_batch_rows{model="m"} 3.0',
                 'charwright_requests_total{model="m",status="200"} 3.0',
                 'charwright_requests_total{model="m",status="499"} 1.0',
                 'charwright_requests_total{model="",status="401"} 2.0',
                 'charwright_chars_generated_total{model="m"} 4.0',
                 'charwright_step_seconds_bucket{le="1.0",model="m"} 1.0',
                 'charwright_step_seconds_bucket{le="+Inf",model="m"} 1.0',
                 'charwright_batch_size_sum{model="m"} 0.5',
                 'charwright_requests_priming{model="m"} 5.0',
                 'charwright_prompt_chars_left{model="m"} 6.0',
                 'charwright_prompt_chars_primed_total{model="m"} 7.0',
                 'charwright_prime_seconds_total{model="m"} 0.5',
                 'charwright_prompt_cache_hits_total{model="m"} 8.0',
                 'charwright_prompt_cache_misses_total{model="m"} 9.0',
                 'charwright_prompt_cache_evictions_total{model="m"} 10.0',
                 'charwright_prompt_cache_bytes{model="m"} 11.0',
                 'charwright_prompt_chars_reused_total{model="m"} 12.0',
                 'charwright_prompt_cache_max_bytes{model="m"} 13.0',
                 'charwright_scheduler_passes_total{model="m"} 14.0'):
        assert line in text.splitlines(), line
    types = [line.split()[2:] for line in text.splitlines() if line.startswith("# TYPE")]
    # in FAMILIES' order (a counter's TYPE line names it with _total)
    assert types == [[name + ("_total" if kind == "counter" else ""), kind]
                     for kind, name, _, _ in FAMILIES]
