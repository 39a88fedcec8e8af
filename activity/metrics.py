"""Router request metrics: what routers and apps report, summed and analysed."""

from __future__ import annotations

# Upper bounds, in seconds, of the latency histogram kept in RequestTotals.buckets
# (and exported to Prometheus as sollol_router_request_duration_seconds).
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
