"""GET /api/prometheus: the fleet in the Prometheus text format."""

from __future__ import annotations

from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from activity import prometheus
from core.prometheus import CONTENT_TYPE


@csrf_exempt  # it writes nothing; a POST gets its JSON 405, not the CSRF page
def prometheus_metrics(request):
    """Answer a scrape with the fleet's metrics, read from the database now."""
    # A plain view, not DRF: a scraper's Accept header (openmetrics, text/plain)
    # must not be negotiated against the JSON renderer.
    if request.method not in ("GET", "HEAD"):
        response = JsonResponse({"error": f"method {request.method} not allowed"})
        response.status_code = 405
        response["Allow"] = "GET, HEAD"
        return response
    return HttpResponse(prometheus.exposition(), content_type=CONTENT_TYPE)
