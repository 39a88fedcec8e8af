from django.urls import path

from frameworks.consumers import FrameworksConsumer

websocket_urlpatterns = [
    path("ws/frameworks", FrameworksConsumer.as_asgi()),
]
