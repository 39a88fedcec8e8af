from django.contrib import admin
from django.http import JsonResponse
from django.urls import include, path
from django_prometheus.exports import ExportToDjangoView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from activity.api import otlp, traces
from activity.api.prometheus import prometheus_metrics
from alerts.api.views import AlertListView
from applications.api.views import ApplicationListView
from sollol_site import accounts, health, views

urlpatterns = [
    path("", views.index, name="index"),
    path("login/", accounts.login, name="login"),
    path("logout/", accounts.logout, name="logout"),
    path("admin/", admin.site.urls),
    path("api/alerts", AlertListView.as_view()),
    path("api/alerts/", include("alerts.api.urls")),
    path("api/applications", ApplicationListView.as_view()),
    path("api/applications/", include("applications.api.urls")),
    # The network's health counts the applications too: the roof joins them.
    path("api/network/health", health.HealthView.as_view(), name="network-health"),
    path("api/network/", include("network.api.urls")),
    path("api/", include("frameworks.api.urls")),
    path("api/traces", traces.TraceListView.as_view(), name="trace-list"),
    path("api/traces/<str:trace_id>", traces.TraceDetailView.as_view(), name="trace"),
    path("v1/traces", otlp.otlp_traces, name="otlp-traces"),
    path("v1/logs", otlp.otlp_logs, name="otlp-logs"),
    path("api/", include("activity.api.urls")),
    path("api/prometheus", prometheus_metrics, name="prometheus"),
    path("metrics", ExportToDjangoView, name="prometheus-django-metrics"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path(
        "api/schema/swagger/",
        SpectacularSwaggerView.as_view(url_name="schema"),
        name="swagger-ui",
    ),
]


# Clients of /api/ and of the OTLP receiver at /v1/ read JSON, also in errors.
MACHINE_PATHS = ("/api/", "/v1/")


def _api_or_page(page_handler, status: int, message: str):
    def handler(request, exception=None):
        if request.path.startswith(MACHINE_PATHS):
            return JsonResponse({"error": message}, status=status)
        if exception is None:
            return page_handler(request)
        return page_handler(request, exception)

    return handler


handler400 = _api_or_page(
    views.bad_request, 400, "bad request (a Host this dashboard does not serve?)"
)
handler404 = _api_or_page(views.page_not_found, 404, "no such endpoint")
handler500 = _api_or_page(views.server_error, 500, "internal error")
