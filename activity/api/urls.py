from django.urls import path

from activity.api import events, history, views

urlpatterns = [
    path("metrics", views.MetricsView.as_view(), name="metrics"),
    path("logs", views.LogListView.as_view(), name="logs"),
    path("events", events.EventListView.as_view(), name="events"),
    path("history/<str:series>", history.SeriesHistoryView.as_view(), name="history"),
]
