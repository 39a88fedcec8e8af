from django.urls import path

from network.consumers import BackendsConsumer, NodesConsumer

websocket_urlpatterns = [
    path("ws/network/nodes", NodesConsumer.as_asgi()),
    path("ws/network/backends", BackendsConsumer.as_asgi()),
]
