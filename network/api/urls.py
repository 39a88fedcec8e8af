from django.urls import path

from network.api import views

urlpatterns = [
    path("nodes", views.NodeListView.as_view(), name="node-list"),
    path("nodes/history", views.NodesHistoryView.as_view(), name="nodes-history"),
    path(
        "nodes/<int:node_id>/history",
        views.NodeHistoryView.as_view(),
        name="node-history",
    ),
    path(
        "backends/<int:backend_id>/history",
        views.BackendHistoryView.as_view(),
        name="backend-history",
    ),
    path("history", views.FleetHistoryView.as_view(), name="fleet-history"),
    path("availability", views.AvailabilityView.as_view(), name="availability"),
    path("nodes/<int:node_id>", views.NodeDetailView.as_view(), name="node"),
    path("backends", views.BackendListView.as_view(), name="backend-list"),
    path(
        "backends/<int:backend_id>", views.BackendDetailView.as_view(), name="backend"
    ),
]
