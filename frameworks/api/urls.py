from django.urls import path

from frameworks.api import views

urlpatterns = [
    path("ray/metrics", views.RayMetricsView.as_view(), name="ray-metrics"),
    path("dask/metrics", views.DaskMetricsView.as_view(), name="dask-metrics"),
]
