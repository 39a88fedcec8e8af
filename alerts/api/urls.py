from django.urls import path

from alerts.api import views

urlpatterns = [
    path("", views.AlertListView.as_view(), name="alert-list"),
    path("<int:alert_id>/ack", views.AlertAckView.as_view(), name="alert-ack"),
    path("rules", views.RuleListView.as_view(), name="alert-rules"),
    path("rules/<str:name>", views.RuleDetailView.as_view(), name="alert-rule"),
    path("silences", views.SilenceListView.as_view(), name="alert-silences"),
    path(
        "silences/<int:silence_id>",
        views.SilenceDetailView.as_view(),
        name="alert-silence",
    ),
    path("channels", views.ChannelListView.as_view(), name="alert-channels"),
    path(
        "channels/<str:name>", views.ChannelDetailView.as_view(), name="alert-channel"
    ),
    path(
        "channels/<str:name>/test",
        views.ChannelTestView.as_view(),
        name="alert-channel-test",
    ),
    path("deliveries", views.DeliveryListView.as_view(), name="alert-deliveries"),
]
