"""What `charwright serve` measures: the Histogram the engine's scheduler fills, and the
Prometheus collector that reads every engine at scrape time (GET /metrics).

Importable without the [serve] extra: prometheus_client is imported when a scrape collects."""

from __future__ import annotations

import bisect

STEP_SECONDS_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                        0.25, 1.0)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)

# The metric families in exposition order: (kind, name, help, the Engine attribute it reads).
# charwright_requests is the HTTP layer's count, by model and status (Served.requests).
FAMILIES = (
    ("gauge", "charwright_requests_running", "Requests whose rows are in the batch.",
     "running_requests"),
    ("gauge", "charwright_requests_waiting", "Requests accepted and waiting for rows.",
     "waiting_requests"),
    ("gauge", "charwright_batch_rows", "Rows in the batch now.", "running_rows"),
    ("counter", "charwright_requests",
     "Completion requests by HTTP status (499: the client went away).", None),
    ("counter", "charwright_chars_generated", "Characters (ids) generated.", "chars_generated"),
    ("histogram", "charwright_step_seconds", "Time of one batched step (backend + sampling).",
     "step_seconds"),
    ("counter", "charwright_scheduler_passes",
     "Scheduler passes that stepped the batch: one step, or several in one compiled call.",
     "passes"),
    ("histogram", "charwright_batch_size", "Rows per batched step.", "batch_size"),
    ("gauge", "charwright_requests_priming", "Requests whose prompts are being primed.",
     "priming_requests"),
    ("gauge", "charwright_prompt_chars_left", "Prompt characters (ids) still to prime.",
     "prompt_ids_left"),
    ("counter", "charwright_prompt_chars_primed",
     "Prompt characters (ids) run through the step graph.", "prompt_ids_primed"),
    ("counter", "charwright_prime_seconds", "Time the scheduler spent priming prompts.",
     "prime_seconds"),
    ("counter", "charwright_prompt_cache_hits",
     "Prompts that began from a cached state (whole or a prefix; --prompt-cache-mb).",
     "prompt_cache_hits"),
    ("counter", "charwright_prompt_cache_misses", "Prompts primed from their first character.",
     "prompt_cache_misses"),
    ("counter", "charwright_prompt_cache_evictions",
     "Cached states dropped to stay within --prompt-cache-mb (least recently used first).",
     "prompt_cache_evictions"),
    ("gauge", "charwright_prompt_cache_bytes", "Bytes the prompt cache holds.",
     "prompt_cache_bytes"),
    ("gauge", "charwright_prompt_cache_max_bytes",
     "The prompt cache's bound (0: off, by --prompt-cache-mb 0 or a file that is not "
     "batch-invariant).", "prompt_cache_max_bytes"),
    ("counter", "charwright_prompt_chars_reused",
     "Prompt characters (ids) not primed because a cached state held them.",
     "prompt_cache_ids_reused"),
)


class Histogram:
    """Cumulative-free bucket counts, Prometheus style (le = upper bounds, +Inf last)."""

    def __init__(self, bounds):
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, x: float, n: int = 1) -> None:
        """n observations of x (a pass of n steps of x seconds each, on average)."""
        self.counts[bisect.bisect_left(self.bounds, x)] += n
        self.sum += x * n
        self.count += n

    def cumulative(self) -> list:
        """[(le, cumulative count)] with '+Inf' last."""
        out, total = [], 0
        for le, c in zip(list(self.bounds) + [float("inf")], self.counts):
            total += c
            out.append((le, total))
        return out


class Collector:
    """Prometheus metrics, read from the engines at scrape time. `state` has `models` (name ->
    Served: name, engine, requests) and `rejected_unrouted` (status -> count of requests that
    named no served model, reported with model="")."""

    def __init__(self, state):
        self.state = state

    def collect(self) -> list:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        kinds = {"gauge": GaugeMetricFamily, "counter": CounterMetricFamily,
                 "histogram": HistogramMetricFamily}
        models = list(self.state.models.values())
        out = []
        for kind, name, doc, attr in FAMILIES:
            if attr is None:
                out.append(self._requests(CounterMetricFamily(name, doc,
                                                              labels=["model", "status"]), models))
                continue
            fam = kinds[kind](name, doc, labels=["model"])
            for s in models:
                value = getattr(s.engine, attr)
                if kind == "histogram":
                    fam.add_metric([s.name], [(_le(le), c) for le, c in value.cumulative()],
                                   value.sum)
                else:
                    fam.add_metric([s.name], value)
            out.append(fam)
        return out

    def _requests(self, fam, models):
        for s in models:
            for status, count in sorted(s.requests.items()):
                fam.add_metric([s.name, status], count)
        for status, count in sorted(self.state.rejected_unrouted.items()):
            fam.add_metric(["", status], count)
        return fam


def registry(state):
    """A prometheus_client CollectorRegistry holding only this server's Collector."""
    from prometheus_client import CollectorRegistry

    reg = CollectorRegistry()
    reg.register(Collector(state))
    return reg


def _le(x: float) -> str:
    return "+Inf" if x == float("inf") else repr(float(x))
