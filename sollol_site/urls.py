from django.contrib import admin
from django.http import JsonResponse
from django.urls import include, path
from django_prometheus.exports import ExportToDjangoView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from activity.api import traces
from activity.api.prometheus import prometheus_metrics
from applications.api.views import ApplicationListView
from sollol_site import views

urlpatterns = [
    path("", views.index, name="index"),
    path("admin/", admin.site.urls),
    path("api/applications", ApplicationListView.as_view()),
    path("api/applications/", include("applications.api.urls")),
    path("api/network/", include("network.api.urls")),
    path("api/", include("frameworks.api.urls")),
    path("api/traces", traces.TraceListView.as_view(), name="trace-list"),
    path("api/traces/<str:trace_id>", traces.TraceDetailView.as_view(), name="trace"),
    path("v1/traces", traces.otlp_traces, name="otlp-traces"),
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


def _api_or_page(page_handler):
    def handler(request, exception=None):
        if request.path.startswith("/api/"):
            status = 404 if page_handler is views.page_not_found else 500
            message = "no such endpoint" if status == 404 else "internal error"
            return JsonResponse({"error": message}, status=status)
        if exception is None:
            return page_handler(request)
        return page_handler(request, exception)

    return handler


handler404 = _api_or_page(views.page_not_found)
handler500 = _api_or_page(views.server_error)
