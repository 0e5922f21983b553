"""Prometheus metrics (prometheus_client, a registry of the server's own).

Counters and gauges are read from the scheduler and the cache when scraped
(a collector), so the scheduler knows nothing of Prometheus; time to first
token is a histogram observed by the scheduler's Observer hook.
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from .scheduler import Observer


class _SchedulerCollector:
    def __init__(self, scheduler) -> None:
        self.s = scheduler

    def collect(self):
        s = self.s
        for name, doc, value in (
            ("mambart_requests", "Sequences admitted (one per prompt and choice).", s.requests),
            ("mambart_prompt_tokens", "Prompt tokens of admitted sequences.", s.prompt_tokens),
            ("mambart_prefilled_tokens", "Prompt tokens actually prefilled (not covered by the cache).",
             s.prefilled_tokens),
            ("mambart_prefetched_tokens", "Tokens of finished chat replies prefilled into the cache for the next turn.",
             s.prefetched_tokens),
            ("mambart_cached_tokens", "Prompt tokens covered by prefix-cache hits.", s.cached_tokens),
            ("mambart_generated_tokens", "Tokens generated.", s.generated_tokens),
            ("mambart_decode_steps", "Batched decode steps run.", s.steps),
        ):
            yield CounterMetricFamily(name, doc, value=value)
        yield GaugeMetricFamily("mambart_queue_length", "Requests waiting to be prefilled.", value=s.queue_length)
        yield GaugeMetricFamily("mambart_batch_occupancy", "Rows decoding now.", value=s.live_rows)
        yield GaugeMetricFamily("mambart_max_batch", "Rows the scheduler decodes at most.", value=s.max_batch)
        c = s.cache
        if c is not None:
            yield CounterMetricFamily("mambart_cache_hits", "Prefix-cache lookups that hit.", value=c.hits)
            yield CounterMetricFamily("mambart_cache_misses", "Prefix-cache lookups that missed.", value=c.misses)
            yield CounterMetricFamily("mambart_cache_evictions", "Prefix-cache entries evicted.", value=c.evictions)
            yield GaugeMetricFamily("mambart_cache_bytes", "Bytes held by the prefix cache.", value=c.nbytes)
            yield GaugeMetricFamily("mambart_cache_entries", "Entries in the prefix cache.", value=len(c))
            yield GaugeMetricFamily("mambart_cache_max_bytes", "The prefix cache's bound.", value=c.max_bytes)


class Metrics(Observer):
    def __init__(self, scheduler=None) -> None:
        self.registry = CollectorRegistry()
        self.http_requests = Counter("mambart_http_requests", "Generation requests accepted, by endpoint.",
                                     ["endpoint"], registry=self.registry)
        self.http_rejected = Counter("mambart_http_rejected", "Requests answered with an error, by status.",
                                     ["status"], registry=self.registry)
        self.ttft = Histogram("mambart_time_to_first_token_seconds", "From submission to the first token.",
                              buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
                              registry=self.registry)
        if scheduler is not None:
            self.attach(scheduler)

    def attach(self, scheduler) -> None:
        self.registry.register(_SchedulerCollector(scheduler))

    # Observer
    def first_token(self, seconds: float) -> None:
        self.ttft.observe(seconds)

    def accepted(self, endpoint: str) -> None:
        self.http_requests.labels(endpoint).inc()

    def rejected(self, status: int) -> None:
        self.http_rejected.labels(str(status)).inc()

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
