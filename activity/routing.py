from django.urls import path

from activity.consumers import ModelActivityConsumer

websocket_urlpatterns = [
    path("ws/ollama_activity", ModelActivityConsumer.as_asgi()),
    path("ws/network/ollama_activity", ModelActivityConsumer.as_asgi()),
]
