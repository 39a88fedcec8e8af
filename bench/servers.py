"""Benchmark: reading a vLLM /metrics page (network/servers.py read_metrics).

    .venv/bin/python bench/servers.py

The page is made with prometheus_client (what vLLM itself uses) from vLLM's own
families (vllm/v1/metrics/loggers.py: names, HELP, labels model_name and engine,
its histograms' buckets) for two engines, plus the process and Python collectors
a single-process vLLM also exposes, until it is about 50 KB. Goal (issue 13):
≤ 2 ms a page. Prints the median and p90 of many reads, and the page's size.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from prometheus_client import (  # noqa: E402
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from network.servers import METRICS, read_metrics  # noqa: E402

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
TOKEN_BUCKETS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000]
SECOND_BUCKETS = [
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
    7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
]  # fmt: skip


def vllm_page(target_bytes: int = 50_000) -> str:
    registry = CollectorRegistry()
    labels = ["model_name", "engine"]
    gauges = {
        "vllm:num_requests_running": "Number of requests in model execution batches.",
        "vllm:num_requests_waiting": "Number of requests waiting to be processed.",
        "vllm:kv_cache_usage_perc": "KV-cache usage. 1 means 100 percent usage.",
    }
    counters = {
        "vllm:prompt_tokens": "Number of prefill tokens processed.",
        "vllm:generation_tokens": "Number of generation tokens processed.",
        "vllm:num_preemptions": "Cumulative number of preemption from the engine.",
        "vllm:prefix_cache_queries": "Prefix cache queries, in terms of number of "
        "queried tokens.",
        "vllm:prefix_cache_hits": "Prefix cache hits, in terms of number of cached "
        "tokens.",
    }
    histograms = {
        "vllm:time_to_first_token_seconds": SECOND_BUCKETS,
        "vllm:inter_token_latency_seconds": SECOND_BUCKETS,
        "vllm:e2e_request_latency_seconds": SECOND_BUCKETS,
        "vllm:request_queue_time_seconds": SECOND_BUCKETS,
        "vllm:request_prefill_time_seconds": SECOND_BUCKETS,
        "vllm:request_decode_time_seconds": SECOND_BUCKETS,
        "vllm:request_prompt_tokens": TOKEN_BUCKETS,
        "vllm:request_generation_tokens": TOKEN_BUCKETS,
    }
    made = [Gauge(n, h, labels, registry=registry) for n, h in gauges.items()]
    made += [Counter(n, h, labels, registry=registry) for n, h in counters.items()]
    made += [
        Histogram(n, n, labels, buckets=b, registry=registry)
        for n, b in histograms.items()
    ]
    engine = 0
    page = b""
    while len(page) < target_bytes:
        for metric in made:
            child = metric.labels(MODEL, str(engine))
            if isinstance(metric, Gauge):
                child.set(engine + 1)
            elif isinstance(metric, Counter):
                child.inc(1000 * (engine + 1))
            else:
                child.observe(0.3)
        engine += 1
        page = generate_latest(registry)
    return page.decode()


def main() -> None:
    page = vllm_page()
    families = METRICS["vllm"]
    read_metrics(page, families)  # warm
    times = []
    for _ in range(300):
        started = time.perf_counter()
        gauges, counters = read_metrics(page, families)
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    print(
        f"vLLM /metrics page of {len(page) / 1000:.1f} KB, {page.count(chr(10))} "
        f"lines: read in median {statistics.median(times):.2f} ms, "
        f"p90 {times[int(len(times) * 0.9)]:.2f} ms (goal ≤ 2 ms); "
        f"gauges {gauges}, counters {counters}"
    )


if __name__ == "__main__":
    main()
