from django.urls import path

from activity.consumers import LogStreamConsumer, ModelActivityConsumer

websocket_urlpatterns = [
    path("ws/ollama_activity", ModelActivityConsumer.as_asgi()),
    path("ws/network/ollama_activity", ModelActivityConsumer.as_asgi()),
    path("ws/logs", LogStreamConsumer.as_asgi()),
]
