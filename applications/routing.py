from django.urls import path

from applications.consumers import ApplicationsConsumer

websocket_urlpatterns = [
    path("ws/applications", ApplicationsConsumer.as_asgi()),
]
