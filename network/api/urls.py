from django.urls import path

from network.api import views

urlpatterns = [
    path("nodes", views.NodeListView.as_view(), name="node-list"),
    path("nodes/<int:node_id>", views.NodeDetailView.as_view(), name="node"),
    path("backends", views.BackendListView.as_view(), name="backend-list"),
    path(
        "backends/<int:backend_id>", views.BackendDetailView.as_view(), name="backend"
    ),
]
