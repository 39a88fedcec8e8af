from django.urls import path, register_converter

from applications.api import views


class AppIdConverter:
    regex = r"[A-Za-z0-9._~-]{1,128}"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(AppIdConverter, "app_id")

urlpatterns = [
    path("", views.ApplicationListView.as_view(), name="application-list"),
    path("unregister", views.UnregisterView.as_view(), name="application-unregister"),
    path(
        "<app_id:app_id>/unregister",
        views.UnregisterByIdView.as_view(),
        name="application-unregister-by-id",
    ),
    path("<app_id:app_id>", views.ApplicationDetailView.as_view(), name="application"),
]
